use hosted_contracts::prost::Message;
use hosted_contracts::{subjects::intake, v1};
use tonic::Code;

use crate::helpers::{TestIntake, day, registration};

async fn registered(intake: &TestIntake, start: i64, end: i64) -> (v1::Learner, String) {
    let mut request = registration("Garnier", "Lucie");
    let stay = request.stay.as_mut().unwrap();
    stay.start_date = day(start);
    stay.end_date = day(end);
    let response = intake
        .client()
        .await
        .register_stay(intake.deve(request))
        .await
        .unwrap()
        .into_inner();
    (response.learner.unwrap(), response.stay_id)
}

#[tokio::test]
async fn a_stay_is_extended_ended_early_and_audited_with_its_events() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let (_, stay_id) = registered(&intake, -10, 100).await;

    // Act: extend, then end early.
    let extended = client
        .extend_stay(intake.deve(v1::ExtendStayRequest {
            stay_id: stay_id.clone(),
            new_end_date: day(150),
            reason: "jury postponed".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    let ended = client
        .end_stay(intake.deve(v1::EndStayRequest {
            stay_id: stay_id.clone(),
            end_date: day(5),
            reason: "left the programme".to_owned(),
            early_end: v1::EarlyEnd::Unspecified.into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();

    // Assert
    assert_eq!(extended.version, 2);
    assert_eq!(extended.stays[0].end_date, day(150));
    assert_eq!(ended.version, 3);
    assert_eq!(ended.stays[0].end_date, day(5));
    assert_eq!(ended.stays[0].end_reason, "left the programme");
    assert_eq!(
        intake.subjects(3).await,
        [
            intake.subject(intake::STAY_REGISTERED),
            intake.subject(intake::STAY_EXTENDED),
            intake.subject(intake::STAY_ENDED)
        ]
    );
    let mut conn = intake.database.connect().await;
    let audit: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT action, actor, reason FROM audit_trail ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        audit,
        [
            ("stay.registered".to_owned(), "deve".to_owned(), None),
            (
                "stay.extended".to_owned(),
                "deve".to_owned(),
                Some("jury postponed".to_owned())
            ),
            (
                "stay.ended".to_owned(),
                "deve".to_owned(),
                Some("left the programme".to_owned())
            ),
        ]
    );
    intake.stop().await;
}

#[tokio::test]
async fn a_stay_ended_early_on_a_past_day_carries_why_in_the_learners_state() {
    // Arrange: a stay that started 30 days ago.
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let (_, stay_id) = registered(&intake, -30, 100).await;
    let end = |end_date: String, early_end: v1::EarlyEnd| {
        intake.deve(v1::EndStayRequest {
            stay_id: stay_id.clone(),
            end_date,
            reason: "left the programme on the 3rd".to_owned(),
            early_end: early_end.into(),
        })
    };

    // Act: a past day without a code, an unknown code, then a past day with `left`.
    let without_code = client
        .end_stay(end(day(-3), v1::EarlyEnd::Unspecified))
        .await
        .unwrap_err();
    let mut unknown = end(day(-3), v1::EarlyEnd::Left);
    unknown.get_mut().early_end = 99;
    let unknown = client.end_stay(unknown).await.unwrap_err();
    let ended = client
        .end_stay(end(day(-3), v1::EarlyEnd::Left))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();

    // Assert
    assert_eq!(without_code.code(), Code::InvalidArgument);
    assert!(
        without_code.message().contains("end_date") && without_code.message().contains("early_end"),
        "{}",
        without_code.message()
    );
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(
        unknown.message().contains("early_end"),
        "{}",
        unknown.message()
    );
    let stay = &ended.stays[0];
    assert_eq!(stay.end_date, day(-3));
    assert_eq!(stay.early_end(), v1::EarlyEnd::Left);
    assert_eq!(stay.end_reason, "left the programme on the 3rd");
    assert_eq!(stay.status(), v1::StayStatus::Ended);
    let messages = crate::register::wait_for_messages(
        &intake
            .namespace
            .stream(hosted_contracts::subjects::Service::Intake),
        2,
    )
    .await;
    let event = v1::LearnerEvent::decode(messages[1].payload.clone()).unwrap();
    assert_eq!(
        event.learner.unwrap().stays[0].early_end(),
        v1::EarlyEnd::Left,
        "the published state says it too"
    );
    intake.stop().await;
}

#[tokio::test]
async fn stay_changes_are_refused_with_reasons() {
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let (_, started) = registered(&intake, -10, 100).await;

    let too_long = client
        .extend_stay(intake.deve(v1::ExtendStayRequest {
            stay_id: started.clone(),
            new_end_date: day(500),
            reason: "why not".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::InvalidArgument);
    assert!(
        too_long.message().contains("new_end_date"),
        "{}",
        too_long.message()
    );

    let no_reason = client
        .end_stay(intake.deve(v1::EndStayRequest {
            stay_id: started.clone(),
            end_date: day(1),
            reason: String::new(),
            early_end: v1::EarlyEnd::Unspecified.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(no_reason.code(), Code::InvalidArgument);
    assert!(no_reason.message().contains("reason"));

    let cancel_started = client
        .cancel_stay(intake.deve(v1::CancelStayRequest {
            stay_id: started,
            reason: "mistake".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(cancel_started.code(), Code::FailedPrecondition);

    let unknown = client
        .cancel_stay(intake.deve(v1::CancelStayRequest {
            stay_id: uuid::Uuid::now_v7().to_string(),
            reason: "mistake".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    intake.stop().await;
}

#[tokio::test]
async fn a_stay_that_has_not_started_can_be_cancelled_once() {
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let (_, stay_id) = registered(&intake, 20, 100).await;
    let cancel = || v1::CancelStayRequest {
        stay_id: stay_id.clone(),
        reason: "will not come".to_owned(),
    };

    let learner = client
        .cancel_stay(intake.deve(cancel()))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    assert_eq!(learner.stays[0].status(), v1::StayStatus::Cancelled);
    assert_eq!(learner.stays[0].end_reason, "will not come");
    let again = client.cancel_stay(intake.deve(cancel())).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(
        intake.subjects(2).await[1],
        intake.subject(intake::STAY_CANCELLED)
    );
    intake.stop().await;
}

#[tokio::test]
async fn identity_corrections_are_versioned_and_audited() {
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let (learner, _) = registered(&intake, -1, 100).await;
    let learner_id = learner.person.unwrap().learner_id;
    let correction = |version: i64, reason: &str| v1::AmendPersonRequest {
        learner_id: learner_id.clone(),
        expected_version: version,
        person: Some(v1::PersonInput {
            family_name: "Garnier-Roux".to_owned(),
            email: "lucie.garnier@example.org".to_owned(),
            ..Default::default()
        }),
        reason: reason.to_owned(),
    };

    let stale = client
        .amend_person(intake.deve(correction(7, "typo")))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let without_reason = client
        .amend_person(intake.deve(correction(1, " ")))
        .await
        .unwrap_err();
    assert_eq!(without_reason.code(), Code::InvalidArgument);

    let amended = client
        .amend_person(intake.deve(correction(1, "civil status document")))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    let person = amended.person.unwrap();
    assert_eq!(amended.version, 2);
    assert_eq!(person.family_name, "Garnier-Roux");
    assert_eq!(
        person.given_names, "Lucie",
        "fields left empty keep their value"
    );
    assert_eq!(person.login, "lucie.garnier", "the login does not change");
    assert_eq!(
        intake.subjects(2).await[1],
        intake.subject(intake::PERSON_AMENDED)
    );
    let mut conn = intake.database.connect().await;
    let changes: serde_json::Value =
        sqlx::query_scalar("SELECT changes FROM audit_trail WHERE action = 'person.amended'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(changes["family_name"]["from"], "Garnier");
    assert_eq!(changes["family_name"]["to"], "Garnier-Roux");
    assert!(changes.get("given_names").is_none());
    intake.stop().await;
}

#[tokio::test]
async fn a_stay_changes_sponsor_with_its_event() {
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let (_, stay_id) = registered(&intake, -1, 100).await;

    let nothing = client
        .amend_stay(intake.deve(v1::AmendStayRequest {
            stay_id: stay_id.clone(),
            reason: "reorganisation".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(nothing.code(), Code::InvalidArgument);

    let learner = client
        .amend_stay(intake.deve(v1::AmendStayRequest {
            stay_id: stay_id.clone(),
            sponsor_unit: "IFSI-SUD".to_owned(),
            sponsor_login: "tuteur.dupont".to_owned(),
            clear_sponsor_login: false,
            reason: "reorganisation".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    assert_eq!(learner.version, 2);
    assert_eq!(learner.stays[0].sponsor_unit, "IFSI-SUD");
    assert_eq!(learner.stays[0].sponsor_login, "tuteur.dupont");
    assert_eq!(
        intake.subjects(2).await[1],
        intake.subject(intake::STAY_AMENDED)
    );

    let cleared = client
        .amend_stay(intake.deve(v1::AmendStayRequest {
            stay_id,
            clear_sponsor_login: true,
            reason: "tutor left".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    assert_eq!(cleared.stays[0].sponsor_login, "");
    assert_eq!(cleared.stays[0].sponsor_unit, "IFSI-SUD");
    intake.stop().await;
}
