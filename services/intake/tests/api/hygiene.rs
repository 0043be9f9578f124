//! What goes in is clean: names normalised, hidden characters refused, sponsor
//! fields checked, start dates bounded, payment status as the policy needs it.

use hosted_contracts::v1;
use tonic::{Code, Status};

use crate::helpers::{TestIntake, day, person, registration, stay};

async fn register(
    intake: &TestIntake,
    request: v1::RegisterStayRequest,
) -> Result<v1::RegisterStayResponse, Status> {
    intake
        .client()
        .await
        .register_stay(intake.deve(request))
        .await
        .map(tonic::Response::into_inner)
}

async fn import(intake: &TestIntake, rows: Vec<v1::ImportRow>) -> Vec<v1::ImportResult> {
    intake
        .client()
        .await
        .import_stays(intake.deve(v1::ImportStaysRequest {
            rows,
            dry_run: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .results
}

fn row(row_number: i64, request: v1::RegisterStayRequest) -> v1::ImportRow {
    v1::ImportRow {
        row_number,
        person: request.person,
        stay: request.stay,
        confirm_new_person: request.confirm_new_person,
    }
}

/// The fields an import result or a refusal names.
fn fields(violations: &[v1::FieldViolation]) -> Vec<&str> {
    violations.iter().map(|v| v.field.as_str()).collect()
}

fn assert_refused(status: &Status, field: &str, reason: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(field) && status.message().contains(reason),
        "{field}, {reason}: {}",
        status.message()
    );
}

#[tokio::test]
async fn names_are_normalised_at_the_door() {
    // Arrange: spaces around and inside, a no-break space, an accent written as a
    // combining mark (NFD), as copied from a PDF.
    let intake = TestIntake::spawn().await;
    let mut request = registration("  Dupont  ", " E\u{301}lodie    Anne ");
    request.person.as_mut().unwrap().birth_name = "\u{a0}Du   Pont ".to_owned();

    // Act
    let learner = register(&intake, request).await.unwrap().learner.unwrap();
    let imported = import(
        &intake,
        vec![row(2, registration(" Le   Gall ", "Yann\u{a0} "))],
    )
    .await;

    // Assert
    let person = learner.person.unwrap();
    assert_eq!(person.family_name, "Dupont");
    assert_eq!(person.birth_name, "Du Pont");
    assert_eq!(person.given_names, "\u{c9}lodie Anne");
    assert_eq!(imported[0].outcome(), v1::ImportOutcome::Created);
    let mut conn = intake.database.connect().await;
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT family_name, given_names FROM persons ORDER BY family_name")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        stored,
        [
            ("Dupont".to_owned(), "\u{c9}lodie Anne".to_owned()),
            ("Le Gall".to_owned(), "Yann".to_owned())
        ]
    );

    // A correction is normalised the same way.
    let amended = intake
        .client()
        .await
        .amend_person(intake.deve(v1::AmendPersonRequest {
            learner_id: person.learner_id,
            expected_version: 1,
            person: Some(v1::PersonInput {
                family_name: " Dupont   Martin ".to_owned(),
                ..Default::default()
            }),
            reason: "married name".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    assert_eq!(amended.person.unwrap().family_name, "Dupont Martin");
    intake.stop().await;
}

#[tokio::test]
async fn invisible_and_direction_changing_characters_are_refused() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let hidden = registration("Du\u{200b}pont", "\u{202e}eidolE");

    // Act
    let status = register(&intake, hidden.clone()).await.unwrap_err();
    let imported = import(
        &intake,
        vec![row(2, hidden), row(3, registration("Dupont", "Élodie"))],
    )
    .await;

    // Assert
    assert_refused(
        &status,
        "person.family_name",
        "invisible or direction-changing",
    );
    assert_refused(&status, "person.given_names", "U+202E");
    assert_eq!(imported[0].outcome(), v1::ImportOutcome::Rejected);
    assert_eq!(
        fields(&imported[0].violations),
        ["person.family_name", "person.given_names"]
    );
    assert_eq!(imported[1].outcome(), v1::ImportOutcome::Created);
    intake.stop().await;
}

#[tokio::test]
async fn a_sponsor_unit_is_a_code_of_the_unit_catalogue() {
    let intake = TestIntake::spawn().await;
    for (unit, reason) in [
        ("IFSI\nNORD", "is not a unit code"),
        ("ifsi nord", "is not a unit code"),
        ("IFSI][affil=staff", "is not a unit code"),
        ("LAB-NOWHERE", "not in the unit catalogue"),
    ] {
        let mut request = registration("Dupont", "Élodie");
        request.stay.as_mut().unwrap().sponsor_unit = unit.to_owned();
        let status = register(&intake, request).await.unwrap_err();
        assert_refused(&status, "stay.sponsor_unit", reason);
    }

    // A code in lower case is the code.
    let mut lower = registration("Dupont", "Élodie");
    lower.stay.as_mut().unwrap().sponsor_unit = " ifsi-sud ".to_owned();
    let learner = register(&intake, lower).await.unwrap().learner.unwrap();
    assert_eq!(learner.stays[0].sponsor_unit, "IFSI-SUD");

    // One bad row of an import is rejected, the others go through.
    let mut unknown = registration("Martin", "Léa");
    unknown.stay.as_mut().unwrap().sponsor_unit = "IFSI][affil=staff".to_owned();
    let imported = import(
        &intake,
        vec![row(2, unknown), row(3, registration("Bernard", "Hugo"))],
    )
    .await;
    assert_eq!(imported[0].outcome(), v1::ImportOutcome::Rejected);
    assert_eq!(fields(&imported[0].violations), ["stay.sponsor_unit"]);
    assert_eq!(imported[1].outcome(), v1::ImportOutcome::Created);

    // Another unit for a stay: the same rule.
    let stay_id = learner.stays[0].stay_id.clone();
    for (unit, reason) in [
        ("LAB-NOWHERE", "not in the unit catalogue"),
        ("IFSI][affil=staff", "is not a unit code"),
    ] {
        let status = intake
            .client()
            .await
            .amend_stay(intake.deve(v1::AmendStayRequest {
                stay_id: stay_id.clone(),
                sponsor_unit: unit.to_owned(),
                reason: "moved".to_owned(),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_refused(&status, "sponsor_unit", reason);
    }
    intake.stop().await;
}

#[tokio::test]
async fn a_sponsor_login_is_a_login() {
    let intake = TestIntake::spawn().await;
    for login in ["nobody here", "jean,ou=evil", ".x"] {
        let mut request = registration("Dupont", "Élodie");
        request.stay.as_mut().unwrap().sponsor_login = login.to_owned();
        let status = register(&intake, request).await.unwrap_err();
        assert_refused(&status, "stay.sponsor_login", "is not a login");
    }

    let mut sponsored = registration("Dupont", "Élodie");
    sponsored.stay.as_mut().unwrap().sponsor_login = " Jean.Dupont ".to_owned();
    let learner = register(&intake, sponsored).await.unwrap().learner.unwrap();
    assert_eq!(learner.stays[0].sponsor_login, "jean.dupont");

    let status = intake
        .client()
        .await
        .amend_stay(intake.deve(v1::AmendStayRequest {
            stay_id: learner.stays[0].stay_id.clone(),
            sponsor_login: "jean,ou=evil".to_owned(),
            reason: "another tutor".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_refused(&status, "sponsor_login", "is not a login");
    intake.stop().await;
}

#[tokio::test]
async fn a_stay_starts_at_most_two_years_ahead() {
    let intake = TestIntake::spawn().await;
    for (start, end) in [("2099-09-01", "2100-06-30"), ("9999-01-01", "9999-06-30")] {
        let mut request = registration("Dupont", "Élodie");
        request.stay.as_mut().unwrap().start_date = start.to_owned();
        request.stay.as_mut().unwrap().end_date = end.to_owned();
        let status = register(&intake, request).await.unwrap_err();
        assert_refused(&status, "stay.start_date", "more than 730 days ahead");
    }

    let mut last_day = registration("Dupont", "Élodie");
    last_day.stay.as_mut().unwrap().start_date = day(730);
    last_day.stay.as_mut().unwrap().end_date = day(800);
    let mut one_too_far = row(3, registration("Martin", "Léa"));
    one_too_far.stay.as_mut().unwrap().start_date = day(731);
    one_too_far.stay.as_mut().unwrap().end_date = day(800);
    let imported = import(&intake, vec![row(2, last_day), one_too_far]).await;
    assert_eq!(imported[0].outcome(), v1::ImportOutcome::Created);
    assert_eq!(imported[1].outcome(), v1::ImportOutcome::Rejected);
    assert_eq!(fields(&imported[1].violations), ["stay.start_date"]);
    intake.stop().await;
}

#[tokio::test]
async fn a_stay_of_a_population_the_policy_grants_on_payment_is_due() {
    // The default policy gives visiting doctoral students their card once the stay
    // is paid: a stay that "needs no payment" could never get it.
    let intake = TestIntake::spawn().await;
    let mut request = registration("Haddad", "Yanis");
    request.person = Some(person("Haddad", "Yanis", "1996-03-08"));
    request.stay = Some(v1::StayInput {
        sponsor_unit: "LAB-CHEM".to_owned(),
        ..stay("VISITING_DOCTORAL")
    });

    let learner = register(&intake, request).await.unwrap().learner.unwrap();

    assert_eq!(learner.stays[0].payment_status(), v1::PaymentStatus::Due);
    intake.stop().await;
}

/// Populations for which the policy conditions some resource on `paid`: those whose
/// own rules say it, and all those that do not override a default that says it.
fn populations_paying_by_policy(policy: &toml::Table, catalogue: &[String]) -> Vec<String> {
    fn says_paid(value: &toml::Value) -> bool {
        match value {
            toml::Value::String(condition) => condition == "paid",
            toml::Value::Array(values) => values.iter().any(says_paid),
            toml::Value::Table(table) => table.values().any(says_paid),
            _ => false,
        }
    }
    let empty = toml::Table::new();
    let defaults = policy
        .get("defaults")
        .and_then(toml::Value::as_table)
        .unwrap_or(&empty);
    let populations = policy
        .get("populations")
        .and_then(toml::Value::as_table)
        .unwrap_or(&empty);
    catalogue
        .iter()
        .filter(|code| {
            let own = populations
                .get(code.as_str())
                .and_then(toml::Value::as_table)
                .unwrap_or(&empty);
            own.values().any(says_paid)
                || defaults
                    .iter()
                    .any(|(resource, rule)| !own.contains_key(resource) && says_paid(rule))
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_seeded_catalogue_says_payment_where_the_default_policy_needs_it() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let policy: toml::Table = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../policy/default.toml"
    ))
    .unwrap()
    .parse()
    .unwrap();

    // Act
    let populations = intake
        .client()
        .await
        .list_populations(intake.deve(v1::ListPopulationsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .populations;

    // Assert
    let codes: Vec<String> = populations.iter().map(|p| p.code.clone()).collect();
    let paying = populations_paying_by_policy(&policy, &codes);
    assert!(
        paying.contains(&"VISITING_DOCTORAL".to_owned()),
        "{paying:?}"
    );
    for code in paying {
        let population = populations.iter().find(|p| p.code == code).unwrap();
        assert!(
            population.payment_required,
            "policy/default.toml grants {code} something on `paid`, but the catalogue says its stays need no payment"
        );
    }
    intake.stop().await;
}
