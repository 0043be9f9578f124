//! The unit catalogue's table.

use sqlx::{PgConnection, PgPool};

use crate::domain::Unit;

#[derive(Debug, Clone, sqlx::FromRow)]
struct UnitRow {
    code: String,
    kind: String,
    label: String,
}

impl From<UnitRow> for Unit {
    fn from(row: UnitRow) -> Self {
        Unit {
            code: row.code,
            kind: row.kind,
            label: row.label,
        }
    }
}

/// Every unit, by code.
pub async fn list(pool: &PgPool) -> Result<Vec<Unit>, sqlx::Error> {
    let rows: Vec<UnitRow> = sqlx::query_as("SELECT code, kind, label FROM units ORDER BY code")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(Unit::from).collect())
}

pub async fn get(conn: &mut PgConnection, code: &str) -> Result<Option<Unit>, sqlx::Error> {
    let row: Option<UnitRow> =
        sqlx::query_as("SELECT code, kind, label FROM units WHERE code = $1")
            .bind(code)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(Unit::from))
}

/// Adds or replaces a unit; true when it was added.
pub async fn save(conn: &mut PgConnection, unit: &Unit) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO units (code, kind, label) VALUES ($1, $2, $3)
         ON CONFLICT (code) DO UPDATE SET kind = excluded.kind, label = excluded.label
         RETURNING (xmax = 0)",
    )
    .bind(&unit.code)
    .bind(&unit.kind)
    .bind(&unit.label)
    .fetch_one(conn)
    .await
}
