//! `hlctl units`: the unit catalogue (the sites, labs, schools and services a stay's
//! sponsor unit names), and saving a unit in it.
#![allow(clippy::print_stdout)]

use clap::Subcommand;
use hosted_contracts::v1;
use serde_json::json;

use crate::rpc::{Intake, server_error};

#[derive(Debug, Subcommand)]
pub enum UnitsAction {
    /// Lists the catalogue (any role); what `hlctl units` does alone.
    List,
    /// Adds a unit to the catalogue, or changes its kind and label (role deve).
    Save(SaveArgs),
}

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// The code, e.g. LAB-PHYS: 2 to 32 of A-Z, 0-9, '-' and '_'.
    code: String,
    /// site, lab, school or service.
    #[arg(long)]
    kind: String,
    #[arg(long)]
    label: String,
    /// Why (kept in the audit trail).
    #[arg(long)]
    reason: String,
}

pub async fn run(action: UnitsAction, intake: &mut Intake, json: bool) -> anyhow::Result<()> {
    match action {
        UnitsAction::List => {
            let units = intake
                .client()
                .await?
                .list_units(v1::ListUnitsRequest {})
                .await
                .map_err(server_error)?
                .into_inner()
                .units;
            for unit in &units {
                println!("{}", unit_line(unit, json));
            }
        }
        UnitsAction::Save(args) => {
            let saved = intake
                .client()
                .await?
                .save_unit(v1::SaveUnitRequest {
                    unit: Some(v1::Unit {
                        code: args.code,
                        kind: args.kind,
                        label: args.label,
                    }),
                    reason: args.reason,
                })
                .await
                .map_err(server_error)?
                .into_inner();
            let unit = saved.unit.unwrap_or_default();
            if json {
                println!("{}", json!({ "code": unit.code, "created": saved.created }));
            } else {
                let done = if saved.created { "added" } else { "changed" };
                println!("unit {} {done}", unit.code);
            }
        }
    }
    Ok(())
}

/// One line per unit: code, kind and label, or one JSON object.
fn unit_line(unit: &v1::Unit, json: bool) -> String {
    if json {
        json!({ "code": unit.code, "kind": unit.kind, "label": unit.label }).to_string()
    } else {
        format!("{:<12} {:<8} {}", unit.code, unit.kind, unit.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_is_one_line() {
        let unit = v1::Unit {
            code: "LAB-CHEM".to_owned(),
            kind: "lab".to_owned(),
            label: "Chemistry laboratory".to_owned(),
        };
        assert_eq!(
            unit_line(&unit, false),
            "LAB-CHEM     lab      Chemistry laboratory"
        );
        assert_eq!(
            unit_line(&unit, true),
            r#"{"code":"LAB-CHEM","kind":"lab","label":"Chemistry laboratory"}"#
        );
    }
}
