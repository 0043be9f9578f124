//! What directory erases of a person once intake has erased them and the inbox
//! transaction that applies `person.erased` has committed (it deleted the account,
//! scrubbed the outbox and left a tombstone naming the entry): the LDAP entry first,
//! then the messages of directory's own stream about them (account events carry the
//! login and the DN; dead letters carry the other services' events whole). Each step
//! is retried until it is done and recorded in the tombstone, so that a crash between
//! them loses nothing. No `account.published` announces the removal: intake's
//! `person.erased` (ids only) already tells whoever follows accounts, and an event
//! naming the entry would name the person.

use std::sync::Arc;

use sqlx::PgPool;

use crate::{ldap::LdapDirectory, store};

/// How many erased learners' entries one pass removes.
const BATCH: i64 = 100;

/// Removes the entries of erased learners; stops at the first that fails (LDAP away,
/// or a refusal: said by learner id only, the DN names the person). Runs before each
/// batch of `hosted_platform::erasure::StreamEraser`, whose tombstones are due only
/// once their entry is removed (`entry_dn IS NULL`, [`ENTRY_REMOVED`]).
pub async fn remove_entries(pool: &PgPool, ldap: &Arc<LdapDirectory>) -> Result<(), String> {
    let entries = store::entries_to_remove(pool, BATCH)
        .await
        .map_err(|error| format!("reading the entries to remove: {error}"))?;
    for (learner_id, dn) in &entries {
        if let Err(error) = ldap.delete(dn).await {
            return Err(format!("removing the entry of {learner_id}: {error}"));
        }
        store::entry_removed(pool, *learner_id)
            .await
            .map_err(|error| format!("recording the entry's removal: {error}"))?;
        tracing::info!(%learner_id, "erased learner's entry removed");
    }
    Ok(())
}

/// The condition a tombstone meets before its stream messages are erased: its entry is
/// removed (and its DN, which names the person, forgotten).
pub const ENTRY_REMOVED: &str = "entry_dn IS NULL";
