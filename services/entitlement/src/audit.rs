//! The audit query of entitlement: what happened to one learner's grants, from the
//! grant audit. A change that followed an intake event names that event, and its
//! actor is the caller behind it, carried along the chain (`system` for the calendar).

use hosted_contracts::v1;
use hosted_platform::{
    audit::{self, AuditError, SubjectKind},
    clock::{format_day, wire_time},
};
use sqlx::{PgConnection, PgPool};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

pub const SERVICE: &str = "entitlement";

/// Ties the grant changes this transaction recorded to the grants event each
/// learner's were published in: `(learner_id, event_id)` pairs.
pub async fn note_published(
    conn: &mut PgConnection,
    published: &[(Uuid, Uuid)],
) -> Result<(), sqlx::Error> {
    let learner_ids: Vec<Uuid> = published.iter().map(|(learner, _)| *learner).collect();
    let event_ids: Vec<Uuid> = published.iter().map(|(_, event)| *event).collect();
    sqlx::query(
        "UPDATE grant_audit a SET event_id = u.e
         FROM unnest($1::uuid[], $2::uuid[]) AS u(l, e)
         WHERE a.learner_id = u.l AND a.event_id IS NULL
           AND a.recorded_in = pg_current_xact_id()",
    )
    .bind(&learner_ids)
    .bind(&event_ids)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    at: OffsetDateTime,
    learner_id: Uuid,
    resource: String,
    stay_id: Uuid,
    change: String,
    valid_from: Date,
    valid_until: Date,
    rule: String,
    policy_version: String,
    cause: String,
    cause_event_id: Option<Uuid>,
    event_id: Option<Uuid>,
    actor: String,
}

/// One learner's grant changes, oldest first.
pub async fn list(
    pool: &PgPool,
    request: &v1::EntitlementServiceListAuditEntriesRequest,
) -> Result<v1::EntitlementServiceListAuditEntriesResponse, AuditError> {
    let learner_id = audit::required_id(SubjectKind::Learner, &request.learner_id)?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT at, learner_id, resource, stay_id, change, valid_from, valid_until, rule,
                policy_version, cause, cause_event_id, event_id, actor
         FROM grant_audit WHERE learner_id = $1 ORDER BY at, id",
    )
    .bind(learner_id)
    .fetch_all(pool)
    .await?;
    Ok(v1::EntitlementServiceListAuditEntriesResponse {
        entries: rows.into_iter().map(entry).collect(),
    })
}

fn entry(row: Row) -> v1::AuditEntry {
    // Who caused the change, carried along the chain of events. A change recorded
    // before actors were kept: the calendar is the system; an intake event or a
    // policy activation is followed by this service, and the event (or the policy
    // version) says what set it off.
    let actor = match row.actor.as_str() {
        "" if row.cause == "due date" => hosted_platform::auth::SYSTEM,
        "" => SERVICE,
        actor => actor,
    };
    v1::AuditEntry {
        occurred_at: Some(wire_time(row.at)),
        service: SERVICE.to_owned(),
        actor: actor.to_owned(),
        action: format!("grant.{}", row.change.replace(' ', "_")),
        detail: format!(
            "{} {} ({} to {}), stay {}, rule {}, policy {}",
            row.resource,
            row.change,
            format_day(row.valid_from),
            format_day(row.valid_until),
            row.stay_id,
            row.rule,
            row.policy_version
        ),
        reason: row.cause,
        cause_event_id: audit::id_text(row.cause_event_id),
        event_id: audit::id_text(row.event_id),
        learner_id: row.learner_id.to_string(),
        agreement_id: String::new(),
        card_id: String::new(),
    }
}
