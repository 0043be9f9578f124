//! What entitlement erases after a person's erasure has committed: the messages of its
//! own stream about them (grants events carry the login; dead letters carry intake's
//! events whole). The inbox transaction that applies `person.erased` deletes the
//! projection, scrubs the outbox and leaves a tombstone in `erased_learners`; this
//! task takes the tombstones whose stream is not erased yet and erases it, retrying
//! until it is done, so that a crash between the two loses nothing.

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

use crate::store;

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

/// Erases the stream messages of erased learners.
#[derive(Debug)]
pub struct StreamEraser {
    pub pool: PgPool,
    pub jetstream: JetStream,
    /// Entitlement's stream.
    pub stream: String,
    pub signal: ErasureSignal,
}

impl StreamEraser {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new();
        loop {
            let wait = match self.erase_batch().await {
                Ok(erased) if erased as i64 == BATCH => Duration::ZERO,
                Ok(_) => {
                    backoff.reset();
                    POLL
                }
                Err(error) => {
                    let wait = backoff.next_delay();
                    if backoff.should_log() {
                        tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "erased learners' stream messages not erased yet");
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

    /// Erases the stream messages of one batch of erased learners; returns how many
    /// learners it served.
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
