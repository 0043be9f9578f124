//! Erasure of persons' identity (GDPR): on request (`ErasePerson`), and by itself at
//! the end of retention (the sweep). Each erasure is one transaction that erases the
//! identity, audits, drops the person's rows from the outbox, enqueues one
//! `PersonErasedEvent` and queues the erasure of the person's messages in intake's
//! stream, which [`StreamEraser`] carries out after the commit (and again after a
//! crash: the queue is a table). See docs/privacy.md.

use std::{collections::HashSet, time::Duration};

use hosted_contracts::{subjects::Service, v1};
use hosted_platform::{auth::SYSTEM, clock::wire_time, erasure, outbox};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::{
    Intake,
    domain::erasure::{ErasureReason, LoginKey},
    error::IntakeError,
    events,
    store::{
        self,
        audit::{self, AuditEntry},
        erasure::{self as erasure_store, Erased},
    },
};

/// Why an erasure happened, as the event and the stub say it.
pub const BASIS_RETENTION: &str = "retention";
pub const BASIS_REQUEST: &str = "request";

/// The key of the PostgreSQL advisory lock that lets one replica sweep at a time.
const SWEEP_LOCK: i64 = 0x696e_7461_6b65_0001;

/// How many persons one walk of the stream erases at most.
const STREAM_BATCH: i64 = 1000;

/// What one erasure needs besides the pool: settings and the stream eraser's wake-up.
#[derive(Debug, Clone)]
pub struct ErasureSettings {
    pub login_key: LoginKey,
    pub keep_days_after_last_stay: u32,
    pub sweep_batch: u32,
    pub stream_eraser: std::sync::Arc<Notify>,
}

/// What an erasure on request answered.
#[derive(Debug)]
pub struct ErasureOutcome {
    pub learner: v1::Learner,
    pub erased_at: Option<prost_types::Timestamp>,
    pub already_erased: bool,
}

impl Intake {
    /// Erases `learner_id`'s identity on request, unless a stay is still open.
    pub(crate) async fn erase_person(
        &self,
        learner_id: Uuid,
        reason: ErasureReason,
        reference: Option<&str>,
        actor: &str,
    ) -> Result<ErasureOutcome, IntakeError> {
        let today = self.today();
        let mut tx = self.pool.begin().await?;
        erasure_store::lock_identities_of(&mut tx, &[learner_id]).await?;
        let person = store::lock_person(&mut tx, learner_id)
            .await?
            .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
        if let Some(erased_at) = person.erased_at {
            let record = store::learner(&mut tx, learner_id)
                .await?
                .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
            return Ok(ErasureOutcome {
                learner: events::learner_message(&record, today),
                erased_at: Some(wire_time(erased_at)),
                already_erased: true,
            });
        }
        let open = erasure_store::open_stays(&mut tx, learner_id, today).await?;
        if let Some((stay_id, end_date)) = open.first() {
            return Err(IntakeError::FailedPrecondition(format!(
                "stay {stay_id} is not ended (it ends on {}): end it on a past day (EndStay) or cancel it \
                 (CancelStay) first; {} stay(s) still open",
                crate::domain::registration::format_date(*end_date),
                open.len()
            )));
        }
        let changes = json!({ "basis": BASIS_REQUEST, "reference": reference });
        self.erase_locked(
            &mut tx,
            &[learner_id],
            BASIS_REQUEST,
            reason.code(),
            changes,
            actor,
        )
        .await?;
        let record = store::learner(&mut tx, learner_id)
            .await?
            .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
        tx.commit().await?;
        self.outbox.notify();
        self.erasure.stream_eraser.notify_one();
        tracing::info!(%learner_id, reason = reason.code(), "person erased on request");
        Ok(ErasureOutcome {
            erased_at: record.person.erased_at.map(wire_time),
            learner: events::learner_message(&record, today),
            already_erased: false,
        })
    }

    /// Erases persons the transaction has locked: identity, audit entry, outbox rows,
    /// erasure event, stream erasure queued.
    async fn erase_locked(
        &self,
        conn: &mut PgConnection,
        learner_ids: &[Uuid],
        basis: &str,
        reason_code: &str,
        changes: serde_json::Value,
        actor: &str,
    ) -> Result<Vec<Erased>, IntakeError> {
        let erased =
            erasure_store::erase_persons(conn, learner_ids, basis, &self.erasure.login_key).await?;
        for person in &erased {
            audit::record(
                conn,
                AuditEntry {
                    actor,
                    action: "person.erased",
                    learner_id: Some(person.learner_id),
                    reason: Some(reason_code),
                    changes: changes.clone(),
                    ..AuditEntry::default()
                },
            )
            .await?;
        }
        let ids: HashSet<Uuid> = erased.iter().map(|person| person.learner_id).collect();
        // Before the erasure events are enqueued: they must go out, the rest must not.
        let scrub = erasure::scrub_outbox(conn, &ids).await?;
        let events: Vec<_> = erased
            .iter()
            .map(|person| {
                events::person_erased_event(
                    &self.namespace,
                    person.learner_id,
                    person.version,
                    basis,
                    actor,
                )
            })
            .collect();
        outbox::enqueue(conn, &events).await?;
        let ids: Vec<Uuid> = ids.into_iter().collect();
        erasure_store::queue_stream_erasure(conn, &ids, scrub.in_flight_until).await?;
        Ok(erased)
    }

