//! `hlctl stay`: a stay's life after registration (its sponsor and what the sponsor
//! asks for, extend, end early, cancel). Each prints the learner as intake holds
//! them after the change.
#![allow(clippy::print_stdout)]

use clap::{Subcommand, ValueEnum};
use hosted_contracts::v1;

use crate::{
    learners::print_learner,
    rpc::{Intake, server_error},
    values,
};

#[derive(Debug, Subcommand)]
pub enum StayAction {
    /// Changes a stay's sponsor (unit, person) and the resources the sponsor asks
    /// for (role deve).
    Sponsor(SponsorArgs),
    /// Moves a stay's end later, within its population's maximum duration and its
    /// agreement (role deve).
    Extend {
        /// The stay's id (`hlctl learner KEY` lists them).
        stay_id: String,
        /// The new last day (YYYY-MM-DD).
        #[arg(long, value_name = "DAY", value_parser = values::day)]
        to: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Ends a stay early: its last day becomes --on. With --early-end the learner
    /// left before the end (a past day is allowed, and the policy's grace after the
    /// stay does not apply); without it, a shortening, today at the earliest (role
    /// deve).
    End {
        /// The stay's id (`hlctl learner KEY` lists them).
        stay_id: String,
        /// The new last day (YYYY-MM-DD).
        #[arg(long, value_name = "DAY", value_parser = values::day)]
        on: String,
        /// Why the stay ends early, as a code.
        #[arg(long, value_enum, value_name = "CODE")]
        early_end: Option<EarlyEnd>,
        /// Why (kept in the audit trail and as the stay's end reason).
        #[arg(long)]
        reason: String,
    },
    /// Cancels a stay that has not started (role deve).
    Cancel {
        /// The stay's id (`hlctl learner KEY` lists them).
        stay_id: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
}

/// Why a stay ended early (intake's `EarlyEnd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EarlyEnd {
    /// The learner left of their own will (resigned, gave up, stopped coming).
    Left,
    /// Excluded by a decision of the university.
    Expelled,
    /// The learner died.
    Deceased,
    /// The learner went on to another institution.
    Transferred,
}

impl From<EarlyEnd> for v1::EarlyEnd {
    fn from(early_end: EarlyEnd) -> Self {
        match early_end {
            EarlyEnd::Left => v1::EarlyEnd::Left,
            EarlyEnd::Expelled => v1::EarlyEnd::Expelled,
            EarlyEnd::Deceased => v1::EarlyEnd::Deceased,
            EarlyEnd::Transferred => v1::EarlyEnd::Transferred,
        }
    }
}

/// `hlctl stay sponsor`: every part of a stay that `AmendStay` changes, so that
/// moving a learner to another lab and changing what the lab asks for is one
/// audited change, not two.
#[derive(Debug, Clone, clap::Args)]
#[command(group(
    clap::ArgGroup::new("change")
        .args(["unit", "sponsor_login", "no_sponsor_login", "request", "no_requests"])
        .required(true)
        .multiple(true)
))]
pub struct SponsorArgs {
    /// The stay's id (`hlctl learner KEY` lists them).
    pub stay_id: String,
    /// The new sponsoring unit.
    #[arg(long)]
    pub unit: Option<String>,
    /// The new sponsor person's login.
    #[arg(long, conflicts_with = "no_sponsor_login")]
    pub sponsor_login: Option<String>,
    /// Removes the sponsor person.
    #[arg(long)]
    pub no_sponsor_login: bool,
    /// The resources the sponsor asks for (e.g. premises), instead of those asked
    /// for until now: repeat it, or separate names with commas.
    #[arg(
        long,
        value_name = "RESOURCE",
        value_delimiter = ',',
        value_parser = values::resource,
        conflicts_with = "no_requests"
    )]
    pub request: Vec<String>,
    /// Withdraws every resource the sponsor asked for.
    #[arg(long)]
    pub no_requests: bool,
    /// Why (kept in the audit trail).
    #[arg(long)]
    pub reason: String,
}

impl SponsorArgs {
    /// The amendment: what is not given keeps its value. The requests are replaced
    /// only when `--request` or `--no-requests` is given.
    pub fn amendment(&self) -> v1::AmendStayRequest {
        v1::AmendStayRequest {
            stay_id: self.stay_id.clone(),
            sponsor_unit: self.unit.clone().unwrap_or_default(),
            sponsor_login: self.sponsor_login.clone().unwrap_or_default(),
            clear_sponsor_login: self.no_sponsor_login,
            reason: self.reason.clone(),
            set_requested_resources: self.no_requests || !self.request.is_empty(),
            requested_resources: self.request.clone(),
        }
    }

    /// What changes, as the line printed before the learner says it.
    pub fn changes(&self) -> String {
        let mut changes = Vec::new();
        if self.unit.is_some() || self.sponsor_login.is_some() || self.no_sponsor_login {
            changes.push("sponsor changed".to_owned());
        }
        if self.no_requests {
            changes.push("requests withdrawn".to_owned());
        } else if !self.request.is_empty() {
            changes.push(format!("requests now {}", self.request.join(", ")));
        }
        changes.join("; ")
    }
}

