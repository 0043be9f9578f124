//! Who a registration is about: never a person merged into another, never a silent
//! twin (issue: registry trust).

use hosted_contracts::v1;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{TestIntake, person, stay};

fn registration(person: v1::PersonInput, population: &str) -> v1::RegisterStayRequest {
    v1::RegisterStayRequest {
        person: Some(person),
        stay: Some(stay(population)),
        confirm_new_person: false,
    }
}

fn with_ine(mut person: v1::PersonInput, ine: &str) -> v1::PersonInput {
    person.ine = ine.to_owned();
    person
}

fn with_birth_name(mut person: v1::PersonInput, birth_name: &str) -> v1::PersonInput {
    person.birth_name = birth_name.to_owned();
    person
}

async fn register(
    intake: &TestIntake,
    request: v1::RegisterStayRequest,
) -> Result<v1::RegisterStayResponse, tonic::Status> {
    intake
        .client()
        .await
        .register_stay(intake.deve(request))
        .await
        .map(tonic::Response::into_inner)
}

async fn count(intake: &TestIntake, sql: &str) -> i64 {
    let mut conn = intake.database.connect().await;
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

#[tokio::test]
async fn an_ine_that_belongs_to_someone_else_is_refused_not_merged() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let holder = with_ine(person("Martin", "Léa", "2001-02-03"), "123456789AB");
    register(&intake, registration(holder, "IFSI"))
        .await
        .unwrap();

    // Act: another person (other names, other birth date) with the same INE.
    let stranger = with_ine(person("Durand", "Paul", "1990-06-07"), "123456789ab");
    let status = register(&intake, registration(stranger.clone(), "VAE"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("person.ine"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("another learner"),
        "{}",
        status.message()
    );
    assert!(
        !status.message().contains("lea.martin"),
        "discloses the holder"
    );
    let failures = status.get_error_details();
    let violations = &failures.precondition_failure().unwrap().violations;
    assert_eq!(violations[0].subject, "person.ine");
    assert_eq!(count(&intake, "SELECT count(*) FROM stays").await, 1);
    assert_eq!(count(&intake, "SELECT count(*) FROM persons").await, 1);

    // A cohort row likewise: rejected, naming the field; the other rows go through.
    let results = intake
        .client()
        .await
        .import_stays(intake.deve(v1::ImportStaysRequest {
            rows: vec![
                v1::ImportRow {
                    row_number: 2,
                    person: Some(stranger),
                    stay: Some(stay("VAE")),
                    confirm_new_person: false,
                },
                v1::ImportRow {
                    row_number: 3,
                    person: Some(person("Petit", "Hugo", "1999-09-09")),
                    stay: Some(stay("VAE")),
                    confirm_new_person: false,
                },
            ],
            dry_run: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results[0].outcome(), v1::ImportOutcome::Rejected);
    assert_eq!(results[0].violations[0].field, "person.ine");
    assert_eq!(results[1].outcome(), v1::ImportOutcome::Created);
    intake.stop().await;
}

#[tokio::test]
async fn the_same_names_with_another_ine_are_a_possible_duplicate_with_the_reason() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let first = with_ine(person("Martin", "Léa", "2001-02-03"), "123456789AB");
    let registered = register(&intake, registration(first, "IFSI"))
        .await
        .unwrap();
    let learner_id = registered.learner.unwrap().person.unwrap().learner_id;

    // Act
    let other_ine = with_ine(person("Martin", "Léa", "2001-02-03"), "123456789AC");
    let answer = register(&intake, registration(other_ine.clone(), "VAE"))
        .await
        .unwrap();

    // Assert: nothing registered, the reason said; the new INE is not dropped.
    assert!(answer.learner.is_none());
    assert_eq!(answer.possible_duplicates.len(), 1);
    let candidate = &answer.possible_duplicates[0];
    assert_eq!(candidate.learner_id, learner_id);
    assert_eq!(candidate.reason_code, "ine_differs");
    assert!(candidate.reason.contains("INE"), "{}", candidate.reason);
    assert_eq!(count(&intake, "SELECT count(*) FROM stays").await, 1);

    // Someone decides it is another person: confirmed, a new learner with that INE.
    let mut confirmed = registration(other_ine, "VAE");
    confirmed.confirm_new_person = true;
    let created = register(&intake, confirmed).await.unwrap();
    assert!(created.new_person);
    assert_eq!(created.learner.unwrap().person.unwrap().ine, "123456789AC");
    intake.stop().await;
}

#[tokio::test]
async fn an_ine_given_for_a_person_who_had_none_is_recorded() {
    let intake = TestIntake::spawn().await;
    register(
        &intake,
        registration(person("Martin", "Léa", "2001-02-03"), "IFSI"),
    )
    .await
    .unwrap();
    let with = with_ine(person("Martin", "Léa", "2001-02-03"), "123456789AB");
    let answer = register(&intake, registration(with, "VAE")).await.unwrap();
    assert!(!answer.new_person);
    assert_eq!(answer.learner.unwrap().person.unwrap().ine, "123456789AB");
    intake.stop().await;
}

#[tokio::test]
async fn a_birth_name_given_once_and_not_the_other_time_is_the_same_person() {
    let intake = TestIntake::spawn().await;
    let with = with_birth_name(person("Dupont-Moreau", "Claire", "1985-04-12"), "Dupont");
    let first = register(&intake, registration(with, "IFSI")).await.unwrap();
    let without = person("Dupont-Moreau", "Claire", "1985-04-12");
    let second = register(&intake, registration(without, "VAE"))
        .await
        .unwrap();
    assert!(!second.new_person, "{second:?}");
    assert_eq!(
        second.learner.unwrap().person.unwrap().learner_id,
        first.learner.unwrap().person.unwrap().learner_id
    );

    // And the other way round: first without, then with.
    let without = person("Lambert-Roy", "Inès", "1986-05-13");
    let first = register(&intake, registration(without, "IFSI"))
        .await
        .unwrap();
    let with = with_birth_name(person("Lambert-Roy", "Inès", "1986-05-13"), "Lambert");
    let second = register(&intake, registration(with, "VAE")).await.unwrap();
    assert!(!second.new_person, "{second:?}");
    assert_eq!(
        second.learner.unwrap().person.unwrap().learner_id,
        first.learner.unwrap().person.unwrap().learner_id
    );
    assert_eq!(count(&intake, "SELECT count(*) FROM persons").await, 2);
    intake.stop().await;
}

#[tokio::test]
async fn compound_and_partial_given_names_meet_as_near_matches() {
    let intake = TestIntake::spawn().await;
    register(
        &intake,
        registration(person("Garnier", "Jean-Pierre", "1979-03-04"), "IFSI"),
    )
    .await
    .unwrap();
    for given in ["Jean Pierre", "Jean", "JEAN-PIERRE Marc"] {
        let answer = register(
            &intake,
            registration(person("Garnier", given, "1979-03-04"), "VAE"),
        )
        .await
        .unwrap();
        if given.starts_with("JEAN-PIERRE") {
            assert!(!answer.new_person && answer.learner.is_some(), "{given}");
            continue;
        }
        assert!(answer.learner.is_none(), "{given}: {answer:?}");
        assert_eq!(answer.possible_duplicates.len(), 1, "{given}");
        assert_eq!(
            answer.possible_duplicates[0].reason_code, "given_names_partly",
            "{given}"
        );
    }
    assert_eq!(count(&intake, "SELECT count(*) FROM persons").await, 1);
    intake.stop().await;
}

#[tokio::test]
async fn intake_starts_whatever_the_names_it_holds() {
    // Arrange: a person whose names have nothing that transliterates, and whose
    // folded names are still to make, as for a person registered before they existed.
    let intake = TestIntake::spawn().await;
    let answer = register(
        &intake,
        registration(person("𓀀𓀁", "𓀂", "1995-01-01"), "IFSI"),
    )
    .await
    .unwrap();
    // `learner` itself is a reserved login.
    assert_eq!(answer.learner.unwrap().person.unwrap().login, "learner2");
    let mut conn = intake.database.connect().await;
    sqlx::query("UPDATE persons SET folded_names = ''")
        .execute(&mut conn)
        .await
        .unwrap();
    let (database, namespace, callers) = intake.stop().await;

    // Act: start again (the start-up fills the folded names).
    let config = crate::helpers::config(
        &database,
        hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace),
        &callers,
    );
    let restarted = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        TestIntake::spawn_with(config, database, namespace, callers),
    )
    .await
    .expect("intake starts");

    // Assert: serving, and the person is found by name.
    let found = restarted
        .client()
        .await
        .search_learners(restarted.deve(v1::SearchLearnersRequest {
            name: "𓀀𓀁".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.learners.len(), 1);
    restarted.stop().await;
}

#[tokio::test]
async fn logins_keep_the_maximum_length_and_transliterate_by_the_standards() {
    let intake = TestIntake::spawn().await;
    let mut logins = Vec::new();
    for (family, given, born) in [
        ("Papadopoulos", "Giorgos", "1990-01-01"),
        ("Papadopoulos", "Giorgos", "1991-01-01"),
        ("Иванова", "Ольга", "1992-01-01"),
        ("Παπαδοπούλου", "Ελένη", "1993-01-01"),
        ("O'Brien-Smithsonian", "Maximilian", "1994-01-01"),
    ] {
        let answer = register(&intake, registration(person(family, given, born), "IFSI"))
            .await
            .unwrap();
        logins.push(answer.learner.unwrap().person.unwrap().login);
    }
    assert_eq!(
        logins,
        [
            "giorgos.papadopoulos",
            "giorgos.papadopoulo2",
            "olga.ivanova",
            "eleni.papadopoulou",
            "maximilian.o-brien"
        ]
    );
    assert!(logins.iter().all(|login| login.len() <= 20));
    intake.stop().await;
}
