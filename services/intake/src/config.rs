//! Intake's settings: the shared sections, numbering and retention. Environment
//! prefix `INTAKE__`.

use std::{path::Path, time::Duration};

use hosted_platform::config::{CommonConfig, ConfigErrors, Loader, Section, ServiceConfig};

use crate::domain::names::LoginPattern;
use serde::Deserialize;

pub const ENV_PREFIX: &str = "INTAKE";
pub const DEFAULT_PORT: u16 = 50051;

#[derive(Debug, Clone, Default)]
pub struct IntakeConfig {
    pub common: CommonConfig,
    pub registry: RegistryConfig,
    pub retention: RetentionConfig,
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
            // Set from `[retention] login_key` when the service is built.
            login_key: crate::domain::erasure::LoginKey::default(),
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
            retention: loader.section("retention"),
        };
        loader.finish()?;
        Ok(config)
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }
}

/// `[retention]`: how long a person's identity is kept after their last stay, why, and
/// how the erasure runs (see docs/privacy.md).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days after the end of a person's last stay (or the cancellation of their last
    /// stay) after which their identity is erased. The default, 425, is directory's
    /// account lifecycle (30 days of grace, 365 expired, 30 in SupannSupprDonnees), so
    /// that intake erases the person when directory removes their entry.
    pub keep_days_after_last_stay: u32,
    /// The legal basis of that retention, as the university's register of processing
    /// states it (a text, e.g. the article of the Code de l'éducation and the
    /// deliberation that set the duration). Logged at start, documented; never empty.
    #[serde(deserialize_with = "hosted_platform::config::text")]
    pub legal_basis: String,
    /// How often the retention sweep runs (it also runs at start-up), in milliseconds.
    #[serde(
        deserialize_with = "parse_duration_millis",
        rename = "sweep_interval_ms"
    )]
    pub sweep_interval: Duration,
    /// Persons erased per transaction by the sweep.
    pub sweep_batch: u32,
    /// The secret key of the digests that keep erased persons' logins from being given
    /// again (HMAC-SHA-256): at least 32 characters, the same for every replica, never
    /// changed (a new key would let erased logins be given again). A secret: give it
    /// as `login_key_file` in production.
    #[serde(deserialize_with = "hosted_platform::config::text")]
    pub login_key: String,
}

/// The retention's default legal basis: says what the field is for until the
/// university writes its own.
pub const DEFAULT_LEGAL_BASIS: &str = "Retention aligned with the directory account lifecycle \
     (grace 30 days, expired 365 days, deletion 30 days after the last stay); state here the \
     legal basis of the university's register of processing activities \
     (Code de l'éducation, délibération of the university's board)";

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            keep_days_after_last_stay: 30 + 365 + 30,
            legal_basis: DEFAULT_LEGAL_BASIS.to_owned(),
            sweep_interval: Duration::from_secs(3600),
            sweep_batch: 100,
            login_key: String::new(),
        }
    }
}

impl std::fmt::Debug for RetentionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionConfig")
            .field("keep_days_after_last_stay", &self.keep_days_after_last_stay)
            .field("legal_basis", &self.legal_basis)
            .field("sweep_interval", &self.sweep_interval)
            .field("sweep_batch", &self.sweep_batch)
            .field("login_key", &"<secret>")
            .finish()
    }
}

/// Shortest login key: 32 characters, 256 bits of a random key written in hex is 64.
const MIN_LOGIN_KEY_LENGTH: usize = 32;

impl Section for RetentionConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        if self.keep_days_after_last_stay > 36_500 {
            problems.push(format!(
                "{section}.keep_days_after_last_stay: at most 36500 days (100 years)"
            ));
        }
        if self.legal_basis.trim().is_empty() {
            problems.push(format!(
                "{section}.legal_basis: required: the legal basis of the retention, as the register of processing states it"
            ));
        }
        if self.sweep_interval < Duration::from_millis(100) {
            problems.push(format!("{section}.sweep_interval_ms: at least 100"));
        }
        if !(1..=10_000).contains(&self.sweep_batch) {
            problems.push(format!("{section}.sweep_batch: 1 to 10000 persons"));
        }
        if self.login_key.chars().count() < MIN_LOGIN_KEY_LENGTH {
            problems.push(format!(
                "{section}.login_key: required, at least {MIN_LOGIN_KEY_LENGTH} characters (a random secret, \
                 e.g. `openssl rand -hex 32`), the same for every replica and never changed"
            ));
        }
    }
}

fn parse_duration_millis<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_retention_is_directory_lifecycle_and_needs_a_key() {
        let retention = RetentionConfig::default();
        assert_eq!(retention.keep_days_after_last_stay, 425);
        let mut problems = Vec::new();
        retention.check("retention", &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("retention.login_key: required"));
    }

    #[test]
    fn every_problem_of_the_retention_is_named() {
        let retention = RetentionConfig {
            keep_days_after_last_stay: 40_000,
            legal_basis: " ".to_owned(),
            sweep_interval: Duration::from_millis(1),
            sweep_batch: 0,
            login_key: "short".to_owned(),
        };
        let mut problems = Vec::new();
        retention.check("retention", &mut problems);
        let fields: Vec<&str> = problems
            .iter()
            .map(|problem| problem.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            fields,
            [
                "retention.keep_days_after_last_stay",
                "retention.legal_basis",
                "retention.sweep_interval_ms",
                "retention.sweep_batch",
                "retention.login_key"
            ]
        );
        assert!(
            !format!("{retention:?}").contains("short"),
            "the key is never printed"
        );
    }
}
