//! NATS subjects and JetStream stream names.
//!
//! A subject is `<namespace>.<service>.<entity>.<fact>`; the namespace is `hosted` in
//! deployment and a unique prefix per test, so that tests share one NATS server
//! without seeing each other's events. Each service publishes only under its own
//! `<namespace>.<service>.>`, into its own stream.
//!
//! A service's dead letters are in its stream too, but under
//! `<namespace>.deadletter.<service>.<consumer>`: outside `<namespace>.<service>.>`,
//! the one filter subject (all NATS 2.9 allows) of the consumers of that service's
//! facts, so that no consumer takes a dead letter for an event.

use std::fmt;

/// The four services, as they appear in subjects and stream names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Intake,
    Entitlement,
    Cards,
    Directory,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Intake,
        Service::Entitlement,
        Service::Cards,
        Service::Directory,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Service::Intake => "intake",
            Service::Entitlement => "entitlement",
            Service::Cards => "cards",
            Service::Directory => "directory",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One kind of fact: the part of a subject after the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fact {
    pub service: Service,
    pub entity: &'static str,
    pub fact: &'static str,
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.service, self.entity, self.fact)
    }
}

const fn fact(service: Service, entity: &'static str, fact: &'static str) -> Fact {
    Fact {
        service,
        entity,
        fact,
    }
}

/// Facts published by intake. Payload: `LearnerEvent`, `AgreementEvent`, `PaymentEvent`,
/// `PopulationEvent`, `UnitEvent`, `PersonErasedEvent`.
pub mod intake {
    use super::{Fact, Service::Intake, fact};

    pub const STAY_REGISTERED: Fact = fact(Intake, "stay", "registered");
    pub const STAY_AMENDED: Fact = fact(Intake, "stay", "amended");
    pub const STAY_EXTENDED: Fact = fact(Intake, "stay", "extended");
    pub const STAY_ENDED: Fact = fact(Intake, "stay", "ended");
    pub const STAY_CANCELLED: Fact = fact(Intake, "stay", "cancelled");
    pub const PERSON_AMENDED: Fact = fact(Intake, "person", "amended");
    pub const AGREEMENT_CREATED: Fact = fact(Intake, "agreement", "created");
    pub const AGREEMENT_AMENDED: Fact = fact(Intake, "agreement", "amended");
    pub const AGREEMENT_ENDED: Fact = fact(Intake, "agreement", "ended");
    pub const PAYMENT_RECORDED: Fact = fact(Intake, "payment", "recorded");
    pub const POPULATION_SAVED: Fact = fact(Intake, "population", "saved");
    pub const UNIT_SAVED: Fact = fact(Intake, "unit", "saved");
    /// A learner's current state, published again (`RestateLearners`): what a
    /// consumer that lost its database needs, ignored by one that holds it.
    pub const LEARNER_RESTATED: Fact = fact(Intake, "learner", "restated");
    /// An agreement's current state, published again.
    pub const AGREEMENT_RESTATED: Fact = fact(Intake, "agreement", "restated");
    /// A learner was locked (suspended), or their lock's reason changed (`LockLearner`).
    pub const LEARNER_LOCKED: Fact = fact(Intake, "learner", "locked");
    /// A learner's lock was lifted (`UnlockLearner`).
    pub const LEARNER_UNLOCKED: Fact = fact(Intake, "learner", "unlocked");
    /// A person's identity was erased (retention ran out, or `ErasePerson`); payload
    /// `PersonErasedEvent`, ids only. Every service erases its own copy.
    pub const PERSON_ERASED: Fact = fact(Intake, "person", "erased");

    /// Every fact whose payload is a `LearnerEvent`.
    pub const LEARNER_FACTS: [Fact; 9] = [
        STAY_REGISTERED,
        STAY_AMENDED,
        STAY_EXTENDED,
        STAY_ENDED,
        STAY_CANCELLED,
        PERSON_AMENDED,
        LEARNER_RESTATED,
        LEARNER_LOCKED,
        LEARNER_UNLOCKED,
    ];

    /// Every fact whose payload is an `AgreementEvent`.
    pub const AGREEMENT_FACTS: [Fact; 4] = [
        AGREEMENT_CREATED,
        AGREEMENT_AMENDED,
        AGREEMENT_ENDED,
        AGREEMENT_RESTATED,
    ];
}

