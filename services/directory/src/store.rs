//! The account projection and its publication state.

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use hosted_platform::{auth::SYSTEM, telemetry::TraceHeaders};

/// One learner's latest state, with what entitlement and cards say of them.
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
    pub revision: i64,
    pub published_revision: Option<i64>,
    pub ldap_writes: i32,
    /// The resources in force, from the newest grants event (empty before one).
    pub in_force: Vec<String>,
    /// The learner version those grants were computed from.
    pub grants_learner_version: Option<i64>,
    /// The enabled card's chip serial number and end of validity, if one is enabled.
    pub card_csn: Option<String>,
    pub card_valid_until: Option<OffsetDateTime>,
    /// The UAI of each agreement the stays are under, as intake's newest agreement
    /// facts say: `<agreement id> <uai>` (the UAI empty when the agreement has none).
    pub partner_uais: Vec<String>,
    /// Who caused the account's last change: the caller carried by the event that
    /// changed it, `system` for the calendar.
    pub actor: String,
    /// When the event that made the version waiting to be published happened (see
    /// migration 0121); none once published.
    pub changed_at: Option<OffsetDateTime>,
}

impl AccountRow {
    pub fn trace(&self) -> TraceHeaders {
        TraceHeaders {
            traceparent: self.traceparent.clone(),
            tracestate: self.tracestate.clone(),
        }
    }
}

/// Stored values the code cannot take are read as the nearest it can, so that one
/// row left by an older version or a hand-made fix never stops a whole batch (nor
/// panics the publisher): NULLs inside the resources in force are dropped, and a
/// timestamp at `±infinity` or beyond year 9999 is read as the first or last instant
/// the code's time type holds.
const COLUMNS: &str = "a.learner_id, a.login, a.version, a.learner, a.traceparent, a.tracestate,
    a.published_version,
    GREATEST(LEAST(a.published_at, '9999-12-31 23:59:59+00'), '0001-01-01 00:00:00+00') AS published_at,
    a.publish_attempts, a.revision, a.published_revision,
    COALESCE((SELECT w.writes FROM ldap_writes w WHERE w.learner_id = a.learner_id), 0)::int4 AS ldap_writes,
    COALESCE(array_remove(g.in_force, NULL), '{}') AS in_force,
    g.learner_version AS grants_learner_version, c.csn AS card_csn,
    GREATEST(LEAST(c.valid_until, '9999-12-31 23:59:59+00'), '0001-01-01 00:00:00+00') AS card_valid_until,
    ARRAY(SELECT p.agreement_id::text || ' ' || p.partner_uai FROM agreement_partners p
          WHERE p.agreement_id = ANY(a.agreement_ids)) AS partner_uais, a.actor,
    GREATEST(LEAST(a.changed_at, '9999-12-31 23:59:59+00'), '0001-01-01 00:00:00+00') AS changed_at";

/// The account with its grants and its enabled card (the newest, should there be two).
const FROM: &str = "accounts a
    LEFT JOIN grants g USING (learner_id)
    LEFT JOIN LATERAL (SELECT csn, valid_until FROM cards
                       WHERE cards.learner_id = a.learner_id AND state = 'enabled'
                       ORDER BY version DESC LIMIT 1) c ON true";

/// A learner's snapshot from one event, for [`apply_many`].
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub learner_id: Uuid,
    pub login: String,
    pub version: i64,
    pub learner: Vec<u8>,
    pub trace: TraceHeaders,
    /// The agreements the learner's stays are under.
    pub agreement_ids: Vec<Uuid>,
    /// The caller who caused the change (the event's actor).
    pub actor: String,
    /// When the event happened (its `occurred_at`), if it says.
    pub occurred_at: Option<OffsetDateTime>,
}