pub async fn run(action: StayAction, intake: &mut Intake, json: bool) -> anyhow::Result<()> {
    let (done, learner) = match action {
        StayAction::Sponsor(args) => {
            let done = format!("stay {}: {}", args.stay_id, args.changes());
            let learner = intake
                .client()
                .await?
                .amend_stay(args.amendment())
                .await
                .map_err(server_error)?
                .into_inner()
                .learner;
            (done, learner)
        }
        StayAction::Extend {
            stay_id,
            to,
            reason,
        } => {
            let done = format!("stay {stay_id} now ends on {to}");
            let learner = intake
                .client()
                .await?
                .extend_stay(v1::ExtendStayRequest {
                    stay_id,
                    new_end_date: to,
                    reason,
                })
                .await
                .map_err(server_error)?
                .into_inner()
                .learner;
            (done, learner)
        }
        StayAction::End {
            stay_id,
            on,
            early_end,
            reason,
        } => {
            let done = match early_end {
                Some(code) => format!(
                    "stay {stay_id} ended early ({}) on {on}",
                    code.to_possible_value()
                        .map(|value| value.get_name().to_owned())
                        .unwrap_or_default()
                ),
                None => format!("stay {stay_id} now ends on {on}"),
            };
            let learner = intake
                .client()
                .await?
                .end_stay(v1::EndStayRequest {
                    stay_id,
                    end_date: on,
                    reason,
                    early_end: early_end
                        .map_or(v1::EarlyEnd::Unspecified, v1::EarlyEnd::from)
                        .into(),
                })
                .await
                .map_err(server_error)?
                .into_inner()
                .learner;
            (done, learner)
        }
        StayAction::Cancel { stay_id, reason } => {
            let done = format!("stay {stay_id} cancelled");
            let learner = intake
                .client()
                .await?
                .cancel_stay(v1::CancelStayRequest { stay_id, reason })
                .await
                .map_err(server_error)?
                .into_inner()
                .learner;
            (done, learner)
        }
    };
    if !json {
        println!("{done}");
    }
    print_learner(&learner.unwrap_or_default(), json);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `hlctl stay …` as clap reads it.
    #[derive(Debug, Parser)]
    struct Stay {
        #[command(subcommand)]
        action: StayAction,
    }

    fn parse(args: &[&str]) -> Result<SponsorArgs, clap::Error> {
        let line = [&["stay", "sponsor", "s-1", "--reason", "why"], args].concat();
        match Stay::try_parse_from(line)?.action {
            StayAction::Sponsor(sponsor) => Ok(sponsor),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_replace_the_stays_and_may_be_given_either_way() {
        for args in [
            &["--request", "premises", "--request", "library"][..],
            &["--request", "premises,library"],
            &["--request", "premises, library"],
            &["--request", " premises", "--request=library "],
        ] {
            let sponsor = parse(args).unwrap_or_else(|error| panic!("{args:?}: {error}"));
            assert_eq!(
                sponsor.amendment(),
                v1::AmendStayRequest {
                    stay_id: "s-1".to_owned(),
                    reason: "why".to_owned(),
                    set_requested_resources: true,
                    requested_resources: vec!["premises".to_owned(), "library".to_owned()],
                    ..v1::AmendStayRequest::default()
                },
                "{args:?}"
            );
            assert_eq!(sponsor.changes(), "requests now premises, library");
        }
    }

    #[test]
    fn no_requests_withdraws_them_all() {
        let sponsor = parse(&["--no-requests"]).expect("parsed");
        let request = sponsor.amendment();
        assert!(request.set_requested_resources);
        assert!(request.requested_resources.is_empty());
        assert_eq!(sponsor.changes(), "requests withdrawn");
    }

    #[test]
    fn a_sponsor_change_keeps_the_requests() {
        let sponsor = parse(&["--unit", "LAB-42", "--no-sponsor-login"]).expect("parsed");
        assert_eq!(
            sponsor.amendment(),
            v1::AmendStayRequest {
                stay_id: "s-1".to_owned(),
                sponsor_unit: "LAB-42".to_owned(),
                clear_sponsor_login: true,
                reason: "why".to_owned(),
                set_requested_resources: false,
                ..v1::AmendStayRequest::default()
            }
        );
        assert_eq!(sponsor.changes(), "sponsor changed");
        let both = parse(&["--unit", "LAB-7", "--request", "premises"]).expect("parsed");
        assert!(both.amendment().set_requested_resources);
        assert_eq!(both.changes(), "sponsor changed; requests now premises");
    }

    #[test]
    fn wrong_sponsor_lines_are_usage_errors() {
        for args in [
            // Nothing to change.
            &[][..],
            &["--request", "premises", "--no-requests"],
            &["--request", ""],
            &["--request", "premises,"],
            &["--sponsor-login", "a.b", "--no-sponsor-login"],
        ] {
            // main.rs exits with EX_USAGE (64) for every clap error on standard error.
            let error = parse(args).expect_err("refused");
            assert!(error.use_stderr(), "{args:?}: {error}");
        }
    }
}
