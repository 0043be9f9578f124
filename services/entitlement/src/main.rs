//! `entitlement`: the access-policy and grants service.

use std::process::ExitCode;

use hosted_entitlement::{Application, EntitlementConfig};
use hosted_platform::grpc::shutdown_signal;

#[tokio::main]
async fn main() -> ExitCode {
    hosted_platform::service::main("entitlement", async |config: EntitlementConfig| {
        Application::build(&config)
            .await?
            .run_until_stopped(shutdown_signal())
            .await
    })
    .await
}
