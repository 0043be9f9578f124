//! Erasure of a person's identity: on request (ErasePerson) and by the retention
//! sweep. After it, nothing of the person's identity is left in intake's database
//! (every table, every column) nor in its stream; the login is never given again;
//! a restatement restates the learner as erased; the counts stay the same.

use std::time::Duration;

use hosted_contracts::{subjects::Service, v1};
use hosted_platform::auth::Role;
use sqlx::Row;
use tonic::Code;

use crate::helpers::{TestIntake, config, day, person, stay, violated_fields};

/// Everything that identifies the person of these tests, in every form it is stored
/// or sent in (folded names, the birth date's other spellings).
const FAMILY_NAME: &str = "Quillardeau";
const BIRTH_NAME: &str = "Vasseurin";
const GIVEN_NAMES: &str = "Zébulonne Maëlys";
const BIRTH_DATE: &str = "1987-11-23";
const EMAIL: &str = "zq.erase@example.org";
const AMENDED_EMAIL: &str = "zq.other@example.org";
const INE: &str = "987654321QZ";
const PHONE: &str = "+33 6 12 34 56 78";

fn needles(login: &str) -> Vec<String> {
    [
        FAMILY_NAME,
        BIRTH_NAME,
        "Zébulonne",
        "zebulonne",
        "Maëlys",
        "maelys",
        BIRTH_DATE,
        "23/11/1987",
        "19871123",
        EMAIL,
        AMENDED_EMAIL,
        INE,
        PHONE,
        "612345678",
        login,
    ]
    .iter()
    .map(|needle| needle.to_lowercase())
    .collect()
}

fn the_person() -> v1::PersonInput {
    v1::PersonInput {
        birth_name: BIRTH_NAME.to_owned(),
        ine: INE.to_owned(),
        phone: PHONE.to_owned(),
        email: EMAIL.to_owned(),
        ..person(FAMILY_NAME, GIVEN_NAMES, BIRTH_DATE)
    }
}

fn erase(learner: &str, reason: &str, reference: &str) -> v1::ErasePersonRequest {
    v1::ErasePersonRequest {
        learner: learner.to_owned(),
        reason: reason.to_owned(),
        reference: reference.to_owned(),
    }
}

fn end_stay(stay_id: &str, end_date: String, reason: &str) -> v1::EndStayRequest {
    v1::EndStayRequest {
        stay_id: stay_id.to_owned(),
        end_date,
        reason: reason.to_owned(),
        early_end: v1::EarlyEnd::Left.into(),
    }
}

