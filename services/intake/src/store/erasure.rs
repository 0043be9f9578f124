//! Erasing persons' identity in intake's database, and the queue of intake's stream
//! erasures that follow.

use std::collections::HashSet;

use sqlx::PgConnection;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::domain::erasure::LoginKey;

/// Keys of audit-trail changes whose values are never personal data (codes, ids,
/// amounts, dates of stays): they keep their values after an erasure. Every other
/// value (names, birth date, e-mail, INE, phone, notes, reasons in words) is blanked,
/// the field's name stays, so that the audit query still says what changed.
const AUDIT_KEYS_KEPT: &[&str] = &[
    "new_person",
    "ine_recorded",
    "payment_id",
    "amount_cents",
    "payer",
    "lock",
    "kind",
    "code",
    "early_end",
    "end_date",
    "start_date",
    "cancelled",
    "population",
    "populations",
    "sponsor_unit",
    "agreement_id",
];

/// One person whose identity was erased: the learner id and its version after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    pub learner_id: Uuid,
    pub version: i64,
}

/// The persons due for erasure by retention: not erased yet, and every stay ended (or,
/// cancelled, was cancelled) on or before `last_day`; among `among` when given, and
/// then locked for the caller's transaction.
pub async fn due_for_retention(
    conn: &mut PgConnection,
    last_day: Date,
    limit: i64,
    among: Option<&[Uuid]>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let lock = if among.is_some() {
        "FOR UPDATE OF p"
    } else {
        ""
    };
    sqlx::query_scalar(&format!(
        "SELECT p.learner_id FROM persons p
         WHERE p.erased_at IS NULL AND ($3::uuid[] IS NULL OR p.learner_id = ANY($3))
           AND NOT EXISTS (
               SELECT 1 FROM stays s WHERE s.learner_id = p.learner_id
                 AND CASE WHEN s.cancelled THEN COALESCE(s.cancelled_at, s.created_at)::date
                          ELSE s.end_date END > $1)
         ORDER BY p.learner_id LIMIT $2 {lock}"
    ))
    .bind(last_day)
    .bind(limit)
    .bind(among)
    .fetch_all(conn)
    .await
}

/// Takes the registrations' identity locks of these persons (their birth date and
/// INE, see [`crate::store::batch::identity_lock_keys`]), before their rows are
/// locked as every change of identity does: a registration that matched a person
/// cannot then add a stay to them while they are erased.
pub async fn lock_identities_of(
    conn: &mut PgConnection,
    learner_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    let identities: Vec<(Date, Option<String>)> = sqlx::query_as(
        "SELECT birth_date, ine FROM persons WHERE learner_id = ANY($1) AND erased_at IS NULL",
    )
    .bind(learner_ids)
    .fetch_all(&mut *conn)
    .await?;
    let keys = crate::store::batch::identity_lock_keys(
        identities
            .iter()
            .map(|(birth_date, ine)| (*birth_date, ine.as_deref())),
    );
    crate::store::batch::lock_identities(conn, &keys).await
}

/// The stays of a learner that are neither ended before `today` nor cancelled: what
/// keeps an erasure on request from going ahead, as (stay id, end date).
pub async fn open_stays(
    conn: &mut PgConnection,
    learner_id: Uuid,
    today: Date,
) -> Result<Vec<(Uuid, Date)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT stay_id, end_date FROM stays
         WHERE learner_id = $1 AND NOT cancelled AND end_date >= $2
         ORDER BY start_date, stay_id",
    )
    .bind(learner_id)
    .bind(today)
    .fetch_all(conn)
    .await
}

