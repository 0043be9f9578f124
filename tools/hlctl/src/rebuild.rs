//! Rebuilding a derived store and republishing a lost stream: each owning service
//! restates its current state (`RestateLearners`, `RestateGrants`, `RestateCards`), a
//! page at a time, and consumers apply what they do not hold or hold older. Running it
//! again restates the same state again, which changes nothing more; stopping it
//! half-way leaves what was restated applied and the rest as it was.
//!
//! `rebuild directory` holds directory's LDAP publication meanwhile
//! (`HoldPublication`, renewed at every page, ending by itself a few minutes after the
//! last renewal should the command be interrupted), waits until directory's consumers
//! have applied every restated event, then ends the hold: each entry is then computed
//! from the whole projection once, and written only where LDAP differs.

use std::time::Duration;

use anyhow::bail;
use hosted_contracts::v1;
use tonic::transport::Channel;

use crate::rpc::{authorized, server_error};

/// The services that own state others derive theirs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Owner {
    Intake,
    Entitlement,
    Cards,
}

impl Owner {
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Intake => "intake",
            Owner::Entitlement => "entitlement",
            Owner::Cards => "cards",
        }
    }
}

/// The services whose database can be rebuilt from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Derived {
    Directory,
    Entitlement,
    Cards,
}

impl Derived {
    pub fn as_str(self) -> &'static str {
        match self {
            Derived::Directory => "directory",
            Derived::Entitlement => "entitlement",
            Derived::Cards => "cards",
        }
    }

    /// Whose state it is rebuilt from, in this order.
    pub fn sources(self) -> &'static [Owner] {
        match self {
            Derived::Entitlement => &[Owner::Intake],
            Derived::Cards => &[Owner::Intake, Owner::Entitlement],
            Derived::Directory => &[Owner::Intake, Owner::Entitlement, Owner::Cards],
        }
    }
}

/// Where the services are, and who calls.
#[derive(Debug, Clone)]
pub struct Services<'a> {
    pub intake: Channel,
    pub entitlement: Channel,
    pub cards: Channel,
    pub token: Option<&'a str>,
}

/// What one owner restated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restated {
    /// Learners (intake, entitlement) or cards.
    pub items: i64,
    pub agreements: i64,
    pub pages: u64,
    /// Pages whose events were still in the owner's outbox when it answered.
    pub unpublished_pages: u64,
}

/// One page's answer, whoever gave it.
struct Page {
    items: i64,
    agreements: i64,
    next_after: String,
    published: bool,
}

impl Services<'_> {
    async fn page(
        &self,
        owner: Owner,
        learner: &str,
        after: String,
        limit: i32,
    ) -> anyhow::Result<Page> {
        let token = self.token;
        let learner = learner.to_owned();
        Ok(match owner {
            Owner::Intake => {
                let page = v1::intake_service_client::IntakeServiceClient::new(self.intake.clone())
                    .restate_learners(authorized(
                        token,
                        v1::RestateLearnersRequest {
                            learner,
                            after,
                            limit,
                        },
                    )?)
                    .await
                    .map_err(server_error)?
                    .into_inner();
                Page {
                    items: page.learners,
                    agreements: page.agreements,
                    next_after: page.next_after,
                    published: page.published,
                }
            }
            Owner::Entitlement => {
                let page = v1::entitlement_service_client::EntitlementServiceClient::new(
                    self.entitlement.clone(),
                )
                .restate_grants(authorized(
                    token,
                    v1::RestateGrantsRequest {
                        learner,
                        after,
                        limit,
                    },
                )?)
                .await
                .map_err(server_error)?
                .into_inner();
                Page {
                    items: page.learners,
                    agreements: 0,
                    next_after: page.next_after,
                    published: page.published,
                }
            }
            Owner::Cards => {
                let page = v1::cards_service_client::CardsServiceClient::new(self.cards.clone())
                    .restate_cards(authorized(
                        token,
                        v1::RestateCardsRequest {
                            learner,
                            after,
                            limit,
                        },
                    )?)
                    .await
                    .map_err(server_error)?
                    .into_inner();
                Page {
                    items: page.cards,
                    agreements: 0,
                    next_after: page.next_after,
                    published: page.published,
                }
            }
        })
    }

    /// Restates everything `owner` holds (or one learner's), page after page; calls
    /// `progress` after each page with the totals so far.
    pub async fn restate(
        &self,
        owner: Owner,
        learner: Option<&str>,
        limit: i32,
        mut progress: impl AsyncFnMut(&Restated) -> anyhow::Result<()>,
    ) -> anyhow::Result<Restated> {
        let mut totals = Restated::default();
        let mut after = String::new();
        loop {
            let page = self
                .page(owner, learner.unwrap_or_default(), after, limit)
                .await?;
            totals.items += page.items;
            totals.agreements += page.agreements;
            totals.pages += 1;
            if !page.published {
                totals.unpublished_pages += 1;
            }
            progress(&totals).await?;
            if page.next_after.is_empty() {
                return Ok(totals);
            }
            after = page.next_after;
        }
    }
}

/// What an item is called in a progress line.
pub fn items_of(owner: Owner) -> &'static str {
    match owner {
        Owner::Intake | Owner::Entitlement => "learners",
        Owner::Cards => "cards",
    }
}

/// Directory's publication, held while it is rebuilt.
#[derive(Debug, Clone)]
pub struct Publication<'a> {
    pub directory: Channel,
    pub token: Option<&'a str>,
}

