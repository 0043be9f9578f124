use std::{collections::HashMap, time::Duration};

use hosted_contracts::{
    prost::Message,
    subjects::{Service, entitlement::GRANTS_CHANGED, intake::STAY_REGISTERED},
    v1,
};
use hosted_e2e::{TestSystem, cohort, registration};
use hosted_platform::auth::Role;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The caller's trace goes from the gRPC call into the event's headers and on to the
/// consumer that writes LDAP: one trace.
#[tokio::test]
async fn one_trace_spans_the_call_the_event_and_the_consumer() {
    // Arrange
    let system = TestSystem::start().await;
    let mut request = system.as_role(Role::Deve, registration("Bernard", "Chloé", "2001-01-01"));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );

    // Act
    system
        .intake_client()
        .await
        .register_stay(request)
        .await
        .unwrap();

    // Assert
    system
        .subtree
        .wait_for_entries(1, Duration::from_secs(20))
        .await;
    let messages = hosted_testkit::stream_messages(&system.namespace.stream(Service::Intake)).await;
    let event_trace = messages[0]
        .headers
        .get("traceparent")
        .unwrap()
        .as_str()
        .to_owned();
    assert!(
        event_trace.starts_with(&format!("00-{TRACE_ID}-")),
        "{event_trace}"
    );
    assert!(
        !event_trace.contains("00f067aa0ba902b7"),
        "the event is a child span, not the caller's"
    );
    let mut conn = system.directory_database.connect().await;
    let consumer_trace: Option<String> = sqlx::query_scalar("SELECT traceparent FROM accounts")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(
        consumer_trace
            .as_deref()
            .is_some_and(|trace| trace.starts_with(&format!("00-{TRACE_ID}-"))),
        "{consumer_trace:?}"
    );
    system.stop().await;
}

/// The trace id of a `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id(traceparent: &str) -> String {
    traceparent.split('-').nth(1).unwrap_or_default().to_owned()
}

/// A caller's `traceparent` in trace `trace`.
fn caller_traceparent(trace: &str) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
    format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap()
}

/// The trace id of each message on `service`'s stream whose subject is `subject`, by
/// the learner id `learner_of` reads in its payload.
async fn traces_by_learner(
    system: &TestSystem,
    service: Service,
    subject: &str,
    learner_of: impl Fn(&[u8]) -> String,
) -> HashMap<String, String> {
    hosted_testkit::stream_messages(&system.namespace.stream(service))
        .await
        .into_iter()
        .filter(|message| message.subject.as_str() == subject)
        .map(|message| {
            let traceparent = message
                .headers
                .get("traceparent")
                .map(|value| value.as_str().to_owned())
                .unwrap_or_default();
            (learner_of(&message.payload), trace_id(&traceparent))
        })
        .collect()
}

