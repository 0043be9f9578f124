//! The entitlement database: the learners' projection, agreements' options, grants.

use std::collections::{BTreeMap, HashMap};

use hosted_platform::telemetry::TraceHeaders;
use sqlx::PgConnection;
use time::Date;
use uuid::Uuid;

use crate::domain::grants::{Grant, Lock, StayFacts, same_grants};

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
    pub sponsor_unit: String,
    pub requested: Vec<String>,
    /// Why the stay ended early (`left`), when it did.
    pub early_end: Option<String>,
}

/// A learner's snapshot, as projected.
#[derive(Debug, Clone)]
pub struct ProjectedLearner {
    pub learner_id: Uuid,
    pub login: String,
    pub version: i64,
    pub stays: Vec<ProjectedStay>,
    /// The learner's lock, while there is one.
    pub lock: Option<Lock>,
}

/// Stores learners' stays, each unless the projection holds that version or a newer
/// one, or the learner was erased (whatever the version: an erased person never comes
/// back), in three set statements whatever their number. At most one snapshot per
/// learner (the caller keeps the newest). Returns the learners that changed.
pub async fn apply_learners(
    conn: &mut PgConnection,
    learners: &[ProjectedLearner],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if learners.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = learners.iter().map(|learner| learner.learner_id).collect();
    lock_learners(&mut *conn, &ids).await?;
    let logins: Vec<&str> = learners
        .iter()
        .map(|learner| learner.login.as_str())
        .collect();
    let versions: Vec<i64> = learners.iter().map(|learner| learner.version).collect();
    let lock = |field: fn(&Lock) -> &str| -> Vec<Option<&str>> {
        learners
            .iter()
            .map(|learner| learner.lock.as_ref().map(field))
            .collect()
    };
    let locked_on: Vec<Option<Date>> = learners
        .iter()
        .map(|learner| learner.lock.as_ref().map(|lock| lock.on))
        .collect();
    let locked_at: Vec<Option<time::OffsetDateTime>> = learners
        .iter()
        .map(|learner| learner.lock.as_ref().and_then(|lock| lock.since))
        .collect();
    let changed: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO learners (learner_id, login, version, locked_on, lock_kind, lock_reason, locked_at,
                               locked_by)
         SELECT u.* FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::date[], $5::text[],
                                $6::text[], $7::timestamptz[], $8::text[])
                AS u(learner_id, login, version, locked_on, lock_kind, lock_reason, locked_at,
                     locked_by)
         WHERE NOT EXISTS (SELECT 1 FROM erased_learners e WHERE e.learner_id = u.learner_id)
         ON CONFLICT (learner_id) DO UPDATE SET login = excluded.login, version = excluded.version,
                locked_on = excluded.locked_on, lock_kind = excluded.lock_kind,
                lock_reason = excluded.lock_reason, locked_at = excluded.locked_at,
                locked_by = excluded.locked_by, updated_at = now()
         WHERE learners.version < excluded.version
         RETURNING learner_id",
    )
    .bind(&ids)
    .bind(&logins)
    .bind(&versions)
    .bind(&locked_on)
    .bind(lock(|lock| &lock.kind))
    .bind(lock(|lock| &lock.reason))
    .bind(&locked_at)
    .bind(lock(|lock| &lock.by))
    .fetch_all(&mut *conn)
    .await?;
    if changed.is_empty() {
        return Ok(changed);
    }
    sqlx::query("DELETE FROM stays WHERE learner_id = ANY($1)")
        .bind(&changed)
        .execute(&mut *conn)
        .await?;
    let kept: std::collections::HashSet<Uuid> = changed.iter().copied().collect();
    let stays: Vec<(Uuid, &ProjectedStay)> = learners
        .iter()
        .filter(|learner| kept.contains(&learner.learner_id))
        .flat_map(|learner| learner.stays.iter().map(|stay| (learner.learner_id, stay)))
        .collect();
    let owners: Vec<Uuid> = stays.iter().map(|(owner, _)| *owner).collect();
    let ids: Vec<Uuid> = stays.iter().map(|(_, stay)| stay.stay_id).collect();
    let populations: Vec<&str> = stays
        .iter()
        .map(|(_, stay)| stay.population.as_str())
        .collect();
    let starts: Vec<Date> = stays.iter().map(|(_, stay)| stay.start_date).collect();
    let ends: Vec<Date> = stays.iter().map(|(_, stay)| stay.end_date).collect();
    let cancelled: Vec<bool> = stays.iter().map(|(_, stay)| stay.cancelled).collect();
    let paid: Vec<bool> = stays.iter().map(|(_, stay)| stay.paid).collect();
    let agreements: Vec<Option<Uuid>> = stays.iter().map(|(_, stay)| stay.agreement_id).collect();
    let units: Vec<&str> = stays
        .iter()
        .map(|(_, stay)| stay.sponsor_unit.as_str())
        .collect();
    // Arrays of arrays must be rectangular in PostgreSQL: each list travels as text.
    let requested: Vec<String> = stays
        .iter()
        .map(|(_, stay)| stay.requested.join(","))
        .collect();
    let early_ends: Vec<Option<&str>> = stays
        .iter()
        .map(|(_, stay)| stay.early_end.as_deref())
        .collect();
    sqlx::query(
        "INSERT INTO stays (stay_id, learner_id, population, start_date, end_date, cancelled, paid,
                            agreement_id, sponsor_unit, requested, early_end)
         SELECT s, l, p, b, e, c, pd, a, su, COALESCE(string_to_array(NULLIF(r, ''), ','), '{}'), ee
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::date[], $5::date[], $6::bool[], $7::bool[],
                     $8::uuid[], $9::text[], $10::text[], $11::text[])
              AS u(s, l, p, b, e, c, pd, a, su, r, ee)",
    )
    .bind(&ids)
    .bind(&owners)
    .bind(&populations)
    .bind(&starts)
    .bind(&ends)
    .bind(&cancelled)
    .bind(&paid)
    .bind(&agreements)
    .bind(&units)
    .bind(&requested)
    .bind(&early_ends)
    .execute(conn)
    .await?;
    Ok(changed)
}

