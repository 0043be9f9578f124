//! The resources a sponsor asks for a stay: checked for their form, stored sorted,
//! carried in every learner snapshot, amended with an audit entry and an event.

use hosted_contracts::{prost::Message, subjects::Service, subjects::intake, v1};
use tonic::Code;

use crate::{
    helpers::{TestIntake, person, registration, stay, violated_fields},
    register::wait_for_messages,
};

fn names(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

fn asking(family_name: &str, resources: &[&str]) -> v1::RegisterStayRequest {
    let mut request = registration(family_name, "Lucie");
    request.stay.as_mut().unwrap().requested_resources = names(resources);
    request
}

/// The learners of intake's stream so far, waiting for at least `count` events.
async fn published_learners(intake: &TestIntake, count: usize) -> Vec<v1::Learner> {
    wait_for_messages(&intake.namespace.stream(Service::Intake), count)
        .await
        .into_iter()
        .map(|message| {
            v1::LearnerEvent::decode(message.payload)
                .unwrap()
                .learner
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn requested_resources_are_stored_sorted_read_back_and_published() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;

    // Act
    let registered = client
        .register_stay(intake.deve(asking("Garnier", &[" premises", "library "])))
        .await
        .unwrap()
        .into_inner();

    // Assert: in the answer, in GetLearner, in the event and in the table.
    let learner = registered.learner.unwrap();
    assert_eq!(
        learner.stays[0].requested_resources,
        ["library", "premises"]
    );
    let learner_id = learner.person.as_ref().unwrap().learner_id.clone();
    let fetched = client
        .get_learner(intake.deve(v1::GetLearnerRequest {
            key: Some(v1::get_learner_request::Key::LearnerId(learner_id)),
        }))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    assert_eq!(
        fetched.stays[0].requested_resources,
        ["library", "premises"]
    );
    let published = published_learners(&intake, 1).await;
    assert_eq!(
        published[0].stays[0].requested_resources,
        ["library", "premises"]
    );
    let mut conn = intake.database.connect().await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT requested_resources FROM stays")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, ["library", "premises"]);

    // The same stay registered again is the same stay: what it asks for is changed
    // by AmendStay, not by registering it again.
    let again = client
        .register_stay(intake.deve(asking("Garnier", &["wifi"])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.stay_id, registered.stay_id);
    let again = again.learner.unwrap();
    assert_eq!(again.version, 1);
    assert_eq!(again.stays[0].requested_resources, ["library", "premises"]);

    // Another stay that asks for nothing has an empty list.
    let mut other = registration("Garnier", "Lucie");
    other.stay = Some(stay("VAE"));
    let other = client
        .register_stay(intake.deve(other))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    let vae = other
        .stays
        .iter()
        .find(|stay| stay.population == "VAE")
        .unwrap();
    assert!(vae.requested_resources.is_empty());
    intake.stop().await;
}

#[tokio::test]
async fn badly_named_resources_are_refused_with_the_field_named() {
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let mut request = asking(
        "Garnier",
        &["library", "Premises", " ", " library", "lab_3", "premises"],
    );
    request.stay.as_mut().unwrap().sponsor_unit = String::new();

    let status = client
        .register_stay(intake.deve(request))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "stay.sponsor_unit",
            "stay.requested_resources[1]",
            "stay.requested_resources[2]",
            "stay.requested_resources[3]",
            "stay.requested_resources[4]",
        ]
    );
    assert!(
        status.message().contains("stay.requested_resources[3]"),
        "{}",
        status.message()
    );
    let mut conn = intake.database.connect().await;
    let persons: i64 = sqlx::query_scalar("SELECT count(*) FROM persons")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(persons, 0);
    intake.stop().await;
}

#[tokio::test]
async fn an_import_row_with_a_bad_resource_is_refused_and_the_others_created() {
    use v1::ImportOutcome::{Created, Rejected};
    // Arrange
    let intake = TestIntake::spawn().await;
    let row = |row_number: i64, family_name: &str, birth_date: &str, resources: &[&str]| {
        let mut stay = stay("IFSI");
        stay.requested_resources = names(resources);
        v1::ImportRow {
            row_number,
            person: Some(person(family_name, "Noé", birth_date)),
            stay: Some(stay),
            confirm_new_person: false,
        }
    };
    let rows = vec![
        row(2, "Abadie", "2001-01-01", &["library"]),
        row(3, "Barbier", "2002-02-02", &["library", "Wifi"]),
        row(4, "Chevalier", "2003-03-03", &["premises", "smart-card"]),
        row(5, "Dupuis", "2004-04-04", &[]),
    ];

    // Act
    let results = intake
        .client()
        .await
        .import_stays(intake.deve(v1::ImportStaysRequest {
            rows,
            dry_run: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .results;

    // Assert
    let outcomes: Vec<(i64, v1::ImportOutcome)> = results
        .iter()
        .map(|result| (result.row_number, result.outcome()))
        .collect();
    assert_eq!(
        outcomes,
        [(2, Created), (3, Rejected), (4, Created), (5, Created)]
    );
    let rejected: Vec<&str> = results[1]
        .violations
        .iter()
        .map(|violation| violation.field.as_str())
        .collect();
    assert_eq!(rejected, ["stay.requested_resources[1]"]);
    assert!(results[1].violations[0].reason.contains("\"Wifi\""));
    let mut conn = intake.database.connect().await;
    let stored: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT p.family_name, s.requested_resources FROM stays s
         JOIN persons p ON p.learner_id = s.learner_id ORDER BY p.family_name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        stored,
        [
            ("Abadie".to_owned(), names(&["library"])),
            ("Chevalier".to_owned(), names(&["premises", "smart-card"])),
            ("Dupuis".to_owned(), Vec::new()),
        ]
    );
    let published = published_learners(&intake, 3).await;
    let chevalier = published
        .iter()
        .find(|learner| learner.person.as_ref().unwrap().family_name == "Chevalier")
        .unwrap();
    assert_eq!(
        chevalier.stays[0].requested_resources,
        ["premises", "smart-card"]
    );
    intake.stop().await;
}

#[tokio::test]
async fn amend_stay_replaces_and_clears_requested_resources_with_audit_and_event() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let stay_id = client
        .register_stay(intake.deve(asking("Garnier", &["library"])))
        .await
        .unwrap()
        .into_inner()
        .stay_id;
    let request = |resources: &[&str], reason: &str| v1::AmendStayRequest {
        stay_id: stay_id.clone(),
        set_requested_resources: true,
        requested_resources: names(resources),
        reason: reason.to_owned(),
        ..Default::default()
    };

    // Act: replace, replace with the same (in another order), clear.
    let replaced = client
        .amend_stay(intake.deve(request(&["premises", "library"], "lab work")))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    let unchanged = client
        .amend_stay(intake.deve(request(&["library", "premises"], "lab work")))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    let cleared = client
        .amend_stay(intake.deve(request(&[], "lab closed")))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();

    // Assert
    assert_eq!(replaced.version, 2);
    assert_eq!(
        replaced.stays[0].requested_resources,
        ["library", "premises"]
    );
    assert_eq!(
        replaced.stays[0].sponsor_unit, "IFSI-NORD",
        "the sponsor is kept"
    );
    assert_eq!(unchanged, replaced, "an amendment that changes nothing");
    assert_eq!(cleared.version, 3);
    assert!(cleared.stays[0].requested_resources.is_empty());

    assert_eq!(
        intake.subjects(3).await,
        [
            intake.subject(intake::STAY_REGISTERED),
            intake.subject(intake::STAY_AMENDED),
            intake.subject(intake::STAY_AMENDED),
        ]
    );
    let published = published_learners(&intake, 3).await;
    assert_eq!(published[1], replaced);
    assert_eq!(published[2], cleared);

    let mut conn = intake.database.connect().await;
    let audit: Vec<(Option<String>, serde_json::Value)> = sqlx::query_as(
        "SELECT reason, changes FROM audit_trail WHERE action = 'stay.amended' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        audit,
        [
            (
                Some("lab work".to_owned()),
                serde_json::json!({ "requested_resources": {
                    "from": ["library"], "to": ["library", "premises"] } })
            ),
            (
                Some("lab closed".to_owned()),
                serde_json::json!({ "requested_resources": {
                    "from": ["library", "premises"], "to": [] } })
            ),
        ]
    );
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM platform_outbox")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        events, 3,
        "the amendment that changed nothing published nothing"
    );
    intake.stop().await;
}

#[tokio::test]
async fn an_amendment_of_requested_resources_is_checked_whole() {
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let stay_id = client
        .register_stay(intake.deve(asking("Garnier", &["library"])))
        .await
        .unwrap()
        .into_inner()
        .stay_id;

    let bad = client
        .amend_stay(intake.deve(v1::AmendStayRequest {
            stay_id: stay_id.clone(),
            set_requested_resources: true,
            requested_resources: names(&["premises", "Premises", "premises"]),
            reason: " ".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&bad),
        ["reason", "requested_resources[1]", "requested_resources[2]"]
    );

    // A list without set_requested_resources would be kept silently: refused.
    let unflagged = client
        .amend_stay(intake.deve(v1::AmendStayRequest {
            stay_id,
            sponsor_unit: "IFSI-SUD".to_owned(),
            requested_resources: names(&["premises"]),
            reason: "reorganisation".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(unflagged.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&unflagged), ["set_requested_resources"]);

    let mut conn = intake.database.connect().await;
    let stay: (String, Vec<String>) =
        sqlx::query_as("SELECT sponsor_unit, requested_resources FROM stays")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(stay, ("IFSI-NORD".to_owned(), names(&["library"])));
    intake.stop().await;
}
