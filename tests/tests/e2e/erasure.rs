//! Erasure (issue 14, points 2 and 3): when intake says a person was erased
//! (`person.erased`), entitlement, cards and directory erase their own copy, keep a
//! tombstone so that no later or redelivered fact brings it back, and erase their own
//! stream's messages about the person; after an erasure on request nothing readable of
//! the person remains in any database, stream or LDAP.
//!
//! The tests of each service publish `person.erased` as intake does, beside a running
//! intake, so that each is shown on its own; the last one asks intake to erase, through
//! its API, and greps everything the four services hold.

use std::time::Duration;

use async_nats::HeaderMap;
use hosted_contracts::{
    headers,
    prost::Message,
    subjects::{self, Service},
    v1,
};
use hosted_e2e::{TestSystem, registration};
use hosted_platform::auth::Role;
use hosted_testkit::{find_in_database, find_in_stream};
use uuid::Uuid;

use crate::entitlement::{check, wait_for};

/// A person whose every value is distinctive, so that any copy of it is found.
struct Identity {
    family_name: &'static str,
    given_names: &'static str,
    birth_date: &'static str,
    email: &'static str,
    ine: &'static str,
    phone: &'static str,
    login: &'static str,
}

const PERSON: Identity = Identity {
    family_name: "Quenardel",
    given_names: "Ysolde",
    birth_date: "1997-03-21",
    email: "ysolde.q@erasure-example.org",
    ine: "623456789EF",
    phone: "+33 6 71 82 93 04",
    login: "ysolde.quenardel",
};

impl Identity {
    /// What must not remain anywhere once the person is erased.
    fn needles(&self) -> [&'static str; 7] {
        [
            self.family_name,
            self.given_names,
            self.birth_date,
            self.email,
            self.ine,
            self.phone,
            self.login,
        ]
    }

    /// A C2i2e trainee of the rectorat: every resource, a card and the e-purse.
    fn registration(&self) -> v1::RegisterStayRequest {
        let mut request = registration(self.family_name, self.given_names, self.birth_date);
        let person = request.person.as_mut().unwrap();
        person.email = self.email.to_owned();
        person.ine = self.ine.to_owned();
        person.phone = self.phone.to_owned();
        request.stay.as_mut().unwrap().population = "RECTORAT_C2I2E".to_owned();
        request
    }
}

/// Registers the person; returns their learner id and version.
async fn register(system: &TestSystem) -> (String, i64) {
    let (learner_id, version, _) = register_stay(system).await;
    (learner_id, version)
}

/// Registers the person; returns their learner id, version and stay id.
async fn register_stay(system: &TestSystem) -> (String, i64, String) {
    let registered = system.register(PERSON.registration()).await;
    let learner = registered.learner.unwrap();
    let person = learner.person.unwrap();
    assert_eq!(person.login, PERSON.login);
    (person.learner_id, learner.version, registered.stay_id)
}

/// Publishes `person.erased` on intake's stream, as intake does after an erasure.
async fn publish_erasure(system: &TestSystem, learner_id: &str, version: i64) {
    let event_id = Uuid::now_v7().to_string();
    let event = v1::PersonErasedEvent {
        meta: Some(v1::EventMeta {
            event_id: event_id.clone(),
            occurred_at: None,
            learner_id: learner_id.to_owned(),
            learner_version: version + 1,
            actor: "deve".to_owned(),
        }),
        basis: "request".to_owned(),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        headers::EVENT_TYPE,
        hosted_platform::erasure::PERSON_ERASED_EVENT_TYPE,
    );
    publish(
        system.namespace.subject(subjects::intake::PERSON_ERASED),
        headers,
        &event_id,
        event.encode_to_vec(),
    )
    .await;
}

