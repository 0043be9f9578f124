//! The inbox consumer: a durable pull consumer whose handler runs in a database
//! transaction that also records the event id, so that an event is applied once
//! however often it is delivered.
//!
//! Messages are taken in batches and applied in one transaction, each behind a
//! savepoint: one failing event rolls back only itself. A failing event is retried
//! with a growing delay up to the configured number of deliveries, then published to
//! the consumer's dead letters (under the consuming service's own prefix) and
//! acknowledged. [`DeadLetters`] lists and replays them. A batch the database refuses
//! is kept with in-progress acks and tried again soon.

use std::{future::Future, sync::Arc, time::Duration};

use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{DeliverPolicy, pull},
    },
};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use hosted_contracts::{
    headers,
    subjects::{Namespace, Service},
};
use sqlx::{Acquire, PgConnection, PgPool};
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use crate::{config::NatsConfig, nats, outbox::Backoff, telemetry::TraceHeaders};

/// One delivered event.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub subject: String,
    pub event_id: Uuid,
    pub payload: Bytes,
    /// The trace this event's effects belong to: that of the span the event is
    /// consumed in, a child of the context it came with. In a batch, a handler that
    /// writes an effect for one event (an outbox event, a row a later LDAP write is
    /// traced from) gives it this event's trace, not the batch's.
    pub trace: TraceHeaders,
    /// 1 on the first delivery.
    pub delivered: i64,
}

/// Why a handler could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The event can never be applied as it is (undecodable, invalid): dead-letter it now.
    #[error("{0}")]
    Permanent(String),
    /// Something may work later (database busy, a missing dependency): retry.
    #[error("{0}")]
    Transient(String),
}

impl From<sqlx::Error> for HandleError {
    fn from(error: sqlx::Error) -> Self {
        HandleError::Transient(format!("database: {error}"))
    }
}

/// What a consumer does with each event, inside the inbox transaction.
pub trait Handler: Send + Sync + 'static {
    fn handle<'c>(
        &'c self,
        conn: &'c mut PgConnection,
        delivery: &'c Delivery,
    ) -> impl Future<Output = Result<(), HandleError>> + Send + 'c;

    /// Whether the handler applies a batch of new events at once, in set statements
    /// ([`Handler::handle_many`], which returns true when it applied them all). On an
    /// error the batch is rolled back and the events are
    /// applied one by one, each behind its savepoint, so that the failing one is found
    /// and only it is retried or dead-lettered.
    fn handles_many(&self) -> bool {
        false
    }

    /// See [`Handler::handles_many`]; called only when it says true.
    fn handle_many<'c>(
        &'c self,
        _conn: &'c mut PgConnection,
        _deliveries: &'c [Delivery],
    ) -> impl Future<Output = Result<bool, HandleError>> + Send + 'c {
        async { Ok(false) }
    }

    /// Called after a batch that changed something has committed.
    fn committed(&self) {}
}

/// A consumer of another service's events.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Durable consumer name, also the inbox key, e.g. `directory-intake`.
    pub durable: String,
    /// The service whose stream is consumed.
    pub source: Service,
    /// The consuming service (owner of the dead letters).
    pub owner: Service,
}

/// Runs a handler over a durable consumer until shutdown.
#[derive(Debug)]
pub struct InboxConsumer<H> {
    spec: ConsumerSpec,
    namespace: Namespace,
    config: NatsConfig,
    pool: PgPool,
    jetstream: jetstream::Context,
    handler: Arc<H>,
    batch_size: usize,
    /// Whether acks are failing (NATS away): said once when they start to, and once
    /// when they are confirmed again, not once per event.
    acks_failing: std::sync::atomic::AtomicBool,
}

const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// How soon the events a stopping consumer hands back are delivered again.
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);

/// The longest wait between two tries of a batch the database refused.
const MAX_DATABASE_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How long a batch waits for more events once it has one.
const LINGER: Duration = Duration::from_millis(10);

