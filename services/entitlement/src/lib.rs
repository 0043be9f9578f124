//! The entitlement service: the access policy as data, each learner's time-bounded
//! grants computed from intake's facts, and the Check API that integrators ask.
//!
//! It consumes intake's learner, payment and agreement facts into a projection,
//! recomputes the grants a fact touches, keeps them as the index Check answers
//! from, and publishes `hosted.entitlement.grants.changed` when they change.

pub mod config;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod store;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use hosted_contracts::{
    subjects::Service, v1::entitlement_service_server::EntitlementServiceServer,
};
use hosted_platform::{
    clock::Clock,
    inbox::{ConsumerSpec, InboxConsumer},
    service::Foundation,
};
use tonic::service::Routes;

pub use config::EntitlementConfig;

use crate::{domain::policy::Policy, events::GrantsHandler};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The state the RPCs share.
#[derive(Debug, Clone)]
pub struct Entitlement {
    pool: sqlx::PgPool,
    policy: Arc<Policy>,
    clock: Clock,
}

/// A started entitlement service.
#[derive(Debug)]
pub struct Application {
    foundation: Foundation,
    state: Entitlement,
    handler: GrantsHandler,
}

impl Application {
    pub async fn build(config: &EntitlementConfig) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(&config.policy.file)
            .with_context(|| format!("reading the policy {}", config.policy.file.display()))?;
        let policy = Arc::new(
            domain::policy::load(&config.policy.file.display().to_string(), &text)
                .map_err(|errors| anyhow::anyhow!("invalid policy:\n{errors}"))?,
        );
        let foundation = Foundation::start(
            Service::Entitlement,
            config::DEFAULT_PORT,
            &config.common,
            &MIGRATOR,
        )
        .await
        .context("starting entitlement")?;
        tracing::info!(policy_version = %policy.version, "policy loaded");
        let handler = GrantsHandler {
            namespace: foundation.namespace.clone(),
            policy: policy.clone(),
            outbox: foundation.outbox.clone(),
        };
        let state = Entitlement {
            pool: foundation.pool.clone(),
            policy,
            clock: config.common.clock.clock(),
        };
        Ok(Self {
            foundation,
            state,
            handler,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.foundation.local_addr()
    }

    /// Serves until `shutdown` resolves; ready once the consumer of intake's facts is
    /// attached.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let consumer = InboxConsumer::new(
            ConsumerSpec {
                durable: events::INTAKE_CONSUMER.to_owned(),
                source: Service::Intake,
                owner: Service::Entitlement,
            },
            &self.foundation.nats_config,
            self.state.pool.clone(),
            self.foundation.jetstream.clone(),
            Arc::new(self.handler.clone()),
        );
        let readiness = self.foundation.readiness();
        let mut shutdown_rx = self.foundation.tasks.shutdown();
        self.foundation.tasks.spawn(async move {
            if let Some(attached) = consumer.attach(&mut shutdown_rx).await {
                readiness.ready().await;
                consumer.run(attached, shutdown_rx).await;
            }
        });
        let routes = Routes::new(EntitlementServiceServer::new(self.state));
        self.foundation
            .serve(routes, grpc::ACCESS, shutdown)
            .await
            .context("serving entitlement")
    }
}
