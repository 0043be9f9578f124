//! Entitlement's settings: the sections every service shares. Environment prefix `ENTITLEMENT__`.

use std::path::Path;

use hosted_platform::{
    config::{
        AuthConfig, ConfigErrors, DatabaseConfig, GrpcConfig, Loader, NatsConfig, TelemetryConfig,
    },
    service::CommonConfig,
};

pub const ENV_PREFIX: &str = "ENTITLEMENT";
pub const DEFAULT_PORT: u16 = 50052;

#[derive(Debug, Clone)]
pub struct EntitlementConfig {
    pub grpc: GrpcConfig,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub telemetry: TelemetryConfig,
    pub auth: AuthConfig,
}

impl EntitlementConfig {
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        let mut loader = Loader::new(ENV_PREFIX, file);
        let config = Self {
            grpc: loader.section("grpc"),
            database: loader.section("database"),
            nats: loader.section("nats"),
            telemetry: loader.section("telemetry"),
            auth: loader.section("auth"),
        };
        loader.finish()?;
        Ok(config)
    }

    pub fn common(&self) -> CommonConfig<'_> {
        CommonConfig {
            default_port: DEFAULT_PORT,
            grpc: &self.grpc,
            database: &self.database,
            nats: &self.nats,
            auth: &self.auth,
        }
    }
}
