//! What cards erases of a person once intake has erased them: in the inbox
//! transaction that applies `person.erased` ([`crate::events::PeopleHandler`]) what is
//! still live stops as at the end of a grant, the identity leaves every table
//! ([`crate::store::erase_identity`]), the outbox is scrubbed and a tombstone is left
//! in `erased_learners`; after the commit, `hosted_platform::erasure::StreamEraser`
//! erases the messages of cards' own stream about them (card events carry the login and
//! the ESI; dead letters carry intake's and entitlement's events whole), retrying until
//! it is done, so that a crash between the two loses nothing. Here: which card
//! reasons name no one and stay.

/// The reasons the service itself writes: with the card office's fixed lists
/// ([`fixed_reasons`]) they name no one, and stay on an erased learner's cards. Any
/// other reason was typed by the card office, and goes.
const SERVICE_REASONS: [&str; 7] = [
    crate::domain::lifecycle::EXPIRED_REASON,
    "the lock is lifted",
    "the smart-card grant is back",
    "the smart-card grant is in force",
    "the smart-card grant",
    "print batch",
    ERASED_REASON,
];

/// What a typed reason of an erased learner's card becomes.
pub const ERASED_REASON: &str = "erased";

/// Every reason that names no one (see [`SERVICE_REASONS`]).
pub fn fixed_reasons() -> Vec<&'static str> {
    use crate::domain::lifecycle::{DISABLE_REASONS, REPLACE_REASONS};
    DISABLE_REASONS
        .iter()
        .chain(&REPLACE_REASONS)
        .chain(&SERVICE_REASONS)
        .copied()
        .collect()
}
