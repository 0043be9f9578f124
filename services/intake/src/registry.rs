//! The registry's operations: each one transaction that checks, changes, audits and
//! enqueues its events, then wakes the outbox relay. The gRPC edge only converts.

use hosted_contracts::{
    subjects::{Fact, intake},
    v1,
};
use hosted_platform::{error::Violations, outbox};
use serde_json::json;
use sqlx::PgConnection;
use time::Date;
use uuid::Uuid;

use crate::{
    Intake,
    domain::{
        self,
        agreement::{AgreementInput, NewAgreement},
        lock::{LockKind, LockReason},
        registration::{PersonInput, format_date, parse_date},
        stay::Refusal,
    },
    error::IntakeError,
    events,
    store::{
        self,
        agreements::{self, AgreementRow},
        audit::{self, AuditEntry, change, note_change},
        batch::{self, BatchRow, RowOutcome},
        payments::{self, NewPayment},
        stays,
    },
};

impl From<Refusal> for IntakeError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(violations) => IntakeError::Invalid(violations),
            Refusal::State(reason) => IntakeError::FailedPrecondition(reason),
        }
    }
}

/// Parses an id field, or says which field is wrong.
pub fn parse_id(field: &str, value: &str) -> Result<Uuid, IntakeError> {
    Uuid::parse_str(value.trim()).map_err(|_| {
        let mut violations = Violations::default();
        violations.add(field, "not an id");
        IntakeError::Invalid(violations)
    })
}

fn parse_day(field: &str, value: &str) -> Result<Date, IntakeError> {
    let mut violations = Violations::default();
    parse_date(field, value, &mut violations).ok_or(IntakeError::Invalid(violations))
}

impl Intake {
    /// The learner's new state after a change, enqueued as `fact`.
    async fn publish_learner(
        &self,
        conn: &mut PgConnection,
        learner_id: Uuid,
        fact: Fact,
        stay_id: Option<Uuid>,
        reason: &str,
        actor: &str,
    ) -> Result<v1::Learner, IntakeError> {
        let record = store::learner(conn, learner_id)
            .await?
            .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
        let learner = events::learner_message(&record, self.today());
        let event = events::learner_event(
            &self.namespace,
            fact,
            learner.clone(),
            stay_id,
            reason,
            actor,
        );
        outbox::enqueue(conn, &[event]).await?;
        Ok(learner)
    }

    /// Registers many stays in one transaction (or checks them only, with `dry_run`):
    /// one outcome per row, in order; each change audited and published.
    pub(crate) async fn register_batch(
        &self,
        rows: &[BatchRow],
        dry_run: bool,
        actor: &str,
    ) -> Result<Vec<RowOutcome>, IntakeError> {
        let mut tx = self.pool.begin().await?;
        let outcomes = batch::register(&mut tx, rows, &self.numbering).await?;
        if dry_run {
            tx.rollback().await?;
            return Ok(outcomes.into_iter().map(RowOutcome::predicted).collect());
        }
        let changes: Vec<(Uuid, Uuid, serde_json::Value)> = outcomes
            .iter()
            .filter_map(|outcome| {
                let details = match outcome {
                    RowOutcome::Created { .. } => json!({ "new_person": true }),
                    RowOutcome::StayAdded {
                        ine_recorded: true, ..
                    } => json!({ "new_person": false, "ine_recorded": true }),
                    _ => json!({ "new_person": false }),
                };
                outcome
                    .changed()
                    .map(|(learner_id, stay_id)| (learner_id, stay_id, details))
            })
            .collect();
        if !changes.is_empty() {
            audit::record_many(
                &mut tx,
                actor,
                "stay.registered",
                changes
                    .iter()
                    .map(|(learner_id, stay_id, details)| (*learner_id, *stay_id, details.clone())),
            )
            .await?;
            let learner_ids: Vec<Uuid> = changes
                .iter()
                .map(|(learner_id, _, _)| *learner_id)
                .collect();
            let records = store::learners(&mut tx, &learner_ids).await?;
            let today = self.today();
            let mut messages: std::collections::HashMap<Uuid, v1::Learner> =
                std::collections::HashMap::new();
            let mut outbox_events = Vec::with_capacity(changes.len());
            for (learner_id, stay_id, _) in &changes {
                let Some(record) = records.get(learner_id) else {
                    continue;
                };
                let learner = messages
                    .entry(*learner_id)
                    .or_insert_with(|| events::learner_message(record, today))
                    .clone();
                outbox_events.push(events::learner_event(
                    &self.namespace,
                    intake::STAY_REGISTERED,
                    learner,
                    Some(*stay_id),
                    "",
                    actor,
                ));
            }
            outbox::enqueue(&mut tx, &outbox_events).await?;
        }
        tx.commit().await?;
        if !changes.is_empty() {
            self.outbox.notify();
        }
        tracing::info!(
            rows = rows.len(),
            changed = changes.len(),
            "registrations applied"
        );
        Ok(outcomes)
    }

