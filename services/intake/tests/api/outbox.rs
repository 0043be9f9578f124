use std::collections::HashSet;

use hosted_contracts::{subjects::Service, v1};
use hosted_platform::config::NatsConfig;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{
    helpers::{TestIntake, config, person, stay},
    register::wait_for_messages,
};

/// Intake commits registrations while it cannot publish (NATS unreachable), stops,
/// and starts again: every event is published, none twice.
#[tokio::test]
async fn events_committed_while_nats_is_away_are_published_after_restart() {
    // Arrange: an intake whose NATS is a port where nothing listens.
    let database = hosted_testkit::TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
    let namespace = hosted_testkit::namespace().await;
    let callers = hosted_testkit::TestCallers::new();
    let unreachable = NatsConfig {
        url: "nats://127.0.0.1:9".to_owned(),
        ..hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace)
    };
    let offline = TestIntake::spawn_with(
        config(&database, unreachable, &callers),
        database.clone(),
        namespace.clone(),
        callers.clone(),
    )
    .await;
    let mut client = offline.client().await;
    for i in 0..20 {
        client
            .register_stay(offline.deve(v1::RegisterStayRequest {
                // Born on different days: not near matches of each other.
                person: Some(person(
                    &format!("Durand{}", letters(i)),
                    "Paul",
                    &format!("2001-03-{:02}", i + 1),
                )),
                stay: Some(stay("IFSI")),
                confirm_new_person: false,
            }))
            .await
            .unwrap();
    }
    let (database, namespace, callers) = offline.stop().await;
    let mut conn = database.connect().await;
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM platform_outbox WHERE published_at IS NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(pending, 20);

    // Act: start again with NATS reachable.
    let online = TestIntake::spawn_with(
        config(
            &database,
            hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace),
            &callers,
        ),
        database.clone(),
        namespace.clone(),
        callers,
    )
    .await;

    // Assert
    let stream = namespace.stream(Service::Intake);
    let messages = wait_for_messages(&stream, 20).await;
    let ids: HashSet<String> = messages
        .iter()
        .map(|message| {
            message
                .headers
                .get("Nats-Msg-Id")
                .unwrap()
                .as_str()
                .to_owned()
        })
        .collect();
    assert_eq!(messages.len(), 20);
    assert_eq!(ids.len(), 20);
    wait_until_published(&mut conn).await;

    // A crash after publishing but before marking: the rows go again, and
    // JetStream's de-duplication keeps one copy of each.
    sqlx::query("UPDATE platform_outbox SET published_at = NULL")
        .execute(&mut conn)
        .await
        .unwrap();
    let (database, namespace, callers) = online.stop().await;
    let again = TestIntake::spawn_with(
        config(
            &database,
            hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace),
            &callers,
        ),
        database,
        namespace.clone(),
        callers,
    )
    .await;
    wait_until_published(&mut conn).await;
    assert_eq!(hosted_testkit::stream_messages(&stream).await.len(), 20);
    again.stop().await;
}

