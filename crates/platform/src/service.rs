//! What every service starts with, in the same order: database and migrations, NATS,
//! the gRPC listener, the outbox relay; and how it stops: stop taking calls, let
//! calls in flight finish, then tell the background tasks, all within the grace period.

use std::{fmt::Display, future::Future, net::SocketAddr, process::ExitCode, time::Duration};

use async_nats::jetstream;
use hosted_contracts::subjects::{Namespace, Service};
use sqlx::{PgPool, migrate::Migrator};
use tonic::service::Routes;

use crate::{
    auth::{AccessPolicy, Caller},
    config::{CommonConfig, NatsConfig},
    db::{self, DatabaseError},
    grpc::{GrpcServer, Readiness, Tasks},
    metrics::{Metrics, Sampler},
    nats::{self, NatsError},
    outbox::{OutboxMonitor, OutboxSignal, Relay},
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("binding {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("access policy: {0}")]
    Policy(String),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A started service, before it serves.
#[derive(Debug)]
pub struct Foundation {
    pub service: Service,
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub namespace: Namespace,
    pub nats_config: NatsConfig,
    /// Wake the relay after committing events.
    pub outbox: OutboxSignal,
    /// Background work stopped with the service.
    pub tasks: Tasks,
    /// The service's metrics: the platform's, and those the service registers.
    pub metrics: Metrics,
    metrics_addr: Option<SocketAddr>,
    server: GrpcServer,
    callers: Vec<Caller>,
    grace: Duration,
}

impl Foundation {
    /// Starts what every service has; `default_port` is the service's own port, used
    /// when `grpc.listen` is not set.
    pub async fn start(
        service: Service,
        default_port: u16,
        config: &CommonConfig,
        migrator: &Migrator,
    ) -> Result<Self, StartError> {
        let mut problems = Vec::new();
        let callers = config.auth.callers("auth", &mut problems);
        if !problems.is_empty() {
            return Err(StartError::Policy(problems.join("; ")));
        }
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool, migrator).await?;
        tracing::info!(database = %crate::config::redact_url(&config.database.url), "database ready");

        let client = nats::connect(&config.nats, &format!("hosted-{service}")).await?;
        let jetstream = jetstream::new(client.clone());
        let namespace = config.nats.namespace();

        let services = vec![grpc_service_name(service)];
        let address = config.grpc.listen_or(default_port);
        let tls = if config.grpc.tls.is_enabled() {
            Some(
                crate::tls::server_config(&config.grpc.tls)
                    .map_err(|reason| StartError::Tls(format!("grpc.tls.{reason}")))?,
            )
        } else {
            None
        };
        let server = GrpcServer::bind(address, config.grpc.health_listen, tls, services)
            .await
            .map_err(|source| StartError::Bind { address, source })?;
        if server.is_tls() {
            tracing::info!(
                address = %server.local_addr(),
                mutual = config.grpc.tls.client_ca_path().is_some(),
                "gRPC listening (TLS)"
            );
        } else {
            tracing::warn!(
                address = %server.local_addr(),
                "gRPC listening in PLAIN TEXT: tokens and personal data travel unencrypted; \
                 set grpc.tls.cert_path and grpc.tls.key_path"
            );
        }
        if let Some(health) = server.health_addr() {
            tracing::info!(address = %health, "gRPC health listening (plain text, health only)");
        }

        let outbox = OutboxSignal::default();
        let mut tasks = Tasks::new();
        let metrics = Metrics::new(service);
        let sampler = Sampler {
            metrics: metrics.clone(),
            pool: pool.clone(),
            jetstream: jetstream.clone(),
            namespace: namespace.clone(),
            service,
            interval: config.metrics.sample_interval,
            timeout: config.metrics.sample_timeout,
        };
        let metrics_addr = match config.metrics.listen {
            Some(address) => crate::metrics::start(&config.metrics, sampler, &mut tasks)
                .await
                .map_err(|source| StartError::Bind { address, source })?,
            None => None,
        };
        if let Some(address) = metrics_addr {
            tracing::info!(%address, "metrics listening (plain HTTP, /metrics)");
        }
        let relay = Relay::new(
            pool.clone(),
            jetstream.clone(),
            nats::stream_config(&namespace, service, &config.nats),
            outbox.clone(),
            config.nats.publish_timeout,
        )
        .counting(metrics.clone());
        tasks.spawn(relay.run(tasks.shutdown()));
        let monitor = OutboxMonitor {
            pool: pool.clone(),
            health: server.readiness(),
            component: OutboxMonitor::component(service),
            stale_after: config.nats.outbox_stale_after,
        };
        tasks.spawn(monitor.run(tasks.shutdown()));

        Ok(Self {
            service,
            pool,
            nats: client,
            jetstream,
            namespace,
            nats_config: config.nats.clone(),
            outbox,
            tasks,
            metrics,
            metrics_addr,
            server,
            callers,
            grace: config.grpc.grace_period,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn readiness(&self) -> Readiness {
        self.server.readiness()
    }

    /// The plain-text health listener's address, when `grpc.health_listen` is set.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.server.health_addr()
    }

    /// Samples a durable consumer's position and dead letters for the metrics; every
    /// consumer a service runs is watched so.
    pub fn watch_consumer(&self, spec: &crate::inbox::ConsumerSpec) {
        self.metrics.watch_consumer(&self.namespace, spec);
    }

    /// The `/metrics` endpoint's address, when `metrics.listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Serves until `shutdown` resolves, then stops within the grace period.
    pub async fn serve(
        self,
        routes: Routes,
        rules: &[(&str, &[crate::auth::Role])],
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let policy = AccessPolicy::covering(
            grpc_service_name(self.service),
            rules,
            hosted_contracts::FILE_DESCRIPTOR_SET,
        )
        .map_err(StartError::Policy)?;
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(self.server.serve(
            routes,
            policy,
            self.callers,
            self.metrics.clone(),
            async {
                let _ = server_stopped.await;
            },
        ));
        let mut server = std::pin::pin!(server);
        tokio::select! {
            () = shutdown => {}
            finished = &mut server => {
                // The server ended on its own: an error, since nothing asked it to stop.
                self.tasks.stop(self.grace).await;
                return match finished {
                    Ok(result) => result.map_err(StartError::from),
                    Err(join) => Err(StartError::Policy(format!("server task: {join}"))),
                };
            }
        }
        tracing::info!(grace_ms = self.grace.as_millis() as u64, "stopping");
        let _ = stop_server.send(());
        match tokio::time::timeout(self.grace, &mut server).await {
            Ok(Ok(Err(error))) => tracing::warn!(%error, "gRPC server stopped with an error"),
            Err(_) => tracing::warn!("calls still in flight at the end of the grace period"),
            _ => {}
        }
        self.tasks.stop(self.grace).await;
        self.pool.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The body of every service's `main`: reads the configuration (a usage error,
/// exit code 64, before anything is bound), installs telemetry, then runs the
/// service until SIGTERM or SIGINT.
pub async fn main<C, E>(name: &'static str, run: impl AsyncFnOnce(C) -> Result<(), E>) -> ExitCode
where
    C: crate::config::ServiceConfig,
    E: Display,
{
    use crate::config;
    let loaded = config::config_file_from_args(C::ENV_PREFIX)
        .and_then(|file| C::load(file.as_deref()).map_err(|errors| errors.to_string()));
    let config = match loaded {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(config::EXIT_USAGE);
        }
    };
    let _telemetry = match crate::telemetry::init(name, &config.common().telemetry) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("telemetry: {error}");
            return ExitCode::from(config::EXIT_USAGE);
        }
    };
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{name} failed");
            ExitCode::FAILURE
        }
    }
}

/// The full gRPC name of a service's API, e.g. `hosted.v1.IntakeService`.
pub const fn grpc_service_name(service: Service) -> &'static str {
    match service {
        Service::Intake => "hosted.v1.IntakeService",
        Service::Entitlement => "hosted.v1.EntitlementService",
        Service::Cards => "hosted.v1.CardsService",
        Service::Directory => "hosted.v1.DirectoryService",
    }
}
