//! A person's right of access (GDPR article 15) and portability (article 20), as
//! intake answers it: every record it holds about the person, read in one snapshot,
//! the export itself audited.

use hosted_contracts::v1;
use hosted_platform::personal_data::{self, Related};
use uuid::Uuid;

use crate::{
    Intake,
    audit::SERVICE,
    error::IntakeError,
    store::audit::{self, AuditEntry},
};

/// What belongs to the person through their stays rather than by their learner id.
const RELATED: &[Related] = &[Related {
    name: "payments",
    query: "SELECT to_jsonb(p) FROM payments p JOIN stays s USING (stay_id)
            WHERE s.learner_id = $1",
}];

impl Intake {
    /// Everything intake holds about the person, the export audited first (so that it
    /// is in the document too): a stub only, for an erased person.
    pub async fn export_personal_data(
        &self,
        learner_id: Uuid,
        actor: &str,
    ) -> Result<v1::PersonalData, IntakeError> {
        let mut tx = self.pool.begin().await?;
        let known: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM persons WHERE learner_id = $1)")
                .bind(learner_id)
                .fetch_one(&mut *tx)
                .await?;
        if !known {
            return Err(IntakeError::NotFound("learner".to_owned()));
        }
        audit::record(
            &mut tx,
            AuditEntry {
                actor,
                action: "person.exported",
                learner_id: Some(learner_id),
                changes: serde_json::json!({}),
                ..AuditEntry::default()
            },
        )
        .await?;
        tx.commit().await?;
        let records = personal_data::records(&self.pool, learner_id, RELATED).await?;
        tracing::info!(%learner_id, actor, "personal data exported");
        Ok(personal_data::to_wire(SERVICE, records))
    }
}
