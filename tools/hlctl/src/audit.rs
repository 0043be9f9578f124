//! `hlctl audit`: the story of one learner, one agreement or one card, told by every
//! service concerned (each answers for what it did) and merged in time order. An
//! entry a service made by following another service's event is said to be on
//! behalf of whoever made that event, when the story holds it.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;

use anyhow::Context;
use clap::Subcommand;
use hosted_contracts::v1::{
    self, cards_service_client::CardsServiceClient,
    directory_service_client::DirectoryServiceClient,
    entitlement_service_client::EntitlementServiceClient,
    intake_service_client::IntakeServiceClient,
};
use serde_json::json;
use tonic::transport::Channel;

use crate::{
    learners::learner_key,
    rpc::{authorized, server_error, usage},
    values,
};

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Everything that happened to a learner (login, hosted-learner number or id) in
    /// intake, entitlement, cards and directory, oldest first (role dosi).
    Learner { key: String },
    /// Everything that happened to an agreement (its id) and its stays in intake
    /// (roles dosi, legal).
    Agreement { agreement_id: String },
    /// Every step of a card (its id or number) (role dosi).
    Card { card: String },
}

/// The services a story is asked of, with the caller's token.
#[derive(Debug, Clone)]
pub struct Sources<'a> {
    pub intake: Channel,
    pub entitlement: Channel,
    pub cards: Channel,
    pub directory: Channel,
    pub token: Option<&'a str>,
}

/// One line of a story: what a service recorded, and who it was done for when the
/// service followed an event of the story.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub entry: v1::AuditEntry,
    /// Who is behind the entry that published `entry.cause_event_id` (followed back
    /// along the chain of events), when the story holds it and it is someone else.
    pub on_behalf_of: Option<String>,
}

impl Line {
    /// Who did it, as people read it: the caller behind a service's reaction.
    pub fn who(&self) -> String {
        match &self.on_behalf_of {
            Some(caller) => format!("{caller} (via {})", self.entry.service),
            None => self.entry.actor.clone(),
        }
    }
}

/// A learner's story across the four services.
pub async fn learner_story(sources: &Sources<'_>, key: &str) -> anyhow::Result<Vec<Line>> {
    if key.trim().is_empty() {
        return usage("give a learner (login, number or id)");
    }
    let token = sources.token;
    let mut intake = IntakeServiceClient::new(sources.intake.clone());
    let learner = intake
        .get_learner(authorized(
            token,
            v1::GetLearnerRequest {
                key: Some(learner_key(key)),
            },
        )?)
        .await
        .map_err(server_error)?
        .into_inner()
        .learner
        .unwrap_or_default();
    let learner_id = learner
        .person
        .map(|person| person.learner_id)
        .context("intake answered no person")?;
    let mut entries = intake
        .list_audit_entries(authorized(
            token,
            v1::ListAuditEntriesRequest {
                learner_id: learner_id.clone(),
            },
        )?)
        .await
        .map_err(server_error)?
        .into_inner()
        .entries;
    entries.extend(
        EntitlementServiceClient::new(sources.entitlement.clone())
            .list_audit_entries(authorized(
                token,
                v1::EntitlementServiceListAuditEntriesRequest {
                    learner_id: learner_id.clone(),
                },
            )?)
            .await
            .map_err(server_error)?
            .into_inner()
            .entries,
    );
    entries.extend(
        CardsServiceClient::new(sources.cards.clone())
            .list_audit_entries(authorized(
                token,
                v1::CardsServiceListAuditEntriesRequest {
                    learner_id: learner_id.clone(),
                    card_id: String::new(),
                },
            )?)
            .await
            .map_err(server_error)?
            .into_inner()
            .entries,
    );
    entries.extend(
        DirectoryServiceClient::new(sources.directory.clone())
            .list_audit_entries(authorized(
                token,
                v1::DirectoryServiceListAuditEntriesRequest { learner_id },
            )?)
            .await
            .map_err(server_error)?
            .into_inner()
            .entries,
    );
    Ok(story(entries))
}

/// An agreement's story, from intake.
pub async fn agreement_story(
    sources: &Sources<'_>,
    agreement_id: &str,
) -> anyhow::Result<Vec<Line>> {
    if agreement_id.trim().is_empty() {
        return usage("give an agreement id");
    }
    let entries = IntakeServiceClient::new(sources.intake.clone())
        .list_agreement_audit_entries(authorized(
            sources.token,
            v1::ListAgreementAuditEntriesRequest {
                agreement_id: agreement_id.trim().to_owned(),
            },
        )?)
        .await
        .map_err(server_error)?
        .into_inner()
        .entries;
    Ok(story(entries))
}