/// Stores learners' states, each unless the projection already holds that version or
/// a newer one (events can arrive twice or out of order), in set statements (at most
/// one snapshot per learner). A new account, or one whose stays changed, waits for
/// the grants entitlement computes from this version (see [`claim_pending`]), so that
/// it is written once with them: `stays_changed` says which. Returns how
/// many changed.
pub async fn apply_many(
    conn: &mut PgConnection,
    snapshots: &[Snapshot],
    stays_changed: impl Fn(&Snapshot, Option<&[u8]>) -> bool,
) -> Result<u64, sqlx::Error> {
    if snapshots.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = snapshots.iter().map(|s| s.learner_id).collect();
    let held: std::collections::HashMap<Uuid, (i64, Vec<u8>)> = sqlx::query_as::<
        _,
        (Uuid, i64, Vec<u8>),
    >(
        "SELECT learner_id, version, learner FROM accounts WHERE learner_id = ANY($1) FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(id, version, learner)| (id, (version, learner)))
    .collect();
    let newer: Vec<(&Snapshot, bool)> = snapshots
        .iter()
        .filter(|s| {
            held.get(&s.learner_id)
                .is_none_or(|(version, _)| *version < s.version)
        })
        .map(|s| {
            let previous = held
                .get(&s.learner_id)
                .map(|(_, learner)| learner.as_slice());
            (s, stays_changed(s, previous))
        })
        .collect();
    if newer.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = newer.iter().map(|(s, _)| s.learner_id).collect();
    let logins: Vec<&str> = newer.iter().map(|(s, _)| s.login.as_str()).collect();
    let versions: Vec<i64> = newer.iter().map(|(s, _)| s.version).collect();
    let learners: Vec<&[u8]> = newer.iter().map(|(s, _)| s.learner.as_slice()).collect();
    let parents: Vec<Option<&str>> = newer
        .iter()
        .map(|(s, _)| s.trace.traceparent.as_deref())
        .collect();
    let states: Vec<Option<&str>> = newer
        .iter()
        .map(|(s, _)| s.trace.tracestate.as_deref())
        .collect();
    let awaits: Vec<bool> = newer.iter().map(|(_, awaits)| *awaits).collect();
    let actors: Vec<&str> = newer.iter().map(|(s, _)| s.actor.as_str()).collect();
    let occurred: Vec<Option<OffsetDateTime>> = newer.iter().map(|(s, _)| s.occurred_at).collect();
    // Arrays of arrays must be rectangular in PostgreSQL: each set travels as text.
    let agreements: Vec<String> = newer
        .iter()
        .map(|(s, _)| {
            s.agreement_ids
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    sqlx::query(
        "INSERT INTO accounts (learner_id, login, version, learner, traceparent, tracestate,
                               awaits_grants, agreement_ids, actor, changed_at)
         SELECT i, l, v, b, p, t, w, COALESCE(string_to_array(NULLIF(g, ''), ',')::uuid[], '{}'), c, o
         FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bytea[], $5::text[],
                     $6::text[], $7::bool[], $8::text[], $9::text[], $10::timestamptz[])
              AS u(i, l, v, b, p, t, w, g, c, o)
         ON CONFLICT (learner_id) DO UPDATE
            SET login = excluded.login, version = excluded.version, learner = excluded.learner,
                traceparent = excluded.traceparent, tracestate = excluded.tracestate,
                actor = excluded.actor, changed_at = excluded.changed_at,
                revision = accounts.revision + 1, version_at = now(),
                awaits_grants = excluded.awaits_grants, agreement_ids = excluded.agreement_ids,
                publish_attempts = 0, next_attempt_at = now(), last_error = NULL, updated_at = now()
          WHERE accounts.version < excluded.version",
    )
    .bind(&ids)
    .bind(&logins)
    .bind(&versions)
    .bind(&learners)
    .bind(&parents)
    .bind(&states)
    .bind(&awaits)
    .bind(&agreements)
    .bind(&actors)
    .bind(&occurred)
    .execute(conn)
    .await
    .map(|done| done.rows_affected())
}

/// Keeps learners' grants when newer than those held (at most one event per
/// learner), and asks for their entries to be written again; returns how many
/// changed.
pub async fn apply_many_grants(
    conn: &mut PgConnection,
    all: &[Grants],
) -> Result<u64, sqlx::Error> {
    if all.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = all.iter().map(|g| g.learner_id).collect();
    let versions: Vec<i64> = all.iter().map(|g| g.grants_version).collect();
    let learner_versions: Vec<i64> = all.iter().map(|g| g.learner_version).collect();
    let days: Vec<time::Date> = all.iter().map(|g| g.effective_on).collect();
    // Arrays of arrays must be rectangular in PostgreSQL: each set travels as text.
    let in_force: Vec<String> = all.iter().map(|g| g.in_force.join(",")).collect();
    let changed: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO grants (learner_id, grants_version, learner_version, effective_on, in_force)
         SELECT i, v, lv, d, COALESCE(string_to_array(NULLIF(f, ''), ','), '{}')
         FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::date[], $5::text[]) AS u(i, v, lv, d, f)
         ON CONFLICT (learner_id) DO UPDATE
            SET grants_version = excluded.grants_version,
                learner_version = excluded.learner_version,
                effective_on = excluded.effective_on, in_force = excluded.in_force
          WHERE grants.grants_version < excluded.grants_version
         RETURNING learner_id",
    )
    .bind(&ids)
    .bind(&versions)
    .bind(&learner_versions)
    .bind(&days)
    .bind(&in_force)
    .fetch_all(&mut *conn)
    .await?;
    if !changed.is_empty() {
        let actors: Vec<&str> = all.iter().map(|g| g.actor.as_str()).collect();
        let occurred: Vec<Option<OffsetDateTime>> = all.iter().map(|g| g.occurred_at).collect();
        sqlx::query(
            "UPDATE accounts a SET revision = a.revision + 1, publish_attempts = 0,
                    next_attempt_at = now(), last_error = NULL, updated_at = now(),
                    actor = u.actor, changed_at = COALESCE(u.occurred_at, a.changed_at)
             FROM unnest($1::uuid[], $2::text[], $4::timestamptz[]) AS u(learner_id, actor, occurred_at)
             WHERE a.learner_id = u.learner_id AND a.learner_id = ANY($3)",
        )
        .bind(&ids)
        .bind(&actors)
        .bind(&changed)
        .bind(&occurred)
        .execute(conn)
        .await?;
    }
    Ok(changed.len() as u64)
}

