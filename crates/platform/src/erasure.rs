//! Erasing a person's events: what every service does with its own stream and its own
//! outbox when intake erases a person (`hosted.intake.person.erased`).
//!
//! Streams keep facts for a long time (a consumer rebuilt from scratch replays them), and
//! facts about a learner may carry that learner's identity. When a person is erased, each
//! service erases, in its own stream, every message whose `meta.learner_id` is that
//! person ([`erase_stream_messages`]: JetStream's secure delete, which overwrites the
//! message in the store, not only unlinks it), and drops the rows of its own outbox about
//! them ([`scrub_outbox`]). Every event payload starts with `EventMeta meta = 1` whose
//! field 3 is the learner id, so [`learner_of`] finds the learner of any message, of any
//! type, dead letters included, without knowing its type.
//!
//! NATS API subjects these need (for the service's NATS permissions), with `<stream>` the
//! service's own stream: `$JS.API.STREAM.INFO.<stream>`,
//! `$JS.API.CONSUMER.CREATE.<stream>` and `$JS.API.CONSUMER.CREATE.<stream>.>` (the
//! walk's ephemeral ordered consumer, named when it is made again after a gap),
//! `$JS.API.CONSUMER.MSG.NEXT.<stream>.*`, `$JS.API.CONSUMER.DELETE.<stream>.*`,
//! `$JS.API.STREAM.MSG.DELETE.<stream>`, and replies on the client's inbox.

use std::{collections::HashSet, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull},
    response::Response,
};
use futures::StreamExt;
use hosted_contracts::v1;
use prost::Message as _;
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// The protobuf full name of the erasure event. Its outbox rows are never scrubbed: it
/// carries ids only, and it is what tells the other services to erase.
pub const PERSON_ERASED_EVENT_TYPE: &str = "hosted.v1.PersonErasedEvent";

/// How long the walk of a stream waits for the next message before it checks whether
/// it has seen the last one.
const IDLE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error("erasing messages of stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
}

/// Any event: only its first field, the `EventMeta` every payload starts with. Decoding
/// skips the fields it does not know, so this reads the meta of every event type.
#[derive(Clone, PartialEq, prost::Message)]
struct AnyEvent {
    #[prost(message, optional, tag = "1")]
    meta: Option<v1::EventMeta>,
}

/// The learner an event payload is about (`meta.learner_id`), whatever its type; `None`
/// for an event about no learner (an agreement, a unit) or a payload that is not an event.
pub fn learner_of(payload: &[u8]) -> Option<Uuid> {
    let event = AnyEvent::decode(payload).ok()?;
    event.meta?.learner_id.parse().ok()
}

/// Securely deletes, from stream `stream_name`, every message whose `meta.learner_id` is
/// in `learner_ids`; returns how many it erased. A stream that does not exist (nothing
/// was published yet) holds nothing to erase. The erasure events themselves
/// (`Event-Type` [`PERSON_ERASED_EVENT_TYPE`], ids only) stay: deleting one could take
/// it away before a consumer has read it.
///
/// One walk of the whole stream (an ephemeral ordered consumer, payloads decoded as they
/// come) serves the whole set, so a sweep erases a batch of persons in one pass. Messages
/// published while the walk runs are walked too. A message already gone (another walk,
/// the stream's age limit) is not an error.
pub async fn erase_stream_messages(
    jetstream: &jetstream::Context,
    stream_name: &str,
    learner_ids: &HashSet<Uuid>,
) -> Result<u64, ErasureError> {
    let failure = |reason: String| ErasureError::Stream {
        stream: stream_name.to_owned(),
        reason,
    };
    if learner_ids.is_empty() {
        return Ok(0);
    }
    let mut stream = match jetstream.get_stream(stream_name).await {
        Ok(stream) => stream,
        Err(error) if is_stream_not_found(&error) => return Ok(0),
        Err(error) => return Err(failure(error.to_string())),
    };
    let state = stream
        .info()
        .await
        .map_err(|e| failure(e.to_string()))?
        .state
        .clone();
    if state.messages == 0 {
        return Ok(0);
    }
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| failure(e.to_string()))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| failure(e.to_string()))?;
    let mut erased = 0;
    let mut last_seen = 0;
    loop {
        let message = match tokio::time::timeout(IDLE_WAIT, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(error))) => return Err(failure(error.to_string())),
            Ok(None) => break,
            // Nothing came: the walk is over if nothing is left after what it saw (the
            // last messages were deleted meanwhile), else the server is not answering.
            Err(_) => {
                let last = stream
                    .info()
                    .await
                    .map_err(|e| failure(e.to_string()))?
                    .state
                    .last_sequence;
                if last_seen >= last {
                    break;
                }
                return Err(failure(format!(
                    "no message after sequence {last_seen} within {} s, the stream ends at {last}",
                    IDLE_WAIT.as_secs()
                )));
            }
        };
        let info = message.info().map_err(|e| failure(e.to_string()))?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        last_seen = sequence;
        if !is_erasure_event(&message)
            && learner_of(&message.payload).is_some_and(|id| learner_ids.contains(&id))
            && secure_delete(jetstream, stream_name, sequence)
                .await
                .map_err(failure)?
        {
            erased += 1;
        }
        if pending == 0 {
            break;
        }
    }
    Ok(erased)
}

