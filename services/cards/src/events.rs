//! What cards consumes: intake's learner facts (who the holder is: names for the
//! printer, the INE for the ESCN and the e-purse), intake's `person.erased` (after
//! which the holder's identity is gone, see [`crate::erasure`]) and entitlement's grants (whether
//! they hold the smart-card and e-purse grants, and until when). What it publishes,
//! `hosted.cards.card.changed`, is written by [`crate::office`].

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
use time::Date;
use uuid::Uuid;

use crate::{
    office::{Office, OfficeError},
    store::{self, Holding, Person},
};

/// Durable consumer of intake's stream.
pub const INTAKE_CONSUMER: &str = "cards-intake";
/// Durable consumer of entitlement's stream.
pub const ENTITLEMENT_CONSUMER: &str = "cards-entitlement";

/// The grants the card office follows.
pub const SMART_CARD: &str = "smart-card";
pub const E_PURSE: &str = "e-purse";

fn permanent(what: impl Into<String>) -> HandleError {
    HandleError::Permanent(what.into())
}

impl From<OfficeError> for HandleError {
    fn from(error: OfficeError) -> Self {
        match error {
            OfficeError::Database(error) => error.into(),
            other => HandleError::Transient(other.to_string()),
        }
    }
}

/// Who each learner is, from intake.
#[derive(Debug, Clone)]
pub struct PeopleHandler {
    pub namespace: Namespace,
    pub office: Office,
    /// Wakes the eraser of stream messages after an erasure.
    pub erased: hosted_platform::erasure::ErasureSignal,
}

impl Handler for PeopleHandler {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        delivery: &Delivery,
    ) -> Result<(), HandleError> {
        let mut known = subjects::intake::LEARNER_FACTS.to_vec();
        known.push(subjects::intake::PAYMENT_RECORDED);
        known.push(subjects::intake::PERSON_ERASED);
        let Some(fact) = self.namespace.fact_of(&delivery.subject, &known) else {
            return Ok(());
        };
        let undecodable =
            |error: hosted_contracts::prost::DecodeError| permanent(format!("{fact}: {error}"));
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
                actor: meta.actor,
            };
            return self.erase(conn, &erasure).await;
        }
        let (learner, meta) = if *fact == subjects::intake::PAYMENT_RECORDED {
            let event = v1::PaymentEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
            (event.learner, event.meta)
        } else {
            let event = v1::LearnerEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
            (event.learner, event.meta)
        };
        // Who caused the change: what it sets off here says so too.
        let actor = meta.map(|meta| meta.actor).unwrap_or_default();
        let learner = learner.ok_or_else(|| permanent("event without learner"))?;
        let person = learner
            .person
            .ok_or_else(|| permanent("learner without person"))?;
        let learner_id =
            Uuid::parse_str(&person.learner_id).map_err(|_| permanent("bad learner id"))?;
        let person = Person {
            learner_id,
            login: person.login,
            learner_number: person.learner_number,
            family_name: person.family_name,
            given_names: person.given_names,
            birth_date: person.birth_date,
            email: person.email,
            ine: person.ine,
            version: learner.version,
        };
        if store::save_person(conn, &person).await? && !person.ine.is_empty() {
            self.office.person_changed(conn, learner_id, &actor).await?;
        }
        Ok(())
    }

    fn committed(&self) {
        self.office.outbox.notify();
        self.erased.committed();
    }
}

