use std::process::Command;

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
