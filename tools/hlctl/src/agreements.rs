//! `hlctl agreement`: the conventions with partner institutions, owned by the legal
//! directorate (create, amend, end); anyone who registers or pays under one can read
//! them (show, list).
#![allow(clippy::print_stdout)]

use anyhow::Context;
use clap::Subcommand;
use hosted_contracts::v1;
use serde_json::json;

use crate::{
    rpc::{Intake, server_error, usage},
    values::{self, AgreementPayer, payer_name},
};

#[derive(Debug, Subcommand)]
pub enum AgreementAction {
    /// Records a new agreement (role legal).
    Create(CreateArgs),
    /// Shows an agreement and the number of stays under it now (roles deve, legal,
    /// finance, dosi).
    Show {
        #[arg(value_name = "ID")]
        agreement_id: String,
    },
    /// Lists agreements, every page (roles deve, legal, finance, dosi).
    List {
        /// Only agreements that cover this population.
        #[arg(long)]
        population: Option<String>,
        /// Only agreements in force on this day (YYYY-MM-DD).
        #[arg(long, value_name = "DAY", value_parser = values::day)]
        active_on: Option<String>,
    },
    /// Changes an agreement; what is not given keeps its current value (role legal).
    /// An amendment that would leave a stay under it uncovered is refused: `hlctl
    /// agreement end` shortens an agreement and its stays together.
    Amend(AmendArgs),
    /// Ends an agreement early; the stays under it end with it, or are cancelled when
    /// they would not have started (role legal).
    End {
        #[arg(value_name = "ID")]
        agreement_id: String,
        /// The agreement's new last day: today at the earliest (YYYY-MM-DD).
        #[arg(long, value_name = "DAY", value_parser = values::day)]
        on: String,
        /// Why (kept in the audit trail and on each stay).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The partner institution's name.
    #[arg(long)]
    partner_name: String,
    /// The partner's UAI: 7 digits and a key letter, e.g. 0134009M.
    #[arg(long, value_name = "UAI")]
    partner_uai: Option<String>,
    /// Population code (see `hlctl populations`); repeat it, or separate codes with
    /// commas, for several.
    #[arg(
        long = "population",
        value_name = "CODE",
        required = true,
        value_delimiter = ','
    )]
    populations: Vec<String>,
    /// First day (YYYY-MM-DD).
    #[arg(long, value_name = "DAY", value_parser = values::day)]
    start: String,
    /// Last day, included (YYYY-MM-DD).
    #[arg(long, value_name = "DAY", value_parser = values::day)]
    end: String,
    /// Most stays under it at once; 0, or absent, for no cap.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(i32).range(0..))]
    cap: i32,
    /// An option the agreement includes, e.g. library or smart-card; repeat it, or
    /// separate options with commas, for several.
    #[arg(long = "option", value_name = "OPTION", value_delimiter = ',')]
    options: Vec<String>,
    /// Who pays for the stays under it.
    #[arg(long, value_enum)]
    payer: AgreementPayer,
}

