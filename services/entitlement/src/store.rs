//! The entitlement database: the learners' projection, agreements' options, grants.

use std::collections::HashMap;

use sqlx::PgConnection;
use time::Date;
use uuid::Uuid;

use crate::domain::grants::{Grant, StayFacts};

/// A stay as projected, with its agreement.
#[derive(Debug, Clone)]
pub struct ProjectedStay {
    pub stay_id: Uuid,
    pub population: String,
    pub start_date: Date,
    pub end_date: Date,
    pub cancelled: bool,
    pub paid: bool,
    pub agreement_id: Option<Uuid>,
}

/// Stores a learner's stays unless the projection holds that version or a newer one.
/// Returns whether it changed.
pub async fn apply_learner(
    conn: &mut PgConnection,
    learner_id: Uuid,
    login: &str,
    version: i64,
    stays: &[ProjectedStay],
) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query(
        "INSERT INTO learners (learner_id, login, version) VALUES ($1, $2, $3)
         ON CONFLICT (learner_id) DO UPDATE SET login = excluded.login, version = excluded.version, updated_at = now()
         WHERE learners.version < excluded.version",
    )
    .bind(learner_id)
    .bind(login)
    .bind(version)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !changed {
        return Ok(false);
    }
    sqlx::query("DELETE FROM stays WHERE learner_id = $1")
        .bind(learner_id)
        .execute(&mut *conn)
        .await?;
    let ids: Vec<Uuid> = stays.iter().map(|stay| stay.stay_id).collect();
    let populations: Vec<&str> = stays.iter().map(|stay| stay.population.as_str()).collect();
    let starts: Vec<Date> = stays.iter().map(|stay| stay.start_date).collect();
    let ends: Vec<Date> = stays.iter().map(|stay| stay.end_date).collect();
    let cancelled: Vec<bool> = stays.iter().map(|stay| stay.cancelled).collect();
    let paid: Vec<bool> = stays.iter().map(|stay| stay.paid).collect();
    let agreements: Vec<Option<Uuid>> = stays.iter().map(|stay| stay.agreement_id).collect();
    sqlx::query(
        "INSERT INTO stays (stay_id, learner_id, population, start_date, end_date, cancelled, paid, agreement_id)
         SELECT s, $2, p, b, e, c, pd, a
         FROM unnest($1::uuid[], $3::text[], $4::date[], $5::date[], $6::bool[], $7::bool[], $8::uuid[])
              AS u(s, p, b, e, c, pd, a)",
    )
    .bind(&ids)
    .bind(learner_id)
    .bind(&populations)
    .bind(&starts)
    .bind(&ends)
    .bind(&cancelled)
    .bind(&paid)
    .bind(&agreements)
    .execute(conn)
    .await?;
    Ok(true)
}

/// Stores an agreement's options unless a newer version is there; returns whether it changed.
pub async fn apply_agreement(
    conn: &mut PgConnection,
    agreement_id: Uuid,
    options: &[String],
    version: i64,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO agreements (agreement_id, options, version) VALUES ($1, $2, $3)
         ON CONFLICT (agreement_id) DO UPDATE SET options = excluded.options, version = excluded.version
         WHERE agreements.version < excluded.version",
    )
    .bind(agreement_id)
    .bind(options)
    .bind(version)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

pub async fn learners_under(
    conn: &mut PgConnection,
    agreement_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT DISTINCT learner_id FROM stays WHERE agreement_id = $1 ORDER BY 1")
        .bind(agreement_id)
        .fetch_all(conn)
        .await
}

