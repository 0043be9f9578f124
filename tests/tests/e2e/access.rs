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

/// Cards starts, migrates, reports SERVING once its consumers are attached, and
/// refuses every RPC without the right credential.
#[tokio::test]
async fn cards_starts_healthy_and_guards_every_rpc() {
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;
    hosted_testkit::assert_every_rpc_guarded(
        system.cards.as_ref().unwrap().address,
        "hosted.v1.CardsService",
        hosted_cards::grpc::ACCESS,
        &system.callers,
    )
    .await;
    system.stop().await;
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
