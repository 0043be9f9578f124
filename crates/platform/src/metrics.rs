//! Metrics for Prometheus: one registry per service, served as text on `/metrics`
//! over plain HTTP on a port of its own (`[metrics] listen`), apart from gRPC and
//! from the health probes' port.
//!
//! The platform measures what every service has: each RPC with its final gRPC code
//! and its latency ([`GrpcMetricsLayer`], in front of the access check so that
//! refused calls count too), the outbox, the durable consumers the service reads, its
//! dead letters, the process, and the build. A service registers its own metrics
//! through [`Metrics::register`] and, for gauges read from its database, a sampling
//! of its own ([`Metrics::sample_also`]).
//!
//! Gauges that need the database or NATS are read by a background task
//! ([`Sampler`]) every `metrics.sample_interval_ms`, each round bounded by
//! `metrics.sample_timeout_ms`: a scrape only encodes what is in memory and never
//! waits on the database. They are database-wide (or stream-wide) figures, so every
//! replica of a service reports the same ones.

use std::{
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, RwLock},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use hosted_contracts::subjects::{Namespace, Service};
use http_body::{Body as HttpBody, Frame};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::{Metric, Registry},
};
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::watch};
use tonic::body::Body;
use tower::{Layer, Service as TowerService};

use crate::{config::MetricsConfig, inbox::ConsumerSpec};

/// The client library, for the metrics a service registers.
pub use prometheus_client;

/// The content type of the OpenMetrics text that [`Metrics::encode`] writes (the
/// Prometheus text format's successor, which Prometheus asks for first).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets of RPCs and LDAP writes, in seconds: 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram family's constructor: every series with [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_service: String,
    grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

/// The label of the per-consumer gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub consumer: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// A sampling a service adds to the platform's ([`Metrics::sample_also`]).
type Sampling =
    Arc<dyn Fn(PgPool) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A durable consumer whose position is sampled.
#[derive(Debug, Clone)]
struct WatchedConsumer {
    /// The stream it reads (another service's).
    stream: String,
    durable: String,
}

