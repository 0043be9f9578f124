//! The platform's erasure helpers on the real NATS and PostgreSQL: a stream loses the
//! messages of the erased learners and only those, dead letters included, the erasure
//! event excepted; an outbox loses its rows about them, except the erasure event.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use async_nats::{HeaderMap, jetstream};
use hosted_contracts::{
    headers,
    prost::Message,
    subjects::{Namespace, Service, intake},
    v1,
};
use hosted_platform::{
    config::NatsConfig,
    db,
    erasure::{self, PERSON_ERASED_EVENT_TYPE},
    nats,
    outbox::{self, OutboxEvent},
};
use hosted_testkit::TestDatabase;
use sqlx::Acquire;
use uuid::Uuid;

fn meta(learner: Option<Uuid>) -> v1::EventMeta {
    v1::EventMeta {
        event_id: Uuid::now_v7().to_string(),
        learner_id: learner.map(|id| id.to_string()).unwrap_or_default(),
        learner_version: 1,
        actor: "test".to_owned(),
        ..Default::default()
    }
}

/// A learner event whose payload carries a recognisable marker, as a name would be.
fn learner_event(learner: Uuid, marker: &str) -> Vec<u8> {
    v1::LearnerEvent {
        meta: Some(meta(Some(learner))),
        reason: marker.to_owned(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn unit_event() -> Vec<u8> {
    v1::UnitEvent {
        meta: Some(meta(None)),
        reason: "unit".to_owned(),
        ..Default::default()
    }
    .encode_to_vec()
}

async fn publish(jetstream: &jetstream::Context, subject: String, payload: Vec<u8>) -> u64 {
    publish_typed(jetstream, subject, payload, "hosted.v1.LearnerEvent").await
}

async fn publish_typed(
    jetstream: &jetstream::Context,
    subject: String,
    payload: Vec<u8>,
    event_type: &str,
) -> u64 {
    let mut message_headers = HeaderMap::new();
    message_headers.insert(headers::NATS_MSG_ID, Uuid::now_v7().to_string().as_str());
    message_headers.insert(headers::EVENT_TYPE, event_type);
    jetstream
        .publish_with_headers(subject, message_headers, payload.into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

/// A namespace of the test's own and intake's stream in it, as intake makes it.
async fn intake_stream() -> (Namespace, jetstream::Context, String) {
    let namespace = hosted_testkit::namespace().await;
    let config = NatsConfig {
        url: hosted_testkit::nats_url(),
        namespace: namespace.as_str().to_owned(),
        ..NatsConfig::default()
    };
    let jetstream = hosted_testkit::jetstream().await;
    let stream = namespace.stream(Service::Intake);
    nats::ensure_stream(
        &jetstream,
        nats::stream_config(&namespace, Service::Intake, &config),
    )
    .await
    .unwrap();
    (namespace, jetstream, stream)
}

#[tokio::test]
async fn a_stream_loses_every_message_of_the_erased_learners_and_only_those() {
    // Arrange: one stream with two learners' facts, a fact about no learner, and a
    // dead letter of the first learner.
    let (namespace, jetstream, stream_name) = intake_stream().await;
    let (erased, kept, other_erased) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let subject = namespace.subject(intake::STAY_REGISTERED);
    for round in 0..3 {
        publish(
            &jetstream,
            subject.clone(),
            learner_event(erased, &format!("ERASED-{round}")),
        )
        .await;
        publish(
            &jetstream,
            subject.clone(),
            learner_event(kept, &format!("KEPT-{round}")),
        )
        .await;
    }
    publish(
        &jetstream,
        subject.clone(),
        learner_event(other_erased, "OTHER-ERASED"),
    )
    .await;
    publish(
        &jetstream,
        namespace.subject(intake::UNIT_SAVED),
        unit_event(),
    )
    .await;
    let erasure_event = v1::PersonErasedEvent {
        meta: Some(meta(Some(erased))),
        basis: "request".to_owned(),
    };
    publish_typed(
        &jetstream,
        namespace.subject(intake::PERSON_ERASED),
        erasure_event.encode_to_vec(),
        PERSON_ERASED_EVENT_TYPE,
    )
    .await;
    publish(
        &jetstream,
        namespace.dead_letters(Service::Intake, "directory-intake"),
        learner_event(erased, "ERASED-DEAD"),
    )
    .await;

    // Act
    let count = erasure::erase_stream_messages(
        &jetstream,
        &stream_name,
        &HashSet::from([erased, other_erased]),
    )
    .await
    .unwrap();

    // Assert
    assert_eq!(
        count, 5,
        "three facts, one dead letter, one other learner's fact"
    );
    let left = hosted_testkit::stream_messages(&stream_name).await;
    assert_eq!(
        left.len(),
        5,
        "the kept learner's three facts, the unit fact and the erasure event"
    );
    for message in left
        .iter()
        .filter(|message| message.subject.as_str() != namespace.subject(intake::PERSON_ERASED))
    {
        let text = String::from_utf8_lossy(&message.payload);
        assert!(
            !text.contains("ERASED"),
            "an erased learner's message is left: {text}"
        );
        assert!(!text.contains(&erased.to_string()));
    }
    assert_eq!(
        left.iter()
            .filter(|message| erasure::learner_of(&message.payload) == Some(kept))
            .count(),
        3
    );
    // Erasing again finds nothing more.
    let again = erasure::erase_stream_messages(&jetstream, &stream_name, &HashSet::from([erased]))
        .await
        .unwrap();
    assert_eq!(again, 0);
}

#[tokio::test]
async fn erasing_from_a_missing_stream_or_for_no_learner_erases_nothing() {
    let namespace = hosted_testkit::namespace().await;
    let jetstream = hosted_testkit::jetstream().await;
    let missing = namespace.stream(Service::Cards);
    let count =
        erasure::erase_stream_messages(&jetstream, &missing, &HashSet::from([Uuid::now_v7()]))
            .await
            .unwrap();
    assert_eq!(count, 0);
    let count = erasure::erase_stream_messages(&jetstream, &missing, &HashSet::new())
        .await
        .unwrap();
    assert_eq!(count, 0);
}

fn outbox_event(payload: Vec<u8>, event_type: &'static str) -> OutboxEvent {
    OutboxEvent {
        event_id: Uuid::now_v7(),
        subject: "hosted.intake.stay.registered".to_owned(),
        event_type,
        payload,
        trace: None,
    }
}

#[tokio::test]
async fn an_outbox_loses_its_rows_about_the_erased_learners_except_the_erasure_event() {
    // Arrange: the erased learner has a published row, an unpublished one, one a relay
    // has claimed, and the erasure event; another learner and a unit have rows too.
    let database = TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
    let pool = db::connect(&database.config()).await.unwrap();
    db::migrate(&pool, &sqlx::migrate::Migrator::DEFAULT)
        .await
        .unwrap();
    let (erased, kept) = (Uuid::now_v7(), Uuid::now_v7());
    let published = outbox_event(learner_event(erased, "PUBLISHED"), "hosted.v1.LearnerEvent");
    let pending = outbox_event(learner_event(erased, "PENDING"), "hosted.v1.LearnerEvent");
    let claimed = outbox_event(learner_event(erased, "CLAIMED"), "hosted.v1.LearnerEvent");
    let erasure_event = outbox_event(
        v1::PersonErasedEvent {
            meta: Some(meta(Some(erased))),
            basis: "request".to_owned(),
        }
        .encode_to_vec(),
        PERSON_ERASED_EVENT_TYPE,
    );
    let other = outbox_event(learner_event(kept, "OTHER"), "hosted.v1.LearnerEvent");
    let unit = outbox_event(unit_event(), "hosted.v1.UnitEvent");
    let mut conn = pool.acquire().await.unwrap();
    outbox::enqueue(
        &mut conn,
        &[
            published.clone(),
            pending,
            claimed.clone(),
            erasure_event.clone(),
            other.clone(),
            unit.clone(),
        ],
    )
    .await
    .unwrap();
    sqlx::query("UPDATE platform_outbox SET published_at = now() WHERE event_id = $1")
        .bind(published.event_id)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE platform_outbox SET claimed_until = now() + interval '30 seconds' WHERE event_id = $1",
    )
    .bind(claimed.event_id)
    .execute(&mut *conn)
    .await
    .unwrap();

    // Act
    let mut transaction = conn.begin().await.unwrap();
    let scrub = erasure::scrub_outbox(&mut transaction, &HashSet::from([erased]))
        .await
        .unwrap();
    transaction.commit().await.unwrap();

    // Assert
    assert_eq!(scrub.published, 1);
    assert_eq!(scrub.unpublished, 2);
    assert!(
        scrub.in_flight_until.is_some(),
        "the claimed row may be in flight"
    );
    let left: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM platform_outbox ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        left,
        vec![erasure_event.event_id, other.event_id, unit.event_id]
    );
    let again = erasure::scrub_outbox(&mut pool.acquire().await.unwrap(), &HashSet::from([erased]))
        .await
        .unwrap();
    assert_eq!(again, erasure::OutboxScrub::default());
}

/// An erasure deferred because an outbox row was in flight is served when it falls
/// due, not at the eraser's next look half a minute later: the learner's message
/// is gone within seconds of the deferral's end.
#[tokio::test]
async fn a_deferred_stream_erasure_is_served_when_it_falls_due() {
    // Arrange: a stream with a learner's fact, and the learner's tombstone whose
    // stream erasure is deferred by two seconds.
    let (namespace, jetstream, stream) = intake_stream().await;
    let learner = Uuid::now_v7();
    publish(
        &jetstream,
        namespace.subject(intake::STAY_REGISTERED),
        learner_event(learner, "DEFERRED"),
    )
    .await;
    let database = TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    sqlx::query(
        "CREATE TABLE erased_learners (
             learner_id uuid PRIMARY KEY,
             erase_streams_after timestamptz NOT NULL DEFAULT now(),
             streams_erased_at timestamptz)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO erased_learners (learner_id, erase_streams_after)
         VALUES ($1, now() + interval '2 seconds')",
    )
    .bind(learner)
    .execute(&pool)
    .await
    .unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let eraser = erasure::StreamEraser {
        pool: pool.clone(),
        jetstream: jetstream.clone(),
        stream: stream.clone(),
        signal: erasure::ErasureSignal::default(),
        due_also: None,
    };

    // Act
    let running = tokio::spawn(eraser.run(shutdown));

    // Assert: served within 15 s (the eraser looks by itself every 30 s).
    let mut erased_at: Option<time::OffsetDateTime> = None;
    for _ in 0..150 {
        erased_at = sqlx::query_scalar(
            "SELECT streams_erased_at FROM erased_learners WHERE learner_id = $1",
        )
        .bind(learner)
        .fetch_one(&pool)
        .await
        .unwrap();
        if erased_at.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        erased_at.is_some(),
        "the deferred erasure was not served when due"
    );
    let left = hosted_testkit::stream_messages(&stream).await;
    assert!(left.is_empty(), "{} message(s) left", left.len());
    stop.send(true).unwrap();
    running.await.unwrap();
}
