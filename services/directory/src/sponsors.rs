//! Which sponsors have an entry: a stay's sponsor is named in the learner's entry
//! (supannParrainDN, the `parrain` key) only when `uid=<login>,<sponsor base>`
//! exists, when directory can see it.
//!
//! The answer is looked up before an entry is computed, by everything that computes
//! one (the publisher, reconciliation, GetAccount), so that they agree and the entry
//! computation stays pure. One search per batch of logins, answers kept for
//! `entries.sponsor_cache_ms`: a cohort of 2,000 learners with one sponsor costs one
//! search. When LDAP cannot answer, sponsors are named on their login's syntax
//! alone (said once in the log): a publication never fails for it.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use hosted_contracts::{prost::Message, v1};

use crate::{config::EntriesConfig, domain::supann, ldap::LdapDirectory, store::AccountRow};

/// Logins looked up in one search, at most: a filter of a reasonable size.
const LOGINS_PER_SEARCH: usize = 100;

/// The sponsors' entries directory has looked for, and how to look for more.
#[derive(Debug)]
pub struct SponsorEntries {
    ldap: Arc<LdapDirectory>,
    base_dn: String,
    /// False: every sponsor with a valid login is named, nothing is looked up.
    enabled: bool,
    cache: Mutex<SponsorCache>,
    /// Whether the last lookup failed, so that an outage is logged once.
    unanswered: AtomicBool,
}

impl SponsorEntries {
    pub fn new(ldap: Arc<LdapDirectory>, config: &EntriesConfig) -> Self {
        Self {
            ldap,
            base_dn: config.sponsor_base_dn.clone(),
            enabled: config.check_sponsors,
            cache: Mutex::new(SponsorCache::new(config.sponsor_cache)),
            unanswered: AtomicBool::new(false),
        }
    }

    /// The sponsor logins of `accounts`' stays (in lower case) that have no entry
    /// under the sponsor base. A login LDAP could not be asked about is not in it.
    pub async fn without_entry(&self, accounts: &[AccountRow]) -> BTreeSet<String> {
        self.look_up(accounts.iter().flat_map(sponsor_logins).collect())
            .await
    }

    /// Which of `logins` (valid, in lower case) have no entry: from the answers kept,
    /// then from LDAP, one search per [`LOGINS_PER_SEARCH`] logins.
    async fn look_up(&self, logins: BTreeSet<String>) -> BTreeSet<String> {
        if !self.enabled || logins.is_empty() {
            return BTreeSet::new();
        }
        let (mut missing, unknown) = {
            let mut cache = self
                .cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            cache.answers_for(&logins, Instant::now())
        };
        for chunk in unknown.chunks(LOGINS_PER_SEARCH) {
            match self.ldap.existing_uids(&self.base_dn, chunk).await {
                Ok(found) => {
                    if self.unanswered.swap(false, Ordering::Relaxed) {
                        tracing::info!("sponsor entries looked up again");
                    }
                    let now = Instant::now();
                    let mut cache = self
                        .cache
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    for login in chunk {
                        let exists = found.contains(login);
                        cache.record(login, exists, now);
                        if !exists {
                            missing.insert(login.clone());
                        }
                    }
                }
                Err(error) => {
                    if !self.unanswered.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            %error,
                            "sponsor entries cannot be looked up: sponsors named on their login alone"
                        );
                    }
                    break;
                }
            }
        }
        missing
    }

    /// Forgets what is known of `accounts`' sponsors, so that their next lookup asks
    /// LDAP (an operator's republish wants today's answer).
    pub fn forget(&self, accounts: &[AccountRow]) {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for login in accounts.iter().flat_map(sponsor_logins) {
            cache.forget(&login);
        }
    }
}

