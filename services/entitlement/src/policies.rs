//! Policy versions: the one in force is kept in the database, so that every replica
//! runs the same one. Activating a version recomputes every learner and publishes only
//! those whose grants change; simulating a candidate says what activating it would do.
//! Every replica follows an activation made anywhere as soon as it commits.

use std::{sync::Arc, time::Duration};

use sqlx::{Connection, PgConnection, PgPool, postgres::PgListener};
use tokio::sync::watch;

use uuid::Uuid;

use crate::{
    domain::{
        grants::{self, StayFacts},
        impact::Impact,
        policy::Policy,
    },
    recompute::{self, ActivePolicy, Recomputer, parse_stored},
    store::{self, Cause, LearnerState},
};

/// Serialises activations and start-ups of every replica (exclusive), against every
/// recomputation (shared).
pub const POLICY_LOCK: i64 = 0x656e_7469_746c_656d;

/// The channel the `active_policy_changed` trigger notifies with the version made
/// active, when that commits.
pub const CHANNEL: &str = "entitlement_policy";

/// Learners an activation recomputes per page.
const ACTIVATION_PAGE: i64 = 5_000;

/// Why an activation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("policy version {0} is already active")]
    AlreadyActive(String),
    #[error("the active policy is {active}, not {expected}: simulate against it again")]
    NotExpected { expected: String, active: String },
    #[error(
        "policy version {0} is already recorded with another document: change `version` in the \
         document (a version never recorded) to activate this one"
    )]
    VersionTaken(String),
    #[error(transparent)]
    Recompute(#[from] recompute::Error),
}

impl From<sqlx::Error> for ActivationError {
    fn from(error: sqlx::Error) -> Self {
        Self::Recompute(error.into())
    }
}

/// What an activation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub version: String,
    pub previous: Option<String>,
    pub learners_changed: u64,
    /// The same document was already active under its version: nothing was done.
    pub already_active: bool,
}

/// The version a document was recorded under, if any, loaded.
async fn recorded(
    conn: &mut PgConnection,
    version: &str,
) -> Result<Option<Policy>, ActivationError> {
    let document: Option<String> =
        sqlx::query_scalar("SELECT document FROM policy_versions WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(document
        .map(|document| parse_stored(version, &document))
        .transpose()?)
}

