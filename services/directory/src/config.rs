//! Directory's settings: the shared sections and the LDAP directory it publishes
//! to. Environment prefix `DIRECTORY__`.

use std::{fmt, path::Path, time::Duration};

use hosted_platform::config::{CommonConfig, ConfigErrors, Loader, Section, ServiceConfig};
use serde::Deserialize;

use crate::domain::entry::Lifecycle;

pub const ENV_PREFIX: &str = "DIRECTORY";
pub const DEFAULT_PORT: u16 = 50054;

#[derive(Debug, Clone, Default)]
pub struct DirectoryConfig {
    pub common: CommonConfig,
    pub ldap: LdapConfig,
    pub entries: EntriesConfig,
    pub publication: PublicationConfig,
    pub accounts: AccountsConfig,
}

/// `[accounts]`: how long an account lives on after its last stay.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    /// Days after the last stay's end during which the account still works
    /// (A:SupannSursis).
    pub grace_days: u32,
    /// Days the expired account is kept (I:SupannExpire) before its data is due for
    /// deletion.
    pub expired_days: u32,
    /// Days in I:SupannSupprDonnees before the entry is removed from the directory.
    pub deletion_days: u32,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        let lifecycle = Lifecycle::default();
        Self {
            grace_days: lifecycle.grace_days as u32,
            expired_days: lifecycle.expired_days as u32,
            deletion_days: lifecycle.deletion_days as u32,
        }
    }
}

impl AccountsConfig {
    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle {
            grace_days: i64::from(self.grace_days),
            expired_days: i64::from(self.expired_days),
            deletion_days: i64::from(self.deletion_days),
        }
    }
}

impl Section for AccountsConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        // Ten years each at most: a mistyped value must not keep data for ever.
        for (name, days) in [
            ("grace_days", self.grace_days),
            ("expired_days", self.expired_days),
            ("deletion_days", self.deletion_days),
        ] {
            if days > 3650 {
                problems.push(format!("{section}.{name}: at most 3650 days"));
            }
        }
    }
}

/// `[entries]`: what the entries say beyond the learner's own data.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EntriesConfig {
    /// Each resource in force is published as one eduPersonEntitlement: this prefix
    /// and the resource's name.
    pub entitlement_prefix: String,
    /// The university's UAI (7 digits and its key letter), for supannEtablissement
    /// and the `etab` of supannExtProfil.
    pub uai: String,
    /// Where sponsors' entries are, for supannParrainDN: `uid=<login>,<this>`.
    pub sponsor_base_dn: String,
    /// Whether a sponsor is named only when their entry exists under
    /// `sponsor_base_dn` (false: on their login's syntax alone, for a university
    /// whose people are not in this directory).
    pub check_sponsors: bool,
    /// How long an answer about a sponsor's entry is kept (0: looked up for each
    /// batch), so that a cohort with one sponsor costs one search.
    #[serde(rename = "sponsor_cache_ms", deserialize_with = "millis")]
    pub sponsor_cache: Duration,
}

impl Default for EntriesConfig {
    fn default() -> Self {
        Self {
            entitlement_prefix: "urn:mace:univ-example.fr:entitlement:".to_owned(),
            uai: "0999999F".to_owned(),
            sponsor_base_dn: "ou=staff,dc=univ-example,dc=fr".to_owned(),
            check_sponsors: true,
            sponsor_cache: Duration::from_secs(300),
        }
    }
}

/// The longest `entries.sponsor_cache_ms`: a day.
const MAX_SPONSOR_CACHE: Duration = Duration::from_secs(86_400);

pub use crate::domain::supann::valid_uai;

