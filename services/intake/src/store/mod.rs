//! The intake database: persons, stays, logins and the population catalogue;
//! agreements, payments and the audit trail in their own modules.

pub mod agreements;
pub mod audit;
pub mod payments;
pub mod stays;

use sqlx::{PgConnection, PgPool};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::domain::{NewPerson, NewStay, Population, Registration};
use hosted_platform::error::Violations;

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
}

/// A learner's whole state at one version.
#[derive(Debug, Clone)]
pub struct LearnerRecord {
    pub person: PersonRow,
    pub stays: Vec<StayRow>,
}

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    NewPerson,
    StayAdded,
    /// The same stay was registered before: nothing changed.
    AlreadyRegistered,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct PopulationRow {
    code: String,
    label: String,
    supann_population: String,
    agreement_required: bool,
    default_duration_days: i32,
    max_duration_days: i32,
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
        }
    }
}

pub async fn population(pool: &PgPool, code: &str) -> Result<Option<Population>, sqlx::Error> {
    let row: Option<PopulationRow> = sqlx::query_as(
        "SELECT code, label, supann_population, agreement_required, default_duration_days, max_duration_days
         FROM populations WHERE code = $1",
    )
    .bind(code.trim())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Population::from))
}

pub async fn populations(pool: &PgPool) -> Result<Vec<Population>, sqlx::Error> {
    let rows: Vec<PopulationRow> = sqlx::query_as(
        "SELECT code, label, supann_population, agreement_required, default_duration_days, max_duration_days
         FROM populations ORDER BY code",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Population::from).collect())
}

const PERSON_COLUMNS: &str = "learner_id, learner_number, login, family_name, birth_name, given_names, \
     birth_date, email, ine, phone, version, created_at, updated_at";

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
                s.start_date, s.end_date, s.cancelled, s.payment_status, s.end_reason
         FROM stays s JOIN populations p ON p.code = s.population
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
    sqlx::query_scalar(sql)
        .bind(value.trim())
        .fetch_optional(pool)
        .await
}

#[derive(Debug, Clone, Copy)]
pub enum LookupKey {
    Login,
    LearnerNumber,
}

/// Finds the person a registration is about: the same INE, else the same match key.
async fn matching_person(
    conn: &mut PgConnection,
    person: &NewPerson,
) -> Result<Option<Uuid>, sqlx::Error> {
    if let Some(ine) = &person.ine {
        let by_ine: Option<Uuid> =
            sqlx::query_scalar("SELECT learner_id FROM persons WHERE ine = $1")
                .bind(ine)
                .fetch_optional(&mut *conn)
                .await?;
        if by_ine.is_some() {
            return Ok(by_ine);
        }
    }
    sqlx::query_scalar(
        "SELECT learner_id FROM persons WHERE match_key = $1 ORDER BY created_at LIMIT 1",
    )
    .bind(person.match_key())
    .fetch_optional(&mut *conn)
    .await
}

