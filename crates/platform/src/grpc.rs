//! gRPC server start-up shared by every service: the access check in front of every
//! RPC, a span per call joined to the caller's trace, health (SERVING only once the
//! service says it is ready), reflection in both `v1` and `v1alpha`, and a graceful
//! stop bounded by the grace period; TLS when `[grpc.tls]` is set (plain text, said in
//! a warning, otherwise), and a plain-text listener for health probes alone.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::auth::{AccessPolicy, AuthLayer, Caller};

const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
/// The methods of health and reflection, served without a credential.
const OPEN_METHODS: [&str; 4] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];
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

type HealthServer =
    tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

/// How long a client gets to finish its TLS handshake before the connection is
/// dropped: one that never finishes must not hold a task and a socket for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound listeners and what the server will carry; binding comes first so that a
/// test can learn the ports before serving.
#[derive(Debug)]
pub struct GrpcServer {
    listener: TcpListener,
    /// TLS on `listener`; plain text when `None`.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The plain-text listener of health probes, when configured.
    health_listener: Option<TcpListener>,
    readiness: Readiness,
    health: HealthServer,
}

impl GrpcServer {
    /// Binds `listen` (and `health_listen`, when given); `services` are the full names
    /// that health reports on (e.g. `hosted.v1.IntakeService`). With `tls`, every
    /// connection on `listen` is TLS.
    pub async fn bind(
        listen: SocketAddr,
        health_listen: Option<SocketAddr>,
        tls: Option<Arc<rustls::ServerConfig>>,
        services: Vec<&'static str>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let health_listener = match health_listen {
            Some(address) => Some(TcpListener::bind(address).await?),
            None => None,
        };
        let reporter = HealthReporter::new();
        let health = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        let readiness = Readiness { reporter, services };
        readiness.not_serving().await;
        Ok(Self {
            listener,
            tls,
            health_listener,
            readiness,
            health,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The plain-text health listener's address, when there is one.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
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
        metrics: crate::metrics::Metrics,
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

        // The paths counted under their own names: the service's RPCs, health's and
        // reflection's; anything else is `unknown` in the metrics.
        let mut methods = policy.methods();
        methods.extend(OPEN_METHODS.iter().map(|method| (*method).to_owned()));
        let mut policy = policy.open(HEALTH_PREFIX);
        for prefix in REFLECTION_PREFIXES {
            policy = policy.open(prefix);
        }
        let routes = routes
            .add_service(self.health.clone())
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        // Both servers stop together: one shutdown, told to each by a watch.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let stopped_signal = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        };
        let server = tonic::transport::Server::builder();
        let router = server
            .trace_fn(crate::telemetry::grpc_span)
            // Outside the access check, so that refused calls are counted too.
            .layer(metrics.grpc_layer(methods))
            .layer(AuthLayer::new(policy, callers))
            .add_routes(routes);
        let main = async {
            match self.tls {
                Some(tls) => {
                    router
                        .serve_with_incoming_shutdown(
                            tls_incoming(self.listener, tls),
                            stopped_signal(stopped.clone()),
                        )
                        .await
                }
                None => {
                    router
                        .serve_with_incoming_shutdown(
                            incoming(self.listener),
                            stopped_signal(stopped.clone()),
                        )
                        .await
                }
            }
        };
        // Health only: any other path is UNIMPLEMENTED there, whatever the credential.
        let probes = async {
            match self.health_listener {
                Some(listener) => {
                    tonic::transport::Server::builder()
                        .add_service(self.health)
                        .serve_with_incoming_shutdown(
                            incoming(listener),
                            stopped_signal(stopped.clone()),
                        )
                        .await
                }
                None => Ok(()),
            }
        };
        let servers = async { tokio::try_join!(main, probes).map(|_| ()) };
        let mut servers = std::pin::pin!(servers);
        tokio::select! {
            finished = &mut servers => return finished,
            () = shutdown => {}
        }
        let _ = stop.send(true);
        servers.await
    }
}

/// TLS connections: each handshake in a task of its own (a slow or silent client
/// holds up nobody), bounded by [`HANDSHAKE_TIMEOUT`]; connections whose handshake
/// fails are dropped here, at debug level (scanners and probes that try plain text).
fn tls_incoming(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> impl tokio_stream::Stream<
    Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                // The server stopped and dropped the stream: stop accepting.
                () = sender.closed() => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "cannot turn Nagle's algorithm off");
            }
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = sender.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
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
