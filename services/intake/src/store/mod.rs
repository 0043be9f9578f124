//! The intake database: persons, stays, logins and the population catalogue;
//! agreements, payments, the unit catalogue and the audit trail in their own modules.

pub mod agreements;
pub mod audit;
pub mod batch;
pub mod erasure;
pub mod payments;
pub mod stays;
pub mod units;

use sqlx::{PgConnection, PgPool};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::domain::{NewPerson, Population};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PersonRow {
    pub learner_id: Uuid,
    pub learner_number: String,
    pub login: String,
    pub family_name: String,
    pub birth_name: Option<String>,
    pub given_names: String,
    pub birth_date: Date,
    pub email: String,
    pub ine: Option<String>,
    pub phone: Option<String>,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The lock's reason code, while the learner is locked.
    pub lock_reason: Option<String>,
    pub locked_at: Option<OffsetDateTime>,
    pub locked_by: Option<String>,
    /// Set once the person's identity is erased: the identity fields are then empty
    /// (and the birth date a placeholder), and nothing may change the learner again.
    pub erased_at: Option<OffsetDateTime>,
    /// Why it was erased: `retention` or `request`.
    pub erasure_basis: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StayRow {
    pub stay_id: Uuid,
    pub population: String,
    pub supann_population: String,
    pub sponsor_unit: String,
    pub sponsor_login: Option<String>,
    pub agreement_id: Option<Uuid>,
    pub start_date: Date,
    pub end_date: Date,
    pub cancelled: bool,
    pub payment_status: String,
    pub end_reason: Option<String>,
    /// Why the stay ended early, as a code (`left`), when it did.
    pub early_end: Option<String>,
    pub requested_resources: Vec<String>,
    /// The UAI of the partner named by the stay's agreement, if any.
    pub partner_uai: Option<String>,
}

/// A learner's whole state at one version.
#[derive(Debug, Clone)]
pub struct LearnerRecord {
    pub person: PersonRow,
    pub stays: Vec<StayRow>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct PopulationRow {
    code: String,
    label: String,
    supann_population: String,
    agreement_required: bool,
    default_duration_days: i32,
    max_duration_days: i32,
    payment_required: bool,
    fee_cents: Option<i64>,
}

impl From<PopulationRow> for Population {
    fn from(row: PopulationRow) -> Self {
        Population {
            code: row.code,
            label: row.label,
            supann_population: row.supann_population,
            agreement_required: row.agreement_required,
            default_duration_days: row.default_duration_days,
            max_duration_days: row.max_duration_days,
            payment_required: row.payment_required,
            fee_cents: row.fee_cents,
        }
    }
}

/// Adds or replaces a population; true when it was added.
pub async fn save_population(
    conn: &mut PgConnection,
    population: &Population,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO populations (code, label, supann_population, agreement_required, default_duration_days,
                                  max_duration_days, payment_required, fee_cents)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (code) DO UPDATE SET label = excluded.label, supann_population = excluded.supann_population,
                agreement_required = excluded.agreement_required,
                default_duration_days = excluded.default_duration_days,
                max_duration_days = excluded.max_duration_days, payment_required = excluded.payment_required,
                fee_cents = excluded.fee_cents
         RETURNING (xmax = 0)",
    )
    .bind(&population.code)
    .bind(&population.label)
    .bind(&population.supann_population)
    .bind(population.agreement_required)
    .bind(population.default_duration_days)
    .bind(population.max_duration_days)
    .bind(population.payment_required)
    .bind(population.fee_cents)
    .fetch_one(conn)
    .await
}

pub async fn population(
    conn: &mut PgConnection,
    code: &str,
) -> Result<Option<Population>, sqlx::Error> {
    let row: Option<PopulationRow> = sqlx::query_as(
        "SELECT code, label, supann_population, agreement_required, default_duration_days, max_duration_days,
                payment_required, fee_cents
         FROM populations WHERE code = $1",
    )
    .bind(code.trim())
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Population::from))
}

