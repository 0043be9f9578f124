//! The inbox recovers soon: a database error is retried without waiting for
//! `ack_wait`, an event held by a consumer that died comes back within the (short)
//! default `ack_wait`, and long work keeps its event without a redelivery.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_nats::HeaderMap;
use hosted_contracts::subjects::{Namespace, Service};
use hosted_platform::{
    config::{DatabaseConfig, NatsConfig},
    inbox::{ConsumerSpec, Delivery, HandleError, Handler, InboxConsumer},
};
use hosted_testkit::TestDatabase;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;

/// Counts what it applies; may hang (a process about to die), work slowly, or wait
/// for the test to let it go on.
#[derive(Debug, Default)]
struct Counter {
    applied: AtomicUsize,
    hang: AtomicBool,
    slow: Option<Duration>,
    gate: Option<watch::Receiver<bool>>,
    started: AtomicBool,
}

struct Probe(Arc<Counter>);

impl Handler for Probe {
    async fn handle(
        &self,
        _conn: &mut PgConnection,
        _delivery: &Delivery,
    ) -> Result<(), HandleError> {
        if self.0.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.0.started.store(true, Ordering::SeqCst);
        if let Some(slow) = self.0.slow {
            tokio::time::sleep(slow).await;
        }
        if let Some(gate) = &self.0.gate {
            let _ = gate.clone().wait_for(|open| *open).await;
        }
        self.0.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Setup {
    namespace: Namespace,
    database: TestDatabase,
    pool: PgPool,
    jetstream: async_nats::jetstream::Context,
}

async fn setup(nats: &NatsConfig) -> Setup {
    let database = TestDatabase::new(hosted_testkit::DatabaseOwner::Directory).await;
    let pool = hosted_platform::db::connect(&DatabaseConfig {
        url: database.url.clone(),
        create_if_missing: false,
        ..DatabaseConfig::default()
    })
    .await
    .unwrap();
    static NONE: sqlx::migrate::Migrator = sqlx::migrate::Migrator::DEFAULT;
    hosted_platform::db::migrate(&pool, &NONE).await.unwrap();
    let namespace = nats.namespace();
    let jetstream = hosted_testkit::jetstream().await;
    for service in [Service::Intake, Service::Entitlement] {
        hosted_platform::nats::ensure_stream(
            &jetstream,
            hosted_platform::nats::stream_config(&namespace, service, nats),
        )
        .await
        .unwrap();
    }
    Setup {
        namespace,
        database,
        pool,
        jetstream,
    }
}

impl Setup {
    async fn publish(&self) {
        self.publish_many(1).await;
    }

    async fn publish_many(&self, count: usize) {
        for _ in 0..count {
            self.publish_one().await;
        }
    }

    async fn publish_one(&self) {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
        self.jetstream
            .publish_with_headers(
                format!("{}.intake.stay.registered", self.namespace.as_str()),
                headers,
                "event".into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Starts a consumer; returns what stops it and its task.
    async fn consume(
        &self,
        nats: &NatsConfig,
        counter: Arc<Counter>,
    ) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        self.consume_on(nats, counter, self.jetstream.clone()).await
    }

    /// As [`Setup::consume`], on the given connection.
    async fn consume_on(
        &self,
        nats: &NatsConfig,
        counter: Arc<Counter>,
        jetstream: async_nats::jetstream::Context,
    ) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let consumer = InboxConsumer::new(
            ConsumerSpec {
                durable: "test-recovery".to_owned(),
                source: Service::Intake,
                owner: Service::Entitlement,
            },
            nats,
            self.pool.clone(),
            jetstream,
            Arc::new(Probe(counter)),
        );
        let (stop, mut stopped) = watch::channel(false);
        let attached = consumer.attach(&mut stopped).await.unwrap();
        (stop, tokio::spawn(consumer.run(attached, stopped)))
    }

    async fn deliveries(&self) -> u64 {
        let stream = self
            .jetstream
            .get_stream(self.namespace.stream(Service::Intake))
            .await
            .unwrap();
        let mut consumer = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>("test-recovery")
            .await
            .unwrap();
        consumer.info().await.unwrap().delivered.consumer_sequence
    }
}

/// Waits until `counter` has applied `count` events; false after `limit`.
async fn applied_within(counter: &Counter, count: usize, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if counter.applied.load(Ordering::SeqCst) >= count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_database_error_is_retried_without_waiting_for_ack_wait() {
    // Arrange: a long ack_wait, and an inbox the consumer cannot write for a moment.
    let namespace = hosted_testkit::namespace().await;
    let nats = NatsConfig {
        ack_wait: Duration::from_secs(30),
        ..hosted_testkit::nats_admin_config(&namespace)
    };
    let setup = setup(&nats).await;
    let counter = Arc::new(Counter::default());
    let (stop, task) = setup.consume(&nats, counter.clone()).await;
    let mut admin = setup.database.connect().await;
    sqlx::query("ALTER TABLE platform_inbox RENAME TO platform_inbox_away")
        .execute(&mut admin)
        .await
        .unwrap();

    // Act: the event arrives while the database refuses, which then recovers.
    setup.publish().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(counter.applied.load(Ordering::SeqCst), 0);
    sqlx::query("ALTER TABLE platform_inbox_away RENAME TO platform_inbox")
        .execute(&mut admin)
        .await
        .unwrap();

    // Assert: applied well before ack_wait would have brought it back.
    assert!(
        applied_within(&counter, 1, Duration::from_secs(10)).await,
        "not applied within 10 s of the database's recovery"
    );
    let _ = stop.send(true);
    task.await.unwrap();
}

#[tokio::test]
async fn an_event_held_by_a_consumer_that_died_comes_back_soon() {
    // Arrange: the default ack_wait; a consumer takes the event and dies with it.
    let namespace = hosted_testkit::namespace().await;
    let nats = NatsConfig {
        ack_wait: NatsConfig::default().ack_wait,
        ..hosted_testkit::nats_admin_config(&namespace)
    };
    let setup = setup(&nats).await;
    let dying = Arc::new(Counter::default());
    dying.hang.store(true, Ordering::SeqCst);
    let (_stop, task) = setup.consume(&nats, dying.clone()).await;
    setup.publish().await;
    while setup.deliveries().await == 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    let _ = task.await;

    // Act: a new process takes over.
    let counter = Arc::new(Counter::default());
    let (stop, task) = setup.consume(&nats, counter.clone()).await;

    // Assert: the event comes back within about the default ack_wait.
    assert!(
        applied_within(&counter, 1, Duration::from_secs(15)).await,
        "an event held by a dead consumer took more than 15 s to come back"
    );
    let _ = stop.send(true);
    task.await.unwrap();
}

#[tokio::test]
async fn work_longer_than_ack_wait_keeps_its_event() {
    // Arrange: a handler that takes twice the ack_wait.
    let namespace = hosted_testkit::namespace().await;
    let nats = hosted_testkit::nats_admin_config(&namespace);
    let setup = setup(&nats).await;
    let counter = Arc::new(Counter {
        slow: Some(nats.ack_wait * 2),
        ..Counter::default()
    });

    // Act
    let (stop, task) = setup.consume(&nats, counter.clone()).await;
    setup.publish().await;
    assert!(applied_within(&counter, 1, nats.ack_wait * 5).await);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Assert: delivered once, never taken back while it was being worked on.
    assert_eq!(setup.deliveries().await, 1);
    let _ = stop.send(true);
    task.await.unwrap();
}

/// A durable consumer made by an older version (a 30 s ack_wait) takes the current
/// settings when the consumer attaches again, keeping its position.
#[tokio::test]
async fn an_existing_consumer_takes_the_current_ack_wait() {
    // Arrange
    let namespace = hosted_testkit::namespace().await;
    let nats = hosted_testkit::nats_admin_config(&namespace);
    let setup = setup(&nats).await;
    let stream = namespace.stream(Service::Intake);
    let old = NatsConfig {
        ack_wait: Duration::from_secs(30),
        ..nats.clone()
    };
    hosted_platform::nats::ensure_consumer(
        &setup.jetstream,
        &stream,
        hosted_platform::nats::consumer_config(
            "test-recovery",
            namespace.all_of(Service::Intake),
            &old,
        ),
    )
    .await
    .unwrap();

    // Act
    let mut consumer = hosted_platform::nats::ensure_consumer(
        &setup.jetstream,
        &stream,
        hosted_platform::nats::consumer_config(
            "test-recovery",
            namespace.all_of(Service::Intake),
            &nats,
        ),
    )
    .await
    .unwrap();

    // Assert
    assert_eq!(
        consumer.info().await.unwrap().config.ack_wait,
        nats.ack_wait
    );
}

/// Lines written by the services' logging, for a test to read.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn count(&self, text: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(text)
            .count()
    }
}

/// NATS goes away while a batch of 40 events is being applied: the acks that cannot
/// be confirmed are said once, not once each, and their return once.
#[tokio::test]
async fn a_nats_outage_is_logged_once_not_once_per_ack() {
    // Arrange: what this test's tasks log (all on this thread) is captured; the
    // consumer reaches NATS through a proxy the test stops.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let namespace = hosted_testkit::namespace().await;
    let nats = hosted_testkit::nats_admin_config(&namespace);
    let setup = setup(&nats).await;
    setup.publish_many(40).await;
    let proxy = hosted_testkit::TcpProxy::start(hosted_testkit::nats_address()).await;
    let through_proxy = NatsConfig {
        url: hosted_testkit::nats_url_via(proxy.address()),
        ..nats.clone()
    };
    let client = hosted_platform::nats::connect(&through_proxy, "test-outage")
        .await
        .unwrap();
    let (open, gate) = watch::channel(false);
    let counter = Arc::new(Counter {
        gate: Some(gate),
        ..Counter::default()
    });
    let consumer = InboxConsumer::new(
        ConsumerSpec {
            durable: "test-recovery".to_owned(),
            source: Service::Intake,
            owner: Service::Entitlement,
        },
        &through_proxy,
        setup.pool.clone(),
        async_nats::jetstream::new(client),
        Arc::new(Probe(counter.clone())),
    );
    let (stop, mut stopped) = watch::channel(false);
    let attached = consumer.attach(&mut stopped).await.unwrap();
    let task = tokio::spawn(consumer.run(attached, stopped));
    while !counter.started.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Act: NATS goes away, then the batch finishes and its acks fail.
    proxy.stop().await;
    open.send_replace(true);
    assert!(applied_within(&counter, 40, Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_secs(7)).await;
    proxy.resume().await;
    tokio::time::sleep(Duration::from_secs(8)).await;

    // Assert
    assert_eq!(captured.count("ack not confirmed"), 1);
    assert_eq!(captured.count("acks confirmed again"), 1);
    let _ = stop.send(true);
    task.await.unwrap();
}

/// A consumer stopped gracefully hands back the events it had received but not
/// started: the next process gets them at once, not after `ack_wait`.
#[tokio::test]
async fn a_consumer_stopped_gracefully_hands_back_what_it_had_not_started() {
    // Arrange: a long ack_wait; a slow consumer receives more than it works on.
    let namespace = hosted_testkit::namespace().await;
    let nats = NatsConfig {
        ack_wait: Duration::from_secs(30),
        ..hosted_testkit::nats_admin_config(&namespace)
    };
    let setup = setup(&nats).await;
    let slow = Arc::new(Counter {
        slow: Some(Duration::from_secs(1)),
        ..Counter::default()
    });
    // On a connection of its own, closed when it stops, as when its process exits.
    let own = async_nats::jetstream::new(
        hosted_platform::nats::connect(&nats, "test-stopping")
            .await
            .unwrap(),
    );
    let (stop, task) = setup.consume_on(&nats, slow.clone(), own).await;
    setup.publish().await;
    while !slow.started.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    setup.publish_many(4).await;
    while setup.deliveries().await < 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Act: stopped while it works on the first.
    let _ = stop.send(true);
    task.await.unwrap();
    let counter = Arc::new(Counter::default());
    let (stop, task) = setup.consume(&nats, counter.clone()).await;

    // Assert: the four others are applied well within ack_wait.
    assert_eq!(slow.applied.load(Ordering::SeqCst), 1);
    assert!(
        applied_within(&counter, 4, Duration::from_secs(10)).await,
        "events a stopped consumer had received came back after {} only",
        counter.applied.load(Ordering::SeqCst)
    );
    let _ = stop.send(true);
    task.await.unwrap();
}