    /// Registers one stay: a batch of one.
    pub(crate) async fn register(
        &self,
        registration: domain::Registration,
        confirm_new_person: bool,
        actor: &str,
    ) -> Result<v1::RegisterStayResponse, IntakeError> {
        let row = BatchRow {
            registration,
            confirm_new_person,
        };
        let outcome = self
            .register_batch(std::slice::from_ref(&row), false, actor)
            .await?
            .pop()
            .ok_or_else(|| IntakeError::NotFound("registration outcome".to_owned()))?;
        let (learner_id, stay_id, new_person) = match outcome {
            RowOutcome::Created {
                learner_id,
                stay_id,
                ..
            } => (learner_id, stay_id, true),
            RowOutcome::StayAdded {
                learner_id,
                stay_id,
                ..
            }
            | RowOutcome::Unchanged {
                learner_id,
                stay_id,
                ..
            } => (learner_id, stay_id, false),
            RowOutcome::Rejected(violations) => return Err(IntakeError::Invalid(violations)),
            RowOutcome::Refused(violations) => return Err(IntakeError::Refused(violations)),
            RowOutcome::PossibleDuplicate(candidates) => {
                return Ok(v1::RegisterStayResponse {
                    possible_duplicates: candidates
                        .into_iter()
                        .map(events::possible_duplicate)
                        .collect(),
                    ..Default::default()
                });
            }
            RowOutcome::DuplicateOfRow(_) => {
                return Err(IntakeError::NotFound("registration outcome".to_owned()));
            }
        };
        let mut conn = self.pool.acquire().await?;
        let record = store::learner(&mut conn, learner_id)
            .await?
            .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
        Ok(v1::RegisterStayResponse {
            learner: Some(events::learner_message(&record, self.today())),
            stay_id: stay_id.to_string(),
            new_person,
            possible_duplicates: Vec::new(),
        })
    }

    pub(crate) async fn amend_person(
        &self,
        learner_id: Uuid,
        expected_version: i64,
        input: PersonInput,
        reason: &str,
        actor: &str,
    ) -> Result<v1::Learner, IntakeError> {
        let mut tx = self.pool.begin().await?;
        // Registrations of the identities before and after the correction wait for
        // it (locks taken before the person's row, in the registrations' order).
        let before = store::learner(&mut tx, learner_id)
            .await?
            .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?
            .person;
        crate::erasure::refuse_if_erased(before.erased_at.is_some())?;
        let merged = domain::amendment::merge(
            &domain::amendment::CurrentPerson {
                family_name: &before.family_name,
                birth_name: before.birth_name.as_deref(),
                given_names: &before.given_names,
                birth_date: before.birth_date,
                email: &before.email,
                ine: before.ine.as_deref(),
                phone: before.phone.as_deref(),
            },
            input,
        );
        let amended = domain::with_reason(
            domain::registration::validate_person(&merged, self.today()),
            reason,
        )?;
        let lock_keys = batch::identity_lock_keys([
            (before.birth_date, before.ine.as_deref()),
            (amended.birth_date, amended.ine.as_deref()),
        ]);
        batch::lock_identities(&mut tx, &lock_keys).await?;
        let current = store::lock_person(&mut tx, learner_id)
            .await?
            .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
        crate::erasure::refuse_if_erased(current.erased_at.is_some())?;
        if current.version != expected_version || current.version != before.version {
            return Err(IntakeError::Aborted(format!(
                "the learner is at version {}, not {expected_version}: read it again",
                current.version
            )));
        }
        if let Some(ine) = &amended.ine
            && store::ine_taken_by_other(&mut tx, ine, learner_id).await?
        {
            let mut refusal = Violations::default();
            refusal.add("person.ine", "already the INE of another learner");
            return Err(IntakeError::Refused(refusal));
        }
        let mut changes = serde_json::Map::new();
        let mut note = |field: &str, from: Option<String>, to: Option<String>| {
            note_change(&mut changes, field, from, to)
        };
        note(
            "family_name",
            Some(current.family_name.clone()),
            Some(amended.family_name.clone()),
        );
        note(
            "birth_name",
            current.birth_name.clone(),
            amended.birth_name.clone(),
        );
        note(
            "given_names",
            Some(current.given_names.clone()),
            Some(amended.given_names.clone()),
        );
        note(
            "birth_date",
            Some(format_date(current.birth_date)),
            Some(format_date(amended.birth_date)),
        );
        note(
            "email",
            Some(current.email.clone()),
            Some(amended.email.clone()),
        );
        note("ine", current.ine.clone(), amended.ine.clone());
        note("phone", current.phone.clone(), amended.phone.clone());
        if changes.is_empty() {
            let record = store::learner(&mut tx, learner_id)
                .await?
                .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
            return Ok(events::learner_message(&record, self.today()));
        }
        store::update_person(&mut tx, learner_id, &amended).await?;
        audit::record(
            &mut tx,
            AuditEntry {
                actor,
                action: "person.amended",
                learner_id: Some(learner_id),
                reason: Some(reason),
                changes: serde_json::Value::Object(changes),
                ..AuditEntry::default()
            },
        )
        .await?;
        let learner = self
            .publish_learner(
                &mut tx,
                learner_id,
                intake::PERSON_AMENDED,
                None,
                reason,
                actor,
            )
            .await?;
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(%learner_id, version = learner.version, "person amended");
        Ok(learner)
    }

