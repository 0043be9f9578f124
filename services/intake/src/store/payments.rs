//! Payments of stays, one by one or for a whole cohort.

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

pub async fn cohort_reference_exists(
    conn: &mut PgConnection,
    agreement_id: Uuid,
    reference: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM cohort_payments WHERE agreement_id = $1 AND reference = $2)",
    )
    .bind(agreement_id)
    .bind(reference)
    .fetch_one(conn)
    .await
}
