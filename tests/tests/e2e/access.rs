use hosted_e2e::TestSystem;

#[tokio::test]
async fn every_directory_rpc_refuses_missing_credentials_and_wrong_roles() {
    let system = TestSystem::start().await;
    hosted_testkit::assert_every_rpc_guarded(
        system.directory.as_ref().unwrap().address,
        "hosted.v1.DirectoryService",
        hosted_directory::grpc::ACCESS,
        &system.callers,
    )
    .await;
    system.stop().await;
}

/// Cards waits for its issue, but already starts, migrates, reports SERVING and
/// refuses every RPC without the right credential.
#[tokio::test]
async fn cards_starts_healthy_and_guards_every_rpc() {
    let namespace = hosted_testkit::namespace().await;
    let callers = hosted_testkit::TestCallers::new();
    let database = hosted_testkit::TestDatabase::new().await;
    let cards = hosted_cards::Application::build(&hosted_cards::CardsConfig {
        common: hosted_testkit::common_config(
            &database,
            hosted_testkit::nats_config(&namespace),
            &callers,
        ),
    })
    .await
    .unwrap();
    let cards_address = cards.local_addr();
    let (stop_cards, cards_stopped) = tokio::sync::oneshot::channel::<()>();
    let cards = tokio::spawn(cards.run_until_stopped(async {
        let _ = cards_stopped.await;
    }));

    hosted_e2e::wait_until_serving(cards_address).await;
    hosted_testkit::assert_every_rpc_guarded(
        cards_address,
        "hosted.v1.CardsService",
        hosted_cards::grpc::ACCESS,
        &callers,
    )
    .await;

    stop_cards.send(()).unwrap();
    cards.await.unwrap().unwrap();
}

/// Directory says SERVING only once its consumer of intake's events is attached:
/// while intake's stream does not exist yet, it is up but NOT_SERVING.
#[tokio::test]
async fn directory_is_ready_only_once_its_consumer_is_attached() {
    use tonic_health::pb::health_check_response::ServingStatus;

    let mut system = TestSystem::prepare(None).await;
    let directory = system.start_directory_unready().await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        hosted_e2e::health(directory).await,
        ServingStatus::NotServing
    );

    system.start_intake().await;
    hosted_e2e::wait_until_serving(directory).await;
    system.stop().await;
}