/// An agreement's partner institution, from one agreement fact.
#[derive(Debug, Clone)]
pub struct AgreementPartner {
    pub agreement_id: Uuid,
    pub version: i64,
    /// Empty when the agreement names no UAI.
    pub partner_uai: String,
    /// The caller who caused the change (the event's actor).
    pub actor: String,
}

/// Keeps agreements' partners when newer than those held (at most one per
/// agreement), and asks for the entries of the accounts under those whose UAI
/// changed to be written again; returns how many accounts that was.
pub async fn apply_agreements(
    conn: &mut PgConnection,
    all: &[AgreementPartner],
) -> Result<u64, sqlx::Error> {
    if all.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = all.iter().map(|a| a.agreement_id).collect();
    let versions: Vec<i64> = all.iter().map(|a| a.version).collect();
    let uais: Vec<&str> = all.iter().map(|a| a.partner_uai.as_str()).collect();
    let changed: Vec<Uuid> = sqlx::query_scalar(
        "WITH held AS (SELECT agreement_id, partner_uai FROM agreement_partners
                       WHERE agreement_id = ANY($1) FOR UPDATE),
              kept AS (INSERT INTO agreement_partners (agreement_id, version, partner_uai)
                       SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[])
                       ON CONFLICT (agreement_id) DO UPDATE
                          SET version = excluded.version, partner_uai = excluded.partner_uai
                        WHERE agreement_partners.version < excluded.version
                       RETURNING agreement_id, partner_uai)
         SELECT kept.agreement_id FROM kept LEFT JOIN held USING (agreement_id)
         WHERE held.partner_uai IS DISTINCT FROM kept.partner_uai",
    )
    .bind(&ids)
    .bind(&versions)
    .bind(&uais)
    .fetch_all(&mut *conn)
    .await?;
    if changed.is_empty() {
        return Ok(0);
    }
    let actors: Vec<&str> = all.iter().map(|a| a.actor.as_str()).collect();
    Ok(sqlx::query(
        "UPDATE accounts a SET revision = revision + 1, publish_attempts = 0,
                next_attempt_at = now(), last_error = NULL, updated_at = now(),
                actor = COALESCE((SELECT u.actor FROM unnest($2::uuid[], $3::text[]) AS u(id, actor)
                                  WHERE u.id = ANY(a.agreement_ids) LIMIT 1), a.actor)
         WHERE agreement_ids && $1::uuid[]",
    )
    .bind(&changed)
    .bind(&ids)
    .bind(&actors)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Asks for an account's entry to be computed and written again (its card changed),
/// if the account exists, on behalf of `actor`.
async fn touch(conn: &mut PgConnection, learner_id: Uuid, actor: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts SET revision = revision + 1, publish_attempts = 0,
                next_attempt_at = now(), last_error = NULL, updated_at = now(), actor = $2
         WHERE learner_id = $1",
    )
    .bind(learner_id)
    .bind(actor)
    .execute(conn)
    .await?;
    Ok(())
}

