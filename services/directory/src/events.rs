//! What directory consumes:
//! - intake's learner facts, each carrying the learner's whole state;
//! - entitlement's grants, for the resources in force (eduPersonEntitlement);
//! - cards' card changes, for the enabled card;
//! - intake's agreement facts, for the partner institution's UAI of the stays
//!   under each agreement (an amended UAI reaches their entries at once);
//! - intake's `person.erased`: the account goes, and its entry (see
//!   [`crate::erasure`]); no later fact about that learner is projected again.
//!
//! Each is applied to the projection with "newest version wins" (a batch of events
//! at a time, in set statements), and wakes the publisher.

use std::{collections::HashMap, sync::Arc};

use hosted_contracts::{
    prost::Message,
    subjects::{self, Namespace},
    v1,
};
use hosted_platform::{
    clock::parse_day,
    inbox::{Delivery, HandleError, Handler},
};
use sqlx::PgConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::store;

/// Durable consumer of intake's stream.
pub const INTAKE_CONSUMER: &str = "directory-intake";
/// Durable consumer of entitlement's stream.
pub const ENTITLEMENT_CONSUMER: &str = "directory-entitlement";
/// Durable consumer of cards' stream.
pub const CARDS_CONSUMER: &str = "directory-cards";

fn permanent(message: String) -> HandleError {
    HandleError::Permanent(message)
}

