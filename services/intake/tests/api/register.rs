use hosted_contracts::{prost::Message, v1};
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{TestIntake, person, registration, stay};

#[tokio::test]
async fn register_stay_creates_a_learner_and_publishes_the_fact() {
    // Arrange
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;

    // Act
    let response = client
        .register_stay(intake.deve(registration("Lefèvre", "Élodie Marie")))
        .await
        .unwrap()
        .into_inner();

    // Assert
    assert!(response.new_person);
    let learner = response.learner.unwrap();
    let person = learner.person.as_ref().unwrap();
    assert_eq!(person.login, "elodie.lefevre");
    assert!(
        person.learner_number.starts_with('H'),
        "{}",
        person.learner_number
    );
    assert_eq!(learner.version, 1);
    assert_eq!(learner.stays.len(), 1);
    assert_eq!(learner.stays[0].supann_population, "AX");
    assert_eq!(learner.stays[0].status(), v1::StayStatus::Active);

    let fetched = client
        .get_learner(intake.deve(v1::GetLearnerRequest {
            key: Some(v1::get_learner_request::Key::Login(
                "elodie.lefevre".to_owned(),
            )),
        }))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    assert_eq!(fetched.person, learner.person);
    // A login in any case is the same login, as in LDAP's uid.
    let shouted = client
        .get_learner(intake.deve(v1::GetLearnerRequest {
            key: Some(v1::get_learner_request::Key::Login(
                "ELODIE.Lefevre".to_owned(),
            )),
        }))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    assert_eq!(shouted.person, learner.person);

    let stream = intake
        .namespace
        .stream(hosted_contracts::subjects::Service::Intake);
    let messages = wait_for_messages(&stream, 1).await;
    assert_eq!(
        messages[0].subject.as_str(),
        intake
            .namespace
            .subject(hosted_contracts::subjects::intake::STAY_REGISTERED)
    );
    let event = v1::LearnerEvent::decode(messages[0].payload.clone()).unwrap();
    let meta = event.meta.unwrap();
    assert_eq!(meta.learner_id, person.learner_id);
    assert_eq!(meta.learner_version, 1);
    assert_eq!(meta.actor, "deve");
    let message_id = messages[0]
        .headers
        .get("Nats-Msg-Id")
        .unwrap()
        .as_str()
        .to_owned();
    assert_eq!(message_id, meta.event_id);
    assert_eq!(
        uuid::Uuid::parse_str(&meta.event_id)
            .unwrap()
            .get_version_num(),
        7
    );
    assert_eq!(event.learner.unwrap(), learner);
    intake.stop().await;
}

pub async fn wait_for_messages(
    stream: &str,
    count: usize,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    for _ in 0..100 {
        let jetstream = hosted_testkit::jetstream().await;
        if jetstream.get_stream(stream).await.is_ok() {
            let messages = hosted_testkit::stream_messages(stream).await;
            if messages.len() >= count {
                return messages;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("fewer than {count} messages in {stream}");
}

#[tokio::test]
async fn the_same_person_registered_again_gets_a_stay_not_a_twin() {
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let first = client
        .register_stay(intake.deve(registration("Lefèvre", "Élodie")))
        .await
        .unwrap()
        .into_inner();

    // Same birth name, first given name and birth date, written differently.
    let mut again = registration("LEFEVRE", "elodie Anne");
    again.stay = Some(stay("VAE"));
    let second = client
        .register_stay(intake.deve(again))
        .await
        .unwrap()
        .into_inner();

    assert!(!second.new_person);
    let learner = second.learner.unwrap();
    assert_eq!(
        learner.person.as_ref().unwrap().learner_id,
        first.learner.unwrap().person.unwrap().learner_id
    );
    assert_eq!(learner.stays.len(), 2);
    assert_eq!(learner.version, 2);

    // Registering the very same stay again changes nothing.
    let mut repeat = registration("Lefèvre", "Élodie");
    repeat.stay = Some(stay("VAE"));
    let third = client
        .register_stay(intake.deve(repeat))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(third.stay_id, second.stay_id);
    assert_eq!(third.learner.unwrap().version, 2);
    intake.stop().await;
}

#[tokio::test]
async fn homonyms_born_on_other_days_get_their_own_logins() {
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let mut logins = Vec::new();
    for birth_date in ["2001-02-03", "2002-02-03", "2003-02-03"] {
        let request = v1::RegisterStayRequest {
            person: Some(person("Martin", "Léa", birth_date)),
            stay: Some(stay("IFSI")),
            confirm_new_person: false,
        };
        let response = client
            .register_stay(intake.deve(request))
            .await
            .unwrap()
            .into_inner();
        logins.push(response.learner.unwrap().person.unwrap().login);
    }
    assert_eq!(logins, ["lea.martin", "lea.martin2", "lea.martin3"]);
    intake.stop().await;
}

#[tokio::test]
async fn validation_names_every_bad_field_at_once() {
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let request = v1::RegisterStayRequest {
        person: Some(v1::PersonInput {
            family_name: String::new(),
            given_names: "Élodie".to_owned(),
            birth_date: "03/02/2001".to_owned(),
            email: "not-an-address".to_owned(),
            ine: "123".to_owned(),
            ..Default::default()
        }),
        stay: Some(v1::StayInput {
            population: "ASTRONAUTS".to_owned(),
            sponsor_unit: String::new(),
            start_date: "2026-09-01".to_owned(),
            end_date: "2026-08-01".to_owned(),
            ..Default::default()
        }),
        confirm_new_person: false,
    };

    let status = client
        .register_stay(intake.deve(request))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<String> = details
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|violation| violation.field.clone())
        .collect();
    for field in [
        "person.family_name",
        "person.birth_date",
        "person.email",
        "person.ine",
        "stay.population",
        "stay.sponsor_unit",
        "stay.end_date",
    ] {
        assert!(
            fields.iter().any(|f| f == field),
            "{field} not in {fields:?}"
        );
        assert!(
            status.message().contains(field),
            "{field} not in {}",
            status.message()
        );
    }
    // Nothing was written.
    let mut conn = intake.database.connect().await;
    let persons: i64 = sqlx::query_scalar("SELECT count(*) FROM persons")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(persons, 0);
    intake.stop().await;
}

#[tokio::test]
async fn a_population_that_needs_an_agreement_is_refused_without_one() {
    let intake = TestIntake::spawn().await;
    let mut client = intake.client().await;
    let mut request = registration("Nguyen", "Anh");
    request.stay = Some(stay("CO_ACCREDITED"));
    let status = client
        .register_stay(intake.deve(request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("stay.agreement_id"),
        "{}",
        status.message()
    );
    intake.stop().await;
}
