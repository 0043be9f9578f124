//! Locking (suspending) a learner: roles, reason codes, idempotence, audit, events.

use hosted_contracts::{
    prost::Message,
    subjects::{Service, intake},
    v1,
};
use hosted_platform::auth::Role;
use tonic::Code;

use crate::{
    helpers::{TestIntake, registration, violated_fields},
    register::wait_for_messages,
};

async fn registered_login(intake: &TestIntake) -> String {
    intake
        .client()
        .await
        .register_stay(intake.deve(registration("Garnier", "Lucie")))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap()
        .person
        .unwrap()
        .login
}

fn lock(learner: &str, reason: &str) -> v1::LockLearnerRequest {
    v1::LockLearnerRequest {
        learner: learner.to_owned(),
        reason: reason.to_owned(),
        note: "case 2026-114".to_owned(),
    }
}

#[tokio::test]
async fn a_lock_is_shown_versioned_audited_and_published_and_a_second_one_is_a_no_op() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let login = registered_login(&intake).await;

    // Act: dosi locks (by login in another case), again with the same reason, then
    // deve changes the reason.
    let locked = client
        .lock_learner(intake.as_role(Role::Dosi, lock(&login.to_uppercase(), "fraud")))
        .await
        .unwrap()
        .into_inner();
    let again = client
        .lock_learner(intake.as_role(Role::Dosi, lock(&login, "FRAUD")))
        .await
        .unwrap()
        .into_inner();
    let technical = client
        .lock_learner(intake.deve(lock(&login, "compromised")))
        .await
        .unwrap()
        .into_inner();
    let shown = client
        .get_learner(intake.deve(v1::GetLearnerRequest {
            key: Some(v1::get_learner_request::Key::Login(login.clone())),
        }))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();

    // Assert
    assert!(locked.changed);
    let learner = locked.learner.unwrap();
    assert_eq!(learner.version, 2, "the lock is a new version");
    let first_lock = learner.lock.clone().unwrap();
    assert_eq!(first_lock.kind(), v1::LockKind::Administrative);
    assert_eq!(first_lock.reason, "fraud");
    assert_eq!(first_lock.by, "dosi");
    assert!(first_lock.since.is_some());
    assert!(!again.changed, "the same lock again changes nothing");
    assert_eq!(again.learner.unwrap().version, 2);
    assert!(technical.changed);
    let technical = technical.learner.unwrap();
    assert_eq!(technical.version, 3);
    let lock_now = technical.lock.unwrap();
    assert_eq!(lock_now.kind(), v1::LockKind::Technical);
    assert_eq!(lock_now.reason, "compromised");
    assert_eq!(
        (lock_now.since, lock_now.by.as_str()),
        (first_lock.since, "dosi"),
        "another reason keeps the lock's instant and who locked"
    );
    assert_eq!(
        shown.lock.as_ref().map(|lock| lock.reason.as_str()),
        Some("compromised")
    );

    let messages = wait_for_messages(&intake.namespace.stream(Service::Intake), 3).await;
    let subjects: Vec<String> = messages.iter().map(|m| m.subject.to_string()).collect();
    assert_eq!(
        subjects,
        [
            intake.subject(intake::STAY_REGISTERED),
            intake.subject(intake::LEARNER_LOCKED),
            intake.subject(intake::LEARNER_LOCKED),
        ]
    );
    let event = v1::LearnerEvent::decode(messages[1].payload.clone()).unwrap();
    assert_eq!(event.reason, "fraud");
    assert_eq!(event.meta.unwrap().actor, "dosi");
    assert_eq!(event.learner.unwrap().lock.unwrap().reason, "fraud");

    let mut conn = intake.database.connect().await;
    let audit: Vec<(String, String, Option<String>, serde_json::Value)> = sqlx::query_as(
        "SELECT action, actor, reason, changes FROM audit_trail WHERE action LIKE 'learner.%' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .map(|(action, actor, reason, changes): (String, String, Option<String>, sqlx::types::Json<serde_json::Value>)| (action, actor, reason, changes.0))
    .collect();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(
        (
            audit[0].0.as_str(),
            audit[0].1.as_str(),
            audit[0].2.as_deref()
        ),
        ("learner.locked", "dosi", Some("fraud"))
    );
    assert_eq!(audit[0].3["note"], "case 2026-114");
    assert_eq!(audit[0].3["kind"], "administrative");
    assert_eq!(
        (audit[1].1.as_str(), audit[1].2.as_deref()),
        ("deve", Some("compromised"))
    );
    assert_eq!(audit[1].3["lock"]["from"], "fraud");
    intake.stop().await;
}

