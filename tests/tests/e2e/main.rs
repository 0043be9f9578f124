//! The whole path, against real PostgreSQL, NATS and slapd: a learner registered
//! through intake's gRPC API appears in LDAP, written by directory from the event.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod access;
mod actors;
mod audit;
mod cards;
mod dead_letter_cascade;
mod dead_letters;
mod delivery;
mod deployment;
mod entitlement;
mod entitlement_dates;
mod entitlement_denials;
mod entitlement_early_end;
mod entitlement_policy;
mod entries;
mod erasure;
mod inbox_batches;
mod inbox_recovery;
mod ldap_security;
mod locking;
mod metrics;
mod nats_identities;
mod personal_data;
mod publication;
mod python_client;
mod rebuild;
mod role_matrix;
mod startup;
mod tracing;
