//! Header names shared by every producer and consumer of events.

/// JetStream de-duplication key: always the event id.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
/// W3C trace context, so one trace spans gRPC call → event → consumer.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace state, carried along with `traceparent`.
pub const TRACESTATE: &str = "tracestate";
/// The protobuf message type of the payload, e.g. `hosted.v1.LearnerEvent`.
pub const EVENT_TYPE: &str = "Hosted-Event-Type";

/// On a dead letter: the subject the event was first published on.
pub const DEAD_LETTER_SUBJECT: &str = "Hosted-Dead-Subject";
/// On a dead letter: the durable consumer that gave up on it.
pub const DEAD_LETTER_CONSUMER: &str = "Hosted-Dead-Consumer";
/// On a dead letter: why the consumer gave up (no personal data).
pub const DEAD_LETTER_ERROR: &str = "Hosted-Dead-Error";
/// On a dead letter: how many times it was delivered.
pub const DEAD_LETTER_DELIVERIES: &str = "Hosted-Dead-Deliveries";

/// gRPC metadata key of the caller's credential.
pub const AUTHORIZATION: &str = "authorization";
