//! What intake publishes: facts about learners, each carrying the learner's whole
//! new state, through the outbox.

use hosted_contracts::{
    prost::Message,
    subjects::{Fact, Namespace},
    v1,
};
use hosted_platform::{clock::wire_time, outbox::OutboxEvent};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::{
    domain::{
        lock::{LockKind, LockReason},
        registration::format_date,
    },
    store::{LearnerRecord, StayRow},
};

pub const LEARNER_EVENT_TYPE: &str = "hosted.v1.LearnerEvent";

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

/// Stored sorted already; sorted again so that the contract holds whatever wrote the row.
fn sorted(names: &[String]) -> Vec<String> {
    let mut names = names.to_vec();
    names.sort();
    names
}

/// The wire form of a learner's whole state; stay statuses as of `today`.
pub fn learner_message(record: &LearnerRecord, today: Date) -> v1::Learner {
    let person = &record.person;
    // An erased person is a stub: ids only, whatever the columns hold.
    let identity = if person.erased_at.is_some() {
        v1::Person {
            learner_id: person.learner_id.to_string(),
            learner_number: person.learner_number.clone(),
            ..Default::default()
        }
    } else {
        v1::Person {
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
        }
    };
    v1::Learner {
        person: Some(identity),
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
                early_end: early_end_message(stay.early_end.as_deref()).into(),
                requested_resources: sorted(&stay.requested_resources),
                partner_uai: stay.partner_uai.clone().unwrap_or_default(),
            })
            .collect(),
        version: person.version,
        created_at: Some(wire_time(person.created_at)),
        updated_at: Some(wire_time(person.updated_at)),
        lock: lock_message(person),
    }
}

/// The learner's lock, while there is one.
fn lock_message(person: &crate::store::PersonRow) -> Option<v1::LearnerLock> {
    let reason = LockReason::from_code(person.lock_reason.as_deref()?)?;
    Some(v1::LearnerLock {
        kind: match reason.kind() {
            LockKind::Administrative => v1::LockKind::Administrative,
            LockKind::Technical => v1::LockKind::Technical,
        }
        .into(),
        reason: reason.code().to_owned(),
        since: person.locked_at.map(wire_time),
        by: person.locked_by.clone().unwrap_or_default(),
    })
}

/// What an integrator may know of a learner: login, display name (first given name
/// and family name, as the directory's displayName) and the days of validity.
pub fn identity_message(record: &LearnerRecord, today: Date) -> v1::LearnerIdentity {
    let person = &record.person;
    let stays: Vec<(Date, Date)> = record
        .stays
        .iter()
        .filter(|stay| !stay.cancelled)
        .map(|stay| (stay.start_date, stay.end_date))
        .collect();
    let validity = crate::domain::validity::validity(&stays, today);
    let day = |pick: fn(&crate::domain::validity::Validity) -> Date| {
        validity
            .as_ref()
            .map(pick)
            .map(format_date)
            .unwrap_or_default()
    };
    let erased = person.erased_at.is_some();
    v1::LearnerIdentity {
        learner_id: person.learner_id.to_string(),
        login: if erased {
            String::new()
        } else {
            person.login.clone()
        },
        display_name: if erased {
            String::new()
        } else {
            format!(
                "{} {}",
                crate::domain::names::first_given_name(&person.given_names),
                person.family_name
            )
        },
        erased_at: person.erased_at.map(wire_time),
        valid_from: day(|validity| validity.from),
        valid_until: day(|validity| validity.until),
        current: validity.is_some_and(|validity| validity.current),
    }
}

/// A stay due, as finance lists it.
pub fn payment_due_message(row: crate::store::payments::DueRow) -> v1::PaymentDue {
    v1::PaymentDue {
        stay_id: row.stay_id.to_string(),
        login: row.login,
        learner_number: row.learner_number,
        family_name: row.family_name,
        given_names: row.given_names,
        population: row.population,
        agreement_id: row
            .agreement_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        start_date: format_date(row.start_date),
        end_date: format_date(row.end_date),
        fee_cents: row.fee_cents,
    }
}

