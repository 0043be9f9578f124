//! NATS with one identity per service (issue 14, point 8), on dev/deps's own
//! nats-server: each service's user may publish only its own facts, receives only on
//! its own inbox, reaches other streams only through its durable consumers, and
//! nothing connects without a password or without TLS to a server it trusts.

use std::time::Duration;

use futures::StreamExt;
use hosted_contracts::subjects::{Namespace, Service, entitlement, intake};
use hosted_platform::config::NatsConfig;
use hosted_testkit::{connect_nats, nats_admin_config, nats_config};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// How long a refused publish waits for the acknowledgement that never comes.
const REFUSED_WITHIN: Duration = Duration::from_secs(2);

/// A JetStream context as `service`'s own user.
async fn jetstream_as(service: Service, namespace: &Namespace) -> async_nats::jetstream::Context {
    let client = connect_nats(&nats_config(service, namespace))
        .await
        .unwrap();
    let mut jetstream = async_nats::jetstream::new(client);
    jetstream.set_timeout(REFUSED_WITHIN);
    jetstream
}

/// The streams of `services` in `namespace`, made by the admin user.
async fn streams(namespace: &Namespace, services: &[Service]) {
    let admin = hosted_testkit::jetstream().await;
    for service in services {
        hosted_platform::nats::ensure_stream(
            &admin,
            hosted_platform::nats::stream_config(
                namespace,
                *service,
                &nats_admin_config(namespace),
            ),
        )
        .await
        .unwrap();
    }
}