/// Stores an agreement's options unless a newer version is there; returns whether it
/// changed. The learners under it are notified to Check's caches.
pub async fn apply_agreement(
    conn: &mut PgConnection,
    agreement_id: Uuid,
    options: &[String],
    version: i64,
) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query(
        "INSERT INTO agreements (agreement_id, options, version) VALUES ($1, $2, $3)
         ON CONFLICT (agreement_id) DO UPDATE SET options = excluded.options, version = excluded.version
         WHERE agreements.version < excluded.version",
    )
    .bind(agreement_id)
    .bind(options)
    .bind(version)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if changed {
        sqlx::query(
            "SELECT pg_notify($2, learner_id::text) FROM stays WHERE agreement_id = $1 GROUP BY learner_id",
        )
        .bind(agreement_id)
        .bind(crate::cache::CHANNEL)
        .execute(conn)
        .await?;
    }
    Ok(changed)
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
    let rows: Vec<StayRow> = sqlx::query_as(&format!(
        "{STAY_FACTS} WHERE s.learner_id = $1 ORDER BY s.start_date, s.stay_id"
    ))
    .bind(learner_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(StayFacts::from).collect())
}

/// A stay with its agreement's options, as [`STAY_FACTS`] selects it.
#[derive(sqlx::FromRow)]
struct StayRow {
    learner_id: Uuid,
    stay_id: Uuid,
    population: String,
    start_date: Date,
    end_date: Date,
    cancelled: bool,
    paid: bool,
    options: Option<Vec<String>>,
    sponsor_unit: String,
    requested: Vec<String>,
    locked_on: Option<Date>,
    lock_kind: Option<String>,
    lock_reason: Option<String>,
    locked_at: Option<time::OffsetDateTime>,
    locked_by: Option<String>,
    early_end: Option<String>,
}