pub async fn populations(pool: &PgPool) -> Result<Vec<Population>, sqlx::Error> {
    let rows: Vec<PopulationRow> = sqlx::query_as(
        "SELECT code, label, supann_population, agreement_required, default_duration_days, max_duration_days,
                payment_required, fee_cents
         FROM populations ORDER BY code",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Population::from).collect())
}

/// An erased person's identity columns are NULL: they read as empty (the birth date as
/// a placeholder that no answer shows, since an erased learner is answered as a stub).
const PERSON_COLUMNS: &str = "learner_id, learner_number, COALESCE(login, '') AS login, \
     COALESCE(family_name, '') AS family_name, birth_name, COALESCE(given_names, '') AS given_names, \
     COALESCE(birth_date, DATE '0001-01-01') AS birth_date, COALESCE(email, '') AS email, ine, phone, \
     version, created_at, updated_at, lock_reason, locked_at, locked_by, erased_at, erasure_basis";

pub async fn learner(
    conn: &mut PgConnection,
    learner_id: Uuid,
) -> Result<Option<LearnerRecord>, sqlx::Error> {
    let person: Option<PersonRow> = sqlx::query_as(&format!(
        "SELECT {PERSON_COLUMNS} FROM persons WHERE learner_id = $1"
    ))
    .bind(learner_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(person) = person else {
        return Ok(None);
    };
    let stays: Vec<StayRow> = sqlx::query_as(
        "SELECT s.stay_id, s.population, p.supann_population, s.sponsor_unit, s.sponsor_login, s.agreement_id,
                s.start_date, s.end_date, s.cancelled, s.payment_status, s.end_reason, s.early_end, s.requested_resources,
                a.partner_uai
         FROM stays s JOIN populations p ON p.code = s.population
              LEFT JOIN agreements a ON a.agreement_id = s.agreement_id
         WHERE s.learner_id = $1 ORDER BY s.start_date, s.stay_id",
    )
    .bind(learner_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(LearnerRecord { person, stays }))
}

/// The learner id behind a login or a hosted-learner number.
pub async fn learner_id_by(
    pool: &PgPool,
    column: LookupKey,
    value: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    let sql = match column {
        LookupKey::Login => "SELECT learner_id FROM persons WHERE login = $1",
        LookupKey::LearnerNumber => "SELECT learner_id FROM persons WHERE learner_number = $1",
    };
    let value = match column {
        // Logins are lower-case; `PAUL.DURAND` is `paul.durand`, as in LDAP's uid.
        LookupKey::Login => value.trim().to_ascii_lowercase(),
        LookupKey::LearnerNumber => value.trim().to_owned(),
    };
    sqlx::query_scalar(sql)
        .bind(value)
        .fetch_optional(pool)
        .await
}

#[derive(Debug, Clone, Copy)]
pub enum LookupKey {
    Login,
    LearnerNumber,
}

/// Many learners' whole states at once.
pub async fn learners(
    conn: &mut PgConnection,
    learner_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, LearnerRecord>, sqlx::Error> {
    let persons: Vec<PersonRow> = sqlx::query_as(&format!(
        "SELECT {PERSON_COLUMNS} FROM persons WHERE learner_id = ANY($1)"
    ))
    .bind(learner_ids)
    .fetch_all(&mut *conn)
    .await?;
    #[derive(sqlx::FromRow)]
    struct OwnedStay {
        learner_id: Uuid,
        #[sqlx(flatten)]
        stay: StayRow,
    }
    let stays: Vec<OwnedStay> = sqlx::query_as(
        "SELECT s.learner_id, s.stay_id, s.population, p.supann_population, s.sponsor_unit, s.sponsor_login,
                s.agreement_id, s.start_date, s.end_date, s.cancelled, s.payment_status, s.end_reason, s.early_end,
                s.requested_resources, a.partner_uai
         FROM stays s JOIN populations p ON p.code = s.population
              LEFT JOIN agreements a ON a.agreement_id = s.agreement_id
         WHERE s.learner_id = ANY($1) ORDER BY s.start_date, s.stay_id",
    )
    .bind(learner_ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut records: std::collections::HashMap<Uuid, LearnerRecord> = persons
        .into_iter()
        .map(|person| {
            (
                person.learner_id,
                LearnerRecord {
                    person,
                    stays: Vec::new(),
                },
            )
        })
        .collect();
    for owned in stays {
        if let Some(record) = records.get_mut(&owned.learner_id) {
            record.stays.push(owned.stay);
        }
    }
    Ok(records)
}

/// Up to `limit` learner ids after `after`, in id order: a page of a restatement.
pub async fn learner_ids_after(
    conn: &mut PgConnection,
    after: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT learner_id FROM persons WHERE learner_id > $1 ORDER BY learner_id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// A person, locked for the caller's transaction.
pub async fn lock_person(
    conn: &mut PgConnection,
    learner_id: Uuid,
) -> Result<Option<PersonRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {PERSON_COLUMNS} FROM persons WHERE learner_id = $1 FOR UPDATE"
    ))
    .bind(learner_id)
    .fetch_optional(conn)
    .await
}

/// Writes corrected identity data (the login and number never change).
pub async fn update_person(
    conn: &mut PgConnection,
    learner_id: Uuid,
    person: &NewPerson,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE persons SET family_name = $2, birth_name = $3, given_names = $4, birth_date = $5, email = $6,
                ine = $7, phone = $8, folded_names = $9, version = version + 1, updated_at = now()
         WHERE learner_id = $1",
    )
    .bind(learner_id)
    .bind(&person.family_name)
    .bind(&person.birth_name)
    .bind(&person.given_names)
    .bind(person.birth_date)
    .bind(&person.email)
    .bind(&person.ine)
    .bind(&person.phone)
    .bind(person.folded_names())
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets a learner's lock (a new one, or another reason for the one in place, which
/// keeps its instant), one more version.
pub async fn set_lock(
    conn: &mut PgConnection,
    learner_id: Uuid,
    reason: &str,
    actor: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE persons SET lock_reason = $2, locked_at = COALESCE(locked_at, now()),
                locked_by = CASE WHEN locked_at IS NULL THEN $3 ELSE locked_by END,
                version = version + 1, updated_at = now()
         WHERE learner_id = $1",
    )
    .bind(learner_id)
    .bind(reason)
    .bind(actor)
    .execute(conn)
    .await?;
    Ok(())
}

/// Lifts a learner's lock, one more version.
pub async fn clear_lock(conn: &mut PgConnection, learner_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE persons SET lock_reason = NULL, locked_at = NULL, locked_by = NULL,
                version = version + 1, updated_at = now()
         WHERE learner_id = $1",
    )
    .bind(learner_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn ine_taken_by_other(
    conn: &mut PgConnection,
    ine: &str,
    learner_id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM persons WHERE ine = $1 AND learner_id <> $2)")
        .bind(ine)
        .bind(learner_id)
        .fetch_one(conn)
        .await
}

/// Search filters; each applies only when given.
#[derive(Debug, Default, Clone)]
pub struct SearchFilter {
    /// Folded words, each of which must start a word of the learner's names.
    pub name_words: Vec<String>,
    pub login: Option<String>,
    pub learner_number: Option<String>,
    pub ine: Option<String>,
    pub population: Option<String>,
    pub agreement_id: Option<Uuid>,
    pub sponsor_unit: Option<String>,
    pub active_on: Option<Date>,
}

impl SearchFilter {
    /// True when nothing filters: such a search would list everyone.
    pub fn is_empty(&self) -> bool {
        self.name_words.is_empty()
            && self.login.is_none()
            && self.learner_number.is_none()
            && self.ine.is_none()
            && self.population.is_none()
            && self.agreement_id.is_none()
            && self.sponsor_unit.is_none()
            && self.active_on.is_none()
    }
}

/// Learner ids matching the filter, in id order after `after`.
pub async fn search(
    conn: &mut PgConnection,
    filter: &SearchFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    // Words match at the start of a word of the folded names: " durand" in " paul durand".
    // A word is matched literally: LIKE's wildcards in it are escaped.
    let patterns: Vec<String> = filter
        .name_words
        .iter()
        .map(|word| format!("% {}%", escape_like(word)))
        .collect();
    sqlx::query_scalar(
        "SELECT p.learner_id FROM persons p
         WHERE (' ' || p.folded_names) LIKE ALL($1::text[])
           AND ($2::text IS NULL OR p.login = $2)
           AND ($3::text IS NULL OR p.learner_number = $3)
           AND ($4::text IS NULL OR p.ine = $4)
           AND ($9::uuid IS NULL OR p.learner_id > $9)
           AND ($5::text IS NULL AND $6::uuid IS NULL AND $7::text IS NULL AND $8::date IS NULL
                OR EXISTS (SELECT 1 FROM stays s WHERE s.learner_id = p.learner_id AND NOT s.cancelled
                             AND ($5::text IS NULL OR s.population = $5)
                             AND ($6::uuid IS NULL OR s.agreement_id = $6)
                             AND ($7::text IS NULL OR s.sponsor_unit = $7)
                             AND ($8::date IS NULL OR (s.start_date <= $8 AND s.end_date >= $8))))
         ORDER BY p.learner_id LIMIT $10",
    )
    .bind(&patterns)
    .bind(&filter.login)
    .bind(&filter.learner_number)
    .bind(&filter.ine)
    .bind(&filter.population)
    .bind(filter.agreement_id)
    .bind(&filter.sponsor_unit)
    .bind(filter.active_on)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// `text` for a LIKE pattern that matches it literally (`\` is LIKE's escape).
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Counts of learners with a stay (not cancelled) covering `on`.
pub async fn counts(conn: &mut PgConnection, on: Date) -> Result<Counts, sqlx::Error> {
    let total: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT learner_id) FROM stays
         WHERE NOT cancelled AND start_date <= $1 AND end_date >= $1",
    )
    .bind(on)
    .fetch_one(&mut *conn)
    .await?;
    let grouped = |column: &'static str| {
        format!(
            "SELECT COALESCE({column}::text, ''), count(DISTINCT learner_id) FROM stays
             WHERE NOT cancelled AND start_date <= $1 AND end_date >= $1
             GROUP BY 1 ORDER BY 2 DESC, 1"
        )
    };
    let by_population: Vec<(String, i64)> = sqlx::query_as(&grouped("population"))
        .bind(on)
        .fetch_all(&mut *conn)
        .await?;
    let by_agreement: Vec<(String, i64)> = sqlx::query_as(&grouped("agreement_id"))
        .bind(on)
        .fetch_all(&mut *conn)
        .await?;
    let by_sponsor_unit: Vec<(String, i64)> = sqlx::query_as(&grouped("sponsor_unit"))
        .bind(on)
        .fetch_all(&mut *conn)
        .await?;
    Ok(Counts {
        total,
        by_population,
        by_agreement,
        by_sponsor_unit,
    })
}