/// The valid sponsor logins of an account's stays, in lower case (an invalid one is
/// never named, so never looked up).
fn sponsor_logins(account: &AccountRow) -> Vec<String> {
    let Ok(learner) = v1::Learner::decode(account.learner.as_slice()) else {
        return Vec::new();
    };
    learner
        .stays
        .iter()
        .map(|stay| stay.sponsor_login.as_str())
        .filter(|login| !login.is_empty() && supann::valid_login(login))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Answers about sponsors' entries, each kept for a while.
#[derive(Debug)]
struct SponsorCache {
    time_to_live: Duration,
    /// Login → (whether the entry exists, when that was seen).
    answers: HashMap<String, (bool, Instant)>,
}

impl SponsorCache {
    fn new(time_to_live: Duration) -> Self {
        Self {
            time_to_live,
            answers: HashMap::new(),
        }
    }

    /// Drops the answers that are too old, then splits `logins` into those known to
    /// have no entry and those to look up.
    fn answers_for(
        &mut self,
        logins: &BTreeSet<String>,
        now: Instant,
    ) -> (BTreeSet<String>, Vec<String>) {
        let time_to_live = self.time_to_live;
        self.answers
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < time_to_live);
        let mut missing = BTreeSet::new();
        let mut unknown = Vec::new();
        for login in logins {
            match self.answers.get(login) {
                Some((true, _)) => {}
                Some((false, _)) => {
                    missing.insert(login.clone());
                }
                None => unknown.push(login.clone()),
            }
        }
        (missing, unknown)
    }

    fn record(&mut self, login: &str, exists: bool, now: Instant) {
        if self.time_to_live.is_zero() {
            return;
        }
        self.answers.insert(login.to_owned(), (exists, now));
    }

    fn forget(&mut self, login: &str) {
        self.answers.remove(login);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sponsor_entries(check_sponsors: bool) -> SponsorEntries {
        // Nothing listens on port 1: LDAP cannot answer.
        let ldap = LdapDirectory::new(crate::config::LdapConfig {
            url: "ldap://127.0.0.1:1".to_owned(),
            starttls: false,
            bind_password: "secret".to_owned(),
            timeout: Duration::from_secs(2),
            ..Default::default()
        });
        SponsorEntries::new(
            Arc::new(ldap),
            &EntriesConfig {
                check_sponsors,
                ..Default::default()
            },
        )
    }

    #[tokio::test]
    async fn when_ldap_cannot_answer_every_sponsor_is_named() {
        let sponsors = sponsor_entries(true);
        assert!(
            sponsors
                .look_up(logins(&["marie.curie", "nobody.here"]))
                .await
                .is_empty()
        );
        assert!(sponsors.unanswered.load(Ordering::Relaxed), "said once");
        assert!(
            sponsors.cache.lock().unwrap().answers.is_empty(),
            "no answer kept"
        );
    }

    #[tokio::test]
    async fn with_the_check_off_nothing_is_looked_up() {
        let sponsors = sponsor_entries(false);
        assert!(sponsors.look_up(logins(&["nobody.here"])).await.is_empty());
        assert!(!sponsors.unanswered.load(Ordering::Relaxed), "never asked");
    }

    fn logins(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn answers_are_kept_for_their_time_to_live() {
        let start = Instant::now();
        let mut cache = SponsorCache::new(Duration::from_secs(60));
        let asked = logins(&["marie.curie", "nobody.here", "paul.langevin"]);
        assert_eq!(
            cache.answers_for(&asked, start),
            (
                BTreeSet::new(),
                vec![
                    "marie.curie".to_owned(),
                    "nobody.here".to_owned(),
                    "paul.langevin".to_owned()
                ]
            )
        );
        cache.record("marie.curie", true, start);
        cache.record("nobody.here", false, start);

        // Within the time to live: only the login never asked about is looked up.
        let later = start + Duration::from_secs(59);
        assert_eq!(
            cache.answers_for(&asked, later),
            (logins(&["nobody.here"]), vec!["paul.langevin".to_owned()])
        );

        // After it: everything is asked again.
        let expired = start + Duration::from_secs(60);
        assert_eq!(cache.answers_for(&asked, expired).1.len(), 3);
        assert!(cache.answers.is_empty(), "old answers are dropped");
    }

    #[test]
    fn a_forgotten_login_is_asked_again_and_no_time_to_live_keeps_nothing() {
        let now = Instant::now();
        let mut cache = SponsorCache::new(Duration::from_secs(60));
        cache.record("nobody.here", false, now);
        cache.forget("nobody.here");
        assert_eq!(
            cache.answers_for(&logins(&["nobody.here"]), now).1,
            ["nobody.here"]
        );

        let mut uncached = SponsorCache::new(Duration::ZERO);
        uncached.record("nobody.here", false, now);
        assert_eq!(
            uncached.answers_for(&logins(&["nobody.here"]), now).1,
            ["nobody.here"]
        );
    }
}