    /// Amends, extends, ends early or cancels a stay.
    pub(crate) async fn change_stay(
        &self,
        stay_id: Uuid,
        change_kind: StayChange,
        reason: &str,
        actor: &str,
    ) -> Result<v1::Learner, IntakeError> {
        let today = self.today();
        let mut tx = self.pool.begin().await?;
        let stay = stays::lock(&mut tx, stay_id)
            .await?
            .ok_or_else(|| IntakeError::NotFound("stay".to_owned()))?;
        crate::erasure::refuse_if_erased(stay.erased)?;
        let (fact, action, changes) = match change_kind {
            StayChange::Amend(input) => {
                let amendment = domain::stay::check_amendment(&stay.facts, &input, reason)?;
                let current = stays::amendable(&mut tx, stay_id).await?;
                let amended = stays::Amendable {
                    sponsor_unit: amendment
                        .sponsor_unit
                        .unwrap_or_else(|| current.sponsor_unit.clone()),
                    sponsor_login: amendment
                        .sponsor_login
                        .unwrap_or_else(|| current.sponsor_login.clone()),
                    requested_resources: amendment
                        .requested_resources
                        .unwrap_or_else(|| current.requested_resources.clone()),
                };
                let changes = amendment_changes(&current, &amended);
                if changes.is_empty() {
                    // Like an identity correction that corrects nothing: the learner
                    // as it is, no new version, nothing audited or published.
                    let record = store::learner(&mut tx, stay.learner_id)
                        .await?
                        .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
                    return Ok(events::learner_message(&record, today));
                }
                stays::amend(&mut tx, stay_id, &amended).await?;
                (
                    intake::STAY_AMENDED,
                    "stay.amended",
                    serde_json::Value::Object(changes),
                )
            }
            StayChange::Extend(new_end) => {
                domain::stay::check_extension(&stay.facts, new_end, reason, today)?;
                stays::set_end_date(&mut tx, stay_id, new_end, None).await?;
                // The stay goes on: whatever ended it early no longer holds.
                stays::set_early_end(&mut tx, stay_id, None).await?;
                let changes = json!({ "end_date": change(format_date(stay.facts.end_date), format_date(new_end)) });
                (intake::STAY_EXTENDED, "stay.extended", changes)
            }
            StayChange::End(end_date, early_end) => {
                domain::stay::check_end(&stay.facts, end_date, early_end, reason, today)?;
                stays::set_end_date(&mut tx, stay_id, end_date, Some(reason)).await?;
                let code = early_end.map(domain::stay::EarlyEnd::code);
                stays::set_early_end(&mut tx, stay_id, code).await?;
                let changes = json!({
                    "end_date": change(format_date(stay.facts.end_date), format_date(end_date)),
                    "early_end": code,
                });
                (intake::STAY_ENDED, "stay.ended", changes)
            }
            StayChange::Cancel => {
                domain::stay::check_cancel(&stay.facts, reason, today)?;
                stays::cancel(&mut tx, stay_id, reason).await?;
                (
                    intake::STAY_CANCELLED,
                    "stay.cancelled",
                    json!({ "cancelled": change(false, true) }),
                )
            }
        };
        stays::bump_version(&mut tx, stay.learner_id).await?;
        audit::record(
            &mut tx,
            AuditEntry {
                actor,
                action,
                learner_id: Some(stay.learner_id),
                stay_id: Some(stay_id),
                reason: Some(reason),
                changes,
                ..AuditEntry::default()
            },
        )
        .await?;
        let learner = self
            .publish_learner(&mut tx, stay.learner_id, fact, Some(stay_id), reason, actor)
            .await?;
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(learner_id = %stay.learner_id, %stay_id, action, "stay changed");
        Ok(learner)
    }

