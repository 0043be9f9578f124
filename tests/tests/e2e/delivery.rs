use std::time::Duration;

use async_nats::HeaderMap;
use hosted_contracts::{
    prost::Message,
    subjects::{Service, intake},
    v1,
};
use hosted_e2e::{TestSystem, registration};

/// Waits until directory's consumer has acknowledged everything in intake's stream.
async fn wait_until_consumed(system: &TestSystem) {
    let jetstream = hosted_testkit::jetstream().await;
    let stream = jetstream
        .get_stream(system.namespace.stream(Service::Intake))
        .await
        .unwrap();
    for _ in 0..200 {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_consumer(hosted_directory::events::INTAKE_CONSUMER)
            .await
            .unwrap();
        let info = consumer.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("directory did not consume everything");
}

async fn republish(system: &TestSystem, subject: &str, message_id: &str, payload: Vec<u8>) {
    let jetstream = hosted_testkit::jetstream().await;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", message_id);
    jetstream
        .publish_with_headers(subject.to_owned(), headers, payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let _ = system;
}

#[tokio::test]
async fn the_same_event_delivered_twice_leaves_one_unchanged_entry() {
    // Arrange: a de-duplication window short enough to be outlived.
    let mut system = TestSystem::prepare(Some(Duration::from_millis(500))).await;
    system.start_intake().await;
    system.start_directory().await;
    system
        .register(registration("Moreau", "Inès", "2002-05-06"))
        .await;
    let before = system
        .subtree
        .wait_for_entries(1, Duration::from_secs(20))
        .await;
    wait_until_consumed(&system).await;
    let stream = system.namespace.stream(Service::Intake);
    let original = hosted_testkit::stream_messages(&stream).await.remove(0);
    let message_id = original
        .headers
        .get("Nats-Msg-Id")
        .unwrap()
        .as_str()
        .to_owned();

    // Act: the very same message again, past JetStream's de-duplication window.
    tokio::time::sleep(Duration::from_millis(700)).await;
    republish(
        &system,
        original.subject.as_str(),
        &message_id,
        original.payload.to_vec(),
    )
    .await;
    assert_eq!(
        hosted_testkit::stream_messages(&stream).await.len(),
        2,
        "delivered twice"
    );
    wait_until_consumed(&system).await;

    // Assert: one entry, not written again.
    let after = system.subtree.entries().await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].attrs.get("entryCSN"),
        before[0].attrs.get("entryCSN")
    );
    assert_eq!(after[0].attrs, before[0].attrs);
    let mut conn = system.directory_database.connect().await;
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM platform_inbox")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(applied, 1);
    system.stop().await;
}

#[tokio::test]
async fn an_older_version_arriving_late_never_overwrites_newer_data() {
    let system = TestSystem::start().await;
    let first = system
        .register(registration("Petit", "Hugo", "2003-03-03"))
        .await;
    let mut second_stay = registration("Petit", "Hugo", "2003-03-03");
    second_stay.stay.as_mut().unwrap().population = "VAE".to_owned();
    let second = system.register(second_stay).await;
    assert_eq!(second.learner.as_ref().unwrap().version, 2);
    system
        .subtree
        .wait_for_entries(1, Duration::from_secs(20))
        .await;
    wait_until_consumed(&system).await;
    let before = system.subtree.entries().await;

    // A stale event: version 1 of the learner under a fresh event id, with other data.
    let mut stale = first.learner.unwrap();
    stale.person.as_mut().unwrap().email = "stale@example.org".to_owned();
    let event_id = uuid::Uuid::now_v7().to_string();
    let event = v1::LearnerEvent {
        meta: Some(v1::EventMeta {
            event_id: event_id.clone(),
            learner_id: stale.person.as_ref().unwrap().learner_id.clone(),
            learner_version: stale.version,
            ..Default::default()
        }),
        learner: Some(stale),
        ..Default::default()
    };
    republish(
        &system,
        &system.namespace.subject(intake::STAY_REGISTERED),
        &event_id,
        event.encode_to_vec(),
    )
    .await;
    wait_until_consumed(&system).await;

    let after = system.subtree.entries().await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].attrs, before[0].attrs);
    let mail = &after[0].attrs["mail"];
    assert_eq!(mail, &vec!["learner@example.org".to_owned()]);
    system.stop().await;
}
