//! Cards's tables: the learners as the card office knows them, the cards and their
//! transitions, print batches and e-purse rights.

use hosted_platform::personal_data::Related;
use sqlx::PgConnection;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::domain::lifecycle::State;

/// Who a learner is, from intake's facts.
#[derive(Debug, Clone, Default)]
pub struct Person {
    pub learner_id: Uuid,
    pub login: String,
    pub learner_number: String,
    pub family_name: String,
    pub given_names: String,
    pub birth_date: String,
    pub email: String,
    pub ine: String,
    pub version: i64,
}

/// What a learner holds of the two grants the card office follows, on one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holding {
    /// The last day of the smart-card grants in force or to come.
    pub card_until: Option<Date>,
    pub card_in_force: bool,
    pub epurse_until: Option<Date>,
    pub epurse_in_force: bool,
}

/// Keeps a learner's identity when it is newer than what is held and the learner was
/// not erased (whatever the version: an erased person never comes back); says
/// whether it was kept.
pub async fn save_person(conn: &mut PgConnection, person: &Person) -> Result<bool, sqlx::Error> {
    let saved = sqlx::query(
        "INSERT INTO learners (learner_id, login, learner_number, family_name, given_names,
                               birth_date, email, ine, person_version)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
         WHERE NOT EXISTS (SELECT 1 FROM erased_learners WHERE learner_id = $1)
         ON CONFLICT (learner_id) DO UPDATE
         SET login = EXCLUDED.login, learner_number = EXCLUDED.learner_number,
             family_name = EXCLUDED.family_name, given_names = EXCLUDED.given_names,
             birth_date = EXCLUDED.birth_date, email = EXCLUDED.email, ine = EXCLUDED.ine,
             person_version = EXCLUDED.person_version
         WHERE learners.person_version < EXCLUDED.person_version AND NOT learners.erased",
    )
    .bind(person.learner_id)
    .bind(&person.login)
    .bind(&person.learner_number)
    .bind(&person.family_name)
    .bind(&person.given_names)
    .bind(&person.birth_date)
    .bind(&person.email)
    .bind(&person.ine)
    .bind(person.version)
    .execute(conn)
    .await?;
    Ok(saved.rows_affected() == 1)
}

/// Keeps what a learner holds when `grants_version` is newer than what is held and the
/// learner was not erased, and locks the learner for the rest of the transaction; says
/// whether it was kept.
pub async fn save_holding(
    conn: &mut PgConnection,
    learner_id: Uuid,
    login: &str,
    grants_version: i64,
    holding: &Holding,
) -> Result<bool, sqlx::Error> {
    let saved = sqlx::query(
        "INSERT INTO learners (learner_id, login, grants_version, card_until, card_in_force,
                               epurse_until, epurse_in_force)
         SELECT $1, $2, $3, $4, $5, $6, $7
         WHERE NOT EXISTS (SELECT 1 FROM erased_learners WHERE learner_id = $1)
         ON CONFLICT (learner_id) DO UPDATE
         SET grants_version = EXCLUDED.grants_version,
             login = CASE WHEN learners.login = '' THEN EXCLUDED.login ELSE learners.login END,
             card_until = EXCLUDED.card_until, card_in_force = EXCLUDED.card_in_force,
             epurse_until = EXCLUDED.epurse_until, epurse_in_force = EXCLUDED.epurse_in_force
         WHERE learners.grants_version < EXCLUDED.grants_version AND NOT learners.erased",
    )
    .bind(learner_id)
    .bind(login)
    .bind(grants_version)
    .bind(holding.card_until)
    .bind(holding.card_in_force)
    .bind(holding.epurse_until)
    .bind(holding.epurse_in_force)
    .execute(conn)
    .await?;
    Ok(saved.rows_affected() == 1)
}

/// A learner, locked for the rest of the transaction.
pub async fn lock_learner(
    conn: &mut PgConnection,
    learner_id: Uuid,
) -> Result<Option<(Person, Holding)>, sqlx::Error> {
    let row: Option<LearnerRow> = sqlx::query_as(
        "SELECT learner_id, login, learner_number, family_name, given_names, birth_date, email,
                ine, person_version, card_until, card_in_force, epurse_until, epurse_in_force
         FROM learners WHERE learner_id = $1 FOR UPDATE",
    )
    .bind(learner_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(LearnerRow::split))
}

