//! What entitlement consumes (intake's learner, payment and agreement facts, and
//! `person.erased`, after which it holds nothing of the person but a tombstone) and
//! publishes: `hosted.entitlement.grants.changed` (see [`crate::recompute`]).

use std::collections::BTreeMap;

use hosted_contracts::{
    prost::Message,
    subjects::{self, Namespace},
    v1,
};
use hosted_platform::{
    clock::{Clock, format_day, parse_day, wire_instant},
    inbox::{Delivery, HandleError, Handler},
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    domain::grants::{Grant, Lock},
    recompute::Recomputer,
    store::{self, Cause, LearnerState, ProjectedLearner, ProjectedStay},
};

/// Durable consumer of intake's stream.
pub const INTAKE_CONSUMER: &str = "entitlement-intake";

/// Applies intake's facts and recomputes the grants they touch.
#[derive(Debug, Clone)]
pub struct GrantsHandler {
    pub namespace: Namespace,
    pub recomputer: Recomputer,
    /// Wakes the eraser of stream messages after an erasure.
    pub erased: hosted_platform::erasure::ErasureSignal,
}

fn permanent(what: &str) -> HandleError {
    HandleError::Permanent(what.to_owned())
}

/// An early end as the policy names it (`left`); None when the stay ends as planned.
fn early_end_code(early_end: v1::EarlyEnd) -> Option<String> {
    let code = match early_end {
        v1::EarlyEnd::Unspecified => return None,
        v1::EarlyEnd::Left => "left",
        v1::EarlyEnd::Expelled => "expelled",
        v1::EarlyEnd::Deceased => "deceased",
        v1::EarlyEnd::Transferred => "transferred",
    };
    Some(code.to_owned())
}

fn projected(learner: &v1::Learner) -> Result<Vec<ProjectedStay>, HandleError> {
    learner
        .stays
        .iter()
        .map(|stay| {
            let day =
                |value: &str| parse_day(value).ok_or_else(|| permanent("stay with a bad date"));
            Ok(ProjectedStay {
                stay_id: Uuid::parse_str(&stay.stay_id)
                    .map_err(|_| permanent("stay with a bad id"))?,
                population: stay.population.clone(),
                start_date: day(&stay.start_date)?,
                end_date: day(&stay.end_date)?,
                cancelled: stay.status() == v1::StayStatus::Cancelled,
                paid: stay.payment_status() == v1::PaymentStatus::Paid,
                agreement_id: Uuid::parse_str(&stay.agreement_id).ok(),
                sponsor_unit: stay.sponsor_unit.clone(),
                requested: stay.requested_resources.clone(),
                early_end: early_end_code(stay.early_end()),
            })
        })
        .collect()
}

/// The wire form of a grant: from the start of its first day to the end of its last,
/// where the university is.
pub fn grant_message(grant: &Grant, clock: &Clock) -> v1::Grant {
    v1::Grant {
        resource: grant.resource.clone(),
        valid_from: Some(wire_instant(clock.start_of(grant.valid_from))),
        valid_until: Some(wire_instant(clock.end_of(grant.valid_until))),
        rule: grant.rule.clone(),
        policy_version: grant.policy_version.clone(),
        stay_id: grant.stay_id.clone(),
        first_day: format_day(grant.valid_from),
        last_day: format_day(grant.valid_until),
    }
}

/// The wire form of a learner's lock, as a grants event carries it.
pub fn lock_message(lock: &Lock) -> v1::LearnerLock {
    v1::LearnerLock {
        kind: match lock.kind.as_str() {
            "administrative" => v1::LockKind::Administrative,
            "technical" => v1::LockKind::Technical,
            _ => v1::LockKind::Unspecified,
        }
        .into(),
        reason: lock.reason.clone(),
        since: lock.since.map(hosted_platform::clock::wire_time),
        by: lock.by.clone(),
    }
}

/// An intake fact, decoded.
enum Fact {
    Learner(Box<v1::Learner>),
    Agreement(v1::Agreement),
    /// The person's identity was erased: what entitlement holds of them goes.
    Erased(store::Erasure),
    /// Something entitlement does not follow.
    Ignored,
}

