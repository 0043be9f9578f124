//! Intake through its gRPC API, against real PostgreSQL and NATS.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod access;
mod admission;
mod agreements;
mod database_roles;
mod erasure;
mod helpers;
mod hygiene;
mod identity;
mod import;
mod lifecycle;
mod locking;
mod outage;
mod outbox;
mod payments;
mod populations;
mod register;
mod requested_resources;
mod search;
mod startup;
mod tls;
mod units;