impl PeopleHandler {
    /// Erases what cards holds of a person, in the inbox transaction: what is still
    /// live stops as at the end of its grant (the person has no stay in force by then,
    /// so there should be nothing; an enabled card is expired, a card on its way stops,
    /// an open e-purse right is closed, each step in the card's history), then the
    /// identity leaves every table, the outbox rows about them go (with the card
    /// events those steps wrote: they carry the login) and a tombstone stays.
    async fn erase(
        &self,
        conn: &mut PgConnection,
        erasure: &store::Erasure,
    ) -> Result<(), HandleError> {
        let learner_id = erasure.learner_id;
        if !store::record_erasure(conn, erasure).await? {
            return Ok(());
        }
        let live = store::cards_of(conn, learner_id)
            .await?
            .into_iter()
            .filter(|card| card.state().is_live())
            .count();
        if live > 0 {
            tracing::warn!(%learner_id, live, "erased learner had a live card: it is stopped");
        }
        store::drop_holding(conn, learner_id).await?;
        self.office
            .follow(
                conn,
                learner_id,
                self.office.clock.today(),
                Some(erasure.event_id),
                &erasure.actor,
                None,
            )
            .await?;
        store::erase_identity(conn, learner_id, &crate::erasure::fixed_reasons()).await?;
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

/// What a learner holds of the smart-card and e-purse grants on the event's day.
pub fn holding(event: &v1::GrantsEvent, on: Date) -> Holding {
    let until = |resource: &str| {
        event
            .grants
            .iter()
            .filter(|grant| grant.resource == resource)
            .filter_map(|grant| parse_day(&grant.last_day))
            .filter(|last| *last >= on)
            .max()
    };
    let in_force = |resource: &str| event.in_force.iter().any(|held| held == resource);
    Holding {
        card_until: until(SMART_CARD),
        card_in_force: in_force(SMART_CARD),
        epurse_until: until(E_PURSE),
        epurse_in_force: in_force(E_PURSE),
    }
}

/// What each learner holds, from entitlement; the cards follow.
#[derive(Debug, Clone)]
pub struct GrantsHandler {
    pub namespace: Namespace,
    pub office: Office,
}

impl Handler for GrantsHandler {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        delivery: &Delivery,
    ) -> Result<(), HandleError> {
        let known = subjects::entitlement::GRANTS_FACTS;
        if self.namespace.fact_of(&delivery.subject, &known).is_none() {
            return Ok(());
        }
        let event = v1::GrantsEvent::decode(delivery.payload.clone())
            .map_err(|error| permanent(format!("grants event: {error}")))?;
        let meta = event
            .meta
            .as_ref()
            .ok_or_else(|| permanent("grants event without meta"))?;
        let learner_id =
            Uuid::parse_str(&meta.learner_id).map_err(|_| permanent("bad learner id"))?;
        let on = parse_day(&event.effective_on)
            .ok_or_else(|| permanent("grants event without effective_on"))?;
        let holding = holding(&event, on);
        if store::save_holding(
            conn,
            learner_id,
            &event.login,
            event.grants_version,
            &holding,
        )
        .await?
        {
            self.office
                .follow(
                    conn,
                    learner_id,
                    on,
                    Some(delivery.event_id),
                    &meta.actor,
                    event.lock.as_ref(),
                )
                .await?;
        }
        Ok(())
    }

    fn committed(&self) {
        self.office.outbox.notify();
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    fn grant(resource: &str, first: &str, last: &str) -> v1::Grant {
        v1::Grant {
            resource: resource.to_owned(),
            first_day: first.to_owned(),
            last_day: last.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn holding_reads_the_grants_of_the_day() {
        let event = v1::GrantsEvent {
            grants: vec![
                grant("smart-card", "2026-09-01", "2027-06-30"),
                grant("smart-card", "2025-09-01", "2026-06-30"),
                grant("e-purse", "2027-01-01", "2027-03-31"),
                grant("wifi", "2026-09-01", "2027-07-07"),
            ],
            in_force: vec!["smart-card".to_owned(), "wifi".to_owned()],
            ..Default::default()
        };
        let held = holding(&event, date!(2026 - 11 - 29));
        assert_eq!(held.card_until, Some(date!(2027 - 06 - 30)));
        assert!(held.card_in_force);
        // To come, not yet in force.
        assert_eq!(held.epurse_until, Some(date!(2027 - 03 - 31)));
        assert!(!held.epurse_in_force);
        // Once everything has lapsed, nothing is held.
        let later = holding(
            &v1::GrantsEvent {
                in_force: Vec::new(),
                ..event
            },
            date!(2027 - 07 - 01),
        );
        assert_eq!(later, Holding::default());
    }
}