impl Section for EntriesConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        if self.entitlement_prefix.is_empty()
            || self.entitlement_prefix.contains(char::is_whitespace)
        {
            problems.push(format!(
                "{section}.entitlement_prefix: required, a URN prefix such as \
                 urn:mace:univ-example.fr:entitlement:"
            ));
        }
        if !valid_uai(&self.uai) {
            problems.push(format!(
                "{section}.uai: 7 digits and their key letter, such as 0999999F"
            ));
        }
        if self.sponsor_base_dn.is_empty()
            || !self.sponsor_base_dn.contains('=')
            || self
                .sponsor_base_dn
                .contains(|c: char| c == '[' || c == ']' || c.is_control())
        {
            problems.push(format!(
                "{section}.sponsor_base_dn: required, a DN without '[', ']' or control \
                 characters (it is written inside supannExtProfil)"
            ));
        }
        if self.sponsor_cache > MAX_SPONSOR_CACHE {
            problems.push(format!(
                "{section}.sponsor_cache_ms: at most 86400000 (a day): a sponsor's \
                 entry that appears or goes must be seen"
            ));
        }
    }
}

/// `[publication]`: when accounts are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicationConfig {
    /// How long a new account, or one whose stays changed, waits for the grants
    /// entitlement computes from it before being written without them (0: never
    /// waits). Waiting writes each entry once, with its grants.
    #[serde(rename = "await_grants_ms", deserialize_with = "millis")]
    pub await_grants: Duration,
}

impl Default for PublicationConfig {
    fn default() -> Self {
        Self {
            await_grants: Duration::from_secs(10),
        }
    }
}

impl Section for PublicationConfig {}

/// `[ldap]`: where accounts are published, and as whom.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:port` (with `starttls`), or `ldaps://host:port`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding (the default):
    /// the bind password and the learners' data never travel in clear. `false` is
    /// for a local demo only.
    pub starttls: bool,
    /// PEM file of the certificate authority that signed the LDAP server's
    /// certificate (required with TLS): the server's certificate, and its name or
    /// address in `url`, are verified against it. Read at each new connection, so a
    /// renewed CA file is taken without a restart.
    pub ca_path: String,
    /// The service's own identity, allowed by the directory's ACLs to write under
    /// `base_dn` only (never the root DN): see deploy/ldap/README.md.
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

impl LdapConfig {
    /// Whether the connection is encrypted (StartTLS or ldaps).
    pub fn tls(&self) -> bool {
        self.starttls || self.url.starts_with("ldaps://")
    }
}

fn millis<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

