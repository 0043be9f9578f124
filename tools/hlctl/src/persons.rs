//! `hlctl person`: what the GDPR gives a person a right to, done by an operator:
//! erasing the person's identity on request.
#![allow(clippy::print_stdout)]

use clap::Subcommand;
use hosted_contracts::v1;
use serde_json::json;

use crate::{
    learners::{learner_json, print_learner},
    rpc::{Intake, server_error},
    values,
};

#[derive(Debug, Subcommand)]
pub enum PersonAction {
    /// Erases a person's identity on request (GDPR article 17): names, birth date,
    /// INE, e-mail, phone and login leave every service; an anonymous stub stays for
    /// statistics. Refused while a stay is open: end or cancel it first (role deve).
    Erase(EraseArgs),
}

#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    /// The learner: login or id.
    #[arg(value_name = "LEARNER")]
    learner: String,
    /// Why: data-subject-request (the person asked), duplicate-record,
    /// legal-obligation or unlawful-processing.
    #[arg(long, value_parser = ["data-subject-request", "duplicate-record", "legal-obligation", "unlawful-processing"])]
    reason: String,
    /// The request's ticket or case number, kept in the audit trail (never a name or
    /// an e-mail).
    #[arg(long, value_name = "REF", default_value = "")]
    reference: String,
}

pub async fn run(action: PersonAction, intake: &mut Intake, json: bool) -> anyhow::Result<()> {
    match action {
        PersonAction::Erase(args) => {
            let answer = intake
                .client()
                .await?
                .erase_person(v1::ErasePersonRequest {
                    learner: args.learner,
                    reason: args.reason,
                    reference: args.reference,
                })
                .await
                .map_err(server_error)?
                .into_inner();
            let learner = answer.learner.unwrap_or_default();
            let erased_at = answer
                .erased_at
                .as_ref()
                .map(|at| values::instant(at.seconds, at.nanos));
            if json {
                println!(
                    "{}",
                    json!({
                        "already_erased": answer.already_erased,
                        "erased_at": erased_at,
                        "learner": learner_json(&learner),
                    })
                );
                return Ok(());
            }
            println!(
                "{} {}",
                if answer.already_erased {
                    "already erased at"
                } else {
                    "erased at"
                },
                erased_at.unwrap_or_default()
            );
            print_learner(&learner, false);
            Ok(())
        }
    }
}