const STAY_FACTS: &str = "SELECT s.learner_id, s.stay_id, s.population, s.start_date, s.end_date,
        s.cancelled, s.paid, array_remove(a.options, NULL) AS options, s.sponsor_unit,
        array_remove(s.requested, NULL) AS requested, s.early_end, l.locked_on, l.lock_kind,
        l.lock_reason, l.locked_at, l.locked_by
     FROM stays s LEFT JOIN agreements a ON a.agreement_id = s.agreement_id
          JOIN learners l ON l.learner_id = s.learner_id";

impl From<StayRow> for StayFacts {
    fn from(row: StayRow) -> Self {
        StayFacts {
            stay_id: row.stay_id.to_string(),
            population: row.population,
            start_date: row.start_date,
            end_date: row.end_date,
            cancelled: row.cancelled,
            paid: row.paid,
            agreement_options: row.options.unwrap_or_default(),
            sponsor_unit: row.sponsor_unit,
            requested: row.requested,
            lock: row.locked_on.map(|on| Lock {
                on,
                kind: row.lock_kind.unwrap_or_default(),
                reason: row.lock_reason.unwrap_or_default(),
                since: row.locked_at,
                by: row.locked_by.unwrap_or_default(),
            }),
            early_end: row.early_end,
        }
    }
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

impl From<GrantRow> for Grant {
    fn from(row: GrantRow) -> Self {
        Grant {
            resource: row.resource,
            valid_from: row.valid_from,
            valid_until: row.valid_until,
            stay_id: row.stay_id.to_string(),
            rule: row.rule,
            policy_version: row.policy_version,
        }
    }
}

pub async fn grants(conn: &mut PgConnection, learner_id: Uuid) -> Result<Vec<Grant>, sqlx::Error> {
    let rows: Vec<GrantRow> = sqlx::query_as(
        "SELECT resource, stay_id, valid_from, valid_until, rule, policy_version FROM grants
         WHERE learner_id = $1 ORDER BY resource, valid_from, stay_id",
    )
    .bind(learner_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Grant::from).collect())
}

/// What set off a recomputation, for the audit and the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// An intake event, by its id, with the trace what it sets off belongs to and
    /// the caller who caused it (the event's actor).
    Event {
        event_id: Uuid,
        trace: TraceHeaders,
        actor: String,
    },
    /// The calendar: a grant starts or lapses (the due-time schedule).
    Schedule,
    /// The activation of a policy version, by a caller.
    Policy { version: String, actor: String },
}

impl Cause {
    /// Who caused the change: the caller along the whole chain, `system` for the
    /// calendar.
    pub fn actor(&self) -> &str {
        match self {
            Cause::Event { actor, .. } | Cause::Policy { actor, .. } => actor,
            Cause::Schedule => hosted_platform::auth::SYSTEM,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Cause::Event { .. } => "intake event",
            Cause::Schedule => "due date",
            Cause::Policy { .. } => "policy activation",
        }
    }

    fn event_id(&self) -> Option<Uuid> {
        match self {
            Cause::Event { event_id, .. } => Some(*event_id),
            _ => None,
        }
    }

    /// The trace of the event that set it off; none for the calendar or a policy,
    /// which run in their own span.
    pub fn trace(&self) -> Option<&TraceHeaders> {
        match self {
            Cause::Event { trace, .. } => Some(trace),
            _ => None,
        }
    }
}

/// A learner's grants as stored, with what was last published as in force and the
/// next day that may change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LearnerState {
    pub grants: Vec<Grant>,
    pub in_force: Vec<String>,
    pub next_due: Option<Date>,
}

pub async fn state(conn: &mut PgConnection, learner_id: Uuid) -> Result<LearnerState, sqlx::Error> {
    let (in_force, next_due): (Vec<String>, Option<Date>) = sqlx::query_as(
        "SELECT array_remove(in_force, NULL), next_due FROM learners WHERE learner_id = $1",
    )
    .bind(learner_id)
    .fetch_optional(&mut *conn)
    .await?
    .unwrap_or_default();
    Ok(LearnerState {
        grants: grants(conn, learner_id).await?,
        in_force,
        next_due,
    })
}