/// A stored early end's code on the wire; an unknown one (none is stored: the column
/// is checked) as unspecified.
fn early_end_message(code: Option<&str>) -> v1::EarlyEnd {
    use crate::domain::stay::EarlyEnd;
    match code.and_then(EarlyEnd::from_code) {
        None => v1::EarlyEnd::Unspecified,
        Some(EarlyEnd::Left) => v1::EarlyEnd::Left,
        Some(EarlyEnd::Expelled) => v1::EarlyEnd::Expelled,
        Some(EarlyEnd::Deceased) => v1::EarlyEnd::Deceased,
        Some(EarlyEnd::Transferred) => v1::EarlyEnd::Transferred,
    }
}

/// A learner fact for the outbox.
pub fn learner_event(
    namespace: &Namespace,
    fact: Fact,
    learner: v1::Learner,
    stay_id: Option<Uuid>,
    reason: &str,
    actor: &str,
) -> OutboxEvent {
    let event_id = Uuid::now_v7();
    let learner_id = learner_id_of(&learner);
    let event = v1::LearnerEvent {
        meta: Some(meta(event_id, learner_id, learner.version, actor)),
        learner: Some(learner),
        stay_id: stay_id.map(|id| id.to_string()).unwrap_or_default(),
        reason: reason.to_owned(),
    };
    outbox_event(
        event_id,
        namespace.subject(fact),
        LEARNER_EVENT_TYPE,
        &event,
    )
}

/// The erasure of a person's identity, for the outbox: ids only (`meta.learner_id`, the
/// learner's version after the erasure, the actor) and the basis.
pub fn person_erased_event(
    namespace: &Namespace,
    learner_id: Uuid,
    version: i64,
    basis: &str,
    actor: &str,
) -> OutboxEvent {
    let event_id = Uuid::now_v7();
    let event = v1::PersonErasedEvent {
        meta: Some(meta(event_id, learner_id.to_string(), version, actor)),
        basis: basis.to_owned(),
    };
    outbox_event(
        event_id,
        namespace.subject(hosted_contracts::subjects::intake::PERSON_ERASED),
        hosted_platform::erasure::PERSON_ERASED_EVENT_TYPE,
        &event,
    )
}

pub const AGREEMENT_EVENT_TYPE: &str = "hosted.v1.AgreementEvent";
pub const PAYMENT_EVENT_TYPE: &str = "hosted.v1.PaymentEvent";

fn meta(event_id: Uuid, learner_id: String, learner_version: i64, actor: &str) -> v1::EventMeta {
    v1::EventMeta {
        event_id: event_id.to_string(),
        occurred_at: Some(wire_time(OffsetDateTime::now_utc())),
        learner_id,
        learner_version,
        actor: actor.to_owned(),
    }
}

pub fn payer_message(payer: &str) -> v1::Payer {
    match payer {
        "nobody" => v1::Payer::Nobody,
        "learner" => v1::Payer::Learner,
        "partner" => v1::Payer::Partner,
        _ => v1::Payer::Unspecified,
    }
}

pub fn agreement_message(row: &crate::store::agreements::AgreementRow) -> v1::Agreement {
    v1::Agreement {
        agreement_id: row.agreement_id.to_string(),
        partner_name: row.partner_name.clone(),
        partner_uai: row.partner_uai.clone().unwrap_or_default(),
        populations: row.populations.clone(),
        start_date: format_date(row.start_date),
        end_date: format_date(row.end_date),
        head_count_cap: row.head_count_cap,
        options: row.options.clone(),
        payer: payer_message(&row.payer).into(),
        version: row.version,
    }
}

/// An agreement fact for the outbox (about no learner: learner version 0).
pub fn agreement_event(
    namespace: &Namespace,
    fact: Fact,
    agreement: v1::Agreement,
    reason: &str,
    actor: &str,
) -> OutboxEvent {
    let event_id = Uuid::now_v7();
    let event = v1::AgreementEvent {
        meta: Some(meta(event_id, String::new(), 0, actor)),
        agreement: Some(agreement),
        reason: reason.to_owned(),
    };
    outbox_event(
        event_id,
        namespace.subject(fact),
        AGREEMENT_EVENT_TYPE,
        &event,
    )
}

