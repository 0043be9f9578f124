//! `hlctl payment`: the stays whose payment is due, and what the finance office
//! records as paid, for one stay or for a whole cohort under an agreement. Amounts
//! are typed in euros and sent in cents.
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
    /// Lists the stays whose payment is due, with what matches a bank transfer and
    /// the amount owed when the population states one (roles finance, deve).
    Due(DueArgs),
    /// Records a payment for one stay (role finance).
    Record(RecordArgs),
    /// Records one payment for every stay still due under an agreement (role
    /// finance).
    Cohort(CohortArgs),
}

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// The stay's id (`hlctl payment due` lists the stays due).
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
    /// The bank transfer's reference: the same reference again books nothing.
    #[arg(long)]
    reference: String,
}

#[derive(Debug, clap::Args)]
pub struct DueArgs {
    /// Only the stays under this agreement (the cohort `payment cohort` pays).
    #[arg(long, value_name = "AGREEMENT_ID")]
    agreement: Option<String>,
    /// Only the stays of this population.
    #[arg(long, value_name = "CODE")]
    population: Option<String>,
}

/// Intake's largest page.
const MAX_PAGE_SIZE: i32 = 500;

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
            let booking = intake
                .client()
                .await?
                .record_cohort_payment(v1::RecordCohortPaymentRequest {
                    agreement_id: args.agreement_id.clone(),
                    amount_cents: args.amount,
                    paid_on: args.paid_on.clone(),
                    payer_name: args.payer_name.unwrap_or_default(),
                    reference: args.reference.clone(),
                })
                .await
                .map_err(server_error)?
                .into_inner();
            let paid = &booking.paid_stay_ids;
            if json {
                println!(
                    "{}",
                    json!({
                        "cohort_payment_id": booking.cohort_payment_id,
                        "agreement_id": args.agreement_id,
                        "amount_cents": args.amount,
                        "paid_on": args.paid_on,
                        "reference": args.reference,
                        "repeat": booking.repeat,
                        "paid_stay_ids": paid,
                    })
                );
            } else if booking.repeat {
                println!(
                    "already booked: reference {} under agreement {} (cohort payment {}); nothing booked again",
                    args.reference, args.agreement_id, booking.cohort_payment_id
                );
                println!("{} paid by it:", values::count(paid.len(), "stay", "stays"));
                for stay_id in paid {
                    println!("  {stay_id}");
                }
            } else {
                println!(
                    "recorded {} € paid on {} under agreement {}, reference {}",
                    euros(args.amount),
                    args.paid_on,
                    args.agreement_id,
                    args.reference
                );
                // Intake refuses a cohort payment when nothing is due: here, some stays are.
                println!("{} now paid:", values::count(paid.len(), "stay", "stays"));
                for stay_id in paid {
                    println!("  {stay_id}");
                }
            }
        }
        PaymentAction::Due(args) => due(args, intake, json).await?,
    }
    Ok(())
}

/// Every page of the stays due, printed as they come.
async fn due(args: DueArgs, intake: &mut Intake, json: bool) -> anyhow::Result<()> {
    let mut request = v1::ListPaymentsDueRequest {
        agreement_id: args.agreement.unwrap_or_default(),
        population: args.population.unwrap_or_default(),
        page_size: MAX_PAGE_SIZE,
        page_token: String::new(),
    };
    let mut listed = 0usize;
    let mut owed = 0i64;
    loop {
        let page = intake
            .client()
            .await?
            .list_payments_due(request.clone())
            .await
            .map_err(server_error)?
            .into_inner();
        for stay in &page.payments_due {
            if json {
                println!("{}", due_json(stay));
            } else {
                println!("{}", due_line(stay));
            }
            owed += stay.fee_cents.unwrap_or_default();
        }
        listed += page.payments_due.len();
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    if listed == 0 {
        eprintln!("no stay is due");
    } else if !json {
        println!(
            "{} due, {} € owed where the population states a fee",
            values::count(listed, "stay", "stays"),
            euros(owed)
        );
    }
    Ok(())
}

pub fn due_json(stay: &v1::PaymentDue) -> serde_json::Value {
    json!({
        "stay_id": stay.stay_id,
        "login": stay.login,
        "learner_number": stay.learner_number,
        "family_name": stay.family_name,
        "given_names": stay.given_names,
        "population": stay.population,
        "agreement_id": stay.agreement_id,
        "start_date": stay.start_date,
        "end_date": stay.end_date,
        "fee_cents": stay.fee_cents,
    })
}

/// One line per stay due: the stay, who, the population, the dates and the amount.
pub fn due_line(stay: &v1::PaymentDue) -> String {
    let names = format!("{} {}", stay.family_name, stay.given_names);
    let owed = stay
        .fee_cents
        .map(|cents| format!("{} €", euros(cents)))
        .unwrap_or_else(|| "amount not stated".to_owned());
    let agreement = if stay.agreement_id.is_empty() {
        String::new()
    } else {
        format!(" agreement {}", stay.agreement_id)
    };
    format!(
        "{} {:<24} {:<12} {:<32} {:<22} {} to {} {owed}{agreement}",
        stay.stay_id,
        stay.login,
        stay.learner_number,
        names,
        stay.population,
        stay.start_date,
        stay.end_date
    )
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

    #[test]
    fn a_stay_due_reads_with_its_amount_or_without() {
        let mut stay = v1::PaymentDue {
            stay_id: "s".to_owned(),
            login: "lea.martin".to_owned(),
            learner_number: "H00000003".to_owned(),
            family_name: "Martin".to_owned(),
            given_names: "Léa".to_owned(),
            population: "VISITING_DOCTORAL".to_owned(),
            agreement_id: String::new(),
            start_date: "2026-09-01".to_owned(),
            end_date: "2027-02-28".to_owned(),
            fee_cents: Some(17_050),
        };
        assert!(due_line(&stay).ends_with("2026-09-01 to 2027-02-28 170.50 €"));
        assert_eq!(due_json(&stay)["fee_cents"], 17_050);
        stay.fee_cents = None;
        assert!(due_line(&stay).ends_with("amount not stated"));
        assert!(due_json(&stay)["fee_cents"].is_null());
    }
}
