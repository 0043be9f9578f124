//! NATS connection and JetStream provisioning, restricted to what NATS 2.9 honours.
//!
//! async-nats is built without its `server_2_10` feature, so the stream and consumer
//! configurations it sends carry no 2.10+ field (metadata, compression, subject
//! transforms, several filter subjects) that a 2.9 server would silently ignore; the
//! tests check the JSON that goes on the wire.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};
use hosted_contracts::subjects::{Namespace, Service};

use crate::config::NatsConfig;

/// A JetStream context, for services that do not depend on the client themselves.
pub type JetStream = jetstream::Context;

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("connecting to NATS: {0}")]
    Connect(#[source] async_nats::ConnectError),
    #[error("provisioning stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    #[error("provisioning consumer {consumer} on {stream}: {reason}")]
    Consumer {
        stream: String,
        consumer: String,
        reason: String,
    },
}

/// Connects; when the server is not up yet the client keeps trying in the background,
/// so that a service starts (and its outbox fills) while NATS is away.
pub async fn connect(
    config: &NatsConfig,
    client_name: &str,
) -> Result<async_nats::Client, NatsError> {
    connect_options(config, client_name)
        .retry_on_initial_connect()
        .connect(seeds(config)?)
        .await
        .map_err(NatsError::Connect)
}

/// The servers of `config.url`, one or more.
pub fn seeds(config: &NatsConfig) -> Result<Vec<async_nats::ServerAddr>, NatsError> {
    config
        .seeds()
        .map(|seed| {
            seed.parse::<async_nats::ServerAddr>().map_err(|error| {
                NatsError::Connect(async_nats::ConnectError::with_source(
                    async_nats::ConnectErrorKind::ServerParse,
                    error,
                ))
            })
        })
        .collect()
}

/// How a service connects: as its own user, over TLS when asked for, receiving on its
/// own inbox prefix. Without [`connect`]'s retries, so that a caller (a test) sees a
/// refusal at once.
pub fn connect_options(config: &NatsConfig, client_name: &str) -> async_nats::ConnectOptions {
    let mut options = async_nats::ConnectOptions::new()
        .name(client_name)
        .connection_timeout(Duration::from_secs(5));
    if !config.user.is_empty() {
        options = options
            .user_and_password(config.user.clone(), config.password.clone())
            // The user's permissions let it receive on this prefix only: replies and
            // pulled messages meant for another service never reach it.
            .custom_inbox_prefix(format!("_INBOX.{}", config.user));
    }
    if config.tls_required() {
        install_crypto_provider();
        options = options.require_tls(true);
    }
    if let Some(ca_path) = &config.ca_path {
        options = options.add_root_certificates(ca_path.clone());
    }
    if let (Some(cert_path), Some(key_path)) = (&config.cert_path, &config.key_path) {
        options = options.add_client_certificate(cert_path.clone(), key_path.clone());
    }
    options
}

/// async-nats builds its TLS configuration with rustls' process-wide default crypto
/// provider, which rustls cannot choose by itself once two are compiled in (another
/// crate may bring aws-lc-rs): install ring, the one async-nats is built with, unless
/// something installed one already.
fn install_crypto_provider() {
    if async_nats::rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing the race to another installer is fine: a provider is installed.
        let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
    }
}

/// The configuration of the stream that holds everything `service` publishes.
pub fn stream_config(
    namespace: &Namespace,
    service: Service,
    config: &NatsConfig,
) -> stream::Config {
    stream::Config {
        name: namespace.stream(service),
        subjects: vec![
            namespace.all_of(service),
            namespace.all_dead_letters(service),
        ],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::Old,
        duplicate_window: config.duplicate_window,
        // Facts are kept a year: long enough for a consumer rebuilt from scratch.
        max_age: Duration::from_secs(365 * 24 * 3600),
        num_replicas: config.replicas,
        ..Default::default()
    }
}

