//! A dead letter is not an event: the consumers of a service's stream never see its
//! dead letters, so one event a consumer gave up on stays one dead letter.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_nats::HeaderMap;
use hosted_contracts::subjects::Service;
use hosted_platform::{
    config::DatabaseConfig,
    inbox::{ConsumerSpec, DeadLetters, Delivery, HandleError, Handler, InboxConsumer},
};
use sqlx::PgConnection;

/// Gives up on every event.
struct Refuser(Arc<AtomicUsize>);

impl Handler for Refuser {
    async fn handle(
        &self,
        _conn: &mut PgConnection,
        _delivery: &Delivery,
    ) -> Result<(), HandleError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(HandleError::Permanent("refused".to_owned()))
    }
}

/// Applies everything.
struct Taker(Arc<AtomicUsize>);

impl Handler for Taker {
    async fn handle(
        &self,
        _conn: &mut PgConnection,
        _delivery: &Delivery,
    ) -> Result<(), HandleError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_dead_letter_is_not_consumed_as_an_event() {
    // Arrange: entitlement's consumer of intake gives up on everything; directory
    // consumes entitlement's stream, as it does in deployment.
    let namespace = hosted_testkit::namespace().await;
    let nats = hosted_testkit::nats_admin_config(&namespace);
    let database =
        hosted_testkit::TestDatabase::new(hosted_testkit::DatabaseOwner::Directory).await;
    let pool = hosted_platform::db::connect(&DatabaseConfig {
        url: database.url.clone(),
        create_if_missing: false,
        ..DatabaseConfig::default()
    })
    .await
    .unwrap();
    static NONE: sqlx::migrate::Migrator = sqlx::migrate::Migrator::DEFAULT;
    hosted_platform::db::migrate(&pool, &NONE).await.unwrap();
    let jetstream = hosted_testkit::jetstream().await;
    for service in [Service::Intake, Service::Entitlement, Service::Directory] {
        hosted_platform::nats::ensure_stream(
            &jetstream,
            hosted_platform::nats::stream_config(&namespace, service, &nats),
        )
        .await
        .unwrap();
    }
    let refused = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let entitlement = InboxConsumer::new(
        ConsumerSpec {
            durable: "entitlement-intake".to_owned(),
            source: Service::Intake,
            owner: Service::Entitlement,
        },
        &nats,
        pool.clone(),
        jetstream.clone(),
        Arc::new(Refuser(refused.clone())),
    );
    let attached = entitlement.attach(&mut stopped.clone()).await.unwrap();
    tasks.push(tokio::spawn(entitlement.run(attached, stopped.clone())));
    let directory = InboxConsumer::new(
        ConsumerSpec {
            durable: "directory-entitlement".to_owned(),
            source: Service::Entitlement,
            owner: Service::Directory,
        },
        &nats,
        pool.clone(),
        jetstream.clone(),
        Arc::new(Taker(taken.clone())),
    );
    let attached = directory.attach(&mut stopped.clone()).await.unwrap();
    tasks.push(tokio::spawn(directory.run(attached, stopped.clone())));

    // Act: one event entitlement cannot apply.
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
    jetstream
        .publish_with_headers(
            format!("{}.intake.stay.registered", namespace.as_str()),
            headers,
            "event".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let entitlement_letters =
        DeadLetters::new(namespace.clone(), Service::Entitlement, jetstream.clone());
    for _ in 0..100 {
        if !entitlement_letters.list().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Time for directory's consumer to see (or not) the dead letter.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Assert: one dead letter, entitlement's; directory neither applied nor
    // dead-lettered it.
    let directory_letters =
        DeadLetters::new(namespace.clone(), Service::Directory, jetstream.clone());
    assert_eq!(entitlement_letters.list().await.unwrap().len(), 1);
    assert_eq!(directory_letters.list().await.unwrap().len(), 0);
    assert_eq!(taken.load(Ordering::SeqCst), 0);

    // Act: a dead letter where earlier versions put them, among entitlement's facts.
    let mut headers = HeaderMap::new();
    let former_id = format!("entitlement-intake:{}", uuid::Uuid::now_v7());
    headers.insert("Nats-Msg-Id", former_id.as_str());
    headers.insert(
        hosted_contracts::headers::DEAD_LETTER_CONSUMER,
        "entitlement-intake",
    );
    jetstream
        .publish_with_headers(
            format!(
                "{}.entitlement.deadletter.entitlement-intake",
                namespace.as_str()
            ),
            headers,
            "event".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Assert: directory skips it; entitlement lists both.
    assert_eq!(entitlement_letters.list().await.unwrap().len(), 2);
    assert_eq!(directory_letters.list().await.unwrap().len(), 0);
    assert_eq!(taken.load(Ordering::SeqCst), 0);
    let _ = stop.send(true);
    for task in tasks {
        task.await.unwrap();
    }
}