/// Erases the identity of `learner_ids` (persons the caller's transaction has locked;
/// those erased already are left as they are): the person's columns, their logins
/// (kept as keyed digests only), the free text of their stays and payments, and the
/// values of their audit entries. One more version each.
pub async fn erase_persons(
    conn: &mut PgConnection,
    learner_ids: &[Uuid],
    basis: &str,
    login_key: &LoginKey,
) -> Result<Vec<Erased>, sqlx::Error> {
    let logins: Vec<String> = sqlx::query_scalar(
        "SELECT l.login FROM logins l JOIN persons p ON p.learner_id = l.learner_id
         WHERE l.learner_id = ANY($1) AND p.erased_at IS NULL",
    )
    .bind(learner_ids)
    .fetch_all(&mut *conn)
    .await?;
    let digests: Vec<Vec<u8>> = logins
        .iter()
        .map(|login| login_key.digest(login))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    sqlx::query(
        "INSERT INTO erased_logins (digest) SELECT * FROM unnest($1::bytea[]) ON CONFLICT DO NOTHING",
    )
    .bind(&digests)
    .execute(&mut *conn)
    .await?;
    let erased: Vec<(Uuid, i64)> = sqlx::query_as(
        "UPDATE persons SET login = NULL, family_name = NULL, birth_name = NULL, given_names = NULL,
                birth_date = NULL, email = NULL, ine = NULL, phone = NULL, folded_names = '',
                erased_at = now(), erasure_basis = $2, version = version + 1, updated_at = now()
         WHERE learner_id = ANY($1) AND erased_at IS NULL
         RETURNING learner_id, version",
    )
    .bind(learner_ids)
    .bind(basis)
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = erased.iter().map(|(id, _)| *id).collect();
    sqlx::query("DELETE FROM logins WHERE learner_id = ANY($1)")
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    // The operator's words on why a stay ended, and a payer's name or a transfer's
    // reference, may name the person: amounts, dates and codes stay.
    sqlx::query("UPDATE stays SET end_reason = NULL WHERE learner_id = ANY($1)")
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE payments SET payer_name = NULL, reference = NULL
         WHERE cohort_payment_id IS NULL
           AND stay_id IN (SELECT stay_id FROM stays WHERE learner_id = ANY($1))",
    )
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE audit_trail SET reason = NULL,
                changes = COALESCE((
                    SELECT jsonb_object_agg(key, CASE
                        WHEN key = ANY($2) THEN value
                        WHEN jsonb_typeof(value) = 'object' AND (value ? 'from' OR value ? 'to')
                            THEN '{\"from\": null, \"to\": null}'::jsonb
                        ELSE 'null'::jsonb END)
                    FROM jsonb_each(CASE WHEN jsonb_typeof(changes) = 'object' THEN changes
                                         ELSE '{}'::jsonb END)), '{}'::jsonb)
         WHERE learner_id = ANY($1)",
    )
    .bind(&ids)
    .bind(AUDIT_KEYS_KEPT)
    .execute(&mut *conn)
    .await?;
    Ok(erased
        .into_iter()
        .map(|(learner_id, version)| Erased {
            learner_id,
            version,
        })
        .collect())
}

/// Queues intake's stream erasure of these persons, not before `not_before`.
pub async fn queue_stream_erasure(
    conn: &mut PgConnection,
    learner_ids: &[Uuid],
    not_before: Option<OffsetDateTime>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO pending_stream_erasures (learner_id, not_before)
         SELECT id, GREATEST(now(), $2) FROM unnest($1::uuid[]) AS u(id)
         ON CONFLICT (learner_id) DO UPDATE SET not_before = GREATEST(pending_stream_erasures.not_before, excluded.not_before)",
    )
    .bind(learner_ids)
    .bind(not_before)
    .execute(conn)
    .await?;
    Ok(())
}

/// Up to `limit` persons whose stream erasure is due now.
pub async fn stream_erasures_due(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT learner_id FROM pending_stream_erasures WHERE not_before <= now()
         ORDER BY not_before LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// When the next queued stream erasure is due, if one is queued.
pub async fn next_stream_erasure(
    conn: &mut PgConnection,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    sqlx::query_scalar("SELECT min(not_before) FROM pending_stream_erasures")
        .fetch_one(conn)
        .await
}

/// Marks stream erasures done.
pub async fn stream_erasures_done(
    conn: &mut PgConnection,
    learner_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM pending_stream_erasures WHERE learner_id = ANY($1)")
        .bind(learner_ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Counts a failed attempt, and puts the next one `delay_seconds` later.
pub async fn stream_erasures_failed(
    conn: &mut PgConnection,
    learner_ids: &[Uuid],
    delay_seconds: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE pending_stream_erasures
         SET attempts = attempts + 1, not_before = now() + make_interval(secs => $2)
         WHERE learner_id = ANY($1)",
    )
    .bind(learner_ids)
    .bind(delay_seconds)
    .execute(conn)
    .await?;
    Ok(())
}
