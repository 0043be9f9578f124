//! Publication: writes each account whose projection is newer than what LDAP holds,
//! with bounded retries and a growing delay per account, so that a directory outage
//! delays publication without losing anything or flooding the logs.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use hosted_contracts::{
    prost::Message,
    subjects::{self, Namespace},
    v1,
};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, watch};
use tracing::Instrument;
use uuid::Uuid;

use hosted_platform::{
    clock::wire_instant,
    metrics::{
        Metrics, latency_histogram,
        prometheus_client::metrics::{
            counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
        },
    },
    outbox::{self, Backoff, OutboxEvent, OutboxSignal},
};

use crate::{
    domain::entry::{self, EntrySettings},
    ldap::{LdapDirectory, LdapError, Written},
    sponsors::SponsorEntries,
    store::{self, AccountRow},
};

const BATCH: i64 = 200;

/// LDAP writes in flight at once on the publisher's connection.
const IN_FLIGHT: usize = 8;

/// The health service's name for the publisher: NOT_SERVING while LDAP is away.
pub const PUBLISHER_HEALTH: &str = "hosted.directory.publisher";

/// What one batch did.
#[derive(Debug, Default)]
struct Batch {
    handled: usize,
    written: usize,
    /// Why LDAP could not be reached, when it could not.
    unavailable: Option<String>,
}

/// Why an account was not written.
enum Failure {
    /// LDAP cannot be reached: nothing is wrong with the account.
    Unavailable(String),
    /// LDAP refused this entry, or the projection cannot make one.
    Refused(String),
}
const MAX_RETRY: Duration = Duration::from_secs(300);

/// Counts LDAP writes (`ldap_writes`) as soon as LDAP has taken each, in statements
/// of their own outside any publication's transaction, so that a write done is
/// counted whatever becomes of its publication (rolled back, failed, or the process
/// killed while the batch's other writes are under way). Writes taken while a count
/// is being saved are saved together by the next statement. A count the database
/// does not take (it is away) is kept and saved with the next one.
#[derive(Debug)]
pub struct WriteCounter {
    pool: PgPool,
    uncounted: std::sync::Mutex<Vec<Uuid>>,
    /// One count statement at a time: the writes of a batch share a few statements,
    /// and one connection of the pool.
    saving: tokio::sync::Mutex<()>,
}

impl WriteCounter {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            uncounted: std::sync::Mutex::default(),
            saving: tokio::sync::Mutex::default(),
        }
    }

    fn uncounted(&self) -> std::sync::MutexGuard<'_, Vec<Uuid>> {
        self.uncounted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one write of `learner_id` that LDAP has just taken.
    pub async fn count(&self, learner_id: Uuid) {
        self.uncounted().push(learner_id);
        self.save().await;
    }

    /// Saves the counts not saved yet; keeps them when the database does not take
    /// them.
    pub async fn save(&self) {
        let _saving = self.saving.lock().await;
        let pending = std::mem::take(&mut *self.uncounted());
        if pending.is_empty() {
            return;
        }
        if let Err(error) = store::count_writes(&self.pool, &pending).await {
            tracing::warn!(%error, writes = pending.len(), "ldap writes not counted yet: kept for the next try");
            self.uncounted().extend(pending);
        }
    }
}

#[derive(Debug)]
pub struct Publisher {
    pub pool: PgPool,
    pub ldap: Arc<LdapDirectory>,
    pub settings: EntrySettings,
    /// Which sponsors have an entry (a sponsor without one is not named).
    pub sponsors: Arc<SponsorEntries>,
    pub wake: Arc<Notify>,
    pub clock: hosted_platform::clock::Clock,
    pub await_grants: Duration,
    pub health: hosted_platform::grpc::Readiness,
    /// Where `account.published` events are announced, and the relay to wake.
    pub namespace: Namespace,
    pub outbox: OutboxSignal,
    pub counter: WriteCounter,
    pub metrics: PublicationMetrics,
}

/// Publication lag buckets, in seconds: 100 ms to an hour.
const LAG_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

type OperationLabels = [(&'static str, &'static str); 1];
type WriteLabels = [(&'static str, &'static str); 2];