async fn publish(subject: String, mut headers: HeaderMap, event_id: &str, payload: Vec<u8>) {
    headers.insert(headers::NATS_MSG_ID, event_id);
    hosted_testkit::jetstream()
        .await
        .publish_with_headers(subject, headers, payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// The facts of `service`'s stream (not its dead letters), to deliver again later.
async fn facts_of(system: &TestSystem, service: Service) -> Vec<(String, Vec<u8>)> {
    let facts = format!("{}.{service}.", system.namespace);
    hosted_testkit::stream_messages(&system.namespace.stream(service))
        .await
        .into_iter()
        .filter(|message| message.subject.starts_with(facts.as_str()))
        .filter(|message| !message.subject.ends_with(".person.erased"))
        .map(|message| (message.subject.to_string(), message.payload.to_vec()))
        .collect()
}

/// The facts of intake's stream again, and the last learner fact once more as if
/// intake had changed the learner after the erasure (a newer version): neither an
/// older nor a newer fact may bring the person back.
fn with_a_newer_learner_fact(mut facts: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let (subject, payload) = facts
        .iter()
        .rev()
        .find(|(subject, _)| subject.contains(".stay.") || subject.contains(".person."))
        .cloned()
        .expect("a learner fact");
    let mut event = v1::LearnerEvent::decode(payload.as_slice()).unwrap();
    let learner = event.learner.as_mut().unwrap();
    learner.version += 100;
    let meta = event.meta.as_mut().unwrap();
    meta.learner_version = learner.version;
    meta.event_id = Uuid::now_v7().to_string();
    facts.push((subject, event.encode_to_vec()));
    facts
}

/// Delivers `facts` again, as new messages (a restatement, a replay, an old event
/// that comes late): the consumers take them as they would any event.
async fn deliver_again(facts: &[(String, Vec<u8>)]) {
    for (subject, payload) in facts {
        publish(
            subject.clone(),
            HeaderMap::new(),
            &Uuid::now_v7().to_string(),
            payload.clone(),
        )
        .await;
    }
}

/// Waits until the durable consumer `durable` of `source`'s stream has acknowledged
/// everything.
async fn wait_consumed(system: &TestSystem, source: Service, durable: &str) {
    let stream = hosted_testkit::jetstream()
        .await
        .get_stream(system.namespace.stream(source))
        .await
        .unwrap();
    for _ in 0..400 {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(durable).await.unwrap();
        let info = consumer.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{durable} did not consume everything");
}

/// Waits until no table of the database at `url` holds the person; panics naming
/// where they remain.
async fn wait_database_clean(url: &str, what: &str) {
    let mut found = Vec::new();
    for _ in 0..200 {
        found = find_in_database(url, &PERSON.needles()).await;
        if found.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}'s database still holds the person in {found:?}");
}

/// Waits until no message of `service`'s stream holds the person.
async fn wait_stream_clean(system: &TestSystem, service: Service) {
    let stream = system.namespace.stream(service);
    let mut found = Vec::new();
    for _ in 0..200 {
        found = find_in_stream(&stream, &PERSON.needles()).await;
        if found.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{service}'s stream still holds the person in {found:?}");
}

/// Every entry of the test's subtree whose DN or any value holds the person.
async fn ldap_residue(system: &TestSystem) -> Vec<String> {
    let needles: Vec<String> = PERSON
        .needles()
        .iter()
        .map(|needle| needle.to_lowercase())
        .collect();
    system
        .subtree
        .search("(objectClass=*)")
        .await
        .into_iter()
        .filter(|entry| {
            let mut text = entry.dn.to_lowercase();
            for (name, values) in &entry.attrs {
                text.push_str(&format!("\n{name}: {}", values.join(" | ").to_lowercase()));
            }
            needles.iter().any(|needle| text.contains(needle.as_str()))
        })
        .map(|entry| entry.dn)
        .collect()
}

async fn wait_ldap_clean(system: &TestSystem) {
    let mut found = Vec::new();
    for _ in 0..200 {
        found = ldap_residue(system).await;
        if found.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("LDAP still holds the person in {found:?}");
}

/// How many rows of `table` in the database at `url` match `condition`.
async fn count(url: &str, table: &str, condition: &str) -> i64 {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {condition}"))
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn entitlement_erases_the_learner_and_no_later_fact_brings_them_back() {
    // Arrange: the person granted.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    let (learner_id, version) = register(&system).await;
    wait_for(&system, PERSON.login, "wifi", true).await;
    let learner_facts = with_a_newer_learner_fact(facts_of(&system, Service::Intake).await);

    // Act
    publish_erasure(&system, &learner_id, version).await;

    // Assert: Check answers as for an unknown learner, by login and by id; nothing
    // of the person remains in the database or the stream; the grants' end is audited.
    for _ in 0..200 {
        if check(&system, PERSON.login, "wifi").await.denial() == v1::Denial::UnknownLearner {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        check(&system, PERSON.login, "wifi").await.denial(),
        v1::Denial::UnknownLearner
    );
    assert_eq!(
        check(&system, &learner_id, "wifi").await.denial(),
        v1::Denial::UnknownLearner
    );
    let url = system.entitlement_database.url.clone();
    wait_database_clean(&url, "entitlement").await;
    wait_stream_clean(&system, Service::Entitlement).await;
    let id = format!("learner_id = '{learner_id}'");
    assert_eq!(count(&url, "erased_learners", &id).await, 1);
    assert_eq!(count(&url, "grants", &id).await, 0);
    assert!(
        count(
            &url,
            "grant_audit",
            &format!("{id} AND cause = 'person erased'")
        )
        .await
            > 0,
        "each grant's end is audited"
    );

    // Act: intake's learner facts delivered again after the erasure.
    deliver_again(&learner_facts).await;
    wait_consumed(
        &system,
        Service::Intake,
        hosted_entitlement::events::INTAKE_CONSUMER,
    )
    .await;

    // Assert: the person did not come back.
    assert_eq!(
        check(&system, PERSON.login, "wifi").await.denial(),
        v1::Denial::UnknownLearner
    );
    assert_eq!(count(&url, "learners", &id).await, 0);
    assert!(find_in_database(&url, &PERSON.needles()).await.is_empty());
    system.stop().await;
}

#[tokio::test]
async fn cards_keep_the_card_without_the_name_and_no_later_fact_brings_it_back() {
    // Arrange: the person's card printed in a batch, their e-purse right exported.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;
    let (learner_id, version) = register(&system).await;
    let cards = system.cards_client().await;
    let mut card = None;
    for _ in 0..300 {
        let listed = cards
            .clone()
            .list_cards(system.as_role(
                Role::CardOffice,
                v1::ListCardsRequest {
                    learner: PERSON.login.to_owned(),
                },
            ))
            .await
            .map(|answer| answer.into_inner().cards)
            .unwrap_or_default();
        if let Some(found) = listed
            .into_iter()
            .find(|card| card.state() == v1::CardState::Approved)
        {
            card = Some(found);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let card = card.expect("the person's card is approved");
    let batch = cards
        .clone()
        .export_print_batch(system.as_role(
            Role::CardOffice,
            v1::ExportPrintBatchRequest {
                format: v1::DocumentFormat::Json.into(),
                limit: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(String::from_utf8_lossy(&batch.document).contains(PERSON.family_name));
    let mut exported = Vec::new();
    for _ in 0..300 {
        exported = cards
            .clone()
            .export_epurse(
                system.as_role(Role::CardOffice, v1::ExportEpurseRequest { full: false }),
            )
            .await
            .unwrap()
            .into_inner()
            .right_holders;
        if !exported.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(exported.len(), 1, "the e-purse right is exported");
    let url = system.cards_database.url.clone();
    assert!(!find_in_database(&url, &PERSON.needles()).await.is_empty());
    let learner_facts = with_a_newer_learner_fact(facts_of(&system, Service::Intake).await);
    let grants_facts = facts_of(&system, Service::Entitlement).await;
    assert!(!grants_facts.is_empty());

    // Act
    publish_erasure(&system, &learner_id, version).await;

    // Assert: nothing of the person remains; the card stays, by number, stopped.
    wait_database_clean(&url, "cards").await;
    wait_stream_clean(&system, Service::Cards).await;
    let kept = format!(
        "card_number = '{}' AND learner_id = '{learner_id}' AND state = 'expired'",
        card.card_number
    );
    assert_eq!(
        count(&url, "cards", &kept).await,
        1,
        "the card is kept, expired"
    );
    assert_eq!(count(&url, "print_batches", "true").await, 1);
    assert_eq!(
        count(&url, "epurse_exports", "right_holders = 1").await,
        1,
        "the export's total is kept"
    );
    let erased = format!("learner_id = '{learner_id}'");
    assert_eq!(count(&url, "erased_learners", &erased).await, 1);

    // Act: intake's learner facts and entitlement's grants delivered again.
    deliver_again(&learner_facts).await;
    deliver_again(&grants_facts).await;
    wait_consumed(
        &system,
        Service::Intake,
        hosted_cards::events::INTAKE_CONSUMER,
    )
    .await;
    wait_consumed(
        &system,
        Service::Entitlement,
        hosted_cards::events::ENTITLEMENT_CONSUMER,
    )
    .await;

    // Assert: no identity came back, and no new card was requested for them.
    assert!(find_in_database(&url, &PERSON.needles()).await.is_empty());
    assert_eq!(count(&url, "cards", &erased).await, 1);
    system.stop().await;
}

#[tokio::test]
async fn directory_removes_the_entry_and_no_later_fact_or_reconciliation_brings_it_back() {
    // Arrange: the person's entry written.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_directory().await;
    let (learner_id, version) = register(&system).await;
    system
        .subtree
        .wait_for_entries(1, Duration::from_secs(20))
        .await;
    let learner_facts = with_a_newer_learner_fact(facts_of(&system, Service::Intake).await);

    // Act
    publish_erasure(&system, &learner_id, version).await;

    // Assert: the entry is gone, and nothing of the person remains anywhere directory
    // keeps something.
    wait_ldap_clean(&system).await;
    let url = system.directory_database.url.clone();
    wait_database_clean(&url, "directory").await;
    wait_stream_clean(&system, Service::Directory).await;
    let erased = format!("learner_id = '{learner_id}'");
    assert_eq!(
        count(
            &url,
            "erased_learners",
            &format!("{erased} AND entry_dn IS NULL AND streams_erased_at IS NOT NULL")
        )
        .await,
        1
    );

    // Act: intake's learner facts delivered again after the erasure.
    deliver_again(&learner_facts).await;
    wait_consumed(
        &system,
        Service::Intake,
        hosted_directory::events::INTAKE_CONSUMER,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Assert: no account, no entry; reconciliation finds nothing missing.
    assert_eq!(count(&url, "accounts", &erased).await, 0);
    assert!(ldap_residue(&system).await.is_empty());
    assert!(system.subtree.entries().await.is_empty());
    let report = system
        .directory_client()
        .await
        .reconcile(system.as_role(
            Role::Dosi,
            v1::ReconcileRequest {
                apply: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(report.drifts.is_empty(), "{:?}", report.drifts);
    assert!(system.subtree.entries().await.is_empty());
    assert!(find_in_database(&url, &PERSON.needles()).await.is_empty());
    system.stop().await;
}

/// `ErasePerson`, as the registrar's office calls it for a data subject's request.
async fn erase_on_request(system: &TestSystem, login: &str) -> Result<(), tonic::Status> {
    system
        .intake_client()
        .await
        .erase_person(system.as_role(
            Role::Deve,
            v1::ErasePersonRequest {
                learner: login.to_owned(),
                reason: "data-subject-request".to_owned(),
                reference: "DPO-2026-042".to_owned(),
            },
        ))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn after_an_erasure_on_request_nothing_readable_of_the_person_remains_anywhere() {
    // Arrange: the four services; the person granted, with a card and an entry.
    let mut system = TestSystem::prepare(None).await;
    system.await_grants = Duration::from_secs(20);
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;
    system.start_directory().await;
    let (_, _, stay_id) = register_stay(&system).await;
    wait_for(&system, PERSON.login, "wifi", true).await;
    crate::entries::wait_for_entry(&system, PERSON.login, "its grants", |entry| {
        !crate::entries::values(entry, "eduPersonEntitlement").is_empty()
    })
    .await;
    let url = system.cards_database.url.clone();
    for _ in 0..300 {
        if count(&url, "cards", "true").await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        count(&url, "cards", "true").await,
        1,
        "the person has a card"
    );
    // A person is erased once no stay of theirs is in force: they left yesterday.
    system
        .intake_client()
        .await
        .end_stay(system.as_role(
            Role::Deve,
            v1::EndStayRequest {
                stay_id,
                end_date: hosted_e2e::today_plus(-1),
                reason: "left".to_owned(),
                early_end: v1::EarlyEnd::Left.into(),
            },
        ))
        .await
        .unwrap();

    // Act
    erase_on_request(&system, PERSON.login)
        .await
        .expect("intake erases on request");

    // Assert: every database, every stream and LDAP.
    for (database, what) in [
        (&system.intake_database, "intake"),
        (&system.entitlement_database, "entitlement"),
        (&system.cards_database, "cards"),
        (&system.directory_database, "directory"),
    ] {
        wait_database_clean(&database.url, what).await;
    }
    for service in Service::ALL {
        wait_stream_clean(&system, service).await;
    }
    wait_ldap_clean(&system).await;
    system.stop().await;
}
