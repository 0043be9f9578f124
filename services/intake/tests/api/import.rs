use hosted_contracts::v1;
use tonic::Code;

use crate::helpers::{TestIntake, person, stay};

fn row(row_number: i64, family_name: &str, birth_date: &str, population: &str) -> v1::ImportRow {
    v1::ImportRow {
        row_number,
        person: Some(person(family_name, "Noé", birth_date)),
        stay: Some(stay(population)),
        confirm_new_person: false,
    }
}

fn cohort() -> Vec<v1::ImportRow> {
    let mut rows = vec![
        row(2, "Abadie", "2001-01-01", "IFSI"),
        row(3, "Barbier", "2002-02-02", "IFSI"),
        row(4, "Chevalier", "2003-03-03", "RECTORAT_PAF"),
        // The same person as row 2, another population: a second stay.
        row(5, "ABADIE", "2001-01-01", "VAE"),
        row(6, "Dupuis", "2004-04-04", "ASTRONAUTS"),
        row(7, "Étienne", "2005-05-05", "SHORT_COURSE_SUFA"),
    ];
    rows[4].person.as_mut().unwrap().email = "not-an-address".to_owned();
    rows
}

pub async fn import(
    intake: &TestIntake,
    rows: Vec<v1::ImportRow>,
    dry_run: bool,
) -> Vec<v1::ImportResult> {
    intake
        .client()
        .await
        .import_stays(intake.deve(v1::ImportStaysRequest { rows, dry_run }))
        .await
        .unwrap()
        .into_inner()
        .results
}

fn outcomes(results: &[v1::ImportResult]) -> Vec<(i64, v1::ImportOutcome)> {
    results
        .iter()
        .map(|result| (result.row_number, result.outcome()))
        .collect()
}

#[tokio::test]
async fn a_cohort_import_answers_row_by_row_and_is_safe_to_run_twice() {
    use v1::ImportOutcome::{Created, Rejected, StayAdded, Unchanged};
    // Arrange
    let intake = TestIntake::spawn().await;

    // Act
    let first = import(&intake, cohort(), false).await;
    let second = import(&intake, cohort(), false).await;

    // Assert
    assert_eq!(
        outcomes(&first),
        [
            (2, Created),
            (3, Created),
            (4, Created),
            (5, StayAdded),
            (6, Rejected),
            (7, Created)
        ]
    );
    assert_eq!(first[3].learner_id, first[0].learner_id);
    assert_eq!(first[0].login, "noe.abadie");
    let rejected: Vec<&str> = first[4]
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(rejected, ["person.email", "stay.population"]);
    assert_eq!(
        outcomes(&second),
        [
            (2, Unchanged),
            (3, Unchanged),
            (4, Unchanged),
            (5, Unchanged),
            (6, Rejected),
            (7, Unchanged)
        ]
    );
    assert_eq!(second[1].stay_id, first[1].stay_id);
    let mut conn = intake.database.connect().await;
    let counts: (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM persons), (SELECT count(*) FROM stays)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(counts, (4, 5));
    // One event per stay written, none for the second run.
    assert_eq!(intake.subjects(5).await.len(), 5);
    intake.stop().await;
}

#[tokio::test]
async fn a_dry_run_reports_without_writing() {
    let intake = TestIntake::spawn().await;
    let results = import(&intake, cohort(), true).await;
    assert_eq!(
        results
            .iter()
            .filter(|r| r.outcome() == v1::ImportOutcome::Created)
            .count(),
        4
    );
    let mut conn = intake.database.connect().await;
    let persons: i64 = sqlx::query_scalar("SELECT count(*) FROM persons")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM platform_outbox")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!((persons, events), (0, 0));
    intake.stop().await;
}

#[tokio::test]
async fn too_many_rows_in_one_call_are_refused() {
    let intake = TestIntake::spawn().await;
    let rows: Vec<v1::ImportRow> = (0..1001)
        .map(|i| row(i, "Abadie", "2001-01-01", "IFSI"))
        .collect();
    let status = intake
        .client()
        .await
        .import_stays(intake.deve(v1::ImportStaysRequest {
            rows,
            dry_run: true,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("rows"));
    intake.stop().await;
}

#[tokio::test]
async fn a_near_match_is_a_possible_duplicate_until_confirmed() {
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let register = |family_name: &str, confirm: bool| v1::RegisterStayRequest {
        person: Some(person(family_name, "Élodie", "2001-02-03")),
        stay: Some(stay("IFSI")),
        confirm_new_person: confirm,
    };
    let first = client
        .register_stay(intake.deve(register("Lefèvre", false)))
        .await
        .unwrap()
        .into_inner();

    // One letter apart, same birth date.
    let near = client
        .register_stay(intake.deve(register("Lefebvre", false)))
        .await
        .unwrap()
        .into_inner();
    assert!(near.learner.is_none());
    assert_eq!(near.possible_duplicates.len(), 1);
    assert_eq!(
        near.possible_duplicates[0].learner_id,
        first
            .learner
            .as_ref()
            .unwrap()
            .person
            .as_ref()
            .unwrap()
            .learner_id
    );
    let confirmed = client
        .register_stay(intake.deve(register("Lefebvre", true)))
        .await
        .unwrap()
        .into_inner();
    assert!(confirmed.new_person);
    assert_eq!(
        confirmed.learner.unwrap().person.unwrap().login,
        "elodie.lefebvre"
    );

    // In an import: the same question, row by row.
    let results = import(
        &intake,
        vec![v1::ImportRow {
            row_number: 2,
            person: Some(person("Lefevbre", "Élodie", "2001-02-03")),
            stay: Some(stay("IFSI")),
            confirm_new_person: false,
        }],
        false,
    )
    .await;
    assert_eq!(results[0].outcome(), v1::ImportOutcome::PossibleDuplicate);

    // Within one call too: the second of two near rows waits for confirmation.
    let results = import(
        &intake,
        vec![
            v1::ImportRow {
                row_number: 2,
                person: Some(person("Moreau", "Inès", "1990-10-10")),
                stay: Some(stay("IFSI")),
                confirm_new_person: false,
            },
            v1::ImportRow {
                row_number: 3,
                person: Some(person("Moreaux", "Inès", "1990-10-10")),
                stay: Some(stay("IFSI")),
                confirm_new_person: false,
            },
        ],
        false,
    )
    .await;
    assert_eq!(
        outcomes(&results),
        [
            (2, v1::ImportOutcome::Created),
            (3, v1::ImportOutcome::PossibleDuplicate)
        ]
    );
    assert_eq!(
        results[1].possible_duplicates[0].learner_id,
        results[0].learner_id
    );
    intake.stop().await;
}

#[tokio::test]
async fn logins_follow_the_configured_pattern_and_skip_reserved_names() {
    // Arrange: initial + family name, and "nabadie" may not be given.
    let database = hosted_testkit::TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
    let namespace = hosted_testkit::namespace().await;
    let callers = hosted_testkit::TestCallers::new();
    let mut config = crate::helpers::config(
        &database,
        hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace),
        &callers,
    );
    config.registry.login_pattern = "{g}{family}".to_owned();
    config.registry.reserved_logins = vec!["NAbadie".to_owned()];
    let intake = TestIntake::spawn_with(config, database, namespace, callers).await;

    // Act
    let results = import(&intake, vec![row(2, "Abadie", "2001-01-01", "IFSI")], false).await;

    // Assert
    assert_eq!(results[0].login, "nabadie2");
    intake.stop().await;
}