/// When an event happened, as its envelope says: where the publication lag is
/// measured from.
fn occurred_at(meta: &v1::EventMeta) -> Option<time::OffsetDateTime> {
    let at = meta.occurred_at.as_ref()?;
    let nanos = i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// Whether the stays differ between a learner's previous state (encoded) and `new`:
/// what entitlement computes grants from. A new learner counts as changed. A status
/// that only follows the calendar (upcoming, active, ended) does not count: it moves
/// with the date at which intake wrote the event, and the grants do not depend on it;
/// nor do they on the partner's UAI.
pub fn stays_changed(previous: Option<&[u8]>, new: &v1::Learner) -> bool {
    let Some(previous) = previous.and_then(|bytes| v1::Learner::decode(bytes).ok()) else {
        return true;
    };
    let facts = |stays: &[v1::Stay]| -> Vec<v1::Stay> {
        stays
            .iter()
            .map(|stay| {
                let mut stay = stay.clone();
                if stay.status() != v1::StayStatus::Cancelled {
                    stay.status = v1::StayStatus::Unspecified.into();
                }
                // The partner's UAI is published, not granted on.
                stay.partner_uai.clear();
                stay
            })
            .collect()
    };
    facts(&previous.stays) != facts(&new.stays)
}

/// Applies the three sources' facts to the projection and wakes the publisher. Each
/// consumer (of intake, entitlement and cards) runs one, and dead letters from any of
/// them are applied again through it: it applies the facts it knows, whatever their
/// source, and passes over the others.
#[derive(Debug, Clone)]
pub struct ProjectionHandler {
    pub namespace: Namespace,
    pub publisher: Arc<Notify>,
    /// The managed base, for the DN of an erased learner's entry.
    pub base_dn: String,
    /// Wakes the eraser of entries and stream messages after an erasure.
    pub erased: hosted_platform::erasure::ErasureSignal,
}

/// One fact the directory projects.
enum Fact {
    Learner(Box<(store::Snapshot, v1::Learner)>),
    Grants(store::Grants),
    Card(store::Card),
    Agreement(store::AgreementPartner),
    Erased(store::Erasure),
}

/// Intake's facts whose payload is an `AgreementEvent` (a restatement included).
const AGREEMENT_FACTS: [subjects::Fact; 4] = subjects::intake::AGREEMENT_FACTS;

impl ProjectionHandler {
    fn decode(&self, delivery: &Delivery) -> Result<Option<Fact>, HandleError> {
        let known = [
            &subjects::intake::LEARNER_FACTS[..],
            &AGREEMENT_FACTS[..],
            &[subjects::intake::PERSON_ERASED],
            &subjects::entitlement::GRANTS_FACTS[..],
            &subjects::cards::CARD_FACTS[..],
        ]
        .concat();
        let Some(fact) = self.namespace.fact_of(&delivery.subject, &known) else {
            // Facts this version does not use (payments, populations) are acknowledged.
            tracing::debug!(subject = %delivery.subject, "fact not used by the directory");
            return Ok(None);
        };
        let undecodable = |error: hosted_contracts::prost::DecodeError| {
            permanent(format!("{fact}: undecodable: {error}"))
        };
        let id = |value: &str, what: &str| {
            Uuid::parse_str(value).map_err(|_| permanent(format!("{fact}: bad {what}")))
        };
        if subjects::entitlement::GRANTS_FACTS.contains(fact) {
            let event = v1::GrantsEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
            let meta = event
                .meta
                .as_ref()
                .ok_or_else(|| permanent(format!("{fact}: event without meta")))?;
            let effective_on = parse_day(&event.effective_on)
                .ok_or_else(|| permanent(format!("{fact}: event without effective_on")))?;
            let mut in_force = event.in_force.clone();
            in_force.sort();
            in_force.dedup();
            return Ok(Some(Fact::Grants(store::Grants {
                learner_id: id(&meta.learner_id, "learner id")?,
                grants_version: event.grants_version,
                learner_version: meta.learner_version,
                effective_on,
                in_force,
                actor: meta.actor.clone(),
                occurred_at: occurred_at(meta),
            })));
        }
        if *fact == subjects::intake::PERSON_ERASED {
            let event =
                v1::PersonErasedEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
            let meta = event
                .meta
                .ok_or_else(|| permanent(format!("{fact}: event without meta")))?;
            return Ok(Some(Fact::Erased(store::Erasure {
                learner_id: id(&meta.learner_id, "learner id")?,
                learner_version: meta.learner_version,
                basis: event.basis,
            })));
        }
        if AGREEMENT_FACTS.contains(fact) {
            let event =
                v1::AgreementEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
            let agreement = event
                .agreement
                .ok_or_else(|| permanent(format!("{fact}: event without agreement")))?;
            return Ok(Some(Fact::Agreement(store::AgreementPartner {
                agreement_id: id(&agreement.agreement_id, "agreement id")?,
                version: agreement.version,
                partner_uai: agreement.partner_uai,
                actor: event.meta.map(|meta| meta.actor).unwrap_or_default(),
            })));
        }
        if subjects::cards::CARD_FACTS.contains(fact) {
            let event = v1::CardEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
            let actor = event.meta.map(|meta| meta.actor).unwrap_or_default();
            let card = event
                .card
                .ok_or_else(|| permanent(format!("{fact}: event without card")))?;
            let state = match card.state() {
                v1::CardState::Enabled => "enabled",
                v1::CardState::Unspecified => {
                    return Err(permanent(format!("{fact}: card without state")));
                }
                _ => "not enabled",
            };
            return Ok(Some(Fact::Card(store::Card {
                card_id: id(&card.card_id, "card id")?,
                learner_id: id(&card.learner_id, "learner id")?,
                version: card.version,
                state: state.to_owned(),
                csn: card.csn.clone(),
                valid_until: card
                    .valid_until
                    .as_ref()
                    .and_then(|at| time::OffsetDateTime::from_unix_timestamp(at.seconds).ok()),
                actor,
            })));
        }
        let event = v1::LearnerEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
        let occurred_at = event.meta.as_ref().and_then(occurred_at);
        let actor = event.meta.map(|meta| meta.actor).unwrap_or_default();
        let learner = event
            .learner
            .ok_or_else(|| permanent(format!("{fact}: event without learner")))?;
        let person = learner
            .person
            .as_ref()
            .ok_or_else(|| permanent(format!("{fact}: learner without person")))?;
        let learner_id = id(&person.learner_id, "learner id")?;
        if person.login.is_empty() {
            return Err(permanent(format!(
                "{fact}: learner {learner_id} without login"
            )));
        }
        let mut agreement_ids: Vec<Uuid> = learner
            .stays
            .iter()
            .filter_map(|stay| Uuid::parse_str(&stay.agreement_id).ok())
            .collect();
        agreement_ids.sort();
        agreement_ids.dedup();
        let snapshot = store::Snapshot {
            learner_id,
            login: person.login.clone(),
            version: learner.version,
            learner: learner.encode_to_vec(),
            trace: delivery.trace.clone(),
            agreement_ids,
            actor,
            occurred_at,
        };
        Ok(Some(Fact::Learner(Box::new((snapshot, learner)))))
    }

    /// Applies `deliveries`: the newest snapshot and the newest grants of each learner
    /// in set statements, then each card.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        deliveries: &[Delivery],
    ) -> Result<(), HandleError> {
        let mut learners: HashMap<Uuid, (store::Snapshot, v1::Learner)> = HashMap::new();
        let mut grants: HashMap<Uuid, store::Grants> = HashMap::new();
        let mut cards = Vec::new();
        let mut agreements: HashMap<Uuid, store::AgreementPartner> = HashMap::new();
        let mut erasures: Vec<store::Erasure> = Vec::new();
        for delivery in deliveries {
            match self.decode(delivery)? {
                Some(Fact::Learner(fact)) => {
                    let (snapshot, learner) = *fact;
                    let held = learners.get(&snapshot.learner_id);
                    if held.is_none_or(|(held, _)| held.version < snapshot.version) {
                        learners.insert(snapshot.learner_id, (snapshot, learner));
                    }
                }
                Some(Fact::Grants(new)) => {
                    let held = grants.get(&new.learner_id);
                    if held.is_none_or(|held| held.grants_version < new.grants_version) {
                        grants.insert(new.learner_id, new);
                    }
                }
                Some(Fact::Card(card)) => cards.push(card),
                Some(Fact::Erased(erasure)) => erasures.push(erasure),
                Some(Fact::Agreement(new)) => {
                    let held = agreements.get(&new.agreement_id);
                    if held.is_none_or(|held| held.version < new.version) {
                        agreements.insert(new.agreement_id, new);
                    }
                }
                None => {}
            }
        }
        // An erased learner is never projected again, by any fact, older or newer,
        // in this batch or later: those erased here are erased after the rest.
        let concerned: Vec<Uuid> = learners
            .keys()
            .chain(grants.keys())
            .chain(cards.iter().map(|card| &card.learner_id))
            .chain(erasures.iter().map(|erasure| &erasure.learner_id))
            .copied()
            .collect();
        // Another replica erasing one of them at this moment commits first.
        store::lock_learners(conn, &concerned).await?;
        let mut erased = store::erased_among(conn, &concerned).await?;
        erased.extend(erasures.iter().map(|erasure| erasure.learner_id));
        learners.retain(|learner_id, _| !erased.contains(learner_id));
        grants.retain(|learner_id, _| !erased.contains(learner_id));
        cards.retain(|card| !erased.contains(&card.learner_id));
        let (snapshots, decoded): (Vec<store::Snapshot>, HashMap<Uuid, v1::Learner>) = learners
            .into_iter()
            .map(|(id, (snapshot, learner))| (snapshot, (id, learner)))
            .unzip();
        let changed = store::apply_many(conn, &snapshots, |snapshot, previous| {
            decoded
                .get(&snapshot.learner_id)
                .is_none_or(|learner| stays_changed(previous, learner))
        })
        .await?;
        let grants: Vec<store::Grants> = grants.into_values().collect();
        let regranted = store::apply_many_grants(conn, &grants).await?;
        for card in &cards {
            store::apply_card(conn, card).await?;
        }
        let agreements: Vec<store::AgreementPartner> = agreements.into_values().collect();
        let repartnered = store::apply_agreements(conn, &agreements).await?;
        for erasure in &erasures {
            self.erase(conn, erasure).await?;
        }
        tracing::debug!(
            learners = snapshots.len(),
            changed,
            grants = grants.len(),
            regranted,
            cards = cards.len(),
            agreements = agreements.len(),
            repartnered,
            "projection updated"
        );
        Ok(())
    }
}