/// A learner by id or login.
pub async fn find_learner(conn: &mut PgConnection, key: &str) -> Result<Option<Uuid>, sqlx::Error> {
    let id = Uuid::parse_str(key).ok();
    sqlx::query_scalar(
        "SELECT learner_id FROM learners WHERE learner_id = $1 OR ($1 IS NULL AND login = $2)",
    )
    .bind(id)
    .bind(key)
    .fetch_optional(conn)
    .await
}

#[derive(sqlx::FromRow)]
struct LearnerRow {
    learner_id: Uuid,
    login: String,
    learner_number: String,
    family_name: String,
    given_names: String,
    birth_date: String,
    email: String,
    ine: String,
    person_version: i64,
    card_until: Option<Date>,
    card_in_force: bool,
    epurse_until: Option<Date>,
    epurse_in_force: bool,
}

impl LearnerRow {
    fn split(self) -> (Person, Holding) {
        (
            Person {
                learner_id: self.learner_id,
                login: self.login,
                learner_number: self.learner_number,
                family_name: self.family_name,
                given_names: self.given_names,
                birth_date: self.birth_date,
                email: self.email,
                ine: self.ine,
                version: self.person_version,
            },
            Holding {
                card_until: self.card_until,
                card_in_force: self.card_in_force,
                epurse_until: self.epurse_until,
                epurse_in_force: self.epurse_in_force,
            },
        )
    }
}

/// A card as stored, with its holder's login and INE.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CardRow {
    pub card_id: Uuid,
    pub learner_id: Uuid,
    pub sequence: i64,
    pub card_number: String,
    pub escn: Option<Uuid>,
    pub csn: Option<String>,
    #[sqlx(try_from = "String")]
    pub state: StoredState,
    pub state_reason: String,
    pub last_day: Date,
    pub version: i64,
    pub replaces: Option<Uuid>,
    pub print_batch_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub login: String,
    pub ine: String,
}

/// A state read from the database (the CHECK constraint keeps it one of the names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredState(pub State);

impl TryFrom<String> for StoredState {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        State::parse(&name)
            .map(StoredState)
            .ok_or_else(|| format!("unknown card state {name:?}"))
    }
}

impl CardRow {
    pub fn state(&self) -> State {
        self.state.0
    }
}

const CARD_COLUMNS: &str = "c.card_id, c.learner_id, c.sequence, c.card_number, c.escn, c.csn,
    c.state, c.state_reason, c.last_day, c.version, c.replaces, c.print_batch_id, c.created_at,
    c.updated_at, l.login, l.ine";

/// One card by id or by card number; locked when `lock`.
pub async fn card(
    conn: &mut PgConnection,
    key: &str,
    lock: bool,
) -> Result<Option<CardRow>, sqlx::Error> {
    let id = Uuid::parse_str(key).ok();
    let lock = if lock { "FOR UPDATE OF c" } else { "" };
    sqlx::query_as(&format!(
        "SELECT {CARD_COLUMNS} FROM cards c JOIN learners l USING (learner_id)
         WHERE c.card_id = $1 OR ($1 IS NULL AND c.card_number = $2) {lock}"
    ))
    .bind(id)
    .bind(key)
    .fetch_optional(conn)
    .await
}

/// A learner's cards, newest first.
pub async fn cards_of(
    conn: &mut PgConnection,
    learner_id: Uuid,
) -> Result<Vec<CardRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {CARD_COLUMNS} FROM cards c JOIN learners l USING (learner_id)
         WHERE c.learner_id = $1 ORDER BY c.created_at DESC, c.sequence DESC"
    ))
    .bind(learner_id)
    .fetch_all(conn)
    .await
}

