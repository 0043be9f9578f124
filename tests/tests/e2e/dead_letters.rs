use std::time::Duration;

use async_nats::HeaderMap;
use hosted_contracts::{subjects::intake, v1};
use hosted_e2e::{TestSystem, registration};
use hosted_platform::auth::Role;

/// An event that can never be applied goes to the directory's dead letters, where
/// operators see it and can replay it; the events after it are not held up.
#[tokio::test]
async fn an_unreadable_event_is_dead_lettered_and_does_not_block_the_others() {
    // Arrange
    let system = TestSystem::start().await;
    let event_id = uuid::Uuid::now_v7().to_string();
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", event_id.as_str());
    let jetstream = hosted_testkit::jetstream().await;

    // Act: garbage on a learner subject, then a good registration.
    jetstream
        .publish_with_headers(
            system.namespace.subject(intake::STAY_REGISTERED),
            headers,
            vec![0xff, 0x00, 0x13].into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    system
        .register(registration("Roux", "Jade", "2000-02-02"))
        .await;

    // Assert
    system
        .subtree
        .wait_for_entries(1, Duration::from_secs(20))
        .await;
    let mut directory = system.directory_client().await;
    let mut letters = Vec::new();
    for _ in 0..100 {
        letters = directory
            .list_dead_letters(system.as_role(Role::Dosi, v1::ListDeadLettersRequest {}))
            .await
            .unwrap()
            .into_inner()
            .dead_letters;
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.event_id, event_id);
    assert_eq!(
        letter.original_subject,
        system.namespace.subject(intake::STAY_REGISTERED)
    );
    assert_eq!(letter.consumer, hosted_directory::events::INTAKE_CONSUMER);
    assert!(letter.error.contains("undecodable"), "{}", letter.error);

    // Replaying cannot fix garbage: it stays, counted as failed.
    let replay = directory
        .replay_dead_letters(system.as_role(
            Role::Dosi,
            v1::ReplayDeadLettersRequest { sequences: vec![] },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((replay.replayed, replay.failed), (0, 1));
    let still = directory
        .list_dead_letters(system.as_role(Role::Dosi, v1::ListDeadLettersRequest {}))
        .await
        .unwrap()
        .into_inner()
        .dead_letters;
    assert_eq!(still.len(), 1);
    system.stop().await;
}
