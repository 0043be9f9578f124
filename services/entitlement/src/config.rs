//! Entitlement's settings: the sections every service shares. Environment prefix `ENTITLEMENT__`.

use std::path::{Path, PathBuf};

use hosted_platform::config::{CommonConfig, ConfigErrors, Loader, Section, ServiceConfig};
use serde::Deserialize;

pub const ENV_PREFIX: &str = "ENTITLEMENT";
pub const DEFAULT_PORT: u16 = 50052;

#[derive(Debug, Clone, Default)]
pub struct EntitlementConfig {
    pub common: CommonConfig,
    pub policy: PolicyConfig,
    pub check: CheckConfig,
}

/// `[check]`: how Check answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckConfig {
    /// How many learners' grants the Check cache holds (it starts again empty when
    /// full). About 0.5 KiB each.
    pub cache_learners: usize,
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            cache_learners: 1_000_000,
        }
    }
}

impl Section for CheckConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        if self.cache_learners == 0 {
            problems.push(format!("{section}.cache_learners: must be at least 1"));
        }
    }
}

/// `[policy]`: the policy document the service starts with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// A TOML policy (see `policy/default.toml`).
    pub file: PathBuf,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            file: PathBuf::from("policy/default.toml"),
        }
    }
}

impl Section for PolicyConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        match std::fs::read_to_string(&self.file) {
            Err(error) => {
                problems.push(format!("{section}.file: {}: {error}", self.file.display()))
            }
            Ok(text) => {
                if let Err(errors) =
                    crate::domain::policy::load(&self.file.display().to_string(), &text)
                {
                    problems.push(format!("{section}.file: the policy is invalid:\n{errors}"));
                }
            }
        }
    }
}

impl ServiceConfig for EntitlementConfig {
    const ENV_PREFIX: &'static str = ENV_PREFIX;

    fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        let mut loader = Loader::new(ENV_PREFIX, file);
        let config = Self {
            common: CommonConfig::load(&mut loader),
            policy: loader.section("policy"),
            check: loader.section("check"),
        };
        loader.finish()?;
        Ok(config)
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }
}
