//! gRPC server start-up shared by every service: the access check in front of every
//! RPC, a span per call joined to the caller's trace, health (SERVING only once the
//! service says it is ready), reflection in both `v1` and `v1alpha`, and a graceful
//! stop bounded by the grace period.

use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::auth::{AccessPolicy, AuthLayer, Caller};

const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
const REFLECTION_PREFIXES: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Readiness: NOT_SERVING until [`Readiness::ready`], then SERVING for good (a
/// one-way latch), for the overall server and each named service.
#[derive(Debug, Clone)]
pub struct Readiness {
    reporter: HealthReporter,
    services: Vec<&'static str>,
}

impl Readiness {
    pub async fn ready(&self) {
        self.reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
        for service in &self.services {
            self.reporter
                .set_service_status(*service, ServingStatus::Serving)
                .await;
        }
        tracing::info!("ready");
    }

    /// Reports one part of the service (e.g. `hosted.directory.publisher`) as working
    /// or not, under its own name in the health service; the service as a whole keeps
    /// its status.
    pub async fn report(&self, component: &str, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status(component, status).await;
    }

    async fn not_serving(&self) {
        self.reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for service in &self.services {
            self.reporter
                .set_service_status(*service, ServingStatus::NotServing)
                .await;
        }
    }
}

/// A bound listener and what the server will carry; binding comes first so that a
/// test can learn the port before serving.
#[derive(Debug)]
pub struct GrpcServer {
    listener: TcpListener,
    readiness: Readiness,
    health: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
}

impl GrpcServer {
    /// Binds `listen`; `services` are the full names that health reports on
    /// (e.g. `hosted.v1.IntakeService`).
    pub async fn bind(listen: SocketAddr, services: Vec<&'static str>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let reporter = HealthReporter::new();
        let health = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        let readiness = Readiness { reporter, services };
        readiness.not_serving().await;
        Ok(Self {
            listener,
            readiness,
            health,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Serves `routes` behind the access check until `shutdown` resolves, then lets
    /// calls in flight finish.
    pub async fn serve(
        self,
        routes: Routes,
        policy: AccessPolicy,
        callers: Vec<Caller>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        // Reflection advertises what this server serves (not every contract), in both
        // reflection versions, so that every common client can list and describe it.
        let descriptor_sets = [
            hosted_contracts::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut advertised: Vec<&str> = self.readiness.services.clone();
        advertised.extend([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]);
        let reflection_v1 = reflection(&descriptor_sets, &advertised)
            .build_v1()
            .map_err(reflection_error)?;
        let reflection_v1alpha = reflection(&descriptor_sets, &advertised)
            .build_v1alpha()
            .map_err(reflection_error)?;

        let mut policy = policy.open(HEALTH_PREFIX);
        for prefix in REFLECTION_PREFIXES {
            policy = policy.open(prefix);
        }
        let routes = routes
            .add_service(self.health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        tonic::transport::Server::builder()
            .trace_fn(crate::telemetry::grpc_span)
            .layer(AuthLayer::new(policy, callers))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming(self.listener), shutdown)
            .await
    }
}

/// Accepted connections with Nagle's algorithm off: a gRPC answer is one small write
/// that must leave at once, not wait for the client's delayed ACK (~40 ms a call).
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

fn reflection(
    sets: &[&'static [u8]],
    names: &[&str],
) -> tonic_reflection::server::Builder<'static> {
    let mut builder =
        tonic_reflection::server::Builder::configure().include_reflection_service(false);
    for set in sets {
        builder = builder.register_encoded_file_descriptor_set(set);
    }
    for name in names {
        builder = builder.with_service_name(*name);
    }
    builder
}

fn reflection_error(error: tonic_reflection::server::Error) -> tonic::transport::Error {
    // tonic's transport error cannot be built from outside; a bad descriptor set is a
    // build defect, caught by every test that starts a server.
    panic!("reflection descriptors: {error}")
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received; stopping"),
        _ = terminate => tracing::info!("SIGTERM received; stopping"),
    }
}

/// Background tasks told to stop by one broadcast, and waited for within a grace period.
#[derive(Debug)]
pub struct Tasks {
    shutdown: tokio::sync::watch::Sender<bool>,
    set: tokio::task::JoinSet<()>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    pub fn new() -> Self {
        Self {
            shutdown: tokio::sync::watch::channel(false).0,
            set: tokio::task::JoinSet::new(),
        }
    }

    /// A receiver that turns true when the tasks must stop.
    pub fn shutdown(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.set.spawn(task);
    }

    /// Tells every task to stop and waits for them, at most `grace`; the rest are aborted.
    pub async fn stop(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let all_done = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            tracing::warn!(
                remaining = self.set.len(),
                "grace period over; aborting background tasks"
            );
            self.set.abort_all();
        }
    }
}
