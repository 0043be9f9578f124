//! `hlctl payment`: what the finance office records as paid, for one stay or for a
//! whole cohort under an agreement. Amounts are typed in euros and sent in cents.
#![allow(clippy::print_stdout)]

use clap::Subcommand;
use hosted_contracts::v1;
use serde_json::json;

use crate::{
    rpc::{Intake, server_error},
    values::{self, PaymentPayer, euros, payer_name},
};

#[derive(Debug, Subcommand)]
pub enum PaymentAction {
    /// Records a payment for one stay (role finance).
    Record(RecordArgs),
    /// Records one payment for every stay still due under an agreement (role
    /// finance).
    Cohort(CohortArgs),
}

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// The stay's id (`hlctl learner KEY` lists them).
    stay_id: String,
    /// In euros, at most 2 decimals after `.` or `,`: 170.00, 170,50.
    #[arg(long, value_name = "EUROS", value_parser = values::cents)]
    amount: i64,
    /// The day it was paid, not in the future (YYYY-MM-DD).
    #[arg(long, value_name = "DAY", value_parser = values::day)]
    paid_on: String,
    /// Who paid: the learner, or a third party (give its --payer-name).
    #[arg(long, value_enum)]
    payer: PaymentPayer,
    /// The third party that paid, e.g. rectorat (required with --payer partner).
    #[arg(long)]
    payer_name: Option<String>,
    /// The payment's reference (invoice, transfer).
    #[arg(long)]
    reference: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct CohortArgs {
    #[arg(value_name = "AGREEMENT_ID")]
    agreement_id: String,
    /// What the partner paid for the whole cohort, in euros (170.00, 170,50).
    #[arg(long, value_name = "EUROS", value_parser = values::cents)]
    amount: i64,
    /// The day it was paid (YYYY-MM-DD).
    #[arg(long, value_name = "DAY", value_parser = values::day)]
    paid_on: String,
    /// Who paid; default: the agreement's partner.
    #[arg(long)]
    payer_name: Option<String>,
    /// The payment's reference (invoice, transfer).
    #[arg(long)]
    reference: Option<String>,
}

pub async fn run(action: PaymentAction, intake: &mut Intake, json: bool) -> anyhow::Result<()> {
    match action {
        PaymentAction::Record(args) => {
            let payment = intake
                .client()
                .await?
                .record_payment(v1::RecordPaymentRequest {
                    stay_id: args.stay_id,
                    amount_cents: args.amount,
                    paid_on: args.paid_on,
                    payer: v1::Payer::from(args.payer).into(),
                    payer_name: args.payer_name.unwrap_or_default(),
                    reference: args.reference.unwrap_or_default(),
                })
                .await
                .map_err(server_error)?
                .into_inner()
                .payment
                .unwrap_or_default();
            if json {
                println!("{}", payment_json(&payment));
            } else {
                println!("{}", payment_text(&payment));
            }
        }
        PaymentAction::Cohort(args) => {
            let paid = intake
                .client()
                .await?
                .record_cohort_payment(v1::RecordCohortPaymentRequest {
                    agreement_id: args.agreement_id.clone(),
                    amount_cents: args.amount,
                    paid_on: args.paid_on.clone(),
                    payer_name: args.payer_name.unwrap_or_default(),
                    reference: args.reference.unwrap_or_default(),
                })
                .await
                .map_err(server_error)?
                .into_inner()
                .paid_stay_ids;
            if json {
                println!(
                    "{}",
                    json!({
                        "agreement_id": args.agreement_id,
                        "amount_cents": args.amount,
                        "paid_on": args.paid_on,
                        "paid_stay_ids": paid,
                    })
                );
            } else {
                println!(
                    "recorded {} € paid on {} under agreement {}",
                    euros(args.amount),
                    args.paid_on,
                    args.agreement_id
                );
                // Intake refuses a cohort payment when nothing is due: here, some stays are.
                println!("{} now paid:", values::count(paid.len(), "stay", "stays"));
                for stay_id in &paid {
                    println!("  {stay_id}");
                }
            }
        }
    }
    Ok(())
}

pub fn payment_json(payment: &v1::Payment) -> serde_json::Value {
    json!({
        "payment_id": payment.payment_id,
        "stay_id": payment.stay_id,
        "amount_cents": payment.amount_cents,
        "paid_on": payment.paid_on,
        "payer": payer_name(payment.payer),
        "payer_name": payment.payer_name,
        "reference": payment.reference,
        "recorded_at": payment
            .recorded_at
            .as_ref()
            .map(|at| values::instant(at.seconds, at.nanos))
            .unwrap_or_default(),
    })
}

pub fn payment_text(payment: &v1::Payment) -> String {
    let by = match (payer_name(payment.payer), payment.payer_name.as_str()) {
        (payer, "") => payer.to_owned(),
        (payer, name) => format!("{payer} {name}"),
    };
    let reference = if payment.reference.is_empty() {
        String::new()
    } else {
        format!(", reference {}", payment.reference)
    };
    format!(
        "recorded payment {}: {} € for stay {}, paid on {} by {by}{reference}",
        payment.payment_id,
        euros(payment.amount_cents),
        payment.stay_id,
        payment.paid_on
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_reads_in_euros() {
        let payment = v1::Payment {
            payment_id: "p".to_owned(),
            stay_id: "s".to_owned(),
            amount_cents: 17050,
            paid_on: "2026-11-02".to_owned(),
            payer: v1::Payer::Partner.into(),
            payer_name: "rectorat".to_owned(),
            reference: "F-2026-118".to_owned(),
            recorded_at: None,
        };
        assert_eq!(
            payment_text(&payment),
            "recorded payment p: 170.50 € for stay s, paid on 2026-11-02 by partner rectorat, reference F-2026-118"
        );
        let json = payment_json(&payment);
        assert_eq!(json["amount_cents"], 17050);
        assert_eq!(json["payer"], "partner");
        assert_eq!(json["recorded_at"], "");
    }
}
