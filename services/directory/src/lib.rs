//! The directory service: turns the facts published by intake, entitlement and cards
//! into hosted learners' accounts in the LDAP directory that CAS, wifi and the
//! library trust, following SupAnn 2021 and eduPerson.
//!
//! Events are applied to a projection in PostgreSQL (newest learner version wins);
//! a publisher writes each account whose projection is newer than LDAP, as an add or
//! a modify of exactly what differs. When intake erases a person, the account and its
//! entry go ([`erasure`]).

pub mod audit;
pub mod config;
pub mod domain;
pub mod erasure;
pub mod error;
pub mod events;
pub mod grpc;
pub mod ldap;
pub mod publisher;
pub mod reconcile;
pub mod sponsors;
pub mod store;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use hosted_contracts::{subjects::Service, v1::directory_service_server::DirectoryServiceServer};
use hosted_platform::{
    inbox::{ConsumerSpec, DeadLetters, InboxConsumer},
    service::Foundation,
};
use sqlx::PgPool;
use tokio::sync::Notify;
use tonic::service::Routes;

pub use config::DirectoryConfig;

use crate::{
    domain::entry::EntrySettings, events::ProjectionHandler, ldap::LdapDirectory,
    publisher::Publisher, sponsors::SponsorEntries,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The state the RPCs share.
#[derive(Debug, Clone)]
pub struct Directory {
    pool: PgPool,
    ldap: Arc<LdapDirectory>,
    settings: EntrySettings,
    /// Which sponsors have an entry, shared with the publisher so that both compute
    /// the same entries.
    sponsors: Arc<SponsorEntries>,
    publisher: Arc<Notify>,
    handler: ProjectionHandler,
    dead_letters: DeadLetters,
    clock: hosted_platform::clock::Clock,
    /// How long an account waits for its grants before it is written without them.
    await_grants: std::time::Duration,
    /// Where `account.published` events go, and the relay to wake after them.
    namespace: hosted_contracts::subjects::Namespace,
    outbox: hosted_platform::outbox::OutboxSignal,
    /// Where the consumers' backlogs are asked (a rebuild waits for them to drain).
    jetstream: hosted_platform::nats::JetStream,
}

/// A started directory service.
#[derive(Debug)]
pub struct Application {
    foundation: Foundation,
    directory: Directory,
}

impl Application {
    /// Starts on the configured clock.
    pub async fn build(config: &DirectoryConfig) -> anyhow::Result<Self> {
        Self::build_with_clock(config, config.common.clock.clock()).await
    }

    /// Starts on `clock`: tests pass a manual clock.
    pub async fn build_with_clock(
        config: &DirectoryConfig,
        clock: hosted_platform::clock::Clock,
    ) -> anyhow::Result<Self> {
        let foundation = Foundation::start(
            Service::Directory,
            config::DEFAULT_PORT,
            &config.common,
            &MIGRATOR,
        )
        .await
        .context("starting directory")?;
        let publisher = Arc::new(Notify::new());
        let handler = ProjectionHandler {
            namespace: foundation.namespace.clone(),
            publisher: publisher.clone(),
            base_dn: config.ldap.base_dn.clone(),
            erased: hosted_platform::erasure::ErasureSignal::default(),
        };
        if !config.ldap.tls() {
            tracing::warn!(
                url = %config.ldap.url,
                "ldap without tls: the bind password and the learners' data travel in clear (local demos only)"
            );
        }
        let ldap = Arc::new(LdapDirectory::new(config.ldap.clone()));
        let directory = Directory {
            pool: foundation.pool.clone(),
            sponsors: Arc::new(SponsorEntries::new(ldap.clone(), &config.entries)),
            ldap,
            settings: EntrySettings {
                base_dn: config.ldap.base_dn.clone(),
                eppn_scope: config.ldap.eppn_scope.clone(),
                entitlement_prefix: config.entries.entitlement_prefix.clone(),
                establishment: format!("{{UAI}}{}", config.entries.uai),
                sponsor_base_dn: config.entries.sponsor_base_dn.clone(),
                clock: clock.clone(),
                lifecycle: config.accounts.lifecycle(),
            },
            await_grants: config.publication.await_grants,
            namespace: foundation.namespace.clone(),
            outbox: foundation.outbox.clone(),
            jetstream: foundation.jetstream.clone(),
            publisher,
            handler,
            dead_letters: DeadLetters::new(
                foundation.namespace.clone(),
                Service::Directory,
                foundation.jetstream.clone(),
            ),
            clock,
        };
        Ok(Self {
            foundation,
            directory,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.foundation.local_addr()
    }

    /// The `/metrics` endpoint's address (`metrics.listen`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.foundation.metrics_addr()
    }

    /// Consumes `source`'s stream into the projection once the stream exists.
    fn spawn_consumer(&mut self, durable: &str, source: Service) {
        let spec = ConsumerSpec {
            durable: durable.to_owned(),
            source,
            owner: Service::Directory,
        };
        self.foundation.watch_consumer(&spec);
        let consumer = InboxConsumer::new(
            spec,
            &self.foundation.nats_config,
            self.directory.pool.clone(),
            self.foundation.jetstream.clone(),
            Arc::new(self.directory.handler.clone()),
        );
        let mut shutdown = self.foundation.tasks.shutdown();
        self.foundation.tasks.spawn(async move {
            if let Some(attached) = consumer.attach(&mut shutdown).await {
                consumer.run(attached, shutdown).await;
            }
        });
    }

    /// Serves until `shutdown` resolves. Ready (gRPC health SERVING) once the consumer
    /// of intake's events is attached.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let directory = self.directory.clone();
        let publisher = Publisher {
            pool: directory.pool.clone(),
            ldap: directory.ldap.clone(),
            settings: directory.settings.clone(),
            sponsors: directory.sponsors.clone(),
            wake: directory.publisher.clone(),
            clock: directory.clock.clone(),
            await_grants: directory.await_grants,
            health: self.foundation.readiness(),
            namespace: directory.namespace.clone(),
            outbox: directory.outbox.clone(),
            counter: crate::publisher::WriteCounter::new(directory.pool.clone()),
            metrics: crate::publisher::PublicationMetrics::register(&self.foundation.metrics),
        };
        let publisher_shutdown = self.foundation.tasks.shutdown();
        self.foundation
            .tasks
            .spawn(publisher.run(publisher_shutdown));

        let (pool, ldap) = (directory.pool.clone(), directory.ldap.clone());
        self.foundation.tasks.spawn(
            hosted_platform::erasure::StreamEraser {
                pool: directory.pool.clone(),
                jetstream: self.foundation.jetstream.clone(),
                stream: self.foundation.namespace.stream(Service::Directory),
                signal: directory.handler.erased.clone(),
                due_also: Some(erasure::ENTRY_REMOVED),
            }
            .run_after(
                move || {
                    let (pool, ldap) = (pool.clone(), ldap.clone());
                    async move { erasure::remove_entries(&pool, &ldap).await }
                },
                self.foundation.tasks.shutdown(),
            ),
        );

        let spec = ConsumerSpec {
            durable: events::INTAKE_CONSUMER.to_owned(),
            source: Service::Intake,
            owner: Service::Directory,
        };
        self.foundation.watch_consumer(&spec);
        let consumer = InboxConsumer::new(
            spec,
            &self.foundation.nats_config,
            directory.pool.clone(),
            self.foundation.jetstream.clone(),
            Arc::new(directory.handler.clone()),
        );
        let readiness = self.foundation.readiness();
        let mut shutdown_rx = self.foundation.tasks.shutdown();
        // The dead letters live in directory's own stream: provision it before consuming.
        let stream = hosted_platform::nats::stream_config(
            &self.foundation.namespace,
            Service::Directory,
            &self.foundation.nats_config,
        );
        let jetstream = self.foundation.jetstream.clone();
        self.foundation.tasks.spawn(async move {
            if let Err(error) = hosted_platform::nats::ensure_stream(&jetstream, stream).await {
                tracing::warn!(%error, "directory stream not provisioned yet; the relay will retry");
            }
            if let Some(attached) = consumer.attach(&mut shutdown_rx).await {
                readiness.ready().await;
                consumer.run(attached, shutdown_rx).await;
            }
        });
        // Grants and cards complete the entries; directory is ready without them (an
        // account then waits for its grants a while, then is written without them) and
        // attaches to their streams when they appear.
        self.spawn_consumer(events::ENTITLEMENT_CONSUMER, Service::Entitlement);
        self.spawn_consumer(events::CARDS_CONSUMER, Service::Cards);

        let routes = Routes::new(DirectoryServiceServer::new(self.directory));
        self.foundation
            .serve(routes, grpc::ACCESS, shutdown)
            .await
            .context("serving directory")
    }
}
