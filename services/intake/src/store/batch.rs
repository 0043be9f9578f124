//! Registration of many stays in one transaction, with a handful of statements
//! whatever the number of rows: the cohort import and the single registration share
//! it (a single registration is a batch of one).
//!
//! The facts rows are decided on are loaded in bulk (persons born the same days or
//! holding the rows' INEs, with their stays; the agreements named); the decisions are
//! the domain's ([`crate::domain::admission`]); each row gets its own outcome, so one
//! bad row never stops the others.

use std::collections::{HashMap, HashSet};

use hosted_platform::error::Violations;
use sqlx::PgConnection;
use time::Date;
use uuid::Uuid;

use crate::domain::{
    Registration,
    admission::{self, AgreementTerms, KnownPerson, KnownStay, Resolution, StayFit},
    names::{self, Identity, NearReason},
};

/// One row to register.
#[derive(Debug, Clone)]
pub struct BatchRow {
    pub registration: Registration,
    /// Register a new person even when a near match exists.
    pub confirm_new_person: bool,
}

/// A person who may be the same as a new registration (a near match), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub learner_id: Uuid,
    pub login: String,
    pub reason: NearReason,
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
        /// The row gave the INE the person lacked: it is recorded.
        ine_recorded: bool,
    },
    /// The same stay exists already: nothing written.
    Unchanged {
        learner_id: Uuid,
        stay_id: Uuid,
        login: String,
    },
    /// An earlier row of the batch (this index) registers the same person and stay.
    DuplicateOfRow(usize),
    /// The request is wrong (INVALID_ARGUMENT).
    Rejected(Violations),
    /// The registry's state does not allow it (FAILED_PRECONDITION): an INE that is
    /// another person's, an agreement's cap reached.
    Refused(Violations),
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

    /// The outcome as a dry run tells it: no ids for what would be created.
    pub fn predicted(self) -> Self {
        match self {
            RowOutcome::Created { .. } => RowOutcome::Created {
                learner_id: Uuid::nil(),
                stay_id: Uuid::nil(),
                login: String::new(),
            },
            RowOutcome::StayAdded {
                learner_id,
                login,
                ine_recorded,
                ..
            } => RowOutcome::StayAdded {
                learner_id,
                stay_id: Uuid::nil(),
                login,
                ine_recorded,
            },
            other => other,
        }
    }
}

/// Settings of the numbering.
#[derive(Debug, Clone)]
pub struct Numbering {
    pub learner_number_prefix: String,
    /// Logins never given (system accounts, words that must not be logins).
    pub reserved_logins: HashSet<String>,
    pub login_pattern: names::LoginPattern,
    /// The key of erased logins' digests: a login whose digest is in `erased_logins`
    /// is never given again.
    pub login_key: crate::domain::erasure::LoginKey,
}

/// The advisory locks that serialise registrations (and identity corrections) that
/// could be about one person: one per birth date and one per INE.
pub fn identity_lock_keys<'a>(
    identities: impl IntoIterator<Item = (Date, Option<&'a str>)>,
) -> Vec<String> {
    let mut keys: Vec<String> = identities
        .into_iter()
        .flat_map(|(birth_date, ine)| {
            [
                Some(format!("born:{birth_date}")),
                ine.map(|ine| format!("ine:{ine}")),
            ]
        })
        .flatten()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Takes the locks of [`identity_lock_keys`], in order (no deadlock).
pub async fn lock_identities(conn: &mut PgConnection, keys: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) AS k ORDER BY k",
    )
    .bind(keys)
    .execute(conn)
    .await?;
    Ok(())
}

/// The persons rows may be about, oldest first, indexed by birth date and INE.
#[derive(Debug, Default)]
struct KnownPersons {
    persons: Vec<KnownPerson>,
    by_date: HashMap<Date, Vec<usize>>,
    by_ine: HashMap<String, usize>,
}

impl KnownPersons {
    fn add(&mut self, person: KnownPerson) -> usize {
        let index = self.persons.len();
        self.by_date
            .entry(person.identity.birth_date())
            .or_default()
            .push(index);
        if let Some(ine) = person.identity.ine() {
            self.by_ine.insert(ine.to_owned(), index);
        }
        self.persons.push(person);
        index
    }