/// What entitlement says a learner holds, from one grants event.
#[derive(Debug, Clone)]
pub struct Grants {
    pub learner_id: Uuid,
    pub grants_version: i64,
    pub learner_version: i64,
    pub effective_on: time::Date,
    pub in_force: Vec<String>,
    /// The caller who caused the change (the event's actor).
    pub actor: String,
    /// When the event happened (its `occurred_at`), if it says.
    pub occurred_at: Option<OffsetDateTime>,
}

/// One card, as cards published it.
#[derive(Debug, Clone)]
pub struct Card {
    pub card_id: Uuid,
    pub learner_id: Uuid,
    pub version: i64,
    pub state: String,
    pub csn: String,
    pub valid_until: Option<OffsetDateTime>,
    /// The caller who caused the change (the event's actor).
    pub actor: String,
}

/// Keeps a card when newer than the one held; says whether it was.
pub async fn apply_card(conn: &mut PgConnection, card: &Card) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query(
        "INSERT INTO cards (card_id, learner_id, version, state, csn, valid_until)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (card_id) DO UPDATE
            SET version = excluded.version, state = excluded.state, csn = excluded.csn,
                valid_until = excluded.valid_until
          WHERE cards.version < excluded.version",
    )
    .bind(card.card_id)
    .bind(card.learner_id)
    .bind(card.version)
    .bind(&card.state)
    .bind(&card.csn)
    .bind(card.valid_until)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if changed {
        touch(conn, card.learner_id, &card.actor).await?;
    }
    Ok(changed)
}

/// The condition of an account waiting to be written: its revision is not the one
/// LDAP holds, its retry time has come, and it does not wait for grants (or has
/// waited `$2` seconds for them: entitlement may be down).
const PENDING: &str = "a.published_revision IS DISTINCT FROM a.revision
    AND a.next_attempt_at <= now()
    AND (NOT a.awaits_grants OR g.learner_version >= a.version
         OR a.version_at <= now() - make_interval(secs => $2))
    AND NOT EXISTS (SELECT 1 FROM publication_hold h WHERE h.until > now())";

/// Claims up to `limit` accounts that wait for publication, locked until `conn`'s
/// transaction ends, so that replicas never write one entry at the same time.
pub async fn claim_pending(
    conn: &mut PgConnection,
    limit: i64,
    await_grants: std::time::Duration,
) -> Result<Vec<AccountRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {FROM}
         WHERE {PENDING}
         ORDER BY a.next_attempt_at LIMIT $1 FOR UPDATE OF a SKIP LOCKED"
    ))
    .bind(limit)
    .bind(await_grants.as_secs_f64())
    .fetch_all(conn)
    .await
}

