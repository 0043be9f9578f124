//! The unit catalogue's operations: listing it for the checks of a stay, and saving a
//! unit (one transaction that checks, saves, audits and enqueues its event).

use std::collections::HashMap;

use hosted_contracts::v1;
use hosted_platform::outbox;
use serde_json::json;

use crate::{
    Intake,
    domain::Unit,
    error::IntakeError,
    events,
    store::{
        audit::{self, AuditEntry},
        units,
    },
};

impl Intake {
    /// The whole catalogue by code, for checking many stays at once.
    pub(crate) async fn unit_catalogue(&self) -> Result<HashMap<String, Unit>, IntakeError> {
        Ok(units::list(&self.pool)
            .await?
            .into_iter()
            .map(|unit| (unit.code.clone(), unit))
            .collect())
    }

    /// The catalogue's entry for a code, as [`crate::domain::unit::normalise_code`] gives it.
    pub(crate) async fn unit(&self, code: &str) -> Result<Option<Unit>, IntakeError> {
        let mut conn = self.pool.acquire().await?;
        Ok(units::get(&mut conn, code).await?)
    }

    pub(crate) async fn save_unit(
        &self,
        unit: Unit,
        reason: &str,
        actor: &str,
    ) -> Result<(v1::Unit, bool), IntakeError> {
        crate::domain::with_reason(unit.check(), reason)?;
        let mut tx = self.pool.begin().await?;
        let before = units::get(&mut tx, &unit.code).await?;
        let created = units::save(&mut tx, &unit).await?;
        let message = events::unit_message(&unit);
        audit::record(
            &mut tx,
            AuditEntry {
                actor,
                action: "unit.saved",
                reason: Some(reason),
                changes: json!({
                    "code": unit.code,
                    "before": before.map(|before| json!({ "kind": before.kind, "label": before.label })),
                    "after": { "kind": unit.kind, "label": unit.label },
                }),
                ..AuditEntry::default()
            },
        )
        .await?;
        outbox::enqueue(
            &mut tx,
            &[events::unit_event(
                &self.namespace,
                message.clone(),
                reason,
                actor,
            )],
        )
        .await?;
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(unit = %unit.code, created, "unit saved");
        Ok((message, created))
    }
}
