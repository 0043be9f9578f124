//! Restatement: learners' and agreements' current state published again, each at its
//! current version, so that a consumer that lost its database (or a stream that was
//! lost) gets everything back. Consumers apply a restated fact like the ordinary one:
//! newer than what they hold, or not held at all; so a restatement changes nothing
//! where nothing was lost. A page at a time: a hundred thousand learners are never
//! loaded at once.

use std::time::Duration;

use hosted_contracts::subjects::intake;
use hosted_platform::outbox::{self, OutboxEvent};
use uuid::Uuid;

use crate::{
    Intake,
    error::IntakeError,
    events,
    store::{self, agreements},
};

/// Learners per page when the caller does not say, and at most.
pub const DEFAULT_PAGE: i64 = 1_000;
pub const MAX_PAGE: i64 = 5_000;

/// How long a page waits for its events to leave the outbox before it answers.
const PUBLISH_WAIT: Duration = Duration::from_secs(30);

/// Which learners a page restates.
#[derive(Debug, Clone, Copy)]
pub enum Selection {
    /// One learner.
    One(Uuid),
    /// Every learner whose id is after this one (nil: from the first), and, on the
    /// first page, every agreement.
    After(Uuid),
}

/// What one page restated.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub learners: i64,
    pub agreements: i64,
    /// Where the next page starts, if there is one.
    pub next_after: Option<Uuid>,
    /// Whether the page's events had been published when it answered.
    pub published: bool,
}

impl Intake {
    /// Restates one page of learners (with every agreement first, on the first page
    /// of a whole restatement). The events name `actor`, the caller who asked.
    pub async fn restate(
        &self,
        selection: Selection,
        limit: i64,
        actor: &str,
    ) -> Result<Page, IntakeError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let today = self.today();
        let mut tx = self.pool.begin().await?;
        let mut outgoing: Vec<OutboxEvent> = Vec::new();
        let mut page = Page::default();
        if matches!(selection, Selection::After(after) if after.is_nil()) {
            let mut after = None;
            loop {
                let rows = agreements::list(&mut tx, None, None, after, DEFAULT_PAGE).await?;
                let Some(last) = rows.last() else { break };
                after = Some(last.agreement_id);
                for row in &rows {
                    outgoing.push(events::agreement_event(
                        &self.namespace,
                        intake::AGREEMENT_RESTATED,
                        events::agreement_message(row),
                        "",
                        actor,
                    ));
                }
                page.agreements += rows.len() as i64;
                if (rows.len() as i64) < DEFAULT_PAGE {
                    break;
                }
            }
        }
        let ids = match selection {
            Selection::One(learner_id) => vec![learner_id],
            Selection::After(after) => store::learner_ids_after(&mut tx, after, limit).await?,
        };
        let records = store::learners(&mut tx, &ids).await?;
        if matches!(selection, Selection::One(_)) && records.is_empty() {
            return Err(IntakeError::NotFound("learner".to_owned()));
        }
        for learner_id in &ids {
            let Some(record) = records.get(learner_id) else {
                continue;
            };
            // An erased learner is restated as erased (ids only): a consumer restored
            // from an old backup erases its copy again, none gets an identity back.
            if record.person.erased_at.is_some() {
                outgoing.push(events::person_erased_event(
                    &self.namespace,
                    record.person.learner_id,
                    record.person.version,
                    record
                        .person
                        .erasure_basis
                        .as_deref()
                        .unwrap_or(crate::erasure::BASIS_REQUEST),
                    actor,
                ));
                page.learners += 1;
                continue;
            }
            outgoing.push(events::learner_event(
                &self.namespace,
                intake::LEARNER_RESTATED,
                events::learner_message(record, today),
                None,
                "",
                actor,
            ));
            page.learners += 1;
        }
        if let Selection::After(_) = selection
            && ids.len() as i64 == limit
        {
            page.next_after = ids.last().copied();
        }
        outbox::enqueue(&mut tx, &outgoing).await?;
        tx.commit().await?;
        self.outbox.notify();
        let event_ids: Vec<Uuid> = outgoing.iter().map(|event| event.event_id).collect();
        page.published = outbox::wait_published(&self.pool, &event_ids, PUBLISH_WAIT).await?;
        tracing::info!(
            learners = page.learners,
            agreements = page.agreements,
            published = page.published,
            "learners restated"
        );
        Ok(page)
    }
}
