//! Agreements (conventions) and the stays under them.

use sqlx::PgConnection;
use time::Date;
use uuid::Uuid;

use crate::domain::agreement::NewAgreement;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgreementRow {
    pub agreement_id: Uuid,
    pub partner_name: String,
    pub partner_uai: Option<String>,
    pub populations: Vec<String>,
    pub start_date: Date,
    pub end_date: Date,
    pub head_count_cap: i32,
    pub options: Vec<String>,
    pub payer: String,
    pub version: i64,
}

const COLUMNS: &str = "agreement_id, partner_name, partner_uai, populations, start_date, end_date, \
     head_count_cap, options, payer, version";

pub async fn insert(
    conn: &mut PgConnection,
    agreement: &NewAgreement,
    actor: &str,
) -> Result<AgreementRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO agreements (agreement_id, partner_name, partner_uai, populations, start_date, end_date,
                                 head_count_cap, options, payer, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&agreement.partner_name)
    .bind(&agreement.partner_uai)
    .bind(&agreement.populations)
    .bind(agreement.start_date)
    .bind(agreement.end_date)
    .bind(agreement.head_count_cap)
    .bind(&agreement.options)
    .bind(agreement.payer.as_str())
    .bind(actor)
    .fetch_one(conn)
    .await
}

/// An agreement; `lock` holds it for the caller's transaction.
pub async fn get(
    conn: &mut PgConnection,
    agreement_id: Uuid,
    lock: bool,
) -> Result<Option<AgreementRow>, sqlx::Error> {
    let suffix = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM agreements WHERE agreement_id = $1{suffix}"
    ))
    .bind(agreement_id)
    .fetch_optional(conn)
    .await
}

pub async fn update(
    conn: &mut PgConnection,
    agreement_id: Uuid,
    agreement: &NewAgreement,
) -> Result<AgreementRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE agreements SET partner_name = $2, partner_uai = $3, populations = $4, start_date = $5,
                end_date = $6, head_count_cap = $7, options = $8, payer = $9,
                version = version + 1, updated_at = now()
         WHERE agreement_id = $1 RETURNING {COLUMNS}"
    ))
    .bind(agreement_id)
    .bind(&agreement.partner_name)
    .bind(&agreement.partner_uai)
    .bind(&agreement.populations)
    .bind(agreement.start_date)
    .bind(agreement.end_date)
    .bind(agreement.head_count_cap)
    .bind(&agreement.options)
    .bind(agreement.payer.as_str())
    .fetch_one(conn)
    .await
}

pub async fn set_end(
    conn: &mut PgConnection,
    agreement_id: Uuid,
    end_date: Date,
    reason: &str,
) -> Result<AgreementRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE agreements SET end_date = $2, end_reason = $3, version = version + 1, updated_at = now()
         WHERE agreement_id = $1 RETURNING {COLUMNS}"
    ))
    .bind(agreement_id)
    .bind(end_date)
    .bind(reason)
    .fetch_one(conn)
    .await
}

/// Stays under the agreement that count against its cap (not cancelled).
pub async fn head_count(conn: &mut PgConnection, agreement_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM stays WHERE agreement_id = $1 AND NOT cancelled")
        .bind(agreement_id)
        .fetch_one(conn)
        .await
}

/// First and last days of the agreement's stays, not cancelled.
pub async fn stay_periods(
    conn: &mut PgConnection,
    agreement_id: Uuid,
) -> Result<Vec<(Date, Date)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT start_date, end_date FROM stays WHERE agreement_id = $1 AND NOT cancelled",
    )
    .bind(agreement_id)
    .fetch_all(conn)
    .await
}

/// Populations used by the agreement's stays (an amendment must keep covering them).
pub async fn populations_in_use(
    conn: &mut PgConnection,
    agreement_id: Uuid,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT DISTINCT population FROM stays WHERE agreement_id = $1 AND NOT cancelled ORDER BY 1")
        .bind(agreement_id)
        .fetch_all(conn)
        .await
}

/// The earliest start and latest end of the agreement's stays.
pub async fn stays_span(
    conn: &mut PgConnection,
    agreement_id: Uuid,
) -> Result<Option<(Date, Date)>, sqlx::Error> {
    let span: (Option<Date>, Option<Date>) = sqlx::query_as(
        "SELECT min(start_date), max(end_date) FROM stays WHERE agreement_id = $1 AND NOT cancelled",
    )
    .bind(agreement_id)
    .fetch_one(conn)
    .await?;
    Ok(span.0.zip(span.1))
}

/// Stays under the agreement that run past `end_date`, with their learners.
pub async fn stays_past(
    conn: &mut PgConnection,
    agreement_id: Uuid,
    end_date: Date,
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT stay_id, learner_id FROM stays
         WHERE agreement_id = $1 AND NOT cancelled AND end_date > $2 ORDER BY learner_id, stay_id",
    )
    .bind(agreement_id)
    .bind(end_date)
    .fetch_all(conn)
    .await
}

/// Agreements covering `population` and running on `active_on` (each filter only
/// when given), in id order after `after`.
pub async fn list(
    conn: &mut PgConnection,
    population: Option<&str>,
    active_on: Option<Date>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AgreementRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM agreements
         WHERE ($1::text IS NULL OR $1 = ANY(populations))
           AND ($2::date IS NULL OR (start_date <= $2 AND end_date >= $2))
           AND ($3::uuid IS NULL OR agreement_id > $3)
         ORDER BY agreement_id LIMIT $4"
    ))
    .bind(population)
    .bind(active_on)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Stays under the agreement still to be paid.
pub async fn due_stays(
    conn: &mut PgConnection,
    agreement_id: Uuid,
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.stay_id, s.learner_id FROM stays s JOIN persons p ON p.learner_id = s.learner_id
         WHERE s.agreement_id = $1 AND NOT s.cancelled AND s.payment_status = 'due' AND p.erased_at IS NULL
         ORDER BY s.learner_id, s.stay_id",
    )
    .bind(agreement_id)
    .fetch_all(conn)
    .await
}
