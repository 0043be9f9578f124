//! Recomputing a learner's grants under the active policy, and publishing them when
//! they, or what is in force today, changed. Intake's events, the due-time schedule
//! and a policy activation all go through here.

use std::sync::{Arc, RwLock};

use hosted_contracts::{
    prost::Message,
    subjects::{self, Namespace},
    v1,
};
use hosted_platform::{
    clock::{Clock, format_day},
    inbox::HandleError,
    outbox::{self, OutboxEvent, OutboxSignal},
};
use sqlx::PgConnection;
use time::Date;
use uuid::Uuid;

use crate::{
    domain::{
        grants::{self, Grant, StayFacts},
        policy::{self, Policy},
    },
    events::grant_message,
    store::{self, Cause, LearnerState},
};

pub const GRANTS_EVENT_TYPE: &str = "hosted.v1.GrantsEvent";

/// Why a recomputation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored policy document no longer loads (it did when it was activated).
    #[error("the active policy does not load: {0}")]
    Policy(String),
}

impl From<Error> for HandleError {
    fn from(error: Error) -> Self {
        HandleError::Transient(error.to_string())
    }
}

/// The policy this replica runs with, shared by the consumer, the schedule and the
/// RPCs, replaced when a version is activated (here or by another replica).
#[derive(Debug, Clone)]
pub struct ActivePolicy(Arc<RwLock<Arc<Policy>>>);

impl ActivePolicy {
    pub fn new(policy: Arc<Policy>) -> Self {
        Self(Arc::new(RwLock::new(policy)))
    }

    pub fn get(&self) -> Arc<Policy> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, policy: Arc<Policy>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = policy;
    }

    /// The policy of `version` (the database's active one), loaded from its stored
    /// document and put in use when it is not the one in use already.
    pub async fn follow(
        &self,
        conn: &mut PgConnection,
        version: &str,
    ) -> Result<Arc<Policy>, Error> {
        let cached = self.get();
        if cached.version == version {
            return Ok(cached);
        }
        let document: String =
            sqlx::query_scalar("SELECT document FROM policy_versions WHERE version = $1")
                .bind(version)
                .fetch_one(&mut *conn)
                .await?;
        let loaded = Arc::new(parse_stored(version, &document)?);
        tracing::info!(policy_version = %version, "policy activated elsewhere, now in use");
        self.set(loaded.clone());
        Ok(loaded)
    }

    /// Puts the database's active version in use, read now.
    pub async fn reload(&self, conn: &mut PgConnection) -> Result<Arc<Policy>, Error> {
        let version: String = sqlx::query_scalar("SELECT version FROM active_policy")
            .fetch_one(&mut *conn)
            .await?;
        self.follow(conn, &version).await
    }
}

/// Loads a stored policy document.
pub fn parse_stored(version: &str, document: &str) -> Result<Policy, Error> {
    policy::load(&format!("policy {version}"), document)
        .map_err(|errors| Error::Policy(errors.to_string()))
}

/// Recomputes and publishes grants.
#[derive(Debug, Clone)]
pub struct Recomputer {
    pub namespace: Namespace,
    pub policy: ActivePolicy,
    pub clock: Clock,
    pub outbox: OutboxSignal,
}

/// Keeps the version of every grant the new computation leaves as it was.
fn keep_versions(before: &[Grant], mut after: Vec<Grant>) -> Vec<Grant> {
    for grant in &mut after {
        if let Some(same) = before.iter().find(|old| {
            grants::same_grants(std::slice::from_ref(*old), std::slice::from_ref(grant))
        }) {
            grant.policy_version.clone_from(&same.policy_version);
        }
    }
    after
}

impl Recomputer {
    /// The active policy, locked (shared) until the end of the transaction so that no
    /// activation (which takes the lock exclusively) interleaves; reloaded when another
    /// replica activated a new one.
    pub async fn policy(&self, conn: &mut PgConnection) -> Result<Arc<Policy>, Error> {
        // An advisory lock rather than a row lock: taken again in every savepoint of a
        // consumer's batch, a shared row lock piles up multixacts.
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(crate::policies::POLICY_LOCK)
            .execute(&mut *conn)
            .await?;
        let version: String = sqlx::query_scalar("SELECT version FROM active_policy")
            .fetch_one(&mut *conn)
            .await?;
        self.policy.follow(conn, &version).await
    }