#[tokio::test]
async fn an_unlock_lifts_the_lock_once_and_is_audited_and_published() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let login = registered_login(&intake).await;
    client
        .lock_learner(intake.deve(lock(&login, "unpaid")))
        .await
        .unwrap();

    // Act
    let unlocked = client
        .unlock_learner(intake.as_role(
            Role::Dosi,
            v1::UnlockLearnerRequest {
                learner: login.clone(),
                note: "paid at last".to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let again = client
        .unlock_learner(intake.deve(v1::UnlockLearnerRequest {
            learner: login.clone(),
            note: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();

    // Assert
    assert!(unlocked.changed);
    let learner = unlocked.learner.unwrap();
    assert!(learner.lock.is_none());
    assert_eq!(learner.version, 3);
    assert!(
        !again.changed,
        "unlocking an unlocked learner changes nothing"
    );
    assert_eq!(again.learner.unwrap().version, 3);
    let messages = wait_for_messages(&intake.namespace.stream(Service::Intake), 3).await;
    assert_eq!(messages.len(), 3);
    assert_eq!(
        messages[2].subject.to_string(),
        intake.subject(intake::LEARNER_UNLOCKED)
    );
    let event = v1::LearnerEvent::decode(messages[2].payload.clone()).unwrap();
    assert_eq!(event.meta.unwrap().actor, "dosi");
    assert!(event.learner.unwrap().lock.is_none());
    let mut conn = intake.database.connect().await;
    let audit: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT action, actor, reason FROM audit_trail WHERE action LIKE 'learner.%' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        audit,
        [
            (
                "learner.locked".to_owned(),
                "deve".to_owned(),
                Some("unpaid".to_owned())
            ),
            (
                "learner.unlocked".to_owned(),
                "dosi".to_owned(),
                Some("unpaid".to_owned())
            ),
        ]
    );
    intake.stop().await;
}

#[tokio::test]
async fn a_lock_needs_a_known_reason_code_and_a_learner_and_only_deve_or_dosi() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let login = registered_login(&intake).await;

    // Act
    let unknown_reason = client
        .lock_learner(intake.deve(lock(&login, "vandalism")))
        .await
        .unwrap_err();
    let nothing = client
        .lock_learner(intake.deve(lock(" ", "")))
        .await
        .unwrap_err();
    let long_note = client
        .unlock_learner(intake.deve(v1::UnlockLearnerRequest {
            learner: login.clone(),
            note: "x".repeat(501),
        }))
        .await
        .unwrap_err();
    let unknown_learner = client
        .lock_learner(intake.deve(lock("nobody.here", "fraud")))
        .await
        .unwrap_err();
    let integrator = client
        .lock_learner(intake.as_role(Role::Integrator, lock(&login, "fraud")))
        .await
        .unwrap_err();
    let finance = client
        .unlock_learner(intake.as_role(
            Role::Finance,
            v1::UnlockLearnerRequest {
                learner: login.clone(),
                note: String::new(),
            },
        ))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(unknown_reason.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&unknown_reason), ["reason"]);
    assert!(
        unknown_reason
            .message()
            .contains("misconduct, fraud, unpaid"),
        "{}",
        unknown_reason.message()
    );
    assert_eq!(nothing.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&nothing), ["reason", "learner"]);
    assert_eq!(long_note.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&long_note), ["note"]);
    assert_eq!(unknown_learner.code(), Code::NotFound);
    assert_eq!(integrator.code(), Code::PermissionDenied);
    assert_eq!(finance.code(), Code::PermissionDenied);
    let learner = client
        .get_learner(intake.deve(v1::GetLearnerRequest {
            key: Some(v1::get_learner_request::Key::Login(login)),
        }))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    assert!(learner.lock.is_none());
    assert_eq!(learner.version, 1, "nothing refused was written");
    intake.stop().await;
}