    /// Persons born the same day as `identity`, and the holder of its INE.
    fn around(&self, identity: &Identity) -> Vec<usize> {
        let mut around: Vec<usize> = self
            .by_date
            .get(&identity.birth_date())
            .cloned()
            .unwrap_or_default();
        if let Some(holder) = identity.ine().and_then(|ine| self.by_ine.get(ine))
            && !around.contains(holder)
        {
            around.push(*holder);
        }
        around.sort_unstable();
        around
    }
}

/// Registers `rows` in the caller's transaction; the outcomes are in the rows' order.
pub async fn register(
    conn: &mut PgConnection,
    rows: &[BatchRow],
    numbering: &Numbering,
) -> Result<Vec<RowOutcome>, sqlx::Error> {
    let identities: Vec<Identity> = rows
        .iter()
        .map(|row| admission::identity_of(&row.registration.person))
        .collect();
    let lock_keys = identity_lock_keys(
        identities
            .iter()
            .map(|identity| (identity.birth_date(), identity.ine())),
    );
    lock_identities(conn, &lock_keys).await?;

    let mut known = load_persons(conn, &identities).await?;
    let mut agreements = load_agreements(conn, rows).await?;
    let mut logins = LoginAllocator::load(conn, rows, numbering).await?;
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut new_persons: Vec<(usize, Uuid, String)> = Vec::new();
    let mut new_stays: Vec<(usize, Uuid, Uuid)> = Vec::new();
    let mut recorded_ines: Vec<(Uuid, String)> = Vec::new();
    let mut touched: HashSet<Uuid> = HashSet::new();

    for (index, row) in rows.iter().enumerate() {
        let identity = &identities[index];
        let stay = &row.registration.stay;
        let mut violations = Violations::default();
        if let Some(agreement_id) = stay.agreement_id {
            match agreements.get(&agreement_id) {
                None => violations.add("stay.agreement_id", "no such agreement"),
                Some(terms) => terms.check_coverage(stay, &mut violations),
            }
        }
        let around = known.around(identity);
        let candidates: Vec<&KnownPerson> = around.iter().map(|&i| &known.persons[i]).collect();
        let resolution = admission::resolve(identity, &candidates, row.confirm_new_person);
        let existing = match resolution {
            Resolution::IneOfAnother => {
                let mut refusal = Violations::default();
                refusal.add(
                    "person.ine",
                    "already the INE of another learner: check the INE, or correct that learner's identity",
                );
                outcomes.push(RowOutcome::Refused(refusal));
                continue;
            }
            Resolution::PossibleDuplicate(near) if violations.is_empty() => {
                outcomes.push(RowOutcome::PossibleDuplicate(
                    near.into_iter()
                        .map(|(i, reason)| {
                            let person = candidates[i];
                            Candidate {
                                learner_id: person.learner_id,
                                login: person.login.clone(),
                                reason,
                            }
                        })
                        .collect(),
                ));
                continue;
            }
            Resolution::PossibleDuplicate(_) | Resolution::New => None,
            Resolution::Existing(i) => Some(around[i]),
        };

        if let Some(person_index) = existing {
            let person = &known.persons[person_index];
            match admission::fit_stay(&person.stays, stay) {
                StayFit::Same {
                    from_row: Some(earlier),
                    ..
                } => {
                    outcomes.push(RowOutcome::DuplicateOfRow(earlier));
                    continue;
                }
                StayFit::Same { stay_id, .. } => {
                    outcomes.push(RowOutcome::Unchanged {
                        learner_id: person.learner_id,
                        stay_id,
                        login: person.login.clone(),
                    });
                    continue;
                }
                StayFit::Overlaps(overlap) => violations.0.extend(overlap.0),
                StayFit::New => {}
            }
        }
        if !violations.is_empty() {
            outcomes.push(RowOutcome::Rejected(violations));
            continue;
        }
        if let Some(terms) = stay.agreement_id.and_then(|id| agreements.get_mut(&id)) {
            if let Err(refusal) = terms.check_cap(stay) {
                outcomes.push(RowOutcome::Refused(refusal));
                continue;
            }
            terms.take_place(stay);
        }

        let stay_id = Uuid::now_v7();
        let added = KnownStay {
            stay_id,
            population: stay.population.clone(),
            start_date: stay.start_date,
            end_date: stay.end_date,
            cancelled: false,
            from_row: Some(index),
        };
        if let Some(person_index) = existing {
            let ine = row.registration.person.ine.clone();
            let person = &mut known.persons[person_index];
            person.stays.push(added);
            let ine_recorded = person.identity.ine().is_none() && ine.is_some();
            if let (true, Some(ine)) = (ine_recorded, ine) {
                person.identity = person.identity.clone().with_ine(&ine);
                recorded_ines.push((person.learner_id, ine.clone()));
                known.by_ine.insert(ine, person_index);
            }
            new_stays.push((index, person.learner_id, stay_id));
            touched.insert(person.learner_id);
            outcomes.push(RowOutcome::StayAdded {
                learner_id: person.learner_id,
                stay_id,
                login: person.login.clone(),
                ine_recorded,
            });
            continue;
        }
        let learner_id = Uuid::now_v7();
        let login = logins.next(&row.registration.person.login_base(&numbering.login_pattern));
        known.add(KnownPerson {
            learner_id,
            login: login.clone(),
            identity: identity.clone(),
            stays: vec![added],
        });
        new_persons.push((index, learner_id, login.clone()));
        new_stays.push((index, learner_id, stay_id));
        outcomes.push(RowOutcome::Created {
            learner_id,
            stay_id,
            login,
        });
    }

    insert_persons(conn, rows, &new_persons, numbering, &mut logins).await?;
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
    if !recorded_ines.is_empty() {
        let (ids, ines): (Vec<Uuid>, Vec<String>) = recorded_ines.into_iter().unzip();
        sqlx::query(
            "UPDATE persons p SET ine = u.ine FROM unnest($1::uuid[], $2::text[]) AS u(id, ine)
             WHERE p.learner_id = u.id AND p.ine IS NULL",
        )
        .bind(&ids)
        .bind(&ines)
        .execute(&mut *conn)
        .await?;
    }
    let touched: Vec<Uuid> = touched.into_iter().collect();
    sqlx::query(
        "UPDATE persons SET version = version + 1, updated_at = now() WHERE learner_id = ANY($1)",
    )
    .bind(&touched)
    .execute(&mut *conn)
    .await?;
    Ok(outcomes)
}