/// What the publisher measures: its LDAP writes, whether it reaches LDAP, how long
/// a change takes to reach LDAP, and how many accounts wait.
#[derive(Debug, Clone)]
pub struct PublicationMetrics {
    writes: Family<WriteLabels, Counter>,
    write_seconds: Family<OperationLabels, Histogram, fn() -> Histogram>,
    ldap_up: Gauge,
    lag: Histogram,
    backlog: Gauge,
}

impl PublicationMetrics {
    /// Registers the publisher's metrics, and the sampling of its backlog.
    pub fn register(metrics: &Metrics) -> Self {
        let published = Self {
            writes: Family::default(),
            write_seconds: Family::new_with_constructor(latency_histogram),
            ldap_up: Gauge::default(),
            lag: Histogram::new(LAG_BUCKETS),
            backlog: Gauge::default(),
        };
        metrics.register(
            "hosted_ldap_writes",
            "LDAP writes of the publisher, by operation (add, modify, delete) and outcome (ok, error)",
            published.writes.clone(),
        );
        metrics.register(
            "hosted_ldap_write_seconds",
            "Time of one LDAP write of the publisher (reading the entry it compares with included), by operation",
            published.write_seconds.clone(),
        );
        metrics.register(
            "hosted_ldap_up",
            "1 while the publisher reaches LDAP, 0 while publication is paused because LDAP is unavailable",
            published.ldap_up.clone(),
        );
        metrics.register(
            "hosted_publication_lag_seconds",
            "From the occurred_at of the intake or entitlement event that made an account's version to the LDAP write that published it",
            published.lag.clone(),
        );
        metrics.register(
            "hosted_publication_backlog_accounts",
            "Accounts whose entry waits to be written",
            published.backlog.clone(),
        );
        let backlog = published.backlog.clone();
        metrics.sample_also("publication backlog", move |pool| {
            let backlog = backlog.clone();
            async move {
                let pending = store::pending_accounts(&pool)
                    .await
                    .map_err(|error| error.to_string())?;
                backlog.set(pending);
                Ok(())
            }
        });
        published
    }

    fn written(&self, operation: &'static str, outcome: &'static str, elapsed: Duration) {
        self.writes
            .get_or_create(&[("operation", operation), ("outcome", outcome)])
            .inc();
        self.write_seconds
            .get_or_create(&[("operation", operation)])
            .observe(elapsed.as_secs_f64());
    }
}

/// The protobuf name of [`v1::AccountEvent`], for the outbox.
pub const ACCOUNT_EVENT_TYPE: &str = "hosted.v1.AccountEvent";

/// What one write did to an account, for its `account.published` event.
#[derive(Debug, Clone)]
pub struct Announced {
    pub written: Written,
    /// The `{COMPTE}` state written, `None` when the entry was removed.
    pub state: Option<entry::StateSpan>,
}

fn iso(day: Option<time::Date>) -> String {
    day.map(hosted_platform::clock::format_day)
        .unwrap_or_default()
}

/// Writes the `account.published` event of one account's write into the outbox, in
/// the caller's transaction (the one that records the publication), with the
/// current span's trace, naming `actor` as who caused it.
pub async fn announce(
    conn: &mut PgConnection,
    namespace: &Namespace,
    clock: &hosted_platform::clock::Clock,
    account: &AccountRow,
    dn: &str,
    announced: &Announced,
    actor: &str,
) -> Result<(), sqlx::Error> {
    let event_id = Uuid::now_v7();
    let (state, sub_state, state_from, state_to) = match announced.state {
        Some(span) => {
            let (letter, sub_state) = span.state.supann();
            (letter, sub_state, iso(span.from), iso(span.to))
        }
        None => ("", "", String::new(), String::new()),
    };
    let event = v1::AccountEvent {
        meta: Some(v1::EventMeta {
            event_id: event_id.to_string(),
            occurred_at: Some(wire_instant(clock.now())),
            learner_id: account.learner_id.to_string(),
            learner_version: account.version,
            actor: actor.to_owned(),
        }),
        dn: dn.to_owned(),
        published_version: account.version,
        state: state.to_owned(),
        sub_state: sub_state.to_owned(),
        state_from,
        state_to,
        removed: announced.written == Written::Deleted,
        login: account.login.clone(),
    };
    outbox::enqueue(
        &mut *conn,
        &[OutboxEvent {
            event_id,
            subject: namespace.subject(subjects::directory::ACCOUNT_PUBLISHED),
            event_type: ACCOUNT_EVENT_TYPE,
            payload: event.encode_to_vec(),
            trace: None,
        }],
    )
    .await?;
    let account_state = if state.is_empty() {
        String::new()
    } else {
        format!("{state} {sub_state}")
    };
    crate::audit::record_write(
        conn,
        account.learner_id,
        announced.written,
        &account_state,
        account.version,
        event_id,
        actor,
    )
    .await
}

