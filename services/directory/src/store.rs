//! The account projection and its publication state.

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use hosted_platform::telemetry::TraceHeaders;

/// One learner's latest state.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub learner_id: Uuid,
    pub login: String,
    pub version: i64,
    pub learner: Vec<u8>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub published_version: Option<i64>,
    pub published_at: Option<OffsetDateTime>,
    pub publish_attempts: i32,
}

impl AccountRow {
    pub fn trace(&self) -> TraceHeaders {
        TraceHeaders {
            traceparent: self.traceparent.clone(),
            tracestate: self.tracestate.clone(),
        }
    }
}

const COLUMNS: &str = "learner_id, login, version, learner, traceparent, tracestate, published_version, published_at, publish_attempts";

/// Stores a learner's state unless the projection already holds that version or a
/// newer one (events can arrive twice or out of order). Returns whether it changed.
pub async fn apply(
    conn: &mut PgConnection,
    learner_id: Uuid,
    login: &str,
    version: i64,
    learner: &[u8],
    trace: &TraceHeaders,
) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query(
        "INSERT INTO accounts (learner_id, login, version, learner, traceparent, tracestate)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (learner_id) DO UPDATE
            SET login = excluded.login, version = excluded.version, learner = excluded.learner,
                traceparent = excluded.traceparent, tracestate = excluded.tracestate,
                publish_attempts = 0, next_attempt_at = now(), last_error = NULL, updated_at = now()
          WHERE accounts.version < excluded.version",
    )
    .bind(learner_id)
    .bind(login)
    .bind(version)
    .bind(learner)
    .bind(&trace.traceparent)
    .bind(&trace.tracestate)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

/// Claims up to `limit` accounts that wait for publication, locked until `conn`'s
/// transaction ends, so that replicas never write one entry at the same time.
pub async fn claim_pending(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<AccountRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM accounts
         WHERE published_version IS DISTINCT FROM version AND next_attempt_at <= now()
         ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn mark_published(
    conn: &mut PgConnection,
    learner_id: Uuid,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts SET published_version = $2, published_at = now(), publish_attempts = 0, last_error = NULL
         WHERE learner_id = $1",
    )
    .bind(learner_id)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_failed(
    conn: &mut PgConnection,
    learner_id: Uuid,
    retry_in: std::time::Duration,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts SET publish_attempts = publish_attempts + 1,
                next_attempt_at = now() + make_interval(secs => $2), last_error = $3
         WHERE learner_id = $1",
    )
    .bind(learner_id)
    .bind(retry_in.as_secs_f64())
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// How soon an account waits again: the earliest next attempt, if any is pending.
pub async fn next_attempt_in(pool: &PgPool) -> Result<Option<std::time::Duration>, sqlx::Error> {
    let seconds: Option<f64> = sqlx::query_scalar(
        "SELECT GREATEST(0, EXTRACT(EPOCH FROM min(next_attempt_at) - now()))::float8 FROM accounts
         WHERE published_version IS DISTINCT FROM version",
    )
    .fetch_one(pool)
    .await?;
    Ok(seconds.map(std::time::Duration::from_secs_f64))
}

pub async fn account(pool: &PgPool, learner_id: Uuid) -> Result<Option<AccountRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM accounts WHERE learner_id = $1"
    ))
    .bind(learner_id)
    .fetch_optional(pool)
    .await
}

pub async fn learner_id_by_login(pool: &PgPool, login: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT learner_id FROM accounts WHERE login = $1")
        .bind(login)
        .fetch_optional(pool)
        .await
}

/// Asks for an account to be written again.
pub async fn request_republish(pool: &PgPool, learner_id: Uuid) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE accounts SET published_version = NULL, next_attempt_at = now(), publish_attempts = 0
         WHERE learner_id = $1",
    )
    .bind(learner_id)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(updated == 1)
}
