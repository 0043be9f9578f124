//! What `hlctl` does beyond parsing its command line: the cohort import (reading the
//! file, sending it in chunks, accounting for every row), the generator of test
//! cohorts, and the everyday intake operations (learners, stays, agreements,
//! payments, counts). `main.rs` wires these to the command line and the gRPC clients.

pub mod agreements;
pub mod csv_rows;
pub mod generate;
pub mod import;
pub mod learners;
pub mod payments;
pub mod rpc;
pub mod stats;
pub mod stays;
pub mod values;
