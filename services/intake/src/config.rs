//! Intake's settings: the shared sections, and numbering. Environment prefix `INTAKE__`.

use std::path::Path;

use hosted_platform::config::{CommonConfig, ConfigErrors, Loader, Section, ServiceConfig};

use crate::domain::names::LoginPattern;
use serde::Deserialize;

pub const ENV_PREFIX: &str = "INTAKE";
pub const DEFAULT_PORT: u16 = 50051;

#[derive(Debug, Clone, Default)]
pub struct IntakeConfig {
    pub common: CommonConfig,
    pub registry: RegistryConfig,
}

/// `[registry]`: how learners are numbered.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Prefix of hosted-learner numbers; a letter keeps them apart from Apogée's
    /// all-digit student numbers.
    pub learner_number_prefix: String,
    /// Logins never given, on top of the built-in system names.
    pub reserved_logins: Vec<String>,
    /// How logins are made: `{given}`, `{family}`, `{g}` (initial) and literal
    /// `a-z0-9.-`, e.g. `{given}.{family}` or `{g}{family}`.
    pub login_pattern: String,
    /// Longest login, collision suffix included (a hard maximum).
    pub login_max_length: usize,
    /// How many days after today a stay may start at the latest (730: two years).
    /// A start beyond is a typo far more often than a plan (2099, 9999).
    pub max_start_ahead_days: u32,
}

/// Names that must never become a person's login.
pub const SYSTEM_LOGINS: &[&str] = &[
    "root",
    "admin",
    "administrator",
    "postmaster",
    "webmaster",
    "hostmaster",
    "abuse",
    "noc",
    "security",
    "support",
    "nobody",
    "guest",
    "test",
    "daemon",
    "mail",
    "www",
    "ldap",
    "cas",
    "learner",
];

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            learner_number_prefix: "H".to_owned(),
            reserved_logins: Vec::new(),
            login_pattern: "{given}.{family}".to_owned(),
            login_max_length: 20,
            max_start_ahead_days: crate::domain::registration::DEFAULT_MAX_START_AHEAD_DAYS,
        }
    }
}

impl RegistryConfig {
    pub fn numbering(&self) -> crate::store::batch::Numbering {
        crate::store::batch::Numbering {
            learner_number_prefix: self.learner_number_prefix.clone(),
            reserved_logins: SYSTEM_LOGINS
                .iter()
                .map(|login| (*login).to_owned())
                .chain(
                    self.reserved_logins
                        .iter()
                        .map(|login| login.trim().to_ascii_lowercase()),
                )
                .collect(),
            // Checked when the configuration was read.
            login_pattern: LoginPattern::new(&self.login_pattern, self.login_max_length)
                .unwrap_or_default(),
        }
    }
}

impl Section for RegistryConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        let prefix = &self.learner_number_prefix;
        if prefix.is_empty() || prefix.len() > 4 || !prefix.chars().all(|c| c.is_ascii_uppercase())
        {
            problems.push(format!(
                "{section}.learner_number_prefix: 1 to 4 upper-case letters, so that no number looks like an Apogée number"
            ));
        }
        if let Err(reason) = LoginPattern::new(&self.login_pattern, self.login_max_length) {
            problems.push(format!("{section}.login_pattern: {reason}"));
        }
        if !(1..=3650).contains(&self.max_start_ahead_days) {
            problems.push(format!("{section}.max_start_ahead_days: 1 to 3650 days"));
        }
    }
}

impl ServiceConfig for IntakeConfig {
    const ENV_PREFIX: &'static str = ENV_PREFIX;

    fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        let mut loader = Loader::new(ENV_PREFIX, file);
        let config = Self {
            common: CommonConfig::load(&mut loader),
            registry: loader.section("registry"),
        };
        loader.finish()?;
        Ok(config)
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }
}
