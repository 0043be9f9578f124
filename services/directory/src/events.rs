//! What directory consumes: intake's learner facts, each carrying the learner's whole
//! state, applied to the projection with "newest version wins".

use std::sync::Arc;

use hosted_contracts::{
    prost::Message,
    subjects::{self, Namespace},
    v1,
};
use hosted_platform::inbox::{Delivery, HandleError, Handler};
use sqlx::PgConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::store;

/// Durable consumer of intake's stream.
pub const INTAKE_CONSUMER: &str = "directory-intake";

/// Applies learner facts to the projection and wakes the publisher.
#[derive(Debug, Clone)]
pub struct ProjectionHandler {
    pub namespace: Namespace,
    pub publisher: Arc<Notify>,
}

impl Handler for ProjectionHandler {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        delivery: &Delivery,
    ) -> Result<(), HandleError> {
        let Some(fact) = self
            .namespace
            .fact_of(&delivery.subject, &subjects::intake::LEARNER_FACTS)
        else {
            // Facts this version does not use (agreements, payments) are acknowledged.
            tracing::debug!(subject = %delivery.subject, "fact not used by the directory");
            return Ok(());
        };
        let event = v1::LearnerEvent::decode(delivery.payload.clone()).map_err(|error| {
            HandleError::Permanent(format!("{fact}: undecodable LearnerEvent: {error}"))
        })?;
        let learner = event
            .learner
            .ok_or_else(|| HandleError::Permanent(format!("{fact}: event without learner")))?;
        let person = learner
            .person
            .as_ref()
            .ok_or_else(|| HandleError::Permanent(format!("{fact}: learner without person")))?;
        let learner_id = Uuid::parse_str(&person.learner_id)
            .map_err(|_| HandleError::Permanent(format!("{fact}: bad learner id")))?;
        if person.login.is_empty() {
            return Err(HandleError::Permanent(format!(
                "{fact}: learner {learner_id} without login"
            )));
        }
        let changed = store::apply(
            conn,
            learner_id,
            &person.login,
            learner.version,
            &learner.encode_to_vec(),
            &delivery.trace,
        )
        .await?;
        tracing::debug!(%learner_id, version = learner.version, changed, "projection updated");
        Ok(())
    }

    fn committed(&self) {
        self.publisher.notify_one();
    }
}