#[derive(serde::Serialize)]
struct MessageDeleteRequest {
    seq: u64,
    /// `false`: the server overwrites the message in its store (secure delete), not
    /// only marks it deleted. Sent explicitly so that the choice shows on the wire.
    no_erase: bool,
}

#[derive(serde::Deserialize)]
struct MessageDeleteStatus {
    success: bool,
}

/// Erases one message; `Ok(false)` when it was already gone.
async fn secure_delete(
    jetstream: &jetstream::Context,
    stream_name: &str,
    sequence: u64,
) -> Result<bool, String> {
    let response: Response<MessageDeleteStatus> = jetstream
        .request(
            format!("STREAM.MSG.DELETE.{stream_name}"),
            &MessageDeleteRequest {
                seq: sequence,
                no_erase: false,
            },
        )
        .await
        .map_err(|e| format!("erasing message {sequence}: {e}"))?;
    match response {
        Response::Ok(status) => Ok(status.success),
        Response::Err { error } if error.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND => {
            Ok(false)
        }
        Response::Err { error } => Err(format!("erasing message {sequence}: {error}")),
    }
}

/// The erasure event itself carries ids only and is what tells consumers to erase:
/// erasing it could take it away before a consumer has read it.
fn is_erasure_event(message: &jetstream::Message) -> bool {
    message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(hosted_contracts::headers::EVENT_TYPE))
        .is_some_and(|value| value.as_str() == PERSON_ERASED_EVENT_TYPE)
}

fn is_stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(inner)
            if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// What [`scrub_outbox`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutboxScrub {
    /// Rows already published (kept for inspection only): deleted.
    pub published: u64,
    /// Rows not published yet (or set aside as refused): deleted, so they never go out.
    pub unpublished: u64,
    /// When some deleted row was claimed by a relay that may be publishing it at this
    /// very moment: the end of that claim. Erase the stream after this instant, or its
    /// copy may land in the stream after the walk.
    pub in_flight_until: Option<OffsetDateTime>,
}

