//! The transactional outbox and its relay.
//!
//! A service calls [`enqueue`] inside the transaction that changes its state; the
//! [`Relay`] claims a batch of rows for a short lease, publishes them to JetStream in id
//! order with `Nats-Msg-Id` = event id, many publishes in flight at once under one
//! deadline, and marks them published. No transaction is open while NATS is waited for.
//! A crash between the publish and the mark re-sends rows that JetStream's
//! de-duplication window drops and consumers' inboxes skip; a crash before the publish
//! loses nothing. [`OutboxMonitor`] makes an outbox that does not drain visible.

use std::{sync::Arc, time::Duration};

use async_nats::{HeaderMap, jetstream};
use bytes::Bytes;
use futures::StreamExt;
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

/// Waits, at most `timeout`, until the relay has published every one of `event_ids`
/// (or set it aside); says whether it has. A restatement answers once its events are
/// in NATS, so that whoever drives it knows when consumers can have seen them.
pub async fn wait_published(
    pool: &PgPool,
    event_ids: &[Uuid],
    timeout: Duration,
) -> Result<bool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM platform_outbox
             WHERE event_id = ANY($1) AND published_at IS NULL AND refused_at IS NULL",
        )
        .bind(event_ids)
        .fetch_one(pool)
        .await?;
        if waiting == 0 {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    /// How long one batch may wait for its acknowledgements, all of them together.
    publish_timeout: Duration,
    /// Published rows are kept this long (for inspection), then deleted.
    retention: Duration,
    /// Set when NATS said no stream takes the subjects (the stream was deleted): the
    /// relay provisions it again before its next batch.
    stream_lost: std::sync::atomic::AtomicBool,
    /// Where the events published are counted, if anywhere.
    metrics: Option<crate::metrics::Metrics>,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        jetstream: jetstream::Context,
        stream: async_nats::jetstream::stream::Config,
        signal: OutboxSignal,
        publish_timeout: Duration,
    ) -> Self {
        Self {
            pool,
            jetstream,
            stream,
            signal,
            batch_size: 1000,
            poll_interval: Duration::from_secs(1),
            publish_timeout,
            retention: Duration::from_secs(24 * 3600),
            stream_lost: std::sync::atomic::AtomicBool::new(false),
            metrics: None,
        }
    }

    /// Counts the events published in `metrics` (`hosted_outbox_published_total`).
    pub fn counting(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// How long a claimed batch stays out of other relays' reach: the publish deadline
    /// and a margin for the statements around it. A relay that dies mid-batch delays its
    /// rows by this much at most.
    fn lease(&self) -> Duration {
        self.publish_timeout + Duration::from_secs(5)
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
            if self
                .stream_lost
                .swap(false, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(stream = %self.stream.name, "the stream is gone: provisioning it again");
                provisioned = false;
            }
            let outcome = if provisioned {
                self.publish_batch().await
            } else {
                let provisioning = tokio::time::timeout(
                    self.publish_timeout,
                    nats::ensure_stream(&self.jetstream, self.stream.clone()),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(nats::NatsError::Stream {
                        stream: self.stream.name.clone(),
                        reason: "no answer in time".to_owned(),
                    })
                });
                provisioning
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
    ///
    /// No transaction is open while NATS is waited for: the rows are claimed for a
    /// lease in one statement, published with every acknowledgement awaited at once
    /// under one deadline, then marked published (or released) in another statement.
    /// A row published but not marked (a crash, an acknowledgement lost) goes again
    /// later, and JetStream's de-duplication on `Nats-Msg-Id` drops the copy.
    async fn publish_batch(&self) -> Result<usize, String> {
        // SKIP LOCKED: replicas claim disjoint batches without waiting on each other.
        let mut rows: Vec<PendingRow> = sqlx::query_as(
            "UPDATE platform_outbox SET claimed_until = now() + make_interval(secs => $2)
             WHERE id IN (
                 SELECT id FROM platform_outbox
                 WHERE published_at IS NULL AND refused_at IS NULL
                   AND (claimed_until IS NULL OR claimed_until < now())
                 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, event_id, subject, event_type, payload, traceparent, tracestate",
        )
        .bind(self.batch_size)
        .bind(self.lease().as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        if rows.is_empty() {
            return Ok(0);
        }
        rows.sort_by_key(|row| row.id);
        let claimed: Vec<i64> = rows.iter().map(|row| row.id).collect();
        let mut published: Vec<i64> = Vec::with_capacity(rows.len());
        let mut refused: Vec<(&PendingRow, String)> = Vec::new();
        let mut first_error: Option<String> = None;
        // One deadline for the whole batch: sending (which waits while the client's
        // buffers are full) and every acknowledgement, awaited together.
        let finished = tokio::time::timeout(self.publish_timeout, async {
            let mut acks = futures::stream::FuturesUnordered::new();
            for row in &rows {
                match self.publish(row).await {
                    Ok(ack) => acks.push(async move { (row.id, ack.await.map(|_| ())) }),
                    // This event alone can never go: set aside, the others go on.
                    Err(PublishFailure::Refused(reason)) => refused.push((row, reason)),
                    Err(PublishFailure::Failed(error)) => {
                        first_error.get_or_insert(error);
                        break;
                    }
                }
            }
            while let Some((id, ack)) = acks.next().await {
                match ack {
                    Ok(()) => published.push(id),
                    Err(error) => {
                        if error.kind() == jetstream::context::PublishErrorKind::StreamNotFound {
                            self.stream_lost
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        first_error.get_or_insert(error.to_string());
                    }
                }
            }
        })
        .await;
        if finished.is_err() {
            first_error.get_or_insert(format!(
                "no acknowledgement within {} ms",
                self.publish_timeout.as_millis()
            ));
        }
        for (row, reason) in &refused {
            tracing::error!(
                event_id = %row.event_id,
                subject = %row.subject,
                bytes = row.payload.len(),
                reason = %reason,
                "outbox event refused by NATS for good: set aside, not published"
            );
            sqlx::query(
                "UPDATE platform_outbox SET refused_at = now(), refusal = $2, claimed_until = NULL
                 WHERE id = $1",
            )
            .bind(row.id)
            .bind(reason)
            .execute(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        }
        // Marks what was acknowledged and releases the rest, for the next attempt.
        sqlx::query(
            "UPDATE platform_outbox
             SET published_at = CASE WHEN id = ANY($1) THEN now() END, claimed_until = NULL
             WHERE id = ANY($2) AND published_at IS NULL",
        )
        .bind(&published)
        .bind(&claimed)
        .execute(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        tracing::debug!(count = published.len(), "outbox rows published");
        if let Some(metrics) = &self.metrics {
            metrics.outbox_published(published.len());
        }
        match first_error {
            Some(error) => Err(format!(
                "{} of {} events not acknowledged: {error}",
                rows.len() - published.len(),
                rows.len()
            )),
            // Events set aside count as handled (a full batch is followed at once).
            None => Ok(published.len() + refused.len()),
        }
    }

    async fn publish(
        &self,
        row: &PendingRow,
    ) -> Result<jetstream::context::PublishAckFuture, PublishFailure> {
        let mut headers = HeaderMap::new();
        headers.insert(headers::NATS_MSG_ID, row.event_id.to_string().as_str());
        headers.insert(headers::EVENT_TYPE, row.event_type.as_str());
        if let Some(traceparent) = &row.traceparent {
            headers.insert(headers::TRACEPARENT, traceparent.as_str());
        }
        if let Some(tracestate) = &row.tracestate {
            headers.insert(headers::TRACESTATE, tracestate.as_str());
        }
        self.jetstream
            .publish_with_headers(
                row.subject.clone(),
                headers,
                Bytes::from(row.payload.clone()),
            )
            .await
            .map_err(|error| match error.kind() {
                jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                    PublishFailure::Refused(error.to_string())
                }
                _ => PublishFailure::Failed(error.to_string()),
            })
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

/// Why one event was not sent.
#[derive(Debug)]
enum PublishFailure {
    /// NATS can never take this event (it is larger than the server's maximum
    /// payload): it is set aside.
    Refused(String),
    /// Sending failed (NATS away, a full buffer…): tried again later.
    Failed(String),
}

/// Watches the age of the oldest unpublished event, so that a relay that cannot
/// publish (NATS away or frozen, a relay stuck) shows: the health service reports the
/// component `hosted.<service>.outbox` NOT_SERVING while that age is over the
/// threshold, and the crossing is logged once each way.
#[derive(Debug)]
pub struct OutboxMonitor {
    pub pool: PgPool,
    pub health: crate::grpc::Readiness,
    /// The health service's name for the outbox, e.g. `hosted.intake.outbox`.
    pub component: String,
    /// Age of the oldest unpublished event beyond which the outbox is stale.
    pub stale_after: Duration,
}

impl OutboxMonitor {
    /// The health service's name for a service's outbox.
    pub fn component(service: hosted_contracts::subjects::Service) -> String {
        format!("hosted.{service}.outbox")
    }

    /// Age of the oldest unpublished event; zero when everything is published.
    pub async fn oldest_unpublished(pool: &PgPool) -> Result<Duration, sqlx::Error> {
        let age: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM now() - created_at)::float8 FROM platform_outbox
             WHERE published_at IS NULL AND refused_at IS NULL ORDER BY id LIMIT 1",
        )
        .fetch_optional(pool)
        .await?;
        Ok(Duration::from_secs_f64(age.unwrap_or_default().max(0.0)))
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let period =
            (self.stale_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut stale = false;
        self.health.report(&self.component, true).await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => break,
            }
            // A database that does not answer says nothing about the outbox: the
            // status stays as it was (the service's other checks show the database).
            let Ok(Ok(age)) = tokio::time::timeout(
                period.max(Duration::from_secs(1)),
                Self::oldest_unpublished(&self.pool),
            )
            .await
            else {
                continue;
            };
            let now_stale = age > self.stale_after;
            if now_stale == stale {
                continue;
            }
            stale = now_stale;
            if stale {
                tracing::warn!(
                    oldest_unpublished_ms = age.as_millis() as u64,
                    threshold_ms = self.stale_after.as_millis() as u64,
                    "outbox events wait to be published beyond the threshold"
                );
            } else {
                tracing::info!("outbox caught up");
            }
            self.health.report(&self.component, !stale).await;
        }
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