/// Up to `limit` cards after `after`, in id order: a page of a restatement.
pub async fn cards_after(
    conn: &mut PgConnection,
    after: Uuid,
    limit: i64,
) -> Result<Vec<CardRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {CARD_COLUMNS} FROM cards c JOIN learners l USING (learner_id)
         WHERE c.card_id > $1 ORDER BY c.card_id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Approved cards, oldest approval first; locked (and others' locks skipped) when
/// `take`.
pub async fn print_queue(
    conn: &mut PgConnection,
    limit: i64,
    take: bool,
) -> Result<Vec<CardRow>, sqlx::Error> {
    let lock = if take {
        "FOR UPDATE OF c SKIP LOCKED"
    } else {
        ""
    };
    sqlx::query_as(&format!(
        "SELECT {CARD_COLUMNS} FROM cards c JOIN learners l USING (learner_id)
         WHERE c.state = 'approved' ORDER BY c.approved_at, c.card_id LIMIT $1 {lock}"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The next number of the card sequence.
pub async fn next_sequence(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT nextval('card_number_seq')")
        .fetch_one(conn)
        .await
}

/// A new card.
#[derive(Debug)]
pub struct NewCard<'a> {
    pub card_id: Uuid,
    pub learner_id: Uuid,
    pub sequence: i64,
    pub card_number: &'a str,
    pub escn: Option<Uuid>,
    pub state: State,
    pub last_day: Date,
    pub replaces: Option<Uuid>,
}

pub async fn insert_card(conn: &mut PgConnection, card: &NewCard<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO cards (card_id, learner_id, sequence, card_number, escn, state, last_day,
                            replaces, approved_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $6 = 'approved' THEN now() END)",
    )
    .bind(card.card_id)
    .bind(card.learner_id)
    .bind(card.sequence)
    .bind(card.card_number)
    .bind(card.escn)
    .bind(card.state.as_str())
    .bind(card.last_day)
    .bind(card.replaces)
    .execute(conn)
    .await?;
    Ok(())
}

/// What changes with a card's move.
#[derive(Debug, Default)]
pub struct Move<'a> {
    pub to: Option<State>,
    pub reason: Option<&'a str>,
    pub csn: Option<&'a str>,
    pub last_day: Option<Date>,
    pub escn: Option<Uuid>,
    pub print_batch_id: Option<Uuid>,
}

/// Changes a card and bumps its version; returns the new version.
pub async fn update_card(
    conn: &mut PgConnection,
    card_id: Uuid,
    change: &Move<'_>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE cards
         SET state = COALESCE($2, state),
             state_reason = COALESCE($3, state_reason),
             csn = COALESCE($4, csn),
             last_day = COALESCE($5, last_day),
             escn = COALESCE($6, escn),
             print_batch_id = COALESCE($7, print_batch_id),
             approved_at = CASE WHEN $2 = 'approved' THEN now() ELSE approved_at END,
             version = version + 1,
             updated_at = now()
         WHERE card_id = $1
         RETURNING version",
    )
    .bind(card_id)
    .bind(change.to.map(State::as_str))
    .bind(change.reason)
    .bind(change.csn)
    .bind(change.last_day)
    .bind(change.escn)
    .bind(change.print_batch_id)
    .fetch_one(conn)
    .await
}

/// One step of a card's life, for its history.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub card_id: Uuid,
    pub version: i64,
    pub from: Option<State>,
    pub to: State,
    pub reason: &'a str,
    pub actor: &'a str,
    pub cause_event_id: Option<Uuid>,
}

