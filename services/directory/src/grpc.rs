//! The gRPC edge of directory: operators' views of accounts and dead letters.

use std::collections::BTreeMap;

use hosted_contracts::v1;
use hosted_platform::{
    auth::{Actor, Role},
    clock::wire_time,
    error::Violations,
    personal_data,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    Directory,
    domain::{entry, supann},
    error::DirectoryError,
    store,
};

use Role::Dosi;

/// The roles each RPC accepts; the platform refuses everything else.
pub const ACCESS: &[(&str, &[Role])] = &[
    ("GetAccount", &[Dosi]),
    ("RepublishAccount", &[Dosi]),
    ("Reconcile", &[Dosi]),
    ("ListDeadLetters", &[Dosi]),
    ("ReplayDeadLetters", &[Dosi]),
    ("HoldPublication", &[Dosi]),
    ("ListAuditEntries", &[Dosi]),
    ("ExportPersonalData", &[Dosi]),
];

/// The longest hold on publication one call asks for.
const MAX_HOLD_SECONDS: i32 = 3600;

fn attributes<'a>(map: impl IntoIterator<Item = (&'a str, &'a Vec<String>)>) -> Vec<v1::Attribute> {
    let sorted: BTreeMap<&str, &Vec<String>> = map.into_iter().collect();
    sorted
        .into_iter()
        .map(|(name, values)| v1::Attribute {
            name: name.to_owned(),
            values: values.clone(),
        })
        .collect()
}

fn learner_id(field: &str, value: &str) -> Result<Uuid, DirectoryError> {
    Uuid::parse_str(value.trim()).map_err(|_| {
        let mut violations = Violations::default();
        violations.add(field, "not a learner id");
        DirectoryError::Invalid(violations)
    })
}

impl Directory {
    async fn account_view(
        &self,
        learner_id: Uuid,
    ) -> Result<v1::GetAccountResponse, DirectoryError> {
        let account = store::account(&self.pool, learner_id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound("account".to_owned()))?;
        // The entry as the publisher computes it, sponsors' entries looked up the same
        // way. Once the account's time is over the entry should be gone: nothing desired.
        let sponsors_without_entry = self
            .sponsors
            .without_entry(std::slice::from_ref(&account))
            .await;
        let desired = crate::publisher::desired_entry(
            &account,
            &self.settings,
            &sponsors_without_entry,
            self.clock.today(),
        )
        .map_err(DirectoryError::Projection)?
        .unwrap_or_else(|| entry::Entry {
            dn: entry::dn(&account.login, &self.settings.base_dn),
            attributes: BTreeMap::new(),
            withheld: Vec::new(),
            sponsors_without_entry: Vec::new(),
        });
        let actual = self.ldap.read(&desired.dn).await?;
        // A missing entry is a difference too: every attribute it should hold.
        let entry_missing = actual.is_none() && !desired.attributes.is_empty();
        let differences =
            entry::differences(&desired, actual.as_ref().unwrap_or(&Default::default()));
        let published = account.published_revision == Some(account.revision);
        Ok(v1::GetAccountResponse {
            learner_id: learner_id.to_string(),
            dn: desired.dn.clone(),
            version: account.version,
            published_version: account.published_version.unwrap_or_default(),
            status: if published {
                v1::PublicationStatus::Published
            } else {
                v1::PublicationStatus::Pending
            }
            .into(),
            desired: attributes(
                desired
                    .attributes
                    .iter()
                    .map(|(name, values)| (*name, values)),
            ),
            actual: actual
                .as_ref()
                .map(|actual| {
                    attributes(actual.iter().map(|(name, values)| (name.as_str(), values)))
                })
                .unwrap_or_default(),
            differences: differences
                .into_iter()
                .map(|difference| v1::AttributeDifference {
                    name: difference.name.to_owned(),
                    desired: difference.desired,
                    actual: difference.actual,
                })
                .collect(),
            published_at: account.published_at.map(wire_time),
            entry_missing,
            ldap_writes: i64::from(account.ldap_writes),
        })
    }
}

