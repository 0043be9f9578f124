//! The audit query of directory: the LDAP writes of one learner's account, recorded
//! with the `account.published` event that announced each.

use hosted_contracts::v1;
use hosted_platform::{
    audit::{self, AuditError, SubjectKind},
    clock::wire_time,
};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ldap::Written;

pub const SERVICE: &str = "directory";

/// Records one announced write, in the transaction that announces it.
pub async fn record_write(
    conn: &mut PgConnection,
    learner_id: Uuid,
    written: Written,
    account_state: &str,
    learner_version: i64,
    event_id: Uuid,
    actor: &str,
) -> Result<(), sqlx::Error> {
    let (written, attributes) = match written {
        Written::Added => ("added", 0),
        Written::Modified { attributes } => ("modified", attributes as i64),
        Written::Deleted => ("deleted", 0),
        Written::Unchanged => return Ok(()),
    };
    sqlx::query(
        "INSERT INTO account_writes
             (learner_id, written, attributes, account_state, learner_version, event_id, actor)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(learner_id)
    .bind(written)
    .bind(attributes)
    .bind(account_state)
    .bind(learner_version)
    .bind(event_id)
    .bind(actor)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    at: OffsetDateTime,
    learner_id: Uuid,
    written: String,
    attributes: i64,
    account_state: String,
    learner_version: i64,
    event_id: Uuid,
    actor: String,
}

/// One learner's account writes, oldest first.
pub async fn list(
    pool: &PgPool,
    request: &v1::DirectoryServiceListAuditEntriesRequest,
) -> Result<v1::DirectoryServiceListAuditEntriesResponse, AuditError> {
    let learner_id = audit::required_id(SubjectKind::Learner, &request.learner_id)?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT at, learner_id, written, attributes, account_state, learner_version, event_id,
                actor
         FROM account_writes WHERE learner_id = $1 ORDER BY at, id",
    )
    .bind(learner_id)
    .fetch_all(pool)
    .await?;
    Ok(v1::DirectoryServiceListAuditEntriesResponse {
        entries: rows.into_iter().map(entry).collect(),
    })
}

fn entry(row: Row) -> v1::AuditEntry {
    let detail = match row.written.as_str() {
        "deleted" => "LDAP entry removed".to_owned(),
        "modified" => format!(
            "LDAP entry modified ({} attribute(s)), account {}",
            row.attributes, row.account_state
        ),
        _ => format!("LDAP entry added, account {}", row.account_state),
    };
    v1::AuditEntry {
        occurred_at: Some(wire_time(row.at)),
        service: SERVICE.to_owned(),
        // Who caused the account's change, as the event that changed it said; a write
        // recorded before actors were kept names the service.
        actor: if row.actor.is_empty() {
            SERVICE.to_owned()
        } else {
            row.actor
        },
        action: format!("ldap.{}", row.written),
        detail,
        reason: format!("learner version {}", row.learner_version),
        cause_event_id: String::new(),
        event_id: row.event_id.to_string(),
        learner_id: row.learner_id.to_string(),
        agreement_id: String::new(),
        card_id: String::new(),
    }
}
