//! Logs and traces: `tracing` with an env filter, OpenTelemetry spans exported over
//! OTLP when an endpoint is configured, and W3C trace context carried across gRPC
//! metadata and NATS headers so that one trace spans call → event → consumer.
//!
//! Spans are always given OpenTelemetry ids, export or not, so that the trace
//! context is propagated even where nothing is collected.

use std::collections::HashMap;

use opentelemetry::{
    Context, global,
    propagation::{Extractor, Injector},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::LevelFilter,
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{Format, Json, JsonFields, Writer},
    },
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::config::{LogFormat, TelemetryConfig};

/// Flushes spans when dropped; keep it alive for the life of the process.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("telemetry shutdown: {error}");
        }
    }
}

/// A log filter (`info,hosted_directory=debug`), its directives trimmed first:
/// tracing-subscriber 0.3 slices a directive with the indices of its trimmed text,
/// so that a space before a directive shifts them, and with a non-ASCII character
/// (`\t0¡=`) panics instead of refusing.
pub fn log_filter(text: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let directives: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .collect();
    EnvFilter::try_new(directives.join(","))
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(
    service: &'static str,
    config: &TelemetryConfig,
) -> Result<TelemetryGuard, Box<dyn std::error::Error>> {
    let (traces, guard) = trace_layer(service, config)?;
    let filter = configured_log_filter(config)?;
    let registry = tracing_subscriber::registry().with(traces);
    match config.format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_filter(filter))
            .try_init()?,
        LogFormat::Json => registry
            .with(json_layer(std::io::stdout).with_filter(filter))
            .try_init()?,
    }
    Ok(guard)
}

/// The JSON log layer, writing to `writer`: a line per event, with the trace it
/// belongs to.
pub fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .fmt_fields(JsonFields::new())
        .event_format(JsonWithTraceId(tracing_subscriber::fmt::format().json()))
}

/// JSON log lines that name their trace: `trace_id`, the OpenTelemetry trace id of
/// the innermost span around the event that has one (spans below INFO have none),
/// first on the line, so that a line leads to its trace and a trace to its lines.
/// Lines outside any span have none.
struct JsonWithTraceId(Format<Json>);

impl<S, N> FormatEvent<S, N> for JsonWithTraceId
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let trace_id = ctx.event_scope().into_iter().flatten().find_map(|span| {
            span.extensions()
                .get::<tracing_opentelemetry::OtelData>()
                .and_then(tracing_opentelemetry::OtelData::trace_id)
                .filter(|id| *id != opentelemetry::TraceId::INVALID)
        });
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match (trace_id, line.strip_prefix('{')) {
            (Some(id), Some(rest)) => write!(writer, "{{\"trace_id\":\"{id}\",{rest}"),
            _ => writer.write_str(&line),
        }
    }
}

/// The OpenTelemetry half of [`init`]: W3C propagation installed, spans given ids
/// (and exported when `config` names an endpoint), and the guard that flushes them.
/// For a subscriber built elsewhere with another log layer (the end-to-end tests'
/// log file), so that its traces are the services' own.
pub fn trace_layer<S>(
    service: &'static str,
    config: &TelemetryConfig,
) -> Result<(impl Layer<S>, TelemetryGuard), Box<dyn std::error::Error>>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = Resource::builder().with_service_name(service).build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    if !config.otlp_endpoint.is_empty() {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&config.otlp_endpoint)
            .build()?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    let tracer = provider.tracer(service);
    // The log filter applies to the logs only: spans stay enabled for OpenTelemetry at
    // INFO and above whatever the log level, or a quiet log would break propagation.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(LevelFilter::INFO);
    Ok((layer, TelemetryGuard { provider }))
}

/// The filter of the logs: `RUST_LOG` when set and readable, else `config.filter`.
pub fn configured_log_filter(
    config: &TelemetryConfig,
) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(text) => log_filter(&text).or_else(|_| log_filter(&config.filter)),
        Err(_) => log_filter(&config.filter),
    }
}

/// W3C trace context of a span, as header values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceHeaders {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

struct MapInjector<'a>(&'a mut HashMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapExtractor<'a>(&'a HashMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

impl TraceHeaders {
    /// The context of the current span.
    pub fn current() -> Self {
        Self::of(&tracing::Span::current())
    }

