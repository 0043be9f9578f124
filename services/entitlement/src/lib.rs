//! The entitlement service: the access policy as data, each learner's time-bounded
//! grants computed from intake's facts, and the Check API that integrators ask.
//!
//! It consumes intake's learner, payment and agreement facts into a projection,
//! recomputes the grants a fact touches, keeps them as the index Check answers
//! from, and publishes `hosted.entitlement.grants.changed` when they change. When
//! intake erases a person it erases its own copy (`hosted_platform::erasure`).

pub mod audit;
pub mod cache;
pub mod config;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod policies;
pub mod recompute;
pub mod restate;
pub mod schedule;
pub mod store;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use hosted_contracts::{
    subjects::Service, v1::entitlement_service_server::EntitlementServiceServer,
};
use hosted_platform::{
    clock::Clock,
    inbox::{ConsumerSpec, DeadLetters, InboxConsumer},
    service::Foundation,
};
use tonic::service::Routes;

pub use config::EntitlementConfig;

use crate::{
    cache::GrantsCache,
    events::GrantsHandler,
    recompute::{ActivePolicy, Recomputer},
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The state the RPCs share.
#[derive(Debug, Clone)]
pub struct Entitlement {
    pool: sqlx::PgPool,
    policy: ActivePolicy,
    clock: Clock,
    cache: GrantsCache,
    recomputer: Recomputer,
    /// The dead letters of the consumer of intake's facts, and what applies them again.
    dead_letters: DeadLetters,
    handler: GrantsHandler,
}

/// A started entitlement service.
#[derive(Debug)]
pub struct Application {
    foundation: Foundation,
    state: Entitlement,
    handler: GrantsHandler,
}

impl Application {
    /// Starts on the configured clock.
    pub async fn build(config: &EntitlementConfig) -> anyhow::Result<Self> {
        Self::build_with_clock(config, config.common.clock.clock()).await
    }

    /// Starts on `clock`: tests pass a manual clock to show what happens on a later
    /// date without waiting for it.
    pub async fn build_with_clock(
        config: &EntitlementConfig,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let source = config.policy.file.display().to_string();
        let document = std::fs::read_to_string(&config.policy.file)
            .with_context(|| format!("reading the policy {source}"))?;
        let configured = domain::policy::load(&source, &document)
            .map_err(|errors| anyhow::anyhow!("invalid policy:\n{errors}"))?;
        let foundation = Foundation::start(
            Service::Entitlement,
            config::DEFAULT_PORT,
            &config.common,
            &MIGRATOR,
        )
        .await
        .context("starting entitlement")?;
        let recomputer = Recomputer {
            namespace: foundation.namespace.clone(),
            policy: ActivePolicy::new(Arc::new(configured.clone())),
            clock: clock.clone(),
            outbox: foundation.outbox.clone(),
        };
        let policy = policies::bootstrap(
            &foundation.pool,
            &recomputer,
            configured,
            &document,
            &source,
        )
        .await
        .context("choosing the active policy")?;
        tracing::info!(policy_version = %policy.version, "policy in force");
        let handler = GrantsHandler {
            namespace: foundation.namespace.clone(),
            recomputer: recomputer.clone(),
            erased: hosted_platform::erasure::ErasureSignal::default(),
        };
        let cache = GrantsCache::new(config.check.cache_learners);
        cache.register(&foundation.metrics);
        let state = Entitlement {
            pool: foundation.pool.clone(),
            policy: recomputer.policy.clone(),
            clock,
            cache,
            recomputer,
            dead_letters: DeadLetters::new(
                foundation.namespace.clone(),
                Service::Entitlement,
                foundation.jetstream.clone(),
            ),
            handler: handler.clone(),
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

    /// The `/metrics` endpoint's address (`metrics.listen`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.foundation.metrics_addr()
    }

    /// Serves until `shutdown` resolves; ready once the consumer of intake's facts is
    /// attached. The due-time schedule, the cache's listener and the follower of
    /// policy activations run beside it.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let spec = ConsumerSpec {
            durable: events::INTAKE_CONSUMER.to_owned(),
            source: Service::Intake,
            owner: Service::Entitlement,
        };
        self.foundation.watch_consumer(&spec);
        let consumer = InboxConsumer::new(
            spec,
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
        self.foundation.tasks.spawn(
            hosted_platform::erasure::StreamEraser {
                pool: self.state.pool.clone(),
                jetstream: self.foundation.jetstream.clone(),
                stream: self.foundation.namespace.stream(Service::Entitlement),
                signal: self.handler.erased.clone(),
                due_also: None,
            }
            .run(self.foundation.tasks.shutdown()),
        );
        self.foundation.tasks.spawn(schedule::run(
            self.state.pool.clone(),
            self.state.recomputer.clone(),
            self.foundation.tasks.shutdown(),
        ));
        self.foundation.tasks.spawn(policies::follow_activations(
            self.state.pool.clone(),
            self.state.policy.clone(),
            self.foundation.tasks.shutdown(),
        ));
        self.foundation.tasks.spawn(self.state.cache.clone().listen(
            self.state.pool.clone(),
            self.foundation.readiness(),
            self.foundation.tasks.shutdown(),
        ));
        let routes = Routes::new(EntitlementServiceServer::new(self.state));
        self.foundation
            .serve(routes, grpc::ACCESS, shutdown)
            .await
            .context("serving entitlement")
    }
}