    /// One pass of the retention sweep: erases, batch after batch (each its own
    /// transaction), every person whose retention ran out; returns how many. Another
    /// replica sweeping holds the advisory lock: this one then leaves it to it.
    pub async fn sweep_retention(&self) -> Result<u64, IntakeError> {
        let keep = i64::from(self.erasure.keep_days_after_last_stay);
        let Some(last_day) = self.today().checked_sub(time::Duration::days(keep + 1)) else {
            return Ok(0);
        };
        let batch = i64::from(self.erasure.sweep_batch.max(1));
        let mut total = 0u64;
        loop {
            let mut tx = self.pool.begin().await?;
            let sweeping: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(SWEEP_LOCK)
                .fetch_one(&mut *tx)
                .await?;
            if !sweeping {
                tracing::debug!("another replica is sweeping");
                return Ok(total);
            }
            // Identity locks first, then the rows, as every change of identity does;
            // whoever changed meanwhile is looked at again.
            let candidates =
                erasure_store::due_for_retention(&mut tx, last_day, batch, None).await?;
            if candidates.is_empty() {
                tx.commit().await?;
                return Ok(total);
            }
            erasure_store::lock_identities_of(&mut tx, &candidates).await?;
            let due = erasure_store::due_for_retention(&mut tx, last_day, batch, Some(&candidates))
                .await?;
            let changes = json!({ "basis": BASIS_RETENTION,
                                  "keep_days_after_last_stay": self.erasure.keep_days_after_last_stay });
            let erased = self
                .erase_locked(
                    &mut tx,
                    &due,
                    BASIS_RETENTION,
                    BASIS_RETENTION,
                    changes,
                    SYSTEM,
                )
                .await?;
            tx.commit().await?;
            self.outbox.notify();
            self.erasure.stream_eraser.notify_one();
            total += erased.len() as u64;
            if (candidates.len() as i64) < batch {
                return Ok(total);
            }
        }
    }

    /// Runs the sweep at start and then every `interval`, until `shutdown`.
    pub async fn run_retention_sweep(
        self,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            match self.sweep_retention().await {
                Ok(0) => tracing::debug!("retention sweep: nobody due"),
                Ok(erased) => tracing::info!(erased, "retention sweep erased persons"),
                Err(error) => {
                    tracing::warn!(%error, "retention sweep failed; tried again next time")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => break,
            }
        }
        tracing::debug!("retention sweep stopped");
    }
}

/// Erases, in intake's stream, the messages of the persons queued in
/// `pending_stream_erasures`: one walk of the stream per batch of persons, after the
/// erasure's commit (woken then) and at every poll, so that what a crash or an
/// unreachable NATS left is done later.
#[derive(Debug)]
pub struct StreamEraser {
    pub pool: PgPool,
    pub jetstream: hosted_platform::nats::JetStream,
    pub stream: String,
    pub wake: std::sync::Arc<Notify>,
    pub poll: Duration,
}

impl StreamEraser {
    pub fn stream_of(namespace: &hosted_contracts::subjects::Namespace) -> String {
        namespace.stream(Service::Intake)
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures = hosted_platform::outbox::Backoff::new();
        loop {
            let wait = match self.erase_due().await {
                Ok(None) => {
                    failures.reset();
                    self.poll
                }
                Ok(Some(until_next)) => {
                    failures.reset();
                    until_next.min(self.poll)
                }
                Err(reason) => {
                    let wait = failures.next_delay();
                    if failures.should_log() {
                        tracing::warn!(error = %reason, "stream erasure failed; tried again");
                    }
                    wait
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
        }
        tracing::debug!("stream eraser stopped");
    }

    /// Erases what is due; says how long until the next queued erasure is due.
    async fn erase_due(&self) -> Result<Option<Duration>, String> {
        let mut conn = self.pool.acquire().await.map_err(|e| e.to_string())?;
        loop {
            let due = erasure_store::stream_erasures_due(&mut conn, STREAM_BATCH)
                .await
                .map_err(|e| e.to_string())?;
            if due.is_empty() {
                break;
            }
            let ids: HashSet<Uuid> = due.iter().copied().collect();
            match erasure::erase_stream_messages(&self.jetstream, &self.stream, &ids).await {
                Ok(messages) => {
                    erasure_store::stream_erasures_done(&mut conn, &due)
                        .await
                        .map_err(|e| e.to_string())?;
                    tracing::info!(
                        persons = due.len(),
                        messages,
                        "stream messages of erased persons erased"
                    );
                }
                Err(error) => {
                    erasure_store::stream_erasures_failed(&mut conn, &due, 30.0)
                        .await
                        .map_err(|e| e.to_string())?;
                    return Err(error.to_string());
                }
            }
            if (due.len() as i64) < STREAM_BATCH {
                break;
            }
        }
        let next = erasure_store::next_stream_erasure(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(next.map(|at| {
            let now = time::OffsetDateTime::now_utc();
            Duration::try_from(at - now).unwrap_or(Duration::ZERO)
        }))
    }
}

/// Refuses a change of an erased learner.
pub fn refuse_if_erased(erased: bool) -> Result<(), IntakeError> {
    if erased {
        return Err(IntakeError::FailedPrecondition(
            "the learner's identity was erased: nothing of it can change any more".to_owned(),
        ));
    }
    Ok(())
}