/// Locks an account's row as the publisher's claim does ([`claim_pending`]), until
/// the end of the caller's transaction, waiting for a claim under way to end; gives
/// the account's revision then, `None` when it is gone.
pub async fn lock_account(
    conn: &mut PgConnection,
    learner_id: Uuid,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT revision FROM accounts WHERE learner_id = $1 FOR UPDATE")
        .bind(learner_id)
        .fetch_optional(conn)
        .await
}

/// What one write made of an account, for [`mark_many_published`].
#[derive(Debug, Clone, Copy)]
pub struct Published {
    pub learner_id: Uuid,
    pub version: i64,
    pub revision: i64,
    pub next_due: Option<time::Date>,
}

/// Records that LDAP holds each account's revision (and the learner version it came
/// from) and its next due day: a whole batch in one statement. (The writes themselves
/// are counted apart, by [`count_writes`].)
pub async fn mark_many_published(
    conn: &mut PgConnection,
    published: &[Published],
) -> Result<(), sqlx::Error> {
    if published.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = published.iter().map(|p| p.learner_id).collect();
    let versions: Vec<i64> = published.iter().map(|p| p.version).collect();
    let revisions: Vec<i64> = published.iter().map(|p| p.revision).collect();
    let due: Vec<Option<time::Date>> = published.iter().map(|p| p.next_due).collect();
    sqlx::query(
        "UPDATE accounts a SET published_version = u.v, published_revision = u.r,
                published_at = now(), publish_attempts = 0, last_error = NULL, next_due = u.d,
                changed_at = NULL
         FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::date[]) AS u(i, v, r, d)
         WHERE a.learner_id = u.i",
    )
    .bind(&ids)
    .bind(&versions)
    .bind(&revisions)
    .bind(&due)
    .execute(conn)
    .await?;
    Ok(())
}

/// A reconciliation's repair of an account's entry, recorded before its LDAP write
/// (`reconcile_repairs`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Repair {
    pub learner_id: Uuid,
    pub dn: String,
    /// `added`, `modified` or `deleted`.
    pub written: String,
    pub attributes: i64,
}

