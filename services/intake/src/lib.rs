//! The intake service: the registry of hosted learners that the directorates use
//! instead of the student information system. It owns persons, stays, agreements
//! and payments, and publishes every change under `hosted.intake.>`.

pub mod audit;
pub mod config;
pub mod domain;
pub mod erasure;
pub mod error;
pub mod events;
pub mod grpc;
pub mod personal_data;
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
    /// Retention and erasure settings.
    erasure: erasure::ErasureSettings,
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
        let login_key = domain::erasure::LoginKey::new(&config.retention.login_key);
        let mut numbering = config.registry.numbering();
        numbering.login_key = login_key.clone();
        let stream_eraser = std::sync::Arc::new(tokio::sync::Notify::new());
        let intake = Intake {
            pool: foundation.pool.clone(),
            namespace: foundation.namespace.clone(),
            outbox: foundation.outbox.clone(),
            numbering,
            clock: config.common.clock.clock(),
            max_start_ahead_days: config.registry.max_start_ahead_days,
            erasure: erasure::ErasureSettings {
                login_key,
                keep_days_after_last_stay: config.retention.keep_days_after_last_stay,
                sweep_batch: config.retention.sweep_batch,
                stream_eraser: stream_eraser.clone(),
            },
        };
        tracing::info!(
            keep_days_after_last_stay = config.retention.keep_days_after_last_stay,
            legal_basis = %config.retention.legal_basis,
            "retention of persons' identity"
        );
        let mut foundation = foundation;
        let sweep = intake
            .clone()
            .run_retention_sweep(config.retention.sweep_interval, foundation.tasks.shutdown());
        foundation.tasks.spawn(sweep);
        let eraser = erasure::StreamEraser {
            pool: foundation.pool.clone(),
            jetstream: foundation.jetstream.clone(),
            stream: erasure::StreamEraser::stream_of(&foundation.namespace),
            wake: stream_eraser,
            poll: std::time::Duration::from_secs(30),
        };
        foundation
            .tasks
            .spawn(eraser.run(foundation.tasks.shutdown()));
        Ok(Self { foundation, intake })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.foundation.local_addr()
    }

    /// The `/metrics` endpoint's address (`metrics.listen`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.foundation.metrics_addr()
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
