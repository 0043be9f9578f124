//! The rules of registration, as pure functions over plain types: no tonic, no sqlx.

pub mod admission;
pub mod agreement;
pub mod amendment;
pub mod names;
pub mod registration;
pub mod resources;
pub mod stay;
pub mod unit;

#[cfg(test)]
mod properties;

pub use registration::{NewPerson, NewStay, Population, Registration};
pub use unit::Unit;
