//! The unit catalogue, and the start horizon as configured.

use hosted_contracts::{subjects::intake, v1};
use hosted_platform::auth::Role;
use hosted_testkit::{TestCallers, TestDatabase};
use tonic::Code;

use crate::helpers::{TestIntake, config, day, registration};

fn physics() -> v1::Unit {
    v1::Unit {
        code: "LAB-PHYS".to_owned(),
        kind: "lab".to_owned(),
        label: "Physics laboratory".to_owned(),
    }
}

#[tokio::test]
async fn the_unit_catalogue_is_seeded_and_grows_without_code() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let mut unknown = registration("Curie", "Marie");
    unknown.stay.as_mut().unwrap().sponsor_unit = "LAB-PHYS".to_owned();
    let refused = client
        .register_stay(intake.deve(unknown.clone()))
        .await
        .unwrap_err();

    // Act
    let saved = client
        .save_unit(intake.deve(v1::SaveUnitRequest {
            unit: Some(v1::Unit {
                code: " lab-phys ".to_owned(),
                ..physics()
            }),
            reason: "new joint research unit".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    let registered = client.register_stay(intake.deve(unknown)).await.unwrap();

    // Assert
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(saved.created);
    assert_eq!(saved.unit.unwrap(), physics());
    assert_eq!(
        registered.into_inner().learner.unwrap().stays[0].sponsor_unit,
        "LAB-PHYS"
    );
    assert_eq!(
        intake.subjects(1).await[0],
        intake.subject(intake::UNIT_SAVED)
    );
    let units = client
        .list_units(intake.as_role(Role::CardOffice, v1::ListUnitsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .units;
    let codes: Vec<&str> = units.iter().map(|unit| unit.code.as_str()).collect();
    // What the demo, the docs, the tests and the generator use.
    for seeded in [
        "IFSI-NORD",
        "IFSI-SUD",
        "IFSI-CHU",
        "INSPE",
        "ED-SPI",
        "ED-SHS",
        "ED-SVS",
        "ED-MSTIC",
        "SUFA",
        "DFC",
        "DAVA",
        "LAB-CHEM",
        "LAB-BIO",
        "LAB-42",
        "LAB-7290",
    ] {
        assert!(codes.contains(&seeded), "{seeded} not in {codes:?}");
    }
    assert!(units.contains(&physics()));

    // Saving again changes it in place.
    let again = client
        .save_unit(intake.deve(v1::SaveUnitRequest {
            unit: Some(v1::Unit {
                label: "Physics and astrophysics laboratory".to_owned(),
                ..physics()
            }),
            reason: "merged".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(
        again.unit.unwrap().label,
        "Physics and astrophysics laboratory"
    );
    intake.stop().await;
}

#[tokio::test]
async fn a_unit_definition_is_checked_field_by_field() {
    let intake = TestIntake::spawn().await;
    let status = intake
        .client()
        .await
        .save_unit(intake.deve(v1::SaveUnitRequest {
            unit: Some(v1::Unit {
                code: "LAB][affil=staff".to_owned(),
                kind: "faculty".to_owned(),
                label: " ".to_owned(),
            }),
            reason: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    for field in ["unit.code", "unit.kind", "unit.label", "reason"] {
        assert!(
            status.message().contains(field),
            "{field}: {}",
            status.message()
        );
    }
    intake.stop().await;
}

#[tokio::test]
async fn the_start_horizon_is_configured() {
    // Arrange
    let database = TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
    let namespace = hosted_testkit::namespace().await;
    let callers = TestCallers::new();
    let mut config = config(
        &database,
        hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace),
        &callers,
    );
    config.registry.max_start_ahead_days = 30;
    let intake = TestIntake::spawn_with(config, database, namespace, callers).await;
    let mut client = intake.client().await;
    let at = |start: i64| {
        let mut request = registration("Dupont", "Élodie");
        request.stay.as_mut().unwrap().start_date = day(start);
        request.stay.as_mut().unwrap().end_date = day(start + 60);
        request
    };

    // Act
    let too_far = client.register_stay(intake.deve(at(31))).await.unwrap_err();
    let within = client.register_stay(intake.deve(at(30))).await;

    // Assert
    assert_eq!(too_far.code(), Code::InvalidArgument);
    assert!(
        too_far
            .message()
            .contains("stay.start_date: more than 30 days ahead"),
        "{}",
        too_far.message()
    );
    assert!(within.is_ok(), "{within:?}");
    intake.stop().await;
}
