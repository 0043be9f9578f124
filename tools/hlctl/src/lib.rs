//! What `hlctl` does beyond parsing its command line: the cohort import (reading the
//! file, sending it in chunks, accounting for every row), the generator of test
//! cohorts, the everyday intake operations (learners, stays, agreements, payments,
//! counts, the unit catalogue), entitlement's (checks, grants, explanations, the policy), the card
//! office's (cards, print batches, the e-purse exports) and the audit across services. `main.rs`
//! wires these to the command line and the gRPC clients.

pub mod agreements;
pub mod audit;
pub mod cards;
pub mod csv_rows;
pub mod entitlements;
pub mod generate;
pub mod import;
pub mod learners;
pub mod payments;
pub mod persons;
pub mod rebuild;
pub mod rpc;
pub mod stats;
pub mod stays;
pub mod units;
pub mod values;
