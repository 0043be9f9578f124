//! The cards service: smart cards from request to destruction, the e-purse and the
//! European Student Card.
//!
//! It consumes intake's learner facts (who the holder is) and entitlement's grants
//! (whether they hold the smart-card and e-purse grants). A card is requested when a
//! learner gains the smart-card grant and only then, follows its lifecycle through
//! the card office's hands, and expires when the grant ends; each change is
//! published as `hosted.cards.card.changed`.

pub mod audit;
pub mod config;
pub mod documents;
pub mod domain;
pub mod erasure;
pub mod events;
pub mod grpc;
pub mod office;
pub mod restate;
pub mod store;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use hosted_contracts::{subjects::Service, v1::cards_service_server::CardsServiceServer};
use hosted_platform::{
    clock::Clock,
    inbox::{ConsumerSpec, DeadLetters, Handler, InboxConsumer},
    service::Foundation,
};
use tonic::service::Routes;

pub use config::CardsConfig;

use crate::{
    events::{GrantsHandler, PeopleHandler},
    office::Office,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The state the RPCs share.
#[derive(Debug, Clone)]
pub struct Cards {
    office: Office,
    /// The dead letters of both consumers, and the handlers that apply them again.
    dead_letters: DeadLetters,
    people: PeopleHandler,
    grants: GrantsHandler,
}

/// A started cards service.
#[derive(Debug)]
pub struct Application {
    foundation: Foundation,
    state: Cards,
}

impl Application {
    /// Starts on the configured clock.
    pub async fn build(config: &CardsConfig) -> anyhow::Result<Self> {
        Self::build_with_clock(config, config.common.clock.clock()).await
    }

    /// Starts on `clock`: tests pass a manual clock.
    pub async fn build_with_clock(config: &CardsConfig, clock: Clock) -> anyhow::Result<Self> {
        let foundation = Foundation::start(
            Service::Cards,
            config::DEFAULT_PORT,
            &config.common,
            &MIGRATOR,
        )
        .await
        .context("starting cards")?;
        let office = Office {
            pool: foundation.pool.clone(),
            namespace: foundation.namespace.clone(),
            config: config.cards.clone(),
            escn: config.escn.clone(),
            clock,
            outbox: foundation.outbox.clone(),
        };
        let people = PeopleHandler {
            namespace: foundation.namespace.clone(),
            office: office.clone(),
            erased: hosted_platform::erasure::ErasureSignal::default(),
        };
        let grants = GrantsHandler {
            namespace: foundation.namespace.clone(),
            office: office.clone(),
        };
        let dead_letters = DeadLetters::new(
            foundation.namespace.clone(),
            Service::Cards,
            foundation.jetstream.clone(),
        );
        Ok(Self {
            foundation,
            state: Cards {
                office,
                dead_letters,
                people,
                grants,
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.foundation.local_addr()
    }

    /// The `/metrics` endpoint's address (`metrics.listen`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.foundation.metrics_addr()
    }

    fn consumer<H: Handler>(&self, durable: &str, source: Service, handler: H) -> InboxConsumer<H> {
        let spec = ConsumerSpec {
            durable: durable.to_owned(),
            source,
            owner: Service::Cards,
        };
        self.foundation.watch_consumer(&spec);
        InboxConsumer::new(
            spec,
            &self.foundation.nats_config,
            self.state.office.pool.clone(),
            self.foundation.jetstream.clone(),
            Arc::new(handler),
        )
    }

    /// Serves until `shutdown` resolves; ready once both consumers are attached.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let people = self.consumer(
            events::INTAKE_CONSUMER,
            Service::Intake,
            self.state.people.clone(),
        );
        let grants = self.consumer(
            events::ENTITLEMENT_CONSUMER,
            Service::Entitlement,
            self.state.grants.clone(),
        );
        let readiness = self.foundation.readiness();
        let mut shutdown_rx = self.foundation.tasks.shutdown();
        self.foundation.tasks.spawn(async move {
            let Some(people_attached) = people.attach(&mut shutdown_rx).await else {
                return;
            };
            let Some(grants_attached) = grants.attach(&mut shutdown_rx).await else {
                return;
            };
            readiness.ready().await;
            tokio::join!(
                people.run(people_attached, shutdown_rx.clone()),
                grants.run(grants_attached, shutdown_rx),
            );
        });
        self.foundation.tasks.spawn(
            hosted_platform::erasure::StreamEraser {
                pool: self.state.office.pool.clone(),
                jetstream: self.foundation.jetstream.clone(),
                stream: self.foundation.namespace.stream(Service::Cards),
                signal: self.state.people.erased.clone(),
                due_also: None,
            }
            .run(self.foundation.tasks.shutdown()),
        );
        let routes = Routes::new(CardsServiceServer::new(self.state));
        self.foundation
            .serve(routes, grpc::ACCESS, shutdown)
            .await
            .context("serving cards")
    }
}