impl Default for LdapConfig {
    fn default() -> Self {
        Self {
            url: "ldap://127.0.0.1:3389".to_owned(),
            starttls: true,
            ca_path: String::new(),
            bind_dn: "cn=hosted-directory,ou=services,dc=univ-example,dc=fr".to_owned(),
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
            .field("starttls", &self.starttls)
            .field("ca_path", &self.ca_path)
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
        if self.starttls && !self.url.starts_with("ldap://") {
            problems.push(format!(
                "{section}.starttls: only with an ldap:// url (ldaps:// is TLS from the \
                 start; set starttls = false with it)"
            ));
        }
        if self.tls() {
            if self.ca_path.is_empty() {
                problems.push(format!(
                    "{section}.ca_path: required with TLS (starttls or ldaps://): the PEM \
                     file of the CA that signed the LDAP server's certificate"
                ));
            } else if let Err(reason) = crate::ldap::read_ca(&self.ca_path) {
                problems.push(format!("{section}.ca_path: {reason}"));
            }
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

/// The managed base holds accounts only: reconciliation takes every `uid=` entry there
/// for one, and --apply removes one that has no learner. Sponsors (people of the
/// university) must be elsewhere.
fn sponsors_apart(entries: &EntriesConfig, ldap: &LdapConfig) -> Option<&'static str> {
    let normalised = |dn: &str| dn.replace(' ', "").to_ascii_lowercase();
    (normalised(&entries.sponsor_base_dn) == normalised(&ldap.base_dn)).then_some(
        "entries.sponsor_base_dn: must not be ldap.base_dn, which holds the hosted learners' \
         accounts only (reconcile --apply would remove the people there)",
    )
}

impl ServiceConfig for DirectoryConfig {
    const ENV_PREFIX: &'static str = ENV_PREFIX;

    fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        let mut loader = Loader::new(ENV_PREFIX, file);
        let config = Self {
            common: CommonConfig::load(&mut loader),
            ldap: loader.section("ldap"),
            entries: loader.section("entries"),
            publication: loader.section("publication"),
            accounts: loader.section("accounts"),
        };
        if let Some(problem) = sponsors_apart(&config.entries, &config.ldap) {
            loader.problem(problem);
        }
        loader.finish()?;
        Ok(config)
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sponsors_live_outside_the_managed_base() {
        let ldap = LdapConfig::default();
        assert_eq!(sponsors_apart(&EntriesConfig::default(), &ldap), None);
        let same = EntriesConfig {
            sponsor_base_dn: "OU=People, dc=univ-example,dc=fr".to_owned(),
            ..EntriesConfig::default()
        };
        assert!(sponsors_apart(&same, &ldap).is_some());
    }

    #[test]
    fn entries_mistakes_are_named() {
        let mut problems = Vec::new();
        EntriesConfig {
            entitlement_prefix: String::new(),
            uai: "0999999G".to_owned(),
            sponsor_base_dn: "people".to_owned(),
            check_sponsors: true,
            sponsor_cache: Duration::from_secs(86_401),
        }
        .check("entries", &mut problems);
        assert_eq!(problems.len(), 4);
        assert!(problems[0].starts_with("entries.entitlement_prefix: "));
        assert!(problems[1].starts_with("entries.uai: "));
        assert!(problems[2].starts_with("entries.sponsor_base_dn: "));
        assert!(problems[3].starts_with("entries.sponsor_cache_ms: "));
        assert!(EntriesConfig::default().check_ok());
    }

    fn ldap_problems(config: &LdapConfig) -> Vec<String> {
        let mut problems = Vec::new();
        config.check("ldap", &mut problems);
        problems
    }

    #[test]
    fn tls_needs_a_readable_ca() {
        let no_ca = LdapConfig {
            bind_password: "secret".to_owned(),
            ..LdapConfig::default()
        };
        let problems = ldap_problems(&no_ca);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("ldap.ca_path: required with TLS"));

        let missing = LdapConfig {
            ca_path: "/nonexistent/ca.pem".to_owned(),
            ..no_ca.clone()
        };
        let problems = ldap_problems(&missing);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("ldap.ca_path: cannot read /nonexistent/ca.pem"));

        let not_pem = std::env::temp_dir().join(format!("not-a-ca-{}.pem", std::process::id()));
        std::fs::write(&not_pem, "not a certificate\n").unwrap();
        let empty = LdapConfig {
            ca_path: not_pem.display().to_string(),
            ..no_ca.clone()
        };
        let problems = ldap_problems(&empty);
        let _ = std::fs::remove_file(&not_pem);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].ends_with("holds no PEM certificate"),
            "{problems:?}"
        );

        let plain = LdapConfig {
            starttls: false,
            ..no_ca.clone()
        };
        assert!(ldap_problems(&plain).is_empty(), "plain LDAP needs no CA");
    }

    #[test]
    fn starttls_is_for_ldap_urls_only() {
        let ldaps = LdapConfig {
            url: "ldaps://127.0.0.1:636".to_owned(),
            starttls: true,
            bind_password: "secret".to_owned(),
            ..LdapConfig::default()
        };
        let problems = ldap_problems(&ldaps);
        assert!(problems[0].starts_with("ldap.starttls: only with an ldap:// url"));
        assert!(problems[1].starts_with("ldap.ca_path: required"));
    }

    impl EntriesConfig {
        fn check_ok(&self) -> bool {
            let mut problems = Vec::new();
            self.check("entries", &mut problems);
            problems.is_empty()
        }
    }
}