impl CreateArgs {
    fn agreement_input(self) -> v1::AgreementInput {
        v1::AgreementInput {
            partner_name: self.partner_name,
            partner_uai: self.partner_uai.unwrap_or_default(),
            populations: self.populations,
            start_date: self.start,
            end_date: self.end,
            head_count_cap: self.cap,
            options: self.options,
            payer: v1::Payer::from(self.payer).into(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct AmendArgs {
    #[arg(value_name = "ID")]
    agreement_id: String,
    /// The version the amendment is based on (`hlctl agreement show` gives it);
    /// intake refuses it (ABORTED) if the agreement has changed since. Default: the
    /// current version, read just before.
    #[arg(long, value_name = "VERSION")]
    expected_version: Option<i64>,
    /// Why (kept in the audit trail).
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    changes: AgreementChanges,
}

/// What an amendment changes; `None` (an empty list for the lists) keeps the current
/// value.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgreementChanges {
    /// The partner's name.
    #[arg(long)]
    pub partner_name: Option<String>,
    /// The partner's UAI; `--partner-uai ""` removes it.
    #[arg(long, value_name = "UAI")]
    pub partner_uai: Option<String>,
    /// The whole new list of populations: repeat it, or separate codes with commas.
    #[arg(long = "population", value_name = "CODE", value_delimiter = ',')]
    pub populations: Vec<String>,
    /// The new first day.
    #[arg(long, value_name = "DAY", value_parser = values::day)]
    pub start: Option<String>,
    /// The new last day; to end it before stays under it end, use `hlctl agreement
    /// end`.
    #[arg(long, value_name = "DAY", value_parser = values::day)]
    pub end: Option<String>,
    /// Most stays under it at once; 0 for no cap.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..))]
    pub cap: Option<i32>,
    /// The whole new list of options: repeat it, or separate options with commas.
    #[arg(long = "option", value_name = "OPTION", value_delimiter = ',')]
    pub options: Vec<String>,
    /// Removes every option.
    #[arg(long, conflicts_with = "options")]
    pub no_options: bool,
    /// Who pays for the stays under it.
    #[arg(long, value_enum)]
    pub payer: Option<AgreementPayer>,
}

impl AgreementChanges {
    pub fn is_empty(&self) -> bool {
        self.partner_name.is_none()
            && self.partner_uai.is_none()
            && self.populations.is_empty()
            && self.start.is_none()
            && self.end.is_none()
            && self.cap.is_none()
            && self.options.is_empty()
            && !self.no_options
            && self.payer.is_none()
    }

    /// The whole agreement AmendAgreement takes: `current`, with these changes.
    pub fn merge(&self, current: &v1::Agreement) -> v1::AgreementInput {
        let or_current = |change: &Option<String>, current: &str| {
            change.clone().unwrap_or_else(|| current.to_owned())
        };
        let list_or_current = |change: &[String], current: &[String]| {
            if change.is_empty() {
                current.to_vec()
            } else {
                change.to_vec()
            }
        };
        v1::AgreementInput {
            partner_name: or_current(&self.partner_name, &current.partner_name),
            partner_uai: or_current(&self.partner_uai, &current.partner_uai),
            populations: list_or_current(&self.populations, &current.populations),
            start_date: or_current(&self.start, &current.start_date),
            end_date: or_current(&self.end, &current.end_date),
            head_count_cap: self.cap.unwrap_or(current.head_count_cap),
            options: if self.no_options {
                Vec::new()
            } else {
                list_or_current(&self.options, &current.options)
            },
            payer: self
                .payer
                .map_or(current.payer, |payer| v1::Payer::from(payer).into()),
        }
    }
}

pub async fn run(action: AgreementAction, intake: &mut Intake, json: bool) -> anyhow::Result<()> {
    match action {
        AgreementAction::Create(args) => {
            let agreement = intake
                .client()
                .await?
                .create_agreement(v1::CreateAgreementRequest {
                    agreement: Some(args.agreement_input()),
                })
                .await
                .map_err(server_error)?
                .into_inner()
                .agreement
                .unwrap_or_default();
            if json {
                println!("{}", agreement_json(&agreement));
            } else {
                println!("created agreement {}", agreement.agreement_id);
                print_agreement(&agreement, None);
            }
        }
        AgreementAction::Show { agreement_id } => {
            let (agreement, head_count) = get(intake, agreement_id).await?;
            if json {
                let mut shown = agreement_json(&agreement);
                shown["current_head_count"] = json!(head_count);
                println!("{shown}");
            } else {
                println!("agreement {}", agreement.agreement_id);
                print_agreement(&agreement, Some(head_count));
            }
        }
        AgreementAction::List {
            population,
            active_on,
        } => {
            let mut request = v1::ListAgreementsRequest {
                population: population.unwrap_or_default(),
                active_on: active_on.unwrap_or_default(),
                page_size: 500,
                page_token: String::new(),
            };
            let mut listed = 0usize;
            loop {
                let page = intake
                    .client()
                    .await?
                    .list_agreements(request.clone())
                    .await
                    .map_err(server_error)?
                    .into_inner();
                for agreement in &page.agreements {
                    if json {
                        println!("{}", agreement_json(agreement));
                    } else {
                        println!("{}", list_line(agreement));
                    }
                }
                listed += page.agreements.len();
                if page.next_page_token.is_empty() {
                    break;
                }
                request.page_token = page.next_page_token;
            }
            if listed == 0 && !json {
                println!("no agreement");
            }
        }
        AgreementAction::Amend(args) => {
            if args.changes.is_empty() {
                return usage(
                    "nothing to amend: give at least one of --partner-name, --partner-uai, \
                     --population, --start, --end, --cap, --option, --no-options, --payer",
                );
            }
            let (current, _) = get(intake, args.agreement_id.clone())
                .await
                .context("reading the agreement")?;
            let agreement = intake
                .client()
                .await?
                .amend_agreement(v1::AmendAgreementRequest {
                    agreement_id: args.agreement_id,
                    expected_version: args.expected_version.unwrap_or(current.version),
                    agreement: Some(args.changes.merge(&current)),
                    reason: args.reason,
                })
                .await
                .map_err(server_error)?
                .into_inner()
                .agreement
                .unwrap_or_default();
            if json {
                println!("{}", agreement_json(&agreement));
            } else {
                println!("amended agreement {}", agreement.agreement_id);
                print_agreement(&agreement, None);
            }
        }
        AgreementAction::End {
            agreement_id,
            on,
            reason,
        } => {
            let ended = intake
                .client()
                .await?
                .end_agreement(v1::EndAgreementRequest {
                    agreement_id,
                    end_date: on,
                    reason,
                })
                .await
                .map_err(server_error)?
                .into_inner();
            let agreement = ended.agreement.unwrap_or_default();
            if json {
                println!(
                    "{}",
                    json!({
                        "agreement": agreement_json(&agreement),
                        "affected_stay_ids": ended.affected_stay_ids,
                    })
                );
            } else {
                println!(
                    "agreement {} now ends on {}",
                    agreement.agreement_id, agreement.end_date
                );
                match ended.affected_stay_ids.len() {
                    0 => println!("no stay under it went past that day"),
                    count => {
                        println!(
                            "{} ended with it (cancelled, when not started by then):",
                            values::count(count, "stay", "stays")
                        );
                        for stay_id in &ended.affected_stay_ids {
                            println!("  {stay_id}");
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

async fn get(intake: &mut Intake, agreement_id: String) -> anyhow::Result<(v1::Agreement, i32)> {
    let found = intake
        .client()
        .await?
        .get_agreement(v1::GetAgreementRequest { agreement_id })
        .await
        .map_err(server_error)?
        .into_inner();
    Ok((
        found.agreement.unwrap_or_default(),
        found.current_head_count,
    ))
}

pub fn agreement_json(agreement: &v1::Agreement) -> serde_json::Value {
    json!({
        "agreement_id": agreement.agreement_id,
        "partner_name": agreement.partner_name,
        "partner_uai": agreement.partner_uai,
        "populations": agreement.populations,
        "start_date": agreement.start_date,
        "end_date": agreement.end_date,
        "head_count_cap": agreement.head_count_cap,
        "options": agreement.options,
        "payer": payer_name(agreement.payer),
        "version": agreement.version,
    })
}

fn print_agreement(agreement: &v1::Agreement, head_count: Option<i32>) {
    let uai = if agreement.partner_uai.is_empty() {
        String::new()
    } else {
        format!(" (UAI {})", agreement.partner_uai)
    };
    println!("  partner      {}{uai}", agreement.partner_name);
    println!("  populations  {}", agreement.populations.join(", "));
    println!(
        "  in force     {}..{}",
        agreement.start_date, agreement.end_date
    );
    let cap = match agreement.head_count_cap {
        0 => "no cap".to_owned(),
        cap => format!("at most {cap} stays at once"),
    };
    match head_count {
        Some(count) => println!("  stays now    {count} ({cap})"),
        None => println!("  cap          {cap}"),
    }
    if !agreement.options.is_empty() {
        println!("  options      {}", agreement.options.join(", "));
    }
    println!("  payer        {}", payer_name(agreement.payer));
    println!("  version      {}", agreement.version);
}

fn list_line(agreement: &v1::Agreement) -> String {
    let cap = match agreement.head_count_cap {
        0 => String::new(),
        cap => format!(", cap {cap}"),
    };
    format!(
        "{}  {}..{}  {:<24} {} (payer {}{cap})",
        agreement.agreement_id,
        agreement.start_date,
        agreement.end_date,
        agreement.populations.join(","),
        agreement.partner_name,
        payer_name(agreement.payer),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> v1::Agreement {
        v1::Agreement {
            agreement_id: "0190d3a4-5b6c-7d8e-9f00-112233445566".to_owned(),
            partner_name: "IFSI Nord".to_owned(),
            partner_uai: "0134009M".to_owned(),
            populations: vec!["IFSI".to_owned()],
            start_date: "2026-09-01".to_owned(),
            end_date: "2027-08-31".to_owned(),
            head_count_cap: 30,
            options: vec!["library".to_owned()],
            payer: v1::Payer::Partner.into(),
            version: 3,
        }
    }

    #[test]
    fn an_amendment_keeps_what_it_does_not_change() {
        let changes = AgreementChanges {
            end: Some("2028-08-31".to_owned()),
            cap: Some(40),
            ..AgreementChanges::default()
        };
        assert_eq!(
            changes.merge(&current()),
            v1::AgreementInput {
                partner_name: "IFSI Nord".to_owned(),
                partner_uai: "0134009M".to_owned(),
                populations: vec!["IFSI".to_owned()],
                start_date: "2026-09-01".to_owned(),
                end_date: "2028-08-31".to_owned(),
                head_count_cap: 40,
                options: vec!["library".to_owned()],
                payer: v1::Payer::Partner.into(),
            }
        );
        assert!(!changes.is_empty());
        assert!(AgreementChanges::default().is_empty());
        assert_eq!(
            AgreementChanges::default().merge(&current()).head_count_cap,
            30
        );
    }

    #[test]
    fn an_amendment_replaces_lists_and_can_clear_them() {
        let changes = AgreementChanges {
            populations: vec!["IFSI".to_owned(), "VAE".to_owned()],
            options: vec!["smart-card".to_owned()],
            payer: Some(AgreementPayer::Nobody),
            partner_uai: Some(String::new()),
            cap: Some(0),
            ..AgreementChanges::default()
        };
        let merged = changes.merge(&current());
        assert_eq!(merged.populations, ["IFSI", "VAE"]);
        assert_eq!(merged.options, ["smart-card"]);
        assert_eq!(merged.payer, i32::from(v1::Payer::Nobody));
        assert_eq!(merged.partner_uai, "", "an empty UAI removes it");
        assert_eq!(merged.head_count_cap, 0, "0 removes the cap");
        let cleared = AgreementChanges {
            no_options: true,
            ..AgreementChanges::default()
        };
        assert!(!cleared.is_empty());
        assert!(cleared.merge(&current()).options.is_empty());
    }

    #[test]
    fn lines_and_json_name_the_payer() {
        let line = list_line(&current());
        assert!(line.contains("2026-09-01..2027-08-31"), "{line}");
        assert!(
            line.ends_with("IFSI Nord (payer partner, cap 30)"),
            "{line}"
        );
        let json = agreement_json(&current());
        assert_eq!(json["payer"], "partner");
        assert_eq!(json["populations"], json!(["IFSI"]));
    }
}
