//! What finance needs: the stays due, and cohort payments booked once.

use hosted_contracts::{subjects::intake, v1};
use hosted_platform::auth::Role;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{TestIntake, day, registration};

async fn partner_pays(intake: &TestIntake) -> String {
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
                    end_date: day(300),
                    payer: v1::Payer::Partner.into(),
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

/// Registers a stay; under `agreement_id` (co-accredited) when given, else a visiting
/// doctoral stay (due without an agreement). Returns the stay id.
async fn register(intake: &TestIntake, family_name: &str, agreement_id: Option<&str>) -> String {
    let mut request = registration(family_name, "Camille");
    let stay = request.stay.as_mut().unwrap();
    match agreement_id {
        Some(agreement_id) => {
            stay.population = "CO_ACCREDITED".to_owned();
            stay.agreement_id = agreement_id.to_owned();
        }
        None => {
            stay.population = "VISITING_DOCTORAL".to_owned();
            stay.sponsor_unit = "ED-SPI".to_owned();
        }
    }
    intake
        .client()
        .await
        .register_stay(intake.deve(request))
        .await
        .unwrap()
        .into_inner()
        .stay_id
}

async fn due(
    intake: &TestIntake,
    request: v1::ListPaymentsDueRequest,
) -> Result<v1::ListPaymentsDueResponse, tonic::Status> {
    intake
        .client()
        .await
        .list_payments_due(intake.as_role(Role::Finance, request))
        .await
        .map(tonic::Response::into_inner)
}

fn stay_ids(response: &v1::ListPaymentsDueResponse) -> Vec<String> {
    response
        .payments_due
        .iter()
        .map(|stay| stay.stay_id.clone())
        .collect()
}

fn cohort_payment(
    agreement_id: &str,
    amount_cents: i64,
    reference: &str,
) -> v1::RecordCohortPaymentRequest {
    v1::RecordCohortPaymentRequest {
        agreement_id: agreement_id.to_owned(),
        amount_cents,
        paid_on: day(0),
        payer_name: String::new(),
        reference: reference.to_owned(),
    }
}

#[tokio::test]
async fn finance_lists_the_stays_due_by_agreement_or_population_with_the_fee() {
    // Arrange: two stays due under an agreement, one due without; a fee for visiting
    // doctoral students only.
    let intake = TestIntake::spawn().await;
    let agreement_id = partner_pays(&intake).await;
    let first = register(&intake, "Benoit", Some(&agreement_id)).await;
    let second = register(&intake, "Caron", Some(&agreement_id)).await;
    let doctoral = register(&intake, "Dumas", None).await;
    let mut client = intake.client().await;
    let mut catalogue = client
        .list_populations(intake.deve(v1::ListPopulationsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .populations;
    let mut visiting = catalogue.remove(
        catalogue
            .iter()
            .position(|population| population.code == "VISITING_DOCTORAL")
            .unwrap(),
    );
    visiting.fee_cents = Some(25_000);
    client
        .save_population(intake.deve(v1::SavePopulationRequest {
            population: Some(visiting),
            reason: "fee voted by the board".to_owned(),
        }))
        .await
        .unwrap();

    // Act
    let all = due(&intake, v1::ListPaymentsDueRequest::default())
        .await
        .unwrap();
    let cohort = due(
        &intake,
        v1::ListPaymentsDueRequest {
            agreement_id: agreement_id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let doctoral_only = due(
        &intake,
        v1::ListPaymentsDueRequest {
            population: "VISITING_DOCTORAL".to_owned(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut paged = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = due(
            &intake,
            v1::ListPaymentsDueRequest {
                page_size: 1,
                page_token: page_token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(page.payments_due.len() <= 1);
        paged.extend(stay_ids(&page));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let bad = due(
        &intake,
        v1::ListPaymentsDueRequest {
            agreement_id: "not-an-id".to_owned(),
            population: "ASTRONAUTS".to_owned(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();

    // Assert
    assert_eq!(
        stay_ids(&all),
        [first.clone(), second.clone(), doctoral.clone()]
    );
    assert_eq!(paged, stay_ids(&all));
    assert_eq!(stay_ids(&cohort), [first.clone(), second]);
    assert_eq!(stay_ids(&doctoral_only), std::slice::from_ref(&doctoral));
    let row = &doctoral_only.payments_due[0];
    assert_eq!(
        (
            row.family_name.as_str(),
            row.given_names.as_str(),
            row.population.as_str(),
            row.agreement_id.as_str(),
            row.start_date.clone(),
            row.end_date.clone(),
            row.fee_cents,
        ),
        (
            "Dumas",
            "Camille",
            "VISITING_DOCTORAL",
            "",
            day(-10),
            day(200),
            Some(25_000)
        )
    );
    assert!(row.login.starts_with("camille.dumas"), "{}", row.login);
    assert!(
        row.learner_number.starts_with('H'),
        "{}",
        row.learner_number
    );
    assert_eq!(cohort.payments_due[0].agreement_id, agreement_id);
    assert_eq!(cohort.payments_due[0].fee_cents, None, "no fee stated");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let fields: Vec<String> = bad
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|violation| violation.field.clone())
        .collect();
    assert_eq!(fields, ["agreement_id", "population"]);

    // Paid: the cohort's stays leave the list.
    client
        .record_cohort_payment(intake.as_role(
            Role::Finance,
            cohort_payment(&agreement_id, 100_000, "VIR-2026-0001"),
        ))
        .await
        .unwrap();
    let after = due(&intake, v1::ListPaymentsDueRequest::default())
        .await
        .unwrap();
    assert_eq!(stay_ids(&after), [doctoral]);
    intake.stop().await;
}

#[tokio::test]
async fn a_cohort_payment_recorded_twice_is_booked_once() {
    // Arrange: a cohort paid once; then a new stay due under the same agreement.
    let intake = TestIntake::spawn().await;
    let agreement_id = partner_pays(&intake).await;
    let paid_first = register(&intake, "Benoit", Some(&agreement_id)).await;
    let mut client = intake.client().await;
    let first = client
        .record_cohort_payment(intake.as_role(
            Role::Finance,
            cohort_payment(&agreement_id, 120_000, "VIR-889"),
        ))
        .await
        .unwrap()
        .into_inner();
    let late = register(&intake, "Caron", Some(&agreement_id)).await;

    // Act: the same transfer again (an answer lost on its way, a double click).
    let again = client
        .record_cohort_payment(intake.as_role(
            Role::Finance,
            cohort_payment(&agreement_id, 120_000, " VIR-889 "),
        ))
        .await
        .unwrap()
        .into_inner();
    let other_amount = client
        .record_cohort_payment(intake.as_role(
            Role::Finance,
            cohort_payment(&agreement_id, 90_000, "VIR-889"),
        ))
        .await
        .unwrap_err();
    let without_reference = client
        .record_cohort_payment(
            intake.as_role(Role::Finance, cohort_payment(&agreement_id, 90_000, " ")),
        )
        .await
        .unwrap_err();

    // Assert: the first booking answered again; the late stay is still due.
    assert!(!first.repeat);
    assert_eq!(first.paid_stay_ids, [paid_first]);
    assert!(again.repeat, "the same reference is a repeat");
    assert_eq!(again.cohort_payment_id, first.cohort_payment_id);
    assert_eq!(again.paid_stay_ids, first.paid_stay_ids);
    let still_due = due(
        &intake,
        v1::ListPaymentsDueRequest {
            agreement_id: agreement_id.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(stay_ids(&still_due), [late]);
    let mut conn = intake.database.connect().await;
    let (cohort_payments, payments): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM cohort_payments), (SELECT count(*) FROM payments)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((cohort_payments, payments), (1, 1));
    let recorded = intake
        .subjects(3)
        .await
        .into_iter()
        .filter(|subject| *subject == intake.subject(intake::PAYMENT_RECORDED))
        .count();
    assert_eq!(recorded, 1);
    assert_eq!(other_amount.code(), Code::AlreadyExists);
    assert!(
        other_amount.message().contains("reference"),
        "{}",
        other_amount.message()
    );
    assert_eq!(without_reference.code(), Code::InvalidArgument);
    assert_eq!(
        without_reference
            .get_error_details()
            .bad_request()
            .unwrap()
            .field_violations[0]
            .field,
        "reference"
    );
    intake.stop().await;
}