/// Records, before its LDAP write, that a repair of `repair.learner_id`'s entry is
/// under way (replacing one an earlier reconciliation left).
pub async fn begin_repair(pool: &PgPool, repair: &Repair) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reconcile_repairs (learner_id, dn, written, attributes) VALUES ($1, $2, $3, $4)
         ON CONFLICT (learner_id) DO UPDATE
         SET dn = excluded.dn, written = excluded.written, attributes = excluded.attributes,
             started_at = now()",
    )
    .bind(repair.learner_id)
    .bind(&repair.dn)
    .bind(&repair.written)
    .bind(repair.attributes)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets a repair: recorded (in the caller's transaction), or not taken by LDAP.
pub async fn end_repair(conn: &mut PgConnection, learner_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM reconcile_repairs WHERE learner_id = $1")
        .bind(learner_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The repairs an earlier reconciliation began and never recorded, oldest first.
pub async fn unfinished_repairs(pool: &PgPool) -> Result<Vec<Repair>, sqlx::Error> {
    sqlx::query_as(
        "SELECT learner_id, dn, written, attributes FROM reconcile_repairs ORDER BY started_at",
    )
    .fetch_all(pool)
    .await
}

/// Counts one LDAP write of an account in the caller's transaction (a repair's, with
/// its announcement).
pub async fn count_write_in(conn: &mut PgConnection, learner_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ldap_writes (learner_id, writes) VALUES ($1, 1)
         ON CONFLICT (learner_id) DO UPDATE SET writes = ldap_writes.writes + 1",
    )
    .bind(learner_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts one LDAP write for each of `learner_ids`, as soon as LDAP has taken them:
/// on the pool, in a statement of its own, so that nothing rolled back later (the
/// publication's transaction, a crash) loses the count.
pub async fn count_writes(pool: &PgPool, learner_ids: &[Uuid]) -> Result<(), sqlx::Error> {
    if learner_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO ldap_writes (learner_id, writes)
         SELECT id, count(*) FROM unnest($1::uuid[]) AS id GROUP BY id
         ON CONFLICT (learner_id) DO UPDATE SET writes = ldap_writes.writes + excluded.writes",
    )
    .bind(learner_ids)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks for writing the accounts whose next due day has come; returns how many.
pub async fn mark_due(pool: &PgPool, today: time::Date) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE accounts SET revision = revision + 1, next_due = NULL, publish_attempts = 0,
                next_attempt_at = now(), awaits_grants = false, actor = $2
         WHERE next_due <= $1",
    )
    .bind(today)
    .bind(SYSTEM)
    .execute(pool)
    .await?
    .rows_affected())
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

/// How soon an account waits again: the earliest moment a pending account may be
/// written (its retry time, or the end of its wait for grants, or the end of a hold on
/// publication), if any is pending.
pub async fn next_attempt_in(
    pool: &PgPool,
    await_grants: std::time::Duration,
) -> Result<Option<std::time::Duration>, sqlx::Error> {
    let seconds: Option<f64> = sqlx::query_scalar(
        "SELECT GREATEST(0, EXTRACT(EPOCH FROM GREATEST(min(
                    GREATEST(a.next_attempt_at,
                             CASE WHEN a.awaits_grants AND COALESCE(g.learner_version, 0) < a.version
                                  THEN a.version_at + make_interval(secs => $1)
                                  ELSE a.next_attempt_at END)),
                    (SELECT until FROM publication_hold WHERE until > now())) - now()))::float8
         FROM accounts a LEFT JOIN grants g USING (learner_id)
         WHERE a.published_revision IS DISTINCT FROM a.revision",
    )
    .bind(await_grants.as_secs_f64())
    .fetch_one(pool)
    .await?;
    Ok(seconds.map(std::time::Duration::from_secs_f64))
}

pub async fn account(pool: &PgPool, learner_id: Uuid) -> Result<Option<AccountRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE a.learner_id = $1"
    ))
    .bind(learner_id)
    .fetch_optional(pool)
    .await
}

/// Every account of the projection, for reconciliation.
pub async fn all_accounts(pool: &PgPool) -> Result<Vec<AccountRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM {FROM} ORDER BY a.login"))
        .fetch_all(pool)
        .await
}

pub async fn learner_id_by_login(pool: &PgPool, login: &str) -> Result<Option<Uuid>, sqlx::Error> {
    // Logins are lower-case; `PAUL.DURAND` is `paul.durand`, as in LDAP's uid.
    sqlx::query_scalar("SELECT learner_id FROM accounts WHERE login = $1")
        .bind(login.to_ascii_lowercase())
        .fetch_optional(pool)
        .await
}

/// Holds publication until `seconds` from now, or ends the hold (0); returns when
/// the hold ends, if publication is held.
pub async fn hold_publication(
    pool: &PgPool,
    seconds: u32,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    if seconds == 0 {
        sqlx::query("DELETE FROM publication_hold")
            .execute(pool)
            .await?;
        return Ok(None);
    }
    sqlx::query_scalar(
        "INSERT INTO publication_hold (singleton, until)
         VALUES (true, now() + make_interval(secs => $1))
         ON CONFLICT (singleton) DO UPDATE SET until = excluded.until
         RETURNING until",
    )
    .bind(f64::from(seconds))
    .fetch_one(pool)
    .await
    .map(Some)
}

/// When the hold on publication ends, if publication is held.
pub async fn held_until(pool: &PgPool) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    sqlx::query_scalar("SELECT until FROM publication_hold WHERE until > now()")
        .fetch_optional(pool)
        .await
}