    pub fn of(span: &tracing::Span) -> Self {
        let context = span.context();
        let mut map = HashMap::new();
        global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut MapInjector(&mut map))
        });
        Self {
            traceparent: map.remove(hosted_contracts::headers::TRACEPARENT),
            tracestate: map
                .remove(hosted_contracts::headers::TRACESTATE)
                .filter(|state| !state.is_empty()),
        }
    }

    fn context(&self) -> Option<Context> {
        let traceparent = self.traceparent.as_ref()?;
        let mut map = HashMap::new();
        map.insert(
            hosted_contracts::headers::TRACEPARENT.to_owned(),
            traceparent.clone(),
        );
        if let Some(state) = &self.tracestate {
            map.insert(
                hosted_contracts::headers::TRACESTATE.to_owned(),
                state.clone(),
            );
        }
        Some(global::get_text_map_propagator(|propagator| {
            propagator.extract(&MapExtractor(&map))
        }))
    }

    /// Makes `span` a child of this context (no-op when there is none). Call it before
    /// anything reads the span's own context: from then on its parent is fixed.
    pub fn adopt(&self, span: &tracing::Span) {
        if let Some(context) = self.context() {
            // An error only means the span is disabled by the filter.
            let _ = span.set_parent(context);
        }
    }

    /// Links `span` to this context (no-op when there is none): a span that works for
    /// several traces at once (a consumer's batch) points to each of them.
    pub fn link(&self, span: &tracing::Span) {
        if let Some(context) = self.context() {
            span.add_link(context.span().span_context().clone());
        }
    }

    /// `span`'s own context, or this one where `span` has none (no OpenTelemetry layer,
    /// or the span filtered out): what something done under `span` belongs to.
    pub fn within(&self, span: &tracing::Span) -> Self {
        let own = Self::of(span);
        if own.traceparent.is_some() {
            own
        } else {
            self.clone()
        }
    }
}

/// Tower layer that opens a span per gRPC request, child of the caller's `traceparent`.
pub fn grpc_span(request: &http::Request<()>) -> tracing::Span {
    let span =
        tracing::info_span!("grpc", rpc.method = %request.uri().path(), otel.kind = "server");
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    TraceHeaders {
        traceparent: header(hosted_contracts::headers::TRACEPARENT),
        tracestate: header(hosted_contracts::headers::TRACESTATE),
    }
    .adopt(&span);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters_with_spaces_and_any_text_are_read_or_refused() {
        // Found by the configuration's property test: this panicked in
        // `EnvFilter::try_new`.
        assert_eq!(
            log_filter("\t0¡=").map(|filter| filter.to_string()).ok(),
            EnvFilter::try_new("0¡=")
                .map(|filter| filter.to_string())
                .ok()
        );
        assert!(log_filter(" info, hosted_intake=debug ,").is_ok());
        assert!(log_filter(" é=info").is_ok());
    }
    use tracing::subscriber::with_default;

    /// What a writer gets, kept for the test to read.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_json_line_in_a_span_names_its_trace() {
        let provider = SdkTracerProvider::builder().build();
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("test"))
                    .with_filter(LevelFilter::INFO),
            )
            .with(json_layer(move || writer.clone()));
        let trace_id = with_default(subscriber, || {
            tracing::info!("outside any span");
            let span = tracing::info_span!("request", learner_id = "0190");
            let _entered = span.enter();
            // A debug span has no OpenTelemetry data: the line names the trace of the
            // span around it.
            let inner = tracing::debug_span!("detail");
            let _inner = inner.enter();
            tracing::info!(learner_id = "0190", "inside");
            span.context().span().span_context().trace_id()
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(parsed.len(), 2, "{text}");
        assert!(parsed[0].get("trace_id").is_none(), "{text}");
        assert_eq!(parsed[1]["trace_id"], trace_id.to_string(), "{text}");
        assert_eq!(parsed[1]["fields"]["message"], "inside", "{text}");
    }

    #[test]
    fn trace_context_round_trips_through_headers() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        with_default(subscriber, || {
            let upstream = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned();
            let span = tracing::info_span!("consumer");
            TraceHeaders {
                traceparent: Some(upstream),
                tracestate: None,
            }
            .adopt(&span);
            let child = span.in_scope(|| TraceHeaders::of(&tracing::info_span!("publish")));
            let traceparent = child.traceparent.expect("a traceparent");
            assert!(
                traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "same trace id: {traceparent}"
            );
            assert!(!traceparent.contains("00f067aa0ba902b7"), "a new span id");
        });
    }

    #[test]
    fn work_for_an_event_stays_in_its_trace_whatever_span_it_runs_in() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let upstream = TraceHeaders {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
            tracestate: None,
        };
        // Without OpenTelemetry, the event's own context is kept.
        let unrecorded = tracing::info_span!("consume");
        assert_eq!(upstream.within(&unrecorded), upstream);

        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        with_default(subscriber, || {
            let batch = tracing::info_span!("consume batch");
            upstream.link(&batch);
            let batch_trace = TraceHeaders::of(&batch);
            let event = batch.in_scope(|| tracing::info_span!("consume"));
            upstream.adopt(&event);
            batch_trace.link(&event);
            let traceparent = upstream.within(&event).traceparent.expect("a traceparent");
            assert!(
                traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "the event's trace, not the batch's: {traceparent}"
            );
            assert_ne!(batch_trace.traceparent, Some(traceparent));
        });
    }
}
