//! `hlctl card` and `hlctl epurse`: the card office's work (the print queue, print
//! batches, each step of a card's life, replacements) and the e-purse export.
//!
//! A card is named by its id or its card number. Nothing here asks for a card: cards
//! are requested by the cards service when a learner gains the smart-card grant.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use hosted_contracts::v1::{self, CardState};
use serde_json::json;

use crate::{
    rpc::{Cards, server_error, usage},
    values,
};

#[derive(Debug, Subcommand)]
pub enum CardAction {
    /// One card, with its history (roles card-office, dosi).
    Show {
        /// The card id or the card number.
        card: String,
    },
    /// A learner's cards, newest first (roles card-office, dosi).
    List {
        /// The learner: login or id.
        #[arg(value_name = "LOGIN_OR_ID")]
        learner: String,
    },
    /// Cards approved and waiting to be printed, oldest first.
    Queue {
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 1000)]
        limit: i32,
    },
    /// Takes approved cards into a print batch (they become in-print) and writes
    /// what the printer needs: names, login, card number, ESCN, photo reference and
    /// expiry.
    PrintBatch {
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// At most this many cards (1 to 1000).
        #[arg(long, default_value_t = 1000)]
        limit: i32,
        /// Where to write the batch [default: print-batch-<id>.<csv|json>].
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Writes an earlier print batch again, as it was exported.
    Batch {
        batch_id: String,
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// Where to write the batch [default: print-batch-<id>.<csv|json>].
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Approves a requested card: it joins the print queue.
    Approve(Step),
    /// A card of a print batch is printed.
    Printed(Step),
    /// A card of a print batch came out wrong: back to the print queue.
    Misprint(StepWithReason),
    /// Records the chip's serial number (CSN) of a printed card.
    Encode {
        #[command(flatten)]
        step: Step,
        /// The chip's serial number, hexadecimal (`:` and `-` may separate bytes).
        #[arg(long)]
        csn: String,
    },
    /// The card is handed over and works; or, once disabled, works again.
    Enable(Step),
    /// The card stops working: lost, stolen or out-of-order.
    Disable {
        /// The card id or the card number.
        card: String,
        #[arg(long, value_parser = ["lost", "stolen", "out-of-order"])]
        reason: String,
        #[arg(long, value_name = "VERSION")]
        expect: Option<i64>,
    },
    /// The card is destroyed (spoiled before it was handed over, disabled, expired).
    Destroy(StepWithReason),
    /// A new card for one lost, stolen, out of order, worn or spoiled: the old one is
    /// disabled (destroyed if it was never handed over), the new one approved.
    Replace {
        card: String,
        #[arg(long, value_parser = ["lost", "stolen", "out-of-order", "worn", "spoiled"])]
        reason: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct Step {
    /// The card id or the card number.
    card: String,
    /// Why (kept in the card's history).
    #[arg(long, default_value = "")]
    reason: String,
    /// The card's version that must be current (`hlctl card show` gives it): if the
    /// card moved since, nothing changes and cards answers ABORTED.
    #[arg(long, value_name = "VERSION")]
    expect: Option<i64>,
}

#[derive(Debug, clap::Args)]
pub struct StepWithReason {
    /// The card id or the card number.
    card: String,
    /// Why (kept in the card's history).
    #[arg(long)]
    reason: String,
    #[arg(long, value_name = "VERSION")]
    expect: Option<i64>,
}

impl From<StepWithReason> for Step {
    fn from(step: StepWithReason) -> Self {
        Step {
            card: step.card,
            reason: step.reason,
            expect: step.expect,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum EpurseAction {
    /// Writes the e-purse right-holders for the CROUS (semicolon-separated CSV):
    /// the rights opened, changed or closed since the last delta export, or with
    /// `--full` every open one, which leaves the next delta whole (role card-office).
    Export {
        #[arg(long)]
        full: bool,
        /// Where to write the file [default: epurse-<id>.csv].
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Writes an earlier export (full or delta) again, as it was sent (role
    /// card-office).
    Get {
        export_id: String,
        /// Where to write the file [default: epurse-<id>.csv].
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    fn wire(self) -> v1::DocumentFormat {
        match self {
            Format::Csv => v1::DocumentFormat::Csv,
            Format::Json => v1::DocumentFormat::Json,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

/// A state as people read it: `in-print`, `out-of-order`…
pub fn state_name(state: CardState) -> &'static str {
    match state {
        CardState::Unspecified => "unknown",
        CardState::Requested => "requested",
        CardState::Approved => "approved",
        CardState::InPrint => "in-print",
        CardState::Printed => "printed",
        CardState::Encoded => "encoded",
        CardState::Enabled => "enabled",
        CardState::Disabled => "disabled",
        CardState::Destroyed => "destroyed",
        CardState::Expired => "expired",
    }
}

pub fn card_json(card: &v1::Card) -> serde_json::Value {
    json!({
        "card_id": card.card_id,
        "card_number": card.card_number,
        "learner_id": card.learner_id,
        "login": card.login,
        "state": state_name(card.state()),
        "state_reason": card.state_reason,
        "last_day": card.last_day,
        "escn": card.escn,
        "esi": card.esi,
        "csn": card.csn,
        "replaces_card_id": card.replaces_card_id,
        "print_batch_id": card.print_batch_id,
        "version": card.version,
    })
}

fn card_line(card: &v1::Card) -> String {
    let state = if card.state_reason.is_empty()
        || matches!(
            card.state(),
            CardState::Approved | CardState::InPrint | CardState::Requested
        ) {
        state_name(card.state()).to_owned()
    } else {
        format!("{} ({})", state_name(card.state()), card.state_reason)
    };
    format!(
        "{}  {state:<24}  until {}  {}  v{}",
        card.card_number, card.last_day, card.login, card.version
    )
}

fn print_cards(cards: &[v1::Card], json: bool, empty: &str) {
    if json {
        for card in cards {
            println!("{}", card_json(card));
        }
    } else if cards.is_empty() {
        println!("{empty}");
    } else {
        for card in cards {
            println!("{}", card_line(card));
        }
    }
}

fn write_document(
    output: Option<PathBuf>,
    default: String,
    document: &[u8],
) -> anyhow::Result<PathBuf> {
    let path = output.unwrap_or_else(|| PathBuf::from(default));
    std::fs::write(&path, document).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn not_blank(what: &str, value: &str) -> anyhow::Result<()> {
    if value.trim().is_empty() {
        return usage(format!("give {what}"));
    }
    Ok(())
}

async fn transition(
    cards: &mut Cards,
    step: Step,
    to: CardState,
    csn: String,
    json: bool,
) -> anyhow::Result<()> {
    not_blank("a card: its id or its card number", &step.card)?;
    let card = cards
        .client()
        .await?
        .transition_card(v1::TransitionCardRequest {
            card_id: step.card.trim().to_owned(),
            to: to.into(),
            reason: step.reason,
            csn,
            expected_version: step.expect.unwrap_or_default(),
        })
        .await
        .map_err(server_error)?
        .into_inner()
        .card
        .unwrap_or_default();
    if json {
        println!("{}", card_json(&card));
    } else {
        println!("{}", card_line(&card));
    }
    Ok(())
}

fn history_line(step: &v1::CardTransition) -> String {
    let at = step
        .at
        .as_ref()
        .map(|at| values::instant(at.seconds, at.nanos))
        .unwrap_or_default();
    let from = if step.from() == CardState::Unspecified {
        String::new()
    } else {
        format!("{} → ", state_name(step.from()))
    };
    let reason = if step.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", step.reason)
    };
    format!(
        "  {at}  {from}{}  by {}{reason}",
        state_name(step.to()),
        step.actor
    )
}

pub async fn card(action: CardAction, cards: &mut Cards, json: bool) -> anyhow::Result<()> {
    match action {
        CardAction::Show { card } => {
            not_blank("a card: its id or its card number", &card)?;
            let shown = cards
                .client()
                .await?
                .get_card(v1::GetCardRequest { card })
                .await
                .map_err(server_error)?
                .into_inner();
            let card = shown.card.unwrap_or_default();
            if json {
                let mut value = card_json(&card);
                value["history"] = shown
                    .history
                    .iter()
                    .map(|step| {
                        json!({
                            "from": state_name(step.from()),
                            "to": state_name(step.to()),
                            "reason": step.reason,
                            "actor": step.actor,
                            "at": step.at.as_ref().map(|at| values::instant(at.seconds, at.nanos)),
                            "cause_event_id": step.cause_event_id,
                        })
                    })
                    .collect();
                println!("{value}");
                return Ok(());
            }
            println!("{}", card_line(&card));
            for (label, value) in [
                ("card id", &card.card_id),
                ("learner id", &card.learner_id),
                ("ESCN", &card.escn),
                ("ESI", &card.esi),
                ("CSN", &card.csn),
                ("replaces", &card.replaces_card_id),
                ("print batch", &card.print_batch_id),
            ] {
                if !value.is_empty() {
                    println!("{label:<12} {value}");
                }
            }
            println!("history:");
            for step in &shown.history {
                println!("{}", history_line(step));
            }
        }
        CardAction::List { learner } => {
            not_blank("a learner: a login or an id", &learner)?;
            let listed = cards
                .client()
                .await?
                .list_cards(v1::ListCardsRequest {
                    learner: learner.trim().to_owned(),
                })
                .await
                .map_err(server_error)?
                .into_inner();
            print_cards(&listed.cards, json, "no card");
        }
        CardAction::Queue { limit } => {
            let listed = cards
                .client()
                .await?
                .list_print_queue(v1::ListPrintQueueRequest { limit })
                .await
                .map_err(server_error)?
                .into_inner();
            print_cards(&listed.cards, json, "nothing to print");
        }
        CardAction::PrintBatch {
            format,
            limit,
            output,
        } => {
            let batch = cards
                .client()
                .await?
                .export_print_batch(v1::ExportPrintBatchRequest {
                    format: format.wire().into(),
                    limit,
                })
                .await
                .map_err(server_error)?
                .into_inner();
            if batch.batch_id.is_empty() {
                if json {
                    println!("{}", json!({ "batch_id": null, "cards": 0 }));
                } else {
                    println!("nothing to print");
                }
                return Ok(());
            }
            let default = format!("print-batch-{}.{}", batch.batch_id, format.extension());
            let path = write_document(output, default, &batch.document)?;
            report_batch(&batch.batch_id, batch.cards.len(), &path, json);
        }
        CardAction::Batch {
            batch_id,
            format,
            output,
        } => {
            not_blank("a print batch id", &batch_id)?;
            let batch = cards
                .client()
                .await?
                .get_print_batch(v1::GetPrintBatchRequest {
                    batch_id,
                    format: format.wire().into(),
                })
                .await
                .map_err(server_error)?
                .into_inner();
            let default = format!("print-batch-{}.{}", batch.batch_id, format.extension());
            let path = write_document(output, default, &batch.document)?;
            report_batch(&batch.batch_id, batch.cards.len(), &path, json);
        }
        CardAction::Approve(step) => {
            transition(cards, step, CardState::Approved, String::new(), json).await?;
        }
        CardAction::Printed(step) => {
            transition(cards, step, CardState::Printed, String::new(), json).await?;
        }
        CardAction::Misprint(step) => {
            transition(cards, step.into(), CardState::Approved, String::new(), json).await?;
        }
        CardAction::Encode { step, csn } => {
            transition(cards, step, CardState::Encoded, csn, json).await?;
        }
        CardAction::Enable(step) => {
            transition(cards, step, CardState::Enabled, String::new(), json).await?;
        }
        CardAction::Disable {
            card,
            reason,
            expect,
        } => {
            let step = Step {
                card,
                reason,
                expect,
            };
            transition(cards, step, CardState::Disabled, String::new(), json).await?;
        }
        CardAction::Destroy(step) => {
            transition(
                cards,
                step.into(),
                CardState::Destroyed,
                String::new(),
                json,
            )
            .await?;
        }
        CardAction::Replace { card, reason } => {
            not_blank("a card: its id or its card number", &card)?;
            let replaced = cards
                .client()
                .await?
                .replace_card(v1::ReplaceCardRequest {
                    card_id: card.trim().to_owned(),
                    reason,
                })
                .await
                .map_err(server_error)?
                .into_inner();
            let old = replaced.replaced.unwrap_or_default();
            let new = replaced.card.unwrap_or_default();
            if json {
                println!(
                    "{}",
                    json!({ "replaced": card_json(&old), "card": card_json(&new) })
                );
            } else {
                println!("replaced: {}", card_line(&old));
                println!("new card: {}", card_line(&new));
            }
        }
    }
    Ok(())
}

fn report_batch(batch_id: &str, cards: usize, path: &Path, json: bool) {
    if json {
        println!(
            "{}",
            json!({
                "batch_id": batch_id,
                "cards": cards,
                "file": path.display().to_string(),
            })
        );
    } else {
        println!(
            "print batch {batch_id}: {cards} card(s), written to {}",
            path.display()
        );
    }
}

pub async fn epurse(action: EpurseAction, cards: &mut Cards, json: bool) -> anyhow::Result<()> {
    match action {
        EpurseAction::Export { full, output } => {
            let export = cards
                .client()
                .await?
                .export_epurse(v1::ExportEpurseRequest { full })
                .await
                .map_err(server_error)?
                .into_inner();
            let sent = SentExport {
                export_id: &export.export_id,
                full,
                right_holders: &export.right_holders,
                document: &export.document,
            };
            report_epurse(&sent, output, json)
        }
        EpurseAction::Get { export_id, output } => {
            not_blank("an e-purse export id", &export_id)?;
            let export = cards
                .client()
                .await?
                .get_epurse_export(v1::GetEpurseExportRequest { export_id })
                .await
                .map_err(server_error)?
                .into_inner();
            let sent = SentExport {
                export_id: &export.export_id,
                full: export.full,
                right_holders: &export.right_holders,
                document: &export.document,
            };
            report_epurse(&sent, output, json)
        }
    }
}

/// An e-purse export as the service answered it, new or fetched again.
struct SentExport<'a> {
    export_id: &'a str,
    full: bool,
    right_holders: &'a [v1::EpurseRightHolder],
    document: &'a [u8],
}

fn report_epurse(
    export: &SentExport<'_>,
    output: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let closed = export
        .right_holders
        .iter()
        .filter(|holder| holder.closed)
        .count();
    let default = format!("epurse-{}.csv", export.export_id);
    let path = write_document(output, default, export.document)?;
    let kind = if export.full { "full" } else { "delta" };
    if json {
        println!(
            "{}",
            json!({
                "export_id": export.export_id,
                "kind": kind,
                "right_holders": export.right_holders.len(),
                "closed": closed,
                "file": path.display().to_string(),
            })
        );
    } else {
        println!(
            "e-purse export {} ({kind}): {} right-holder(s), {closed} of them closed, written to {}",
            export.export_id,
            export.right_holders.len(),
            path.display()
        );
    }
    Ok(())
}
