//! The card office's operations: following the grants (requests, approval, expiry,
//! the e-purse right), the card office's transitions, replacements, print batches
//! and e-purse exports. Every change of a card is recorded as a transition and
//! published as `hosted.cards.card.changed` with the card's whole state, in the same
//! transaction.

use hosted_contracts::{
    prost::Message,
    subjects::{self, Namespace},
    v1,
};
use hosted_platform::{
    clock::{Clock, format_day, wire_instant, wire_time},
    outbox::{self, OutboxEvent, OutboxSignal},
};
use sqlx::{PgConnection, PgPool};
use time::Date;
use uuid::Uuid;

use crate::{
    config::{CardOfficeConfig, EscnConfig},
    documents::{self, PrintLine},
    domain::{
        lifecycle::{
            self, By, DISABLE_REASONS, EXPIRED_REASON, LOCKED_REASON_PREFIX, REPLACE_REASONS, State,
        },
        numbers,
    },
    store::{self, CardRow, Holding, Move, NewCard, Person, Transition},
};

pub const CARD_EVENT_TYPE: &str = "hosted.v1.CardEvent";

/// Why an operation of the card office was refused.
#[derive(Debug, thiserror::Error)]
pub enum OfficeError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Aborted(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> OfficeError {
    OfficeError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A card about to be made.
#[derive(Debug, Clone, Copy)]
struct Fresh {
    state: State,
    last_day: Date,
    replaces: Option<Uuid>,
}

/// Who makes a step, why, and the grants event behind it when there is one.
#[derive(Debug, Clone, Copy)]
struct Step<'a> {
    reason: &'a str,
    actor: &'a str,
    cause_event_id: Option<Uuid>,
}

/// The card office, shared by the consumers and the RPCs.
#[derive(Debug, Clone)]
pub struct Office {
    pub pool: PgPool,
    pub namespace: Namespace,
    pub config: CardOfficeConfig,
    pub escn: EscnConfig,
    pub clock: Clock,
    pub outbox: OutboxSignal,
}

fn text(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

impl Office {
    /// The wire form of a card.
    pub fn card_message(&self, card: &CardRow) -> v1::Card {
        v1::Card {
            card_id: card.card_id.to_string(),
            learner_id: card.learner_id.to_string(),
            card_number: card.card_number.clone(),
            escn: text(card.escn),
            csn: card.csn.clone().unwrap_or_default(),
            state: card.state().to_wire().into(),
            state_reason: card.state_reason.clone(),
            valid_until: Some(wire_instant(self.clock.end_of(card.last_day))),
            version: card.version,
            last_day: format_day(card.last_day),
            login: card.login.clone(),
            esi: numbers::esi(&card.ine).unwrap_or_default(),
            replaces_card_id: text(card.replaces),
            print_batch_id: text(card.print_batch_id),
            created_at: Some(wire_time(card.created_at)),
            updated_at: Some(wire_time(card.updated_at)),
        }
    }

    /// The card's whole state as `fact`, for the outbox.
    pub fn card_event(&self, card: &CardRow, actor: &str, fact: subjects::Fact) -> OutboxEvent {
        let event_id = Uuid::now_v7();
        let event = v1::CardEvent {
            meta: Some(v1::EventMeta {
                event_id: event_id.to_string(),
                occurred_at: Some(wire_instant(self.clock.now())),
                learner_id: card.learner_id.to_string(),
                learner_version: card.version,
                actor: actor.to_owned(),
            }),
            card: Some(self.card_message(card)),
        };
        OutboxEvent {
            event_id,
            subject: self.namespace.subject(fact),
            event_type: CARD_EVENT_TYPE,
            payload: event.encode_to_vec(),
            trace: None,
        }
    }

    /// Publishes the card's whole state as it now is (in the caller's transaction).
    async fn publish(
        &self,
        conn: &mut PgConnection,
        card_id: Uuid,
        actor: &str,
    ) -> Result<CardRow, OfficeError> {
        let card = store::card(conn, &card_id.to_string(), false)
            .await?
            .ok_or_else(|| OfficeError::NotFound(format!("card {card_id} not found")))?;
        outbox::enqueue(
            conn,
            &[self.card_event(&card, actor, subjects::cards::CARD_CHANGED)],
        )
        .await?;
        tracing::info!(
            card_id = %card.card_id,
            learner_id = %card.learner_id,
            state = %card.state(),
            version = card.version,
            "card changed"
        );
        Ok(card)
    }

    /// Moves a card (already locked and checked) and records the step.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        card: &CardRow,
        change: Move<'_>,
        actor: &str,
        cause_event_id: Option<Uuid>,
    ) -> Result<CardRow, OfficeError> {
        let version = store::update_card(conn, card.card_id, &change).await?;
        if let Some(to) = change.to {
            store::record_transition(
                conn,
                &Transition {
                    card_id: card.card_id,
                    version,
                    from: Some(card.state()),
                    to,
                    reason: change.reason.unwrap_or_default(),
                    actor,
                    cause_event_id,
                },
            )
            .await?;
        }
        self.publish(conn, card.card_id, actor).await
    }

    /// A new card for `person`, numbered, with an ESCN when it can have one.
    async fn new_card(
        &self,
        conn: &mut PgConnection,
        person: &Person,
        card: Fresh,
        step: Step<'_>,
    ) -> Result<CardRow, OfficeError> {
        let sequence = store::next_sequence(conn).await?;
        let card_number = numbers::card_number(&self.config.number_prefix, sequence as u64);
        let card_id = Uuid::now_v7();
        store::insert_card(
            conn,
            &NewCard {
                card_id,
                learner_id: person.learner_id,
                sequence,
                card_number: &card_number,
                escn: self.escn_for(&person.ine, sequence),
                state: card.state,
                last_day: card.last_day,
                replaces: card.replaces,
            },
        )
        .await?;
        store::record_transition(
            conn,
            &Transition {
                card_id,
                version: 1,
                from: None,
                to: card.state,
                reason: step.reason,
                actor: step.actor,
                cause_event_id: step.cause_event_id,
            },
        )
        .await?;
        self.publish(conn, card_id, step.actor).await
    }

    fn escn_for(&self, ine: &str, sequence: i64) -> Option<Uuid> {
        if !self.escn.enabled() || ine.is_empty() {
            return None;
        }
        numbers::escn(
            &self.escn.generator,
            &self.escn.pic,
            self.clock.now(),
            sequence as u64,
        )
    }

    /// Follows what a learner now holds (their row locked and saved by the caller):
    /// a request when they gain the smart-card grant, approval when it is in force,
    /// the card's last day with the grant's, expiry when it ends (and re-enabling of
    /// an encoded card when it comes back); the e-purse right opened, moved or closed.
    /// Follows the learner's grants: `lock`, when the grants event says the learner is
    /// locked, is why the card stops (its reason code and who locked).
    pub async fn follow(
        &self,
        conn: &mut PgConnection,
        learner_id: Uuid,
        on: Date,
        cause_event_id: Option<Uuid>,
        actor: &str,
        lock: Option<&v1::LearnerLock>,
    ) -> Result<(), OfficeError> {
        let Some((person, holding)) = store::lock_learner(conn, learner_id).await? else {
            return Ok(());
        };
        // A lock disables the card in the holder's hands (its reason says it was the
        // lock) and stops a card still on its way like the end of its grant; the
        // step names, as every step that follows the grants, who caused it: the
        // locking caller. An unlock enables it again if nothing else changed it.
        let lock_reason = lock.map(|lock| format!("{LOCKED_REASON_PREFIX}{}", lock.reason));
        self.follow_card(
            conn,
            &person,
            &holding,
            cause_event_id,
            actor,
            lock_reason.as_deref(),
        )
        .await?;
        self.follow_epurse(conn, learner_id, &holding, on).await
    }

    /// `locked` is the reason of the learner's lock (`locked: <code>`), while there is
    /// one.
    async fn follow_card(
        &self,
        conn: &mut PgConnection,
        person: &Person,
        holding: &Holding,
        cause: Option<Uuid>,
        actor: &str,
        locked: Option<&str>,
    ) -> Result<(), OfficeError> {
        let cards = store::cards_of(conn, person.learner_id).await?;
        let live = cards.iter().find(|card| card.state().is_live());
        // The card a lock disabled, if nothing changed it since: the newest card,
        // still disabled for the lock.
        let disabled_by_lock = cards.first().filter(|card| {
            card.state() == State::Disabled && card.state_reason.starts_with(LOCKED_REASON_PREFIX)
        });
        let stop_reason = locked.unwrap_or(EXPIRED_REASON);
        let Some(until) = holding.card_until else {
            if let Some(card) = live {
                // Locked: the card in the holder's hands is disabled, one on its way
                // stops; otherwise the grant ended.
                let to = match (locked, card.state()) {
                    (Some(_), State::Enabled) => State::Disabled,
                    _ => State::Expired,
                };
                let change = Move {
                    to: Some(to),
                    reason: Some(stop_reason),
                    ..Default::default()
                };
                self.apply(conn, card, change, actor, cause).await?;
            } else if let Some(card) = disabled_by_lock.filter(|_| locked.is_none()) {
                // Unlocked, but the grant ended meanwhile.
                let change = Move {
                    to: Some(State::Expired),
                    reason: Some(EXPIRED_REASON),
                    ..Default::default()
                };
                self.apply(conn, card, change, actor, cause).await?;
            }
            return Ok(());
        };
        if let Some(card) = disabled_by_lock.filter(|_| locked.is_none()) {
            // Unlocked: the card works again, or waits, expired, for its grant to be in
            // force (then it comes back as any expired card does).
            let (to, reason) = if holding.card_in_force {
                (State::Enabled, "the lock is lifted")
            } else {
                (State::Expired, EXPIRED_REASON)
            };
            let change = Move {
                to: Some(to),
                reason: Some(reason),
                last_day: Some(until),
                ..Default::default()
            };
            self.apply(conn, card, change, actor, cause).await?;
            return Ok(());
        }
        let approve = holding.card_in_force && self.config.auto_approve;
        // Between two stays the grant is not in force: the card in the holder's hands
        // stops working, and works again when the next grant comes into force.
        if let Some(card) = live.filter(|card| card.state() == State::Enabled)
            && !holding.card_in_force
        {
            let change = Move {
                to: Some(State::Expired),
                reason: Some(EXPIRED_REASON),
                last_day: Some(until),
                ..Default::default()
            };
            self.apply(conn, card, change, actor, cause).await?;
            return Ok(());
        }
        if let Some(card) = live {
            let to = (card.state() == State::Requested && approve).then_some(State::Approved);
            if to.is_none() && card.last_day == until {
                return Ok(());
            }
            let change = Move {
                to,
                reason: to.map(|_| "the smart-card grant is in force"),
                last_day: Some(until),
                ..Default::default()
            };
            self.apply(conn, card, change, actor, cause).await?;
            return Ok(());
        }
        match cards.first() {
            // The grant is back: the card the learner still has works again.
            Some(newest) if newest.state() == State::Expired && newest.csn.is_some() => {
                if holding.card_in_force {
                    let change = Move {
                        to: Some(State::Enabled),
                        reason: Some("the smart-card grant is back"),
                        last_day: Some(until),
                        ..Default::default()
                    };
                    self.apply(conn, newest, change, actor, cause).await?;
                }
            }
            // Disabled or destroyed: the card office decides on a replacement.
            Some(newest) if newest.state() != State::Expired => {}
            _ => {
                let (state, reason) = if approve {
                    (State::Approved, "the smart-card grant is in force")
                } else {
                    (State::Requested, "the smart-card grant")
                };
                let card = Fresh {
                    state,
                    last_day: until,
                    replaces: None,
                };
                let step = Step {
                    reason,
                    actor,
                    cause_event_id: cause,
                };
                self.new_card(conn, person, card, step).await?;
            }
        }
        Ok(())
    }

    async fn follow_epurse(
        &self,
        conn: &mut PgConnection,
        learner_id: Uuid,
        holding: &Holding,
        on: Date,
    ) -> Result<(), OfficeError> {
        let right = store::epurse_right(conn, learner_id).await?;
        let open = right
            .as_ref()
            .is_some_and(|right| right.closed_on.is_none());
        let held = holding
            .epurse_until
            .filter(|until| holding.epurse_in_force && *until >= on);
        match held {
            Some(until) => {
                let unchanged = open && right.is_some_and(|right| right.due_date == until);
                if !unchanged {
                    store::open_epurse(conn, learner_id, until).await?;
                    tracing::info!(%learner_id, "e-purse right open");
                }
            }
            None if open => {
                store::close_epurse(conn, learner_id, on).await?;
                tracing::info!(%learner_id, "e-purse right closed");
            }
            None => {}
        }
        Ok(())
    }

    /// Gives an ESCN to the learner's cards not yet printed that have none, now that
    /// their INE is known.
    pub async fn person_changed(
        &self,
        conn: &mut PgConnection,
        learner_id: Uuid,
        actor: &str,
    ) -> Result<(), OfficeError> {
        let Some((person, _)) = store::lock_learner(conn, learner_id).await? else {
            return Ok(());
        };
        for card in store::cards_of(conn, learner_id).await? {
            if card.escn.is_none()
                && matches!(card.state(), State::Requested | State::Approved)
                && let Some(escn) = self.escn_for(&person.ine, card.sequence)
            {
                let change = Move {
                    escn: Some(escn),
                    ..Default::default()
                };
                self.apply(conn, &card, change, actor, None).await?;
            }
        }
        Ok(())
    }

    /// A card office's transition of one card.
    pub async fn transition(
        &self,
        actor: &str,
        card_id: &str,
        to: Option<State>,
        reason: &str,
        csn: &str,
        expected_version: i64,
    ) -> Result<CardRow, OfficeError> {
        let to = to.ok_or_else(|| invalid("to", "required: the state to move the card to"))?;
        let reason = reason.trim();
        let mut tx = self.pool.begin().await?;
        let card = self.locked_card(&mut tx, card_id).await?;
        if expected_version != 0 && card.version != expected_version {
            return Err(OfficeError::Aborted(format!(
                "card {} is at version {}, not {expected_version}",
                card.card_id, card.version
            )));
        }
        lifecycle::allowed(card.state(), to, By::Office)
            .map_err(OfficeError::FailedPrecondition)?;
        let mut change = Move {
            to: Some(to),
            reason: Some(reason),
            ..Default::default()
        };
        let csn_text;
        match to {
            State::Encoded => {
                csn_text = numbers::csn(csn).map_err(|reason| invalid("csn", reason))?;
                change.csn = Some(&csn_text);
            }
            _ if !csn.is_empty() => {
                return Err(invalid("csn", "only when the card becomes encoded"));
            }
            State::Disabled if !DISABLE_REASONS.contains(&reason) => {
                return Err(invalid(
                    "reason",
                    format!("required: one of {}", DISABLE_REASONS.join(", ")),
                ));
            }
            State::Approved if card.state() == State::InPrint && reason.is_empty() => {
                return Err(invalid(
                    "reason",
                    "required: why the card goes back to the print queue",
                ));
            }
            State::Destroyed if reason.is_empty() => {
                return Err(invalid("reason", "required: why the card is destroyed"));
            }
            _ => {}
        }
        if to == State::Enabled {
            let Some((_, holding)) = store::lock_learner(&mut tx, card.learner_id).await? else {
                return Err(OfficeError::NotFound(
                    "the card's holder is unknown".to_owned(),
                ));
            };
            if !holding.card_in_force {
                return Err(OfficeError::FailedPrecondition(
                    "the holder does not hold the smart-card grant today".to_owned(),
                ));
            }
            if card.state() == State::Disabled {
                let others = store::cards_of(&mut tx, card.learner_id).await?;
                if let Some(other) = others
                    .iter()
                    .find(|other| other.card_id != card.card_id && other.state().is_live())
                {
                    return Err(OfficeError::FailedPrecondition(format!(
                        "the holder already has card {} ({}); destroy or disable it first",
                        other.card_number,
                        other.state()
                    )));
                }
            }
        }
        let moved = match self.apply(&mut tx, &card, change, actor, None).await {
            Err(OfficeError::Database(sqlx::Error::Database(error))) => {
                return Err(match error.constraint() {
                    Some("cards_csn_key") => invalid("csn", "another card already has this chip"),
                    Some("cards_one_live") => OfficeError::FailedPrecondition(
                        "the holder already has a card on its way or enabled".to_owned(),
                    ),
                    _ => OfficeError::Database(sqlx::Error::Database(error)),
                });
            }
            other => other?,
        };
        tx.commit().await?;
        self.outbox.notify();
        Ok(moved)
    }

    /// A card, locked after its holder: every operation takes the learner's lock
    /// first, as the consumer of grants does, so that they never wait on each other
    /// in opposite orders.
    async fn locked_card(
        &self,
        conn: &mut PgConnection,
        card_id: &str,
    ) -> Result<CardRow, OfficeError> {
        let key = card_id.trim();
        if key.is_empty() {
            return Err(invalid("card_id", "required: a card id or a card number"));
        }
        let not_found = || OfficeError::NotFound(format!("card {key:?} not found"));
        let card = store::card(conn, key, false).await?.ok_or_else(not_found)?;
        store::lock_learner(conn, card.learner_id).await?;
        store::card(conn, key, true).await?.ok_or_else(not_found)
    }

    /// A new card for one lost, stolen, out of order, worn or spoiled. The old card is disabled
    /// when it was enabled, destroyed when it was printed but never handed over.
    pub async fn replace(
        &self,
        actor: &str,
        card_id: &str,
        reason: &str,
    ) -> Result<(CardRow, CardRow), OfficeError> {
        let reason = reason.trim();
        if !REPLACE_REASONS.contains(&reason) {
            return Err(invalid(
                "reason",
                format!("required: one of {}", REPLACE_REASONS.join(", ")),
            ));
        }
        let mut tx = self.pool.begin().await?;
        let card = self.locked_card(&mut tx, card_id).await?;
        let Some((person, holding)) = store::lock_learner(&mut tx, card.learner_id).await? else {
            return Err(OfficeError::NotFound(
                "the card's holder is unknown".to_owned(),
            ));
        };
        let Some(until) = holding.card_until else {
            return Err(OfficeError::FailedPrecondition(
                "the holder no longer holds the smart-card grant: no new card".to_owned(),
            ));
        };
        let cards = store::cards_of(&mut tx, card.learner_id).await?;
        if cards.first().map(|newest| newest.card_id) != Some(card.card_id) {
            return Err(OfficeError::FailedPrecondition(
                "only the holder's newest card can be replaced".to_owned(),
            ));
        }
        let old_to = match card.state() {
            State::Enabled => Some(State::Disabled),
            State::Printed | State::Encoded => Some(State::Destroyed),
            State::Disabled | State::Destroyed => None,
            other => {
                return Err(OfficeError::FailedPrecondition(format!(
                    "an unfinished card is not replaced ({other}): it is still on its way"
                )));
            }
        };
        let replaced = match old_to {
            Some(to) => {
                let change = Move {
                    to: Some(to),
                    reason: Some(reason),
                    ..Default::default()
                };
                self.apply(&mut tx, &card, change, actor, None).await?
            }
            None => card.clone(),
        };
        let fresh = Fresh {
            state: State::Approved,
            last_day: until,
            replaces: Some(card.card_id),
        };
        let why = format!("replaces card {} ({reason})", card.card_number);
        let step = Step {
            reason: &why,
            actor,
            cause_event_id: None,
        };
        let new = self.new_card(&mut tx, &person, fresh, step).await?;
        tx.commit().await?;
        self.outbox.notify();
        Ok((replaced, new))
    }

    /// Takes up to `limit` approved cards into a new print batch: they move to
    /// in-print, and the batch's lines are kept so that it can be fetched again.
    pub async fn export_batch(
        &self,
        actor: &str,
        limit: i64,
    ) -> Result<(Option<Uuid>, Vec<CardRow>, Vec<PrintLine>), OfficeError> {
        let mut tx = self.pool.begin().await?;
        let queued = store::print_queue(&mut tx, limit, true).await?;
        let ids: Vec<Uuid> = queued.iter().map(|card| card.learner_id).collect();
        let people = store::people(&mut tx, &ids).await?;
        let batch_id = Uuid::now_v7();
        let mut cards = Vec::new();
        let mut lines = Vec::new();
        for card in &queued {
            let Some(person) = people
                .iter()
                .find(|person| person.learner_id == card.learner_id && person.version > 0)
            else {
                // Their identity has not arrived from intake yet: the card waits.
                continue;
            };
            let escn = card
                .escn
                .or_else(|| self.escn_for(&person.ine, card.sequence));
            let change = Move {
                to: Some(State::InPrint),
                reason: Some("print batch"),
                escn,
                print_batch_id: Some(batch_id),
                ..Default::default()
            };
            let moved = self.apply(&mut tx, card, change, actor, None).await?;
            lines.push(documents::print_line(
                &moved,
                person,
                &self.config.photo_reference,
            ));
            cards.push(moved);
        }
        if cards.is_empty() {
            return Ok((None, cards, lines));
        }
        let json = serde_json::to_value(&lines)
            .map_err(|error| OfficeError::FailedPrecondition(error.to_string()))?;
        store::save_print_batch(&mut tx, batch_id, actor, &json).await?;
        tx.commit().await?;
        self.outbox.notify();
        tracing::info!(%batch_id, cards = cards.len(), "print batch exported");
        Ok((Some(batch_id), cards, lines))
    }

    /// An earlier batch's lines, as exported.
    pub async fn batch(&self, batch_id: &str) -> Result<Vec<PrintLine>, OfficeError> {
        let id = Uuid::parse_str(batch_id.trim())
            .map_err(|_| invalid("batch_id", "required: a print batch id"))?;
        let mut conn = self.pool.acquire().await?;
        let lines = store::print_batch(&mut conn, id)
            .await?
            .ok_or_else(|| OfficeError::NotFound(format!("print batch {id} not found")))?;
        serde_json::from_value(lines)
            .map_err(|error| OfficeError::FailedPrecondition(format!("stored batch: {error}")))
    }

    /// The e-purse right-holders to send: every open right (`full`), or those opened,
    /// changed or closed since the last delta, which marks them as sent. Either is
    /// kept as sent, so that it can be fetched again.
    pub async fn export_epurse(
        &self,
        actor: &str,
        full: bool,
    ) -> Result<(Uuid, Vec<v1::EpurseRightHolder>), OfficeError> {
        let today = self.clock.today();
        let mut tx = self.pool.begin().await?;
        let lines = store::epurse_to_export(&mut tx, full).await?;
        let holders: Vec<v1::EpurseRightHolder> = lines
            .iter()
            .map(|line| documents::right_holder(line, &self.config.eppn_scope, today))
            .collect();
        let sent: Vec<documents::SentRightHolder> = holders.iter().map(Into::into).collect();
        let json = serde_json::to_value(&sent)
            .map_err(|error| OfficeError::FailedPrecondition(error.to_string()))?;
        let export_id = Uuid::now_v7();
        store::record_epurse_export(&mut tx, export_id, actor, full, &lines, &json).await?;
        tx.commit().await?;
        tracing::info!(%export_id, right_holders = lines.len(), full, "e-purse export");
        Ok((export_id, holders))
    }

    /// An earlier e-purse export, as it was sent.
    pub async fn epurse_export(
        &self,
        export_id: &str,
    ) -> Result<(store::EpurseExport, Vec<v1::EpurseRightHolder>), OfficeError> {
        let key = export_id.trim();
        if key.is_empty() {
            return Err(invalid("export_id", "required: an e-purse export id"));
        }
        let id = Uuid::parse_str(key)
            .map_err(|_| invalid("export_id", "not an e-purse export id (a UUID)"))?;
        let mut conn = self.pool.acquire().await?;
        let export = store::epurse_export(&mut conn, id)
            .await?
            .ok_or_else(|| OfficeError::NotFound(format!("e-purse export {id} not found")))?;
        let Some(lines) = export.lines.clone() else {
            return Err(OfficeError::FailedPrecondition(format!(
                "e-purse export {id} was taken before exports were kept: it cannot be fetched again"
            )));
        };
        let sent: Vec<documents::SentRightHolder> = serde_json::from_value(lines)
            .map_err(|error| OfficeError::FailedPrecondition(format!("stored export: {error}")))?;
        Ok((export, sent.into_iter().map(Into::into).collect()))
    }
}