#[tonic::async_trait]
impl v1::directory_service_server::DirectoryService for Directory {
    async fn get_account(
        &self,
        request: Request<v1::GetAccountRequest>,
    ) -> Result<Response<v1::GetAccountResponse>, Status> {
        use v1::get_account_request::Key;
        let learner_id = match request.into_inner().key {
            Some(Key::LearnerId(id)) => learner_id("learner_id", &id)?,
            Some(Key::Login(login)) => store::learner_id_by_login(&self.pool, login.trim())
                .await
                .map_err(DirectoryError::from)?
                .ok_or_else(|| DirectoryError::NotFound("account".to_owned()))?,
            None => {
                let mut violations = Violations::default();
                violations.add("key", "one of learner_id or login is required");
                return Err(DirectoryError::Invalid(violations).into());
            }
        };
        Ok(Response::new(self.account_view(learner_id).await?))
    }

    async fn republish_account(
        &self,
        request: Request<v1::RepublishAccountRequest>,
    ) -> Result<Response<v1::RepublishAccountResponse>, Status> {
        let actor = Actor::of(&request);
        let learner_id = learner_id("learner_id", &request.into_inner().learner_id)?;
        // An operator's republish asks LDAP afresh about the account's sponsors (an
        // entry made since is named now, not once the cached answer is too old).
        if let Some(account) = store::account(&self.pool, learner_id)
            .await
            .map_err(DirectoryError::from)?
        {
            self.sponsors.forget(std::slice::from_ref(&account));
        }
        if !store::request_republish(&self.pool, learner_id, actor.name())
            .await
            .map_err(DirectoryError::from)?
        {
            return Err(DirectoryError::NotFound("account".to_owned()).into());
        }
        self.publisher.notify_one();
        Ok(Response::new(v1::RepublishAccountResponse {
            account: Some(self.account_view(learner_id).await?),
        }))
    }

    async fn reconcile(
        &self,
        request: Request<v1::ReconcileRequest>,
    ) -> Result<Response<v1::ReconcileResponse>, Status> {
        let actor = Actor::of(&request);
        let request = request.into_inner();
        let apply = request.apply;
        let login = request.login.trim();
        if !login.is_empty() && !supann::valid_login(login) {
            let mut violations = Violations::default();
            violations.add(
                "login",
                "not a login: 1 to 64 ASCII letters, digits, '.', '_' or '-', \
                 starting with a letter or a digit",
            );
            return Err(DirectoryError::Invalid(violations).into());
        }
        if apply {
            // First what an earlier reconciliation wrote and did not record.
            self.finish_repairs(actor.name()).await?;
        }
        let report = if login.is_empty() {
            self.drift().await?
        } else {
            self.drift_of(login).await?
        };
        if apply {
            self.repair(&report.drifts, actor.name()).await?;
        }
        tracing::info!(
            drifts = report.drifts.len(),
            accounts = report.accounts,
            entries = report.entries,
            applied = apply,
            one_account = !login.is_empty(),
            "reconciliation"
        );
        Ok(Response::new(v1::ReconcileResponse {
            drifts: report
                .drifts
                .into_iter()
                .map(|drift| v1::Drift {
                    dn: drift.dn,
                    learner_id: drift
                        .learner_id
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                    kind: drift.kind.as_str().to_owned(),
                    differences: drift
                        .differences
                        .into_iter()
                        .map(|difference| v1::AttributeDifference {
                            name: difference.name.to_owned(),
                            desired: difference.desired,
                            actual: difference.actual,
                        })
                        .collect(),
                })
                .collect(),
            applied: apply,
            accounts: report.accounts as i64,
            entries: report.entries as i64,
        }))
    }

    async fn list_audit_entries(
        &self,
        request: Request<v1::DirectoryServiceListAuditEntriesRequest>,
    ) -> Result<Response<v1::DirectoryServiceListAuditEntriesResponse>, Status> {
        Ok(Response::new(
            crate::audit::list(&self.pool, request.get_ref()).await?,
        ))
    }

    /// The account's records, and the entry published in LDAP as it is now.
    async fn export_personal_data(
        &self,
        request: Request<v1::DirectoryServiceExportPersonalDataRequest>,
    ) -> Result<Response<v1::DirectoryServiceExportPersonalDataResponse>, Status> {
        let actor = Actor::of(&request);
        let learner_id = personal_data::learner_id(&request.get_ref().learner_id)?;
        let mut records = personal_data::records(&self.pool, learner_id, &[])
            .await
            .map_err(DirectoryError::from)?;
        personal_data::decode_learners(&mut records, "accounts", "learner");
        let account = store::account(&self.pool, learner_id)
            .await
            .map_err(DirectoryError::from)?;
        let entry = match account.filter(|account| !account.login.is_empty()) {
            Some(account) => self
                .ldap
                .read(&entry::dn(&account.login, &self.settings.base_dn))
                .await
                .map_err(DirectoryError::from)?
                .map(|attributes| attributes.into_iter().collect::<BTreeMap<_, _>>()),
            None => None,
        };
        records.insert(
            "ldap_entry".to_owned(),
            serde_json::to_value(entry).unwrap_or_default(),
        );
        tracing::info!(%learner_id, actor = actor.name(), "personal data exported");
        Ok(Response::new(
            v1::DirectoryServiceExportPersonalDataResponse {
                data: Some(personal_data::to_wire(crate::audit::SERVICE, records)),
            },
        ))
    }