/// Every learner's state, for an activation or a simulation.
pub async fn all_states(
    conn: &mut PgConnection,
) -> Result<HashMap<Uuid, LearnerState>, sqlx::Error> {
    states_of(conn, None).await
}

/// The states of `only` these learners (every learner when None).
pub async fn states_of(
    conn: &mut PgConnection,
    only: Option<&[Uuid]>,
) -> Result<HashMap<Uuid, LearnerState>, sqlx::Error> {
    let mut states: HashMap<Uuid, LearnerState> =
        sqlx::query_as::<_, (Uuid, Vec<String>, Option<Date>)>(
            "SELECT learner_id, array_remove(in_force, NULL), next_due FROM learners
             WHERE $1::uuid[] IS NULL OR learner_id = ANY($1)",
        )
        .bind(only)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(id, in_force, next_due)| {
            (
                id,
                LearnerState {
                    grants: Vec::new(),
                    in_force,
                    next_due,
                },
            )
        })
        .collect();
    let rows: Vec<(Uuid, GrantRow)> =
        sqlx::query_as::<_, (Uuid, String, Uuid, Date, Date, String, String)>(
            "SELECT learner_id, resource, stay_id, valid_from, valid_until, rule, policy_version
             FROM grants WHERE $1::uuid[] IS NULL OR learner_id = ANY($1)
             ORDER BY learner_id, resource, valid_from, stay_id",
        )
        .bind(only)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(
            |(learner, resource, stay_id, valid_from, valid_until, rule, policy_version)| {
                (
                    learner,
                    GrantRow {
                        resource,
                        stay_id,
                        valid_from,
                        valid_until,
                        rule,
                        policy_version,
                    },
                )
            },
        )
        .collect();
    for (learner, row) in rows {
        if let Some(state) = states.get_mut(&learner) {
            state.grants.push(row.into());
        }
    }
    Ok(states)
}

/// Every learner's stays as the rules see them, by learner (learners without a stay
/// included, with none).
pub async fn all_stay_facts(
    conn: &mut PgConnection,
) -> Result<BTreeMap<Uuid, Vec<StayFacts>>, sqlx::Error> {
    stay_facts_of(conn, None).await
}

/// The stays of `only` these learners (every learner when None), by learner.
pub async fn stay_facts_of(
    conn: &mut PgConnection,
    only: Option<&[Uuid]>,
) -> Result<BTreeMap<Uuid, Vec<StayFacts>>, sqlx::Error> {
    let mut facts: BTreeMap<Uuid, Vec<StayFacts>> = sqlx::query_scalar::<_, Uuid>(
        "SELECT learner_id FROM learners WHERE $1::uuid[] IS NULL OR learner_id = ANY($1)",
    )
    .bind(only)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|id| (id, Vec::new()))
    .collect();
    let rows: Vec<StayRow> = sqlx::query_as(&format!(
        "{STAY_FACTS} WHERE $1::uuid[] IS NULL OR s.learner_id = ANY($1)
         ORDER BY s.learner_id, s.start_date, s.stay_id"
    ))
    .bind(only)
    .fetch_all(conn)
    .await?;
    for row in rows {
        facts.entry(row.learner_id).or_default().push(row.into());
    }
    Ok(facts)
}

/// One line of the grants audit.
struct AuditLine<'a> {
    grant: &'a Grant,
    change: &'static str,
}

