//! `hlctl stay`: a stay's life after registration (sponsor, extend, end early,
//! cancel). Each
//! prints the learner as intake holds them after the change.
#![allow(clippy::print_stdout)]

use clap::Subcommand;
use hosted_contracts::v1;

use crate::{
    learners::print_learner,
    rpc::{Intake, server_error},
    values,
};

#[derive(Debug, Subcommand)]
pub enum StayAction {
    /// Changes who sponsors a stay: the unit and/or the sponsor person (role deve).
    Sponsor {
        /// The stay's id (`hlctl learner KEY` lists them).
        stay_id: String,
        /// The new sponsoring unit.
        #[arg(long)]
        unit: Option<String>,
        /// The new sponsor person's login.
        #[arg(long, conflicts_with = "no_sponsor_login")]
        sponsor_login: Option<String>,
        /// Removes the sponsor person.
        #[arg(long)]
        no_sponsor_login: bool,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
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
    /// Ends a stay early: its last day becomes --on, today at the earliest (role
    /// deve).
    End {
        /// The stay's id (`hlctl learner KEY` lists them).
        stay_id: String,
        /// The new last day (YYYY-MM-DD).
        #[arg(long, value_name = "DAY", value_parser = values::day)]
        on: String,
        /// Why (kept in the audit trail).
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

pub async fn run(action: StayAction, intake: &mut Intake, json: bool) -> anyhow::Result<()> {
    let (done, learner) = match action {
        StayAction::Sponsor {
            stay_id,
            unit,
            sponsor_login,
            no_sponsor_login,
            reason,
        } => {
            let done = format!("stay {stay_id}: sponsor changed");
            let learner = intake
                .client()
                .await?
                .amend_stay(v1::AmendStayRequest {
                    stay_id,
                    sponsor_unit: unit.unwrap_or_default(),
                    sponsor_login: sponsor_login.unwrap_or_default(),
                    clear_sponsor_login: no_sponsor_login,
                    reason,
                    // The resources the sponsor asked for are kept: hlctl does not
                    // change them.
                    set_requested_resources: false,
                    requested_resources: Vec::new(),
                })
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
            reason,
        } => {
            let done = format!("stay {stay_id} now ends on {on}");
            let learner = intake
                .client()
                .await?
                .end_stay(v1::EndStayRequest {
                    stay_id,
                    end_date: on,
                    reason,
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
