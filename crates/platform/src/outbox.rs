//! The transactional outbox and its relay.
//!
//! A service calls [`enqueue`] inside the transaction that changes its state; the
//! [`Relay`] publishes the rows to JetStream in id order with `Nats-Msg-Id` = event id,
//! many publishes in flight at once, and marks them published. A crash between the
//! publish and the mark re-sends rows that JetStream's de-duplication window drops and
//! consumers' inboxes skip; a crash before the publish loses nothing.

use std::{sync::Arc, time::Duration};

use async_nats::{HeaderMap, jetstream};
use bytes::Bytes;
use hosted_contracts::headers;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::{nats, telemetry::TraceHeaders};

/// One event to publish.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub event_id: Uuid,
    /// Full subject, namespace included.
    pub subject: String,
    /// Protobuf full name of the payload, e.g. `hosted.v1.LearnerEvent`.
    pub event_type: &'static str,
    pub payload: Vec<u8>,
    /// The trace the event belongs to when it is not the current span's: a consumer
    /// applying a batch gives each effect the trace of the event that caused it
    /// ([`crate::inbox::Delivery::trace`]). `None`: the current span's.
    pub trace: Option<TraceHeaders>,
}

/// Writes events into the outbox, in the caller's transaction, each with its trace
/// context (its own, or the current span's).
pub async fn enqueue(conn: &mut PgConnection, events: &[OutboxEvent]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let current = TraceHeaders::current();
    let traces: Vec<&TraceHeaders> = events
        .iter()
        .map(|event| event.trace.as_ref().unwrap_or(&current))
        .collect();
    let traceparents: Vec<Option<&str>> = traces
        .iter()
        .map(|trace| trace.traceparent.as_deref())
        .collect();
    let tracestates: Vec<Option<&str>> = traces
        .iter()
        .map(|trace| trace.tracestate.as_deref())
        .collect();
    let ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
    let subjects: Vec<&str> = events.iter().map(|event| event.subject.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|event| event.event_type).collect();
    let payloads: Vec<&[u8]> = events
        .iter()
        .map(|event| event.payload.as_slice())
        .collect();
    sqlx::query(
        "INSERT INTO platform_outbox (event_id, subject, event_type, payload, traceparent, tracestate)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[])",
    )
    .bind(&ids)
    .bind(&subjects)
    .bind(&types)
    .bind(&payloads)
    .bind(&traceparents)
    .bind(&tracestates)
    .execute(conn)
    .await?;
    Ok(())
}

/// Wakes the relay after a commit, so that events leave without waiting for the poll.
#[derive(Debug, Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    id: i64,
    event_id: Uuid,
    subject: String,
    event_type: String,
    payload: Vec<u8>,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

/// Publishes the outbox.
#[derive(Debug)]
pub struct Relay {
    pool: PgPool,
    jetstream: jetstream::Context,
    stream: async_nats::jetstream::stream::Config,
    signal: OutboxSignal,
    batch_size: i64,
    poll_interval: Duration,
    /// Published rows are kept this long (for inspection), then deleted.
    retention: Duration,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        jetstream: jetstream::Context,
        stream: async_nats::jetstream::stream::Config,
        signal: OutboxSignal,
    ) -> Self {
        Self {
            pool,
            jetstream,
            stream,
            signal,
            batch_size: 1000,
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(24 * 3600),
        }
    }

    /// Runs until `shutdown` turns true; what is in flight is finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        // The stream is provisioned lazily, so the service starts while NATS is away.
        let mut provisioned = false;
        let mut last_cleanup = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let outcome = if provisioned {
                self.publish_batch().await
            } else {
                nats::ensure_stream(&self.jetstream, self.stream.clone())
                    .await
                    .map(|_| {
                        provisioned = true;
                        tracing::info!(stream = %self.stream.name, "outbox relay attached to its stream");
                        0
                    })
                    .map_err(|error| error.to_string())
            };
            let wait = match outcome {
                Ok(published) if published as i64 == self.batch_size => Duration::ZERO,
                Ok(_) => {
                    backoff.reset();
                    self.poll_interval
                }
                Err(reason) => {
                    let wait = backoff.next_delay();
                    if backoff.should_log() {
                        tracing::warn!(error = %reason, retry_in_ms = wait.as_millis() as u64, "outbox relay cannot publish");
                    }
                    wait
                }
            };
            if last_cleanup.elapsed() > Duration::from_secs(600) {
                last_cleanup = tokio::time::Instant::now();
                if let Err(error) = self.delete_old_rows().await {
                    tracing::warn!(%error, "outbox cleanup failed");
                }
            }
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = self.signal.0.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::debug!("outbox relay stopped");
    }

    /// Publishes one batch of pending rows; returns how many were published.
    async fn publish_batch(&self) -> Result<usize, String> {
        let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
        // SKIP LOCKED: replicas share the outbox without publishing a row twice at once.
        let rows: Vec<PendingRow> = sqlx::query_as(
            "SELECT id, event_id, subject, event_type, payload, traceparent, tracestate
             FROM platform_outbox WHERE published_at IS NULL
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut acks = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut headers = HeaderMap::new();
            headers.insert(headers::NATS_MSG_ID, row.event_id.to_string().as_str());
            headers.insert(headers::EVENT_TYPE, row.event_type.as_str());
            if let Some(traceparent) = &row.traceparent {
                headers.insert(headers::TRACEPARENT, traceparent.as_str());
            }
            if let Some(tracestate) = &row.tracestate {
                headers.insert(headers::TRACESTATE, tracestate.as_str());
            }
            let ack = self
                .jetstream
                .publish_with_headers(
                    row.subject.clone(),
                    headers,
                    Bytes::from(row.payload.clone()),
                )
                .await
                .map_err(|e| e.to_string());
            acks.push(ack);
        }
        let mut published = Vec::with_capacity(rows.len());
        let mut first_error = None;
        for (row, ack) in rows.iter().zip(acks) {
            let outcome = match ack {
                Ok(future) => future.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(()) => published.push(row.id),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        sqlx::query("UPDATE platform_outbox SET published_at = now() WHERE id = ANY($1)")
            .bind(&published)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        tracing::debug!(count = published.len(), "outbox rows published");
        match first_error {
            Some(error) => Err(format!(
                "{} of {} events not acknowledged: {error}",
                rows.len() - published.len(),
                rows.len()
            )),
            None => Ok(published.len()),
        }
    }

    async fn delete_old_rows(&self) -> Result<(), sqlx::Error> {
        sqlx::query(
            "DELETE FROM platform_outbox WHERE published_at < now() - make_interval(secs => $1)",
        )
        .bind(self.retention.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Exponential backoff from 100 ms to 30 s, logging the first failure and then
/// every tenth, so that an outage does not flood the logs.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub fn new() -> Self {
        Self { failures: 0 }
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exponent = self.failures.min(9);
        Duration::from_millis((100u64 << exponent).min(30_000))
    }

    pub fn should_log(&self) -> bool {
        self.failures == 1 || self.failures.is_multiple_of(10)
    }
}