/// How a hold stands.
#[derive(Debug, Clone, Copy)]
pub struct HoldState {
    pub held: bool,
    pub events_pending: i64,
    pub accounts_pending: i64,
    pub consumers_known: bool,
}

/// How long a hold lasts past its last renewal.
pub const HOLD: Duration = Duration::from_secs(300);

impl Publication<'_> {
    async fn call(&self, seconds: i32, status_only: bool) -> anyhow::Result<HoldState> {
        let answer =
            v1::directory_service_client::DirectoryServiceClient::new(self.directory.clone())
                .hold_publication(authorized(
                    self.token,
                    v1::HoldPublicationRequest {
                        seconds,
                        status_only,
                    },
                )?)
                .await
                .map_err(server_error)?
                .into_inner();
        Ok(HoldState {
            held: answer.held_until.is_some(),
            events_pending: answer.events_pending,
            accounts_pending: answer.accounts_pending,
            consumers_known: answer.consumers_known,
        })
    }

    /// Holds publication (again) for [`HOLD`] from now.
    pub async fn hold(&self) -> anyhow::Result<HoldState> {
        self.call(HOLD.as_secs() as i32, false).await
    }

    pub async fn release(&self) -> anyhow::Result<HoldState> {
        self.call(0, false).await
    }

    pub async fn status(&self) -> anyhow::Result<HoldState> {
        self.call(0, true).await
    }

    /// Renews the hold until directory's consumers have applied every event published
    /// (seen twice in a row, a second apart), at most `patience`.
    pub async fn wait_consumed(
        &self,
        patience: Duration,
        mut progress: impl FnMut(&HoldState),
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut quiet = 0;
        loop {
            let state = self.hold().await?;
            progress(&state);
            if state.events_pending == 0 && state.consumers_known {
                quiet += 1;
                if quiet == 2 {
                    return Ok(());
                }
            } else {
                quiet = 0;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "directory's consumers still have {} event(s) to apply; \
                     publication stays held until the hold runs out (run the rebuild again)",
                    state.events_pending
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Waits until no account is left to compare with LDAP, at most `patience`.
    pub async fn wait_published(
        &self,
        patience: Duration,
        mut progress: impl FnMut(&HoldState),
    ) -> anyhow::Result<HoldState> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let state = self.status().await?;
            progress(&state);
            if state.accounts_pending == 0 || tokio::time::Instant::now() >= deadline {
                return Ok(state);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// What a rebuild says as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Directory's publication is held.
    Held,
    /// A page more of a source restated: the totals so far.
    Restated(Owner, &'a Restated),
    /// Directory's consumers still have these events to apply.
    EventsPending(i64),
    /// Directory applied everything; its publication resumed.
    Resumed,
    /// Accounts still to compare with LDAP.
    AccountsPending(i64),
}

/// What a rebuild did.
#[derive(Debug, Clone, Default)]
pub struct Rebuilt {
    pub restated: Vec<(Owner, Restated)>,
    /// Directory: accounts still to compare with LDAP when the command stopped waiting.
    pub accounts_pending: Option<i64>,
}

/// Rebuilds `derived`'s database from its sources, restating `page` items per call;
/// for directory (`publication` given), with its publication held until it has
/// applied every restated event, then waits (at most `patience`) for its accounts to
/// be compared with LDAP.
///
/// Cards' own records (the cards, their numbers and history, print batches, e-purse
/// exports) are derived from nothing: a cards database holding no card is refused
/// (it would request a new card, with a new number, for every holder of the
/// smart-card grant) unless `no_cards_yet` says none was ever made.
pub async fn rebuild(
    services: &Services<'_>,
    publication: Option<&Publication<'_>>,
    derived: Derived,
    page: i32,
    patience: Duration,
    no_cards_yet: bool,
    mut progress: impl FnMut(Progress<'_>),
) -> anyhow::Result<Rebuilt> {
    if derived == Derived::Directory && publication.is_none() {
        bail!("rebuilding directory needs directory's address");
    }
    if derived == Derived::Cards && !no_cards_yet {
        // One card restated, which changes nothing anywhere, says whether it holds any.
        let probe = services.page(Owner::Cards, "", String::new(), 1).await?;
        if probe.items == 0 {
            bail!(
                "cards holds no card: its cards, their numbers and history are its own, \
                 derived from nothing; restore cards' database from its backup, then \
                 rebuild it (--no-cards-yet if no card was ever made)"
            );
        }
    }
    if let Some(publication) = publication {
        publication.hold().await?;
        progress(Progress::Held);
    }
    let mut rebuilt = Rebuilt::default();
    for owner in derived.sources() {
        let totals = services
            .restate(*owner, None, page, async |totals| {
                if let Some(publication) = publication {
                    publication.hold().await?;
                }
                progress(Progress::Restated(*owner, totals));
                Ok(())
            })
            .await?;
        rebuilt.restated.push((*owner, totals));
    }
    if let Some(publication) = publication {
        publication
            .wait_consumed(patience, |state| {
                progress(Progress::EventsPending(state.events_pending));
            })
            .await?;
        publication.release().await?;
        progress(Progress::Resumed);
        let state = publication
            .wait_published(patience, |state| {
                progress(Progress::AccountsPending(state.accounts_pending));
            })
            .await?;
        rebuilt.accounts_pending = Some(state.accounts_pending);
    }
    Ok(rebuilt)
}
