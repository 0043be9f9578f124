//! The due-time schedule: each learner's next day on which what is in force changes
//! by the calendar alone (a grant starting, or lapsing after its grace) is kept in the
//! database (`learners.next_due`). This task wakes at each local midnight, takes the
//! learners whose day has come (every replica takes its share, SKIP LOCKED) and
//! recomputes them, which publishes `grants.changed` with what is now in force. No
//! periodic scan of every learner.
//!
//! A pass ends when it finds no learner it can take. Learners still due then are held
//! by another replica's pass; should that replica die before its commit, they would
//! wait for the next midnight. So while any learner is still due, the task looks
//! again every [`HELD_ELSEWHERE`].

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::{recompute::Recomputer, store};

/// Learners per transaction.
const BATCH: i64 = 500;

/// How soon a replica looks again at learners still due after its pass, held by
/// another replica's pass (which may die before it commits).
const HELD_ELSEWHERE: Duration = Duration::from_secs(2);

/// Recomputes every learner whose next due day is today or earlier; returns how many
/// were published.
pub async fn run_due(
    pool: &PgPool,
    recomputer: &Recomputer,
) -> Result<u64, crate::recompute::Error> {
    let mut published = 0;
    loop {
        let mut tx = pool.begin().await?;
        let policy = recomputer.policy(&mut tx).await?;
        let (taken, due) = store::due_learners(&mut tx, recomputer.today(), BATCH).await?;
        let facts = store::stay_facts_of(&mut tx, Some(&due)).await?;
        let states = store::states_of(&mut tx, Some(&due)).await?;
        let none = store::LearnerState::default();
        let learners: Vec<_> = facts
            .iter()
            .map(|(learner_id, stays)| {
                (
                    *learner_id,
                    stays.as_slice(),
                    states.get(learner_id).unwrap_or(&none),
                    &store::Cause::Schedule,
                )
            })
            .collect();
        published += recomputer.apply_many(&mut tx, &policy, &learners).await?;
        tx.commit().await?;
        recomputer.outbox.notify();
        if taken < BATCH as usize {
            return Ok(published);
        }
    }
}

/// Runs the schedule until `shutdown` turns true.
pub async fn run(pool: PgPool, recomputer: Recomputer, mut shutdown: watch::Receiver<bool>) {
    let mut day_change = recomputer.clock.day_change();
    let mut failures = 0u32;
    loop {
        let wait = match run_due(&pool, &recomputer).await {
            Ok(published) => {
                if published > 0 {
                    tracing::info!(published, "due grants published");
                }
                failures = 0;
                match store::any_due(&pool, recomputer.today()).await {
                    Ok(true) => {
                        tracing::debug!("learners still due, held by another replica");
                        Some(HELD_ELSEWHERE)
                    }
                    Ok(false) => None,
                    Err(error) => {
                        tracing::warn!(%error, "due-time schedule not checked; looking again");
                        Some(HELD_ELSEWHERE)
                    }
                }
            }
            Err(error) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(%error, failures, "due-time schedule failed; retrying");
                }
                Some(Duration::from_millis(500) * 2u32.saturating_pow(failures.min(7)))
            }
        };
        tokio::select! {
            () = day_change.wait(), if wait.is_none() => {}
            () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
