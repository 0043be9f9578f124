use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// A bad configuration is reported whole, before anything is bound, with the usage
/// exit code.
#[test]
fn a_bad_configuration_exits_with_every_problem_and_the_usage_code() {
    let output = Command::new(env!("CARGO_BIN_EXE_intake"))
        .env_clear()
        .env("INTAKE__GRPC__LISTEN", "not-an-address")
        .env("INTAKE__NATS__NAMESPACE", "Not.Valid")
        .env("INTAKE__AUTH__CALLERS__PORTAL__TOKEN_SHA256", "abc")
        .env("INTAKE__AUTH__CALLERS__PORTAL__ROLES", "dean")
        .env("INTAKE__REGISTRY__LEARNER_NUMBER_PREFIX", "12")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8(output.stderr).unwrap();
    for field in [
        "grpc.listen",
        "database.url",
        "nats.namespace",
        "auth.callers.portal.token_sha256",
        "auth.callers.portal.roles",
        "registry.learner_number_prefix",
        "retention.login_key",
    ] {
        assert!(stderr.contains(field), "{field} missing from: {stderr}");
    }
}

#[test]
fn help_is_a_usage_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_intake"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .contains("usage: intake [--config FILE]")
    );
}

/// The real binary stops on SIGTERM: it leaves no call or task behind and exits 0.
#[tokio::test]
async fn sigterm_stops_the_service_gracefully() {
    // Arrange: a free port, the test's own database and namespace.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let database = hosted_testkit::TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
    let namespace = hosted_testkit::namespace().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_intake"))
        .env("INTAKE__GRPC__LISTEN", format!("127.0.0.1:{port}"))
        .env("INTAKE__GRPC__GRACE_PERIOD_MS", "5000")
        .env("INTAKE__DATABASE__URL", &database.url)
        .env("INTAKE__DATABASE__CREATE_IF_MISSING", "true")
        .envs(hosted_testkit::nats_env(
            hosted_contracts::subjects::Service::Intake,
            &namespace,
        ))
        .env("INTAKE__TELEMETRY__FILTER", "info")
        .env(
            "INTAKE__RETENTION__LOGIN_KEY",
            "a test key of at least thirty-two characters",
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let serving = async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
                .ok()?
                .connect()
                .await
                .ok()?;
            tonic_health::pb::health_client::HealthClient::new(channel)
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .ok()
        }
        .await;
        if serving.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "intake never answered health");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Act
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());

    // Assert
    let output = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                return (child.wait_with_output().unwrap(), started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                panic!("intake still running 15 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let (output, _elapsed) = output;
    assert!(output.status.success(), "{:?}", output.status);
    let logs = String::from_utf8_lossy(&output.stdout);
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(logs.contains("stopped"), "{logs}");
}
