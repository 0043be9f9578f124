//! What a registration is admitted as: an agreement's cap counted at once, and a dry
//! run that says exactly what the import will do.

use hosted_contracts::v1;
use hosted_platform::auth::Role;
use tonic::Code;

use crate::{
    helpers::{TestIntake, day, person, stay},
    import::import,
};

async fn agreement(intake: &TestIntake, cap: i32, end: i64) -> String {
    intake
        .client()
        .await
        .create_agreement(intake.as_role(
            Role::Legal,
            v1::CreateAgreementRequest {
                agreement: Some(v1::AgreementInput {
                    partner_name: "Université partenaire".to_owned(),
                    partner_uai: "0134009M".to_owned(),
                    populations: vec!["CO_ACCREDITED".to_owned()],
                    start_date: day(-30),
                    end_date: day(end),
                    head_count_cap: cap,
                    payer: v1::Payer::Nobody.into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .agreement
        .unwrap()
        .agreement_id
}

async fn register_under(
    intake: &TestIntake,
    agreement_id: &str,
    family_name: &str,
    start: i64,
    end: i64,
) -> Result<v1::RegisterStayResponse, tonic::Status> {
    let mut stay = stay("CO_ACCREDITED");
    stay.agreement_id = agreement_id.to_owned();
    stay.start_date = day(start);
    stay.end_date = day(end);
    intake
        .client()
        .await
        .register_stay(intake.deve(v1::RegisterStayRequest {
            person: Some(person(family_name, "Camille", "2000-03-04")),
            stay: Some(stay),
            confirm_new_person: false,
        }))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn the_head_count_cap_counts_the_stays_at_once() {
    // Arrange: a cap of one, over two academic years.
    let intake = TestIntake::spawn().await;
    let id = agreement(&intake, 1, 700).await;
    register_under(&intake, &id, "Arnaud", -1, 200)
        .await
        .unwrap();

    // Act + Assert: next year's cohort has its place; a second one this year does not.
    register_under(&intake, &id, "Benoit", 380, 650)
        .await
        .expect("a stay of the next year is not counted against this one");
    let full = register_under(&intake, &id, "Caron", 100, 150)
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::FailedPrecondition, "{full:?}");
    assert!(
        full.message().contains("stay.agreement_id"),
        "{}",
        full.message()
    );
    assert!(full.message().contains("at once"), "{}", full.message());

    // A stay that starts the day after the first ends takes its place.
    register_under(&intake, &id, "Dumas", 201, 300)
        .await
        .unwrap();
    intake.stop().await;
}

fn row(row_number: i64, family_name: &str, given_names: &str, population: &str) -> v1::ImportRow {
    v1::ImportRow {
        row_number,
        person: Some(person(family_name, given_names, "1999-12-31")),
        stay: Some(stay(population)),
        confirm_new_person: false,
    }
}

#[tokio::test]
async fn a_dry_run_predicts_the_import_exactly() {
    use v1::ImportOutcome::{Created, DuplicateRow, StayAdded};
    // Arrange: one person already registered; a file that adds a stay to them,
    // creates two persons and repeats one of its own rows.
    let intake = TestIntake::spawn().await;
    import(&intake, vec![row(2, "Roux", "Anaïs", "IFSI")], false).await;
    let file = vec![
        row(2, "Roux", "Anaïs", "VAE"),
        row(3, "Faure", "Malik", "IFSI"),
        row(4, "Blanc", "Yasmine", "IFSI"),
        row(5, "FAURE", "malik Omar", "IFSI"),
    ];

    // Act
    let predicted = import(&intake, file.clone(), true).await;
    let imported = import(&intake, file, false).await;

    // Assert: the same outcomes; no ids for what a dry run would create.
    let outcomes = |results: &[v1::ImportResult]| -> Vec<(i64, v1::ImportOutcome, i64)> {
        results
            .iter()
            .map(|r| (r.row_number, r.outcome(), r.duplicate_of_row))
            .collect()
    };
    let expected = [
        (2, StayAdded, 0),
        (3, Created, 0),
        (4, Created, 0),
        (5, DuplicateRow, 3),
    ];
    assert_eq!(outcomes(&predicted), expected);
    assert_eq!(outcomes(&imported), expected);
    assert!(!predicted[0].learner_id.is_empty());
    assert_eq!(predicted[0].learner_id, imported[0].learner_id);
    assert!(predicted[0].stay_id.is_empty());
    for created in &predicted[1..3] {
        assert_eq!(
            (
                created.learner_id.as_str(),
                created.stay_id.as_str(),
                created.login.as_str()
            ),
            ("", "", ""),
            "{created:?}"
        );
    }
    assert!(!imported[1].learner_id.is_empty() && !imported[1].stay_id.is_empty());
    let mut conn = intake.database.connect().await;
    let stays: i64 = sqlx::query_scalar("SELECT count(*) FROM stays")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(stays, 4);
    intake.stop().await;
}
