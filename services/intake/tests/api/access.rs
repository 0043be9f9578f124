use hosted_contracts::{prost::Message, v1, v1::identify_learner_request::Key};
use hosted_intake::grpc::ACCESS;
use hosted_platform::auth::Role;
use tonic::Code;

use crate::helpers::{TestIntake, day, registration};

#[tokio::test]
async fn every_rpc_refuses_missing_credentials_and_wrong_roles() {
    let intake = TestIntake::spawn().await;
    hosted_testkit::assert_every_rpc_guarded(
        intake.address,
        "hosted.v1.IntakeService",
        ACCESS,
        &intake.callers,
    )
    .await;
    intake.stop().await;
}

/// Calls `method` of intake with `role`'s token and an empty request.
async fn call_as(intake: &TestIntake, method: &str, role: Role) -> Result<(), tonic::Status> {
    let channel = hosted_testkit::channel(intake.address).await;
    hosted_testkit::raw_call(
        channel,
        "hosted.v1.IntakeService",
        method,
        Some(intake.callers.token(role)),
    )
    .await
}

#[tokio::test]
async fn integrators_identify_a_learner_and_see_nothing_else_of_the_person() {
    // Arrange: one learner hosted now, one whose stay starts in 30 days.
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let mut now = registration("Lefèvre", "Élodie Anne");
    now.person.as_mut().unwrap().phone = "+33612345678".to_owned();
    let now = client
        .register_stay(intake.deve(now))
        .await
        .unwrap()
        .into_inner();
    let mut later = registration("Martin", "Léa");
    let stay = later.stay.as_mut().unwrap();
    stay.start_date = day(30);
    stay.end_date = day(120);
    let later = client
        .register_stay(intake.deve(later))
        .await
        .unwrap()
        .into_inner();
    let person = |response: &v1::RegisterStayResponse| {
        response.learner.as_ref().unwrap().person.clone().unwrap()
    };
    let identify = |key: Key| {
        intake.as_role(
            Role::Integrator,
            v1::IdentifyLearnerRequest { key: Some(key) },
        )
    };

    // Act
    let hosted = client
        .identify_learner(identify(Key::Login(person(&now).login.to_uppercase())))
        .await
        .unwrap()
        .into_inner();
    let coming = client
        .identify_learner(identify(Key::LearnerId(person(&later).learner_id)))
        .await
        .unwrap()
        .into_inner();
    let unknown = client
        .identify_learner(identify(Key::Login("nobody.here".to_owned())))
        .await
        .unwrap_err();
    let no_key = client
        .identify_learner(
            intake.as_role(Role::Integrator, v1::IdentifyLearnerRequest { key: None }),
        )
        .await
        .unwrap_err();

    // Assert: login, display name and validity; no birth date, e-mail, phone, stay.
    let identity = hosted.identity.clone().unwrap();
    assert_eq!(
        identity,
        v1::LearnerIdentity {
            learner_id: person(&now).learner_id,
            login: person(&now).login,
            display_name: "Élodie Lefèvre".to_owned(),
            valid_from: day(-10),
            valid_until: day(200),
            current: true,
            erased_at: None,
        }
    );
    let wire = hosted.encode_to_vec();
    for personal in ["2001-02-03", "learner@example.org", "+33612345678", "IFSI"] {
        assert!(
            !wire
                .windows(personal.len())
                .any(|window| window == personal.as_bytes()),
            "{personal} in the integrator's answer"
        );
    }
    let coming = coming.identity.unwrap();
    assert_eq!(
        (
            coming.valid_from.as_str(),
            coming.valid_until.as_str(),
            coming.current
        ),
        (day(30).as_str(), day(120).as_str(), false)
    );
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(no_key.code(), Code::InvalidArgument);
    intake.stop().await;
}

#[tokio::test]
async fn integrators_are_refused_what_shows_persons_stays_or_payments() {
    let intake = TestIntake::spawn().await;
    for method in [
        "GetLearner",
        "SearchLearners",
        "ListPaymentsDue",
        "GetAgreement",
        "ListAgreements",
        "GetStats",
    ] {
        let refused = call_as(&intake, method, Role::Integrator)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{method}");
    }
    // IdentifyLearner lets them through (an empty request is invalid, not refused).
    let identify = call_as(&intake, "IdentifyLearner", Role::Integrator)
        .await
        .unwrap_err();
    assert_eq!(identify.code(), Code::InvalidArgument);
    intake.stop().await;
}

/// The card office works from cards' queue: of intake it may read the catalogues
/// (populations, units) and nothing that shows a person, a stay, an agreement or a
/// payment.
#[tokio::test]
async fn the_card_office_is_refused_every_rpc_but_the_catalogues() {
    let intake = TestIntake::spawn().await;
    let catalogues = ["ListPopulations", "ListUnits"];
    for (method, _) in ACCESS {
        let outcome = call_as(&intake, method, Role::CardOffice).await;
        if catalogues.contains(method) {
            assert!(outcome.is_ok(), "{method}: {outcome:?}");
        } else {
            assert_eq!(
                outcome.unwrap_err().code(),
                Code::PermissionDenied,
                "{method}"
            );
        }
    }
    intake.stop().await;
}
