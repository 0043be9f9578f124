//! The identity rules that intake, directory and hlctl share, so that they can never
//! drift apart: how names are folded and transliterated, when two registrations are
//! the same person or possibly the same, how logins are made, what a UAI is.
//!
//! Pure functions over plain types: no I/O.

pub mod logins;
pub mod matching;
pub mod names;
pub mod transliteration;
pub mod uai;

pub use matching::{Identity, Likeness, NearReason};
