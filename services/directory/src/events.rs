//! What directory consumes:
//! - intake's learner facts, each carrying the learner's whole state;
//! - entitlement's grants, for the resources in force (eduPersonEntitlement);
//! - cards' card changes, for the enabled card.
//!
//! Each is applied to the projection with "newest version wins", and wakes the
//! publisher.

use std::sync::Arc;

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

/// Whether the stays differ between a learner's previous state (encoded) and `new`:
/// what entitlement computes grants from. A new learner counts as changed. A status
/// that only follows the calendar (upcoming, active, ended) does not count: it moves
/// with the date at which intake wrote the event, and the grants do not depend on it.
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
                stay
            })
            .collect()
    };
    facts(&previous.stays) != facts(&new.stays)
}

/// Applies learner facts to the projection and wakes the publisher.
#[derive(Debug, Clone)]
pub struct ProjectionHandler {
    pub namespace: Namespace,
    pub publisher: Arc<Notify>,
}

impl ProjectionHandler {
    /// The learner's snapshot an event carries, if it is a learner fact.
    fn snapshot(&self, delivery: &Delivery) -> Result<Option<store::Snapshot>, HandleError> {
        let Some(fact) = self
            .namespace
            .fact_of(&delivery.subject, &subjects::intake::LEARNER_FACTS)
        else {
            // Facts this version does not use (agreements, payments) are acknowledged.
            tracing::debug!(subject = %delivery.subject, "fact not used by the directory");
            return Ok(None);
        };
        let event = v1::LearnerEvent::decode(delivery.payload.clone())
            .map_err(|error| permanent(format!("{fact}: undecodable LearnerEvent: {error}")))?;
        let learner = event
            .learner
            .ok_or_else(|| permanent(format!("{fact}: event without learner")))?;
        let person = learner
            .person
            .as_ref()
            .ok_or_else(|| permanent(format!("{fact}: learner without person")))?;
        let learner_id = Uuid::parse_str(&person.learner_id)
            .map_err(|_| permanent(format!("{fact}: bad learner id")))?;
        if person.login.is_empty() {
            return Err(permanent(format!(
                "{fact}: learner {learner_id} without login"
            )));
        }
        Ok(Some(store::Snapshot {
            learner_id,
            login: person.login.clone(),
            version: learner.version,
            learner: learner.encode_to_vec(),
            trace: delivery.trace.clone(),
        }))
    }

    /// Applies the newest snapshot of each learner among `deliveries`, in set
    /// statements.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        deliveries: &[Delivery],
    ) -> Result<(), HandleError> {
        let mut newest: std::collections::HashMap<Uuid, store::Snapshot> = Default::default();
        for delivery in deliveries {
            if let Some(snapshot) = self.snapshot(delivery)? {
                let newer = newest
                    .get(&snapshot.learner_id)
                    .is_none_or(|held| held.version < snapshot.version);
                if newer {
                    newest.insert(snapshot.learner_id, snapshot);
                }
            }
        }
        let snapshots: Vec<store::Snapshot> = newest.into_values().collect();
        let changed = store::apply_many(conn, &snapshots, |snapshot, previous| {
            v1::Learner::decode(snapshot.learner.as_slice())
                .map(|learner| stays_changed(previous, &learner))
                .unwrap_or(true)
        })
        .await?;
        tracing::debug!(learners = snapshots.len(), changed, "projection updated");
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

    /// A batch at once: the newest snapshot of each learner, in set statements.
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
    }
}

/// Applies entitlement's grants (the resources in force) to the projection.
#[derive(Debug, Clone)]
pub struct GrantsHandler {
    pub namespace: Namespace,
    pub publisher: Arc<Notify>,
}