impl<H: Handler> InboxConsumer<H> {
    pub fn new(
        spec: ConsumerSpec,
        config: &NatsConfig,
        pool: PgPool,
        jetstream: jetstream::Context,
        handler: Arc<H>,
    ) -> Self {
        Self {
            spec,
            namespace: config.namespace(),
            config: config.clone(),
            pool,
            jetstream,
            handler,
            batch_size: 256,
            acks_failing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Attaches to the source stream, waiting for it to exist. Returns once the
    /// durable consumer exists, so that readiness can follow.
    pub async fn attach(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<jetstream::consumer::Consumer<pull::Config>> {
        let stream = self.namespace.stream(self.spec.source);
        let config = nats::consumer_config(
            &self.spec.durable,
            self.namespace.all_of(self.spec.source),
            &self.config,
        );
        let mut backoff = Backoff::new();
        loop {
            match nats::ensure_consumer(&self.jetstream, &stream, config.clone()).await {
                Ok(consumer) => {
                    tracing::info!(consumer = %self.spec.durable, %stream, "consumer attached");
                    return Some(consumer);
                }
                Err(error) => {
                    let wait = backoff.next_delay();
                    if backoff.should_log() {
                        tracing::warn!(consumer = %self.spec.durable, %error, "waiting for the source stream");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => return None,
                    }
                }
            }
        }
    }

    /// Consumes until `shutdown` turns true; the batch in hand is finished first.
    pub async fn run(
        self,
        mut consumer: jetstream::consumer::Consumer<pull::Config>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new();
        // Set when the server says the durable consumer is gone (its stream was
        // deleted): it is made again, on the stream made again, before the next pull.
        let mut consumer_lost = false;
        'reconnect: loop {
            if std::mem::take(&mut consumer_lost) {
                tracing::warn!(consumer = %self.spec.durable, "the consumer is gone: attaching again");
                match self.attach(&mut shutdown).await {
                    Some(attached) => consumer = attached,
                    None => break 'reconnect,
                }
            }
            let mut messages = match consumer
                .stream()
                .max_messages_per_batch(self.batch_size)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await
            {
                Ok(messages) => messages,
                Err(error) => {
                    let wait = backoff.next_delay();
                    if backoff.should_log() {
                        tracing::warn!(consumer = %self.spec.durable, %error, "cannot pull");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue 'reconnect,
                        _ = shutdown.changed() => break 'reconnect,
                    }
                }
            };
            loop {
                // Shutdown first: what has arrived is handed back, not started.
                let first = tokio::select! {
                    biased;
                    _ = shutdown.changed() => None,
                    next = messages.next() => Some(next),
                };
                let Some(first) = first else {
                    self.hand_back(Vec::new(), messages).await;
                    break 'reconnect;
                };
                let mut batch = match first {
                    Some(Ok(message)) => vec![message],
                    Some(Err(error)) => {
                        tracing::debug!(consumer = %self.spec.durable, %error, "pull interrupted");
                        // Deleted while pulling, or already gone when asked (no
                        // responder for it): attached again, which waits for the stream.
                        if matches!(
                            error.kind(),
                            pull::MessagesErrorKind::ConsumerDeleted
                                | pull::MessagesErrorKind::NoResponders
                        ) {
                            consumer_lost = true;
                            continue 'reconnect;
                        }
                        continue;
                    }
                    None => continue 'reconnect,
                };
                // Take what has arrived, and what arrives within a moment: under load
                // the batches fill up (fewer transactions), and alone an event waits
                // at most LINGER.
                let linger = tokio::time::sleep(LINGER);
                tokio::pin!(linger);
                while batch.len() < self.batch_size {
                    let next = match messages.next().now_or_never() {
                        Some(next) => next,
                        None => tokio::select! {
                            next = messages.next() => next,
                            _ = &mut linger => break,
                        },
                    };
                    match next {
                        Some(Ok(message)) => batch.push(message),
                        _ => break,
                    }
                }
                self.skip_dead_letters(&mut batch).await;
                if !batch.is_empty()
                    && !self
                        .apply_until_done(&mut batch, &mut messages, &mut shutdown)
                        .await
                {
                    self.hand_back(batch, messages).await;
                    break 'reconnect;
                }
                backoff.reset();
            }
        }
        tracing::debug!(consumer = %self.spec.durable, "consumer stopped");
    }

    /// Acknowledges and drops the dead letters of a batch: another consumer's, which
    /// earlier versions kept among the facts this consumer takes. They are not events
    /// (their owner lists and replays them); taken as events they would be dead-lettered
    /// again, one becoming several.
    async fn skip_dead_letters(&self, batch: &mut Vec<jetstream::Message>) {
        let (dead, events): (Vec<_>, Vec<_>) =
            std::mem::take(batch).into_iter().partition(|message| {
                message
                    .headers
                    .as_ref()
                    .is_some_and(|headers| headers.get(headers::DEAD_LETTER_CONSUMER).is_some())
            });
        *batch = events;
        if dead.is_empty() {
            return;
        }
        tracing::debug!(consumer = %self.spec.durable, count = dead.len(), "dead letters skipped");
        futures::future::join_all(dead.iter().map(|message| message.double_ack())).await;
    }

    /// Applies a batch, keeping it (in-progress acks) while the work lasts and while a
    /// database failure is retried, with a growing delay of at most
    /// [`MAX_DATABASE_RETRY_DELAY`]. Events that arrive meanwhile join the batch, so
    /// that they are kept too. Returns false when shutdown came first, the batch not
    /// applied (to be handed back).
    ///
    /// Why not a nak on a database failure: JetStream counts every delivery toward
    /// `max_deliver` and stops delivering an event that reaches it, so a PostgreSQL
    /// outage longer than the naks' delays would drop events from the consumer. Kept
    /// here, the batch is retried as soon, and nothing is counted.
    async fn apply_until_done(
        &self,
        batch: &mut Vec<jetstream::Message>,
        messages: &mut pull::Stream,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut backoff = Backoff::new();
        loop {
            let error = match self.in_progress(batch, self.apply_batch(batch)).await {
                Ok(()) => return true,
                Err(error) => error,
            };
            let wait = backoff.next_delay().min(MAX_DATABASE_RETRY_DELAY);
            if backoff.should_log() {
                tracing::warn!(consumer = %self.spec.durable, events = batch.len(), %error, retry_in_ms = wait.as_millis() as u64, "batch not applied; retrying");
            }
            let stopping = tokio::select! {
                _ = self.in_progress(batch, tokio::time::sleep(wait)) => false,
                _ = shutdown.changed() => true,
            };
            if stopping {
                return false;
            }
            while let Some(Some(Ok(message))) = messages.next().now_or_never() {
                batch.push(message);
            }
        }
    }

    /// On shutdown: nak's `batch` and what has arrived but was not started, so that
    /// the next process gets them within [`HAND_BACK_DELAY`], not after `ack_wait`.
    async fn hand_back(&self, mut batch: Vec<jetstream::Message>, mut messages: pull::Stream) {
        // Until nothing comes for a moment: a poll of the pull stream can be pending
        // while it renews its request, with messages already in hand.
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_millis(50), messages.next()).await
        {
            batch.push(message);
        }
        drop(messages);
        if batch.is_empty() {
            return;
        }
        tracing::debug!(consumer = %self.spec.durable, events = batch.len(), "handed back on shutdown");
        // Confirmed, so that they are on their way before the process exits; after
        // HAND_BACK_DELAY, when this process's pull request has gone with its
        // connection (NATS 2.9 cannot cancel one, and would deliver them to it again).
        futures::future::join_all(
            batch
                .iter()
                .map(|message| message.double_ack_with(AckKind::Nak(Some(HAND_BACK_DELAY)))),
        )
        .await;
    }

    /// Runs `work`, telling the server every third of `ack_wait` that the batch is being
    /// worked on, so that work longer than `ack_wait` does not get its events delivered
    /// again meanwhile (and `ack_wait` can be short, for a dead process's events to come
    /// back soon).
    async fn in_progress<T>(
        &self,
        batch: &[jetstream::Message],
        work: impl Future<Output = T>,
    ) -> T {
        let period = (self.config.ack_wait / 3).max(Duration::from_millis(100));
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tokio::time::sleep(period) => {
                    futures::future::join_all(
                        batch.iter().map(|message| message.ack_with(AckKind::Progress)),
                    )
                    .await;
                }
            }
        }
    }

    /// Applies a batch in one transaction. On a database failure nothing is acked: the
    /// caller keeps the batch and tries again.
    async fn apply_batch(&self, batch: &[jetstream::Message]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if batch.len() > 1
            && self.handler.handles_many()
            && let Some(outcomes) = self.apply_at_once(&mut tx, batch).await?
        {
            tx.commit().await?;
            if outcomes
                .iter()
                .any(|outcome| matches!(outcome, Outcome::Applied))
            {
                self.handler.committed();
            }
            self.settle_all(batch, outcomes).await;
            return Ok(());
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut changed = false;
        for message in batch {
            let mut delivery = match to_delivery(message) {
                Ok(delivery) => delivery,
                Err(reason) => {
                    outcomes.push(Outcome::Failed(HandleError::Permanent(reason)));
                    continue;
                }
            };
            let span = consume_span(&self.spec.durable, &mut delivery);
            let outcome = async {
                let mut savepoint = tx.begin().await?;
                let fresh = sqlx::query(
                    "INSERT INTO platform_inbox (consumer, event_id, subject) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&self.spec.durable)
                .bind(delivery.event_id)
                .bind(&delivery.subject)
                .execute(&mut *savepoint)
                .await?
                .rows_affected()
                    == 1;
                if !fresh {
                    tracing::debug!("already applied; skipped");
                    return Ok::<_, sqlx::Error>(Outcome::Skipped);
                }
                match self.handler.handle(&mut savepoint, &delivery).await {
                    Ok(()) => {
                        savepoint.commit().await?;
                        Ok(Outcome::Applied)
                    }
                    Err(error) => {
                        savepoint.rollback().await?;
                        Ok(Outcome::Failed(error))
                    }
                }
            }
            .instrument(span)
            .await?;
            changed |= matches!(outcome, Outcome::Applied);
            outcomes.push(outcome);
        }
        tx.commit().await?;
        if changed {
            self.handler.committed();
        }
        self.settle_all(batch, outcomes).await;
        Ok(())
    }

    /// The whole batch through the handler's `handle_many`, behind one savepoint.
    /// None when the handler takes events one by one, or when the batch failed (then
    /// rolled back, to be applied one by one).
    ///
    /// Each new event is consumed in a span of its own, in the event's trace, for as
    /// long as the batch takes; the batch's span, a trace of its own, links to every
    /// event's context and each event's span links back to it.
    async fn apply_at_once(
        &self,
        tx: &mut PgConnection,
        batch: &[jetstream::Message],
    ) -> Result<Option<Vec<Outcome>>, sqlx::Error> {
        let Ok(deliveries) = batch.iter().map(to_delivery).collect::<Result<Vec<_>, _>>() else {
            return Ok(None);
        };
        let span = tracing::info_span!(
            "consume batch",
            consumer = %self.spec.durable,
            events = deliveries.len(),
            otel.kind = "consumer"
        );
        for delivery in &deliveries {
            delivery.trace.link(&span);
        }
        let batch_trace = TraceHeaders::of(&span);
        async {
            let mut savepoint = tx.begin().await?;
            let ids: Vec<Uuid> = deliveries
                .iter()
                .map(|delivery| delivery.event_id)
                .collect();
            let subjects: Vec<&str> = deliveries
                .iter()
                .map(|delivery| delivery.subject.as_str())
                .collect();
            let fresh: std::collections::HashSet<Uuid> = sqlx::query_scalar(
                "INSERT INTO platform_inbox (consumer, event_id, subject)
                 SELECT $1, e, s FROM unnest($2::uuid[], $3::text[]) AS u(e, s)
                 ON CONFLICT DO NOTHING RETURNING event_id",
            )
            .bind(&self.spec.durable)
            .bind(&ids)
            .bind(&subjects)
            .fetch_all(&mut *savepoint)
            .await?
            .into_iter()
            .collect();
            // Once each: a redelivered copy may sit in the batch beside the original.
            let mut handed = std::collections::HashSet::new();
            let mut new: Vec<Delivery> = deliveries
                .iter()
                .filter(|delivery| {
                    fresh.contains(&delivery.event_id) && handed.insert(delivery.event_id)
                })
                .cloned()
                .collect();
            // Open until the batch is done, so that they last as long as its work.
            let _event_spans: Vec<tracing::Span> = new
                .iter_mut()
                .map(|delivery| {
                    let event_span = consume_span(&self.spec.durable, delivery);
                    batch_trace.link(&event_span);
                    event_span
                })
                .collect();
            match self.handler.handle_many(&mut savepoint, &new).await {
                Ok(true) => {
                    savepoint.commit().await?;
                    Ok(Some(
                        deliveries
                            .iter()
                            .map(|delivery| {
                                if fresh.contains(&delivery.event_id) {
                                    Outcome::Applied
                                } else {
                                    Outcome::Skipped
                                }
                            })
                            .collect(),
                    ))
                }
                Ok(false) => {
                    savepoint.rollback().await?;
                    Ok(None)
                }
                Err(error) => {
                    tracing::debug!(%error, "batch not applied at once; one by one");
                    savepoint.rollback().await?;
                    Ok(None)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Acknowledges a batch's events together: one round trip, not one per event.
    async fn settle_all(&self, batch: &[jetstream::Message], outcomes: Vec<Outcome>) {
        futures::future::join_all(
            batch
                .iter()
                .zip(outcomes)
                .map(|(message, outcome)| self.settle(message, outcome)),
        )
        .await;
    }

    async fn settle(&self, message: &jetstream::Message, outcome: Outcome) {
        let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
        let result = match outcome {
            Outcome::Applied | Outcome::Skipped => message.double_ack().await,
            Outcome::Failed(HandleError::Transient(reason))
                if delivered < self.config.max_deliver =>
            {
                let delay = retry_delay(delivered);
                tracing::warn!(consumer = %self.spec.durable, delivered, error = %reason, "event failed; will retry");
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Outcome::Failed(error) => {
                tracing::error!(consumer = %self.spec.durable, delivered, %error, "event dead-lettered");
                match self
                    .dead_letter(message, &error.to_string(), delivered)
                    .await
                {
                    Ok(()) => message.ack_with(AckKind::Term).await,
                    Err(reason) => {
                        tracing::error!(consumer = %self.spec.durable, error = %reason, "cannot dead-letter; will retry");
                        message.ack_with(AckKind::Nak(Some(MAX_RETRY_DELAY))).await
                    }
                }
            }
        };
        let failing = result.is_err();
        if self
            .acks_failing
            .swap(failing, std::sync::atomic::Ordering::Relaxed)
            == failing
        {
            return;
        }
        match result {
            Err(error) => {
                tracing::warn!(consumer = %self.spec.durable, %error, "ack not confirmed; the events may come again (said once until acks are confirmed)");
            }
            Ok(()) => tracing::info!(consumer = %self.spec.durable, "acks confirmed again"),
        }
    }

    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        error: &str,
        delivered: i64,
    ) -> Result<(), String> {
        let mut dead_headers = message.headers.clone().unwrap_or_default();
        dead_headers.insert(headers::DEAD_LETTER_SUBJECT, message.subject.as_str());
        dead_headers.insert(headers::DEAD_LETTER_CONSUMER, self.spec.durable.as_str());
        dead_headers.insert(headers::DEAD_LETTER_ERROR, truncate(error, 1000).as_str());
        dead_headers.insert(
            headers::DEAD_LETTER_DELIVERIES,
            delivered.to_string().as_str(),
        );
        // The dead letter gets its own de-duplication key in the owner's stream.
        let event_id = header(&dead_headers, headers::NATS_MSG_ID).unwrap_or_default();
        dead_headers.insert(
            headers::NATS_MSG_ID,
            format!("{}:{event_id}", self.spec.durable).as_str(),
        );
        let subject = self
            .namespace
            .dead_letters(self.spec.owner, &self.spec.durable);
        self.jetstream
            .publish_with_headers(subject, dead_headers, message.payload.clone())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

enum Outcome {
    Applied,
    Skipped,
    Failed(HandleError),
}

fn retry_delay(delivered: i64) -> Duration {
    let exponent = delivered.clamp(1, 10) as u32;
    Duration::from_millis(250u64 << exponent).min(MAX_RETRY_DELAY)
}

fn truncate(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .collect::<String>()
        .replace(['\r', '\n'], " ")
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|value| value.as_str().to_owned())
}

/// The span an event is consumed in, a child of the context it came with; the
/// delivery's trace becomes the span's, for what the handler does for this event.
fn consume_span(consumer: &str, delivery: &mut Delivery) -> tracing::Span {
    let span = tracing::info_span!(
        "consume",
        consumer = %consumer,
        subject = %delivery.subject,
        event_id = %delivery.event_id,
        otel.kind = "consumer"
    );
    delivery.trace.adopt(&span);
    delivery.trace = delivery.trace.within(&span);
    span
}

fn to_delivery(message: &jetstream::Message) -> Result<Delivery, String> {
    let headers = message.headers.clone().unwrap_or_default();
    let event_id = header(&headers, headers::NATS_MSG_ID)
        .ok_or_else(|| format!("no {} header", headers::NATS_MSG_ID))?;
    let event_id =
        Uuid::parse_str(&event_id).map_err(|e| format!("{}: {e}", headers::NATS_MSG_ID))?;
    let subject = header(&headers, headers::DEAD_LETTER_SUBJECT)
        .unwrap_or_else(|| message.subject.to_string());
    Ok(Delivery {
        subject,
        event_id,
        payload: message.payload.clone(),
        trace: TraceHeaders {
            traceparent: header(&headers, headers::TRACEPARENT),
            tracestate: header(&headers, headers::TRACESTATE),
        },
        delivered: message.info().map(|info| info.delivered).unwrap_or(1),
    })
}

/// An event a consumer gave up on.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub sequence: u64,
    pub event_id: String,
    pub original_subject: String,
    pub consumer: String,
    pub error: String,
    pub deliveries: u64,
    pub dead_at: OffsetDateTime,
}

impl DeadLetter {
    /// As the `ListDeadLetters` RPCs answer it.
    pub fn to_wire(&self) -> hosted_contracts::v1::DeadLetter {
        hosted_contracts::v1::DeadLetter {
            sequence: self.sequence,
            event_id: self.event_id.clone(),
            original_subject: self.original_subject.clone(),
            consumer: self.consumer.clone(),
            error: self.error.clone(),
            deliveries: self.deliveries,
            dead_at: Some(crate::clock::wire_time(self.dead_at)),
        }
    }
}

/// The dead letters of one service, for operators.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    namespace: Namespace,
    owner: Service,
    jetstream: jetstream::Context,
}

impl DeadLetters {
    pub fn new(namespace: Namespace, owner: Service, jetstream: jetstream::Context) -> Self {
        Self {
            namespace,
            owner,
            jetstream,
        }
    }

    /// Every dead letter, where this version puts them and where earlier ones did, in
    /// stream order.
    async fn read(&self) -> Result<Vec<(DeadLetter, jetstream::Message)>, String> {
        let mut letters = self
            .read_under(self.namespace.all_dead_letters(self.owner))
            .await?;
        letters.extend(
            self.read_under(self.namespace.former_dead_letters(self.owner))
                .await?,
        );
        letters.sort_by_key(|(letter, _)| letter.sequence);
        Ok(letters)
    }

    async fn read_under(
        &self,
        filter_subject: String,
    ) -> Result<Vec<(DeadLetter, jetstream::Message)>, String> {
        let stream = self
            .jetstream
            .get_stream(self.namespace.stream(self.owner))
            .await
            .map_err(|e| e.to_string())?;
        // An ephemeral consumer that only reads: nothing is acknowledged or removed.
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject,
                deliver_policy: DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let pending = consumer.cached_info().num_pending as usize;
        let mut letters = Vec::with_capacity(pending);
        if pending == 0 {
            return Ok(letters);
        }
        let mut messages = consumer
            .fetch()
            .max_messages(pending)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| e.to_string())?;
            let info = message.info().map_err(|e| e.to_string())?;
            let headers = message.headers.clone().unwrap_or_default();
            let letter = DeadLetter {
                sequence: info.stream_sequence,
                event_id: header(&headers, headers::NATS_MSG_ID)
                    .map(|id| id.rsplit(':').next().unwrap_or_default().to_owned())
                    .unwrap_or_default(),
                original_subject: header(&headers, headers::DEAD_LETTER_SUBJECT)
                    .unwrap_or_default(),
                consumer: header(&headers, headers::DEAD_LETTER_CONSUMER).unwrap_or_default(),
                error: header(&headers, headers::DEAD_LETTER_ERROR).unwrap_or_default(),
                deliveries: header(&headers, headers::DEAD_LETTER_DELIVERIES)
                    .and_then(|count| count.parse().ok())
                    .unwrap_or_default(),
                dead_at: info.published,
            };
            letters.push((letter, message));
        }
        Ok(letters)
    }

    pub async fn list(&self) -> Result<Vec<DeadLetter>, String> {
        Ok(self
            .read()
            .await?
            .into_iter()
            .map(|(letter, _)| letter)
            .collect())
    }

    /// Applies dead letters again through `handler` (all, or those of `sequences`),
    /// with the same inbox as the consumer; those applied are removed from the stream.
    /// Returns (replayed, failed).
    pub async fn replay<H: Handler>(
        &self,
        pool: &PgPool,
        handler: &H,
        sequences: &[u64],
    ) -> Result<(u32, u32), String> {
        self.replay_where(pool, handler, sequences, None).await
    }

    /// As [`DeadLetters::replay`], for the dead letters of one consumer only: a service
    /// with several consumers replays each one's through that consumer's handler.
    pub async fn replay_of<H: Handler>(
        &self,
        pool: &PgPool,
        consumer: &str,
        handler: &H,
        sequences: &[u64],
    ) -> Result<(u32, u32), String> {
        self.replay_where(pool, handler, sequences, Some(consumer))
            .await
    }

    async fn replay_where<H: Handler>(
        &self,
        pool: &PgPool,
        handler: &H,
        sequences: &[u64],
        consumer: Option<&str>,
    ) -> Result<(u32, u32), String> {
        let stream = self
            .jetstream
            .get_stream(self.namespace.stream(self.owner))
            .await
            .map_err(|e| e.to_string())?;
        let (mut replayed, mut failed) = (0, 0);
        for (letter, message) in self.read().await? {
            if !sequences.is_empty() && !sequences.contains(&letter.sequence) {
                continue;
            }
            if consumer.is_some_and(|consumer| consumer != letter.consumer) {
                continue;
            }
            let Ok(event_id) = Uuid::parse_str(&letter.event_id) else {
                tracing::warn!(
                    sequence = letter.sequence,
                    "dead letter without an event id; left in place"
                );
                failed += 1;
                continue;
            };
            let headers = message.headers.clone().unwrap_or_default();
            let delivery = Delivery {
                subject: letter.original_subject.clone(),
                event_id,
                payload: message.payload.clone(),
                trace: TraceHeaders {
                    traceparent: header(&headers, headers::TRACEPARENT),
                    tracestate: header(&headers, headers::TRACESTATE),
                },
                delivered: letter.deliveries as i64 + 1,
            };
            let applied: Result<(), String> = async {
                let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
                let fresh = sqlx::query(
                    "INSERT INTO platform_inbox (consumer, event_id, subject) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&letter.consumer)
                .bind(delivery.event_id)
                .bind(&delivery.subject)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?
                .rows_affected()
                    == 1;
                if fresh {
                    handler
                        .handle(&mut tx, &delivery)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                tx.commit().await.map_err(|e| e.to_string())
            }
            .await;
            match applied {
                Ok(()) => {
                    handler.committed();
                    stream
                        .delete_message(letter.sequence)
                        .await
                        .map_err(|e| e.to_string())?;
                    replayed += 1;
                }
                Err(error) => {
                    tracing::warn!(sequence = letter.sequence, %error, "dead letter still fails");
                    failed += 1;
                }
            }
        }
        Ok((replayed, failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_stay_bounded() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert!(retry_delay(3) > retry_delay(2));
        assert_eq!(retry_delay(50), MAX_RETRY_DELAY);
    }
}
