//! The rules of entitlement, as pure functions over plain types: no tonic, no sqlx.

pub mod grants;
pub mod impact;
pub mod policy;