/// The entry an account should have on `today`: the learner's state, their grants in
/// force and their enabled card, naming no sponsor in `sponsors_without_entry`
/// ([`SponsorEntries::without_entry`]); `None` once the entry is to be removed.
pub fn desired_entry(
    account: &AccountRow,
    settings: &EntrySettings,
    sponsors_without_entry: &BTreeSet<String>,
    today: time::Date,
) -> Result<Option<entry::Entry>, String> {
    desired_of(
        account,
        &decode(account)?,
        settings,
        sponsors_without_entry,
        today,
    )
}

/// The learner with the partner UAI of each stay's agreement as intake's newest
/// agreement facts give it: an agreement amended since the learner's last change
/// wins over the UAI the learner's state carried.
fn with_current_partners<'a>(
    account: &AccountRow,
    learner: &'a v1::Learner,
) -> std::borrow::Cow<'a, v1::Learner> {
    let partners: std::collections::HashMap<&str, &str> = account
        .partner_uais
        .iter()
        .filter_map(|pair| pair.split_once(' '))
        .collect();
    let stale = |stay: &v1::Stay| {
        partners
            .get(stay.agreement_id.as_str())
            .is_some_and(|uai| *uai != stay.partner_uai)
    };
    if !learner.stays.iter().any(stale) {
        return std::borrow::Cow::Borrowed(learner);
    }
    let mut current = learner.clone();
    for stay in &mut current.stays {
        if let Some(uai) = partners.get(stay.agreement_id.as_str()) {
            stay.partner_uai = (*uai).to_owned();
        }
    }
    std::borrow::Cow::Owned(current)
}

/// The same, for a learner already decoded from the account.
fn desired_of(
    account: &AccountRow,
    learner: &v1::Learner,
    settings: &EntrySettings,
    sponsors_without_entry: &BTreeSet<String>,
    today: time::Date,
) -> Result<Option<entry::Entry>, String> {
    let learner = with_current_partners(account, learner);
    let learner = learner.as_ref();
    let extras = entry::Extras {
        in_force: &account.in_force,
        card: account.card_csn.as_deref().map(|csn| entry::Card {
            csn,
            valid_until: account.card_valid_until,
        }),
        sponsors_without_entry,
    };
    entry::desired(learner, extras, settings, today).map_err(|error| error.to_string())
}

/// Says which values were left out of an entry (they could have forged or broken
/// it), by ids only: the values themselves may be personal or hostile.
fn log_withheld(learner_id: Uuid, desired: &entry::Entry) {
    for withheld in &desired.withheld {
        tracing::warn!(
            %learner_id,
            stay_id = %withheld.stay_id,
            value = withheld.what,
            "value left out of the entry: it could add a key or break a value"
        );
    }
    // By ids only: a login is made of the sponsor's names.
    for stay_id in &desired.sponsors_without_entry {
        tracing::warn!(
            %learner_id,
            %stay_id,
            "sponsor not named in the entry: no entry of theirs under the sponsor base"
        );
    }
}

fn decode(account: &AccountRow) -> Result<v1::Learner, String> {
    v1::Learner::decode(account.learner.as_slice()).map_err(|error| format!("projection: {error}"))
}

