//! Registration of many stays in one transaction, with a handful of statements
//! whatever the number of rows: the cohort import and the single registration share
//! it (a single registration is a batch of one).
//!
//! Rows are checked in memory against what the database holds, loaded in bulk; each
//! row gets its own outcome, so one bad row never stops the others.

use std::collections::{HashMap, HashSet};

use hosted_platform::error::Violations;
use sqlx::PgConnection;
use time::Date;
use uuid::Uuid;

use crate::domain::{
    Registration,
    names::{self, login_candidate},
    registration::format_date,
};

/// One row to register.
#[derive(Debug, Clone)]
pub struct BatchRow {
    pub registration: Registration,
    /// Register a new person even when a near match exists.
    pub confirm_new_person: bool,
}

/// A person who may be the same as a new registration (a near match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub learner_id: Uuid,
    pub login: String,
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    Created {
        learner_id: Uuid,
        stay_id: Uuid,
        login: String,
    },
    StayAdded {
        learner_id: Uuid,
        stay_id: Uuid,
        login: String,
    },
    /// The same stay exists already: nothing written.
    Unchanged {
        learner_id: Uuid,
        stay_id: Uuid,
        login: String,
    },
    Rejected(Violations),
    PossibleDuplicate(Vec<Candidate>),
}

impl RowOutcome {
    /// The learner whose state the row changed, if it changed one.
    pub fn changed(&self) -> Option<(Uuid, Uuid)> {
        match self {
            RowOutcome::Created {
                learner_id,
                stay_id,
                ..
            }
            | RowOutcome::StayAdded {
                learner_id,
                stay_id,
                ..
            } => Some((*learner_id, *stay_id)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct KnownStay {
    stay_id: Uuid,
    population: String,
    start_date: Date,
    end_date: Date,
    cancelled: bool,
}

#[derive(Debug, Clone)]
struct KnownPerson {
    learner_id: Uuid,
    login: String,
    stays: Vec<KnownStay>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct AgreementFacts {
    agreement_id: Uuid,
    populations: Vec<String>,
    start_date: Date,
    end_date: Date,
    head_count_cap: i32,
    head_count: i64,
}

/// Settings of the numbering.
#[derive(Debug, Clone)]
pub struct Numbering {
    pub learner_number_prefix: String,
    /// Logins never given (system accounts, words that must not be logins).
    pub reserved_logins: HashSet<String>,
    pub login_pattern: names::LoginPattern,
}

/// Registers `rows` in the caller's transaction; the outcomes are in the rows' order.
pub async fn register(
    conn: &mut PgConnection,
    rows: &[BatchRow],
    numbering: &Numbering,
) -> Result<Vec<RowOutcome>, sqlx::Error> {
    let keys: Vec<String> = rows
        .iter()
        .map(|row| row.registration.person.match_key())
        .collect();
    let ines: Vec<String> = rows
        .iter()
        .filter_map(|row| row.registration.person.ine.clone())
        .collect();

    // Registrations of one identity at once are serialised (sorted: no deadlock).
    let mut lock_keys = keys.clone();
    lock_keys.sort();
    lock_keys.dedup();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) AS k ORDER BY k")
        .bind(&lock_keys)
        .execute(&mut *conn)
        .await?;

    let mut by_key: HashMap<String, KnownPerson> = HashMap::new();
    let mut by_ine: HashMap<String, String> = HashMap::new();
    load_persons(conn, &lock_keys, &ines, &mut by_key, &mut by_ine).await?;
    let mut agreements = load_agreements(conn, rows).await?;
    let near = near_matches(conn, rows, &by_key).await?;

    let mut logins = LoginAllocator::load(conn, rows, numbering).await?;
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut new_persons: Vec<(usize, Uuid, String)> = Vec::new();
    let mut new_stays: Vec<(usize, Uuid, Uuid)> = Vec::new();
    let mut touched: HashSet<Uuid> = HashSet::new();
    // Persons this batch creates, by birth date: a later row near one of them is a
    // possible duplicate too, whatever the chunk size.
    let mut created_by_date: HashMap<Date, Vec<(Candidate, String, String)>> = HashMap::new();

    for (index, row) in rows.iter().enumerate() {
        let person = &row.registration.person;
        let stay = &row.registration.stay;
        let key = &keys[index];
        let existing_key = person
            .ine
            .as_ref()
            .and_then(|ine| by_ine.get(ine).cloned())
            .or_else(|| by_key.contains_key(key).then(|| key.clone()));

        let mut violations = Violations::default();
        if let Some(agreement_id) = stay.agreement_id {
            match agreements.get(&agreement_id) {
                None => violations.add("stay.agreement_id", "no such agreement"),
                Some(agreement) => check_agreement(agreement, &row.registration, &mut violations),
            }
        }

        if let Some(existing_key) = existing_key {
            let known = by_key.get_mut(&existing_key).expect("indexed person");
            if let Some(same) = known
                .stays
                .iter()
                .find(|s| s.population == stay.population && s.start_date == stay.start_date)
            {
                outcomes.push(RowOutcome::Unchanged {
                    learner_id: known.learner_id,
                    stay_id: same.stay_id,
                    login: known.login.clone(),
                });
                continue;
            }
            if let Some(overlap) = known.stays.iter().find(|s| {
                !s.cancelled
                    && s.population == stay.population
                    && s.start_date <= stay.end_date
                    && s.end_date >= stay.start_date
            }) {
                violations.add(
                    "stay.start_date",
                    format!(
                        "overlaps a stay of the same population from {} to {}",
                        format_date(overlap.start_date),
                        format_date(overlap.end_date)
                    ),
                );
            }
            if !violations.is_empty() {
                outcomes.push(RowOutcome::Rejected(violations));
                continue;
            }
            let stay_id = Uuid::now_v7();
            known.stays.push(KnownStay {
                stay_id,
                population: stay.population.clone(),
                start_date: stay.start_date,
                end_date: stay.end_date,
                cancelled: false,
            });
            take_place(&mut agreements, stay.agreement_id);
            new_stays.push((index, known.learner_id, stay_id));
            touched.insert(known.learner_id);
            outcomes.push(RowOutcome::StayAdded {
                learner_id: known.learner_id,
                stay_id,
                login: known.login.clone(),
            });
            continue;
        }

        if !violations.is_empty() {
            outcomes.push(RowOutcome::Rejected(violations));
            continue;
        }
        let folded_name = names::fold(person.birth_name.as_deref().unwrap_or(&person.family_name));
        let folded_given = names::fold(names::first_given_name(&person.given_names));
        if !row.confirm_new_person {
            let mut candidates = near.get(&index).cloned().unwrap_or_default();
            for (candidate, name, given) in created_by_date
                .get(&person.birth_date)
                .into_iter()
                .flatten()
            {
                if names::edit_distance(&folded_name, name)
                    + names::edit_distance(&folded_given, given)
                    <= 1
                {
                    candidates.push(candidate.clone());
                }
            }
            if !candidates.is_empty() {
                outcomes.push(RowOutcome::PossibleDuplicate(candidates));
                continue;
            }
        }
        let learner_id = Uuid::now_v7();
        let login = logins.next(&person.login_base(&numbering.login_pattern));
        created_by_date.entry(person.birth_date).or_default().push((
            Candidate {
                learner_id,
                login: login.clone(),
            },
            folded_name,
            folded_given,
        ));
        let stay_id = Uuid::now_v7();
        by_key.insert(
            key.clone(),
            KnownPerson {
                learner_id,
                login: login.clone(),
                stays: vec![KnownStay {
                    stay_id,
                    population: stay.population.clone(),
                    start_date: stay.start_date,
                    end_date: stay.end_date,
                    cancelled: false,
                }],
            },
        );
        if let Some(ine) = &person.ine {
            by_ine.insert(ine.clone(), key.clone());
        }
        take_place(&mut agreements, stay.agreement_id);
        new_persons.push((index, learner_id, login.clone()));
        new_stays.push((index, learner_id, stay_id));
        outcomes.push(RowOutcome::Created {
            learner_id,
            stay_id,
            login,
        });
    }

    insert_persons(conn, rows, &keys, &new_persons, numbering, &mut logins).await?;
    // Logins were taken meanwhile by another transaction: those rows' persons got a
    // fresh login at insert time; report the login actually given.
    for outcome in &mut outcomes {
        if let RowOutcome::Created {
            learner_id, login, ..
        } = outcome
            && let Some(given) = logins.reassigned.get(learner_id)
        {
            *login = given.clone();
        }
    }
    insert_stays(conn, rows, &new_stays).await?;
    let touched: Vec<Uuid> = touched.into_iter().collect();
    sqlx::query(
        "UPDATE persons SET version = version + 1, updated_at = now() WHERE learner_id = ANY($1)",
    )
    .bind(&touched)
    .execute(&mut *conn)
    .await?;
    Ok(outcomes)
}

fn check_agreement(
    agreement: &AgreementFacts,
    registration: &Registration,
    violations: &mut Violations,
) {
    let stay = &registration.stay;
    if !agreement.populations.contains(&stay.population) {
        violations.add(
            "stay.agreement_id",
            format!(
                "the agreement does not cover population {}",
                stay.population
            ),
        );
    }
    if stay.start_date < agreement.start_date || stay.end_date > agreement.end_date {
        violations.add(
            "stay.agreement_id",
            format!(
                "the agreement runs from {} to {}: it does not cover the whole stay",
                format_date(agreement.start_date),
                format_date(agreement.end_date)
            ),
        );
    }
    if agreement.head_count_cap > 0 && agreement.head_count >= i64::from(agreement.head_count_cap) {
        violations.add(
            "stay.agreement_id",
            format!(
                "the agreement's head-count cap ({}) is reached",
                agreement.head_count_cap
            ),
        );
    }
}

fn take_place(agreements: &mut HashMap<Uuid, AgreementFacts>, agreement_id: Option<Uuid>) {
    if let Some(agreement) = agreement_id.and_then(|id| agreements.get_mut(&id)) {
        agreement.head_count += 1;
    }
}

#[derive(sqlx::FromRow)]
struct PersonStayRow {
    learner_id: Uuid,
    login: String,
    match_key: String,
    ine: Option<String>,
    stay_id: Option<Uuid>,
    population: Option<String>,
    start_date: Option<Date>,
    end_date: Option<Date>,
    cancelled: Option<bool>,
}

/// The persons the rows may be about (same INE or same match key), locked, with
/// their stays.
async fn load_persons(
    conn: &mut PgConnection,
    keys: &[String],
    ines: &[String],
    by_key: &mut HashMap<String, KnownPerson>,
    by_ine: &mut HashMap<String, String>,
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT learner_id FROM persons WHERE match_key = ANY($1) OR ine = ANY($2)
         ORDER BY learner_id FOR UPDATE",
    )
    .bind(keys)
    .bind(ines)
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(());
    }
    let rows: Vec<PersonStayRow> = sqlx::query_as(
        "SELECT p.learner_id, p.login, p.match_key, p.ine,
                s.stay_id, s.population, s.start_date, s.end_date, s.cancelled
         FROM persons p LEFT JOIN stays s ON s.learner_id = p.learner_id
         WHERE p.learner_id = ANY($1) ORDER BY p.created_at, s.start_date",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        // The oldest person wins a shared key (the registry's first record of them).
        let person = by_key
            .entry(row.match_key.clone())
            .or_insert_with(|| KnownPerson {
                learner_id: row.learner_id,
                login: row.login.clone(),
                stays: Vec::new(),
            });
        if person.learner_id != row.learner_id {
            continue;
        }
        if let Some(ine) = &row.ine {
            by_ine.insert(ine.clone(), row.match_key.clone());
        }
        if let (
            Some(stay_id),
            Some(population),
            Some(start_date),
            Some(end_date),
            Some(cancelled),
        ) = (
            row.stay_id,
            row.population,
            row.start_date,
            row.end_date,
            row.cancelled,
        ) {
            person.stays.push(KnownStay {
                stay_id,
                population,
                start_date,
                end_date,
                cancelled,
            });
        }
    }
    Ok(())
}

/// The agreements the rows name, locked (their caps are counted), with their head counts.
async fn load_agreements(
    conn: &mut PgConnection,
    rows: &[BatchRow],
) -> Result<HashMap<Uuid, AgreementFacts>, sqlx::Error> {
    let mut ids: Vec<Uuid> = rows
        .iter()
        .filter_map(|row| row.registration.stay.agreement_id)
        .collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    sqlx::query(
        "SELECT 1 FROM agreements WHERE agreement_id = ANY($1) ORDER BY agreement_id FOR UPDATE",
    )
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    let facts: Vec<AgreementFacts> = sqlx::query_as(
        "SELECT a.agreement_id, a.populations, a.start_date, a.end_date, a.head_count_cap,
                (SELECT count(*) FROM stays s WHERE s.agreement_id = a.agreement_id AND NOT s.cancelled) AS head_count
         FROM agreements a WHERE a.agreement_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(facts
        .into_iter()
        .map(|facts| (facts.agreement_id, facts))
        .collect())
}

/// Persons born the same day whose folded names are one edit away from a row's, for
/// the rows that match nobody exactly.
async fn near_matches(
    conn: &mut PgConnection,
    rows: &[BatchRow],
    exact: &HashMap<String, KnownPerson>,
) -> Result<HashMap<usize, Vec<Candidate>>, sqlx::Error> {
    let dates: Vec<Date> = rows
        .iter()
        .map(|row| row.registration.person.birth_date)
        .collect();
    let born_same_days: Vec<(Uuid, String, String, String, Option<String>, Date)> = sqlx::query_as(
        "SELECT learner_id, login, family_name, given_names, birth_name, birth_date FROM persons
         WHERE birth_date = ANY($1)",
    )
    .bind(&dates)
    .fetch_all(&mut *conn)
    .await?;
    let mut found: HashMap<usize, Vec<Candidate>> = HashMap::new();
    if born_same_days.is_empty() {
        return Ok(found);
    }
    // Folded once each, grouped by birth date: a row compares with its birthday's only.
    let mut by_date: HashMap<Date, Vec<(Candidate, String, String)>> = HashMap::new();
    for (learner_id, login, family_name, given_names, birth_name, birth_date) in born_same_days {
        let name = names::fold(birth_name.as_deref().unwrap_or(&family_name));
        let given = names::fold(names::first_given_name(&given_names));
        by_date
            .entry(birth_date)
            .or_default()
            .push((Candidate { learner_id, login }, name, given));
    }
    for (index, row) in rows.iter().enumerate() {
        let person = &row.registration.person;
        let Some(same_day) = by_date.get(&person.birth_date) else {
            continue;
        };
        if exact.contains_key(&person.match_key()) {
            continue;
        }
        let name = names::fold(person.birth_name.as_deref().unwrap_or(&person.family_name));
        let given = names::fold(names::first_given_name(&person.given_names));
        for (candidate, other_name, other_given) in same_day {
            if names::edit_distance(&name, other_name) + names::edit_distance(&given, other_given)
                <= 1
            {
                found.entry(index).or_default().push(candidate.clone());
            }
        }
    }
    Ok(found)
}

/// Hands out logins base, base2, base3… from what the registry has given, loaded at once.
#[derive(Debug)]
struct LoginAllocator {
    /// Highest suffix used per base (1 for the bare base).
    highest: HashMap<String, u32>,
    reserved: HashSet<String>,
    /// Logins changed at insert time because another transaction took them.
    reassigned: HashMap<Uuid, String>,
}

impl LoginAllocator {
    async fn load(
        conn: &mut PgConnection,
        rows: &[BatchRow],
        numbering: &Numbering,
    ) -> Result<Self, sqlx::Error> {
        let mut bases: Vec<String> = rows
            .iter()
            .map(|row| row.registration.person.login_base(&numbering.login_pattern))
            .collect();
        bases.sort();
        bases.dedup();
        let taken: Vec<String> = sqlx::query_scalar(
            // Logins are [a-z0-9.-]: every login that starts with a base sorts
            // between the base and the base followed by '~'.
            r#"SELECT l.login FROM unnest($1::text[]) AS b(base)
               JOIN logins l ON l.login COLLATE "C" >= b.base COLLATE "C"
                            AND l.login COLLATE "C" < (b.base || '~') COLLATE "C""#,
        )
        .bind(&bases)
        .fetch_all(&mut *conn)
        .await?;
        let mut allocator = Self {
            highest: HashMap::new(),
            reserved: numbering.reserved_logins.clone(),
            reassigned: HashMap::new(),
        };
        for login in taken {
            allocator.note(&login, &bases);
        }
        Ok(allocator)
    }

    /// Records a login as used, under the base it derives from.
    fn note(&mut self, login: &str, bases: &[String]) {
        for base in bases {
            if let Some(suffix) = login.strip_prefix(base.as_str()) {
                let n = if suffix.is_empty() {
                    Some(1)
                } else if suffix.chars().all(|c| c.is_ascii_digit()) && !suffix.starts_with('0') {
                    suffix.parse::<u32>().ok()
                } else {
                    None
                };
                if let Some(n) = n {
                    let highest = self.highest.entry(base.clone()).or_insert(0);
                    *highest = (*highest).max(n);
                }
            }
        }
    }

    fn next(&mut self, base: &str) -> String {
        loop {
            let highest = self.highest.entry(base.to_owned()).or_insert(0);
            *highest += 1;
            let candidate = login_candidate(base, *highest);
            if !self.reserved.contains(&candidate) {
                return candidate;
            }
        }
    }
}

async fn insert_persons(
    conn: &mut PgConnection,
    rows: &[BatchRow],
    keys: &[String],
    new_persons: &[(usize, Uuid, String)],
    numbering: &Numbering,
    logins: &mut LoginAllocator,
) -> Result<(), sqlx::Error> {
    if new_persons.is_empty() {
        return Ok(());
    }
    // Logins first: one taken by a concurrent transaction gets the next free one.
    let mut pending: Vec<(Uuid, String, String)> = new_persons
        .iter()
        .map(|(index, learner_id, login)| {
            (
                *learner_id,
                login.clone(),
                rows[*index]
                    .registration
                    .person
                    .login_base(&numbering.login_pattern),
            )
        })
        .collect();
    let mut given: HashMap<Uuid, String> = HashMap::new();
    while !pending.is_empty() {
        let ids: Vec<Uuid> = pending.iter().map(|(id, _, _)| *id).collect();
        let candidates: Vec<String> = pending.iter().map(|(_, login, _)| login.clone()).collect();
        let inserted: Vec<(Uuid, String)> = sqlx::query_as(
            "INSERT INTO logins (login, learner_id) SELECT * FROM unnest($1::text[], $2::uuid[])
             ON CONFLICT DO NOTHING RETURNING learner_id, login",
        )
        .bind(&candidates)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        for (learner_id, login) in inserted {
            given.insert(learner_id, login);
        }
        pending.retain(|(id, _, _)| !given.contains_key(id));
        for (learner_id, login, base) in &mut pending {
            *login = logins.next(base);
            logins.reassigned.insert(*learner_id, login.clone());
        }
    }

    let count = i64::try_from(new_persons.len()).unwrap_or(i64::MAX);
    let numbers: Vec<i64> =
        sqlx::query_scalar("SELECT nextval('learner_number_seq') FROM generate_series(1, $1)")
            .bind(count)
            .fetch_all(&mut *conn)
            .await?;
    let mut learner_ids = Vec::with_capacity(new_persons.len());
    let mut learner_numbers = Vec::with_capacity(new_persons.len());
    let mut login_values = Vec::with_capacity(new_persons.len());
    let mut family_names = Vec::with_capacity(new_persons.len());
    let mut birth_names = Vec::with_capacity(new_persons.len());
    let mut given_names = Vec::with_capacity(new_persons.len());
    let mut birth_dates = Vec::with_capacity(new_persons.len());
    let mut emails = Vec::with_capacity(new_persons.len());
    let mut ines = Vec::with_capacity(new_persons.len());
    let mut phones = Vec::with_capacity(new_persons.len());
    let mut match_keys = Vec::with_capacity(new_persons.len());
    let mut folded_names = Vec::with_capacity(new_persons.len());
    for ((index, learner_id, _), number) in new_persons.iter().zip(numbers) {
        let person = &rows[*index].registration.person;
        learner_ids.push(*learner_id);
        learner_numbers.push(format!("{}{number:08}", numbering.learner_number_prefix));
        login_values.push(given.get(learner_id).cloned().unwrap_or_default());
        family_names.push(person.family_name.clone());
        birth_names.push(person.birth_name.clone());
        given_names.push(person.given_names.clone());
        birth_dates.push(person.birth_date);
        emails.push(person.email.clone());
        ines.push(person.ine.clone());
        phones.push(person.phone.clone());
        match_keys.push(keys[*index].clone());
        folded_names.push(person.folded_names());
    }
    sqlx::query(
        "INSERT INTO persons (learner_id, learner_number, login, family_name, birth_name, given_names,
                              birth_date, email, ine, phone, match_key, folded_names)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                              $7::date[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])",
    )
    .bind(&learner_ids)
    .bind(&learner_numbers)
    .bind(&login_values)
    .bind(&family_names)
    .bind(&birth_names)
    .bind(&given_names)
    .bind(&birth_dates)
    .bind(&emails)
    .bind(&ines)
    .bind(&phones)
    .bind(&match_keys)
    .bind(&folded_names)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_stays(
    conn: &mut PgConnection,
    rows: &[BatchRow],
    new_stays: &[(usize, Uuid, Uuid)],
) -> Result<(), sqlx::Error> {
    if new_stays.is_empty() {
        return Ok(());
    }
    let mut stay_ids = Vec::with_capacity(new_stays.len());
    let mut learner_ids = Vec::with_capacity(new_stays.len());
    let mut populations = Vec::with_capacity(new_stays.len());
    let mut sponsor_units = Vec::with_capacity(new_stays.len());
    let mut sponsor_logins = Vec::with_capacity(new_stays.len());
    let mut agreement_ids = Vec::with_capacity(new_stays.len());
    let mut start_dates = Vec::with_capacity(new_stays.len());
    let mut end_dates = Vec::with_capacity(new_stays.len());
    // One list per stay: unnest flattens a two-dimensional array, so each list
    // travels as a JSON array.
    let mut requested_resources = Vec::with_capacity(new_stays.len());
    for (index, learner_id, stay_id) in new_stays {
        let stay = &rows[*index].registration.stay;
        stay_ids.push(*stay_id);
        learner_ids.push(*learner_id);
        populations.push(stay.population.clone());
        sponsor_units.push(stay.sponsor_unit.clone());
        sponsor_logins.push(stay.sponsor_login.clone());
        agreement_ids.push(stay.agreement_id);
        start_dates.push(stay.start_date);
        end_dates.push(stay.end_date);
        requested_resources.push(sqlx::types::Json(&stay.requested_resources));
    }
    // What a stay costs follows its agreement's payer, or its population's rule
    // when it has no agreement.
    sqlx::query(
        "INSERT INTO stays (stay_id, learner_id, population, sponsor_unit, sponsor_login, agreement_id,
                            start_date, end_date, payment_status, requested_resources)
         SELECT n.stay_id, n.learner_id, n.population, n.sponsor_unit, n.sponsor_login, n.agreement_id,
                n.start_date, n.end_date,
                CASE WHEN a.payer IN ('learner', 'partner') THEN 'due'
                     WHEN a.agreement_id IS NULL AND p.payment_required THEN 'due'
                     ELSE 'not_required' END,
                ARRAY(SELECT r.name FROM jsonb_array_elements_text(n.requested_resources) WITH ORDINALITY
                      AS r(name, position) ORDER BY r.position)
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::date[], $8::date[],
                     $9::jsonb[])
              AS n(stay_id, learner_id, population, sponsor_unit, sponsor_login, agreement_id, start_date, end_date,
                   requested_resources)
         JOIN populations p ON p.code = n.population
         LEFT JOIN agreements a ON a.agreement_id = n.agreement_id",
    )
    .bind(&stay_ids)
    .bind(&learner_ids)
    .bind(&populations)
    .bind(&sponsor_units)
    .bind(&sponsor_logins)
    .bind(&agreement_ids)
    .bind(&start_dates)
    .bind(&end_dates)
    .bind(&requested_resources)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
