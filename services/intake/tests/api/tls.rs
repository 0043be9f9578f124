//! TLS on the gRPC port with certificates the harness makes: mutual TLS callers,
//! certificates renewed in place without a restart, and health for probes on a
//! plain-text port that serves nothing else.

use std::time::{Duration, Instant};

use hosted_intake::Application;
use hosted_platform::{
    auth::Role,
    config::{CallerConfig, TlsConfig},
    tls::RELOAD_CHECK_INTERVAL,
};
use hosted_testkit::{TestCallers, TestDatabase, TestPki};
use tonic::Code;

const INTAKE: &str = "hosted.v1.IntakeService";

/// Intake on `tls`, a health-only plain port,
/// and one more caller known by its certificate alone: `CN=library,O=Univ Example`,
/// an integrator.
async fn spawn_tls(tls: TlsConfig) -> (Application, TestCallers) {
    let database = TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
    let namespace = hosted_testkit::namespace().await;
    let mut callers = TestCallers::new();
    callers.auth.callers.insert(
        "library".to_owned(),
        CallerConfig {
            token_sha256: String::new(),
            roles: vec![Role::Integrator.as_str().to_owned()],
            certificate_subject: "CN=library, O=Univ Example".to_owned(),
        },
    );
    let mut config = crate::helpers::config(
        &database,
        hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace),
        &callers,
    );
    config.common.grpc.tls = tls;
    config.common.grpc.health_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    (Application::build(&config).await.unwrap(), callers)
}

fn serve(app: Application) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    stop
}

#[tokio::test]
async fn the_port_is_tls_and_a_client_certificate_is_its_caller() {
    // Arrange
    let pki = TestPki::new();
    let (app, callers) = spawn_tls(pki.tls_config()).await;
    let address = app.local_addr();
    let _stop = serve(app);
    let call =
        async |identity: Option<tonic::transport::Identity>, method: &str, token: Option<&str>| {
            let channel = hosted_testkit::tls_channel(address, &pki, identity)
                .await
                .expect("TLS connection");
            hosted_testkit::raw_call(channel, INTAKE, method, token).await
        };
    let library = || Some(pki.client_identity("library", Some("Univ Example")));

    // Act, Assert: plain text is not served on the TLS port.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let refused = hosted_testkit::raw_call(
            channel,
            INTAKE,
            "ListPopulations",
            Some(callers.token(Role::Deve)),
        )
        .await
        .expect_err("plain text on the TLS port");
        assert_ne!(refused.code(), Code::Ok);
    }
    // A token alone, over TLS.
    call(None, "ListPopulations", Some(callers.token(Role::Deve)))
        .await
        .expect("a token over TLS");
    // The certificate alone is the caller, with its roles and no more.
    call(library(), "ListPopulations", None)
        .await
        .expect("the library's certificate");
    let denied = call(library(), "GetStats", None).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    // Certificate and token must name the same caller.
    let mixed = call(
        library(),
        "ListPopulations",
        Some(callers.token(Role::Dosi)),
    )
    .await
    .unwrap_err();
    assert_eq!(mixed.code(), Code::Unauthenticated, "{mixed:?}");
    // A certificate of the CA whose subject is no caller's, without a token.
    let stranger = call(
        Some(pki.client_identity("library", None)),
        "ListPopulations",
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(stranger.code(), Code::Unauthenticated, "{stranger:?}");
    // ... and with a token: the token says who calls.
    call(
        Some(pki.client_identity("intake", None)),
        "ListPopulations",
        Some(callers.token(Role::Deve)),
    )
    .await
    .expect("a certificate for the transport, a token for the caller");
    // A certificate signed by another CA is refused at the handshake.
    let other = TestPki::new();
    let foreign = hosted_testkit::tls_channel(
        address,
        &pki,
        Some(other.client_identity("library", Some("Univ Example"))),
    )
    .await;
    if let Ok(channel) = foreign {
        let refused = hosted_testkit::raw_call(channel, INTAKE, "ListPopulations", None)
            .await
            .unwrap_err();
        assert_ne!(refused.code(), Code::PermissionDenied);
        assert_ne!(refused.code(), Code::Ok);
    }
}

#[tokio::test]
async fn the_plain_health_port_answers_check_and_serves_nothing_else() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    // Arrange
    let pki = TestPki::new();
    let (app, callers) = spawn_tls(pki.tls_config()).await;
    let address = app.local_addr();
    let health = app.health_addr().expect("a health listener");
    let _stop = serve(app);

    // Act
    let plain = hosted_testkit::channel(health).await;
    let status = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let answer = HealthClient::new(plain.clone())
                .check(HealthCheckRequest::default())
                .await
                .unwrap()
                .into_inner();
            if answer.status == ServingStatus::Serving as i32 {
                return answer.status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Assert
    assert_eq!(status, Ok(ServingStatus::Serving as i32));
    for (service, method) in [
        (INTAKE, "ListPopulations"),
        (
            "grpc.reflection.v1.ServerReflection",
            "ServerReflectionInfo",
        ),
    ] {
        let refused = hosted_testkit::raw_call(
            plain.clone(),
            service,
            method,
            Some(callers.token(Role::Deve)),
        )
        .await
        .unwrap_err();
        assert_eq!(refused.code(), Code::Unimplemented, "{service}/{method}");
    }
    // Health on the TLS port keeps working.
    let tls = hosted_testkit::tls_channel(address, &pki, None)
        .await
        .unwrap();
    let answer = HealthClient::new(tls)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections_without_a_restart() {
    // Arrange: cert A from one CA; B (another subject, another CA) comes later.
    let first_ca = TestPki::new();
    let second_ca = TestPki::new();
    let (cert_path, key_path) = first_ca.server_files("server-a");
    let tls = TlsConfig {
        cert_path: Some(cert_path.clone()),
        key_path: Some(key_path.clone()),
        client_ca_path: None,
    };
    let (app, callers) = spawn_tls(tls).await;
    let address = app.local_addr();
    let _stop = serve(app);
    let serves = async |pki: &TestPki| {
        let Ok(channel) = hosted_testkit::tls_channel(address, pki, None).await else {
            return false;
        };
        hosted_testkit::raw_call(
            channel,
            INTAKE,
            "ListPopulations",
            Some(callers.token(Role::Deve)),
        )
        .await
        .is_ok()
    };
    assert!(serves(&first_ca).await, "A at start");

    // Act 1: a renewal gone wrong (a certificate that is not PEM).
    std::fs::write(&cert_path, "not a certificate").unwrap();
    tokio::time::sleep(RELOAD_CHECK_INTERVAL + Duration::from_millis(500)).await;
    // Assert 1: the last good pair stays.
    assert!(serves(&first_ca).await, "A kept after a bad renewal");
    assert!(serves(&first_ca).await, "A kept after a bad renewal, again");

    // Act 2: B written in place, key first (as a careless renewal would).
    let (certificate, key) = second_ca.server_pem("server-b");
    std::fs::write(&key_path, key).unwrap();
    std::fs::write(&cert_path, certificate).unwrap();

    // Assert 2: new connections get B, without a restart.
    let deadline = Instant::now() + RELOAD_CHECK_INTERVAL * 4;
    while !serves(&second_ca).await {
        assert!(Instant::now() < deadline, "B never served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!serves(&first_ca).await, "A still served after B");
}
