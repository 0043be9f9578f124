//! The card office's rules, without I/O: the lifecycle and the numbers.

pub mod lifecycle;
pub mod numbers;
