//! What a service holds about one person, for a data subject's access request (GDPR
//! article 15) and portability (article 20): every row of the service's tables that
//! names the learner in a `learner_id` column, found in the catalogue so that a table
//! added later is exported without anyone having to remember it, and the rows that
//! belong to the learner through another table (a stay's payments, a card's steps),
//! which each service names.
//!
//! Everything is read in one read-only snapshot, so that the document is consistent
//! even while the learner changes.

use hosted_contracts::v1;
use prost::Message as _;
use serde_json::{Map, Value, json};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::{
    audit::{self, AuditError, Subject, SubjectKind},
    clock::wire_time,
};

/// Rows that belong to a learner through another table.
#[derive(Debug, Clone, Copy)]
pub struct Related {
    /// The name the rows are exported under, usually their table's.
    pub name: &'static str,
    /// A query of one `jsonb` column, a row each, `$1` being the learner id.
    pub query: &'static str,
}

/// The learner id of an export request (`learner_id`), refused like an audit query's.
pub fn learner_id(text: &str) -> Result<Uuid, AuditError> {
    match audit::subject(&[(SubjectKind::Learner, text)])? {
        Subject::Learner(id) | Subject::Agreement(id) | Subject::Card(id) => Ok(id),
    }
}

/// The learner's records: table → rows (JSON objects), for every base table of the
/// current schema with a `learner_id` column, then every `related` query. Tables
/// without a row of the learner are left out; rows come in a stable order.
pub async fn records(
    pool: &PgPool,
    learner_id: Uuid,
    related: &[Related],
) -> Result<Map<String, Value>, sqlx::Error> {
    let mut tx = snapshot(pool).await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.table_name::text
         FROM information_schema.columns c
         JOIN information_schema.tables t USING (table_schema, table_name)
         WHERE c.table_schema = current_schema() AND c.column_name = 'learner_id'
           AND t.table_type = 'BASE TABLE'
         ORDER BY c.table_name",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut records = Map::new();
    for table in tables {
        let rows = rows(
            &mut tx,
            &format!(
                "SELECT to_jsonb(t) FROM \"{}\" t WHERE t.learner_id = $1",
                table.replace('"', "\"\"")
            ),
            learner_id,
        )
        .await?;
        if !rows.is_empty() {
            records.insert(table, Value::Array(rows));
        }
    }
    for related in related {
        let rows = rows(&mut tx, related.query, learner_id).await?;
        if !rows.is_empty() {
            records.insert(related.name.to_owned(), Value::Array(rows));
        }
    }
    tx.commit().await?;
    Ok(records)
}

/// The wire form of `records`, read now by `service`.
pub fn to_wire(service: &str, records: Map<String, Value>) -> v1::PersonalData {
    v1::PersonalData {
        service: service.to_owned(),
        exported_at: Some(wire_time(time::OffsetDateTime::now_utc())),
        records_json: Value::Object(records).to_string(),
    }
}

/// `records` of the learner `learner_id` names, in wire form, logged with who asked:
/// the whole of an export RPC for a service that holds nothing else about the person.
pub async fn export(
    pool: &PgPool,
    service: &str,
    learner_id: &str,
    related: &[Related],
    actor: &str,
) -> Result<v1::PersonalData, AuditError> {
    let learner_id = self::learner_id(learner_id)?;
    let records = records(pool, learner_id, related).await?;
    tracing::info!(%learner_id, actor, "personal data exported");
    Ok(to_wire(service, records))
}

/// Makes the learners a table keeps as intake published them (protobuf in a `bytea`
/// column, exported as hexadecimal) readable: each becomes the learner as JSON, for a
/// person has a right to read what is held, not its encoding.
pub fn decode_learners(records: &mut Map<String, Value>, table: &str, column: &str) {
    let Some(Value::Array(rows)) = records.get_mut(table) else {
        return;
    };
    for row in rows {
        let Some(value) = row.get_mut(column) else {
            continue;
        };
        let decoded = value
            .as_str()
            .and_then(|text| text.strip_prefix("\\x"))
            .and_then(|digits| hex::decode(digits).ok())
            .and_then(|bytes| v1::Learner::decode(bytes.as_slice()).ok());
        if let Some(learner) = decoded {
            *value = learner_json(&learner);
        }
    }
}