impl GrantsHandler {
    /// The grants an event carries, if it is a grants fact.
    fn grants(&self, delivery: &Delivery) -> Result<Option<store::Grants>, HandleError> {
        let known = [subjects::entitlement::GRANTS_CHANGED];
        if self.namespace.fact_of(&delivery.subject, &known).is_none() {
            return Ok(None);
        }
        let event = v1::GrantsEvent::decode(delivery.payload.clone())
            .map_err(|error| permanent(format!("undecodable GrantsEvent: {error}")))?;
        let meta = event
            .meta
            .as_ref()
            .ok_or_else(|| permanent("grants event without meta".to_owned()))?;
        let learner_id = Uuid::parse_str(&meta.learner_id)
            .map_err(|_| permanent("grants event: bad learner id".to_owned()))?;
        let effective_on = parse_day(&event.effective_on)
            .ok_or_else(|| permanent("grants event without effective_on".to_owned()))?;
        let mut in_force = event.in_force.clone();
        in_force.sort();
        in_force.dedup();
        Ok(Some(store::Grants {
            learner_id,
            grants_version: event.grants_version,
            learner_version: meta.learner_version,
            effective_on,
            in_force,
        }))
    }

    /// Applies the newest grants of each learner among `deliveries`, in set statements.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        deliveries: &[Delivery],
    ) -> Result<(), HandleError> {
        let mut newest: std::collections::HashMap<Uuid, store::Grants> = Default::default();
        for delivery in deliveries {
            if let Some(grants) = self.grants(delivery)? {
                let newer = newest
                    .get(&grants.learner_id)
                    .is_none_or(|held| held.grants_version < grants.grants_version);
                if newer {
                    newest.insert(grants.learner_id, grants);
                }
            }
        }
        let all: Vec<store::Grants> = newest.into_values().collect();
        let changed = store::apply_many_grants(conn, &all).await?;
        tracing::debug!(learners = all.len(), changed, "grants projected");
        Ok(())
    }
}

impl Handler for GrantsHandler {
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

    /// A batch at once: the newest grants of each learner, in set statements.
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
    }
}

/// Applies cards' card changes to the projection.
#[derive(Debug, Clone)]
pub struct CardsHandler {
    pub namespace: Namespace,
    pub publisher: Arc<Notify>,
}

impl Handler for CardsHandler {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        delivery: &Delivery,
    ) -> Result<(), HandleError> {
        let known = [subjects::cards::CARD_CHANGED];
        if self.namespace.fact_of(&delivery.subject, &known).is_none() {
            return Ok(());
        }
        let event = v1::CardEvent::decode(delivery.payload.clone())
            .map_err(|error| permanent(format!("undecodable CardEvent: {error}")))?;
        let card = event
            .card
            .ok_or_else(|| permanent("card event without card".to_owned()))?;
        let id = |value: &str, what: &str| {
            Uuid::parse_str(value).map_err(|_| permanent(format!("card event: bad {what}")))
        };
        let state = match card.state() {
            v1::CardState::Enabled => "enabled",
            v1::CardState::Unspecified => return Err(permanent("card without state".to_owned())),
            _ => "not enabled",
        };
        let valid_until = card
            .valid_until
            .as_ref()
            .and_then(|at| time::OffsetDateTime::from_unix_timestamp(at.seconds).ok());
        let changed = store::apply_card(
            conn,
            &store::Card {
                card_id: id(&card.card_id, "card id")?,
                learner_id: id(&card.learner_id, "learner id")?,
                version: card.version,
                state: state.to_owned(),
                csn: card.csn.clone(),
                valid_until,
            },
        )
        .await?;
        tracing::debug!(card_id = %card.card_id, version = card.version, changed, "card projected");
        Ok(())
    }

    fn committed(&self) {
        self.publisher.notify_one();
    }
}

/// Every handler of the directory, for dead letters whatever consumer they came from:
/// each applies the facts it knows and passes over the others.
#[derive(Debug, Clone)]
pub struct Handlers {
    pub learners: ProjectionHandler,
    pub grants: GrantsHandler,
    pub cards: CardsHandler,
}

impl Handler for Handlers {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        delivery: &Delivery,
    ) -> Result<(), HandleError> {
        self.learners.handle(conn, delivery).await?;
        self.grants.handle(conn, delivery).await?;
        self.cards.handle(conn, delivery).await
    }

    fn committed(&self) {
        self.learners.committed();
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
    }
}
