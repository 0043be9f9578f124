//! Reconciliation: the whole projection against the entries directly under the
//! managed base. It reports the drift (entries missing from LDAP, entries that
//! should not be there, attributes that differ) and, when asked, repairs exactly
//! that: an add or a modify of the differing attributes, or a delete.
//!
//! Only entries directly under the managed base and named by `uid` are looked at:
//! nothing outside the base, and nothing under it that is not an account (an `ou`
//! someone made there), is ever touched.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use hosted_contracts::prost::Message;

use crate::{
    Directory,
    domain::entry::{self, Difference, Entry},
    error::DirectoryError,
    ldap::Written,
    publisher, store,
};

/// How an entry drifted from the projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The projection has the account; LDAP has no entry.
    Missing,
    /// LDAP has an entry the projection does not want (no such account, or one
    /// whose time is over).
    Extra,
    /// Both have it, with different values.
    Different,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::Different => "different",
        }
    }
}

/// One drift, and what repairs it.
#[derive(Debug, Clone)]
pub struct Drift {
    pub dn: String,
    pub learner_id: Option<Uuid>,
    pub kind: Kind,
    pub differences: Vec<Difference>,
    desired: Option<Entry>,
    /// The account the entry belongs to, if any: a repair is counted and announced
    /// for it.
    account: Option<store::AccountRow>,
}

/// What a reconciliation found.
#[derive(Debug)]
pub struct Report {
    pub drifts: Vec<Drift>,
    pub accounts: usize,
    pub entries: usize,
}

fn is_account(dn: &str) -> bool {
    dn.get(..4)
        .is_some_and(|rdn| rdn.eq_ignore_ascii_case("uid="))
}

impl Directory {
    /// Compares every account with LDAP.
    pub async fn drift(&self) -> Result<Report, DirectoryError> {
        let accounts = store::all_accounts(&self.pool).await?;
        let entries = self.ldap.entries_under_base().await?;
        let sponsors_without_entry = self.sponsors.without_entry(&accounts).await;
        Ok(self.compare(&accounts, &sponsors_without_entry, entries))
    }

    /// Compares one account, named by its login, with the entry at its DN (and only
    /// that entry): an entry there without an account is extra.
    pub async fn drift_of(&self, login: &str) -> Result<Report, DirectoryError> {
        let account = match store::learner_id_by_login(&self.pool, login).await? {
            Some(learner_id) => store::account(&self.pool, learner_id).await?,
            None => None,
        };
        let dn = entry::dn(login, &self.settings.base_dn);
        let entry = self.ldap.read(&dn).await?;
        if account.is_none() && entry.is_none() {
            return Err(DirectoryError::NotFound("account".to_owned()));
        }
        let accounts: Vec<store::AccountRow> = account.into_iter().collect();
        let sponsors_without_entry = self.sponsors.without_entry(&accounts).await;
        Ok(self.compare(
            &accounts,
            &sponsors_without_entry,
            entry
                .map(|attributes| (dn, attributes))
                .into_iter()
                .collect(),
        ))
    }