/// Deletes from the service's `platform_outbox` every row about one of `learner_ids`
/// (its payload's `meta.learner_id`), published or not, except the erasure event itself
/// ([`PERSON_ERASED_EVENT_TYPE`], ids only), and says what it removed.
///
/// Unpublished rows go too: a fact that still carries the person's identity must not
/// leave after the erasure, and what it would have told consumers is superseded by the
/// erasure. Call it in the erasure's own transaction, before enqueuing what the erasure
/// publishes: the rows are locked, so a relay skips them while the transaction runs and
/// finds them gone after it commits. A row a relay had already claimed may be in flight:
/// see [`OutboxScrub::in_flight_until`].
pub async fn scrub_outbox(
    conn: &mut PgConnection,
    learner_ids: &HashSet<Uuid>,
) -> Result<OutboxScrub, sqlx::Error> {
    if learner_ids.is_empty() {
        return Ok(OutboxScrub::default());
    }
    let ids: Vec<String> = learner_ids.iter().map(Uuid::to_string).collect();
    // The learner id travels as text in the payload: a byte search narrows the rows to
    // decode; the decode decides (the id could appear in another field).
    let candidates: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT id, payload FROM platform_outbox
         WHERE event_type <> $2
           AND EXISTS (SELECT 1 FROM unnest($1::text[]) AS learner(id)
                       WHERE position(convert_to(learner.id, 'UTF8') IN payload) > 0)
         ORDER BY id
         FOR UPDATE",
    )
    .bind(&ids)
    .bind(PERSON_ERASED_EVENT_TYPE)
    .fetch_all(&mut *conn)
    .await?;
    let rows: Vec<i64> = candidates
        .into_iter()
        .filter(|(_, payload)| learner_of(payload).is_some_and(|id| learner_ids.contains(&id)))
        .map(|(id, _)| id)
        .collect();
    if rows.is_empty() {
        return Ok(OutboxScrub::default());
    }
    let (published, unpublished, in_flight_until): (i64, i64, Option<OffsetDateTime>) =
        sqlx::query_as(
            "WITH deleted AS (
                 DELETE FROM platform_outbox WHERE id = ANY($1)
                 RETURNING published_at, claimed_until)
             SELECT count(*) FILTER (WHERE published_at IS NOT NULL),
                    count(*) FILTER (WHERE published_at IS NULL),
                    max(claimed_until) FILTER (WHERE published_at IS NULL AND claimed_until > now())
             FROM deleted",
        )
        .bind(&rows)
        .fetch_one(&mut *conn)
        .await?;
    Ok(OutboxScrub {
        published: published as u64,
        unpublished: unpublished as u64,
        in_flight_until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_learner_of_any_event_type_is_found() {
        let learner = Uuid::now_v7();
        let meta = v1::EventMeta {
            event_id: Uuid::now_v7().to_string(),
            learner_id: learner.to_string(),
            ..Default::default()
        };
        let erased = v1::PersonErasedEvent {
            meta: Some(meta.clone()),
            basis: "request".to_owned(),
        };
        let learner_event = v1::LearnerEvent {
            meta: Some(meta),
            stay_id: "s".to_owned(),
            ..Default::default()
        };
        assert_eq!(learner_of(&erased.encode_to_vec()), Some(learner));
        assert_eq!(learner_of(&learner_event.encode_to_vec()), Some(learner));
    }

    #[test]
    fn an_event_about_no_learner_or_not_an_event_has_none() {
        let about_no_one = v1::UnitEvent {
            meta: Some(v1::EventMeta {
                event_id: Uuid::now_v7().to_string(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(learner_of(&about_no_one.encode_to_vec()), None);
        assert_eq!(learner_of(b"not protobuf \xff\xff"), None);
        assert_eq!(learner_of(&[]), None);
    }
}

/// Wakes a [`StreamEraser`] once a transaction that erased someone has committed.
#[derive(Debug, Clone, Default)]
pub struct ErasureSignal {
    wake: std::sync::Arc<tokio::sync::Notify>,
    erased: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ErasureSignal {
    /// Someone was erased in the transaction under way.
    pub fn erased(&self) {
        self.erased
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The transaction committed: the eraser runs if someone was erased in it.
    pub fn committed(&self) {
        if self.erased.swap(false, std::sync::atomic::Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }
}

/// How many erased learners one walk of a stream serves.
const ERASER_BATCH: usize = 100;

/// How often a [`StreamEraser`] looks at the tombstones when nothing wakes it (another
/// replica's erasure); an erasure deferred by an outbox row in flight is served when
/// it falls due, sooner.
const ERASER_POLL: Duration = Duration::from_secs(30);

/// What a consuming service erases after the commit of the inbox transaction that
/// applied `person.erased` (which erased its copy, scrubbed its outbox and left a
/// tombstone): the messages of its own stream about the person, retried until done,
/// so that a crash between the two loses nothing.
///
/// The tombstones are the service's `erased_learners` table, with at least
/// `learner_id uuid`, `erase_streams_after timestamptz` (not before: an outbox row
/// scrubbed while a relay was publishing it may still land in the stream until then;
/// see [`defer_stream_erasure`]) and `streams_erased_at timestamptz` (NULL until done).
#[derive(Debug)]
pub struct StreamEraser {
    pub pool: sqlx::PgPool,
    pub jetstream: jetstream::Context,
    /// The service's own stream.
    pub stream: String,
    pub signal: ErasureSignal,
    /// A further condition (SQL on `erased_learners`' columns) a tombstone meets before
    /// its stream is erased, e.g. directory's `entry_dn IS NULL`: the entry goes first.
    pub due_also: Option<&'static str>,
}

impl StreamEraser {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) {
        self.run_after(|| async { Ok(()) }, shutdown).await;
    }

    /// Runs until `shutdown` turns true, with `first` (e.g. directory's removal of the
    /// entries) before each batch; its error is retried like the batch's.
    pub async fn run_after<F, Fut>(
        self,
        mut first: F,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let mut backoff = crate::outbox::Backoff::new();
        loop {
            let before = first().await;
            let batch = self.erase_batch().await;
            let wait = match before.and(batch) {
                Ok(served) if served == ERASER_BATCH => Duration::ZERO,
                Ok(_) => {
                    backoff.reset();
                    // Until the next deferred erasure falls due, if one does before
                    // the next look.
                    match self.next_due().await {
                        Ok(Some(due)) => due.clamp(Duration::from_millis(10), ERASER_POLL),
                        Ok(None) | Err(_) => ERASER_POLL,
                    }
                }
                Err(error) => {
                    let wait = backoff.next_delay();
                    if backoff.should_log() {
                        tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "erased learners not erased yet after the commit");
                    }
                    wait
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = self.signal.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
        }
        tracing::debug!("stream eraser stopped");
    }

    /// How long until the earliest tombstone still to serve falls due (zero when one
    /// is due already), if there is one.
    async fn next_due(&self) -> Result<Option<Duration>, sqlx::Error> {
        let due_also = self
            .due_also
            .map(|condition| format!(" AND {condition}"))
            .unwrap_or_default();
        let seconds: Option<f64> = sqlx::query_scalar(&format!(
            "SELECT greatest(extract(epoch FROM min(erase_streams_after) - now()), 0)::float8
             FROM erased_learners WHERE streams_erased_at IS NULL{due_also}"
        ))
        .fetch_one(&self.pool)
        .await?;
        Ok(seconds.map(Duration::from_secs_f64))
    }

    /// Erases the stream messages of one batch of erased learners; returns how many
    /// learners it served.
    async fn erase_batch(&self) -> Result<usize, String> {
        let due_also = self
            .due_also
            .map(|condition| format!(" AND {condition}"))
            .unwrap_or_default();
        let pending: Vec<Uuid> = sqlx::query_scalar(&format!(
            "SELECT learner_id FROM erased_learners
             WHERE streams_erased_at IS NULL AND erase_streams_after <= now(){due_also}
             ORDER BY erase_streams_after, learner_id LIMIT $1"
        ))
        .bind(ERASER_BATCH as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(|error| format!("reading the erased learners: {error}"))?;
        if pending.is_empty() {
            return Ok(0);
        }
        let learner_ids: HashSet<Uuid> = pending.iter().copied().collect();
        let messages = erase_stream_messages(&self.jetstream, &self.stream, &learner_ids)
            .await
            .map_err(|error| error.to_string())?;
        sqlx::query(
            "UPDATE erased_learners SET streams_erased_at = now() WHERE learner_id = ANY($1)",
        )
        .bind(&pending)
        .execute(&self.pool)
        .await
        .map_err(|error| format!("recording the erasure: {error}"))?;
        tracing::info!(
            learners = pending.len(),
            messages,
            "erased learners' stream messages erased"
        );
        Ok(pending.len())
    }
}

/// Defers the erasure of a learner's stream messages until `after` (in the service's
/// `erased_learners`): an outbox row about them a relay was publishing may land in the
/// stream until then ([`OutboxScrub`]).
pub async fn defer_stream_erasure(
    conn: &mut PgConnection,
    learner_id: Uuid,
    after: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE erased_learners SET erase_streams_after = $2 WHERE learner_id = $1")
        .bind(learner_id)
        .bind(after)
        .execute(conn)
        .await?;
    Ok(())
}
