//! What intake publishes: facts about learners, each carrying the learner's whole
//! new state, through the outbox.

use hosted_contracts::{
    prost::Message,
    subjects::{Fact, Namespace},
    v1,
};
use hosted_platform::outbox::OutboxEvent;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::{
    domain::registration::format_date,
    store::{LearnerRecord, StayRow},
};

pub const LEARNER_EVENT_TYPE: &str = "hosted.v1.LearnerEvent";

fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        nanos: at.nanosecond() as i32,
    }
}

fn stay_status(stay: &StayRow, today: Date) -> v1::StayStatus {
    if stay.cancelled {
        v1::StayStatus::Cancelled
    } else if today < stay.start_date {
        v1::StayStatus::Upcoming
    } else if today <= stay.end_date {
        v1::StayStatus::Active
    } else {
        v1::StayStatus::Ended
    }
}

fn payment_status(status: &str) -> v1::PaymentStatus {
    match status {
        "not_required" => v1::PaymentStatus::NotRequired,
        "due" => v1::PaymentStatus::Due,
        "paid" => v1::PaymentStatus::Paid,
        _ => v1::PaymentStatus::Unspecified,
    }
}

/// The wire form of a learner's whole state; stay statuses as of `today`.
pub fn learner_message(record: &LearnerRecord, today: Date) -> v1::Learner {
    let person = &record.person;
    v1::Learner {
        person: Some(v1::Person {
            learner_id: person.learner_id.to_string(),
            learner_number: person.learner_number.clone(),
            login: person.login.clone(),
            family_name: person.family_name.clone(),
            birth_name: person.birth_name.clone().unwrap_or_default(),
            given_names: person.given_names.clone(),
            birth_date: format_date(person.birth_date),
            email: person.email.clone(),
            ine: person.ine.clone().unwrap_or_default(),
            phone: person.phone.clone().unwrap_or_default(),
        }),
        stays: record
            .stays
            .iter()
            .map(|stay| v1::Stay {
                stay_id: stay.stay_id.to_string(),
                population: stay.population.clone(),
                supann_population: stay.supann_population.clone(),
                sponsor_unit: stay.sponsor_unit.clone(),
                sponsor_login: stay.sponsor_login.clone().unwrap_or_default(),
                agreement_id: stay
                    .agreement_id
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                start_date: format_date(stay.start_date),
                end_date: format_date(stay.end_date),
                status: stay_status(stay, today).into(),
                payment_status: payment_status(&stay.payment_status).into(),
                end_reason: stay.end_reason.clone().unwrap_or_default(),
            })
            .collect(),
        version: person.version,
        created_at: Some(timestamp(person.created_at)),
        updated_at: Some(timestamp(person.updated_at)),
    }
}

/// A learner fact for the outbox.
pub fn learner_event(
    namespace: &Namespace,
    fact: Fact,
    learner: v1::Learner,
    stay_id: Uuid,
    actor: &str,
) -> OutboxEvent {
    let event_id = Uuid::now_v7();
    let learner_id = learner
        .person
        .as_ref()
        .map(|p| p.learner_id.clone())
        .unwrap_or_default();
    let event = v1::LearnerEvent {
        meta: Some(v1::EventMeta {
            event_id: event_id.to_string(),
            occurred_at: Some(timestamp(OffsetDateTime::now_utc())),
            learner_id,
            learner_version: learner.version,
            actor: actor.to_owned(),
        }),
        learner: Some(learner),
        stay_id: stay_id.to_string(),
        reason: String::new(),
    };
    OutboxEvent {
        event_id,
        subject: namespace.subject(fact),
        event_type: LEARNER_EVENT_TYPE,
        payload: event.encode_to_vec(),
    }
}
