//! `directory`: publishes hosted learners in the LDAP directory.

use std::process::ExitCode;

use hosted_directory::{Application, DirectoryConfig};
use hosted_platform::grpc::shutdown_signal;

#[tokio::main]
async fn main() -> ExitCode {
    hosted_platform::service::main("directory", async |config: DirectoryConfig| {
        Application::build(&config)
            .await?
            .run_until_stopped(shutdown_signal())
            .await
    })
    .await
}
