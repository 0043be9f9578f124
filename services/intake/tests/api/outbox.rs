use std::collections::HashSet;

use hosted_contracts::{subjects::Service, v1};
use hosted_platform::config::NatsConfig;

use crate::{
    helpers::{TestIntake, config, person, stay},
    register::wait_for_messages,
};

/// Intake commits registrations while it cannot publish (NATS unreachable), stops,
/// and starts again: every event is published, none twice.
#[tokio::test]
async fn events_committed_while_nats_is_away_are_published_after_restart() {
    // Arrange: an intake whose NATS is a port where nothing listens.
    let database = hosted_testkit::TestDatabase::new().await;
    let namespace = hosted_testkit::namespace().await;
    let callers = hosted_testkit::TestCallers::new();
    let unreachable = NatsConfig {
        url: "nats://127.0.0.1:9".to_owned(),
        ..hosted_testkit::nats_config(&namespace)
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
        config(&database, hosted_testkit::nats_config(&namespace), &callers),
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
        config(&database, hosted_testkit::nats_config(&namespace), &callers),
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
            sqlx::query_scalar("SELECT count(*) FROM platform_outbox WHERE published_at IS NULL")
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
