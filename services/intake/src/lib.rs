//! The intake service: the registry of hosted learners that the directorates use
//! instead of the student information system. It owns persons, stays, agreements
//! and payments, and publishes every change under `hosted.intake.>`.

pub mod audit;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod registry;
pub mod restate;
pub mod store;
pub mod units;

use std::{future::Future, net::SocketAddr};

use anyhow::Context;
use hosted_contracts::{
    subjects::Namespace, subjects::Service, v1::intake_service_server::IntakeServiceServer,
};
use hosted_platform::{outbox::OutboxSignal, service::Foundation};
use sqlx::PgPool;
use tonic::service::Routes;

pub use config::IntakeConfig;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The state the RPCs share.
#[derive(Debug, Clone)]
pub struct Intake {
    pool: PgPool,
    namespace: Namespace,
    outbox: OutboxSignal,
    numbering: store::batch::Numbering,
    clock: hosted_platform::clock::Clock,
    /// How far ahead of today a stay may start.
    max_start_ahead_days: u32,
}

impl Intake {
    fn today(&self) -> time::Date {
        self.clock.today()
    }
}

/// A started intake service.
#[derive(Debug)]
pub struct Application {
    foundation: Foundation,
    intake: Intake,
}

impl Application {
    pub async fn build(config: &IntakeConfig) -> anyhow::Result<Self> {
        let foundation = Foundation::start(
            Service::Intake,
            config::DEFAULT_PORT,
            &config.common,
            &MIGRATOR,
        )
        .await
        .context("starting intake")?;
        // Persons registered before name search existed get their folded names now.
        let backfilled = store::backfill_folded_names(&foundation.pool)
            .await
            .context("filling folded names")?;
        if backfilled > 0 {
            tracing::info!(persons = backfilled, "folded names filled for name search");
        }
        let intake = Intake {
            pool: foundation.pool.clone(),
            namespace: foundation.namespace.clone(),
            outbox: foundation.outbox.clone(),
            numbering: config.registry.numbering(),
            clock: config.common.clock.clock(),
            max_start_ahead_days: config.registry.max_start_ahead_days,
        };
        Ok(Self { foundation, intake })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.foundation.local_addr()
    }

    /// The plain-text, health-only listener's address (`grpc.health_listen`).
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.foundation.health_addr()
    }

    /// Serves until `shutdown` resolves. Intake consumes nothing: it is ready as soon
    /// as its database is.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.foundation.readiness().ready().await;
        let routes = Routes::new(IntakeServiceServer::new(self.intake));
        self.foundation
            .serve(routes, grpc::ACCESS, shutdown)
            .await
            .context("serving intake")
    }
}