pub async fn record_transition(
    conn: &mut PgConnection,
    transition: &Transition<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO card_transitions (card_id, version, from_state, to_state, reason, actor,
                                       cause_event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(transition.card_id)
    .bind(transition.version)
    .bind(transition.from.map(State::as_str))
    .bind(transition.to.as_str())
    .bind(transition.reason)
    .bind(transition.actor)
    .bind(transition.cause_event_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A card's history, oldest first.
#[derive(Debug, sqlx::FromRow)]
pub struct HistoryRow {
    pub from_state: Option<String>,
    pub to_state: String,
    pub reason: String,
    pub actor: String,
    pub at: OffsetDateTime,
    pub cause_event_id: Option<Uuid>,
}

pub async fn history(
    conn: &mut PgConnection,
    card_id: Uuid,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT from_state, to_state, reason, actor, at, cause_event_id
         FROM card_transitions WHERE card_id = $1 ORDER BY id",
    )
    .bind(card_id)
    .fetch_all(conn)
    .await
}

/// The person of each learner, for documents.
pub async fn people(
    conn: &mut PgConnection,
    learner_ids: &[Uuid],
) -> Result<Vec<Person>, sqlx::Error> {
    let rows: Vec<LearnerRow> = sqlx::query_as(
        "SELECT learner_id, login, learner_number, family_name, given_names, birth_date, email,
                ine, person_version, card_until, card_in_force, epurse_until, epurse_in_force
         FROM learners WHERE learner_id = ANY($1)",
    )
    .bind(learner_ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|row| row.split().0).collect())
}

pub async fn save_print_batch(
    conn: &mut PgConnection,
    batch_id: Uuid,
    actor: &str,
    lines: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO print_batches (batch_id, actor, lines) VALUES ($1, $2, $3)")
        .bind(batch_id)
        .bind(actor)
        .bind(lines)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn print_batch(
    conn: &mut PgConnection,
    batch_id: Uuid,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar("SELECT lines FROM print_batches WHERE batch_id = $1")
        .bind(batch_id)
        .fetch_optional(conn)
        .await
}

/// An e-purse right as held.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EpurseRight {
    pub due_date: Date,
    pub closed_on: Option<Date>,
}

pub async fn epurse_right(
    conn: &mut PgConnection,
    learner_id: Uuid,
) -> Result<Option<EpurseRight>, sqlx::Error> {
    sqlx::query_as("SELECT due_date, closed_on FROM epurse_rights WHERE learner_id = $1")
        .bind(learner_id)
        .fetch_optional(conn)
        .await
}

/// Opens (or reopens) a right until `due_date`, or moves its due date.
pub async fn open_epurse(
    conn: &mut PgConnection,
    learner_id: Uuid,
    due_date: Date,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO epurse_rights (learner_id, due_date) VALUES ($1, $2)
         ON CONFLICT (learner_id) DO UPDATE
         SET due_date = EXCLUDED.due_date, closed_on = NULL,
             opened_at = CASE WHEN epurse_rights.closed_on IS NULL THEN epurse_rights.opened_at
                              ELSE now() END,
             version = epurse_rights.version + 1",
    )
    .bind(learner_id)
    .bind(due_date)
    .execute(conn)
    .await?;
    Ok(())
}

/// Closes a right on `on`: its due date becomes that day.
pub async fn close_epurse(
    conn: &mut PgConnection,
    learner_id: Uuid,
    on: Date,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE epurse_rights SET closed_on = $2, due_date = $2, version = version + 1
         WHERE learner_id = $1 AND closed_on IS NULL",
    )
    .bind(learner_id)
    .bind(on)
    .execute(conn)
    .await?;
    Ok(())
}

/// A line of the e-purse export.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EpurseLine {
    pub learner_id: Uuid,
    pub login: String,
    pub family_name: String,
    pub given_names: String,
    pub birth_date: String,
    pub email: String,
    pub ine: String,
    pub due_date: Date,
    pub closed_on: Option<Date>,
    pub version: i64,
}

/// The rights to export, locked: every open one (`full`), or those not exported
/// since their last change. A learner whose identity has not arrived yet waits.
pub async fn epurse_to_export(
    conn: &mut PgConnection,
    full: bool,
) -> Result<Vec<EpurseLine>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.learner_id, l.login, l.family_name, l.given_names, l.birth_date, l.email,
                l.ine, r.due_date, r.closed_on, r.version
         FROM epurse_rights r JOIN learners l USING (learner_id)
         WHERE l.person_version > 0
           AND (($1 AND r.closed_on IS NULL) OR (NOT $1 AND r.version > r.exported_version))
         ORDER BY l.family_name, l.given_names, r.learner_id
         FOR UPDATE OF r",
    )
    .bind(full)
    .fetch_all(conn)
    .await
}

