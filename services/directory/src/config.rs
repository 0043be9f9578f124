//! Directory's settings: the shared sections and the LDAP directory it publishes
//! to. Environment prefix `DIRECTORY__`.

use std::{fmt, path::Path, time::Duration};

use hosted_platform::config::{CommonConfig, ConfigErrors, Loader, Section, ServiceConfig};
use serde::Deserialize;

pub const ENV_PREFIX: &str = "DIRECTORY";
pub const DEFAULT_PORT: u16 = 50054;

#[derive(Debug, Clone, Default)]
pub struct DirectoryConfig {
    pub common: CommonConfig,
    pub ldap: LdapConfig,
}

/// `[ldap]`: where accounts are published.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    pub url: String,
    pub bind_dn: String,
    #[serde(deserialize_with = "hosted_platform::config::text")]
    pub bind_password: String,
    /// The managed base: entries are written directly under it, and nothing outside
    /// it is ever touched.
    pub base_dn: String,
    /// Scope of eduPersonPrincipalName (`login@scope`).
    pub eppn_scope: String,
    #[serde(rename = "timeout_ms", deserialize_with = "millis")]
    pub timeout: Duration,
}

fn millis<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

impl Default for LdapConfig {
    fn default() -> Self {
        Self {
            url: "ldap://127.0.0.1:3389".to_owned(),
            bind_dn: "cn=admin,dc=univ-example,dc=fr".to_owned(),
            bind_password: String::new(),
            base_dn: "ou=people,dc=univ-example,dc=fr".to_owned(),
            eppn_scope: "univ-example.fr".to_owned(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &"***")
            .field("base_dn", &self.base_dn)
            .field("eppn_scope", &self.eppn_scope)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Section for LdapConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        if !(self.url.starts_with("ldap://")
            || self.url.starts_with("ldaps://")
            || self.url.starts_with("ldapi://"))
        {
            problems.push(format!(
                "{section}.url: must start with ldap://, ldaps:// or ldapi://"
            ));
        }
        if self.bind_dn.is_empty() || !self.bind_dn.contains('=') {
            problems.push(format!("{section}.bind_dn: required, a DN"));
        }
        if self.bind_password.is_empty() {
            problems.push(format!("{section}.bind_password: required"));
        }
        if self.base_dn.is_empty() || !self.base_dn.contains('=') {
            problems.push(format!(
                "{section}.base_dn: required, a DN such as ou=people,dc=univ-example,dc=fr"
            ));
        }
        if self.eppn_scope.is_empty()
            || !self.eppn_scope.contains('.')
            || self.eppn_scope.contains('@')
        {
            problems.push(format!(
                "{section}.eppn_scope: required, a domain such as univ-example.fr"
            ));
        }
        if self.timeout.is_zero() {
            problems.push(format!("{section}.timeout_ms: must be more than 0"));
        }
    }
}

impl ServiceConfig for DirectoryConfig {
    const ENV_PREFIX: &'static str = ENV_PREFIX;

    fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        let mut loader = Loader::new(ENV_PREFIX, file);
        let config = Self {
            common: CommonConfig::load(&mut loader),
            ldap: loader.section("ldap"),
        };
        loader.finish()?;
        Ok(config)
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }
}
