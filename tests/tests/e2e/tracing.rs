use std::time::Duration;

use hosted_contracts::subjects::Service;
use hosted_e2e::{TestSystem, registration};
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