/// Learners counted over one calendar year: those with a stay (not cancelled) on at
/// least one of its days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YearCounts {
    pub year: i32,
    pub learners: i64,
    pub by_population: Vec<(String, i64)>,
    /// The empty key counts stays under no agreement.
    pub by_agreement: Vec<(String, i64)>,
}

/// Counts per calendar year, oldest first: from stays only, so they stay the same
/// when persons are erased.
pub async fn counts_by_year(conn: &mut PgConnection) -> Result<Vec<YearCounts>, sqlx::Error> {
    // One row per (stay, year it covers), then counted three ways.
    let rows: Vec<(i32, String, String, i64)> = sqlx::query_as(
        "WITH covered AS (
             SELECT s.learner_id, s.population, COALESCE(s.agreement_id::text, '') AS agreement, y::int AS year
             FROM stays s,
                  generate_series(extract(year FROM s.start_date)::int, extract(year FROM s.end_date)::int) AS y
             WHERE NOT s.cancelled)
         SELECT year, 'total', '', count(DISTINCT learner_id) FROM covered GROUP BY year
         UNION ALL
         SELECT year, 'population', population, count(DISTINCT learner_id) FROM covered GROUP BY year, population
         UNION ALL
         SELECT year, 'agreement', agreement, count(DISTINCT learner_id) FROM covered GROUP BY year, agreement
         ORDER BY 1, 2, 4 DESC, 3",
    )
    .fetch_all(conn)
    .await?;
    let mut years: Vec<YearCounts> = Vec::new();
    for (year, kind, key, learners) in rows {
        if years.last().is_none_or(|last| last.year != year) {
            years.push(YearCounts {
                year,
                learners: 0,
                by_population: Vec::new(),
                by_agreement: Vec::new(),
            });
        }
        let Some(current) = years.last_mut() else {
            continue;
        };
        match kind.as_str() {
            "total" => current.learners = learners,
            "population" => current.by_population.push((key, learners)),
            _ => current.by_agreement.push((key, learners)),
        }
    }
    Ok(years)
}

