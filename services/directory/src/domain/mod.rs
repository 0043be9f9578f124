//! What an account looks like in the directory, computed from the projection: pure
//! functions, unit-tested here, with no LDAP client and no database.

pub mod entry;
pub mod escape;
pub mod supann;

#[cfg(test)]
mod properties;