/// Facts published by entitlement. Payload: `GrantsEvent`.
pub mod entitlement {
    use super::{Fact, Service::Entitlement, fact};

    pub const GRANTS_CHANGED: Fact = fact(Entitlement, "grants", "changed");
    /// A learner's current grants, published again (`RestateGrants`), same version.
    pub const GRANTS_RESTATED: Fact = fact(Entitlement, "grants", "restated");

    /// Every fact whose payload is a `GrantsEvent`.
    pub const GRANTS_FACTS: [Fact; 2] = [GRANTS_CHANGED, GRANTS_RESTATED];
}

/// Facts published by cards. Payload: `CardEvent`.
pub mod cards {
    use super::{Fact, Service::Cards, fact};

    pub const CARD_CHANGED: Fact = fact(Cards, "card", "changed");
    /// A card's current state, published again (`RestateCards`), same version.
    pub const CARD_RESTATED: Fact = fact(Cards, "card", "restated");

    /// Every fact whose payload is a `CardEvent`.
    pub const CARD_FACTS: [Fact; 2] = [CARD_CHANGED, CARD_RESTATED];
}

/// Facts published by directory. Payload: `AccountEvent`.
pub mod directory {
    use super::{Fact, Service::Directory, fact};

    pub const ACCOUNT_PUBLISHED: Fact = fact(Directory, "account", "published");
}

/// Every fact the services publish, with the protobuf message of its payload: what
/// docs/asyncapi.yaml documents, a channel each (a test checks both ways).
pub const ALL_FACTS: [(Fact, &str); 22] = [
    (intake::STAY_REGISTERED, "hosted.v1.LearnerEvent"),
    (intake::STAY_AMENDED, "hosted.v1.LearnerEvent"),
    (intake::STAY_EXTENDED, "hosted.v1.LearnerEvent"),
    (intake::STAY_ENDED, "hosted.v1.LearnerEvent"),
    (intake::STAY_CANCELLED, "hosted.v1.LearnerEvent"),
    (intake::PERSON_AMENDED, "hosted.v1.LearnerEvent"),
    (intake::LEARNER_RESTATED, "hosted.v1.LearnerEvent"),
    (intake::LEARNER_LOCKED, "hosted.v1.LearnerEvent"),
    (intake::LEARNER_UNLOCKED, "hosted.v1.LearnerEvent"),
    (intake::PERSON_ERASED, "hosted.v1.PersonErasedEvent"),
    (intake::AGREEMENT_CREATED, "hosted.v1.AgreementEvent"),
    (intake::AGREEMENT_AMENDED, "hosted.v1.AgreementEvent"),
    (intake::AGREEMENT_ENDED, "hosted.v1.AgreementEvent"),
    (intake::AGREEMENT_RESTATED, "hosted.v1.AgreementEvent"),
    (intake::PAYMENT_RECORDED, "hosted.v1.PaymentEvent"),
    (intake::POPULATION_SAVED, "hosted.v1.PopulationEvent"),
    (intake::UNIT_SAVED, "hosted.v1.UnitEvent"),
    (entitlement::GRANTS_CHANGED, "hosted.v1.GrantsEvent"),
    (entitlement::GRANTS_RESTATED, "hosted.v1.GrantsEvent"),
    (cards::CARD_CHANGED, "hosted.v1.CardEvent"),
    (cards::CARD_RESTATED, "hosted.v1.CardEvent"),
    (directory::ACCOUNT_PUBLISHED, "hosted.v1.AccountEvent"),
];

/// The token after the namespace under which every service keeps its dead letters.
const DEAD_LETTERS: &str = "deadletter";

