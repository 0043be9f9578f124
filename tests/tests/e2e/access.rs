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