/// The audit lines of a change of grants: each grant given, changed or revoked.
fn grant_changes<'a>(before: &'a [Grant], after: &'a [Grant]) -> Vec<AuditLine<'a>> {
    let key = |grant: &Grant| (grant.resource.clone(), grant.stay_id.clone());
    let old: HashMap<_, &Grant> = before.iter().map(|grant| (key(grant), grant)).collect();
    let new: HashMap<_, &Grant> = after.iter().map(|grant| (key(grant), grant)).collect();
    let mut lines = Vec::new();
    for grant in after {
        match old.get(&key(grant)) {
            None => lines.push(AuditLine {
                grant,
                change: "granted",
            }),
            Some(previous)
                if !same_grants(std::slice::from_ref(*previous), std::slice::from_ref(grant)) =>
            {
                lines.push(AuditLine {
                    grant,
                    change: "changed",
                })
            }
            Some(_) => {}
        }
    }
    for grant in before {
        if !new.contains_key(&key(grant)) {
            lines.push(AuditLine {
                grant,
                change: "revoked",
            });
        }
    }
    lines
}

/// The audit lines of what the calendar alone brought into force or let lapse.
fn calendar_changes<'a>(before: &'a LearnerState, after: &'a LearnerState) -> Vec<AuditLine<'a>> {
    let mut lines = Vec::new();
    for resource in after
        .in_force
        .iter()
        .filter(|r| !before.in_force.contains(r))
    {
        if let Some(grant) = after
            .grants
            .iter()
            .filter(|grant| &grant.resource == resource)
            .min_by_key(|grant| grant.valid_from)
        {
            lines.push(AuditLine {
                grant,
                change: "took effect",
            });
        }
    }
    for resource in before
        .in_force
        .iter()
        .filter(|r| !after.in_force.contains(r))
    {
        if let Some(grant) = before
            .grants
            .iter()
            .filter(|grant| &grant.resource == resource)
            .max_by_key(|grant| grant.valid_until)
        {
            lines.push(AuditLine {
                grant,
                change: "lapsed",
            });
        }
    }
    lines
}

/// One learner's state before and after a recomputation.
#[derive(Debug)]
pub struct Change<'a> {
    pub learner_id: Uuid,
    pub before: &'a LearnerState,
    pub after: LearnerState,
    /// What set it off, for the audit.
    pub cause: &'a Cause,
    /// What more the audit says of why, when there is more: the lock that closed them.
    pub why: Option<String>,
    /// The learner's lock, while there is one: published with the grants.
    pub lock: Option<&'a Lock>,
}

impl Change<'_> {
    fn grants_changed(&self) -> bool {
        !same_grants(&self.before.grants, &self.after.grants)
    }

    /// Something to publish: the grants, or what is in force, changed.
    fn published(&self) -> bool {
        self.grants_changed() || self.before.in_force != self.after.in_force
    }
}

/// A learner whose change was stored and is to be published.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Stored {
    pub learner_id: Uuid,
    pub grants_version: i64,
    pub login: String,
    pub version: i64,
}

