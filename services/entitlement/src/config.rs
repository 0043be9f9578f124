//! Entitlement's settings: the sections every service shares. Environment prefix `ENTITLEMENT__`.

use std::path::Path;

use hosted_platform::config::{CommonConfig, ConfigErrors, Loader, ServiceConfig};

pub const ENV_PREFIX: &str = "ENTITLEMENT";
pub const DEFAULT_PORT: u16 = 50052;

#[derive(Debug, Clone, Default)]
pub struct EntitlementConfig {
    pub common: CommonConfig,
}

impl ServiceConfig for EntitlementConfig {
    const ENV_PREFIX: &'static str = ENV_PREFIX;

    fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        let mut loader = Loader::new(ENV_PREFIX, file);
        let config = Self {
            common: CommonConfig::load(&mut loader),
        };
        loader.finish()?;
        Ok(config)
    }

    fn common(&self) -> &CommonConfig {
        &self.common
    }
}
