//! The entitlement service: the access policy as data, each learner's time-bounded grants, and the Check API that integrators ask.
//!
//! This version starts, migrates its database, provisions its stream and serves
//! health, reflection and its API behind the access check; the RPCs answer
//! UNIMPLEMENTED until the service's issue gives them their behaviour.

pub mod config;
pub mod domain;
pub mod grpc;

use std::{future::Future, net::SocketAddr};

use anyhow::Context;
use hosted_contracts::{
    subjects::Service, v1::entitlement_service_server::EntitlementServiceServer,
};
use hosted_platform::service::Foundation;
use tonic::service::Routes;

pub use config::EntitlementConfig;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The state the RPCs share.
#[derive(Debug, Clone)]
pub struct Entitlement {
    pool: sqlx::PgPool,
}

/// A started entitlement service.
#[derive(Debug)]
pub struct Application {
    foundation: Foundation,
    state: Entitlement,
}

impl Application {
    pub async fn build(config: &EntitlementConfig) -> anyhow::Result<Self> {
        let foundation = Foundation::start(
            Service::Entitlement,
            config::DEFAULT_PORT,
            &config.common,
            &MIGRATOR,
        )
        .await
        .context("starting entitlement")?;
        let state = Entitlement {
            pool: foundation.pool.clone(),
        };
        Ok(Self { foundation, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.foundation.local_addr()
    }

    /// Serves until `shutdown` resolves; ready once the database is.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.foundation.readiness().ready().await;
        let routes = Routes::new(EntitlementServiceServer::new(self.state));
        self.foundation
            .serve(routes, grpc::ACCESS, shutdown)
            .await
            .context("serving entitlement")
    }
}
