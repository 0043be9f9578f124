//! Changes of a stay after registration.

use sqlx::PgConnection;
use time::Date;
use uuid::Uuid;

use crate::domain::stay::StayFacts;

/// A stay locked for a change, with its person: the caller's transaction holds both.
#[derive(Debug, Clone)]
pub struct LockedStay {
    pub stay_id: Uuid,
    pub learner_id: Uuid,
    pub facts: StayFacts,
    /// Whether the learner's identity was erased: nothing of theirs may change.
    pub erased: bool,
}

#[derive(sqlx::FromRow)]
struct LockedRow {
    stay_id: Uuid,
    learner_id: Uuid,
    start_date: Date,
    end_date: Date,
    cancelled: bool,
    population: String,
    max_duration_days: i32,
    agreement_end: Option<Date>,
}

/// Locks the person and then the stay (always in that order, like every other
/// change of a learner, so that two changes cannot deadlock).
pub async fn lock(
    conn: &mut PgConnection,
    stay_id: Uuid,
) -> Result<Option<LockedStay>, sqlx::Error> {
    let learner_id: Option<Uuid> =
        sqlx::query_scalar("SELECT learner_id FROM stays WHERE stay_id = $1")
            .bind(stay_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(learner_id) = learner_id else {
        return Ok(None);
    };
    let erased: bool = sqlx::query_scalar(
        "SELECT erased_at IS NOT NULL FROM persons WHERE learner_id = $1 FOR UPDATE",
    )
    .bind(learner_id)
    .fetch_one(&mut *conn)
    .await?;
    let row: Option<LockedRow> = sqlx::query_as(
        "SELECT s.stay_id, s.learner_id, s.start_date, s.end_date, s.cancelled, s.population,
                p.max_duration_days, a.end_date AS agreement_end
         FROM stays s
         JOIN populations p ON p.code = s.population
         LEFT JOIN agreements a ON a.agreement_id = s.agreement_id
         WHERE s.stay_id = $1 FOR UPDATE OF s",
    )
    .bind(stay_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|row| LockedStay {
        stay_id: row.stay_id,
        learner_id: row.learner_id,
        facts: StayFacts {
            start_date: row.start_date,
            end_date: row.end_date,
            cancelled: row.cancelled,
            population: row.population,
            max_duration_days: row.max_duration_days,
            agreement_end: row.agreement_end,
        },
        erased,
    }))
}

/// Moves a stay's end date; `reason` is kept when it ends early.
pub async fn set_end_date(
    conn: &mut PgConnection,
    stay_id: Uuid,
    end_date: Date,
    end_reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE stays SET end_date = $2, end_reason = COALESCE($3, end_reason) WHERE stay_id = $1",
    )
    .bind(stay_id)
    .bind(end_date)
    .bind(end_reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records why a stay ended early, or that it ends as planned (None).
pub async fn set_early_end(
    conn: &mut PgConnection,
    stay_id: Uuid,
    early_end: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE stays SET early_end = $2 WHERE stay_id = $1")
        .bind(stay_id)
        .bind(early_end)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn cancel(
    conn: &mut PgConnection,
    stay_id: Uuid,
    reason: &str,
) -> Result<(), sqlx::Error> {
    // A cancelled stay owes nothing; one already paid stays paid (a refund is finance's).
    sqlx::query(
        "UPDATE stays SET cancelled = true, cancelled_at = now(), end_reason = $2,
                payment_status = CASE WHEN payment_status = 'due' THEN 'not_required' ELSE payment_status END
         WHERE stay_id = $1",
    )
        .bind(stay_id)
        .bind(reason)
        .execute(conn)
        .await?;
    Ok(())
}

/// One more version of the learner: every change of a person or a stay calls it.
pub async fn bump_version(conn: &mut PgConnection, learner_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE persons SET version = version + 1, updated_at = now() WHERE learner_id = $1",
    )
    .bind(learner_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// What an amendment of a stay may change.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Amendable {
    pub sponsor_unit: String,
    pub sponsor_login: Option<String>,
    pub requested_resources: Vec<String>,
}

pub async fn amendable(conn: &mut PgConnection, stay_id: Uuid) -> Result<Amendable, sqlx::Error> {
    sqlx::query_as(
        "SELECT sponsor_unit, sponsor_login, requested_resources FROM stays WHERE stay_id = $1",
    )
    .bind(stay_id)
    .fetch_one(conn)
    .await
}

pub async fn amend(
    conn: &mut PgConnection,
    stay_id: Uuid,
    amended: &Amendable,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE stays SET sponsor_unit = $2, sponsor_login = $3, requested_resources = $4
         WHERE stay_id = $1",
    )
    .bind(stay_id)
    .bind(&amended.sponsor_unit)
    .bind(&amended.sponsor_login)
    .bind(&amended.requested_resources)
    .execute(conn)
    .await?;
    Ok(())
}