#[derive(sqlx::FromRow)]
struct PersonStayRow {
    learner_id: Uuid,
    login: String,
    family_name: String,
    birth_name: Option<String>,
    given_names: String,
    birth_date: Date,
    ine: Option<String>,
    stay_id: Option<Uuid>,
    population: Option<String>,
    start_date: Option<Date>,
    end_date: Option<Date>,
    cancelled: Option<bool>,
}

/// The persons the rows may be about (born the same days, or holding their INEs),
/// oldest first, with their stays.
async fn load_persons(
    conn: &mut PgConnection,
    identities: &[Identity],
) -> Result<KnownPersons, sqlx::Error> {
    let mut dates: Vec<Date> = identities.iter().map(Identity::birth_date).collect();
    dates.sort();
    dates.dedup();
    let ines: Vec<String> = identities
        .iter()
        .filter_map(|identity| identity.ine().map(str::to_owned))
        .collect();
    let rows: Vec<PersonStayRow> = sqlx::query_as(
        "SELECT p.learner_id, p.login, p.family_name, p.birth_name, p.given_names, p.birth_date, p.ine,
                s.stay_id, s.population, s.start_date, s.end_date, s.cancelled
         FROM persons p LEFT JOIN stays s ON s.learner_id = p.learner_id
         WHERE p.birth_date = ANY($1) OR p.ine = ANY($2)
         ORDER BY p.created_at, p.learner_id, s.start_date",
    )
    .bind(&dates)
    .bind(&ines)
    .fetch_all(&mut *conn)
    .await?;
    let mut known = KnownPersons::default();
    let mut current: Option<KnownPerson> = None;
    for row in rows {
        if current
            .as_ref()
            .is_none_or(|person| person.learner_id != row.learner_id)
        {
            if let Some(done) = current.take() {
                known.add(done);
            }
            current = Some(KnownPerson {
                learner_id: row.learner_id,
                login: row.login.clone(),
                identity: Identity::new(
                    &row.family_name,
                    row.birth_name.as_deref(),
                    &row.given_names,
                    row.birth_date,
                    row.ine.as_deref(),
                ),
                stays: Vec::new(),
            });
        }
        if let (
            Some(person),
            Some(stay_id),
            Some(population),
            Some(start_date),
            Some(end_date),
            Some(cancelled),
        ) = (
            current.as_mut(),
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
                from_row: None,
            });
        }
    }
    if let Some(done) = current {
        known.add(done);
    }
    Ok(known)
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct AgreementRow {
    agreement_id: Uuid,
    populations: Vec<String>,
    start_date: Date,
    end_date: Date,
    head_count_cap: i32,
    stay_starts: Vec<Date>,
    stay_ends: Vec<Date>,
}