fn retry_delay(attempts: i32) -> Duration {
    let exponent = attempts.clamp(0, 12) as u32;
    Duration::from_millis(500u64 << exponent).min(MAX_RETRY)
}

impl Publisher {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut day_change = self.clock.day_change();
        let mut due_checked = None;
        let mut degraded = false;
        let mut ldap_backoff = Backoff::new();
        self.health.report(PUBLISHER_HEALTH, true).await;
        self.metrics.ldap_up.set(1);
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Once a day (and at start): accounts whose entry the calendar changes.
            let today = self.clock.today();
            if due_checked != Some(today) {
                match store::mark_due(&self.pool, today).await {
                    Ok(due) => {
                        due_checked = Some(today);
                        if due > 0 {
                            tracing::info!(accounts = due, %today, "accounts due for the day");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "due accounts not marked"),
                }
            }
            let wait = match self.publish_batch().await {
                Ok(Batch {
                    unavailable: Some(error),
                    ..
                }) => {
                    // LDAP is away: say it once, then wait longer and longer (at most
                    // 30 s) before trying again; the events keep being consumed.
                    if !degraded {
                        degraded = true;
                        self.metrics.ldap_up.set(0);
                        self.health.report(PUBLISHER_HEALTH, false).await;
                        tracing::warn!(%error, "ldap unavailable: publication paused, retrying");
                    }
                    ldap_backoff.next_delay()
                }
                Ok(batch) => {
                    if degraded && batch.written > 0 {
                        degraded = false;
                        self.metrics.ldap_up.set(1);
                        ldap_backoff.reset();
                        self.health.report(PUBLISHER_HEALTH, true).await;
                        tracing::info!("ldap available again: publication resumed");
                    }
                    if batch.handled as i64 == BATCH {
                        Duration::ZERO
                    } else {
                        match store::next_attempt_in(&self.pool, self.await_grants).await {
                            Ok(Some(next)) => {
                                next.clamp(Duration::from_millis(50), Duration::from_secs(5))
                            }
                            _ => Duration::from_secs(5),
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "publication batch failed");
                    Duration::from_secs(1)
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = day_change.wait() => {}
                _ = shutdown.changed() => {}
            }
        }
        self.counter.save().await;
        tracing::debug!("publisher stopped");
    }

    /// Publishes one batch, up to [`IN_FLIGHT`] writes at a time on the connection.
    /// When LDAP cannot be reached the accounts it could not take wait, untouched,
    /// for it to come back.
    async fn publish_batch(&self) -> Result<Batch, sqlx::Error> {
        use futures::StreamExt;

        // Counts an earlier batch could not save (the database was away).
        self.counter.save().await;
        let mut tx = self.pool.begin().await?;
        let accounts = store::claim_pending(&mut tx, BATCH, self.await_grants).await?;
        let sponsors_without_entry = self.sponsors.without_entry(&accounts).await;
        let today = self.clock.today();
        let mut writes = Vec::with_capacity(accounts.len());
        let mut spans = Vec::with_capacity(accounts.len());
        for account in &accounts {
            let span = tracing::info_span!(
                "publish",
                learner_id = %account.learner_id,
                version = account.version,
                otel.kind = "client"
            );
            account.trace().adopt(&span);
            spans.push(span.clone());
            writes.push(
                self.publish(account, &sponsors_without_entry, today)
                    .instrument(span),
            );
        }
        let outcomes: Vec<_> = futures::stream::iter(writes)
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        let mut batch = Batch::default();
        let mut published = Vec::with_capacity(accounts.len());
        let mut announced_any = false;
        for ((account, outcome), span) in accounts.iter().zip(outcomes).zip(spans) {
            batch.handled += 1;
            match outcome {
                Ok((announced, next_due)) => {
                    batch.written += 1;
                    let wrote = announced.written != Written::Unchanged;
                    if wrote {
                        // Announced in the transaction that records the publication:
                        // an event for every write, and none for a write not recorded.
                        let dn = entry::dn(&account.login, &self.settings.base_dn);
                        announce(
                            &mut tx,
                            &self.namespace,
                            &self.clock,
                            account,
                            &dn,
                            &announced,
                            &account.actor,
                        )
                        .instrument(span)
                        .await?;
                        announced_any = true;
                    }
                    published.push(store::Published {
                        learner_id: account.learner_id,
                        version: account.version,
                        revision: account.revision,
                        next_due,
                    });
                }
                Err(Failure::Unavailable(error)) => {
                    tracing::debug!(learner_id = %account.learner_id, %error, "ldap unavailable");
                    batch.unavailable = Some(error);
                }
                Err(Failure::Refused(error)) => {
                    let retry_in = retry_delay(account.publish_attempts);
                    // This entry's own problem: said at the first failure, then every
                    // tenth, so that it does not flood the logs.
                    if account.publish_attempts == 0 || account.publish_attempts % 10 == 9 {
                        tracing::warn!(
                            learner_id = %account.learner_id,
                            attempts = account.publish_attempts + 1,
                            retry_in_ms = retry_in.as_millis() as u64,
                            %error,
                            "ldap write refused"
                        );
                    }
                    store::mark_failed(&mut tx, account.learner_id, retry_in, &error).await?;
                }
            }
        }
        store::mark_many_published(&mut tx, &published).await?;
        tx.commit().await?;
        if announced_any {
            self.outbox.notify();
        }
        Ok(batch)
    }

    /// Writes the account's entry as it should be today (or removes it), and says
    /// the next day the calendar alone changes it.
    async fn publish(
        &self,
        account: &AccountRow,
        sponsors_without_entry: &BTreeSet<String>,
        today: time::Date,
    ) -> Result<(Announced, Option<time::Date>), Failure> {
        let learner = decode(account).map_err(Failure::Refused)?;
        let desired = desired_of(
            account,
            &learner,
            &self.settings,
            sponsors_without_entry,
            today,
        )
        .map_err(Failure::Refused)?;
        if let Some(desired) = &desired {
            log_withheld(account.learner_id, desired);
        }
        let state = entry::account_state(
            &learner,
            self.settings.lifecycle,
            &self.settings.clock,
            today,
        )
        .map_err(|error| Failure::Refused(error.to_string()))?;
        let started = std::time::Instant::now();
        // What the publisher means to do, for a write that fails; one that succeeds is
        // named by what it did.
        let (intended, written) = match desired {
            // Never written: most likely not there, add it straight away.
            Some(desired) if account.published_revision.is_none() => {
                ("add", self.ldap.write_new(&desired).await)
            }
            Some(desired) => ("modify", self.ldap.write(&desired).await),
            None => {
                let dn = entry::dn(&account.login, &self.settings.base_dn);
                ("delete", self.ldap.delete(&dn).await)
            }
        };
        match &written {
            Ok(Written::Added) => self.metrics.written("add", "ok", started.elapsed()),
            Ok(Written::Modified { .. }) => {
                self.metrics.written("modify", "ok", started.elapsed());
            }
            Ok(Written::Deleted) => self.metrics.written("delete", "ok", started.elapsed()),
            // Compared and found equal: no write.
            Ok(Written::Unchanged) => {}
            Err(_) => self.metrics.written(intended, "error", started.elapsed()),
        }
        let written = written.map_err(|error| match error {
            // A certificate that does not verify is LDAP out of reach: publication
            // pauses and resumes once TLS is set right, as when LDAP is away.
            LdapError::Connection(_) | LdapError::Tls(_) => Failure::Unavailable(error.to_string()),
            LdapError::Refused { .. } => Failure::Refused(error.to_string()),
        })?;
        // Counted at once, apart from the claim's transaction: LDAP has taken the
        // write whatever becomes of it.
        if written != Written::Unchanged {
            self.counter.count(account.learner_id).await;
        }
        // LDAP holds the version now (written, or found as it should be).
        if let Some(changed_at) = account.changed_at {
            let lag = time::OffsetDateTime::now_utc() - changed_at;
            self.metrics.lag.observe(lag.as_seconds_f64().max(0.0));
        }
        tracing::info!(outcome = ?written, "account published");
        let next_due = entry::next_change(&learner, self.settings.lifecycle, today);
        Ok((Announced { written, state }, next_due))
    }
}