pub fn payment_message(row: &crate::store::payments::PaymentRow) -> v1::Payment {
    v1::Payment {
        payment_id: row.payment_id.to_string(),
        stay_id: row.stay_id.to_string(),
        amount_cents: row.amount_cents.unwrap_or_default(),
        paid_on: format_date(row.paid_on),
        payer: payer_message(&row.payer).into(),
        payer_name: row.payer_name.clone().unwrap_or_default(),
        reference: row.reference.clone().unwrap_or_default(),
        recorded_at: Some(wire_time(row.recorded_at)),
    }
}

/// A payment fact, with the learner's whole new state (the stay is now paid).
pub fn payment_event(
    namespace: &Namespace,
    payment: v1::Payment,
    learner: v1::Learner,
    actor: &str,
) -> OutboxEvent {
    let event_id = Uuid::now_v7();
    let learner_id = learner_id_of(&learner);
    let event = v1::PaymentEvent {
        meta: Some(meta(event_id, learner_id, learner.version, actor)),
        payment: Some(payment),
        learner: Some(learner),
    };
    outbox_event(
        event_id,
        namespace.subject(hosted_contracts::subjects::intake::PAYMENT_RECORDED),
        PAYMENT_EVENT_TYPE,
        &event,
    )
}

pub const POPULATION_EVENT_TYPE: &str = "hosted.v1.PopulationEvent";

pub fn population_message(population: &crate::domain::Population) -> v1::Population {
    v1::Population {
        code: population.code.clone(),
        label: population.label.clone(),
        supann_population: population.supann_population.clone(),
        agreement_required: population.agreement_required,
        default_duration_days: population.default_duration_days,
        max_duration_days: population.max_duration_days,
        payment_required: population.payment_required,
        fee_cents: population.fee_cents,
    }
}

/// A population fact for the outbox (about no learner).
pub fn population_event(
    namespace: &Namespace,
    population: v1::Population,
    reason: &str,
    actor: &str,
) -> OutboxEvent {
    let event_id = Uuid::now_v7();
    let event = v1::PopulationEvent {
        meta: Some(meta(event_id, String::new(), 0, actor)),
        population: Some(population),
        reason: reason.to_owned(),
    };
    outbox_event(
        event_id,
        namespace.subject(hosted_contracts::subjects::intake::POPULATION_SAVED),
        POPULATION_EVENT_TYPE,
        &event,
    )
}

pub const UNIT_EVENT_TYPE: &str = "hosted.v1.UnitEvent";

pub fn unit_message(unit: &crate::domain::Unit) -> v1::Unit {
    v1::Unit {
        code: unit.code.clone(),
        kind: unit.kind.clone(),
        label: unit.label.clone(),
    }
}

/// A unit fact for the outbox (about no learner).
pub fn unit_event(namespace: &Namespace, unit: v1::Unit, reason: &str, actor: &str) -> OutboxEvent {
    let event_id = Uuid::now_v7();
    let event = v1::UnitEvent {
        meta: Some(meta(event_id, String::new(), 0, actor)),
        unit: Some(unit),
        reason: reason.to_owned(),
    };
    outbox_event(
        event_id,
        namespace.subject(hosted_contracts::subjects::intake::UNIT_SAVED),
        UNIT_EVENT_TYPE,
        &event,
    )
}

/// An event for the outbox, keyed by its id.
fn outbox_event(
    event_id: Uuid,
    subject: String,
    event_type: &'static str,
    event: &impl Message,
) -> OutboxEvent {
    OutboxEvent {
        event_id,
        subject,
        event_type,
        payload: event.encode_to_vec(),
        trace: None,
    }
}

fn learner_id_of(learner: &v1::Learner) -> String {
    learner
        .person
        .as_ref()
        .map(|person| person.learner_id.clone())
        .unwrap_or_default()
}

/// A near match as the contracts say it.
pub fn possible_duplicate(candidate: crate::store::batch::Candidate) -> v1::PossibleDuplicate {
    v1::PossibleDuplicate {
        learner_id: candidate.learner_id.to_string(),
        login: candidate.login,
        reason: candidate.reason.describe().to_owned(),
        reason_code: candidate.reason.code().to_owned(),
    }
}