struct Inner {
    registry: RwLock<Registry>,
    handled: Family<HandledLabels, Counter>,
    handling: HistogramFamily<MethodLabels>,
    outbox_backlog: Gauge,
    outbox_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    outbox_published: Counter,
    consumer_pending: Family<ConsumerLabels, Gauge>,
    consumer_ack_pending: Family<ConsumerLabels, Gauge>,
    consumer_redelivered: Family<ConsumerLabels, Gauge>,
    dead_letters: Family<ConsumerLabels, Gauge>,
    consumers: Mutex<Vec<WatchedConsumer>>,
    samplings: Mutex<Vec<(&'static str, Sampling)>>,
}

/// A service's metrics: its registry and the platform's own metrics. Cloned freely.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with the platform's metrics of `service`.
    pub fn new(service: Service) -> Self {
        let mut registry = Registry::default();
        let handled = Family::<HandledLabels, Counter>::default();
        registry.register(
            "grpc_server_handled",
            "RPCs completed on the server, by method and final gRPC code (calls refused by the access check included)",
            handled.clone(),
        );
        let handling: HistogramFamily<MethodLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "grpc_server_handling_seconds",
            "Time from a call's arrival to its final status, by method",
            handling.clone(),
        );
        let outbox_backlog = Gauge::default();
        registry.register(
            "hosted_outbox_backlog_events",
            "Events in the outbox not yet published (set-aside events not counted)",
            outbox_backlog.clone(),
        );
        let outbox_oldest_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "hosted_outbox_oldest_age_seconds",
            "Age of the oldest event not yet published, 0 when none",
            outbox_oldest_age.clone(),
        );
        let outbox_published = Counter::default();
        registry.register(
            "hosted_outbox_published",
            "Events this process published from the outbox (acknowledged by JetStream)",
            outbox_published.clone(),
        );
        let consumer_pending = Family::<ConsumerLabels, Gauge>::default();
        registry.register(
            "hosted_consumer_pending_messages",
            "Messages of the source stream not yet delivered to the durable consumer",
            consumer_pending.clone(),
        );
        let consumer_ack_pending = Family::<ConsumerLabels, Gauge>::default();
        registry.register(
            "hosted_consumer_ack_pending_messages",
            "Messages delivered to the durable consumer and not yet acknowledged",
            consumer_ack_pending.clone(),
        );
        let consumer_redelivered = Family::<ConsumerLabels, Gauge>::default();
        registry.register(
            "hosted_consumer_redelivered_messages",
            "Messages delivered more than once and not yet acknowledged",
            consumer_redelivered.clone(),
        );
        let dead_letters = Family::<ConsumerLabels, Gauge>::default();
        registry.register(
            "hosted_dead_letters",
            "Dead letters held in the service's stream, by the consumer that gave up on them",
            dead_letters.clone(),
        );
        registry.register_collector(Box::new(BuildInfo {
            service: service.to_string(),
        }));
        registry.register_collector(Box::new(ProcessCollector));
        Self(Arc::new(Inner {
            registry: RwLock::new(registry),
            handled,
            handling,
            outbox_backlog,
            outbox_oldest_age,
            outbox_published,
            consumer_pending,
            consumer_ack_pending,
            consumer_redelivered,
            dead_letters,
            consumers: Mutex::new(Vec::new()),
            samplings: Mutex::new(Vec::new()),
        }))
    }

    /// Registers a service's own metric. A counter's name is given without `_total`,
    /// which the encoding adds.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.0
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register(name, help, metric);
    }

    /// Registers metrics read at each scrape (cheap reads of memory only).
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.0
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register_collector(collector);
    }

    /// Adds a sampling of the service's own, run by the [`Sampler`] with the
    /// platform's, on the service's database.
    pub fn sample_also<F, Fut>(&self, name: &'static str, sampling: F)
    where
        F: Fn(PgPool) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let sampling: Sampling = Arc::new(move |pool| Box::pin(sampling(pool)));
        self.0
            .samplings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((name, sampling));
    }

    /// Samples the position of a durable consumer and its dead letters.
    pub fn watch_consumer(&self, namespace: &Namespace, spec: &ConsumerSpec) {
        for family in [
            &self.0.consumer_pending,
            &self.0.consumer_ack_pending,
            &self.0.consumer_redelivered,
            &self.0.dead_letters,
        ] {
            // Present from the start, at 0, so that an alert on it has a series.
            drop(family.get_or_create(&ConsumerLabels {
                consumer: spec.durable.clone(),
            }));
        }
        self.0
            .consumers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(WatchedConsumer {
                stream: namespace.stream(spec.source),
                durable: spec.durable.clone(),
            });
    }

    /// Counts events the outbox relay published.
    pub fn outbox_published(&self, events: usize) {
        self.0.outbox_published.inc_by(events as u64);
    }

    /// The registry as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self
            .0
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::warn!(%error, "metrics not encoded");
        }
        text
    }

    /// The layer that counts and times every RPC; `methods` are the full paths
    /// (`/hosted.v1.IntakeService/RegisterStay`) the server serves: any other path is
    /// counted under `unknown`, so that a client cannot make series up.
    pub fn grpc_layer(&self, methods: Vec<String>) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            metrics: self.clone(),
            methods: Arc::new(methods.into_iter().collect()),
        }
    }

    fn observe(&self, method: &MethodLabels, code: tonic::Code, elapsed: Duration) {
        self.0
            .handled
            .get_or_create(&HandledLabels {
                grpc_service: method.grpc_service.clone(),
                grpc_method: method.grpc_method.clone(),
                grpc_code: code_name(code),
            })
            .inc();
        self.0
            .handling
            .get_or_create(method)
            .observe(elapsed.as_secs_f64());
    }
}

/// A gRPC code as go-grpc-prometheus names it (`OK`, `InvalidArgument`…), the names
/// dashboards and alerts already use.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// `hosted_build_info{service,version} 1`.
#[derive(Debug)]
struct BuildInfo {
    service: String,
}

impl Collector for BuildInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let info = ConstGauge::new(1i64);
        let mut family = encoder.encode_descriptor(
            "hosted_build_info",
            "The service and the version it was built from; always 1",
            None,
            info.metric_type(),
        )?;
        let labels = [
            ("service", self.service.as_str()),
            ("version", env!("CARGO_PKG_VERSION")),
        ];
        info.encode(family.encode_family(&labels)?)
    }
}

