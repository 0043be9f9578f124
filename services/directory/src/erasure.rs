//! What directory erases of a person once intake has erased them and the inbox
//! transaction that applies `person.erased` has committed (it deleted the account,
//! scrubbed the outbox and left a tombstone naming the entry): the LDAP entry first,
//! then the messages of directory's own stream about them (account events carry the
//! login and the DN; dead letters carry the other services' events whole). Each step
//! is retried until it is done and recorded in the tombstone, so that a crash between
//! them loses nothing. No `account.published` announces the removal: intake's
//! `person.erased` (ids only) already tells whoever follows accounts, and an event
//! naming the entry would name the person.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use hosted_platform::{erasure, nats::JetStream, outbox::Backoff};
use sqlx::PgPool;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::{ldap::LdapDirectory, store};

/// How many erased learners one walk of the stream serves.
const BATCH: i64 = 100;

/// How often the tombstones are looked at when nothing wakes the task (an erasure
/// deferred by an outbox row in flight, another replica's erasure).
const POLL: Duration = Duration::from_secs(30);

/// Wakes the stream eraser once a transaction that erased someone has committed.
#[derive(Debug, Clone, Default)]
pub struct ErasureSignal {
    wake: Arc<Notify>,
    erased: Arc<AtomicBool>,
}

impl ErasureSignal {
    /// Someone was erased in the transaction under way.
    pub fn erased(&self) {
        self.erased.store(true, Ordering::Release);
    }

    /// The transaction committed: the eraser runs if someone was erased in it.
    pub fn committed(&self) {
        if self.erased.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }
}

/// Removes the entries, then erases the stream messages, of erased learners.
#[derive(Debug)]
pub struct Eraser {
    pub pool: PgPool,
    pub ldap: Arc<LdapDirectory>,
    pub jetstream: JetStream,
    /// Directory's stream.
    pub stream: String,
    pub signal: ErasureSignal,
}

impl Eraser {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        loop {
            let removed = self.remove_entries().await;
            let wait = match removed.and(self.erase_batch().await) {
                Ok(erased) if erased as i64 == BATCH => Duration::ZERO,
                Ok(_) => {
                    backoff.reset();
                    POLL
                }
                Err(error) => {
                    let wait = backoff.next_delay();
                    if backoff.should_log() {
                        tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "erased learners' entries or stream messages not erased yet");
                    }
                    wait
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = self.signal.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
        }
        tracing::debug!("stream eraser stopped");
    }

    /// Removes the entries of erased learners; stops at the first that fails (LDAP
    /// away, or a refusal: said by learner id only, the DN names the person).
    async fn remove_entries(&self) -> Result<usize, String> {
        let entries = store::entries_to_remove(&self.pool, BATCH)
            .await
            .map_err(|error| format!("reading the entries to remove: {error}"))?;
        for (learner_id, dn) in &entries {
            if let Err(error) = self.ldap.delete(dn).await {
                return Err(format!("removing the entry of {learner_id}: {error}"));
            }
            store::entry_removed(&self.pool, *learner_id)
                .await
                .map_err(|error| format!("recording the entry's removal: {error}"))?;
            tracing::info!(%learner_id, "erased learner's entry removed");
        }
        Ok(entries.len())
    }

    /// Erases the stream messages of one batch of erased learners whose entry is
    /// removed; returns how many learners it served.
    async fn erase_batch(&self) -> Result<usize, String> {
        let pending: Vec<Uuid> = store::pending_erasures(&self.pool, BATCH)
            .await
            .map_err(|error| format!("reading the erased learners: {error}"))?;
        if pending.is_empty() {
            return Ok(0);
        }
        let learner_ids: HashSet<Uuid> = pending.iter().copied().collect();
        let messages = erasure::erase_stream_messages(&self.jetstream, &self.stream, &learner_ids)
            .await
            .map_err(|error| error.to_string())?;
        store::streams_erased(&self.pool, &pending)
            .await
            .map_err(|error| format!("recording the erasure: {error}"))?;
        tracing::info!(
            learners = pending.len(),
            messages,
            "erased learners' stream messages erased"
        );
        Ok(pending.len())
    }
}
