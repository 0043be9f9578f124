//! `cards`: the card office service.

use std::process::ExitCode;

use hosted_cards::{Application, CardsConfig};
use hosted_platform::grpc::shutdown_signal;

#[tokio::main]
async fn main() -> ExitCode {
    hosted_platform::service::main("cards", async |config: CardsConfig| {
        Application::build(&config)
            .await?
            .run_until_stopped(shutdown_signal())
            .await
    })
    .await
}