async fn messages_in(namespace: &Namespace, service: Service) -> u64 {
    let admin = hosted_testkit::jetstream().await;
    let mut stream = admin.get_stream(namespace.stream(service)).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// Publishes and waits for JetStream's acknowledgement.
async fn publish(
    jetstream: &async_nats::jetstream::Context,
    subject: String,
) -> Result<(), String> {
    jetstream
        .publish(subject, "{}".into())
        .await
        .map_err(|error| error.to_string())?
        .await
        .map(|_| ())
        .map_err(|error| error.to_string())
}

#[tokio::test]
async fn intakes_credentials_cannot_publish_a_grants_event() {
    // Arrange
    let namespace = hosted_testkit::namespace().await;
    streams(&namespace, &[Service::Intake, Service::Entitlement]).await;
    let as_intake = jetstream_as(Service::Intake, &namespace).await;

    // Act
    let own = publish(&as_intake, namespace.subject(intake::STAY_REGISTERED)).await;
    let grants = publish(&as_intake, namespace.subject(entitlement::GRANTS_CHANGED)).await;

    // Assert: intake's own fact lands, the grants event is refused and nothing of it
    // is in entitlement's stream.
    own.unwrap();
    assert!(grants.is_err(), "intake published a grants event");
    assert_eq!(messages_in(&namespace, Service::Intake).await, 1);
    assert_eq!(messages_in(&namespace, Service::Entitlement).await, 0);
}

#[tokio::test]
async fn entitlements_credentials_cannot_publish_an_intake_fact_or_a_dead_letter_of_another() {
    // Arrange
    let namespace = hosted_testkit::namespace().await;
    streams(
        &namespace,
        &[Service::Intake, Service::Entitlement, Service::Directory],
    )
    .await;
    let as_entitlement = jetstream_as(Service::Entitlement, &namespace).await;

    // Act
    let own = publish(
        &as_entitlement,
        namespace.subject(entitlement::GRANTS_CHANGED),
    )
    .await;
    let own_dead_letter = publish(
        &as_entitlement,
        namespace.dead_letters(Service::Entitlement, "entitlement-intake"),
    )
    .await;
    let fact = publish(&as_entitlement, namespace.subject(intake::STAY_REGISTERED)).await;
    let dead_letter = publish(
        &as_entitlement,
        namespace.dead_letters(Service::Directory, "directory-intake"),
    )
    .await;

    // Assert
    own.unwrap();
    own_dead_letter.unwrap();
    assert!(fact.is_err(), "entitlement published an intake fact");
    assert!(
        dead_letter.is_err(),
        "entitlement published directory's dead letter"
    );
    assert_eq!(messages_in(&namespace, Service::Entitlement).await, 2);
    assert_eq!(messages_in(&namespace, Service::Intake).await, 0);
    assert_eq!(messages_in(&namespace, Service::Directory).await, 0);
}

#[tokio::test]
async fn a_service_reads_another_services_facts_only_through_its_own_durable_consumer() {
    // Arrange: one fact in intake's stream.
    let namespace = hosted_testkit::namespace().await;
    streams(&namespace, &[Service::Intake, Service::Entitlement]).await;
    publish(
        &hosted_testkit::jetstream().await,
        namespace.subject(intake::STAY_REGISTERED),
    )
    .await
    .unwrap();
    let as_entitlement = jetstream_as(Service::Entitlement, &namespace).await;
    let as_intake = jetstream_as(Service::Intake, &namespace).await;
    let intake_stream = namespace.stream(Service::Intake);
    let entitlement_stream = namespace.stream(Service::Entitlement);
    let consumer = |durable: &str, source: Service| {
        hosted_platform::nats::consumer_config(
            durable,
            namespace.all_of(source),
            &NatsConfig::default(),
        )
    };

    // Act
    let own = hosted_platform::nats::ensure_consumer(
        &as_entitlement,
        &intake_stream,
        consumer("entitlement-intake", Service::Intake),
    )
    .await;
    let directorys = hosted_platform::nats::ensure_consumer(
        &as_entitlement,
        &intake_stream,
        consumer("directory-intake", Service::Intake),
    )
    .await;
    let intakes_durable = hosted_platform::nats::ensure_consumer(
        &as_intake,
        &entitlement_stream,
        consumer("intake-entitlement", Service::Entitlement),
    )
    .await;
    // Assert: entitlement pulls the fact through its durable consumer; it may not
    // make directory's; intake, which consumes nothing, may make no durable consumer.
    // (Intake may make an unnamed consumer of its own stream, to walk it when it erases
    // a person; on this server stream names are wildcards, so that right cannot be
    // shown to stop at its own stream: the deployment's rendering names the stream.)
    let own = own.unwrap();
    let mut batch = own.fetch().max_messages(1).messages().await.unwrap();
    let message = batch.next().await.expect("one fact").unwrap();
    assert_eq!(
        message.subject.as_str(),
        namespace.subject(intake::STAY_REGISTERED)
    );
    message.ack().await.unwrap();
    assert!(directorys.is_err(), "entitlement made directory's consumer");
    assert!(
        intakes_durable.is_err(),
        "intake made a consumer of entitlement's stream"
    );
}

#[tokio::test]
async fn a_service_receives_neither_another_services_subjects_nor_its_inbox() {
    // Arrange: intake subscribes to entitlement's facts and to entitlement's inbox;
    // the admin user (allowed everything) subscribes too, as a control.
    let namespace = hosted_testkit::namespace().await;
    let intake_client = connect_nats(&nats_config(Service::Intake, &namespace))
        .await
        .unwrap();
    let admin = connect_nats(&nats_admin_config(&namespace)).await.unwrap();
    let facts = namespace.all_of(Service::Entitlement);
    let mut intake_facts = intake_client.subscribe(facts.clone()).await.unwrap();
    let mut intake_inbox = intake_client
        .subscribe("_INBOX.entitlement.>")
        .await
        .unwrap();
    let mut control = admin.subscribe(facts).await.unwrap();
    intake_client.flush().await.unwrap();
    admin.flush().await.unwrap();

    // Act
    admin
        .publish(namespace.subject(entitlement::GRANTS_CHANGED), "{}".into())
        .await
        .unwrap();
    admin
        .publish("_INBOX.entitlement.reply", "{}".into())
        .await
        .unwrap();
    admin.flush().await.unwrap();

    // Assert
    let wait = Duration::from_secs(1);
    assert!(
        tokio::time::timeout(wait, control.next()).await.is_ok(),
        "the admin user gets the grants event"
    );
    assert!(
        !matches!(
            tokio::time::timeout(wait, intake_facts.next()).await,
            Ok(Some(_))
        ),
        "intake received entitlement's fact"
    );
    assert!(
        !matches!(
            tokio::time::timeout(wait, intake_inbox.next()).await,
            Ok(Some(_))
        ),
        "intake received on entitlement's inbox"
    );
}

#[tokio::test]
async fn no_connection_without_a_password_or_with_a_wrong_one() {
    let namespace = hosted_testkit::namespace().await;
    let anonymous = NatsConfig {
        user: String::new(),
        password: String::new(),
        ..nats_config(Service::Intake, &namespace)
    };
    let wrong_password = NatsConfig {
        password: "not-the-password".to_owned(),
        ..nats_config(Service::Intake, &namespace)
    };

    let anonymous = connect_nats(&anonymous).await;
    let wrong_password = connect_nats(&wrong_password).await;

    assert!(anonymous.is_err(), "connected without credentials");
    assert!(wrong_password.is_err(), "connected with a wrong password");
}

#[tokio::test]
async fn no_connection_to_a_server_signed_by_another_ca() {
    // Arrange: a certificate the server's was not signed by, as the only trusted
    // root (a client certificate of the same set: a valid certificate, not the CA);
    // then no CA at all, so the system's roots, which do not know the local CA.
    let namespace = hosted_testkit::namespace().await;
    let wrong_ca = hosted_testkit::nats_ca_path().with_file_name("intake.pem");
    assert!(
        wrong_ca.is_file(),
        "{} (dev/deps certs)",
        wrong_ca.display()
    );
    let with_wrong_ca = NatsConfig {
        ca_path: Some(wrong_ca),
        ..nats_config(Service::Intake, &namespace)
    };
    let with_system_roots = NatsConfig {
        ca_path: None,
        url: format!("tls://{}", hosted_testkit::nats_address()),
        ..nats_config(Service::Intake, &namespace)
    };

    // Act
    let wrong_ca = connect_nats(&with_wrong_ca).await;
    let system_roots = connect_nats(&with_system_roots).await;

    // Assert
    assert!(wrong_ca.is_err(), "connected to a server another CA signed");
    assert!(
        system_roots.is_err(),
        "the system's roots trusted the local CA"
    );
}

#[tokio::test]
async fn no_connection_in_plain_text() {
    // Arrange: the protocol by hand, without TLS, with the right credentials.
    let namespace = hosted_testkit::namespace().await;
    let config = nats_config(Service::Intake, &namespace);
    let socket = tokio::net::TcpStream::connect(hosted_testkit::nats_address())
        .await
        .unwrap();
    let mut socket = tokio::io::BufReader::new(socket);
    let mut info = String::new();
    socket.read_line(&mut info).await.unwrap();

    // Act
    let connect = serde_json::json!({
        "user": config.user,
        "pass": config.password,
        "verbose": false,
        "pedantic": false,
        "tls_required": false,
    });
    socket
        .get_mut()
        .write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;

    // Assert: the server asks for TLS and never answers the PING.
    assert!(info.contains("\"tls_required\":true"), "{info}");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains("PONG"),
        "a plain-text client was served: {answer}"
    );
}