/// A learner's stays as the rules see them, agreement options included.
pub async fn stay_facts(
    conn: &mut PgConnection,
    learner_id: Uuid,
) -> Result<Vec<StayFacts>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        stay_id: Uuid,
        population: String,
        start_date: Date,
        end_date: Date,
        cancelled: bool,
        paid: bool,
        options: Option<Vec<String>>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.stay_id, s.population, s.start_date, s.end_date, s.cancelled, s.paid, a.options
         FROM stays s LEFT JOIN agreements a ON a.agreement_id = s.agreement_id
         WHERE s.learner_id = $1 ORDER BY s.start_date, s.stay_id",
    )
    .bind(learner_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| StayFacts {
            stay_id: row.stay_id.to_string(),
            population: row.population,
            start_date: row.start_date,
            end_date: row.end_date,
            cancelled: row.cancelled,
            paid: row.paid,
            agreement_options: row.options.unwrap_or_default(),
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct GrantRow {
    resource: String,
    stay_id: Uuid,
    valid_from: Date,
    valid_until: Date,
    rule: String,
    policy_version: String,
}

pub async fn grants(conn: &mut PgConnection, learner_id: Uuid) -> Result<Vec<Grant>, sqlx::Error> {
    let rows: Vec<GrantRow> = sqlx::query_as(
        "SELECT resource, stay_id, valid_from, valid_until, rule, policy_version FROM grants
         WHERE learner_id = $1 ORDER BY resource, valid_from, stay_id",
    )
    .bind(learner_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Grant {
            resource: row.resource,
            valid_from: row.valid_from,
            valid_until: row.valid_until,
            stay_id: row.stay_id.to_string(),
            rule: row.rule,
            policy_version: row.policy_version,
        })
        .collect())
}

/// Replaces a learner's grants when they differ, auditing each grant and revocation;
/// returns the new grants version, or None when nothing changed.
pub async fn replace_grants(
    conn: &mut PgConnection,
    learner_id: Uuid,
    wanted: &[Grant],
    cause_event_id: Option<Uuid>,
) -> Result<Option<i64>, sqlx::Error> {
    let current = grants(conn, learner_id).await?;
    if current == wanted {
        return Ok(None);
    }
    let key = |grant: &Grant| (grant.resource.clone(), grant.stay_id.clone());
    let before: HashMap<_, &Grant> = current.iter().map(|grant| (key(grant), grant)).collect();
    let after: HashMap<_, &Grant> = wanted.iter().map(|grant| (key(grant), grant)).collect();
    let mut audit: Vec<(&Grant, &str)> = Vec::new();
    for grant in wanted {
        match before.get(&key(grant)) {
            None => audit.push((grant, "granted")),
            Some(previous) if *previous != grant => audit.push((grant, "changed")),
            Some(_) => {}
        }
    }
    for grant in &current {
        if !after.contains_key(&key(grant)) {
            audit.push((grant, "revoked"));
        }
    }
    sqlx::query("DELETE FROM grants WHERE learner_id = $1")
        .bind(learner_id)
        .execute(&mut *conn)
        .await?;
    for grant in wanted {
        sqlx::query(
            "INSERT INTO grants (learner_id, resource, stay_id, valid_from, valid_until, rule, policy_version)
             VALUES ($1, $2, $3::uuid, $4, $5, $6, $7)",
        )
        .bind(learner_id)
        .bind(&grant.resource)
        .bind(&grant.stay_id)
        .bind(grant.valid_from)
        .bind(grant.valid_until)
        .bind(&grant.rule)
        .bind(&grant.policy_version)
        .execute(&mut *conn)
        .await?;
    }
    for (grant, change) in audit {
        sqlx::query(
            "INSERT INTO grant_audit (learner_id, resource, stay_id, change, valid_from, valid_until, rule,
                                      policy_version, cause_event_id)
             VALUES ($1, $2, $3::uuid, $4, $5, $6, $7, $8, $9)",
        )
        .bind(learner_id)
        .bind(&grant.resource)
        .bind(&grant.stay_id)
        .bind(change)
        .bind(grant.valid_from)
        .bind(grant.valid_until)
        .bind(&grant.rule)
        .bind(&grant.policy_version)
        .bind(cause_event_id)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query_scalar(
        "UPDATE learners SET grants_version = grants_version + 1 WHERE learner_id = $1 RETURNING grants_version",
    )
    .bind(learner_id)
    .fetch_one(conn)
    .await
    .map(Some)
}

/// The learner id and login behind a login or an id.
pub async fn learner(
    conn: &mut PgConnection,
    login_or_id: &str,
) -> Result<Option<(Uuid, String, i64)>, sqlx::Error> {
    match Uuid::parse_str(login_or_id) {
        Ok(id) => {
            sqlx::query_as("SELECT learner_id, login, version FROM learners WHERE learner_id = $1")
                .bind(id)
                .fetch_optional(conn)
                .await
        }
        Err(_) => {
            sqlx::query_as("SELECT learner_id, login, version FROM learners WHERE login = $1")
                .bind(login_or_id)
                .fetch_optional(conn)
                .await
        }
    }
}

/// The grant that allows a resource on a day, the longest-running first.
pub async fn holding_grant(
    conn: &mut PgConnection,
    learner_id: Uuid,
    resource: &str,
    on: Date,
) -> Result<Option<(Date, String, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT valid_until, rule, stay_id FROM grants
         WHERE learner_id = $1 AND resource = $2 AND valid_from <= $3 AND valid_until >= $3
         ORDER BY valid_until DESC LIMIT 1",
    )
    .bind(learner_id)
    .bind(resource)
    .bind(on)
    .fetch_optional(conn)
    .await
}
