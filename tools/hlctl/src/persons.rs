//! `hlctl person`: what the GDPR gives a person a right to, done by an operator:
//! erasing the person's identity on request, and gathering everything every service
//! holds about them (access and portability).
#![allow(clippy::print_stdout)]

use std::{io::Write as _, path::PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use hosted_contracts::v1::{
    self, cards_service_client::CardsServiceClient,
    directory_service_client::DirectoryServiceClient,
    entitlement_service_client::EntitlementServiceClient,
    intake_service_client::IntakeServiceClient,
};
use serde_json::{Map, Value, json};

use crate::{
    audit::Sources,
    learners::{learner_json, print_learner},
    rpc::{Intake, authorized, server_error, usage},
    values,
};

#[derive(Debug, Subcommand)]
pub enum PersonAction {
    /// Erases a person's identity on request (GDPR article 17): names, birth date,
    /// INE, e-mail, phone and login leave every service; an anonymous stub stays for
    /// statistics. Refused while a stay is open: end or cancel it first (role deve).
    Erase(EraseArgs),
    /// Gathers everything intake, entitlement, cards and directory hold about a person
    /// into one JSON document, for a data subject's access request (GDPR articles 15
    /// and 20): their records in each service, and their directory entry. The export
    /// is audited in intake (role dosi).
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The learner: login or id.
    #[arg(value_name = "LEARNER")]
    learner: String,
    /// Writes the document to this file (made readable by its owner only; an existing
    /// file is refused) instead of the standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
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

pub async fn run(
    action: PersonAction,
    intake: &mut Intake,
    sources: &Sources<'_>,
    json: bool,
) -> anyhow::Result<()> {
    match action {
        PersonAction::Export(args) => {
            let document = export(sources, &args.learner).await?;
            let text = serde_json::to_string_pretty(&document)?;
            match args.output {
                Some(path) => {
                    write_private(&path, &text)?;
                    if json {
                        println!(
                            "{}",
                            json!({ "output": path, "learner_id": document["learner_id"] })
                        );
                    } else {
                        println!("exported to {}", path.display());
                    }
                }
                None => println!("{text}"),
            }
            Ok(())
        }
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

/// Everything the four services hold about the learner: intake answers first (and
/// audits the export), with the learner id the others are asked by.
pub async fn export(sources: &Sources<'_>, learner: &str) -> anyhow::Result<Value> {
    if learner.trim().is_empty() {
        return usage("give a learner (login or id)");
    }
    let token = sources.token;
    let intake = IntakeServiceClient::new(sources.intake.clone())
        .export_personal_data(authorized(
            token,
            v1::ExportPersonalDataRequest {
                learner: learner.to_owned(),
            },
        )?)
        .await
        .map_err(server_error)
        .context("intake")?
        .into_inner();
    let learner_id = intake.learner_id;
    let entitlement = EntitlementServiceClient::new(sources.entitlement.clone())
        .export_personal_data(authorized(
            token,
            v1::EntitlementServiceExportPersonalDataRequest {
                learner_id: learner_id.clone(),
            },
        )?)
        .await
        .map_err(server_error)
        .context("entitlement")?
        .into_inner()
        .data;
    let cards = CardsServiceClient::new(sources.cards.clone())
        .export_personal_data(authorized(
            token,
            v1::CardsServiceExportPersonalDataRequest {
                learner_id: learner_id.clone(),
            },
        )?)
        .await
        .map_err(server_error)
        .context("cards")?
        .into_inner()
        .data;
    let directory = DirectoryServiceClient::new(sources.directory.clone())
        .export_personal_data(authorized(
            token,
            v1::DirectoryServiceExportPersonalDataRequest {
                learner_id: learner_id.clone(),
            },
        )?)
        .await
        .map_err(server_error)
        .context("directory")?
        .into_inner()
        .data;
    let mut services = Map::new();
    for data in [intake.data, entitlement, cards, directory]
        .into_iter()
        .flatten()
    {
        let records: Value = serde_json::from_str(&data.records_json)
            .with_context(|| format!("{}'s records are not JSON", data.service))?;
        let exported_at = data
            .exported_at
            .as_ref()
            .map(|at| values::instant(at.seconds, at.nanos));
        services.insert(
            data.service,
            json!({ "exported_at": exported_at, "records": records }),
        );
    }
    Ok(json!({
        "learner_id": learner_id,
        "exported_at": values::instant(time::OffsetDateTime::now_utc().unix_timestamp(), 0),
        "services": services,
    }))
}

/// Writes `text` to a new file that only its owner may read: personal data.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("{}: cannot create it", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_file_is_new_and_its_owners_only() {
        let path = std::env::temp_dir().join(format!("export-{}.json", uuid::Uuid::now_v7()));

        write_private(&path, "{}").unwrap();
        let again = write_private(&path, "{}");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        assert!(again.is_err(), "an existing file is not overwritten");
        std::fs::remove_file(&path).unwrap();
    }
}