    async fn catalogue(&self, conn: &mut PgConnection) -> Result<Vec<String>, IntakeError> {
        Ok(
            sqlx::query_scalar("SELECT code FROM populations ORDER BY code")
                .fetch_all(conn)
                .await?,
        )
    }

    pub(crate) async fn create_agreement(
        &self,
        input: AgreementInput,
        actor: &str,
    ) -> Result<v1::Agreement, IntakeError> {
        let mut tx = self.pool.begin().await?;
        let catalogue = self.catalogue(&mut tx).await?;
        let agreement = domain::agreement::validate(&input, &catalogue)?;
        let row = agreements::insert(&mut tx, &agreement, actor).await?;
        let message = events::agreement_message(&row);
        audit::record(
            &mut tx,
            AuditEntry {
                actor,
                action: "agreement.created",
                agreement_id: Some(row.agreement_id),
                changes: json!({ "partner_name": row.partner_name, "populations": row.populations }),
                ..AuditEntry::default()
            },
        )
        .await?;
        let event = events::agreement_event(
            &self.namespace,
            intake::AGREEMENT_CREATED,
            message.clone(),
            "",
            actor,
        );
        outbox::enqueue(&mut tx, &[event]).await?;
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(agreement_id = %row.agreement_id, "agreement created");
        Ok(message)
    }

    pub(crate) async fn amend_agreement(
        &self,
        agreement_id: Uuid,
        expected_version: i64,
        input: AgreementInput,
        reason: &str,
        actor: &str,
    ) -> Result<v1::Agreement, IntakeError> {
        let mut tx = self.pool.begin().await?;
        let current = agreements::get(&mut tx, agreement_id, true)
            .await?
            .ok_or_else(|| IntakeError::NotFound("agreement".to_owned()))?;
        if current.version != expected_version {
            return Err(IntakeError::Aborted(format!(
                "the agreement is at version {}, not {expected_version}: read it again",
                current.version
            )));
        }
        let catalogue = self.catalogue(&mut tx).await?;
        let amended: NewAgreement =
            domain::with_reason(domain::agreement::validate(&input, &catalogue), reason)?;
        self.check_amendment_keeps_stays(&mut tx, agreement_id, &amended)
            .await?;
        let row = agreements::update(&mut tx, agreement_id, &amended).await?;
        audit::record(
            &mut tx,
            AuditEntry {
                actor,
                action: "agreement.amended",
                agreement_id: Some(agreement_id),
                reason: Some(reason),
                changes: agreement_changes(&current, &row),
                ..AuditEntry::default()
            },
        )
        .await?;
        let message = events::agreement_message(&row);
        let event = events::agreement_event(
            &self.namespace,
            intake::AGREEMENT_AMENDED,
            message.clone(),
            reason,
            actor,
        );
        outbox::enqueue(&mut tx, &[event]).await?;
        tx.commit().await?;
        self.outbox.notify();
        Ok(message)
    }