/// A card's story, from cards (the card found by its id or number first).
pub async fn card_story(sources: &Sources<'_>, card: &str) -> anyhow::Result<Vec<Line>> {
    if card.trim().is_empty() {
        return usage("give a card id or a card number");
    }
    let mut cards = CardsServiceClient::new(sources.cards.clone());
    let card_id = cards
        .get_card(authorized(
            sources.token,
            v1::GetCardRequest {
                card: card.trim().to_owned(),
            },
        )?)
        .await
        .map_err(server_error)?
        .into_inner()
        .card
        .map(|card| card.card_id)
        .context("cards answered no card")?;
    let entries = cards
        .list_audit_entries(authorized(
            sources.token,
            v1::CardsServiceListAuditEntriesRequest {
                learner_id: String::new(),
                card_id,
            },
        )?)
        .await
        .map_err(server_error)?
        .into_inner()
        .entries;
    Ok(story(entries))
}

fn service_rank(service: &str) -> usize {
    ["intake", "entitlement", "cards", "directory"]
        .iter()
        .position(|known| *known == service)
        .unwrap_or(usize::MAX)
}

fn instant_of(entry: &v1::AuditEntry) -> (i64, i32) {
    entry
        .occurred_at
        .as_ref()
        .map(|at| (at.seconds, at.nanos))
        .unwrap_or_default()
}

/// The entries in time order (a tie: in the order the services follow each other),
/// each reaction tied to whoever is behind the event it followed, along the chain
/// (a card step follows a grants event, which followed a caller's intake change).
pub fn story(mut entries: Vec<v1::AuditEntry>) -> Vec<Line> {
    entries.sort_by_key(|entry| (instant_of(entry), service_rank(&entry.service)));
    // An event is published before what follows it is recorded: in time order, the
    // one behind each event is known by the time a reaction names it.
    let mut behind: HashMap<String, String> = HashMap::new();
    let mut lines = Vec::with_capacity(entries.len());
    for entry in entries {
        let on_behalf_of = behind
            .get(&entry.cause_event_id)
            .filter(|caller| **caller != entry.actor)
            .cloned();
        if !entry.event_id.is_empty() {
            let caller = on_behalf_of.clone().unwrap_or_else(|| entry.actor.clone());
            behind.entry(entry.event_id.clone()).or_insert(caller);
        }
        lines.push(Line {
            entry,
            on_behalf_of,
        });
    }
    lines
}

pub async fn run(action: AuditAction, sources: &Sources<'_>, json: bool) -> anyhow::Result<()> {
    let lines = match action {
        AuditAction::Learner { key } => learner_story(sources, &key).await?,
        AuditAction::Agreement { agreement_id } => agreement_story(sources, &agreement_id).await?,
        AuditAction::Card { card } => card_story(sources, &card).await?,
    };
    if json {
        let entries: Vec<_> = lines.iter().map(line_json).collect();
        println!("{}", serde_json::Value::Array(entries));
    } else {
        print_table(&lines);
    }
    Ok(())
}

fn time_of(entry: &v1::AuditEntry) -> String {
    let (seconds, nanos) = instant_of(entry);
    values::instant(seconds, nanos)
}

fn line_json(line: &Line) -> serde_json::Value {
    let entry = &line.entry;
    json!({
        "occurred_at": time_of(entry),
        "service": entry.service,
        "actor": entry.actor,
        "on_behalf_of": line.on_behalf_of,
        "action": entry.action,
        "detail": entry.detail,
        "reason": entry.reason,
        "cause_event_id": entry.cause_event_id,
        "event_id": entry.event_id,
        "learner_id": entry.learner_id,
        "agreement_id": entry.agreement_id,
        "card_id": entry.card_id,
    })
}

fn print_table(lines: &[Line]) {
    if lines.is_empty() {
        println!("nothing recorded");
        return;
    }
    let rows: Vec<[String; 5]> = lines
        .iter()
        .map(|line| {
            let entry = &line.entry;
            let what = if entry.detail.is_empty() {
                entry.action.clone()
            } else {
                format!("{}: {}", entry.action, entry.detail)
            };
            [
                time_of(entry),
                entry.service.clone(),
                line.who(),
                what,
                entry.reason.clone(),
            ]
        })
        .collect();
    let header = ["time", "service", "who", "what", "why"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let print = |cells: [&str; 5]| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    print(header);
    for row in &rows {
        print([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seconds: i64, service: &str, actor: &str, event: &str, cause: &str) -> v1::AuditEntry {
        v1::AuditEntry {
            occurred_at: Some(hosted_contracts::prost_types::Timestamp { seconds, nanos: 0 }),
            service: service.to_owned(),
            actor: actor.to_owned(),
            event_id: event.to_owned(),
            cause_event_id: cause.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn a_story_is_in_time_order_and_reactions_name_the_caller_behind_them() {
        let lines = story(vec![
            entry(30, "cards", "system", "", "e9"),
            entry(20, "cards", "system", "", "g1"),
            entry(10, "entitlement", "entitlement", "g1", "e1"),
            entry(10, "intake", "registrar", "e1", ""),
        ]);
        let services: Vec<&str> = lines
            .iter()
            .map(|line| line.entry.service.as_str())
            .collect();
        assert_eq!(services, ["intake", "entitlement", "cards", "cards"]);
        assert_eq!(lines[1].who(), "registrar (via entitlement)");
        assert_eq!(lines[2].who(), "registrar (via cards)", "along the chain");
        assert_eq!(lines[3].who(), "system", "an event outside the story");
    }
}