/// Creates the service's stream, or brings an existing one to the wanted settings.
pub async fn ensure_stream(
    jetstream: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, NatsError> {
    let name = config.name.clone();
    let failure = |reason: String| NatsError::Stream {
        stream: name.clone(),
        reason,
    };
    match jetstream.get_stream(&name).await {
        Ok(mut existing) => {
            let info = existing.info().await.map_err(|e| failure(e.to_string()))?;
            if info.config.subjects != config.subjects
                || info.config.duplicate_window != config.duplicate_window
                || info.config.num_replicas != config.num_replicas
            {
                jetstream
                    .update_stream(&config)
                    .await
                    .map_err(|e| failure(e.to_string()))?;
            }
            Ok(existing)
        }
        Err(error) if is_stream_not_found(&error) => jetstream
            .create_stream(config)
            .await
            .map_err(|e| failure(e.to_string())),
        Err(error) => Err(failure(error.to_string())),
    }
}

fn is_stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(inner)
            if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// A durable pull consumer with explicit acks and one filter subject (all 2.9 allows).
pub fn consumer_config(durable: &str, filter_subject: String, config: &NatsConfig) -> pull::Config {
    pull::Config {
        durable_name: Some(durable.to_owned()),
        filter_subject,
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: config.ack_wait,
        // One more than the handler's attempts: the last delivery is the one that
        // moves the event to the dead letters, so the server never drops it silently.
        max_deliver: config.max_deliver + 1,
        max_ack_pending: 1024,
        ..Default::default()
    }
}

/// Gets or creates a durable consumer on another service's stream, waiting for that
/// stream to exist (its owner may start later).
pub async fn ensure_consumer(
    jetstream: &jetstream::Context,
    stream: &str,
    config: pull::Config,
) -> Result<jetstream::consumer::Consumer<pull::Config>, NatsError> {
    let consumer = config.durable_name.clone().unwrap_or_default();
    let failure = |reason: String| NatsError::Consumer {
        stream: stream.to_owned(),
        consumer: consumer.clone(),
        reason,
    };
    let stream_handle = jetstream
        .get_stream(stream)
        .await
        .map_err(|e| failure(e.to_string()))?;
    let mut existing = stream_handle
        .get_or_create_consumer(&consumer, config.clone())
        .await
        .map_err(|e| failure(e.to_string()))?;
    // A consumer made by an older version keeps its settings unless told: bring the
    // ones that may change between versions up to date (NATS 2.9 edits them in place,
    // the consumer keeps its position).
    let current = existing
        .info()
        .await
        .map_err(|e| failure(e.to_string()))?
        .config
        .clone();
    if current.ack_wait != config.ack_wait
        || current.max_deliver != config.max_deliver
        || current.filter_subject != config.filter_subject
    {
        match stream_handle.create_consumer(config).await {
            Ok(updated) => {
                tracing::info!(%consumer, %stream, "consumer settings updated");
                return Ok(updated);
            }
            Err(error) => {
                tracing::warn!(%consumer, %stream, %error, "consumer settings not updated; the old ones stay");
            }
        }
    }
    Ok(existing)
}

/// How many events of `stream` the durable consumer `durable` has not applied yet:
/// those not yet delivered and those delivered but not acknowledged; none when the
/// stream does not exist (nothing was published there yet).
pub async fn consumer_backlog(
    jetstream: &jetstream::Context,
    stream: &str,
    durable: &str,
) -> Result<u64, NatsError> {
    let failure = |reason: String| NatsError::Consumer {
        stream: stream.to_owned(),
        consumer: durable.to_owned(),
        reason,
    };
    let stream_handle = match jetstream.get_stream(stream).await {
        Ok(handle) => handle,
        Err(error) if is_stream_not_found(&error) => return Ok(0),
        Err(error) => return Err(failure(error.to_string())),
    };
    let info = stream_handle
        .consumer_info(durable)
        .await
        .map_err(|e| failure(e.to_string()))?;
    Ok(info.num_pending + info.num_ack_pending as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fields a NATS 2.9 server knows in a stream configuration.
    const STREAM_FIELDS_2_9: &[&str] = &[
        "name",
        "description",
        "subjects",
        "retention",
        "max_consumers",
        "max_msgs",
        "max_bytes",
        "max_age",
        "max_msgs_per_subject",
        "max_msg_size",
        "storage",
        "num_replicas",
        "no_ack",
        "discard",
        "duplicate_window",
        "placement",
        "mirror",
        "sources",
        "sealed",
        "deny_delete",
        "deny_purge",
        "allow_rollup_hdrs",
        "republish",
        "allow_direct",
        "mirror_direct",
        "discard_new_per_subject",
    ];

    /// Fields a NATS 2.9 server knows in a consumer configuration.
    const CONSUMER_FIELDS_2_9: &[&str] = &[
        "durable_name",
        "name",
        "description",
        "deliver_policy",
        "opt_start_seq",
        "opt_start_time",
        "ack_policy",
        "ack_wait",
        "max_deliver",
        "backoff",
        "filter_subject",
        "replay_policy",
        "rate_limit_bps",
        "sample_freq",
        "max_waiting",
        "max_ack_pending",
        "flow_control",
        "idle_heartbeat",
        "headers_only",
        "max_batch",
        "max_expires",
        "max_bytes",
        "inactive_threshold",
        "num_replicas",
        "mem_storage",
        "deliver_subject",
        "deliver_group",
    ];

    fn keys(value: serde_json::Value) -> Vec<String> {
        value
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn stream_config_speaks_only_nats_2_9() {
        let config = stream_config(
            &Namespace::default(),
            Service::Intake,
            &NatsConfig::default(),
        );
        for key in keys(serde_json::to_value(&config).expect("json")) {
            assert!(
                STREAM_FIELDS_2_9.contains(&key.as_str()),
                "2.9 ignores stream field {key}"
            );
        }
    }

    #[test]
    fn consumer_config_speaks_only_nats_2_9() {
        let config = consumer_config(
            "directory-intake",
            "hosted.intake.>".to_owned(),
            &NatsConfig::default(),
        );
        let config = jetstream::consumer::IntoConsumerConfig::into_consumer_config(config);
        for key in keys(serde_json::to_value(&config).expect("json")) {
            assert!(
                CONSUMER_FIELDS_2_9.contains(&key.as_str()),
                "2.9 ignores consumer field {key}"
            );
        }
    }
}