/// Stores learners' new states in a few set statements, whatever their number: the
/// grants that changed (each grant and revocation audited with its cause), what is
/// in force and the next day it may change. Returns the learners whose grants
/// or in-force resources changed (to publish), with their new grants version.
pub async fn store_states(
    conn: &mut PgConnection,
    changes: &[Change<'_>],
) -> Result<Vec<Stored>, sqlx::Error> {
    // Only the next due day moved: no version, nothing to publish.
    let due_only: Vec<&Change> = changes
        .iter()
        .filter(|change| !change.published() && change.before.next_due != change.after.next_due)
        .collect();
    if !due_only.is_empty() {
        let ids: Vec<Uuid> = due_only.iter().map(|change| change.learner_id).collect();
        let days: Vec<Option<Date>> = due_only
            .iter()
            .map(|change| change.after.next_due)
            .collect();
        sqlx::query(
            "UPDATE learners l SET next_due = u.d FROM unnest($1::uuid[], $2::date[]) AS u(id, d)
             WHERE l.learner_id = u.id",
        )
        .bind(&ids)
        .bind(&days)
        .execute(&mut *conn)
        .await?;
    }
    let published: Vec<&Change> = changes.iter().filter(|change| change.published()).collect();
    if published.is_empty() {
        return Ok(Vec::new());
    }

    // The grants of the learners whose grants changed, replaced.
    let regranted: Vec<&Change> = published
        .iter()
        .copied()
        .filter(|change| change.grants_changed())
        .collect();
    let mut audit: Vec<(&Change, AuditLine)> = Vec::new();
    for change in &published {
        let lines = if change.grants_changed() {
            grant_changes(&change.before.grants, &change.after.grants)
        } else {
            calendar_changes(change.before, &change.after)
        };
        audit.extend(lines.into_iter().map(|line| (*change, line)));
    }
    if !regranted.is_empty() {
        let ids: Vec<Uuid> = regranted.iter().map(|change| change.learner_id).collect();
        sqlx::query("DELETE FROM grants WHERE learner_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *conn)
            .await?;
        let rows: Vec<(Uuid, &Grant)> = regranted
            .iter()
            .flat_map(|change| {
                change
                    .after
                    .grants
                    .iter()
                    .map(|grant| (change.learner_id, grant))
            })
            .collect();
        let learners: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
        let text = |field: fn(&Grant) -> &str| -> Vec<&str> {
            rows.iter().map(|(_, grant)| field(grant)).collect()
        };
        let stays: Vec<Uuid> = rows
            .iter()
            .map(|(_, grant)| Uuid::parse_str(&grant.stay_id).unwrap_or_default())
            .collect();
        let froms: Vec<Date> = rows.iter().map(|(_, grant)| grant.valid_from).collect();
        let untils: Vec<Date> = rows.iter().map(|(_, grant)| grant.valid_until).collect();
        sqlx::query(
            "INSERT INTO grants (learner_id, resource, stay_id, valid_from, valid_until, rule, policy_version)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::date[], $5::date[], $6::text[], $7::text[])",
        )
        .bind(&learners)
        .bind(text(|grant| &grant.resource))
        .bind(&stays)
        .bind(&froms)
        .bind(&untils)
        .bind(text(|grant| &grant.rule))
        .bind(text(|grant| &grant.policy_version))
        .execute(&mut *conn)
        .await?;
    }
    if !audit.is_empty() {
        let learners: Vec<Uuid> = audit.iter().map(|(change, _)| change.learner_id).collect();
        let text = |get: fn(&Grant) -> &str| -> Vec<&str> {
            audit.iter().map(|(_, line)| get(line.grant)).collect()
        };
        let causes: Vec<&str> = audit
            .iter()
            .map(|(change, _)| change.cause.label())
            .collect();
        let cause_events: Vec<Option<Uuid>> = audit
            .iter()
            .map(|(change, _)| change.cause.event_id())
            .collect();
        let actors: Vec<&str> = audit
            .iter()
            .map(|(change, _)| change.cause.actor())
            .collect();
        let changes: Vec<&str> = audit.iter().map(|(_, line)| line.change).collect();
        let whys: Vec<Option<&str>> = audit
            .iter()
            .map(|(change, _)| change.why.as_deref())
            .collect();
        let stays: Vec<Uuid> = audit
            .iter()
            .map(|(_, line)| Uuid::parse_str(&line.grant.stay_id).unwrap_or_default())
            .collect();
        let froms: Vec<Date> = audit
            .iter()
            .map(|(_, line)| line.grant.valid_from)
            .collect();
        let untils: Vec<Date> = audit
            .iter()
            .map(|(_, line)| line.grant.valid_until)
            .collect();
        sqlx::query(
            "INSERT INTO grant_audit (learner_id, resource, stay_id, change, valid_from, valid_until, rule,
                                      policy_version, cause, cause_event_id, actor, why)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::date[], $6::date[],
                                  $7::text[], $8::text[], $9::text[], $10::uuid[], $11::text[],
                                  $12::text[])",
        )
        .bind(&learners)
        .bind(text(|grant| &grant.resource))
        .bind(&stays)
        .bind(&changes)
        .bind(&froms)
        .bind(&untils)
        .bind(text(|grant| &grant.rule))
        .bind(text(|grant| &grant.policy_version))
        .bind(&causes)
        .bind(&cause_events)
        .bind(&actors)
        .bind(&whys)
        .execute(&mut *conn)
        .await?;
    }
    let ids: Vec<Uuid> = published.iter().map(|change| change.learner_id).collect();
    // Arrays of arrays must be rectangular in PostgreSQL: each set travels as text.
    let in_force: Vec<String> = published
        .iter()
        .map(|change| change.after.in_force.join(","))
        .collect();
    let due: Vec<Option<Date>> = published
        .iter()
        .map(|change| change.after.next_due)
        .collect();
    // The version is the commit's millisecond (or one more than the last, if that is
    // higher): it grows at every change as a counter would, and it keeps growing when
    // this database is lost and rebuilt (a counter would start again at 1, below what
    // directory and cards hold, and they would ignore every change until it caught up).
    sqlx::query_as(
        "UPDATE learners l
         SET grants_version = GREATEST(l.grants_version + 1,
                                       (extract(epoch FROM clock_timestamp()) * 1000)::bigint),
             in_force = COALESCE(string_to_array(NULLIF(u.f, ''), ','), '{}'),
             next_due = u.d
         FROM unnest($1::uuid[], $2::text[], $3::date[]) AS u(id, f, d)
         WHERE l.learner_id = u.id
         RETURNING l.learner_id, l.grants_version, l.login, l.version",
    )
    .bind(&ids)
    .bind(&in_force)
    .bind(&due)
    .fetch_all(conn)
    .await
}

