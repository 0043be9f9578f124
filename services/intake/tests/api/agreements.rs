use hosted_contracts::{subjects::intake, v1};
use hosted_platform::auth::Role;
use tonic::Code;

use crate::helpers::{TestIntake, day, registration};

fn agreement_input(cap: i32, payer: v1::Payer) -> v1::AgreementInput {
    v1::AgreementInput {
        partner_name: "Université partenaire".to_owned(),
        partner_uai: "0134009M".to_owned(),
        populations: vec!["CO_ACCREDITED".to_owned()],
        start_date: day(-30),
        end_date: day(300),
        head_count_cap: cap,
        options: vec!["library".to_owned()],
        payer: payer.into(),
    }
}

async fn create(intake: &TestIntake, input: v1::AgreementInput) -> v1::Agreement {
    intake
        .client()
        .await
        .create_agreement(intake.as_role(
            Role::Legal,
            v1::CreateAgreementRequest {
                agreement: Some(input),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .agreement
        .unwrap()
}

async fn register_under(
    intake: &TestIntake,
    agreement_id: &str,
    family_name: &str,
    start: i64,
    end: i64,
) -> Result<v1::RegisterStayResponse, tonic::Status> {
    let mut request = registration(family_name, "Camille");
    let stay = request.stay.as_mut().unwrap();
    stay.population = "CO_ACCREDITED".to_owned();
    stay.agreement_id = agreement_id.to_owned();
    stay.start_date = day(start);
    stay.end_date = day(end);
    intake
        .client()
        .await
        .register_stay(intake.deve(request))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn an_agreement_is_checked_field_by_field() {
    let intake = TestIntake::spawn().await;
    let bad = v1::AgreementInput {
        partner_uai: "0134009N".to_owned(),
        populations: vec!["ASTRONAUTS".to_owned()],
        start_date: day(10),
        end_date: day(-10),
        ..Default::default()
    };
    let status = intake
        .client()
        .await
        .create_agreement(intake.as_role(
            Role::Legal,
            v1::CreateAgreementRequest {
                agreement: Some(bad),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    for field in [
        "agreement.partner_name",
        "agreement.partner_uai",
        "agreement.populations",
        "agreement.end_date",
        "agreement.payer",
    ] {
        assert!(
            status.message().contains(field),
            "{field}: {}",
            status.message()
        );
    }
    intake.stop().await;
}

#[tokio::test]
async fn a_stay_needs_an_agreement_covering_it_and_a_place_under_the_cap() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let agreement = create(&intake, agreement_input(2, v1::Payer::Nobody)).await;
    let id = agreement.agreement_id.clone();

    // Act + Assert
    register_under(&intake, &id, "Arnaud", -1, 200)
        .await
        .unwrap();
    let outside = register_under(&intake, &id, "Benoit", -1, 320)
        .await
        .unwrap_err();
    assert_eq!(outside.code(), Code::InvalidArgument);
    assert!(
        outside.message().contains("does not cover the whole stay"),
        "{}",
        outside.message()
    );
    register_under(&intake, &id, "Caron", 0, 100).await.unwrap();
    let full = register_under(&intake, &id, "Dumas", 0, 100)
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::FailedPrecondition);
    assert!(
        full.message().contains("head-count cap (2 at once)"),
        "{}",
        full.message()
    );
    let got = intake
        .client()
        .await
        .get_agreement(intake.as_role(Role::Deve, v1::GetAgreementRequest { agreement_id: id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.current_head_count, 2);
    assert_eq!(got.agreement.unwrap(), agreement);
    intake.stop().await;
}

#[tokio::test]
async fn ending_an_agreement_ends_its_stays_each_with_an_event() {
    // Arrange: one stay under way, one to come after the new end.
    let intake = TestIntake::spawn().await;
    let agreement = create(&intake, agreement_input(0, v1::Payer::Nobody)).await;
    let running = register_under(&intake, &agreement.agreement_id, "Arnaud", -5, 200)
        .await
        .unwrap();
    let later = register_under(&intake, &agreement.agreement_id, "Benoit", 60, 200)
        .await
        .unwrap();

    // Act
    let ended = intake
        .client()
        .await
        .end_agreement(intake.as_role(
            Role::Legal,
            v1::EndAgreementRequest {
                agreement_id: agreement.agreement_id.clone(),
                end_date: day(30),
                reason: "partner withdrew".to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner();

    // Assert
    assert_eq!(ended.agreement.as_ref().unwrap().end_date, day(30));
    assert_eq!(ended.affected_stay_ids.len(), 2);
    let mut client = intake.client().await;
    let learner = |response: &v1::RegisterStayResponse| v1::GetLearnerRequest {
        key: Some(v1::get_learner_request::Key::LearnerId(
            response
                .learner
                .as_ref()
                .unwrap()
                .person
                .as_ref()
                .unwrap()
                .learner_id
                .clone(),
        )),
    };
    let running_now = client
        .get_learner(intake.deve(learner(&running)))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    assert_eq!(running_now.stays[0].end_date, day(30));
    assert_eq!(running_now.stays[0].end_reason, "partner withdrew");
    let later_now = client
        .get_learner(intake.deve(learner(&later)))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    assert_eq!(later_now.stays[0].status(), v1::StayStatus::Cancelled);
    let subjects = intake.subjects(6).await;
    assert_eq!(
        subjects[3..],
        [
            intake.subject(intake::STAY_ENDED),
            intake.subject(intake::STAY_CANCELLED),
            intake.subject(intake::AGREEMENT_ENDED)
        ]
    );
    intake.stop().await;
}

#[tokio::test]
async fn an_amendment_never_leaves_a_stay_uncovered() {
    let intake = TestIntake::spawn().await;
    let agreement = create(&intake, agreement_input(0, v1::Payer::Nobody)).await;
    register_under(&intake, &agreement.agreement_id, "Arnaud", -5, 200)
        .await
        .unwrap();
    let mut client = intake.client().await;
    let amend = |input: v1::AgreementInput, version: i64| {
        intake.as_role(
            Role::Legal,
            v1::AmendAgreementRequest {
                agreement_id: agreement.agreement_id.clone(),
                expected_version: version,
                agreement: Some(input),
                reason: "new annex".to_owned(),
            },
        )
    };
    let mut narrower = agreement_input(0, v1::Payer::Nobody);
    narrower.populations = vec!["IFSI".to_owned()];
    let refused = client
        .amend_agreement(amend(narrower, 1))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("CO_ACCREDITED"),
        "{}",
        refused.message()
    );

    let mut wider = agreement_input(10, v1::Payer::Partner);
    wider.populations.push("IFSI".to_owned());
    wider.options.push("smart-card".to_owned());
    let amended = client
        .amend_agreement(amend(wider.clone(), 1))
        .await
        .unwrap()
        .into_inner()
        .agreement
        .unwrap();
    assert_eq!(amended.version, 2);
    assert_eq!(amended.options, ["library", "smart-card"]);
    let stale = client.amend_agreement(amend(wider, 1)).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    intake.stop().await;
}

#[tokio::test]
async fn agreements_are_listed_by_population_page_by_page() {
    let intake = TestIntake::spawn().await;
    for _ in 0..3 {
        create(&intake, agreement_input(0, v1::Payer::Nobody)).await;
    }
    let mut ifsi = agreement_input(0, v1::Payer::Nobody);
    ifsi.populations = vec!["IFSI".to_owned()];
    create(&intake, ifsi).await;
    let mut client = intake.client().await;
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_agreements(intake.as_role(
                Role::Finance,
                v1::ListAgreementsRequest {
                    population: "CO_ACCREDITED".to_owned(),
                    active_on: day(0),
                    page_size: 2,
                    page_token: page_token.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.agreements.into_iter().map(|a| a.agreement_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen.len(), 3);
    intake.stop().await;
}

#[tokio::test]
async fn payments_make_due_stays_paid_one_by_one_or_by_cohort() {
    // Arrange: the learners pay under one agreement, the partner under another.
    let intake = TestIntake::spawn().await;
    let learners_pay = create(&intake, agreement_input(0, v1::Payer::Learner)).await;
    let partner_pays = create(&intake, agreement_input(0, v1::Payer::Partner)).await;
    let single = register_under(&intake, &learners_pay.agreement_id, "Arnaud", -5, 200)
        .await
        .unwrap();
    assert_eq!(
        single.learner.as_ref().unwrap().stays[0].payment_status(),
        v1::PaymentStatus::Due
    );
    for name in ["Benoit", "Caron", "Dumas"] {
        register_under(&intake, &partner_pays.agreement_id, name, -5, 200)
            .await
            .unwrap();
    }
    let mut client = intake.client().await;

    // Act
    let payment = client
        .record_payment(intake.as_role(
            Role::Finance,
            v1::RecordPaymentRequest {
                stay_id: single.stay_id.clone(),
                amount_cents: 17_000,
                paid_on: day(0),
                payer: v1::Payer::Learner.into(),
                payer_name: String::new(),
                reference: "FAC-2026-001".to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    let cohort = client
        .record_cohort_payment(intake.as_role(
            Role::Finance,
            v1::RecordCohortPaymentRequest {
                agreement_id: partner_pays.agreement_id.clone(),
                amount_cents: 300_000,
                paid_on: day(0),
                payer_name: String::new(),
                reference: "CONV-42".to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner();

    // Assert
    assert_eq!(payment.amount_cents, 17_000);
    assert_eq!(cohort.paid_stay_ids.len(), 3);
    let learner = client
        .get_learner(intake.deve(v1::GetLearnerRequest {
            key: Some(v1::get_learner_request::Key::LearnerId(
                single.learner.unwrap().person.unwrap().learner_id,
            )),
        }))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    assert_eq!(learner.stays[0].payment_status(), v1::PaymentStatus::Paid);
    assert_eq!(learner.version, 2);
    let payments = intake
        .subjects(10)
        .await
        .into_iter()
        .filter(|subject| *subject == intake.subject(intake::PAYMENT_RECORDED))
        .count();
    assert_eq!(payments, 4);
    // Paid already: a second cohort payment finds nothing due and records nothing.
    let again = client
        .record_cohort_payment(intake.as_role(
            Role::Finance,
            v1::RecordCohortPaymentRequest {
                agreement_id: partner_pays.agreement_id,
                amount_cents: 1,
                paid_on: day(0),
                payer_name: String::new(),
                reference: "CONV-43".to_owned(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(
        again.message().contains("nothing to pay"),
        "{}",
        again.message()
    );
    intake.stop().await;
}
