//! `entitlement`: the access-policy and grants service.

use std::process::ExitCode;

use hosted_entitlement::{Application, EntitlementConfig, config::ENV_PREFIX};
use hosted_platform::{config, grpc::shutdown_signal, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let loaded = config::config_file_from_args(ENV_PREFIX).and_then(|file| {
        EntitlementConfig::load(file.as_deref()).map_err(|errors| errors.to_string())
    });
    let config = match loaded {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(config::EXIT_USAGE);
        }
    };
    let _telemetry = match telemetry::init("entitlement", &config.telemetry) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("telemetry: {error}");
            return ExitCode::from(config::EXIT_USAGE);
        }
    };
    let outcome = async {
        Application::build(&config)
            .await?
            .run_until_stopped(shutdown_signal())
            .await
    };
    match outcome.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "entitlement failed");
            ExitCode::FAILURE
        }
    }
}