    /// The drift between `accounts` and the LDAP `entries` read for them, the
    /// entries naming no sponsor in `sponsors_without_entry`.
    fn compare(
        &self,
        accounts: &[store::AccountRow],
        sponsors_without_entry: &BTreeSet<String>,
        entries: Vec<(String, HashMap<String, Vec<String>>)>,
    ) -> Report {
        let today = self.clock.today();
        let mut actual: HashMap<String, (String, HashMap<String, Vec<String>>)> = entries
            .into_iter()
            .filter(|(dn, _)| is_account(dn))
            .map(|(dn, attributes)| (dn.to_ascii_lowercase(), (dn, attributes)))
            .collect();
        let entries = actual.len();
        let mut drifts = Vec::new();
        for account in accounts {
            let desired = match publisher::desired_entry(
                account,
                &self.settings,
                sponsors_without_entry,
                today,
            ) {
                Ok(desired) => desired,
                Err(error) => {
                    tracing::warn!(learner_id = %account.learner_id, %error, "account left out of reconciliation");
                    continue;
                }
            };
            let dn = entry::dn(&account.login, &self.settings.base_dn);
            let held = actual.remove(&dn.to_ascii_lowercase());
            let learner_id = Some(account.learner_id);
            match (desired, held) {
                (Some(desired), None) => drifts.push(Drift {
                    dn,
                    learner_id,
                    kind: Kind::Missing,
                    differences: Vec::new(),
                    desired: Some(desired),
                    account: Some(account.clone()),
                }),
                (Some(desired), Some((dn, attributes))) => {
                    let mut differences = entry::differences(&desired, &attributes);
                    let classes = entry::missing_object_classes(&attributes);
                    if !classes.is_empty() {
                        differences.push(Difference {
                            name: "objectClass",
                            desired: classes,
                            actual: Vec::new(),
                        });
                    }
                    if !differences.is_empty() {
                        drifts.push(Drift {
                            dn,
                            learner_id,
                            kind: Kind::Different,
                            differences,
                            desired: Some(desired),
                            account: Some(account.clone()),
                        });
                    }
                }
                (None, Some((dn, _))) => drifts.push(Drift {
                    dn,
                    learner_id,
                    kind: Kind::Extra,
                    differences: Vec::new(),
                    desired: None,
                    account: Some(account.clone()),
                }),
                (None, None) => {}
            }
        }
        // Entries no account wants, in DN order.
        let extra: BTreeMap<String, String> =
            actual.into_iter().map(|(key, (dn, _))| (key, dn)).collect();
        drifts.extend(extra.into_values().map(|dn| Drift {
            dn,
            learner_id: None,
            kind: Kind::Extra,
            differences: Vec::new(),
            desired: None,
            account: None,
        }));
        Report {
            drifts,
            accounts: accounts.len(),
            entries,
        }
    }

    /// Repairs exactly `drifts`. A repair of an account's entry is counted in its
    /// writes and announced (`account.published`) like any other write. It is recorded
    /// as under way before its LDAP write, and recorded as done (counted, announced) in
    /// one transaction after it: a repair that stops in between is found again by
    /// [`Directory::finish_repairs`]. The announcements name `actor`, the caller who
    /// asked for the repair.
    ///
    /// The account is claimed for its repair as a publisher claims it (its row locked,
    /// on any replica), so that the two never write its entry at once; an account
    /// changed since the comparison is left to the publisher, which writes it as it
    /// now is: the repair would write back what the comparison read.
    pub async fn repair(&self, drifts: &[Drift], actor: &str) -> Result<(), DirectoryError> {
        for drift in drifts {
            let mut claim = None;
            if let Some(account) = &drift.account {
                let mut tx = self.pool.begin().await?;
                let revision = store::lock_account(&mut tx, account.learner_id).await?;
                if revision != Some(account.revision) {
                    tracing::info!(
                        learner_id = %account.learner_id,
                        kind = drift.kind.as_str(),
                        "account changed since the comparison: left to the publisher"
                    );
                    continue;
                }
                claim = Some(tx);
            }
            let repair = drift.account.as_ref().map(|account| store::Repair {
                learner_id: account.learner_id,
                dn: drift.dn.clone(),
                written: match drift.kind {
                    Kind::Missing => "added",
                    Kind::Different => "modified",
                    Kind::Extra => "deleted",
                }
                .to_owned(),
                attributes: drift.differences.len() as i64,
            });
            if let Some(repair) = &repair {
                store::begin_repair(&self.pool, repair).await?;
            }
            let written = match &drift.desired {
                Some(desired) => self.ldap.write(desired).await?,
                None => self.ldap.delete(&drift.dn).await?,
            };
            if let Some(account) = &drift.account {
                if written == Written::Unchanged {
                    store::end_repair(&mut *self.pool.acquire().await?, account.learner_id).await?;
                } else {
                    self.record_repair(account, &drift.dn, written, actor)
                        .await?;
                }
            }
            if let Some(claim) = claim {
                claim.commit().await?;
            }
            tracing::info!(
                learner_id = ?drift.learner_id,
                kind = drift.kind.as_str(),
                "drift repaired"
            );
        }
        Ok(())
    }

