use std::{path::PathBuf, process::Command};

use hosted_contracts::v1;
use hosted_e2e::{TestSystem, today_plus};
use hosted_platform::auth::Role;

/// The Python interpreter that has grpcio: `HOSTED_TEST_PYTHON`, else the virtual
/// environment that `dev/test` prepares.
fn python() -> PathBuf {
    if let Ok(python) = std::env::var("HOSTED_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/py-venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with grpcio: run dev/test (it prepares target/py-venv) or set HOSTED_TEST_PYTHON"
    );
    venv
}

fn client(address: std::net::SocketAddr, token: Option<&str>, args: &[&str]) -> String {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/grpc-python/hosted_client.py");
    let mut command = Command::new(python());
    command
        .arg(script)
        .arg("--address")
        .arg(address.to_string());
    if let Some(token) = token {
        command.arg("--token").arg(token);
    }
    let output = command.args(args).output().expect("python runs");
    assert!(
        output.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn a_python_grpcio_client_lists_services_and_registers_a_stay() {
    // Arrange
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    let address = system.intake.as_ref().unwrap().address;
    let token = system.callers.token(Role::Deve).to_owned();

    // Act: services through reflection, then a registration with types learned from it.
    let services = tokio::task::spawn_blocking(move || client(address, None, &["list"]))
        .await
        .unwrap();
    let request = serde_json_request();
    let response = tokio::task::spawn_blocking(move || {
        client(
            address,
            Some(&token),
            &["call", "hosted.v1.IntakeService/RegisterStay", &request],
        )
    })
    .await
    .unwrap();

    // Assert
    for service in [
        "hosted.v1.IntakeService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.lines().any(|line| line == service),
            "{service} not in {services}"
        );
    }
    assert!(
        response.contains("\"login\": \"amelie.rousseau\""),
        "{response}"
    );
    let learner = system
        .intake_client()
        .await
        .get_learner(system.as_role(
            Role::Deve,
            v1::GetLearnerRequest {
                key: Some(v1::get_learner_request::Key::Login(
                    "amelie.rousseau".to_owned(),
                )),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .learner
        .unwrap();
    assert_eq!(learner.person.unwrap().family_name, "Rousseau");
    system.stop().await;
}

#[tokio::test]
async fn a_python_client_reads_checks_denial_code_by_name() {
    // Arrange: an IFSI student, whom the policy never gives a card.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system
        .register(hosted_e2e::registration("Blanc", "Camille", "1999-09-09"))
        .await;
    crate::entitlement::wait_for(&system, "camille.blanc", "wifi", true).await;
    let address = system.entitlement.as_ref().unwrap().address;
    let token = system.callers.token(Role::Integrator).to_owned();

    // Act: Check through reflection, the types learned from the server.
    let response = tokio::task::spawn_blocking(move || {
        client(
            address,
            Some(&token),
            &[
                "call",
                "hosted.v1.EntitlementService/Check",
                r#"{"login": "camille.blanc", "resource": "smart-card"}"#,
            ],
        )
    })
    .await
    .unwrap();

    // Assert: the code by its name, beside the sentence.
    assert!(
        response.contains("\"denial\": \"DENIAL_NOT_FOR_POPULATION\""),
        "{response}"
    );
    assert!(response.contains("\"reason\": "), "{response}");
    system.stop().await;
}

fn serde_json_request() -> String {
    format!(
        r#"{{"person": {{"family_name": "Rousseau", "given_names": "Amélie", "birth_date": "1998-07-14",
            "email": "amelie@example.org"}},
           "stay": {{"population": "RECTORAT_PAF", "sponsor_unit": "INSPE", "start_date": "{}", "end_date": "{}"}}}}"#,
        today_plus(0),
        today_plus(120)
    )
}