impl ProjectionHandler {
    /// Erases what directory holds of a person, in the inbox transaction: the account
    /// and what completes it go, the outbox rows about them (account events carry the
    /// login and the DN) too, and a tombstone names the entry to remove, which
    /// [`crate::erasure::Eraser`] removes after the commit.
    async fn erase(
        &self,
        conn: &mut PgConnection,
        erasure: &store::Erasure,
    ) -> Result<(), HandleError> {
        let learner_id = erasure.learner_id;
        let base_dn = &self.base_dn;
        if !store::erase_learner(conn, erasure, |login| {
            crate::domain::entry::dn(login, base_dn)
        })
        .await?
        {
            return Ok(());
        }
        let learner = std::collections::HashSet::from([learner_id]);
        let scrub = hosted_platform::erasure::scrub_outbox(conn, &learner).await?;
        if let Some(after) = scrub.in_flight_until {
            hosted_platform::erasure::defer_stream_erasure(conn, learner_id, after).await?;
        }
        tracing::info!(%learner_id, basis = %erasure.basis, "learner erased");
        self.erased.erased();
        Ok(())
    }
}

impl Handler for ProjectionHandler {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        delivery: &Delivery,
    ) -> Result<(), HandleError> {
        self.apply(conn, std::slice::from_ref(delivery)).await
    }

    fn handles_many(&self) -> bool {
        true
    }

    /// A batch at once, in set statements.
    async fn handle_many(
        &self,
        conn: &mut PgConnection,
        deliveries: &[Delivery],
    ) -> Result<bool, HandleError> {
        self.apply(conn, deliveries).await?;
        Ok(true)
    }

    fn committed(&self) {
        self.publisher.notify_one();
        self.erased.committed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stays_count_as_a_change_for_grants() {
        let stay = v1::Stay {
            stay_id: "s".to_owned(),
            end_date: "2027-06-30".to_owned(),
            ..Default::default()
        };
        let learner = v1::Learner {
            person: Some(v1::Person {
                family_name: "Dupont".to_owned(),
                ..Default::default()
            }),
            stays: vec![stay.clone()],
            version: 1,
            ..Default::default()
        };
        let encoded = learner.encode_to_vec();
        assert!(stays_changed(None, &learner), "a new learner");
        let mut renamed = learner.clone();
        renamed.person.as_mut().unwrap().family_name = "Durand".to_owned();
        renamed.version = 2;
        assert!(!stays_changed(Some(&encoded), &renamed));
        let mut extended = learner.clone();
        extended.stays[0].end_date = "2027-07-31".to_owned();
        assert!(stays_changed(Some(&encoded), &extended));
        // The status the calendar gives does not count; a cancellation does.
        let mut started = learner.clone();
        started.stays[0].status = v1::StayStatus::Active.into();
        assert!(!stays_changed(Some(&encoded), &started));
        let mut cancelled = learner.clone();
        cancelled.stays[0].status = v1::StayStatus::Cancelled.into();
        assert!(stays_changed(Some(&encoded), &cancelled));
        // Nor does the partner's UAI: it is published, not granted on.
        let mut partnered = learner.clone();
        partnered.stays[0].partner_uai = "0134009M".to_owned();
        assert!(!stays_changed(Some(&encoded), &partnered));
    }
}
