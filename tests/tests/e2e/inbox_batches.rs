//! The inbox applies a batch at once when its handler can, and falls back to one event
//! at a time when the batch fails, so that only the bad event is dead-lettered.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::HeaderMap;
use hosted_contracts::subjects::Service;
use hosted_platform::{
    config::DatabaseConfig,
    inbox::{ConsumerSpec, Delivery, HandleError, Handler, InboxConsumer},
};
use sqlx::PgConnection;

/// Records what it is given; an event whose payload is "bad" cannot be applied.
#[derive(Debug, Default)]
struct Recorder {
    batches: Mutex<Vec<usize>>,
    applied: Mutex<Vec<String>>,
    /// Each event handed to `handle_many`, with the trace id it is handed.
    traces: Mutex<Vec<(String, String)>>,
}

/// The trace each test event is published in: `payload`'s bytes, in hex.
fn trace_of(payload: &str) -> String {
    let hex: String = payload.bytes().map(|byte| format!("{byte:02x}")).collect();
    format!("{hex:0>32}")
}

fn apply(delivery: &Delivery) -> Result<String, HandleError> {
    let text = String::from_utf8_lossy(&delivery.payload).to_string();
    if text == "bad" {
        return Err(HandleError::Permanent("bad event".to_owned()));
    }
    Ok(text)
}

/// The handler the consumer owns, sharing the record with the test.
struct Probe(Arc<Recorder>);

impl Handler for Probe {
    async fn handle(
        &self,
        _conn: &mut PgConnection,
        delivery: &Delivery,
    ) -> Result<(), HandleError> {
        let text = apply(delivery)?;
        self.0.applied.lock().unwrap().push(text);
        Ok(())
    }

    fn handles_many(&self) -> bool {
        true
    }

    async fn handle_many(
        &self,
        _conn: &mut PgConnection,
        deliveries: &[Delivery],
    ) -> Result<bool, HandleError> {
        self.0.batches.lock().unwrap().push(deliveries.len());
        self.0
            .traces
            .lock()
            .unwrap()
            .extend(deliveries.iter().map(|delivery| {
                let traceparent = delivery.trace.traceparent.clone().unwrap_or_default();
                (
                    String::from_utf8_lossy(&delivery.payload).to_string(),
                    traceparent.split('-').nth(1).unwrap_or_default().to_owned(),
                )
            }));
        let texts = deliveries
            .iter()
            .map(apply)
            .collect::<Result<Vec<_>, _>>()?;
        self.0.applied.lock().unwrap().extend(texts);
        Ok(true)
    }
}

async fn run(payloads: &[&str]) -> (Arc<Recorder>, usize) {
    let events: Vec<(&str, uuid::Uuid)> = payloads
        .iter()
        .map(|payload| (*payload, uuid::Uuid::now_v7()))
        .collect();
    run_events(&events, None).await
}

/// As [`run`], each event with its id; with `duplicate_window`, JetStream keeps two
/// events of the same id published further apart than that (a redelivery's copy).
async fn run_events(
    events: &[(&str, uuid::Uuid)],
    duplicate_window: Option<Duration>,
) -> (Arc<Recorder>, usize) {
    let payloads: Vec<&str> = events.iter().map(|(payload, _)| *payload).collect();
    let namespace = hosted_testkit::namespace().await;
    let mut nats = hosted_testkit::nats_admin_config(&namespace);
    if let Some(window) = duplicate_window {
        nats.duplicate_window = window;
    }
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
    for service in [Service::Intake, Service::Entitlement] {
        hosted_platform::nats::ensure_stream(
            &jetstream,
            hosted_platform::nats::stream_config(&namespace, service, &nats),
        )
        .await
        .unwrap();
    }
    // Everything is in the stream before the consumer attaches: one pull brings it.
    for (payload, event_id) in events {
        if duplicate_window.is_some() {
            tokio::time::sleep(duplicate_window.unwrap_or_default() * 2).await;
        }
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event_id.to_string().as_str());
        headers.insert(
            "traceparent",
            format!("00-{}-00f067aa0ba902b7-01", trace_of(payload)).as_str(),
        );
        jetstream
            .publish_with_headers(
                format!("{}.intake.stay.registered", namespace.as_str()),
                headers,
                payload.as_bytes().to_vec().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let recorder = Arc::new(Recorder::default());
    let consumer = InboxConsumer::new(
        ConsumerSpec {
            durable: "test-batches".to_owned(),
            source: Service::Intake,
            owner: Service::Entitlement,
        },
        &nats,
        pool.clone(),
        jetstream,
        Arc::new(Probe(recorder.clone())),
    );
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let attached = consumer.attach(&mut stopped).await.unwrap();
    let task = tokio::spawn(consumer.run(attached, stopped));
    let good = payloads.iter().filter(|payload| **payload != "bad").count();
    let good = good.min(
        events
            .iter()
            .map(|(_, id)| *id)
            .collect::<std::collections::HashSet<_>>()
            .len(),
    );
    for _ in 0..200 {
        if recorder.applied.lock().unwrap().len() >= good {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop.send(true);
    task.await.unwrap();
    let dead = hosted_testkit::stream_messages(&namespace.stream(Service::Entitlement))
        .await
        .len();
    (recorder, dead)
}

#[tokio::test]
async fn a_batch_is_applied_at_once_and_a_bad_event_only_fails_itself() {
    // Act
    let (clean, clean_dead) = run(&["a", "b", "c", "d"]).await;
    let (mixed, mixed_dead) = run(&["a", "b", "bad", "c"]).await;

    // Assert: the events came in batches (one pull brings them; how many arrive
    // together depends on the machine), each applied once, in order.
    assert!(!clean.batches.lock().unwrap().is_empty(), "applied at once");
    assert_eq!(*clean.applied.lock().unwrap(), ["a", "b", "c", "d"]);
    assert_eq!(clean_dead, 0);
    // A batch with a bad event is tried at once, then one by one: the others are
    // applied once, in order, and only the bad one is dead-lettered.
    assert_eq!(*mixed.applied.lock().unwrap(), ["a", "b", "c"]);
    assert_eq!(mixed_dead, 1);
}

/// A batch applied at once hands the handler each event in its own trace, so that
/// what it writes for one event stays in that event's trace.
#[tokio::test]
async fn each_event_of_a_batch_is_handed_its_own_trace() {
    // Act
    let (recorder, _) = run(&["a", "b", "c", "d"]).await;

    // Assert
    let traces = recorder.traces.lock().unwrap();
    assert!(!traces.is_empty(), "applied at once");
    for (payload, trace) in traces.iter() {
        assert_eq!(*trace, trace_of(payload), "event {payload}");
    }
}

/// The same event twice in one batch (a redelivery's copy beside the original) is
/// applied once.
#[tokio::test]
async fn an_event_twice_in_a_batch_is_applied_once() {
    // Arrange
    let twice = uuid::Uuid::now_v7();
    let events = [
        ("a", uuid::Uuid::now_v7()),
        ("b", twice),
        ("b", twice),
        ("c", uuid::Uuid::now_v7()),
    ];

    // Act
    let (recorder, dead) = run_events(&events, Some(Duration::from_millis(100))).await;

    // Assert
    assert_eq!(*recorder.applied.lock().unwrap(), ["a", "b", "c"]);
    assert_eq!(dead, 0);
}
