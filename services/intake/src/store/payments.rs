//! Payments of stays, one by one or for a whole cohort, and the stays still due.

use sqlx::PgConnection;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    pub payment_id: Uuid,
    pub stay_id: Uuid,
    pub amount_cents: Option<i64>,
    pub paid_on: Date,
    pub payer: String,
    pub payer_name: Option<String>,
    pub reference: Option<String>,
    pub recorded_at: OffsetDateTime,
}

/// A payment of one stay, as validated.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub stay_id: Uuid,
    /// None when a cohort payment covers the stay.
    pub amount_cents: Option<i64>,
    pub paid_on: Date,
    pub payer: String,
    pub payer_name: Option<String>,
    pub reference: Option<String>,
    pub cohort_payment_id: Option<Uuid>,
}

/// Records the payment and marks the stay paid.
pub async fn record(
    conn: &mut PgConnection,
    payment: &NewPayment,
    actor: &str,
) -> Result<PaymentRow, sqlx::Error> {
    let row: PaymentRow = sqlx::query_as(
        "INSERT INTO payments (payment_id, stay_id, amount_cents, paid_on, payer, payer_name, reference,
                               cohort_payment_id, recorded_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING payment_id, stay_id, amount_cents, paid_on, payer, payer_name, reference, recorded_at",
    )
    .bind(Uuid::now_v7())
    .bind(payment.stay_id)
    .bind(payment.amount_cents)
    .bind(payment.paid_on)
    .bind(&payment.payer)
    .bind(&payment.payer_name)
    .bind(&payment.reference)
    .bind(payment.cohort_payment_id)
    .bind(actor)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("UPDATE stays SET payment_status = 'paid' WHERE stay_id = $1")
        .bind(payment.stay_id)
        .execute(conn)
        .await?;
    Ok(row)
}

#[allow(clippy::too_many_arguments)]
pub async fn record_cohort(
    conn: &mut PgConnection,
    agreement_id: Uuid,
    amount_cents: i64,
    paid_on: Date,
    payer_name: Option<&str>,
    reference: Option<&str>,
    actor: &str,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO cohort_payments (cohort_payment_id, agreement_id, amount_cents, paid_on, payer_name,
                                      reference, recorded_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING cohort_payment_id",
    )
    .bind(Uuid::now_v7())
    .bind(agreement_id)
    .bind(amount_cents)
    .bind(paid_on)
    .bind(payer_name)
    .bind(reference)
    .bind(actor)
    .fetch_one(conn)
    .await
}

/// A cohort payment already booked, found by its reference.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CohortBooking {
    pub cohort_payment_id: Uuid,
    pub amount_cents: i64,
    pub paid_on: Date,
}

/// The cohort payment booked under `agreement_id` with this reference, if any.
pub async fn cohort_by_reference(
    conn: &mut PgConnection,
    agreement_id: Uuid,
    reference: &str,
) -> Result<Option<CohortBooking>, sqlx::Error> {
    sqlx::query_as(
        "SELECT cohort_payment_id, amount_cents, paid_on FROM cohort_payments
         WHERE agreement_id = $1 AND reference = $2",
    )
    .bind(agreement_id)
    .bind(reference)
    .fetch_optional(conn)
    .await
}

/// The stays a cohort payment paid, in the order it paid them.
pub async fn cohort_stays(
    conn: &mut PgConnection,
    cohort_payment_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT p.stay_id FROM payments p JOIN stays s ON s.stay_id = p.stay_id
         WHERE p.cohort_payment_id = $1 ORDER BY s.learner_id, s.stay_id",
    )
    .bind(cohort_payment_id)
    .fetch_all(conn)
    .await
}

/// A stay whose payment is due, with the least of its learner that matches a transfer.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueRow {
    pub stay_id: Uuid,
    pub login: String,
    pub learner_number: String,
    pub family_name: String,
    pub given_names: String,
    pub population: String,
    pub agreement_id: Option<Uuid>,
    pub start_date: Date,
    pub end_date: Date,
    pub fee_cents: Option<i64>,
}

/// Up to `limit` stays due (not cancelled) after `after`, in stay id order, under the
/// agreement and of the population when given. An erased person's stays are not
/// listed: nothing is left to match a transfer with.
pub async fn due(
    conn: &mut PgConnection,
    agreement_id: Option<Uuid>,
    population: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DueRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.stay_id, p.login, p.learner_number, p.family_name, p.given_names, s.population,
                s.agreement_id, s.start_date, s.end_date, c.fee_cents
         FROM stays s JOIN persons p ON p.learner_id = s.learner_id
              JOIN populations c ON c.code = s.population
         WHERE s.payment_status = 'due' AND NOT s.cancelled AND p.erased_at IS NULL
           AND ($1::uuid IS NULL OR s.agreement_id = $1)
           AND ($2::text IS NULL OR s.population = $2)
           AND ($3::uuid IS NULL OR s.stay_id > $3)
         ORDER BY s.stay_id LIMIT $4",
    )
    .bind(agreement_id)
    .bind(population)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}
