//! The cards service: smart cards from request to destruction, the e-purse and the European Student Card.
//!
//! This version starts, migrates its database, provisions its stream and serves
//! health, reflection and its API behind the access check; the RPCs answer
//! UNIMPLEMENTED until the service's issue gives them their behaviour.

pub mod config;
pub mod grpc;

use std::{future::Future, net::SocketAddr};

use anyhow::Context;
use hosted_contracts::{subjects::Service, v1::cards_service_server::CardsServiceServer};
use hosted_platform::service::Foundation;
use tonic::service::Routes;

pub use config::CardsConfig;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The state the RPCs share.
#[derive(Debug, Clone)]
pub struct Cards {
    pool: sqlx::PgPool,
}

/// A started cards service.
#[derive(Debug)]
pub struct Application {
    foundation: Foundation,
    state: Cards,
}

impl Application {
    pub async fn build(config: &CardsConfig) -> anyhow::Result<Self> {
        let foundation = Foundation::start(
            Service::Cards,
            config::DEFAULT_PORT,
            &config.common,
            &MIGRATOR,
        )
        .await
        .context("starting cards")?;
        let state = Cards {
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
        let routes = Routes::new(CardsServiceServer::new(self.state));
        self.foundation
            .serve(routes, grpc::ACCESS, shutdown)
            .await
            .context("serving cards")
    }
}