impl GrantsHandler {
    /// The fact and the caller who caused it (its meta's actor).
    fn decode(&self, delivery: &Delivery) -> Result<(Fact, String), HandleError> {
        let known = [
            &subjects::intake::LEARNER_FACTS[..],
            &[subjects::intake::PAYMENT_RECORDED],
            &subjects::intake::AGREEMENT_FACTS[..],
            &[subjects::intake::PERSON_ERASED],
        ]
        .concat();
        let Some(fact) = self.namespace.fact_of(&delivery.subject, &known) else {
            return Ok((Fact::Ignored, String::new()));
        };
        let undecodable = |error: hosted_contracts::prost::DecodeError| {
            HandleError::Permanent(format!("{fact}: {error}"))
        };
        let actor_of =
            |meta: Option<v1::EventMeta>| meta.map(|meta| meta.actor).unwrap_or_default();
        if *fact == subjects::intake::PERSON_ERASED {
            let event =
                v1::PersonErasedEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
            let meta = event
                .meta
                .ok_or_else(|| permanent("erasure without meta"))?;
            let erasure = store::Erasure {
                learner_id: Uuid::parse_str(&meta.learner_id)
                    .map_err(|_| permanent("erasure with a bad learner id"))?,
                learner_version: meta.learner_version,
                basis: event.basis,
                event_id: delivery.event_id,
                actor: meta.actor.clone(),
            };
            return Ok((Fact::Erased(erasure), meta.actor));
        }
        let (learner, actor) = if subjects::intake::LEARNER_FACTS.contains(fact) {
            let event = v1::LearnerEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
            (event.learner, actor_of(event.meta))
        } else if *fact == subjects::intake::PAYMENT_RECORDED {
            let event = v1::PaymentEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
            (event.learner, actor_of(event.meta))
        } else {
            let event =
                v1::AgreementEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
            let agreement = event
                .agreement
                .ok_or_else(|| permanent("event without agreement"))?;
            return Ok((Fact::Agreement(agreement), actor_of(event.meta)));
        };
        let learner = learner.ok_or_else(|| permanent("event without learner"))?;
        Ok((Fact::Learner(Box::new(learner)), actor))
    }

    /// A learner's snapshot, as projected.
    fn projected_learner(&self, learner: &v1::Learner) -> Result<ProjectedLearner, HandleError> {
        let person = learner
            .person
            .as_ref()
            .ok_or_else(|| permanent("learner without person"))?;
        Ok(ProjectedLearner {
            learner_id: Uuid::parse_str(&person.learner_id)
                .map_err(|_| permanent("bad learner id"))?,
            login: person.login.clone(),
            version: learner.version,
            stays: projected(learner)?,
            lock: self.projected_lock(learner),
        })
    }

