//! A database outage is answered UNAVAILABLE (retry later), not INTERNAL (a bug), and
//! the answer says nothing of the database.

use hosted_testkit::{TcpProxy, TestCallers, TestDatabase};

use crate::helpers::{TestIntake, config, registration};

#[tokio::test]
async fn a_database_outage_is_answered_unavailable_without_detail() {
    // Arrange: intake reaches PostgreSQL through a proxy the test stops.
    let server = TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
    let postgres: std::net::SocketAddr = {
        let url = hosted_testkit::server_database_url();
        let host = url.rsplit('@').next().unwrap();
        host.split('/').next().unwrap().parse().unwrap()
    };
    let proxy = TcpProxy::start(postgres).await;
    let database = TestDatabase {
        url: server
            .url
            .replace(&postgres.to_string(), &proxy.address().to_string()),
        name: server.name.clone(),
        owner: server.owner,
    };
    let namespace = hosted_testkit::namespace().await;
    let callers = TestCallers::new();
    let intake = TestIntake::spawn_with(
        config(
            &database,
            hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace),
            &callers,
        ),
        database.clone(),
        namespace,
        callers,
    )
    .await;
    let mut client = intake.client().await;
    client
        .register_stay(intake.deve(registration("Garnier", "Lucie")))
        .await
        .unwrap();

    // Act: PostgreSQL goes away.
    proxy.stop().await;
    let refused = client
        .register_stay(intake.deve(registration("Fabre", "Hugo")))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let message = refused.message().to_lowercase();
    for detail in ["database", "pool", "postgres", "127.0.0.1", "connection"] {
        assert!(!message.contains(detail), "{message}");
    }

    // And it answers again once PostgreSQL is back.
    proxy.resume().await;
    client
        .register_stay(intake.deve(registration("Fabre", "Hugo")))
        .await
        .unwrap();
    intake.stop().await;
}
