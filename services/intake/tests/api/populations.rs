use hosted_contracts::{subjects::intake, v1};
use tonic::Code;

use crate::helpers::{TestIntake, person, stay};

fn erasmus() -> v1::Population {
    v1::Population {
        code: "ERASMUS_INCOMING".to_owned(),
        label: "Incoming exchange students outside a diploma".to_owned(),
        supann_population: "AHL".to_owned(),
        agreement_required: false,
        default_duration_days: 150,
        max_duration_days: 365,
        payment_required: true,
        fee_cents: Some(12_000),
    }
}

#[tokio::test]
async fn the_catalogue_grows_without_code() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;

    // Act
    let saved = client
        .save_population(intake.deve(v1::SavePopulationRequest {
            population: Some(erasmus()),
            reason: "new exchange agreement".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    let registered = client
        .register_stay(intake.deve(v1::RegisterStayRequest {
            person: Some(person("Kowalska", "Zofia", "2003-04-05")),
            stay: Some(stay("ERASMUS_INCOMING")),
            confirm_new_person: false,
        }))
        .await
        .unwrap()
        .into_inner();

    // Assert
    assert!(saved.created);
    let populations = client
        .list_populations(intake.deve(v1::ListPopulationsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .populations;
    assert_eq!(populations.len(), 10);
    assert!(populations.contains(&erasmus()));
    let stay = &registered.learner.unwrap().stays[0];
    assert_eq!(stay.supann_population, "AHL");
    assert_eq!(
        stay.payment_status(),
        v1::PaymentStatus::Due,
        "the population requires payment"
    );
    assert_eq!(
        intake.subjects(2).await[0],
        intake.subject(intake::POPULATION_SAVED)
    );

    // Saving again changes it in place.
    let mut longer = erasmus();
    longer.max_duration_days = 400;
    let again = client
        .save_population(intake.deve(v1::SavePopulationRequest {
            population: Some(longer),
            reason: "two semesters".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.population.unwrap().max_duration_days, 400);
    intake.stop().await;
}

#[tokio::test]
async fn a_population_definition_is_checked_field_by_field() {
    let intake = TestIntake::spawn().await;
    let status = intake
        .client()
        .await
        .save_population(intake.deve(v1::SavePopulationRequest {
            population: Some(v1::Population {
                code: "erasmus".to_owned(),
                default_duration_days: 10,
                max_duration_days: 5,
                fee_cents: Some(-1),
                ..Default::default()
            }),
            reason: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    for field in [
        "population.code",
        "population.label",
        "population.supann_population",
        "population.max_duration_days",
        "population.fee_cents",
        "reason",
    ] {
        assert!(
            status.message().contains(field),
            "{field}: {}",
            status.message()
        );
    }
    intake.stop().await;
}