/// Hosted learners counted on one day: only this registry's, never enrolled students.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub by_population: Vec<(String, i64)>,
    /// The empty key counts stays under no agreement.
    pub by_agreement: Vec<(String, i64)>,
    pub by_sponsor_unit: Vec<(String, i64)>,
}

/// Fills `folded_names` for persons registered before it existed, in batches.
///
/// One pass in learner id order: each batch starts after the last id seen, so a
/// stored value can never keep it going (a name that folded to nothing once made an
/// earlier version of this loop run forever, and intake never started).
pub async fn backfill_folded_names(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut filled = 0;
    let mut after = Uuid::nil();
    loop {
        let rows: Vec<(Uuid, String, Option<String>, String)> = sqlx::query_as(
            "SELECT learner_id, family_name, birth_name, given_names FROM persons
             WHERE folded_names = '' AND erased_at IS NULL AND learner_id > $1
             ORDER BY learner_id LIMIT 1000",
        )
        .bind(after)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(filled);
        };
        after = last.0;
        let ids: Vec<Uuid> = rows.iter().map(|row| row.0).collect();
        let folded: Vec<String> = rows
            .iter()
            .map(|(_, family, birth, given)| {
                crate::domain::names::folded_names(family, birth.as_deref(), given)
            })
            .collect();
        sqlx::query(
            "UPDATE persons p SET folded_names = u.folded FROM unnest($1::uuid[], $2::text[]) AS u(id, folded)
             WHERE p.learner_id = u.id",
        )
        .bind(&ids)
        .bind(&folded)
        .execute(pool)
        .await?;
        filled += rows.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("durand"), "durand");
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