/// Which needles some row of some table of the database holds, as text (bytea
/// columns are seen as hex, so the needles are looked for in hex too), with where.
async fn found_in_database(intake: &TestIntake, needles: &[String]) -> Vec<String> {
    let mut conn = intake.database.connect().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(tables.contains(&"persons".to_owned()), "{tables:?}");
    let mut found = Vec::new();
    for table in tables {
        let rows = sqlx::query(&format!("SELECT t::text FROM \"{table}\" t"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        for row in rows {
            let text: String = row
                .get::<Option<String>, _>(0)
                .unwrap_or_default()
                .to_lowercase();
            for needle in needles {
                let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
                if text.contains(needle.as_str()) || text.contains(&hex) {
                    found.push(format!("{needle} in {table}"));
                }
            }
        }
    }
    found
}

/// Which needles some message of intake's stream holds (payload or headers).
async fn found_in_stream(intake: &TestIntake, needles: &[String]) -> Vec<String> {
    let stream = intake.namespace.stream(Service::Intake);
    let mut found = Vec::new();
    for message in hosted_testkit::stream_messages(&stream).await {
        let text = String::from_utf8_lossy(&message.payload).to_lowercase();
        let headers = format!("{:?}", message.headers).to_lowercase();
        for needle in needles {
            if text.contains(needle.as_str()) || headers.contains(needle.as_str()) {
                found.push(format!(
                    "{needle} in message {} ({})",
                    message.sequence, message.subject
                ));
            }
        }
    }
    found
}

/// Waits until the condition holds, at most 30 s.
async fn eventually<F, Fut>(mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn erasing_on_request_leaves_nothing_of_the_identity_in_the_database_nor_the_stream() {
    // Arrange: a person with every identity field, an amendment, a lock with a note,
    // a payment with a payer name, a stay ended early in words that name them.
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let registered = client
        .register_stay(intake.deve(v1::RegisterStayRequest {
            person: Some(the_person()),
            stay: Some(v1::StayInput {
                sponsor_unit: "ED-SPI".to_owned(),
                ..stay("VISITING_DOCTORAL")
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let learner = registered.learner.unwrap();
    let learner_id = learner.person.as_ref().unwrap().learner_id.clone();
    let login = learner.person.as_ref().unwrap().login.clone();
    let amended = client
        .amend_person(intake.deve(v1::AmendPersonRequest {
            learner_id: learner_id.clone(),
            expected_version: learner.version,
            person: Some(v1::PersonInput {
                email: AMENDED_EMAIL.to_owned(),
                ..Default::default()
            }),
            reason: format!("{FAMILY_NAME} wrote from {AMENDED_EMAIL}"),
        }))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    assert_eq!(amended.person.unwrap().email, AMENDED_EMAIL);
    client
        .lock_learner(intake.deve(v1::LockLearnerRequest {
            learner: login.clone(),
            reason: "unpaid".to_owned(),
            note: format!("{FAMILY_NAME} has not paid"),
        }))
        .await
        .unwrap();
    client
        .record_payment(intake.as_role(
            Role::Finance,
            v1::RecordPaymentRequest {
                stay_id: registered.stay_id.clone(),
                amount_cents: 25_000,
                paid_on: day(-1),
                payer: v1::Payer::Learner.into(),
                payer_name: format!("{GIVEN_NAMES} {FAMILY_NAME}"),
                reference: format!("VIR {FAMILY_NAME}"),
            },
        ))
        .await
        .unwrap();
    client
        .unlock_learner(intake.deve(v1::UnlockLearnerRequest {
            learner: login.clone(),
            note: format!("{FAMILY_NAME} paid"),
        }))
        .await
        .unwrap();
    client
        .end_stay(intake.deve(end_stay(
            &registered.stay_id,
            day(-1),
            &format!("{FAMILY_NAME} left"),
        )))
        .await
        .unwrap();
    let needles = needles(&login);
    assert!(
        !found_in_database(&intake, &needles).await.is_empty(),
        "the search finds the person before the erasure"
    );
    assert!(
        eventually(|| async { !found_in_stream(&intake, &needles).await.is_empty() }).await,
        "the stream holds the person's facts before the erasure"
    );

    // Act
    let erased = client
        .erase_person(intake.deve(erase(&login, "data-subject-request", "DPO-2026-0042")))
        .await
        .unwrap()
        .into_inner();

    // Assert: the stub, then nothing anywhere.
    assert!(!erased.already_erased);
    assert!(erased.erased_at.is_some());
    let stub = erased.learner.unwrap();
    let stub_person = stub.person.clone().unwrap();
    assert_eq!(stub_person.learner_id, learner_id);
    assert!(!stub_person.learner_number.is_empty(), "the number stays");
    assert_eq!(
        (
            stub_person.login.as_str(),
            stub_person.family_name.as_str(),
            stub_person.email.as_str()
        ),
        ("", "", "")
    );
    assert_eq!(stub_person.birth_date, "");
    assert_eq!(stub.stays.len(), 1, "the stays stay, for statistics");
    assert_eq!(stub.stays[0].population, "VISITING_DOCTORAL");
    assert_eq!(
        found_in_database(&intake, &needles).await,
        Vec::<String>::new(),
        "nothing of the person in intake's database"
    );
    assert!(
        eventually(|| async { found_in_stream(&intake, &needles).await.is_empty() }).await,
        "the stream still holds: {:?}",
        found_in_stream(&intake, &needles).await
    );
    let stream = intake.namespace.stream(Service::Intake);
    let erasure_events: Vec<_> = hosted_testkit::stream_messages(&stream)
        .await
        .into_iter()
        .filter(|message| {
            message.subject.as_str()
                == intake.subject(hosted_contracts::subjects::intake::PERSON_ERASED)
        })
        .collect();
    assert_eq!(erasure_events.len(), 1, "one erasure event, which stays");
    let event = <v1::PersonErasedEvent as hosted_contracts::prost::Message>::decode(
        erasure_events[0].payload.clone(),
    )
    .unwrap();
    assert_eq!(event.basis, "request");
    let meta = event.meta.unwrap();
    assert_eq!(meta.learner_id, learner_id);
    assert_eq!(meta.actor, "deve");
    assert_eq!(meta.learner_version, stub.version);

    // The audit trail says who erased, when, why and the reference, nothing else.
    let entries = client
        .list_audit_entries(intake.as_role(
            Role::Dosi,
            v1::ListAuditEntriesRequest {
                learner_id: learner_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let last = entries.last().unwrap();
    assert_eq!(last.action, "person.erased");
    assert_eq!(last.actor, "deve");
    assert_eq!(last.reason, "data-subject-request");
    assert!(last.occurred_at.is_some());
    let mut conn = intake.database.connect().await;
    let reference: String = sqlx::query_scalar(
        "SELECT changes->>'reference' FROM audit_trail WHERE action = 'person.erased'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(reference, "DPO-2026-0042");

    // Reads answer the stub; every change is refused; erasing again is a no-op.
    let shown = client
        .get_learner(intake.as_role(
            Role::Dosi,
            v1::GetLearnerRequest {
                key: Some(v1::get_learner_request::Key::LearnerId(learner_id.clone())),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(shown.erased_at.is_some());
    assert_eq!(shown.learner.unwrap().person.unwrap().family_name, "");
    let identity = client
        .identify_learner(intake.deve(v1::IdentifyLearnerRequest {
            key: Some(v1::identify_learner_request::Key::LearnerId(
                learner_id.clone(),
            )),
        }))
        .await
        .unwrap()
        .into_inner()
        .identity
        .unwrap();
    assert!(identity.erased_at.is_some());
    assert_eq!(
        (identity.login.as_str(), identity.display_name.as_str()),
        ("", "")
    );
    let by_login = client
        .get_learner(intake.deve(v1::GetLearnerRequest {
            key: Some(v1::get_learner_request::Key::Login(login.clone())),
        }))
        .await
        .unwrap_err();
    assert_eq!(by_login.code(), Code::NotFound, "the login leads nowhere");
    let found = client
        .search_learners(intake.deve(v1::SearchLearnersRequest {
            population: "VISITING_DOCTORAL".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.erased_learner_ids, vec![learner_id.clone()]);
    let by_name = client
        .search_learners(intake.deve(v1::SearchLearnersRequest {
            name: FAMILY_NAME.to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(by_name.learners.is_empty());
    let locked = client
        .lock_learner(intake.deve(v1::LockLearnerRequest {
            learner: learner_id.clone(),
            reason: "fraud".to_owned(),
            note: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(locked.code(), Code::FailedPrecondition, "{locked:?}");
    let amend = client
        .amend_person(intake.deve(v1::AmendPersonRequest {
            learner_id: learner_id.clone(),
            expected_version: stub.version,
            person: Some(v1::PersonInput {
                email: EMAIL.to_owned(),
                ..Default::default()
            }),
            reason: "again".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(amend.code(), Code::FailedPrecondition, "{amend:?}");
    let cancel = client
        .cancel_stay(intake.deve(v1::CancelStayRequest {
            stay_id: registered.stay_id.clone(),
            reason: "again".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(cancel.code(), Code::FailedPrecondition, "{cancel:?}");
    let again = client
        .erase_person(intake.deve(erase(&learner_id, "duplicate-record", "")))
        .await
        .unwrap()
        .into_inner();
    assert!(again.already_erased);
    assert_eq!(again.erased_at, erased.erased_at);

    // A restatement restates the learner as erased, never with an identity.
    let restated = client
        .restate_learners(intake.as_role(
            Role::Dosi,
            v1::RestateLearnersRequest {
                learner: learner_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(restated.learners, 1);
    assert!(restated.published);
    let erasure_subject = intake.subject(hosted_contracts::subjects::intake::PERSON_ERASED);
    let messages = hosted_testkit::stream_messages(&stream).await;
    assert_eq!(
        messages
            .iter()
            .filter(|message| message.subject.as_str() == erasure_subject)
            .count(),
        2
    );
    assert!(!messages.iter().any(|message| message.subject.as_str()
        == intake.subject(hosted_contracts::subjects::intake::LEARNER_RESTATED)));
    assert_eq!(
        found_in_stream(&intake, &needles).await,
        Vec::<String>::new()
    );

    // The same person registered again is a new learner with another login.
    let new = client
        .register_stay(intake.deve(v1::RegisterStayRequest {
            person: Some(the_person()),
            stay: Some(stay("IFSI")),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(new.new_person);
    let new_person = new.learner.unwrap().person.unwrap();
    assert_ne!(new_person.learner_id, learner_id);
    assert_ne!(
        new_person.login, login,
        "an erased login is never given again"
    );
    assert!(!new_person.login.is_empty());
}

#[tokio::test]
async fn an_erasure_is_refused_while_a_stay_is_open_and_to_whoever_is_not_deve() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let registered = client
        .register_stay(intake.deve(v1::RegisterStayRequest {
            person: Some(person("Oudinot", "Fantine", "1999-04-05")),
            stay: Some(stay("IFSI")),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let learner_id = registered.learner.unwrap().person.unwrap().learner_id;

    // Act
    let open = client
        .erase_person(intake.deve(erase(&learner_id, "data-subject-request", "")))
        .await
        .unwrap_err();
    let dosi = client
        .erase_person(intake.as_role(Role::Dosi, erase(&learner_id, "data-subject-request", "")))
        .await
        .unwrap_err();
    let invalid = client
        .erase_person(intake.deve(erase("", "because", "Fantine Oudinot")))
        .await
        .unwrap_err();
    let unknown = client
        .erase_person(intake.deve(erase(
            &uuid::Uuid::now_v7().to_string(),
            "legal-obligation",
            "",
        )))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(open.code(), Code::FailedPrecondition);
    assert!(open.message().contains("not ended"), "{}", open.message());
    assert!(
        open.message().contains(&registered.stay_id),
        "{}",
        open.message()
    );
    assert_eq!(dosi.code(), Code::PermissionDenied);
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&invalid),
        ["reason", "reference", "learner"],
        "every problem at once"
    );
    assert_eq!(unknown.code(), Code::NotFound);
    let shown = client
        .get_learner(intake.deve(v1::GetLearnerRequest {
            key: Some(v1::get_learner_request::Key::LearnerId(learner_id)),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(shown.erased_at.is_none());
    assert_eq!(
        shown.learner.unwrap().person.unwrap().family_name,
        "Oudinot"
    );
}

#[tokio::test]
async fn the_sweep_erases_whose_retention_ran_out_and_leaves_the_others() {
    // Arrange: three days of retention; one person whose stay ended five days ago,
    // one whose stay ended yesterday, one hosted now.
    let database = hosted_testkit::TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
    let namespace = hosted_testkit::namespace().await;
    let callers = hosted_testkit::TestCallers::new();
    let mut settings = config(
        &database,
        hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace),
        &callers,
    );
    settings.retention.keep_days_after_last_stay = 3;
    settings.retention.sweep_interval = Duration::from_millis(200);
    settings.retention.login_key = "a test key of at least thirty-two characters".to_owned();
    let intake = TestIntake::spawn_with(settings, database, namespace, callers).await;
    let mut client = intake.client().await;
    let mut register = async |family_name: &str, ended: Option<i64>| {
        let registered = client
            .register_stay(intake.deve(v1::RegisterStayRequest {
                person: Some(person(family_name, "Anselme", "1990-01-02")),
                stay: Some(stay("IFSI")),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        if let Some(offset) = ended {
            client
                .end_stay(intake.deve(end_stay(&registered.stay_id, day(offset), "left")))
                .await
                .unwrap();
        }
        registered.learner.unwrap().person.unwrap().learner_id
    };
    let expired = register("Brossard", Some(-5)).await;
    let kept = register("Chauvelin", Some(-1)).await;
    let hosted = register("Dampierre", None).await;
    let reader = client.clone();
    let erased_at = |learner_id: String| {
        let mut client = reader.clone();
        let request = intake.deve(v1::GetLearnerRequest {
            key: Some(v1::get_learner_request::Key::LearnerId(learner_id)),
        });
        async move {
            client
                .get_learner(request)
                .await
                .unwrap()
                .into_inner()
                .erased_at
        }
    };

    // Act: the sweep runs every 200 ms.
    let swept = eventually(|| {
        let check = erased_at(expired.clone());
        async move { check.await.is_some() }
    })
    .await;

    // Assert
    assert!(swept, "the person whose retention ran out is erased");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(erased_at(kept).await.is_none(), "three days are not over");
    assert!(erased_at(hosted).await.is_none(), "hosted now");
    let entries = client
        .list_audit_entries(intake.as_role(
            Role::Dosi,
            v1::ListAuditEntriesRequest {
                learner_id: expired.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let last = entries.last().unwrap();
    assert_eq!(
        (
            last.action.as_str(),
            last.actor.as_str(),
            last.reason.as_str()
        ),
        ("person.erased", "system", "retention")
    );
    let needles = vec!["brossard".to_owned()];
    assert_eq!(
        found_in_database(&intake, &needles).await,
        Vec::<String>::new()
    );
    assert!(
        eventually(|| async { found_in_stream(&intake, &needles).await.is_empty() }).await,
        "the stream still holds: {:?}",
        found_in_stream(&intake, &needles).await
    );
}

#[tokio::test]
async fn the_counts_are_the_same_after_an_erasure() {
    // Arrange: two learners hosted on the day counted, one of whom left since.
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let mut learner_ids = Vec::new();
    for family_name in ["Esquirol", "Fabrègue"] {
        let registered = client
            .register_stay(intake.deve(v1::RegisterStayRequest {
                person: Some(person(family_name, "Honorine", "1995-06-07")),
                stay: Some(stay("IFSI")),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        learner_ids.push((
            registered.learner.unwrap().person.unwrap().learner_id,
            registered.stay_id,
        ));
    }
    let (leaving, stay_id) = learner_ids[0].clone();
    client
        .end_stay(intake.deve(end_stay(&stay_id, day(-2), "left")))
        .await
        .unwrap();
    let reader = client.clone();
    let stats = || {
        let mut client = reader.clone();
        let request = intake.as_role(Role::Dosi, v1::GetStatsRequest { on: day(-3) });
        async move { client.get_stats(request).await.unwrap().into_inner() }
    };
    let before = stats().await;
    assert_eq!(before.total_learners, 2);
    assert!(!before.by_year.is_empty(), "counts per year");

    // Act
    client
        .erase_person(intake.deve(erase(&leaving, "data-subject-request", "")))
        .await
        .unwrap();

    // Assert
    assert_eq!(stats().await, before);
}