/// Gives the first free login of the form base, base2, base3… and records it for good.
async fn allocate_login(
    conn: &mut PgConnection,
    base: &str,
    learner_id: Uuid,
) -> Result<String, sqlx::Error> {
    let pattern = format!("^{}[0-9]*$", regex_escape(base));
    let taken: Vec<String> = sqlx::query_scalar("SELECT login FROM logins WHERE login ~ $1")
        .bind(&pattern)
        .fetch_all(&mut *conn)
        .await?;
    let mut n = taken
        .iter()
        .map(|login| {
            let suffix = &login[base.len()..];
            if suffix.is_empty() {
                1
            } else {
                suffix.parse::<u32>().unwrap_or(0)
            }
        })
        .max()
        .map_or(1, |highest| highest + 1);
    loop {
        let candidate = crate::domain::names::login_candidate(base, n);
        let inserted = sqlx::query(
            "INSERT INTO logins (login, learner_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&candidate)
        .bind(learner_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(candidate);
        }
        n += 1;
    }
}

fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Registers a stay, creating the person when they are not known yet. The caller
/// owns the transaction.
pub async fn register(
    conn: &mut PgConnection,
    registration: &Registration,
    number_prefix: &str,
) -> Result<Result<(Uuid, Uuid, Registered), Violations>, sqlx::Error> {
    let person = &registration.person;
    let stay = &registration.stay;
    // Serialises registrations of the same identity, so two at once cannot make twins.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(person.match_key())
        .execute(&mut *conn)
        .await?;

    let mut violations = Violations::default();
    if let Some(agreement_id) = stay.agreement_id {
        check_agreement(conn, agreement_id, stay, &mut violations).await?;
    }

    let existing = matching_person(conn, person).await?;
    if let Some(learner_id) = existing {
        sqlx::query("SELECT 1 FROM persons WHERE learner_id = $1 FOR UPDATE")
            .bind(learner_id)
            .execute(&mut *conn)
            .await?;
        let same: Option<Uuid> = sqlx::query_scalar(
            "SELECT stay_id FROM stays WHERE learner_id = $1 AND population = $2 AND start_date = $3",
        )
        .bind(learner_id)
        .bind(&stay.population)
        .bind(stay.start_date)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(stay_id) = same {
            return Ok(Ok((learner_id, stay_id, Registered::AlreadyRegistered)));
        }
        let overlapping: Option<(Date, Date)> = sqlx::query_as(
            "SELECT start_date, end_date FROM stays
             WHERE learner_id = $1 AND population = $2 AND NOT cancelled
               AND start_date <= $4 AND end_date >= $3 LIMIT 1",
        )
        .bind(learner_id)
        .bind(&stay.population)
        .bind(stay.start_date)
        .bind(stay.end_date)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((start, end)) = overlapping {
            violations.add(
                "stay.start_date",
                format!(
                    "overlaps a stay of the same population from {} to {}",
                    crate::domain::registration::format_date(start),
                    crate::domain::registration::format_date(end)
                ),
            );
        }
        if !violations.is_empty() {
            return Ok(Err(violations));
        }
        let stay_id = insert_stay(conn, learner_id, stay).await?;
        sqlx::query(
            "UPDATE persons SET version = version + 1, updated_at = now() WHERE learner_id = $1",
        )
        .bind(learner_id)
        .execute(&mut *conn)
        .await?;
        return Ok(Ok((learner_id, stay_id, Registered::StayAdded)));
    }
    if !violations.is_empty() {
        return Ok(Err(violations));
    }

    let learner_id = Uuid::now_v7();
    let login = allocate_login(conn, &person.login_base(), learner_id).await?;
    let number: i64 = sqlx::query_scalar("SELECT nextval('learner_number_seq')")
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO persons (learner_id, learner_number, login, family_name, birth_name, given_names,
                              birth_date, email, ine, phone, match_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(learner_id)
    .bind(format!("{number_prefix}{number:08}"))
    .bind(&login)
    .bind(&person.family_name)
    .bind(&person.birth_name)
    .bind(&person.given_names)
    .bind(person.birth_date)
    .bind(&person.email)
    .bind(&person.ine)
    .bind(&person.phone)
    .bind(person.match_key())
    .execute(&mut *conn)
    .await?;
    let stay_id = insert_stay(conn, learner_id, stay).await?;
    Ok(Ok((learner_id, stay_id, Registered::NewPerson)))
}

async fn check_agreement(
    conn: &mut PgConnection,
    agreement_id: Uuid,
    stay: &NewStay,
    violations: &mut Violations,
) -> Result<(), sqlx::Error> {
    // Locked until the registration commits, so that two registrations at once
    // cannot both take the last place under the cap.
    let agreement: Option<(Vec<String>, Date, Date, i32)> = sqlx::query_as(
        "SELECT populations, start_date, end_date, head_count_cap FROM agreements
         WHERE agreement_id = $1 FOR UPDATE",
    )
    .bind(agreement_id)
    .fetch_optional(&mut *conn)
    .await?;
    match agreement {
        None => violations.add("stay.agreement_id", "no such agreement"),
        Some((populations, start, end, cap)) => {
            if !populations.contains(&stay.population) {
                violations.add(
                    "stay.agreement_id",
                    format!(
                        "the agreement does not cover population {}",
                        stay.population
                    ),
                );
            }
            if stay.start_date < start || stay.end_date > end {
                violations.add(
                    "stay.agreement_id",
                    format!(
                        "the agreement runs from {} to {}: it does not cover the whole stay",
                        crate::domain::registration::format_date(start),
                        crate::domain::registration::format_date(end)
                    ),
                );
            }
            if cap > 0 {
                let taken = agreements::head_count(conn, agreement_id).await?;
                if taken >= i64::from(cap) {
                    violations.add(
                        "stay.agreement_id",
                        format!("the agreement's head-count cap ({cap}) is reached"),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Inserts a stay. What it costs follows its agreement's payer, or the population's
/// rule when it has no agreement.
async fn insert_stay(
    conn: &mut PgConnection,
    learner_id: Uuid,
    stay: &NewStay,
) -> Result<Uuid, sqlx::Error> {
    let stay_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO stays (stay_id, learner_id, population, sponsor_unit, sponsor_login, agreement_id,
                            start_date, end_date, payment_status)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8,
                CASE WHEN a.payer IN ('learner', 'partner') THEN 'due'
                     WHEN a.agreement_id IS NULL AND p.payment_required THEN 'due'
                     ELSE 'not_required' END
         FROM populations p LEFT JOIN agreements a ON a.agreement_id = $6
         WHERE p.code = $3",
    )
    .bind(stay_id)
    .bind(learner_id)
    .bind(&stay.population)
    .bind(&stay.sponsor_unit)
    .bind(&stay.sponsor_login)
    .bind(stay.agreement_id)
    .bind(stay.start_date)
    .bind(stay.end_date)
    .execute(&mut *conn)
    .await?;
    Ok(stay_id)
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
                ine = $7, phone = $8, match_key = $9, version = version + 1, updated_at = now()
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
    .bind(person.match_key())
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
