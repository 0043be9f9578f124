//! The rules of registration, as pure functions over plain types: no tonic, no sqlx.

pub mod names;
pub mod registration;

pub use registration::{NewPerson, NewStay, Population, Registration};