/// The agreements the rows name, locked (their caps are counted), with the periods
/// of their stays when they have a cap.
async fn load_agreements(
    conn: &mut PgConnection,
    rows: &[BatchRow],
) -> Result<HashMap<Uuid, AgreementTerms>, sqlx::Error> {
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
    let found: Vec<AgreementRow> = sqlx::query_as(
        "SELECT a.agreement_id, a.populations, a.start_date, a.end_date, a.head_count_cap,
                COALESCE(s.starts, '{}') AS stay_starts, COALESCE(s.ends, '{}') AS stay_ends
         FROM agreements a
         LEFT JOIN LATERAL (SELECT array_agg(start_date) AS starts, array_agg(end_date) AS ends
                            FROM stays WHERE agreement_id = a.agreement_id AND NOT cancelled) s
                ON a.head_count_cap > 0
         WHERE a.agreement_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(found
        .into_iter()
        .map(|row| {
            let stays = row.stay_starts.into_iter().zip(row.stay_ends).collect();
            (
                row.agreement_id,
                AgreementTerms {
                    populations: row.populations,
                    start_date: row.start_date,
                    end_date: row.end_date,
                    head_count_cap: row.head_count_cap,
                    stays,
                },
            )
        })
        .collect())
}

/// Hands out logins base, base2, base3… (each within the maximum length) from what the
/// registry has given, loaded at once.
#[derive(Debug)]
struct LoginAllocator {
    pattern: names::LoginPattern,
    /// Every login given that a candidate of the rows' bases could be.
    taken: HashSet<String>,
    /// The next suffix to try, per base.
    next_suffix: HashMap<String, u32>,
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
        let pattern = numbering.login_pattern.clone();
        let mut prefixes: Vec<String> = rows
            .iter()
            .map(|row| {
                let base = row.registration.person.login_base(&pattern);
                pattern.candidates_prefix(&base).to_owned()
            })
            .collect();
        prefixes.sort();
        prefixes.dedup();
        let taken: Vec<String> = sqlx::query_scalar(
            // Logins are [a-z0-9.-_]: every login that starts with a prefix sorts
            // between the prefix and the prefix followed by '~'.
            r#"SELECT DISTINCT l.login FROM unnest($1::text[]) AS b(prefix)
               JOIN logins l ON l.login COLLATE "C" >= b.prefix COLLATE "C"
                            AND l.login COLLATE "C" < (b.prefix || '~') COLLATE "C""#,
        )
        .bind(&prefixes)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Self {
            pattern,
            taken: taken.into_iter().collect(),
            next_suffix: HashMap::new(),
            reserved: numbering.reserved_logins.clone(),
            reassigned: HashMap::new(),
        })
    }

    fn next(&mut self, base: &str) -> String {
        let suffix = self.next_suffix.entry(base.to_owned()).or_insert(1);
        loop {
            let candidate = self.pattern.candidate(base, *suffix);
            *suffix += 1;
            if !self.taken.contains(&candidate) && !self.reserved.contains(&candidate) {
                self.taken.insert(candidate.clone());
                return candidate;
            }
        }
    }
}

async fn insert_persons(
    conn: &mut PgConnection,
    rows: &[BatchRow],
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
        // A login an erased person had is given to nobody else: its digest says so.
        let digests: Vec<Vec<u8>> = pending
            .iter()
            .map(|(_, login, _)| numbering.login_key.digest(login))
            .collect();
        let erased: HashSet<Vec<u8>> =
            sqlx::query_scalar("SELECT digest FROM erased_logins WHERE digest = ANY($1)")
                .bind(&digests)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
        let (ids, candidates): (Vec<Uuid>, Vec<String>) = pending
            .iter()
            .zip(&digests)
            .filter(|(_, digest)| !erased.contains(*digest))
            .map(|((id, login, _), _)| (*id, login.clone()))
            .unzip();
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
        folded_names.push(person.folded_names());
    }
    sqlx::query(
        "INSERT INTO persons (learner_id, learner_number, login, family_name, birth_name, given_names,
                              birth_date, email, ine, phone, folded_names)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                              $7::date[], $8::text[], $9::text[], $10::text[], $11::text[])",
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