    /// An amendment may widen an agreement, never leave one of its stays uncovered:
    /// shortening goes through EndAgreement, which ends the stays with it.
    async fn check_amendment_keeps_stays(
        &self,
        conn: &mut PgConnection,
        agreement_id: Uuid,
        amended: &NewAgreement,
    ) -> Result<(), IntakeError> {
        let mut problems = Vec::new();
        for population in agreements::populations_in_use(conn, agreement_id).await? {
            if !amended.populations.contains(&population) {
                problems.push(format!("stays of population {population} are under it"));
            }
        }
        if let Some((first_start, last_end)) = agreements::stays_span(conn, agreement_id).await? {
            if amended.start_date > first_start {
                problems.push(format!(
                    "a stay under it starts on {}",
                    format_date(first_start)
                ));
            }
            if amended.end_date < last_end {
                problems.push(format!(
                    "a stay under it ends on {} (EndAgreement shortens the stays with it)",
                    format_date(last_end)
                ));
            }
        }
        let periods = agreements::stay_periods(conn, agreement_id).await?;
        let at_once =
            domain::admission::peak_head_count(&periods, amended.start_date, amended.end_date);
        if amended.head_count_cap > 0
            && usize::try_from(amended.head_count_cap).unwrap_or(0) < at_once
        {
            problems.push(format!(
                "{at_once} stays under it run at once, more than the new cap"
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(IntakeError::FailedPrecondition(format!(
                "the amendment would leave stays uncovered: {}",
                problems.join("; ")
            )))
        }
    }

    /// Ends or shortens an agreement; the stays under it end with it (cancelled when
    /// they had not started by then), each with its own event.
    pub(crate) async fn end_agreement(
        &self,
        agreement_id: Uuid,
        end_date: &str,
        reason: &str,
        actor: &str,
    ) -> Result<(v1::Agreement, Vec<String>), IntakeError> {
        let mut violations = Violations::default();
        let end = parse_date("end_date", end_date, &mut violations);
        domain::require_reason(reason, &mut violations);
        let today = self.today();
        if let Some(end) = end
            && end < today
        {
            violations.add(
                "end_date",
                "in the past: an agreement can be ended today at the earliest",
            );
        }
        let end = match (violations.is_empty(), end) {
            (true, Some(end)) => end,
            _ => return Err(IntakeError::Invalid(violations)),
        };
        let mut tx = self.pool.begin().await?;
        let current = agreements::get(&mut tx, agreement_id, true)
            .await?
            .ok_or_else(|| IntakeError::NotFound("agreement".to_owned()))?;
        if end >= current.end_date {
            let mut violations = Violations::default();
            violations.add(
                "end_date",
                format!(
                    "must be before the agreement's end date {}",
                    format_date(current.end_date)
                ),
            );
            return Err(IntakeError::Invalid(violations));
        }
        let row = agreements::set_end(&mut tx, agreement_id, end, reason).await?;
        let mut affected = Vec::new();
        let mut outbox_events = Vec::new();
        for (stay_id, learner_id) in agreements::stays_past(&mut tx, agreement_id, end).await? {
            let stay = stays::lock(&mut tx, stay_id)
                .await?
                .ok_or_else(|| IntakeError::NotFound("stay".to_owned()))?;
            // An erased learner's stays stay as they were: nothing of theirs changes.
            if stay.erased {
                continue;
            }
            let (fact, action) = if stay.facts.start_date > end {
                stays::cancel(&mut tx, stay_id, reason).await?;
                (intake::STAY_CANCELLED, "stay.cancelled")
            } else {
                stays::set_end_date(&mut tx, stay_id, end, Some(reason)).await?;
                (intake::STAY_ENDED, "stay.ended")
            };
            stays::bump_version(&mut tx, learner_id).await?;
            audit::record(
                &mut tx,
                AuditEntry {
                    actor,
                    action,
                    learner_id: Some(learner_id),
                    stay_id: Some(stay_id),
                    agreement_id: Some(agreement_id),
                    reason: Some(reason),
                    changes: json!({ "end_date": change(format_date(stay.facts.end_date), format_date(end)) }),
                },
            )
            .await?;
            self.publish_learner(&mut tx, learner_id, fact, Some(stay_id), reason, actor)
                .await?;
            affected.push(stay_id.to_string());
        }
        audit::record(
            &mut tx,
            AuditEntry {
                actor,
                action: "agreement.ended",
                agreement_id: Some(agreement_id),
                reason: Some(reason),
                changes: json!({ "end_date": change(format_date(current.end_date), format_date(end)), "stays": affected.len() }),
                ..AuditEntry::default()
            },
        )
        .await?;
        let message = events::agreement_message(&row);
        outbox_events.push(events::agreement_event(
            &self.namespace,
            intake::AGREEMENT_ENDED,
            message.clone(),
            reason,
            actor,
        ));
        outbox::enqueue(&mut tx, &outbox_events).await?;
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(%agreement_id, stays = affected.len(), "agreement ended");
        Ok((message, affected))
    }

    /// Locks a learner for `reason`, or changes the reason of their lock; nothing
    /// written when they are locked for that reason already. Returns the learner and
    /// whether it changed.
    pub(crate) async fn lock_learner(
        &self,
        learner_id: Uuid,
        reason: LockReason,
        note: &str,
        actor: &str,
    ) -> Result<(v1::Learner, bool), IntakeError> {
        let mut tx = self.pool.begin().await?;
        let current = store::lock_person(&mut tx, learner_id)
            .await?
            .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
        crate::erasure::refuse_if_erased(current.erased_at.is_some())?;
        let before = current.lock_reason.as_deref();
        if before == Some(reason.code()) {
            let record = store::learner(&mut tx, learner_id)
                .await?
                .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
            return Ok((events::learner_message(&record, self.today()), false));
        }
        store::set_lock(&mut tx, learner_id, reason.code(), actor).await?;
        let kind = match reason.kind() {
            LockKind::Administrative => "administrative",
            LockKind::Technical => "technical",
        };
        audit::record(
            &mut tx,
            AuditEntry {
                actor,
                action: "learner.locked",
                learner_id: Some(learner_id),
                reason: Some(reason.code()),
                changes: json!({
                    "lock": change(before.map(str::to_owned), reason.code()),
                    "kind": kind,
                    "note": note.trim(),
                }),
                ..AuditEntry::default()
            },
        )
        .await?;
        let learner = self
            .publish_learner(
                &mut tx,
                learner_id,
                intake::LEARNER_LOCKED,
                None,
                reason.code(),
                actor,
            )
            .await?;
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(%learner_id, version = learner.version, reason = reason.code(), "learner locked");
        Ok((learner, true))
    }

    /// Lifts a learner's lock; nothing written when they are not locked.
    pub(crate) async fn unlock_learner(
        &self,
        learner_id: Uuid,
        note: &str,
        actor: &str,
    ) -> Result<(v1::Learner, bool), IntakeError> {
        let mut tx = self.pool.begin().await?;
        let current = store::lock_person(&mut tx, learner_id)
            .await?
            .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
        crate::erasure::refuse_if_erased(current.erased_at.is_some())?;
        let Some(before) = current.lock_reason else {
            let record = store::learner(&mut tx, learner_id)
                .await?
                .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
            return Ok((events::learner_message(&record, self.today()), false));
        };
        store::clear_lock(&mut tx, learner_id).await?;
        audit::record(
            &mut tx,
            AuditEntry {
                actor,
                action: "learner.unlocked",
                learner_id: Some(learner_id),
                reason: Some(before.as_str()),
                changes: json!({
                    "lock": change(before.as_str(), serde_json::Value::Null),
                    "locked_at": current.locked_at.map(|at| at.unix_timestamp()),
                    "locked_by": current.locked_by,
                    "note": note.trim(),
                }),
                ..AuditEntry::default()
            },
        )
        .await?;
        let learner = self
            .publish_learner(
                &mut tx,
                learner_id,
                intake::LEARNER_UNLOCKED,
                None,
                &before,
                actor,
            )
            .await?;
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(%learner_id, version = learner.version, "learner unlocked");
        Ok((learner, true))
    }

    pub(crate) async fn record_payment(
        &self,
        request: v1::RecordPaymentRequest,
        actor: &str,
    ) -> Result<v1::Payment, IntakeError> {
        let mut violations = Violations::default();
        let stay_id = Uuid::parse_str(request.stay_id.trim()).ok();
        if stay_id.is_none() {
            violations.add("stay_id", "not an id");
        }
        if request.amount_cents < 0 {
            violations.add("amount_cents", "0 or more");
        }
        let paid_on = parse_date("paid_on", &request.paid_on, &mut violations);
        if let Some(paid_on) = paid_on
            && paid_on > self.today()
        {
            violations.add("paid_on", "in the future");
        }
        let payer = match v1::Payer::try_from(request.payer).unwrap_or(v1::Payer::Unspecified) {
            v1::Payer::Learner => "learner",
            v1::Payer::Partner => "partner",
            _ => {
                violations.add("payer", "required: PAYER_LEARNER or PAYER_PARTNER");
                ""
            }
        };
        if payer == "partner" && request.payer_name.trim().is_empty() {
            violations.add("payer_name", "required when a third party pays");
        }
        let (Some(stay_id), Some(paid_on), true) = (stay_id, paid_on, violations.is_empty()) else {
            return Err(IntakeError::Invalid(violations));
        };
        let mut tx = self.pool.begin().await?;
        let stay = stays::lock(&mut tx, stay_id)
            .await?
            .ok_or_else(|| IntakeError::NotFound("stay".to_owned()))?;
        crate::erasure::refuse_if_erased(stay.erased)?;
        if stay.facts.cancelled {
            return Err(IntakeError::FailedPrecondition(
                "the stay was cancelled".to_owned(),
            ));
        }
        let optional = |text: &str| (!text.trim().is_empty()).then(|| text.trim().to_owned());
        let payment = payments::record(
            &mut tx,
            &NewPayment {
                stay_id,
                amount_cents: Some(request.amount_cents),
                paid_on,
                payer: payer.to_owned(),
                payer_name: optional(&request.payer_name),
                reference: optional(&request.reference),
                cohort_payment_id: None,
            },
            actor,
        )
        .await?;
        let message = self
            .payment_recorded(&mut tx, stay.learner_id, &payment, actor)
            .await?;
        tx.commit().await?;
        self.outbox.notify();
        Ok(message)
    }

    /// Bumps the learner, audits and enqueues a payment fact.
    async fn payment_recorded(
        &self,
        conn: &mut PgConnection,
        learner_id: Uuid,
        payment: &payments::PaymentRow,
        actor: &str,
    ) -> Result<v1::Payment, IntakeError> {
        stays::bump_version(conn, learner_id).await?;
        audit::record(
            conn,
            AuditEntry {
                actor,
                action: "payment.recorded",
                learner_id: Some(learner_id),
                stay_id: Some(payment.stay_id),
                changes: json!({ "payment_id": payment.payment_id, "amount_cents": payment.amount_cents,
                                 "payer": payment.payer }),
                ..AuditEntry::default()
            },
        )
        .await?;
        let record = store::learner(conn, learner_id)
            .await?
            .ok_or_else(|| IntakeError::NotFound("learner".to_owned()))?;
        let learner = events::learner_message(&record, self.today());
        let message = events::payment_message(payment);
        outbox::enqueue(
            conn,
            &[events::payment_event(
                &self.namespace,
                message.clone(),
                learner,
                actor,
            )],
        )
        .await?;
        Ok(message)
    }

    pub(crate) async fn record_cohort_payment(
        &self,
        request: v1::RecordCohortPaymentRequest,
        actor: &str,
    ) -> Result<v1::RecordCohortPaymentResponse, IntakeError> {
        let mut violations = Violations::default();
        let agreement_id = Uuid::parse_str(request.agreement_id.trim()).ok();
        if agreement_id.is_none() {
            violations.add("agreement_id", "not an id");
        }
        if request.amount_cents < 0 {
            violations.add("amount_cents", "0 or more");
        }
        let paid_on = parse_date("paid_on", &request.paid_on, &mut violations);
        let reference = request.reference.trim().to_owned();
        if reference.is_empty() {
            violations.add(
                "reference",
                "required: the bank transfer's reference, so that the same transfer is never booked twice",
            );
        } else if reference.chars().count() > 200 {
            violations.add("reference", "longer than 200 characters");
        }
        let (Some(agreement_id), Some(paid_on), true) =
            (agreement_id, paid_on, violations.is_empty())
        else {
            return Err(IntakeError::Invalid(violations));
        };
        let mut tx = self.pool.begin().await?;
        // The agreement's row lock makes two bookings under one agreement take turns:
        // the second sees the first's reference.
        let agreement = agreements::get(&mut tx, agreement_id, true)
            .await?
            .ok_or_else(|| IntakeError::NotFound("agreement".to_owned()))?;
        let optional = |text: &str| (!text.trim().is_empty()).then(|| text.trim().to_owned());
        if let Some(booked) =
            payments::cohort_by_reference(&mut tx, agreement_id, &reference).await?
        {
            if booked.amount_cents != request.amount_cents || booked.paid_on != paid_on {
                return Err(IntakeError::AlreadyExists(format!(
                    "reference: a cohort payment with this reference is already booked for this agreement, \
                     of {} cents paid on {}: give the transfer's own reference",
                    booked.amount_cents,
                    format_date(booked.paid_on)
                )));
            }
            let paid = payments::cohort_stays(&mut tx, booked.cohort_payment_id).await?;
            tracing::info!(%agreement_id, cohort_payment_id = %booked.cohort_payment_id,
                "cohort payment already booked: nothing booked again");
            return Ok(v1::RecordCohortPaymentResponse {
                paid_stay_ids: paid.iter().map(Uuid::to_string).collect(),
                cohort_payment_id: booked.cohort_payment_id.to_string(),
                repeat: true,
            });
        }
        let reference = Some(reference);
        let due = agreements::due_stays(&mut tx, agreement_id).await?;
        if due.is_empty() {
            return Err(IntakeError::FailedPrecondition(
                "no stay under this agreement is due: nothing to pay".to_owned(),
            ));
        }
        let payer_name =
            optional(&request.payer_name).unwrap_or_else(|| agreement.partner_name.clone());
        let cohort_payment_id = payments::record_cohort(
            &mut tx,
            agreement_id,
            request.amount_cents,
            paid_on,
            Some(&payer_name),
            reference.as_deref(),
            actor,
        )
        .await?;
        let mut paid = Vec::new();
        for (stay_id, learner_id) in due {
            sqlx::query("SELECT 1 FROM persons WHERE learner_id = $1 FOR UPDATE")
                .bind(learner_id)
                .execute(&mut *tx)
                .await?;
            let payment = payments::record(
                &mut tx,
                &NewPayment {
                    stay_id,
                    amount_cents: None,
                    paid_on,
                    payer: "partner".to_owned(),
                    payer_name: Some(payer_name.clone()),
                    reference: reference.clone(),
                    cohort_payment_id: Some(cohort_payment_id),
                },
                actor,
            )
            .await?;
            self.payment_recorded(&mut tx, learner_id, &payment, actor)
                .await?;
            paid.push(stay_id.to_string());
        }
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(%agreement_id, %cohort_payment_id, stays = paid.len(), "cohort payment recorded");
        Ok(v1::RecordCohortPaymentResponse {
            paid_stay_ids: paid,
            cohort_payment_id: cohort_payment_id.to_string(),
            repeat: false,
        })
    }

    pub(crate) async fn save_population(
        &self,
        population: domain::Population,
        reason: &str,
        actor: &str,
    ) -> Result<(v1::Population, bool), IntakeError> {
        domain::with_reason(population.check(), reason)?;
        let mut tx = self.pool.begin().await?;
        let before = store::population(&mut tx, &population.code).await?;
        let created = store::save_population(&mut tx, &population).await?;
        let message = events::population_message(&population);
        audit::record(
            &mut tx,
            AuditEntry {
                actor,
                action: "population.saved",
                reason: Some(reason),
                changes: json!({
                    "code": population.code,
                    "before": before.as_ref().map(|before| format!("{:?}", events::population_message(before))),
                    "after": format!("{message:?}"),
                }),
                ..AuditEntry::default()
            },
        )
        .await?;
        outbox::enqueue(
            &mut tx,
            &[events::population_event(
                &self.namespace,
                message.clone(),
                reason,
                actor,
            )],
        )
        .await?;
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(population = %population.code, created, "population saved");
        Ok((message, created))
    }

    pub(crate) async fn agreement(
        &self,
        agreement_id: Uuid,
    ) -> Result<(AgreementRow, i64), IntakeError> {
        let mut conn = self.pool.acquire().await?;
        let row = agreements::get(&mut conn, agreement_id, false)
            .await?
            .ok_or_else(|| IntakeError::NotFound("agreement".to_owned()))?;
        let head_count = agreements::head_count(&mut conn, agreement_id).await?;
        Ok((row, head_count))
    }

    pub(crate) fn day(&self, field: &str, value: &str) -> Result<Date, IntakeError> {
        parse_day(field, value)
    }
}

/// What happens to a stay.
#[derive(Debug, Clone)]
pub enum StayChange {
    /// Another sponsoring unit, sponsor person or requested resources.
    Amend(domain::stay::AmendmentInput),
    Extend(Date),
    /// The new last day, and why the stay ends early (None: a shortening).
    End(Date, Option<domain::stay::EarlyEnd>),
    Cancel,
}

/// The fields an amendment changes, each `{"from", "to"}`; empty when it changes none.
fn amendment_changes(
    before: &stays::Amendable,
    after: &stays::Amendable,
) -> serde_json::Map<String, serde_json::Value> {
    let mut changes = serde_json::Map::new();
    let mut note = |field: &str, from: serde_json::Value, to: serde_json::Value| {
        note_change(&mut changes, field, from, to)
    };
    note(
        "sponsor_unit",
        json!(before.sponsor_unit),
        json!(after.sponsor_unit),
    );
    note(
        "sponsor_login",
        json!(before.sponsor_login),
        json!(after.sponsor_login),
    );
    note(
        "requested_resources",
        json!(before.requested_resources),
        json!(after.requested_resources),
    );
    changes
}

fn agreement_changes(before: &AgreementRow, after: &AgreementRow) -> serde_json::Value {
    let mut changes = serde_json::Map::new();
    let mut note = |field: &str, from: serde_json::Value, to: serde_json::Value| {
        note_change(&mut changes, field, from, to)
    };
    note(
        "partner_name",
        json!(before.partner_name),
        json!(after.partner_name),
    );
    note(
        "partner_uai",
        json!(before.partner_uai),
        json!(after.partner_uai),
    );
    note(
        "populations",
        json!(before.populations),
        json!(after.populations),
    );
    note(
        "start_date",
        json!(format_date(before.start_date)),
        json!(format_date(after.start_date)),
    );
    note(
        "end_date",
        json!(format_date(before.end_date)),
        json!(format_date(after.end_date)),
    );
    note(
        "head_count_cap",
        json!(before.head_count_cap),
        json!(after.head_count_cap),
    );
    note("options", json!(before.options), json!(after.options));
    note("payer", json!(before.payer), json!(after.payer));
    serde_json::Value::Object(changes)
}
