//! The grants index Check answers from, in memory: each learner's grants (and stays, to
//! say why when denying), loaded from the database on first use and forgotten when the
//! database says they changed.
//!
//! Every change of a learner's grants or stays bumps `learners.grants_version` or
//! `learners.version`, and a trigger sends the learner's id on the `entitlement_grants`
//! channel when the change commits (an agreement's options, explicitly). Each
//! replica listens and forgets that learner. A load that raced with a change is not
//! kept (the epoch moved), and while the listener is not connected nothing is kept at
//! all: Check then asks the database every time, and is never stale.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use hosted_platform::{
    grpc::Readiness,
    metrics::{
        Metrics,
        prometheus_client::{
            collector::Collector,
            encoding::{DescriptorEncoder, EncodeMetric},
            metrics::{counter::Counter, family::Family, gauge::ConstGauge},
        },
    },
};
use sqlx::{PgPool, postgres::PgListener};
use time::Date;
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    domain::grants::{Grant, StayFacts},
    store,
};

/// The channel the `learners_grants_changed` trigger notifies.
pub const CHANNEL: &str = "entitlement_grants";

/// One grant as Check needs it.
#[derive(Debug, Clone)]
pub struct CachedGrant {
    pub resource: Arc<str>,
    pub valid_from: Date,
    pub valid_until: Date,
    pub stay_id: Uuid,
    pub rule: Arc<str>,
}

/// One learner's grants, and their stays for the reasons of a denial.
#[derive(Debug)]
pub struct CachedLearner {
    pub learner_id: Uuid,
    pub login: String,
    pub grants: Vec<CachedGrant>,
    pub stays: Vec<StayFacts>,
}

impl CachedLearner {
    /// The grant that allows `resource` on `on`, the longest-running first.
    pub fn holding(&self, resource: &str, on: Date) -> Option<&CachedGrant> {
        self.grants
            .iter()
            .filter(|grant| {
                &*grant.resource == resource && grant.valid_from <= on && on <= grant.valid_until
            })
            .max_by_key(|grant| grant.valid_until)
    }
}

#[derive(Debug, Default)]
struct Entries {
    by_id: HashMap<Uuid, Arc<CachedLearner>>,
    by_login: HashMap<String, Uuid>,
    /// Resource names and rules, shared by every entry.
    names: HashMap<String, Arc<str>>,
}

impl Entries {
    /// A grant as held, its names shared.
    fn cached(&mut self, grant: &Grant) -> CachedGrant {
        CachedGrant {
            resource: self.intern(&grant.resource),
            valid_from: grant.valid_from,
            valid_until: grant.valid_until,
            stay_id: Uuid::parse_str(&grant.stay_id).unwrap_or_default(),
            rule: self.intern(&grant.rule),
        }
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.names.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        self.names.insert(name.to_owned(), shared.clone());
        shared
    }
}

#[derive(Debug)]
struct Inner {
    entries: RwLock<Entries>,
    /// Moves at every forgetting: a load that started before does not keep its result.
    epoch: AtomicU64,
    listening: AtomicBool,
    capacity: usize,
    /// `hosted_check_cache_lookups_total{result}`: `hit` (answered from memory) or
    /// `miss` (read from the database).
    lookups: Family<[(&'static str, &'static str); 1], Counter>,
}

const HIT: [(&str, &str); 1] = [("result", "hit")];
const MISS: [(&str, &str); 1] = [("result", "miss")];

/// Learners read per query when the cache warms up.
const WARM_PAGE: i64 = 1_000;

/// The health component that says whether the cache is warmed and listening.
pub const CACHE_HEALTH: &str = "hosted.entitlement.check_cache";

/// What a warm-up held, and how many learners it skipped as unreadable.
#[derive(Debug, Default, Clone, Copy)]
struct Warmed {
    held: usize,
    skipped: usize,
}

/// The grants cache, shared by every RPC of a replica.
#[derive(Debug, Clone)]
pub struct GrantsCache(Arc<Inner>);