async fn wait_until_published(conn: &mut sqlx::PgConnection) {
    for _ in 0..100 {
        let pending: i64 =
            sqlx::query_scalar(
                "SELECT count(*) FROM platform_outbox WHERE published_at IS NULL AND refused_at IS NULL",
            )
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        if pending == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("outbox not drained");
}

/// Distinct names without digits: 0 → "a", 25 → "z", 26 → "ba"…
pub fn letters(mut n: usize) -> String {
    let mut name = Vec::new();
    loop {
        name.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    name.reverse();
    String::from_utf8(name).unwrap()
}

/// NATS freezes (SIGSTOP) with events in flight, then dies and comes back: the relay
/// holds no transaction open while it waits for acknowledgements, gives up on the
/// batch after one deadline (not one per event), and publishes everything soon after
/// NATS is back.
#[tokio::test]
async fn a_frozen_then_killed_nats_neither_holds_the_outbox_nor_stalls_the_relay() {
    // Arrange: intake reaches NATS through a proxy the test freezes and stops.
    let database = hosted_testkit::TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
    let namespace = hosted_testkit::namespace().await;
    let callers = hosted_testkit::TestCallers::new();
    let proxy = hosted_testkit::TcpProxy::start(hosted_testkit::nats_address()).await;
    let through_proxy = NatsConfig {
        url: hosted_testkit::nats_url_via(proxy.address()),
        publish_timeout: std::time::Duration::from_secs(2),
        outbox_stale_after: std::time::Duration::from_secs(1),
        ..hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace)
    };
    let intake = TestIntake::spawn_with(
        config(&database, through_proxy, &callers),
        database.clone(),
        namespace.clone(),
        callers.clone(),
    )
    .await;
    let mut client = intake.client().await;
    let stream = namespace.stream(Service::Intake);
    let register = |i: usize| {
        intake.deve(v1::RegisterStayRequest {
            person: Some(person(
                &format!("Moreau{}", letters(i)),
                "Anne",
                &format!("1999-05-{:02}", i + 1),
            )),
            stay: Some(stay("IFSI")),
            confirm_new_person: false,
        })
    };
    client.register_stay(register(0)).await.unwrap();
    wait_for_messages(&stream, 1).await;
    wait_for_outbox_health(intake.address, ServingStatus::Serving).await;

    // Act: NATS freezes while 20 events leave.
    proxy.freeze();
    for i in 1..=20 {
        client.register_stay(register(i)).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;

    // Assert: the relay waits for acknowledgements without a transaction open.
    let mut conn = database.connect().await;
    let idle_in_transaction: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        idle_in_transaction, 0,
        "a transaction is held open across the network wait"
    );
    // And the stuck outbox shows in health.
    wait_for_outbox_health(intake.address, ServingStatus::NotServing).await;

    // Act: NATS dies (what it held is lost) and comes back.
    proxy.stop().await;
    proxy.resume().await;

    // Assert: everything is published within a few deadlines, each event once.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let pending: i64 =
            sqlx::query_scalar(
                "SELECT count(*) FROM platform_outbox WHERE published_at IS NULL AND refused_at IS NULL",
            )
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pending} events still unpublished 30 s after NATS came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(hosted_testkit::stream_messages(&stream).await.len(), 21);
    wait_for_outbox_health(intake.address, ServingStatus::Serving).await;
    intake.stop().await;
}

async fn wait_for_outbox_health(address: std::net::SocketAddr, wanted: ServingStatus) {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut client = HealthClient::new(hosted_testkit::channel(address).await);
    let component = hosted_platform::outbox::OutboxMonitor::component(Service::Intake);
    let mut status = None;
    for _ in 0..100 {
        status = client
            .check(HealthCheckRequest {
                service: component.clone(),
            })
            .await
            .ok()
            .map(|response| response.into_inner().status());
        if status == Some(wanted) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{component} is {status:?}, not {wanted:?}");
}

/// An event NATS can never take (larger than the server's maximum payload) is set
/// aside, said once, and never holds back the events written after it.
#[tokio::test]
async fn an_event_nats_refuses_outright_does_not_hold_back_the_others() {
    // Arrange: an oversized event at the head of the outbox.
    let intake = TestIntake::spawn().await;
    let mut conn = intake.database.connect().await;
    let poisoned = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO platform_outbox (event_id, subject, event_type, payload)
         VALUES ($1, $2, 'hosted.v1.LearnerEvent', $3)",
    )
    .bind(poisoned)
    .bind(intake.subject(hosted_contracts::subjects::intake::STAY_REGISTERED))
    .bind(vec![0u8; 16 * 1024 * 1024])
    .execute(&mut conn)
    .await
    .unwrap();

    // Act: a registration after it.
    let mut client = intake.client().await;
    client
        .register_stay(intake.deve(v1::RegisterStayRequest {
            person: Some(person("Derrière", "Zoé", "2000-01-01")),
            stay: Some(stay("IFSI")),
            confirm_new_person: false,
        }))
        .await
        .unwrap();

    // Assert: the registration's event is published; the oversized one is set aside
    // with the reason, and the outbox counts as drained.
    let stream = intake.namespace.stream(Service::Intake);
    let messages = wait_for_messages(&stream, 1).await;
    assert_eq!(messages.len(), 1);
    wait_until_published(&mut conn).await;
    let (refused, refusal): (bool, Option<String>) = sqlx::query_as(
        "SELECT refused_at IS NOT NULL, refusal FROM platform_outbox WHERE event_id = $1",
    )
    .bind(poisoned)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(refused);
    assert!(refusal.unwrap().contains("payload"));
    intake.stop().await;
}