/// How many accounts wait to be computed again and compared with LDAP.
pub async fn pending_accounts(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM accounts WHERE published_revision IS DISTINCT FROM revision",
    )
    .fetch_one(pool)
    .await
}

/// Asks for an account to be written again, on behalf of `actor`.
pub async fn request_republish(
    pool: &PgPool,
    learner_id: Uuid,
    actor: &str,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE accounts SET published_version = NULL, published_revision = NULL,
                next_attempt_at = now(), publish_attempts = 0, awaits_grants = false, actor = $2
         WHERE learner_id = $1",
    )
    .bind(learner_id)
    .bind(actor)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Intake's word that a person's identity was erased (`person.erased`).
#[derive(Debug, Clone)]
pub struct Erasure {
    pub learner_id: Uuid,
    /// The learner's version at the erasure.
    pub learner_version: i64,
    /// "retention" or "request".
    pub basis: String,
}

/// The learners among `ids` who were erased: nothing about them is projected again.
pub async fn erased_among(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<std::collections::HashSet<Uuid>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let erased: Vec<Uuid> =
        sqlx::query_scalar("SELECT learner_id FROM erased_learners WHERE learner_id = ANY($1)")
            .bind(ids)
            .fetch_all(conn)
            .await?;
    Ok(erased.into_iter().collect())
}

/// Erases what the projection holds of a learner, in the caller's transaction, and
/// keeps a tombstone that names the entry to remove (`dn_of` the account's login,
/// while there is an account). The grants and cards rows go first, then the account
/// row is locked and deleted: the order the consumers of grants and cards take (their
/// row, then the account's), so that the two never wait on each other; a publisher
/// writing the account finishes before, so no write of it lands in LDAP after the
/// entry's removal. Returns false when the learner was already erased (a redelivery).
pub async fn erase_learner(
    conn: &mut PgConnection,
    erasure: &Erasure,
    dn_of: impl Fn(&str) -> String,
) -> Result<bool, sqlx::Error> {
    for table in ["grants", "cards"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE learner_id = $1"))
            .bind(erasure.learner_id)
            .execute(&mut *conn)
            .await?;
    }
    let login: Option<String> =
        sqlx::query_scalar("SELECT login FROM accounts WHERE learner_id = $1 FOR UPDATE")
            .bind(erasure.learner_id)
            .fetch_optional(&mut *conn)
            .await?;
    let recorded = sqlx::query(
        "INSERT INTO erased_learners (learner_id, learner_version, basis, entry_dn)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (learner_id) DO NOTHING",
    )
    .bind(erasure.learner_id)
    .bind(erasure.learner_version)
    .bind(&erasure.basis)
    .bind(login.as_deref().map(dn_of))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if recorded == 0 {
        return Ok(false);
    }
    for table in ["accounts", "reconcile_repairs"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE learner_id = $1"))
            .bind(erasure.learner_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(true)
}

/// Erased learners whose LDAP entry is still to remove: (learner id, DN).
pub async fn entries_to_remove(
    pool: &PgPool,
    limit: i64,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT learner_id, entry_dn FROM erased_learners WHERE entry_dn IS NOT NULL
         ORDER BY erased_at, learner_id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Records that an erased learner's entry is gone from LDAP, and forgets its DN.
pub async fn entry_removed(pool: &PgPool, learner_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE erased_learners SET entry_dn = NULL, entry_removed_at = now()
         WHERE learner_id = $1",
    )
    .bind(learner_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Serialises, per learner, an erasure and the writes that would bring the learner
/// back: both take this lock (a transaction-level advisory lock, learners in id order)
/// before they read the tombstones, so that a write made by another replica at the
/// same moment as the erasure reads them after the erasure has committed.
pub async fn lock_learners(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "SELECT pg_advisory_xact_lock(1400, hashtext(id::text))
         FROM (SELECT DISTINCT id FROM unnest($1::uuid[]) AS u(id) ORDER BY id) AS ordered",
    )
    .bind(ids)
    .execute(conn)
    .await?;
    Ok(())
}