    async fn list_dead_letters(
        &self,
        _request: Request<v1::ListDeadLettersRequest>,
    ) -> Result<Response<v1::ListDeadLettersResponse>, Status> {
        let letters = self
            .dead_letters
            .list()
            .await
            .map_err(DirectoryError::Events)?;
        Ok(Response::new(v1::ListDeadLettersResponse {
            dead_letters: letters
                .into_iter()
                .map(|letter| v1::DeadLetter {
                    sequence: letter.sequence,
                    event_id: letter.event_id,
                    original_subject: letter.original_subject,
                    consumer: letter.consumer,
                    error: letter.error,
                    deliveries: letter.deliveries,
                    dead_at: Some(wire_time(letter.dead_at)),
                })
                .collect(),
        }))
    }

    async fn replay_dead_letters(
        &self,
        request: Request<v1::ReplayDeadLettersRequest>,
    ) -> Result<Response<v1::ReplayDeadLettersResponse>, Status> {
        let sequences = request.into_inner().sequences;
        let (replayed, failed) = self
            .dead_letters
            .replay(&self.pool, &self.handler, &sequences)
            .await
            .map_err(DirectoryError::Events)?;
        tracing::info!(replayed, failed, "dead letters replayed");
        Ok(Response::new(v1::ReplayDeadLettersResponse {
            replayed,
            failed,
        }))
    }

    async fn hold_publication(
        &self,
        request: Request<v1::HoldPublicationRequest>,
    ) -> Result<Response<v1::HoldPublicationResponse>, Status> {
        let request = request.into_inner();
        let held_until = if request.status_only {
            store::held_until(&self.pool)
                .await
                .map_err(DirectoryError::from)?
        } else {
            if !(0..=MAX_HOLD_SECONDS).contains(&request.seconds) {
                let mut violations = Violations::default();
                violations.add("seconds", "from 0 (end the hold) to 3600");
                return Err(DirectoryError::Invalid(violations).into());
            }
            let held_until = store::hold_publication(&self.pool, request.seconds.unsigned_abs())
                .await
                .map_err(DirectoryError::from)?;
            if held_until.is_none() {
                self.publisher.notify_one();
            }
            held_until
        };
        let (events_pending, consumers_known) = self.backlog().await;
        let accounts_pending = store::pending_accounts(&self.pool)
            .await
            .map_err(DirectoryError::from)?;
        tracing::debug!(
            held = held_until.is_some(),
            events_pending,
            accounts_pending,
            "publication hold"
        );
        Ok(Response::new(v1::HoldPublicationResponse {
            held_until: held_until.map(wire_time),
            events_pending: i64::try_from(events_pending).unwrap_or(i64::MAX),
            accounts_pending,
            consumers_known,
        }))
    }
}

impl Directory {
    /// The events of intake, entitlement and cards that directory's consumers have not
    /// applied yet, and whether every consumer could be asked.
    async fn backlog(&self) -> (u64, bool) {
        use hosted_contracts::subjects::Service;
        let consumers = [
            (crate::events::INTAKE_CONSUMER, Service::Intake),
            (crate::events::ENTITLEMENT_CONSUMER, Service::Entitlement),
            (crate::events::CARDS_CONSUMER, Service::Cards),
        ];
        let mut pending = 0;
        let mut known = true;
        for (durable, source) in consumers {
            let stream = self.namespace.stream(source);
            match hosted_platform::nats::consumer_backlog(&self.jetstream, &stream, durable).await {
                Ok(count) => pending += count,
                Err(error) => {
                    tracing::debug!(%error, consumer = durable, "consumer backlog unknown");
                    known = false;
                }
            }
        }
        (pending, known)
    }
}
