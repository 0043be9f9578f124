use hosted_intake::grpc::ACCESS;

use crate::helpers::TestIntake;

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