    /// Finishes the repairs an earlier reconciliation began and did not record (it
    /// stopped between an LDAP write and its record): one whose entry LDAP now holds
    /// as the account wants it was taken, and is counted and announced now; any other
    /// is forgotten (its drift is still there, and repaired again). Returns how many
    /// were recorded, announced on behalf of `actor` (the caller of this
    /// reconciliation).
    pub async fn finish_repairs(&self, actor: &str) -> Result<usize, DirectoryError> {
        let unfinished = store::unfinished_repairs(&self.pool).await?;
        if unfinished.is_empty() {
            return Ok(0);
        }
        let mut accounts = Vec::with_capacity(unfinished.len());
        for repair in &unfinished {
            if let Some(account) = store::account(&self.pool, repair.learner_id).await? {
                accounts.push(account);
            }
        }
        let sponsors_without_entry = self.sponsors.without_entry(&accounts).await;
        let today = self.clock.today();
        let mut recorded = 0;
        for repair in unfinished {
            let account = accounts
                .iter()
                .find(|account| account.learner_id == repair.learner_id);
            let desired = account.map(|account| {
                publisher::desired_entry(account, &self.settings, &sponsors_without_entry, today)
            });
            let taken = match desired {
                Some(Ok(Some(desired))) if desired.dn.eq_ignore_ascii_case(&repair.dn) => {
                    self.ldap.read(&repair.dn).await?.is_some_and(|actual| {
                        entry::differences(&desired, &actual).is_empty()
                            && entry::missing_object_classes(&actual).is_empty()
                    })
                }
                Some(Ok(None)) => self.ldap.read(&repair.dn).await?.is_none(),
                _ => false,
            };
            match account {
                Some(account) if taken => {
                    let written = match repair.written.as_str() {
                        "added" => Written::Added,
                        "deleted" => Written::Deleted,
                        _ => Written::Modified {
                            attributes: usize::try_from(repair.attributes).unwrap_or_default(),
                        },
                    };
                    self.record_repair(account, &repair.dn, written, actor)
                        .await?;
                    recorded += 1;
                    tracing::info!(learner_id = %repair.learner_id, "unfinished repair recorded");
                }
                _ => {
                    store::end_repair(&mut *self.pool.acquire().await?, repair.learner_id).await?;
                    tracing::info!(
                        learner_id = %repair.learner_id,
                        "unfinished repair not taken by ldap: forgotten"
                    );
                }
            }
        }
        Ok(recorded)
    }

    /// Counts a repair in the account's writes, announces it and ends its record as
    /// under way, in one transaction.
    async fn record_repair(
        &self,
        account: &store::AccountRow,
        dn: &str,
        written: Written,
        actor: &str,
    ) -> Result<(), DirectoryError> {
        let learner = hosted_contracts::v1::Learner::decode(account.learner.as_slice())
            .map_err(|error| DirectoryError::Projection(format!("projection: {error}")))?;
        let state = entry::account_state(
            &learner,
            self.settings.lifecycle,
            &self.settings.clock,
            self.clock.today(),
        )
        .map_err(|error| DirectoryError::Projection(error.to_string()))?;
        let mut tx = self.pool.begin().await?;
        store::count_write_in(&mut tx, account.learner_id).await?;
        publisher::announce(
            &mut tx,
            &self.namespace,
            &self.clock,
            account,
            dn,
            &publisher::Announced { written, state },
            actor,
        )
        .await?;
        store::end_repair(&mut tx, account.learner_id).await?;
        tx.commit().await?;
        self.outbox.notify();
        Ok(())
    }
}
