//! The audit query of intake: what happened to one learner or one agreement, from
//! the audit trail, in words that carry no personal data (the fields that changed,
//! never their values), because the dosi reads them.

use hosted_contracts::v1;
use hosted_platform::{
    audit::{self, AuditError, SubjectKind},
    clock::wire_time,
};
use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

pub const SERVICE: &str = "intake";

#[derive(Debug, sqlx::FromRow)]
struct Row {
    at: OffsetDateTime,
    actor: String,
    action: String,
    learner_id: Option<Uuid>,
    stay_id: Option<Uuid>,
    agreement_id: Option<Uuid>,
    reason: Option<String>,
    changes: Value,
    event_id: Option<Uuid>,
}

/// One learner's entries, oldest first.
pub async fn of_learner(
    pool: &PgPool,
    request: &v1::ListAuditEntriesRequest,
) -> Result<Vec<v1::AuditEntry>, AuditError> {
    let learner_id = audit::required_id(SubjectKind::Learner, &request.learner_id)?;
    list(pool, "learner_id", learner_id).await
}

/// One agreement's entries (its stays' included), oldest first.
pub async fn of_agreement(
    pool: &PgPool,
    request: &v1::ListAgreementAuditEntriesRequest,
) -> Result<Vec<v1::AuditEntry>, AuditError> {
    let agreement_id = audit::required_id(SubjectKind::Agreement, &request.agreement_id)?;
    list(pool, "agreement_id", agreement_id).await
}

async fn list(pool: &PgPool, column: &str, id: Uuid) -> Result<Vec<v1::AuditEntry>, AuditError> {
    let sql = format!(
        "SELECT at, actor, action, learner_id, stay_id, agreement_id, reason, changes, event_id
         FROM audit_trail WHERE {column} = $1 ORDER BY at, id"
    );
    let rows: Vec<Row> = sqlx::query_as(&sql).bind(id).fetch_all(pool).await?;
    Ok(rows.into_iter().map(entry).collect())
}

fn entry(row: Row) -> v1::AuditEntry {
    v1::AuditEntry {
        occurred_at: Some(wire_time(row.at)),
        service: SERVICE.to_owned(),
        actor: row.actor,
        detail: detail(&row.action, row.stay_id, &row.changes),
        action: row.action,
        reason: row.reason.unwrap_or_default(),
        cause_event_id: String::new(),
        event_id: audit::id_text(row.event_id),
        learner_id: audit::id_text(row.learner_id),
        agreement_id: audit::id_text(row.agreement_id),
        card_id: String::new(),
    }
}

/// The change in words: the stay it concerns and the names of the fields that changed
/// (`{"field": {"from", "to"}}`), never the values.
fn detail(action: &str, stay_id: Option<Uuid>, changes: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(stay_id) = stay_id {
        parts.push(format!("stay {stay_id}"));
    }
    let changed: Vec<&str> = changes
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .filter(|(_, value)| value.get("from").is_some() || value.get("to").is_some())
                .map(|(field, _)| field.as_str())
                .collect()
        })
        .unwrap_or_default();
    if !changed.is_empty() {
        parts.push(format!("changed: {}", changed.join(", ")));
    } else if action.ends_with(".registered") || action.ends_with(".created") {
        parts.push("created".to_owned());
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_names_its_fields_never_their_values() {
        let changes = serde_json::json!({
            "family_name": {"from": "Durand", "to": "Martin"},
            "birth_date": {"from": "2000-01-01", "to": "2000-01-02"},
        });
        let text = detail("person.amended", None, &changes);
        assert_eq!(text, "changed: birth_date, family_name");
        assert!(!text.contains("Durand") && !text.contains("2000"));
        let created = detail(
            "stay.registered",
            Some(Uuid::nil()),
            &serde_json::json!({"population": "X", "family_name": "Durand"}),
        );
        assert!(!created.contains("Durand"), "{created}");
        assert!(created.ends_with("created"), "{created}");
    }
}