    /// Stores what `stays` give under `policy` against the learner's state `before`,
    /// and enqueues `grants.changed` when the grants or what is in force today
    /// changed. Returns whether it did.
    pub async fn apply(
        &self,
        conn: &mut PgConnection,
        policy: &Policy,
        learner_id: Uuid,
        stays: &[StayFacts],
        before: &LearnerState,
        cause: &Cause,
    ) -> Result<bool, Error> {
        let published = self
            .apply_many(conn, policy, &[(learner_id, stays, before, cause)])
            .await?;
        Ok(published > 0)
    }

    /// The same for many learners at once, in a few set statements (a consumer's
    /// batch, the schedule, a policy activation over everyone), each with what set it
    /// off. Returns how many were published.
    pub async fn apply_many(
        &self,
        conn: &mut PgConnection,
        policy: &Policy,
        learners: &[(Uuid, &[StayFacts], &LearnerState, &Cause)],
    ) -> Result<u64, Error> {
        let today = self.clock.today();
        let changes: Vec<store::Change> = learners
            .iter()
            .map(|(learner_id, stays, before, cause)| {
                let wanted = keep_versions(&before.grants, grants::grants(policy, stays));
                store::Change {
                    learner_id: *learner_id,
                    before,
                    cause,
                    lock: stays.iter().find_map(|stay| stay.lock.as_ref()),
                    why: stays
                        .iter()
                        .find_map(|stay| stay.lock.as_ref())
                        .map(|lock| {
                            format!("locked on {}: {} lock, {}", lock.on, lock.kind, lock.reason)
                        }),
                    after: LearnerState {
                        in_force: grants::in_force(&wanted, today),
                        next_due: grants::next_change(&wanted, today),
                        grants: wanted,
                    },
                }
            })
            .collect();
        let stored = store::store_states(conn, &changes).await?;
        if stored.is_empty() {
            return Ok(0);
        }
        let after: std::collections::HashMap<Uuid, &store::Change> = changes
            .iter()
            .map(|change| (change.learner_id, change))
            .collect();
        let occurred_at = prost_types::Timestamp {
            seconds: self.clock.now().as_second(),
            nanos: 0,
        };
        let effective_on = format_day(today);
        let subject = self
            .namespace
            .subject(subjects::entitlement::GRANTS_CHANGED);
        let mut events = Vec::with_capacity(stored.len());
        for learner in &stored {
            let Some(change) = after.get(&learner.learner_id) else {
                continue;
            };
            let state = &change.after;
            let event_id = Uuid::now_v7();
            let event = v1::GrantsEvent {
                meta: Some(v1::EventMeta {
                    event_id: event_id.to_string(),
                    occurred_at: Some(occurred_at),
                    learner_id: learner.learner_id.to_string(),
                    learner_version: learner.version,
                    actor: change.cause.actor().to_owned(),
                }),
                grants: state
                    .grants
                    .iter()
                    .map(|grant| grant_message(grant, &self.clock))
                    .collect(),
                policy_version: policy.version.clone(),
                grants_version: learner.grants_version,
                login: learner.login.clone(),
                effective_on: effective_on.clone(),
                in_force: state.in_force.clone(),
                lock: change.lock.map(crate::events::lock_message),
            };
            tracing::info!(
                learner_id = %learner.learner_id,
                grants = state.grants.len(),
                in_force = state.in_force.len(),
                grants_version = learner.grants_version,
                cause = cause_kind(change.cause),
                "grants changed"
            );
            events.push(OutboxEvent {
                event_id,
                subject: subject.clone(),
                event_type: GRANTS_EVENT_TYPE,
                payload: event.encode_to_vec(),
                // In a consumer's batch, the trace of the event that set it off.
                trace: change.cause.trace().cloned(),
            });
        }
        outbox::enqueue(conn, &events).await?;
        // The events in the order of the learners the loop above did not skip.
        let published: Vec<(Uuid, Uuid)> = stored
            .iter()
            .filter(|learner| after.contains_key(&learner.learner_id))
            .map(|learner| learner.learner_id)
            .zip(events.iter().map(|event| event.event_id))
            .collect();
        crate::audit::note_published(conn, &published).await?;
        Ok(events.len() as u64)
    }

    /// Today, in the university's time zone.
    pub fn today(&self) -> Date {
        self.clock.today()
    }
}

fn cause_kind(cause: &Cause) -> &'static str {
    match cause {
        Cause::Event { .. } => "event",
        Cause::Schedule => "schedule",
        Cause::Policy { .. } => "policy",
    }
}
