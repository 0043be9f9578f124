//! Restatement: learners' current grants published again on
//! `hosted.entitlement.grants.restated`, each at its current `grants_version`, as
//! stored (nothing is recomputed), so that a consumer that lost its database (or a
//! stream that was lost) gets them back. Consumers apply a restated event like
//! `grants.changed`: newer than what they hold, or not held at all; so a restatement
//! changes nothing where nothing was lost. A page of learners at a time.

use std::time::Duration;

use hosted_contracts::{prost::Message, subjects, v1};
use hosted_platform::{
    clock::{format_day, wire_instant},
    outbox::{self, OutboxEvent},
};
use uuid::Uuid;

use crate::{Entitlement, events::grant_message, recompute::GRANTS_EVENT_TYPE, store};

/// Learners per page when the caller does not say, and at most.
pub const DEFAULT_PAGE: i64 = 1_000;
pub const MAX_PAGE: i64 = 5_000;

/// How long a page waits for its events to leave the outbox before it answers.
const PUBLISH_WAIT: Duration = Duration::from_secs(30);

/// Which learners a page restates.
#[derive(Debug, Clone, Copy)]
pub enum Selection {
    One(Uuid),
    /// Every learner whose id is after this one (nil: from the first).
    After(Uuid),
}

/// What one page restated.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub learners: i64,
    pub next_after: Option<Uuid>,
    pub published: bool,
}

impl Entitlement {
    /// Restates one page of learners' grants. A learner whose grants were never
    /// published (none, ever) is passed over, and so is one whose stored dates cannot
    /// be read (named in a warning). The events name `actor`, the caller who asked.
    pub async fn restate(
        &self,
        selection: Selection,
        limit: i64,
        actor: &str,
    ) -> Result<Page, sqlx::Error> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut tx = self.pool.begin().await?;
        let (ids, next_after) = match selection {
            Selection::One(learner_id) => (vec![learner_id], None),
            Selection::After(after) => {
                let page = store::learners_page(&mut tx, after, limit).await?;
                let next_after = (page.len() as i64 == limit)
                    .then(|| page.last().map(|(id, _, _)| *id))
                    .flatten();
                let mut readable = Vec::with_capacity(page.len());
                for (learner_id, _, unreadable) in page {
                    if unreadable {
                        tracing::warn!(
                            %learner_id,
                            "stored dates out of range: grants not restated"
                        );
                    } else {
                        readable.push(learner_id);
                    }
                }
                (readable, next_after)
            }
        };
        let published = store::published_of(&mut tx, &ids).await?;
        let states = store::states_of(&mut tx, Some(&ids)).await?;
        // The learners' locks, which their stays carry.
        let stays = store::stay_facts_of(&mut tx, Some(&ids)).await?;
        let policy_version = self.policy.get().version.clone();
        let effective_on = format_day(self.clock.today());
        let occurred_at = wire_instant(self.clock.now());
        let subject = self
            .recomputer
            .namespace
            .subject(subjects::entitlement::GRANTS_RESTATED);
        let mut outgoing = Vec::with_capacity(published.len());
        for learner in &published {
            let Some(state) = states.get(&learner.learner_id) else {
                continue;
            };
            let event_id = Uuid::now_v7();
            let event = v1::GrantsEvent {
                meta: Some(v1::EventMeta {
                    event_id: event_id.to_string(),
                    occurred_at: Some(occurred_at),
                    learner_id: learner.learner_id.to_string(),
                    learner_version: learner.version,
                    actor: actor.to_owned(),
                }),
                grants: state
                    .grants
                    .iter()
                    .map(|grant| grant_message(grant, &self.clock))
                    .collect(),
                policy_version: policy_version.clone(),
                grants_version: learner.grants_version,
                login: learner.login.clone(),
                effective_on: effective_on.clone(),
                in_force: state.in_force.clone(),
                lock: stays
                    .get(&learner.learner_id)
                    .and_then(|stays| stays.iter().find_map(|stay| stay.lock.as_ref()))
                    .map(crate::events::lock_message),
            };
            outgoing.push(OutboxEvent {
                event_id,
                subject: subject.clone(),
                event_type: GRANTS_EVENT_TYPE,
                payload: event.encode_to_vec(),
                trace: None,
            });
        }
        outbox::enqueue(&mut tx, &outgoing).await?;
        tx.commit().await?;
        self.recomputer.outbox.notify();
        let event_ids: Vec<Uuid> = outgoing.iter().map(|event| event.event_id).collect();
        let page = Page {
            learners: outgoing.len() as i64,
            next_after,
            published: outbox::wait_published(&self.pool, &event_ids, PUBLISH_WAIT).await?,
        };
        tracing::info!(
            learners = page.learners,
            published = page.published,
            "grants restated"
        );
        Ok(page)
    }
}