/// A learner as intake publishes it, as JSON: as the export writes it and as `hlctl
/// --json` shows it.
pub fn learner_json(learner: &v1::Learner) -> Value {
    let person = learner.person.clone().unwrap_or_default();
    json!({
        "learner_id": person.learner_id,
        "learner_number": person.learner_number,
        "login": person.login,
        "family_name": person.family_name,
        "birth_name": person.birth_name,
        "given_names": person.given_names,
        "birth_date": person.birth_date,
        "email": person.email,
        "ine": person.ine,
        "phone": person.phone,
        "version": learner.version,
        "lock": learner.lock.as_ref().map(|lock| json!({
            "kind": lock_kind(lock),
            "reason": lock.reason,
            "since": lock.since.as_ref().and_then(instant),
            "by": lock.by,
        })),
        "stays": learner.stays.iter().map(|stay| json!({
            "stay_id": stay.stay_id,
            "population": stay.population,
            "supann_population": stay.supann_population,
            "sponsor_unit": stay.sponsor_unit,
            "sponsor_login": stay.sponsor_login,
            "agreement_id": stay.agreement_id,
            "partner_uai": stay.partner_uai,
            "start_date": stay.start_date,
            "end_date": stay.end_date,
            "status": stay.status().as_str_name(),
            "payment_status": stay.payment_status().as_str_name(),
            "end_reason": stay.end_reason,
            "early_end": early_end_code(stay),
            "requested_resources": stay.requested_resources,
        })).collect::<Vec<_>>(),
    })
}

/// A lock's kind in words: `administrative`, `technical`.
pub fn lock_kind(lock: &v1::LearnerLock) -> &'static str {
    match lock.kind() {
        v1::LockKind::Administrative => "administrative",
        v1::LockKind::Technical => "technical",
        v1::LockKind::Unspecified => "unspecified",
    }
}

/// Why a stay ended early, as EndStay's code (`left`); None when it ends as planned.
pub fn early_end_code(stay: &v1::Stay) -> Option<String> {
    match stay.early_end() {
        v1::EarlyEnd::Unspecified => None,
        code => Some(
            code.as_str_name()
                .trim_start_matches("EARLY_END_")
                .to_ascii_lowercase(),
        ),
    }
}

/// A wire instant as RFC 3339 text.
fn instant(at: &prost_types::Timestamp) -> Option<String> {
    let nanos = i128::from(at.seconds) * 1_000_000_000 + i128::from(at.nanos);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

async fn snapshot(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The rows of `query` (one `jsonb` column, `$1` the learner), in the order of their
/// text, so that two exports of the same data are the same document.
async fn rows(
    tx: &mut Transaction<'static, Postgres>,
    query: &str,
    learner_id: Uuid,
) -> Result<Vec<Value>, sqlx::Error> {
    let mut rows: Vec<Value> = sqlx::query_scalar(query)
        .bind(learner_id)
        .fetch_all(&mut **tx)
        .await?;
    rows.sort_by_cached_key(Value::to_string);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learner_kept_as_protobuf_is_exported_readable() {
        let learner = v1::Learner {
            person: Some(v1::Person {
                family_name: "Martin".to_owned(),
                birth_date: "2001-02-03".to_owned(),
                ..Default::default()
            }),
            stays: vec![v1::Stay {
                population: "IFSI".to_owned(),
                ..Default::default()
            }],
            version: 4,
            ..Default::default()
        };
        let hex = format!("\\x{}", hex::encode(learner.encode_to_vec()));
        let mut records = Map::new();
        records.insert(
            "accounts".to_owned(),
            json!([{ "learner": hex, "login": "martin" }, { "learner": "not hex" }]),
        );

        decode_learners(&mut records, "accounts", "learner");

        let rows = &records["accounts"];
        assert_eq!(rows[0]["learner"]["family_name"], "Martin");
        assert_eq!(rows[0]["learner"]["birth_date"], "2001-02-03");
        assert_eq!(rows[0]["learner"]["stays"][0]["population"], "IFSI");
        assert_eq!(rows[0]["learner"]["version"], 4);
        assert_eq!(rows[0]["login"], "martin");
        assert_eq!(
            rows[1]["learner"], "not hex",
            "what is not a learner stays as it is"
        );
    }
}