/// The process's memory, CPU time and start, read from `/proc/self` at each scrape
/// (nothing elsewhere than Linux).
#[derive(Debug)]
struct ProcessCollector;

/// Clock ticks a second in `/proc` (`USER_HZ`): 100 on every Linux architecture that
/// user space sees.
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc` says of this process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcessFigures {
    resident_bytes: i64,
    cpu_seconds: f64,
    start_time_seconds: f64,
}

impl ProcessFigures {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let system = std::fs::read_to_string("/proc/stat").ok()?;
        Self::parse(&stat, &status, &system)
    }

    /// `stat` of `/proc/self/stat`, `status` of `/proc/self/status`, `system` of
    /// `/proc/stat` (its `btime`, the boot's Unix time).
    fn parse(stat: &str, status: &str, system: &str) -> Option<Self> {
        // The command name, in parentheses, may hold spaces and parentheses itself:
        // the fields are counted from the last closing one, the third field first.
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        let field = |number: usize| -> Option<f64> { fields.get(number - 3)?.parse().ok() };
        let (user, system_time, start) = (field(14)?, field(15)?, field(22)?);
        let resident_kib: i64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let boot: f64 = system
            .lines()
            .find_map(|line| line.strip_prefix("btime"))?
            .trim()
            .parse()
            .ok()?;
        Some(Self {
            resident_bytes: resident_kib * 1024,
            cpu_seconds: (user + system_time) / TICKS_PER_SECOND,
            start_time_seconds: boot + start / TICKS_PER_SECOND,
        })
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(figures) = ProcessFigures::read() else {
            return Ok(());
        };
        let resident = ConstGauge::new(figures.resident_bytes);
        resident.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            None,
            resident.metric_type(),
        )?)?;
        let cpu = ConstCounter::new(figures.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let start = ConstGauge::new(figures.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            None,
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

// ------------------------------------------------------------------ the gRPC layer

/// Counts and times every RPC (see [`Metrics::grpc_layer`]).
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
    methods: Arc<std::collections::HashSet<String>>,
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

impl<S> TowerService<http::Request<Body>> for GrpcMetricsService<S>
where
    S: TowerService<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let started = Instant::now();
        let method = method_labels(request.uri().path(), &self.layer.methods);
        let metrics = self.layer.metrics.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = match inner.call(request).await {
                Ok(response) => response,
                Err(error) => {
                    metrics.observe(&method, tonic::Code::Unknown, started.elapsed());
                    return Err(error);
                }
            };
            // An error (and a refusal) is a trailers-only answer: the code is in the
            // headers. Otherwise it comes in the trailers, after the last message.
            if let Some(code) = grpc_status(response.headers()) {
                metrics.observe(&method, code, started.elapsed());
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            let body = ObservedBody {
                inner: body,
                pending: Some(Observation {
                    metrics,
                    method,
                    started,
                }),
            };
            Ok(http::Response::from_parts(parts, Body::new(body)))
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(tonic::Code::from_i32(value.parse().ok()?))
}

/// `/hosted.v1.IntakeService/RegisterStay` as its two labels; a path the server does
/// not serve as `unknown`.
fn method_labels(path: &str, methods: &std::collections::HashSet<String>) -> MethodLabels {
    match path.strip_prefix('/').and_then(|path| path.split_once('/')) {
        Some((service, method)) if methods.contains(path) => MethodLabels {
            grpc_service: service.to_owned(),
            grpc_method: method.to_owned(),
        },
        _ => MethodLabels {
            grpc_service: "unknown".to_owned(),
            grpc_method: "unknown".to_owned(),
        },
    }
}

/// A call whose final code is still to come.
struct Observation {
    metrics: Metrics,
    method: MethodLabels,
    started: Instant,
}

/// A response body that records its call once the trailers (the final code) pass,
/// or as `Canceled` when it is dropped before (the client went away).
struct ObservedBody {
    inner: Body,
    pending: Option<Observation>,
}

impl ObservedBody {
    fn finish(&mut self, code: tonic::Code) {
        if let Some(call) = self.pending.take() {
            call.metrics
                .observe(&call.method, code, call.started.elapsed());
        }
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}

impl HttpBody for ObservedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).unwrap_or(tonic::Code::Unknown);
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(tonic::Code::Internal),
            Poll::Ready(None) => self.finish(tonic::Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

// ------------------------------------------------------------------ the sampler

/// Reads the gauges that need the database or NATS, in the background.
#[derive(Debug)]
pub struct Sampler {
    pub metrics: Metrics,
    pub pool: PgPool,
    pub jetstream: jetstream::Context,
    pub namespace: Namespace,
    pub service: Service,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Sampler {
    /// Samples every `interval` until `shutdown` turns true. A failing round is said
    /// once (and once when sampling works again); the gauges keep their last values.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let outcome = tokio::time::timeout(self.timeout, self.sample())
                .await
                .unwrap_or_else(|_| {
                    Err(format!("not done within {} ms", self.timeout.as_millis()))
                });
            match outcome {
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "metrics sampling failed; the gauges keep their last values");
                }
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("metrics sampling works again");
                }
                _ => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One round: every gauge is tried, the first failure is returned.
    async fn sample(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Err(error) = self.sample_outbox().await {
            problems.push(format!("outbox: {error}"));
        }
        if let Err(error) = self.sample_consumers().await {
            problems.push(error);
        }
        if let Err(error) = self.sample_dead_letters().await {
            problems.push(format!("dead letters: {error}"));
        }
        let samplings: Vec<(&'static str, Sampling)> = self
            .metrics
            .0
            .samplings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (name, sampling) in samplings {
            if let Err(error) = sampling(self.pool.clone()).await {
                problems.push(format!("{name}: {error}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    async fn sample_outbox(&self) -> Result<(), sqlx::Error> {
        let (backlog, oldest_age): (i64, f64) = sqlx::query_as(
            "SELECT count(*),
                    COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0)::float8
             FROM platform_outbox WHERE published_at IS NULL AND refused_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        self.metrics.0.outbox_backlog.set(backlog);
        self.metrics.0.outbox_oldest_age.set(oldest_age.max(0.0));
        Ok(())
    }

    async fn sample_consumers(&self) -> Result<(), String> {
        let consumers = self
            .metrics
            .0
            .consumers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut problems = Vec::new();
        for consumer in consumers {
            // A consumer not made yet (its source stream is not there, or the service
            // has not attached) has nothing pending; it keeps its zeros.
            let info = match self.jetstream.get_stream(&consumer.stream).await {
                Ok(stream) => stream.consumer_info(&consumer.durable).await,
                Err(_) => continue,
            };
            let info = match info {
                Ok(info) => info,
                Err(error)
                    if matches!(
                        error.kind(),
                        jetstream::context::ConsumerInfoErrorKind::NotFound
                            | jetstream::context::ConsumerInfoErrorKind::StreamNotFound
                    ) =>
                {
                    continue;
                }
                Err(error) => {
                    problems.push(format!("consumer {}: {error}", consumer.durable));
                    continue;
                }
            };
            let labels = ConsumerLabels {
                consumer: consumer.durable.clone(),
            };
            let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
            self.metrics
                .0
                .consumer_pending
                .get_or_create(&labels)
                .set(gauge(info.num_pending));
            self.metrics
                .0
                .consumer_ack_pending
                .get_or_create(&labels)
                .set(gauge(info.num_ack_pending as u64));
            self.metrics
                .0
                .consumer_redelivered
                .get_or_create(&labels)
                .set(gauge(info.num_redelivered as u64));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Dead letters by consumer: the per-subject counts of the service's own stream
    /// under `<namespace>.deadletter.<service>.`, whose last token is the consumer
    /// (NATS 2.9 answers a stream's info with subject counts).
    async fn sample_dead_letters(&self) -> Result<(), String> {
        let watched: Vec<String> = self
            .metrics
            .0
            .consumers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|consumer| consumer.durable.clone())
            .collect();
        if watched.is_empty() {
            return Ok(());
        }
        let stream = match self
            .jetstream
            .get_stream(self.namespace.stream(self.service))
            .await
        {
            Ok(stream) => stream,
            // Not provisioned yet: nothing held.
            Err(_) => return Ok(()),
        };
        let mut counts: std::collections::HashMap<String, i64> =
            watched.into_iter().map(|durable| (durable, 0)).collect();
        let mut subjects = stream
            .info_with_subjects(self.namespace.all_dead_letters(self.service))
            .await
            .map_err(|error| error.to_string())?;
        while let Some(entry) = subjects.next().await {
            let (subject, count) = entry.map_err(|error| error.to_string())?;
            if let Some(consumer) = subject.rsplit('.').next() {
                *counts.entry(consumer.to_owned()).or_default() +=
                    i64::try_from(count).unwrap_or(i64::MAX);
            }
        }
        for (consumer, count) in counts {
            self.metrics
                .0
                .dead_letters
                .get_or_create(&ConsumerLabels { consumer })
                .set(count);
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ the endpoint

/// The bound `/metrics` listener, before it serves.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    pub async fn bind(address: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(address).await?,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `GET /metrics` until `shutdown` turns true.
    pub async fn serve(self, metrics: Metrics, mut shutdown: watch::Receiver<bool>) {
        use axum::{Router, http::header, routing::get};
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode()) }
            }),
        );
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(self.listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(%error, "metrics endpoint stopped with an error");
        }
    }
}

/// Starts what `[metrics]` asks for: the endpoint and the sampler, as tasks stopped
/// with the service; returns the endpoint's address (none when not configured).
pub(crate) async fn start(
    config: &MetricsConfig,
    sampler: Sampler,
    tasks: &mut crate::grpc::Tasks,
) -> std::io::Result<Option<SocketAddr>> {
    let Some(listen) = config.listen else {
        return Ok(None);
    };
    let server = MetricsServer::bind(listen).await?;
    let address = server.local_addr();
    tasks.spawn(server.serve(sampler.metrics.clone(), tasks.shutdown()));
    tasks.spawn(sampler.run(tasks.shutdown()));
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_encoded_under_the_names_dashboards_use() {
        // Arrange
        let metrics = Metrics::new(Service::Directory);
        let method = MethodLabels {
            grpc_service: "hosted.v1.DirectoryService".to_owned(),
            grpc_method: "GetAccount".to_owned(),
        };

        // Act
        metrics.observe(
            &method,
            tonic::Code::PermissionDenied,
            Duration::from_millis(3),
        );
        metrics.outbox_published(2);
        let text = metrics.encode();

        // Assert
        for line in [
            "grpc_server_handled_total{grpc_service=\"hosted.v1.DirectoryService\",grpc_method=\"GetAccount\",grpc_code=\"PermissionDenied\"} 1",
            "grpc_server_handling_seconds_bucket{le=\"0.005\",grpc_service=\"hosted.v1.DirectoryService\",grpc_method=\"GetAccount\"} 1",
            "grpc_server_handling_seconds_count{grpc_service=\"hosted.v1.DirectoryService\",grpc_method=\"GetAccount\"} 1",
            "hosted_outbox_published_total 2",
            "hosted_outbox_backlog_events 0",
            "hosted_outbox_oldest_age_seconds 0.0",
            "hosted_build_info{service=\"directory\",version=\"0.1.0\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_path_the_server_does_not_serve_makes_no_series_of_its_own() {
        let methods = ["/hosted.v1.IntakeService/RegisterStay".to_owned()]
            .into_iter()
            .collect();
        let known = method_labels("/hosted.v1.IntakeService/RegisterStay", &methods);
        assert_eq!(known.grpc_method, "RegisterStay");
        let made_up = method_labels("/hosted.v1.IntakeService/Anything123", &methods);
        assert_eq!(made_up.grpc_service, "unknown");
        assert_eq!(made_up.grpc_method, "unknown");
    }

    #[test]
    fn process_figures_are_read_from_proc() {
        let stat = "4242 (a (strange) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 9 0 12345 1000000 2500 18446744073709551615";
        let status = "Name:\tservice\nVmPeak:\t  20000 kB\nVmRSS:\t   10240 kB\n";
        let system = "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n";
        assert_eq!(
            ProcessFigures::parse(stat, status, system),
            Some(ProcessFigures {
                resident_bytes: 10240 * 1024,
                cpu_seconds: 3.0,
                start_time_seconds: 1_700_000_123.45,
            })
        );
        if cfg!(target_os = "linux") {
            let figures = ProcessFigures::read().expect("this process's figures");
            assert!(figures.resident_bytes > 0);
        }
    }
}