/// The learners among `ids` whose grants were ever published (a grants version above
/// 0), with that version, their login and the learner version the grants are from, in
/// id order: what a restatement publishes again.
pub async fn published_of(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<Stored>, sqlx::Error> {
    sqlx::query_as(
        "SELECT learner_id, grants_version, login, version FROM learners
         WHERE learner_id = ANY($1) AND grants_version > 0 ORDER BY learner_id",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Learners whose next due day has come, locked for this transaction; those another
/// replica is handling are skipped.
/// Locks up to `limit` learners whose next due day has come. Returns how many were
/// taken, and those whose stored dates can be read: the others (see
/// [`unreadable_learner`]) are named in a warning and taken off the schedule, so
/// that the schedule neither fails on them every day nor takes them again.
pub async fn due_learners(
    conn: &mut PgConnection,
    today: Date,
    limit: i64,
) -> Result<(usize, Vec<Uuid>), sqlx::Error> {
    let taken: Vec<(Uuid, bool)> = sqlx::query_as(&format!(
        "SELECT l.learner_id, {unreadable} FROM learners l WHERE l.next_due <= $1
         ORDER BY l.next_due, l.learner_id LIMIT $2 FOR UPDATE SKIP LOCKED",
        unreadable = unreadable_learner(),
    ))
    .bind(today)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let (unreadable, readable): (Vec<_>, Vec<_>) =
        taken.iter().partition(|(_, unreadable)| *unreadable);
    if !unreadable.is_empty() {
        let ids: Vec<Uuid> = unreadable
            .iter()
            .map(|(learner_id, _)| *learner_id)
            .collect();
        for learner_id in &ids {
            tracing::warn!(
                learner_id = %learner_id,
                "stored dates out of range: learner taken off the due-time schedule"
            );
        }
        sqlx::query("UPDATE learners SET next_due = NULL WHERE learner_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *conn)
            .await?;
    }
    Ok((
        taken.len(),
        readable.iter().map(|(learner_id, _)| *learner_id).collect(),
    ))
}

/// Whether any learner is due on `today` or before: after a pass of the schedule,
/// those another replica's pass holds.
pub async fn any_due(pool: &sqlx::PgPool, today: Date) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM learners WHERE next_due <= $1)")
        .bind(today)
        .fetch_one(pool)
        .await
}

/// Whether a stored date lies beyond what the code's date type holds: PostgreSQL's
/// `date` also takes `infinity`, `-infinity` and years after 9999, which an older
/// version or a hand-made fix may have left, and decoding them panics.
fn unreadable(date: &str) -> String {
    format!("COALESCE(NOT isfinite({date}) OR {date} > '9999-12-31', false)")
}

/// One page of learners for the Check cache's warm-up, in id order after `after`:
/// each learner's id, login, and whether any of their stored dates (next due day,
/// stays, grants) cannot be read, so that the caller skips them rather than fail.
pub async fn learners_page(
    conn: &mut PgConnection,
    after: Uuid,
    limit: i64,
) -> Result<Vec<(Uuid, String, bool)>, sqlx::Error> {
    let query = format!(
        "SELECT l.learner_id, l.login, {unreadable}
         FROM learners l WHERE l.learner_id > $1 ORDER BY l.learner_id LIMIT $2",
        unreadable = unreadable_learner(),
    );
    sqlx::query_as(&query)
        .bind(after)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Whether any stored date of the learner `l` (next due day, stays, grants) cannot
/// be read (see [`unreadable`]).
fn unreadable_learner() -> String {
    format!(
        "({next_due}
          OR EXISTS (SELECT 1 FROM stays s WHERE s.learner_id = l.learner_id
                     AND ({start} OR {end}))
          OR EXISTS (SELECT 1 FROM grants g WHERE g.learner_id = l.learner_id
                     AND ({from} OR {until})))",
        next_due = unreadable("l.next_due"),
        start = unreadable("s.start_date"),
        end = unreadable("s.end_date"),
        from = unreadable("g.valid_from"),
        until = unreadable("g.valid_until"),
    )
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
            // Logins are lower-case; `PAUL.DURAND` is `paul.durand`, as in LDAP's uid.
            sqlx::query_as("SELECT learner_id, login, version FROM learners WHERE login = $1")
                .bind(login_or_id.to_ascii_lowercase())
                .fetch_optional(conn)
                .await
        }
    }
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

/// What a grant revoked by an erasure is audited with (`grant_audit.cause`).
pub const ERASURE_CAUSE: &str = "person erased";

/// Erases what entitlement holds of a learner, in the caller's transaction: each grant
/// audited as revoked by the erasure, then the grants, stays and projection deleted
/// (the login goes with it: it is made of the names), and a tombstone kept under the
/// learner id. The person has no stay in force by then (intake erases at the end of
/// retention, or on request), so nothing is closed that still held; deleting rather
/// than closing makes Check answer as for an unknown learner. The Check cache is told
/// to forget them. Returns false when the learner was already erased (a redelivery).
pub async fn erase_learner(
    conn: &mut PgConnection,
    erasure: &Erasure,
) -> Result<bool, sqlx::Error> {
    lock_learners(&mut *conn, &[erasure.learner_id]).await?;
    let recorded = sqlx::query(
        "INSERT INTO erased_learners (learner_id, learner_version, basis) VALUES ($1, $2, $3)
         ON CONFLICT (learner_id) DO NOTHING",
    )
    .bind(erasure.learner_id)
    .bind(erasure.learner_version)
    .bind(&erasure.basis)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if recorded == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO grant_audit (learner_id, resource, stay_id, change, valid_from, valid_until,
                                  rule, policy_version, cause, cause_event_id, actor, why)
         SELECT learner_id, resource, stay_id, 'revoked', valid_from, valid_until, rule,
                policy_version, $2, $3, $4, $5
         FROM grants WHERE learner_id = $1 ORDER BY resource, stay_id",
    )
    .bind(erasure.learner_id)
    .bind(ERASURE_CAUSE)
    .bind(erasure.event_id)
    .bind(&erasure.actor)
    .bind(format!("erasure ({})", erasure.basis))
    .execute(&mut *conn)
    .await?;
    for table in ["grants", "stays", "learners"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE learner_id = $1"))
            .bind(erasure.learner_id)
            .execute(&mut *conn)
            .await?;
    }
    // The trigger that tells the cache fires on insert and update only.
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(crate::cache::CHANNEL)
        .bind(erasure.learner_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(true)
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