/// Records an export with its right-holders as sent. Only a delta marks its rights as
/// sent: a full export, taken to look or to start over, leaves the changes waiting for
/// the next delta where they are.
pub async fn record_epurse_export(
    conn: &mut PgConnection,
    export_id: Uuid,
    actor: &str,
    full: bool,
    lines: &[EpurseLine],
    holders: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    if !full {
        let ids: Vec<Uuid> = lines.iter().map(|line| line.learner_id).collect();
        let versions: Vec<i64> = lines.iter().map(|line| line.version).collect();
        sqlx::query(
            "UPDATE epurse_rights r SET exported_version = u.v
             FROM unnest($1::uuid[], $2::bigint[]) AS u(id, v)
             WHERE r.learner_id = u.id AND r.exported_version < u.v",
        )
        .bind(&ids)
        .bind(&versions)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "INSERT INTO epurse_exports (export_id, actor, full_export, right_holders, lines)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(export_id)
    .bind(actor)
    .bind(full)
    .bind(lines.len() as i32)
    .bind(holders)
    .execute(conn)
    .await?;
    Ok(())
}

/// An earlier e-purse export as recorded.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EpurseExport {
    pub export_id: Uuid,
    pub actor: String,
    pub created_at: OffsetDateTime,
    pub full_export: bool,
    pub lines: Option<serde_json::Value>,
}

pub async fn epurse_export(
    conn: &mut PgConnection,
    export_id: Uuid,
) -> Result<Option<EpurseExport>, sqlx::Error> {
    sqlx::query_as(
        "SELECT export_id, actor, created_at, full_export, lines
         FROM epurse_exports WHERE export_id = $1",
    )
    .bind(export_id)
    .fetch_optional(conn)
    .await
}

/// Intake's word that a person's identity was erased (`person.erased`).
#[derive(Debug, Clone)]
pub struct Erasure {
    pub learner_id: Uuid,
    /// The learner's version at the erasure.
    pub learner_version: i64,
    /// "retention" or "request".
    pub basis: String,
    pub event_id: Uuid,
    /// Who asked (or `system` for the retention sweep).
    pub actor: String,
}

/// Keeps the tombstone of an erased learner; false when they were already erased (a
/// redelivery: nothing more to do).
pub async fn record_erasure(
    conn: &mut PgConnection,
    erasure: &Erasure,
) -> Result<bool, sqlx::Error> {
    let recorded = sqlx::query(
        "INSERT INTO erased_learners (learner_id, learner_version, basis) VALUES ($1, $2, $3)
         ON CONFLICT (learner_id) DO NOTHING",
    )
    .bind(erasure.learner_id)
    .bind(erasure.learner_version)
    .bind(&erasure.basis)
    .execute(conn)
    .await?;
    Ok(recorded.rows_affected() == 1)
}

/// Takes every grant from an erased learner (nothing held any more), so that the card
/// office stops what is still live as at the end of a grant.
pub async fn drop_holding(conn: &mut PgConnection, learner_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE learners SET card_until = NULL, card_in_force = false, epurse_until = NULL,
                             epurse_in_force = false
         WHERE learner_id = $1",
    )
    .bind(learner_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The fields of a print batch's line that name the holder (see
/// [`crate::documents::PrintLine`]): emptied when the holder is erased.
const PRINT_LINE_IDENTITY: &str = r#"{"login": "", "learner_number": "", "family_name": "",
    "given_names": "", "photo_reference": ""}"#;

/// The fields of an e-purse export's line that name the holder (see
/// [`crate::documents::SentRightHolder`]): emptied when the holder is erased.
const EPURSE_LINE_IDENTITY: &str = r#"{"identifier": "", "family_name": "", "given_names": "",
    "email": "", "birth_date": ""}"#;