/// The first segment of every subject, and the prefix of every stream name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// The namespace of a deployment.
    pub const DEFAULT: &'static str = "hosted";

    /// A namespace is one subject token: lower-case ASCII letters, digits, `-` or `_`.
    pub fn new(name: impl Into<String>) -> Result<Self, String> {
        let name = name.into();
        let valid_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        if name.is_empty() || !name.chars().all(valid_char) {
            return Err(format!(
                "namespace {name:?} must be one token of lower-case letters, digits, '-' or '_'"
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The subject a fact is published on.
    pub fn subject(&self, fact: Fact) -> String {
        format!("{}.{fact}", self.0)
    }

    /// Everything a service publishes: the subject filter of its stream.
    pub fn all_of(&self, service: Service) -> String {
        format!("{}.{service}.>", self.0)
    }

    /// The JetStream stream that holds what a service publishes, e.g. `HOSTED_INTAKE`.
    pub fn stream(&self, service: Service) -> String {
        format!("{}_{}", self.0, service)
            .to_ascii_uppercase()
            .replace('-', "_")
    }

    /// Where a consumer owned by `service` puts the events it gave up on: in the
    /// owner's stream, outside the subjects the consumers of its facts take.
    pub fn dead_letters(&self, service: Service, consumer: &str) -> String {
        format!("{}.{DEAD_LETTERS}.{service}.{consumer}", self.0)
    }

    /// Every dead letter of a service (a subject of its stream, beside [`Self::all_of`]).
    pub fn all_dead_letters(&self, service: Service) -> String {
        format!("{}.{DEAD_LETTERS}.{service}.>", self.0)
    }

    /// Where earlier versions put a service's dead letters, inside the subjects the
    /// consumers of its facts take: still listed and replayed, and skipped by consumers.
    pub fn former_dead_letters(&self, service: Service) -> String {
        format!("{}.{service}.{DEAD_LETTERS}.>", self.0)
    }

    /// The fact a subject of this namespace carries, when it is one of `known`.
    pub fn fact_of<'a>(&self, subject: &str, known: &'a [Fact]) -> Option<&'a Fact> {
        let rest = subject.strip_prefix(self.0.as_str())?.strip_prefix('.')?;
        known.iter().find(|fact| {
            let mut parts = rest.splitn(3, '.');
            parts.next() == Some(fact.service.as_str())
                && parts.next() == Some(fact.entity)
                && parts.next() == Some(fact.fact)
        })
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fact_defined_is_in_all_facts_once() {
        let source = include_str!("subjects.rs");
        // Split, so that this line is not counted.
        let defined = source.matches(concat!(": Fact", " = fact(")).count();
        assert_eq!(ALL_FACTS.len(), defined, "a fact is missing from ALL_FACTS");
        let distinct: std::collections::HashSet<String> =
            ALL_FACTS.iter().map(|(fact, _)| fact.to_string()).collect();
        assert_eq!(distinct.len(), ALL_FACTS.len(), "a fact is listed twice");
    }

    #[test]
    fn subjects_follow_the_naming_rule() {
        let ns = Namespace::default();
        assert_eq!(
            ns.subject(intake::STAY_REGISTERED),
            "hosted.intake.stay.registered"
        );
        assert_eq!(ns.all_of(Service::Intake), "hosted.intake.>");
        assert_eq!(ns.stream(Service::Intake), "HOSTED_INTAKE");
        assert_eq!(
            ns.dead_letters(Service::Directory, "directory-intake"),
            "hosted.deadletter.directory.directory-intake"
        );
    }

    #[test]
    fn dead_letters_are_outside_the_facts_consumers_take() {
        let ns = Namespace::default();
        let dead = ns.dead_letters(Service::Entitlement, "entitlement-intake");
        let facts = ns.all_of(Service::Entitlement);
        assert!(!dead.starts_with(facts.trim_end_matches('>')), "{dead}");
        assert!(
            dead.starts_with(
                ns.all_dead_letters(Service::Entitlement)
                    .trim_end_matches('>')
            )
        );
    }

    #[test]
    fn test_namespaces_make_valid_stream_names() {
        let ns = Namespace::new("t-0193ab").expect("valid namespace");
        assert_eq!(ns.stream(Service::Cards), "T_0193AB_CARDS");
    }

    #[test]
    fn a_namespace_is_one_token() {
        assert!(Namespace::new("a.b").is_err());
        assert!(Namespace::new("").is_err());
        assert!(Namespace::new("Hosted").is_err());
        assert!(Namespace::new("a>").is_err());
    }

    #[test]
    fn facts_are_recognised_only_in_their_namespace() {
        let ns = Namespace::default();
        let known = intake::LEARNER_FACTS;
        assert_eq!(
            ns.fact_of("hosted.intake.stay.registered", &known),
            Some(&intake::STAY_REGISTERED)
        );
        assert_eq!(ns.fact_of("other.intake.stay.registered", &known), None);
        assert_eq!(ns.fact_of("hostedx.intake.stay.registered", &known), None);
        assert_eq!(ns.fact_of("hosted.intake.agreement.created", &known), None);
    }
}
