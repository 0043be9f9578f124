//! What `hlctl` does beyond one call and one print: the cohort import (reading the
//! file, sending it in chunks, accounting for every row) and the generator of test
//! cohorts. `main.rs` wires these to the command line and the gRPC clients.

pub mod csv_rows;
pub mod generate;
pub mod import;
