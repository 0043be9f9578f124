//! What entitlement consumes (intake's learner, payment and agreement facts) and
//! publishes: `hosted.entitlement.grants.changed` (see [`crate::recompute`]).

use hosted_contracts::{
    prost::Message,
    subjects::{self, Namespace},
    v1,
};
use hosted_platform::{
    clock::Clock,
    inbox::{Delivery, HandleError, Handler},
};
use sqlx::PgConnection;
use time::{Date, format_description::BorrowedFormatItem, macros::format_description};
use uuid::Uuid;

use crate::{
    domain::grants::Grant,
    recompute::Recomputer,
    store::{self, Cause, ProjectedStay},
};

/// Durable consumer of intake's stream.
pub const INTAKE_CONSUMER: &str = "entitlement-intake";

const ISO_DATE: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// Applies intake's facts and recomputes the grants they touch.
#[derive(Debug, Clone)]
pub struct GrantsHandler {
    pub namespace: Namespace,
    pub recomputer: Recomputer,
}

fn permanent(what: &str) -> HandleError {
    HandleError::Permanent(what.to_owned())
}

fn projected(learner: &v1::Learner) -> Result<Vec<ProjectedStay>, HandleError> {
    learner
        .stays
        .iter()
        .map(|stay| {
            let day = |value: &str| {
                Date::parse(value, ISO_DATE).map_err(|_| permanent("stay with a bad date"))
            };
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
            })
        })
        .collect()
}

fn timestamp(instant: jiff::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: instant.as_second(),
        nanos: instant.subsec_nanosecond(),
    }
}

/// The wire form of a grant: from the start of its first day to the end of its last,
/// where the university is.
pub fn grant_message(grant: &Grant, clock: &Clock) -> v1::Grant {
    v1::Grant {
        resource: grant.resource.clone(),
        valid_from: Some(timestamp(clock.start_of(grant.valid_from))),
        valid_until: Some(timestamp(clock.end_of(grant.valid_until))),
        rule: grant.rule.clone(),
        policy_version: grant.policy_version.clone(),
        stay_id: grant.stay_id.clone(),
        first_day: grant.valid_from.format(ISO_DATE).unwrap_or_default(),
        last_day: grant.valid_until.format(ISO_DATE).unwrap_or_default(),
    }
}

impl GrantsHandler {
    async fn apply_learner(
        &self,
        conn: &mut PgConnection,
        learner: &v1::Learner,
        cause: Uuid,
    ) -> Result<(), HandleError> {
        let person = learner
            .person
            .as_ref()
            .ok_or_else(|| permanent("learner without person"))?;
        let learner_id =
            Uuid::parse_str(&person.learner_id).map_err(|_| permanent("bad learner id"))?;
        let stays = projected(learner)?;
        if store::apply_learner(conn, learner_id, &person.login, learner.version, &stays).await? {
            let policy = self.recomputer.policy(conn).await?;
            self.recomputer
                .learner(conn, &policy, learner_id, &Cause::Event(cause))
                .await?;
        }
        Ok(())
    }
}

impl Handler for GrantsHandler {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        delivery: &Delivery,
    ) -> Result<(), HandleError> {
        let known = [
            &subjects::intake::LEARNER_FACTS[..],
            &[
                subjects::intake::PAYMENT_RECORDED,
                subjects::intake::AGREEMENT_CREATED,
                subjects::intake::AGREEMENT_AMENDED,
                subjects::intake::AGREEMENT_ENDED,
            ],
        ]
        .concat();
        let Some(fact) = self.namespace.fact_of(&delivery.subject, &known) else {
            return Ok(());
        };
        let undecodable = |error: hosted_contracts::prost::DecodeError| {
            HandleError::Permanent(format!("{fact}: {error}"))
        };
        if subjects::intake::LEARNER_FACTS.contains(fact) {
            let event = v1::LearnerEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
            let learner = event
                .learner
                .ok_or_else(|| permanent("event without learner"))?;
            self.apply_learner(conn, &learner, delivery.event_id).await
        } else if *fact == subjects::intake::PAYMENT_RECORDED {
            let event = v1::PaymentEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
            let learner = event
                .learner
                .ok_or_else(|| permanent("event without learner"))?;
            self.apply_learner(conn, &learner, delivery.event_id).await
        } else {
            let event =
                v1::AgreementEvent::decode(delivery.payload.clone()).map_err(undecodable)?;
            let agreement = event
                .agreement
                .ok_or_else(|| permanent("event without agreement"))?;
            let agreement_id = Uuid::parse_str(&agreement.agreement_id)
                .map_err(|_| permanent("bad agreement id"))?;
            if store::apply_agreement(conn, agreement_id, &agreement.options, agreement.version)
                .await?
            {
                let policy = self.recomputer.policy(conn).await?;
                let cause = Cause::Event(delivery.event_id);
                for learner_id in store::learners_under(conn, agreement_id).await? {
                    self.recomputer
                        .learner(conn, &policy, learner_id, &cause)
                        .await?;
                }
            }
            Ok(())
        }
    }

    fn committed(&self) {
        self.recomputer.outbox.notify();
    }
}