impl GrantsCache {
    /// A cache of at most `capacity` learners (it starts again empty when full).
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(Inner {
            entries: RwLock::new(Entries::default()),
            epoch: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            capacity,
            lookups: Family::default(),
        }))
    }

    /// Registers the cache's metrics: its lookups, and the learners it holds (read at
    /// each scrape).
    pub fn register(&self, metrics: &Metrics) {
        for result in [HIT, MISS] {
            drop(self.0.lookups.get_or_create(&result));
        }
        metrics.register(
            "hosted_check_cache_lookups",
            "Learners Check looked up in the cache: hit (answered from memory) or miss (read from the database)",
            self.0.lookups.clone(),
        );
        metrics.register_collector(Box::new(HeldLearners(self.clone())));
    }

    /// How many learners the cache holds.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.0
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.0
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The learner behind a login or an id, with their grants; None when unknown.
    pub async fn learner(
        &self,
        pool: &PgPool,
        login_or_id: &str,
    ) -> Result<Option<Arc<CachedLearner>>, sqlx::Error> {
        {
            let entries = self.read();
            let id = match Uuid::parse_str(login_or_id) {
                Ok(id) => Some(id),
                // Logins are lower-case; LDAP's uid, and so users, are not case-sensitive.
                Err(_) => entries
                    .by_login
                    .get(login_or_id.to_ascii_lowercase().as_str())
                    .copied(),
            };
            if let Some(found) = id.and_then(|id| entries.by_id.get(&id)) {
                self.0.lookups.get_or_create(&HIT).inc();
                return Ok(Some(found.clone()));
            }
        }
        self.0.lookups.get_or_create(&MISS).inc();
        let epoch = self.0.epoch.load(Ordering::Acquire);
        let mut conn = pool.acquire().await?;
        let Some((learner_id, login, _)) = store::learner(&mut conn, login_or_id).await? else {
            return Ok(None);
        };
        let grants = store::grants(&mut conn, learner_id).await?;
        let stays = store::stay_facts(&mut conn, learner_id).await?;
        drop(conn);
        let mut entries = self.write();
        let learner = Arc::new(CachedLearner {
            learner_id,
            login: login.clone(),
            grants: grants.iter().map(|grant| entries.cached(grant)).collect(),
            stays,
        });
        let unchanged = self.0.epoch.load(Ordering::Acquire) == epoch;
        if unchanged && self.0.listening.load(Ordering::Acquire) {
            if entries.by_id.len() >= self.0.capacity {
                *entries = Entries::default();
            }
            entries.by_login.insert(login, learner_id);
            entries.by_id.insert(learner_id, learner.clone());
        }
        Ok(Some(learner))
    }

    /// Loads every learner (up to the capacity), a page at a time in id order, so
    /// that the first asks after a start do not each go to the database and the
    /// warm-up holds one page of rows at most beside the cache itself. A learner
    /// whose stored rows cannot be read is skipped (named in a warning) and counted;
    /// Check reads them from the database when asked.
    async fn warm(&self, pool: &PgPool) -> Result<Warmed, sqlx::Error> {
        let mut warmed = Warmed::default();
        let mut after = Uuid::nil();
        loop {
            let room = self.0.capacity.saturating_sub(self.read().by_id.len());
            if room == 0 {
                break;
            }
            let limit = WARM_PAGE.min(i64::try_from(room).unwrap_or(i64::MAX));
            let mut conn = pool.acquire().await?;
            let page = store::learners_page(&mut conn, after, limit).await?;
            let Some(&(last, _, _)) = page.last() else {
                break;
            };
            after = last;
            let mut readable = Vec::with_capacity(page.len());
            for (learner_id, login, unreadable) in page.iter() {
                if *unreadable {
                    warmed.skipped += 1;
                    tracing::warn!(
                        learner_id = %learner_id,
                        "stored dates out of range: learner not held in the Check cache"
                    );
                } else {
                    readable.push((*learner_id, login.clone()));
                }
            }
            let ids: Vec<Uuid> = readable.iter().map(|(learner_id, _)| *learner_id).collect();
            let mut stays = store::stay_facts_of(&mut conn, Some(&ids)).await?;
            let mut states = store::states_of(&mut conn, Some(&ids)).await?;
            drop(conn);
            let mut entries = self.write();
            for (learner_id, login) in readable {
                if entries.by_id.contains_key(&learner_id) {
                    continue;
                }
                let grants = states
                    .remove(&learner_id)
                    .map(|state| state.grants)
                    .unwrap_or_default();
                let grants = grants.iter().map(|grant| entries.cached(grant)).collect();
                let learner = Arc::new(CachedLearner {
                    learner_id,
                    login: login.clone(),
                    grants,
                    stays: stays.remove(&learner_id).unwrap_or_default(),
                });
                entries.by_login.insert(login, learner_id);
                entries.by_id.insert(learner_id, learner);
            }
            warmed.held = entries.by_id.len();
            if page.len() < usize::try_from(limit).unwrap_or(usize::MAX) {
                break;
            }
        }
        Ok(warmed)
    }

    /// Forgets one learner (their grants or login changed).
    fn forget(&self, learner_id: Uuid) {
        let mut entries = self.write();
        self.0.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(learner) = entries.by_id.remove(&learner_id) {
            entries.by_login.remove(&learner.login);
        }
    }

    /// Forgets everything (the listener lost its connection: changes may be missed).
    fn forget_all(&self) {
        let mut entries = self.write();
        self.0.epoch.fetch_add(1, Ordering::AcqRel);
        entries.by_id.clear();
        entries.by_login.clear();
    }

    fn stop_listening(&self) {
        self.0.listening.store(false, Ordering::Release);
        self.forget_all();
    }

    /// Listens for changes until `shutdown` turns true, reconnecting with a growing
    /// delay; the cache holds nothing while it is not listening.
    /// Reports [`CACHE_HEALTH`] SERVING while it is warmed and listening.
    pub async fn listen(
        self,
        pool: PgPool,
        health: Readiness,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut failures = 0u32;
        health.report(CACHE_HEALTH, false).await;
        while !*shutdown.borrow() {
            match self.listen_once(&pool, &health, &mut shutdown).await {
                Ok(()) => return,
                Err(error) => {
                    self.stop_listening();
                    health.report(CACHE_HEALTH, false).await;
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(%error, failures, "grants cache listener lost; Check reads the database meanwhile");
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

    async fn listen_once(
        &self,
        pool: &PgPool,
        health: &Readiness,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CHANNEL).await?;
        // Listening already: whatever changes from here on is notified, and forgotten
        // right after the warm-up, which reads after this point. Asks meanwhile read
        // the database and keep nothing.
        let warming = std::time::Instant::now();
        self.forget_all();
        let warmed = self.warm(pool).await?;
        self.0.listening.store(true, Ordering::Release);
        health.report(CACHE_HEALTH, true).await;
        if warmed.skipped > 0 {
            tracing::warn!(
                skipped = warmed.skipped,
                "learners with unreadable stored rows left out of the Check cache"
            );
        }
        tracing::info!(
            learners = warmed.held,
            skipped = warmed.skipped,
            millis = warming.elapsed().as_millis() as u64,
            "Check cache warmed"
        );
        loop {
            tokio::select! {
                notification = listener.try_recv() => match notification? {
                    Some(notification) => match Uuid::parse_str(notification.payload()) {
                        Ok(learner_id) => self.forget(learner_id),
                        Err(_) => self.forget_all(),
                    },
                    // The connection was lost: whatever is notified until it is back
                    // would be missed. Start again from nothing.
                    None => {
                        return Err(sqlx::Error::Io(std::io::Error::other(
                            "the listening connection was lost",
                        )));
                    }
                },
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }
}

/// `hosted_check_cache_learners`, read from the cache at each scrape.
#[derive(Debug)]
struct HeldLearners(GrantsCache);

impl Collector for HeldLearners {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let held = ConstGauge::new(i64::try_from(self.0.len()).unwrap_or(i64::MAX));
        held.encode(encoder.encode_descriptor(
            "hosted_check_cache_learners",
            "Learners the Check cache holds",
            None,
            held.metric_type(),
        )?)
    }
}
