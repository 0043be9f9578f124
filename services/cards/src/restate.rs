//! Restatement: cards' current state published again on `hosted.cards.card.restated`,
//! each at its current version, so that a consumer that lost its database (or a
//! stream that was lost) gets them back. Consumers apply a restated card like
//! `card.changed`: newer than what they hold, or not held at all; so a restatement
//! changes nothing where nothing was lost. A page of cards at a time.

use std::time::Duration;

use hosted_contracts::subjects;
use hosted_platform::outbox;
use uuid::Uuid;

use crate::{
    office::{Office, OfficeError},
    store,
};

/// Cards per page when the caller does not say, and at most.
pub const DEFAULT_PAGE: i64 = 1_000;
pub const MAX_PAGE: i64 = 5_000;

/// How long a page waits for its events to leave the outbox before it answers.
const PUBLISH_WAIT: Duration = Duration::from_secs(30);

/// Which cards a page restates.
#[derive(Debug, Clone, Copy)]
pub enum Selection {
    /// Every card of one learner.
    Learner(Uuid),
    /// Every card whose id is after this one (nil: from the first).
    After(Uuid),
}

/// What one page restated.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub cards: i64,
    pub next_after: Option<Uuid>,
    pub published: bool,
}

impl Office {
    /// Restates one page of cards; the events name `actor`, the caller who asked.
    pub async fn restate(
        &self,
        selection: Selection,
        limit: i64,
        actor: &str,
    ) -> Result<Page, OfficeError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut tx = self.pool.begin().await?;
        let (cards, next_after) = match selection {
            Selection::Learner(learner_id) => (store::cards_of(&mut tx, learner_id).await?, None),
            Selection::After(after) => {
                let cards = store::cards_after(&mut tx, after, limit).await?;
                let next = (cards.len() as i64 == limit)
                    .then(|| cards.last().map(|card| card.card_id))
                    .flatten();
                (cards, next)
            }
        };
        let outgoing: Vec<_> = cards
            .iter()
            .map(|card| self.card_event(card, actor, subjects::cards::CARD_RESTATED))
            .collect();
        outbox::enqueue(&mut tx, &outgoing).await?;
        tx.commit().await?;
        self.outbox.notify();
        let event_ids: Vec<Uuid> = outgoing.iter().map(|event| event.event_id).collect();
        let page = Page {
            cards: outgoing.len() as i64,
            next_after,
            published: outbox::wait_published(&self.pool, &event_ids, PUBLISH_WAIT).await?,
        };
        tracing::info!(
            cards = page.cards,
            published = page.published,
            "cards restated"
        );
        Ok(page)
    }
}
