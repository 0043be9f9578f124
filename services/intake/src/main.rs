//! `intake`: the hosted-learners registry service.

use std::process::ExitCode;

use hosted_intake::{Application, IntakeConfig};
use hosted_platform::grpc::shutdown_signal;

#[tokio::main]
async fn main() -> ExitCode {
    hosted_platform::service::main("intake", async |config: IntakeConfig| {
        Application::build(&config)
            .await?
            .run_until_stopped(shutdown_signal())
            .await
    })
    .await
}
