//! The audit trail: who changed what, when and why.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// One audited change.
#[derive(Debug, Default)]
pub struct AuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub learner_id: Option<Uuid>,
    pub stay_id: Option<Uuid>,
    pub agreement_id: Option<Uuid>,
    pub reason: Option<&'a str>,
    /// `{"field": {"from": …, "to": …}}`, or the created record.
    pub changes: Value,
}

pub async fn record(conn: &mut PgConnection, entry: AuditEntry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_trail (actor, action, learner_id, stay_id, agreement_id, reason, changes)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.learner_id)
    .bind(entry.stay_id)
    .bind(entry.agreement_id)
    .bind(entry.reason)
    .bind(sqlx::types::Json(entry.changes))
    .execute(conn)
    .await?;
    Ok(())
}

/// A `{"from", "to"}` pair for the changes of an audit entry.
pub fn change(from: impl Into<Value>, to: impl Into<Value>) -> Value {
    serde_json::json!({ "from": from.into(), "to": to.into() })
}

/// Adds `field` to an amendment's changes when its value differs.
pub fn note_change(
    changes: &mut serde_json::Map<String, Value>,
    field: &str,
    from: impl Into<Value>,
    to: impl Into<Value>,
) {
    let (from, to) = (from.into(), to.into());
    if from != to {
        changes.insert(field.to_owned(), change(from, to));
    }
}

/// One audit entry per (learner, stay, changes), in one statement.
pub async fn record_many(
    conn: &mut PgConnection,
    actor: &str,
    action: &str,
    entries: impl Iterator<Item = (Uuid, Uuid, Value)>,
) -> Result<(), sqlx::Error> {
    let mut learner_ids = Vec::new();
    let mut stay_ids = Vec::new();
    let mut changes = Vec::new();
    for (learner_id, stay_id, change) in entries {
        learner_ids.push(learner_id);
        stay_ids.push(stay_id);
        changes.push(sqlx::types::Json(change));
    }
    sqlx::query(
        "INSERT INTO audit_trail (actor, action, learner_id, stay_id, changes)
         SELECT $1, $2, l, s, c FROM unnest($3::uuid[], $4::uuid[], $5::jsonb[]) AS u(l, s, c)",
    )
    .bind(actor)
    .bind(action)
    .bind(&learner_ids)
    .bind(&stay_ids)
    .bind(&changes)
    .execute(conn)
    .await?;
    Ok(())
}
