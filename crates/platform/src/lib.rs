//! What every hosted-learners service shares: layered configuration, telemetry,
//! the service's own PostgreSQL database and migrations, JetStream provisioning, the
//! transactional outbox and the inbox consumer, gRPC start-up with health,
//! reflection, graceful shutdown, TLS with certificates read again when renewed and
//! deny-by-default access control (tokens or client certificates), the one
//! mapping from service errors to gRPC statuses, and metrics for Prometheus.

pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod db;
pub mod erasure;
pub mod error;
pub mod grpc;
pub mod inbox;
pub mod metrics;
pub mod nats;
pub mod outbox;
pub mod personal_data;
pub mod service;
pub mod telemetry;
pub mod tls;
