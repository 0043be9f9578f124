//! The audit query of cards: every step of one card, or of a learner's cards, from
//! the card transitions (who, why, and the grants event behind a step that followed
//! one).

use hosted_contracts::v1;
use hosted_platform::{
    audit::{self, AuditError, Subject, SubjectKind},
    clock::wire_time,
};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

pub const SERVICE: &str = "cards";

#[derive(Debug, sqlx::FromRow)]
struct Row {
    at: OffsetDateTime,
    card_id: Uuid,
    learner_id: Uuid,
    card_number: String,
    from_state: Option<String>,
    to_state: String,
    reason: String,
    actor: String,
    cause_event_id: Option<Uuid>,
}

/// The steps of the card or of the learner's cards the request names, oldest first.
pub async fn list(
    pool: &PgPool,
    request: &v1::CardsServiceListAuditEntriesRequest,
) -> Result<v1::CardsServiceListAuditEntriesResponse, AuditError> {
    let subject = audit::subject(&[
        (SubjectKind::Learner, &request.learner_id),
        (SubjectKind::Card, &request.card_id),
    ])?;
    let (column, id) = match subject {
        Subject::Card(id) => ("c.card_id", id),
        _ => ("c.learner_id", subject_id(subject)),
    };
    let sql = format!(
        "SELECT t.at, t.card_id, c.learner_id, c.card_number, t.from_state, t.to_state,
                t.reason, t.actor, t.cause_event_id
         FROM card_transitions t JOIN cards c USING (card_id)
         WHERE {column} = $1 ORDER BY t.at, t.id"
    );
    let rows: Vec<Row> = sqlx::query_as(&sql).bind(id).fetch_all(pool).await?;
    Ok(v1::CardsServiceListAuditEntriesResponse {
        entries: rows.into_iter().map(entry).collect(),
    })
}

fn subject_id(subject: Subject) -> Uuid {
    match subject {
        Subject::Learner(id) | Subject::Agreement(id) | Subject::Card(id) => id,
    }
}

fn entry(row: Row) -> v1::AuditEntry {
    let detail = match &row.from_state {
        Some(from) => format!("card {}: {from} → {}", row.card_number, row.to_state),
        None => format!("card {}: new, {}", row.card_number, row.to_state),
    };
    v1::AuditEntry {
        occurred_at: Some(wire_time(row.at)),
        service: SERVICE.to_owned(),
        actor: row.actor,
        action: format!("card.{}", row.to_state),
        detail,
        reason: row.reason,
        cause_event_id: audit::id_text(row.cause_event_id),
        event_id: String::new(),
        learner_id: row.learner_id.to_string(),
        agreement_id: String::new(),
        card_id: row.card_id.to_string(),
    }
}