/// The trace of each learner's registration on intake's stream.
async fn registration_traces(system: &TestSystem, count: usize) -> HashMap<String, String> {
    let subject = system.namespace.subject(STAY_REGISTERED);
    for _ in 0..200 {
        let traces = traces_by_learner(system, Service::Intake, &subject, |payload| {
            let learner = v1::LearnerEvent::decode(payload).unwrap().learner.unwrap();
            learner.person.unwrap().learner_id
        })
        .await;
        if traces.len() >= count {
            return traces;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{count} registrations never reached intake's stream");
}

/// The trace of each learner's grants event, once there are `count`.
async fn grants_traces(system: &TestSystem, count: usize) -> HashMap<String, String> {
    let subject = system.namespace.subject(GRANTS_CHANGED);
    for _ in 0..200 {
        let traces = traces_by_learner(system, Service::Entitlement, &subject, |payload| {
            v1::GrantsEvent::decode(payload)
                .unwrap()
                .meta
                .unwrap()
                .learner_id
        })
        .await;
        if traces.len() >= count {
            return traces;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{count} grants events never came");
}

/// The trace each account's LDAP write is made in (the parent of its write span).
async fn account_traces(system: &TestSystem) -> HashMap<String, String> {
    let mut conn = system.directory_database.connect().await;
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT learner_id::text, traceparent FROM accounts")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(learner_id, traceparent)| (learner_id, trace_id(&traceparent.unwrap_or_default())))
        .collect()
}

/// Starts entitlement once intake's `registrations` are on its stream, so that they
/// come to its consumer together and are applied as one batch; then checks that each
/// learner's grants event and LDAP write stay in the trace of that learner's
/// registration.
async fn assert_each_learner_keeps_its_trace(system: &mut TestSystem, registrations: usize) {
    let registered = registration_traces(system, registrations).await;
    system.start_entitlement().await;
    system.start_directory().await;

    let granted = grants_traces(system, registrations).await;
    assert_eq!(granted.len(), registrations, "{granted:?}");
    for (learner_id, trace) in &granted {
        assert_eq!(
            Some(trace),
            registered.get(learner_id),
            "the grants of {learner_id} are in the trace of its registration"
        );
    }
    system
        .subtree
        .wait_for_entries(registrations, Duration::from_secs(20))
        .await;
    let written = account_traces(system).await;
    assert_eq!(
        written, registered,
        "each LDAP write in its registration's trace"
    );
}

/// A cohort imported in one call: intake's events carry the import's trace (one call,
/// one trace), and entitlement, applying them as one batch, keeps each learner's
/// grants in it rather than starting a trace of its own.
#[tokio::test]
async fn an_imported_cohort_stays_in_the_import_trace_through_a_batch() {
    // Arrange
    let mut system = TestSystem::prepare(None).await;
    system.await_grants = Duration::from_secs(60);
    system.start_intake().await;
    let trace = "5ce0c0ffee0000000000000000000017";
    let mut request = system.as_role(
        Role::Deve,
        v1::ImportStaysRequest {
            rows: cohort(3, "Trace", "Lou", 1990, |_, _| {}),
            dry_run: false,
        },
    );
    request
        .metadata_mut()
        .insert("traceparent", caller_traceparent(trace));

    // Act
    let results = system
        .intake_client()
        .await
        .import_stays(request)
        .await
        .unwrap()
        .into_inner()
        .results;

    // Assert
    assert_eq!(results.len(), 3);
    let registered = registration_traces(&system, 3).await;
    assert!(
        registered.values().all(|id| id == trace),
        "intake's events are in the import's trace: {registered:?}"
    );
    assert_each_learner_keeps_its_trace(&mut system, 3).await;
    system.stop().await;
}

/// Three registrations, each in its caller's trace, applied by entitlement as one
/// batch: each learner's grants stay in the trace of its own registration.
#[tokio::test]
async fn each_event_of_a_batch_keeps_its_own_trace() {
    // Arrange
    let mut system = TestSystem::prepare(None).await;
    system.await_grants = Duration::from_secs(60);
    system.start_intake().await;
    let people = [
        ("Lemoine", "Inès", "2001-02-03"),
        ("Barbier", "Hugo", "2002-03-04"),
        ("Colin", "Jade", "2003-04-05"),
    ];

    // Act
    for (index, (family, given, birth)) in people.into_iter().enumerate() {
        let mut request = system.as_role(Role::Deve, registration(family, given, birth));
        request.metadata_mut().insert(
            "traceparent",
            caller_traceparent(&format!("5ce0c0ffee00000000000000000001{index:02}")),
        );
        system
            .intake_client()
            .await
            .register_stay(request)
            .await
            .unwrap();
    }

    // Assert
    let registered = registration_traces(&system, 3).await;
    let mut traces: Vec<&String> = registered.values().collect();
    traces.sort();
    traces.dedup();
    assert_eq!(
        traces.len(),
        3,
        "one trace per registration: {registered:?}"
    );
    assert_each_learner_keeps_its_trace(&mut system, 3).await;
    system.stop().await;
}