    /// The learner's lock, its instant taken as a day where the university is.
    fn projected_lock(&self, learner: &v1::Learner) -> Option<Lock> {
        let lock = learner.lock.as_ref()?;
        let since = lock.since.as_ref().and_then(|since| {
            jiff::Timestamp::new(since.seconds, since.nanos.clamp(0, 999_999_999)).ok()
        });
        let on = match since {
            Some(since) => self.recomputer.clock.date_at(since),
            // A lock without an instant is taken as of today: never later than it is.
            None => self.recomputer.clock.today(),
        };
        Some(Lock {
            on,
            kind: match lock.kind() {
                v1::LockKind::Administrative => "administrative",
                v1::LockKind::Technical => "technical",
                v1::LockKind::Unspecified => "unspecified",
            }
            .to_owned(),
            reason: lock.reason.clone(),
            since: lock.since.as_ref().and_then(|since| {
                time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(since.seconds) * 1_000_000_000
                        + i128::from(since.nanos.clamp(0, 999_999_999)),
                )
                .ok()
            }),
            by: lock.by.clone(),
        })
    }

    /// Projects the learners in `pending` (the newest snapshot of each) in set
    /// statements, and adds those that changed to `due`.
    async fn flush(
        &self,
        conn: &mut PgConnection,
        pending: &mut BTreeMap<Uuid, (ProjectedLearner, Cause)>,
        due: &mut BTreeMap<Uuid, Cause>,
    ) -> Result<(), HandleError> {
        let learners: Vec<ProjectedLearner> = pending
            .values()
            .map(|(learner, _)| learner.clone())
            .collect();
        for learner_id in store::apply_learners(conn, &learners).await? {
            if let Some((_, cause)) = pending.get(&learner_id) {
                due.insert(learner_id, cause.clone());
            }
        }
        pending.clear();
        Ok(())
    }

    /// Projects an agreement's options; returns the learners under it when they changed.
    async fn project_agreement(
        &self,
        conn: &mut PgConnection,
        agreement: &v1::Agreement,
    ) -> Result<Vec<Uuid>, HandleError> {
        let agreement_id =
            Uuid::parse_str(&agreement.agreement_id).map_err(|_| permanent("bad agreement id"))?;
        if store::apply_agreement(conn, agreement_id, &agreement.options, agreement.version).await?
        {
            Ok(store::learners_under(conn, agreement_id).await?)
        } else {
            Ok(Vec::new())
        }
    }

    /// Recomputes `due` learners at once, each with what set it off.
    async fn recompute(
        &self,
        conn: &mut PgConnection,
        due: &BTreeMap<Uuid, Cause>,
    ) -> Result<(), HandleError> {
        if due.is_empty() {
            return Ok(());
        }
        let policy = self.recomputer.policy(conn).await?;
        let ids: Vec<Uuid> = due.keys().copied().collect();
        let facts = store::stay_facts_of(conn, Some(&ids)).await?;
        let states = store::states_of(conn, Some(&ids)).await?;
        let none = LearnerState::default();
        let learners: Vec<_> = facts
            .iter()
            .filter_map(|(learner_id, stays)| {
                Some((
                    *learner_id,
                    stays.as_slice(),
                    states.get(learner_id).unwrap_or(&none),
                    due.get(learner_id)?,
                ))
            })
            .collect();
        self.recomputer.apply_many(conn, &policy, &learners).await?;
        Ok(())
    }

    /// Projects facts in order and adds the learners to recompute to `due`. Learners'
    /// snapshots are gathered (the newest version of each) and written together, in
    /// set statements, before any agreement fact and at the end.
    async fn project(
        &self,
        conn: &mut PgConnection,
        deliveries: &[Delivery],
        due: &mut BTreeMap<Uuid, Cause>,
    ) -> Result<(), HandleError> {
        let mut pending: BTreeMap<Uuid, (ProjectedLearner, Cause)> = BTreeMap::new();
        for delivery in deliveries {
            let (fact, actor) = self.decode(delivery)?;
            let cause = Cause::Event {
                event_id: delivery.event_id,
                trace: delivery.trace.clone(),
                actor,
            };
            match fact {
                Fact::Learner(learner) => {
                    let learner = self.projected_learner(&learner)?;
                    let newer = pending
                        .get(&learner.learner_id)
                        .is_none_or(|(held, _)| held.version < learner.version);
                    if newer {
                        pending.insert(learner.learner_id, (learner, cause));
                    }
                }
                Fact::Agreement(agreement) => {
                    self.flush(conn, &mut pending, due).await?;
                    for learner_id in self.project_agreement(conn, &agreement).await? {
                        due.insert(learner_id, cause.clone());
                    }
                }
                Fact::Erased(erasure) => {
                    // What came before is projected first, then erased with the rest.
                    self.flush(conn, &mut pending, due).await?;
                    due.remove(&erasure.learner_id);
                    if store::erase_learner(conn, &erasure).await? {
                        // Grants events about them not published yet never go.
                        let learner = std::collections::HashSet::from([erasure.learner_id]);
                        let scrub = hosted_platform::erasure::scrub_outbox(conn, &learner).await?;
                        if let Some(after) = scrub.in_flight_until {
                            hosted_platform::erasure::defer_stream_erasure(
                                conn,
                                erasure.learner_id,
                                after,
                            )
                            .await?;
                        }
                        tracing::info!(learner_id = %erasure.learner_id, basis = %erasure.basis, "learner erased");
                        self.erased.erased();
                    }
                }
                Fact::Ignored => {}
            }
        }
        self.flush(conn, &mut pending, due).await
    }
}

impl Handler for GrantsHandler {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        delivery: &Delivery,
    ) -> Result<(), HandleError> {
        let mut due = BTreeMap::new();
        self.project(conn, std::slice::from_ref(delivery), &mut due)
            .await?;
        self.recompute(conn, &due).await
    }

    fn handles_many(&self) -> bool {
        true
    }

    /// A batch at once: every fact projected in order (the newest version of each
    /// learner wins), then every learner they touch recomputed once, in set
    /// statements. A burst of events for one learner publishes one grants event, in
    /// the trace of the newest of them (the batch's span links to the others).
    async fn handle_many(
        &self,
        conn: &mut PgConnection,
        deliveries: &[Delivery],
    ) -> Result<bool, HandleError> {
        let mut due = BTreeMap::new();
        self.project(conn, deliveries, &mut due).await?;
        self.recompute(conn, &due).await?;
        Ok(true)
    }

    fn committed(&self) {
        self.recomputer.outbox.notify();
        self.erased.committed();
    }
}
