//! Access and portability (issue 14, point 4): `hlctl person export` gathers what
//! intake, entitlement, cards and directory hold about a person into one JSON
//! document, the export audited in intake; once the person is erased, the export holds
//! nothing of their identity.

use std::time::Duration;

use hosted_contracts::v1;
use hosted_e2e::{TestSystem, registration};
use hosted_hlctl::{audit::Sources, persons};
use hosted_platform::auth::Role;
use serde_json::Value;

use crate::{audit::sources, entitlement::wait_for};

const FAMILY_NAME: &str = "Vauquelinard";
const GIVEN_NAMES: &str = "Oriane";
const BIRTH_DATE: &str = "1996-11-09";
const EMAIL: &str = "oriane.v@access-example.org";
const INE: &str = "723456789GH";
const PHONE: &str = "+33 6 12 23 34 45";
const LOGIN: &str = "oriane.vauquelinard";

/// The four services, and a C2i2e trainee of the rectorat with every resource, a card
/// and a directory entry; returns their stay id.
async fn granted_person_with_card_and_entry(system: &mut TestSystem) -> String {
    system.await_grants = Duration::from_secs(20);
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;
    system.start_directory().await;
    let mut request = registration(FAMILY_NAME, GIVEN_NAMES, BIRTH_DATE);
    let person = request.person.as_mut().unwrap();
    person.email = EMAIL.to_owned();
    person.ine = INE.to_owned();
    person.phone = PHONE.to_owned();
    request.stay.as_mut().unwrap().population = "RECTORAT_C2I2E".to_owned();
    let registered = system.register(request).await;
    assert_eq!(registered.learner.unwrap().person.unwrap().login, LOGIN);
    wait_for(system, LOGIN, "wifi", true).await;
    crate::entries::wait_for_entry(system, LOGIN, "its grants", |entry| {
        !crate::entries::values(entry, "eduPersonEntitlement").is_empty()
    })
    .await;
    registered.stay_id
}

/// The export, again until `done` holds of it (up to 30 s: the whole suite runs
/// beside it); the last one when it never does.
async fn export_until(system: &TestSystem, learner: &str, done: impl Fn(&Value) -> bool) -> Value {
    let dosi = system.callers.token(Role::Dosi).to_owned();
    let sources = sources(system, &dosi);
    let mut document = Value::Null;
    for _ in 0..600 {
        document = persons::export(&sources, learner).await.unwrap();
        if done(&document) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    document
}

fn records<'a>(document: &'a Value, service: &str, table: &str) -> &'a [Value] {
    document["services"][service]["records"][table]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn has_card(document: &Value) -> bool {
    !records(document, "cards", "cards").is_empty()
}

#[tokio::test]
async fn a_persons_export_holds_what_every_service_keeps_about_them() {
    // Arrange
    let mut system = TestSystem::prepare(None).await;
    granted_person_with_card_and_entry(&mut system).await;

    // Act
    let document = export_until(&system, LOGIN, has_card).await;

    // Assert: intake's person, login, stay and audit trail, with the export itself.
    let person = &records(&document, "intake", "persons")[0];
    assert_eq!(person["family_name"], FAMILY_NAME);
    assert_eq!(person["birth_date"], BIRTH_DATE);
    assert_eq!(person["ine"], INE);
    assert_eq!(records(&document, "intake", "logins")[0]["login"], LOGIN);
    assert_eq!(records(&document, "intake", "stays").len(), 1);
    let actions: Vec<&str> = records(&document, "intake", "audit_trail")
        .iter()
        .filter_map(|row| row["action"].as_str())
        .collect();
    assert!(actions.contains(&"person.exported"), "{actions:?}");
    // Entitlement's copy of the learner and their grants.
    assert_eq!(
        records(&document, "entitlement", "learners")[0]["learner_id"],
        document["learner_id"]
    );
    assert!(!records(&document, "entitlement", "grants").is_empty());
    // Cards' learner, card and its steps.
    assert_eq!(records(&document, "cards", "cards").len(), 1);
    assert!(!records(&document, "cards", "card_transitions").is_empty());
    // Directory's account and the entry as LDAP holds it.
    let accounts = records(&document, "directory", "accounts");
    assert_eq!(accounts.len(), 1);
    assert_eq!(
        accounts[0]["learner"]["family_name"], FAMILY_NAME,
        "the learner directory keeps is readable, not protobuf"
    );
    let entry = &document["services"]["directory"]["records"]["ldap_entry"];
    assert_eq!(entry["uid"], serde_json::json!([LOGIN]), "{entry}");
    // Every service says when it read its part.
    for service in ["intake", "entitlement", "cards", "directory"] {
        assert!(
            document["services"][service]["exported_at"].is_string(),
            "{service}"
        );
    }
    let text = document.to_string();
    for value in [GIVEN_NAMES, EMAIL, PHONE] {
        assert!(text.contains(value), "{value} is in the export");
    }
    system.stop().await;
}

#[tokio::test]
async fn an_erased_persons_export_holds_nothing_of_their_identity() {
    // Arrange: the person left yesterday and is erased on request.
    let mut system = TestSystem::prepare(None).await;
    let stay_id = granted_person_with_card_and_entry(&mut system).await;
    let learner_id = export_until(&system, LOGIN, has_card).await["learner_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut intake = system.intake_client().await;
    intake
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
    intake
        .erase_person(system.as_role(
            Role::Deve,
            v1::ErasePersonRequest {
                learner: LOGIN.to_owned(),
                reason: "data-subject-request".to_owned(),
                reference: "DSR-2026-0042".to_owned(),
            },
        ))
        .await
        .unwrap();
    let needles = [
        FAMILY_NAME,
        GIVEN_NAMES,
        BIRTH_DATE,
        EMAIL,
        INE,
        PHONE,
        LOGIN,
    ];
    let left = |document: &Value| {
        let text = document.to_string();
        needles
            .iter()
            .filter(|needle| text.contains(**needle))
            .copied()
            .collect::<Vec<_>>()
    };

    // Act: by the learner id (the login is gone), once every service has erased.
    let document = export_until(&system, &learner_id, |document| left(document).is_empty()).await;

    // Assert: the stub, the card and the erasure stay; no identity, no entry.
    assert_eq!(left(&document), Vec::<&str>::new(), "{document:#}");
    assert!(!records(&document, "intake", "persons")[0]["erased_at"].is_null());
    assert_eq!(records(&document, "cards", "cards").len(), 1);
    assert!(document["services"]["directory"]["records"]["ldap_entry"].is_null());
    system.stop().await;
}

#[tokio::test]
async fn an_export_of_nobody_is_not_found_and_asks_no_other_service() {
    // Arrange: intake alone; the other services' addresses lead nowhere.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    let dosi = system.callers.token(Role::Dosi).to_owned();
    let intake = hosted_hlctl::rpc::lazy(&format!(
        "http://{}",
        system.intake.as_ref().unwrap().address
    ))
    .unwrap();
    let nowhere = hosted_hlctl::rpc::lazy("http://127.0.0.1:9").unwrap();
    let sources = Sources {
        intake,
        entitlement: nowhere.clone(),
        cards: nowhere.clone(),
        directory: nowhere,
        token: Some(&dosi),
    };

    // Act
    let error = persons::export(&sources, "no.one").await.unwrap_err();

    // Assert
    let status = error
        .downcast_ref::<hosted_hlctl::rpc::ServerError>()
        .expect("intake's answer");
    assert_eq!(status.code(), "NOT_FOUND", "{error:#}");
    system.stop().await;
}