/// Erases an erased learner's identity from every table: their row (names, birth
/// date, e-mail, INE, login, learner number), their lines in print batches and e-purse
/// exports, and the reasons of their cards and transitions that the card office wrote
/// in words (a reason from the card office's fixed lists, or one the service writes,
/// stays: it names no one). What accounting needs stays: card numbers, dates, states,
/// the e-purse rights and the exports' totals.
pub async fn erase_identity(
    conn: &mut PgConnection,
    learner_id: Uuid,
    fixed_reasons: &[&str],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE learners SET login = '', learner_number = '', family_name = '', given_names = '',
                             birth_date = '', email = '', ine = '', erased = true
         WHERE learner_id = $1",
    )
    .bind(learner_id)
    .execute(&mut *conn)
    .await?;
    let cards: Vec<String> =
        sqlx::query_scalar("SELECT card_id::text FROM cards WHERE learner_id = $1")
            .bind(learner_id)
            .fetch_all(&mut *conn)
            .await?;
    let scrub = |table: &str, key: &str, identity: &str| {
        format!(
            "UPDATE {table} SET lines = (
                 SELECT jsonb_agg(CASE WHEN line->>'{key}' = ANY($1)
                                       THEN line || '{identity}'::jsonb ELSE line END
                                  ORDER BY ordinal)
                 FROM jsonb_array_elements(lines) WITH ORDINALITY AS l(line, ordinal))
             WHERE jsonb_typeof(lines) = 'array'
               AND EXISTS (SELECT 1 FROM jsonb_array_elements(lines) AS l(line)
                           WHERE line->>'{key}' = ANY($1))"
        )
    };
    sqlx::query(&scrub("print_batches", "card_id", PRINT_LINE_IDENTITY))
        .bind(&cards)
        .execute(&mut *conn)
        .await?;
    sqlx::query(&scrub("epurse_exports", "learner_id", EPURSE_LINE_IDENTITY))
        .bind(vec![learner_id.to_string()])
        .execute(&mut *conn)
        .await?;
    // Words the card office typed (why a card went back to the print queue, why it was
    // destroyed) may name anyone: they go. The service's own reasons stay.
    let typed = "reason <> '' AND reason <> ALL($2) AND reason NOT LIKE 'locked: %'
                 AND reason NOT LIKE 'replaces card %'";
    sqlx::query(&format!(
        "UPDATE card_transitions SET reason = $3
         WHERE card_id IN (SELECT card_id FROM cards WHERE learner_id = $1) AND {typed}"
    ))
    .bind(learner_id)
    .bind(fixed_reasons)
    .bind(crate::erasure::ERASED_REASON)
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "UPDATE cards SET state_reason = $3
         WHERE learner_id = $1 AND {}",
        typed.replace("reason", "state_reason")
    ))
    .bind(learner_id)
    .bind(fixed_reasons)
    .bind(crate::erasure::ERASED_REASON)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What belongs to a learner through their cards rather than by their learner id, for
/// the export of their personal data: each card's steps, and their lines in the print
/// batches and e-purse exports, as sent.
pub const PERSONAL_DATA_RELATED: &[Related] = &[
    Related {
        name: "card_transitions",
        query: "SELECT to_jsonb(t) FROM card_transitions t JOIN cards c USING (card_id)
                WHERE c.learner_id = $1",
    },
    Related {
        name: "print_batch_lines",
        query:
            "SELECT jsonb_build_object('batch_id', b.batch_id, 'created_at', b.created_at,
                                          'line', l.line)
                FROM print_batches b
                CROSS JOIN LATERAL jsonb_array_elements(
                    CASE WHEN jsonb_typeof(b.lines) = 'array' THEN b.lines ELSE '[]' END) AS l(line)
                WHERE l.line->>'card_id' IN (SELECT card_id::text FROM cards WHERE learner_id = $1)",
    },
    Related {
        name: "epurse_export_lines",
        query: "SELECT jsonb_build_object('export_id', e.export_id, 'created_at', e.created_at,
                                          'line', l.line)
                FROM epurse_exports e
                CROSS JOIN LATERAL jsonb_array_elements(
                    CASE WHEN jsonb_typeof(e.lines) = 'array' THEN e.lines ELSE '[]' END) AS l(line)
                WHERE l.line->>'learner_id' = $1::text",
    },
];