/// Whether the stored document of the active `version` still loads with this code;
/// when it does not (a rule an older version accepted), says so, naming the version.
async fn active_readable(conn: &mut PgConnection, version: &str) -> Result<bool, ActivationError> {
    match recorded(conn, version).await {
        Ok(_) => Ok(true),
        Err(ActivationError::Recompute(recompute::Error::Policy(error))) => {
            tracing::warn!(
                policy_version = %version,
                %error,
                "the active policy's stored document no longer loads; activating the configured one"
            );
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Makes `candidate` the active policy inside the caller's transaction (which holds
/// [`POLICY_LOCK`]): records it, recomputes every learner, audits the activation.
async fn activate_in(
    conn: &mut PgConnection,
    recomputer: &Recomputer,
    candidate: &Policy,
    document: &str,
    by: &str,
    reason: &str,
    expected: Option<&str>,
) -> Result<Activation, ActivationError> {
    let previous: Option<String> =
        sqlx::query_scalar("SELECT version FROM active_policy FOR UPDATE")
            .fetch_optional(&mut *conn)
            .await?;
    let known = recorded(conn, &candidate.version).await?;
    if let Some(known) = &known
        && known != candidate
    {
        return Err(ActivationError::VersionTaken(candidate.version.clone()));
    }
    // The same document again under the active version: what was asked already holds,
    // whatever version the caller expected (an activation whose answer was lost and
    // that is run again).
    if previous.as_deref() == Some(candidate.version.as_str()) {
        return Ok(Activation {
            version: candidate.version.clone(),
            previous,
            learners_changed: 0,
            already_active: true,
        });
    }
    if let Some(expected) = expected
        && previous.as_deref() != Some(expected)
    {
        return Err(ActivationError::NotExpected {
            expected: expected.to_owned(),
            active: previous.unwrap_or_default(),
        });
    }
    match known {
        Some(_) => {}
        None => {
            sqlx::query(
                "INSERT INTO policy_versions (version, document, activated_by) VALUES ($1, $2, $3)",
            )
            .bind(&candidate.version)
            .bind(document)
            .bind(by)
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query(
        "INSERT INTO active_policy (singleton, version) VALUES (true, $1)
         ON CONFLICT (singleton) DO UPDATE SET version = excluded.version",
    )
    .bind(&candidate.version)
    .execute(&mut *conn)
    .await?;
    let cause = Cause::Policy {
        version: candidate.version.clone(),
        actor: by.to_owned(),
    };
    let none = LearnerState::default();
    let mut learners_changed = 0;
    // A page of learners at a time, so that neither memory nor a statement holds
    // every learner; a learner whose stored dates cannot be read is left as it is,
    // named in a warning, rather than failing the activation (or the start).
    let mut after = Uuid::nil();
    loop {
        let page = store::learners_page(conn, after, ACTIVATION_PAGE).await?;
        let Some(&(last, _, _)) = page.last() else {
            break;
        };
        after = last;
        let mut ids = Vec::with_capacity(page.len());
        for (learner_id, _, unreadable) in &page {
            if *unreadable {
                tracing::warn!(
                    learner_id = %learner_id,
                    policy_version = %candidate.version,
                    "stored dates out of range: learner not recomputed by the activation"
                );
            } else {
                ids.push(*learner_id);
            }
        }
        let facts = store::stay_facts_of(conn, Some(&ids)).await?;
        let states = store::states_of(conn, Some(&ids)).await?;
        let slice: Vec<(Uuid, &[StayFacts], &LearnerState, &Cause)> = facts
            .iter()
            .map(|(learner_id, stays)| {
                (
                    *learner_id,
                    stays.as_slice(),
                    states.get(learner_id).unwrap_or(&none),
                    &cause,
                )
            })
            .collect();
        learners_changed += recomputer.apply_many(conn, candidate, &slice).await?;
        if page.len() < usize::try_from(ACTIVATION_PAGE).unwrap_or(usize::MAX) {
            break;
        }
    }
    sqlx::query(
        "INSERT INTO policy_activations (version, previous_version, activated_by, reason, learners_changed)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&candidate.version)
    .bind(&previous)
    .bind(by)
    .bind(reason)
    .bind(i64::try_from(learners_changed).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await?;
    Ok(Activation {
        version: candidate.version.clone(),
        previous,
        learners_changed,
        already_active: false,
    })
}

/// Activates `candidate` (already checked) on behalf of `by`, provided the active
/// version is still `expected` when given.
pub async fn activate(
    pool: &PgPool,
    recomputer: &Recomputer,
    candidate: Policy,
    document: &str,
    by: &str,
    reason: &str,
    expected: Option<&str>,
) -> Result<Activation, ActivationError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(POLICY_LOCK)
        .execute(&mut *tx)
        .await?;
    let activation = activate_in(
        &mut tx, recomputer, &candidate, document, by, reason, expected,
    )
    .await?;
    tx.commit().await?;
    if activation.already_active {
        tracing::info!(
            policy_version = %activation.version,
            "policy activated again with the same document: nothing changed"
        );
        return Ok(activation);
    }
    recomputer.policy.set(Arc::new(candidate));
    recomputer.outbox.notify();
    tracing::info!(
        policy_version = %activation.version,
        previous = ?activation.previous,
        learners_changed = activation.learners_changed,
        "policy activated"
    );
    Ok(activation)
}

/// At start: the policy to run with. The first start activates the configured file;
/// later, the database's active version wins, unless the configured file carries a
/// version never recorded, which is then activated (deploying a new file is one way
/// to activate it). A changed document under a recorded version is refused.
pub async fn bootstrap(
    pool: &PgPool,
    recomputer: &Recomputer,
    configured: Policy,
    document: &str,
    source: &str,
) -> Result<Arc<Policy>, ActivationError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(POLICY_LOCK)
        .execute(&mut *tx)
        .await?;
    let active: Option<String> = sqlx::query_scalar("SELECT version FROM active_policy")
        .fetch_optional(&mut *tx)
        .await?;
    let by = format!("configuration ({source})");
    let configured_known = recorded(&mut tx, &configured.version).await?;
    let policy = match (active, configured_known) {
        (Some(version), Some(known)) if version == configured.version => {
            if known != configured {
                return Err(ActivationError::VersionTaken(version));
            }
            Arc::new(configured)
        }
        (Some(version), Some(_)) if active_readable(&mut tx, &version).await? => {
            tracing::warn!(
                configured = %configured.version,
                active = %version,
                "the configured policy is an earlier version; keeping the active one"
            );
            let known = recorded(&mut tx, &version)
                .await?
                .ok_or(ActivationError::AlreadyActive(version))?;
            Arc::new(known)
        }
        (active, known) => {
            // Also when the active version's stored document no longer loads with
            // this code (said by `active_readable`): the configured one replaces it.
            let reason = match (&active, &known) {
                (Some(_), Some(_)) => "configured: the active policy no longer loads",
                _ => "configured",
            };
            let activation = activate_in(
                &mut tx,
                recomputer,
                &configured,
                document,
                &by,
                reason,
                None,
            )
            .await?;
            tracing::info!(
                policy_version = %activation.version,
                previous = ?activation.previous,
                learners_changed = activation.learners_changed,
                "configured policy activated"
            );
            Arc::new(configured)
        }
    };
    tx.commit().await?;
    recomputer.policy.set(policy.clone());
    recomputer.outbox.notify();
    Ok(policy)
}

/// What activating `candidate` would meet about its version, said before it is
/// activated: refused when the version is recorded with another document, nothing to
/// do when it is the active document.
pub async fn version_warnings(
    pool: &PgPool,
    candidate: &Policy,
) -> Result<Vec<String>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let active: Option<String> = sqlx::query_scalar("SELECT version FROM active_policy")
        .fetch_optional(&mut *conn)
        .await?;
    let version = &candidate.version;
    // Whether the version is recorded with another document, when it is recorded.
    let taken = match recorded(&mut conn, version).await {
        Ok(known) => known.map(|known| known != *candidate),
        Err(ActivationError::Recompute(recompute::Error::Database(error))) => return Err(error),
        // A stored document this code no longer loads cannot be the candidate.
        Err(_) => Some(true),
    };
    Ok(match taken {
        Some(true) => vec![format!(
            "version {version} is already recorded with another document: activating this one \
             will be refused (ALREADY_EXISTS); change `version` in the document"
        )],
        Some(false) if active.as_deref() == Some(version.as_str()) => vec![format!(
            "this document is the active policy {version}: activating it again changes nothing"
        )],
        _ => Vec::new(),
    })
}

/// What activating `candidate` would change, against every learner's grants now.
pub async fn simulate(pool: &PgPool, candidate: &Policy) -> Result<Impact, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let facts = store::all_stay_facts(&mut tx).await?;
    let states = store::all_states(&mut tx).await?;
    tx.commit().await?;
    let mut impact = Impact::default();
    let none = Vec::new();
    for (learner_id, stays) in &facts {
        let current = states.get(learner_id).map_or(&none, |state| &state.grants);
        impact.add(
            &learner_id.to_string(),
            current,
            &grants::grants(candidate, stays),
        );
    }
    Ok(impact)
}

/// Keeps `policy` the database's active one until `shutdown` turns true: listens for
/// activations (made through any replica, or by a start with a new configured file)
/// and loads the version each one made active; reads it again at every (re)connection,
/// for what was activated while it was not listening. Without this, a replica would
/// answer Check, Explain and Simulate with the policy it last recomputed under.
pub async fn follow_activations(
    pool: PgPool,
    policy: ActivePolicy,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    while !*shutdown.borrow() {
        match follow_once(&pool, &policy, &mut shutdown, &mut failures).await {
            Ok(()) => return,
            Err(error) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(%error, failures, "policy activation listener lost; reconnecting");
                }
                let delay = Duration::from_millis(200) * 2u32.saturating_pow(failures.min(6));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

async fn follow_once(
    pool: &PgPool,
    policy: &ActivePolicy,
    shutdown: &mut watch::Receiver<bool>,
    failures: &mut u32,
) -> Result<(), recompute::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    // Listening already: an activation committed from here on is notified, one
    // committed before is read now.
    policy.reload(&mut *pool.acquire().await?).await?;
    *failures = 0;
    loop {
        tokio::select! {
            notification = listener.try_recv() => match notification? {
                // The version is read again rather than taken from the payload: of
                // two activations in a row, the newer is in force whatever the order
                // their notifications are handled in.
                Some(_) => {
                    policy.reload(&mut *pool.acquire().await?).await?;
                }
                // The connection was lost: an activation meanwhile would be missed.
                None => {
                    return Err(sqlx::Error::Io(std::io::Error::other(
                        "the listening connection was lost",
                    ))
                    .into());
                }
            },
            _ = shutdown.changed() => return Ok(()),
        }
    }
}
