//! Replicas started together on a server where their database does not exist yet
//! (`database.create_if_missing`): every one of them goes on, none exits because
//! another created the database first.
#![allow(clippy::unwrap_used)]

use hosted_platform::db;
use hosted_testkit::{server_database_url, unused_database_name};
use sqlx::{Connection, PgConnection, postgres::PgConnectOptions};

/// Replicas racing to create one database.
const REPLICAS: usize = 8;
/// Rounds, each on a new name: one race may by chance be won cleanly.
const ROUNDS: usize = 3;

async fn drop_database(name: &str) {
    let mut admin = PgConnection::connect(&server_database_url()).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    let _ = admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_creating_one_missing_database_together_all_succeed() {
    for _ in 0..ROUNDS {
        // Arrange: a database name nobody has used, as the superuser (who may create it).
        let name = unused_database_name().await;
        let options: PgConnectOptions = server_database_url().parse().unwrap();
        let options = options.database(&name);

        // Act: every replica at once.
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(REPLICAS));
        let mut replicas = tokio::task::JoinSet::new();
        for _ in 0..REPLICAS {
            let options = options.clone();
            let barrier = barrier.clone();
            replicas.spawn(async move {
                barrier.wait().await;
                db::create_database_if_missing(&options).await
            });
        }
        let outcomes: Vec<_> = replicas.join_all().await;

        // Assert: none failed, and the database is there.
        let mut admin = PgConnection::connect(&server_database_url()).await.unwrap();
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut admin)
                .await
                .unwrap();
        let _ = admin.close().await;
        drop_database(&name).await;
        let failures: Vec<String> = outcomes
            .into_iter()
            .filter_map(|outcome| outcome.err().map(|error| error.to_string()))
            .collect();
        assert!(failures.is_empty(), "replicas failed: {failures:?}");
        assert!(exists, "database {name} was not created");
    }
}
