//! The documents the card office hands over: print batches (CSV or JSON, for the
//! card printer) and the e-purse right-holders (CSV, for the CROUS).

use hosted_contracts::v1;
use hosted_platform::clock::format_day;
use serde::{Deserialize, Serialize};
use time::Date;

use crate::store::{CardRow, EpurseLine, Person};

/// What the printer needs of one card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintLine {
    pub card_id: String,
    pub card_number: String,
    pub escn: String,
    pub login: String,
    pub learner_number: String,
    pub family_name: String,
    pub given_names: String,
    pub photo_reference: String,
    /// The card's last day (ISO 8601).
    pub expiry: String,
}

/// The photo reference of a learner, from the configured template.
pub fn photo_reference(template: &str, person: &Person) -> String {
    template
        .replace("{login}", &person.login)
        .replace("{learner_number}", &person.learner_number)
        .replace("{learner_id}", &person.learner_id.to_string())
}

pub fn print_line(card: &CardRow, person: &Person, photo_template: &str) -> PrintLine {
    PrintLine {
        card_id: card.card_id.to_string(),
        card_number: card.card_number.clone(),
        escn: card.escn.map(|escn| escn.to_string()).unwrap_or_default(),
        login: person.login.clone(),
        learner_number: person.learner_number.clone(),
        family_name: person.family_name.clone(),
        given_names: person.given_names.clone(),
        photo_reference: photo_reference(photo_template, person),
        expiry: format_day(card.last_day),
    }
}

const PRINT_HEADER: [&str; 9] = [
    "card_number",
    "escn",
    "login",
    "learner_number",
    "family_name",
    "given_names",
    "photo_reference",
    "expiry",
    "card_id",
];

/// A print batch as the printer takes it.
pub fn print_document(lines: &[PrintLine], format: v1::DocumentFormat) -> Vec<u8> {
    match format {
        v1::DocumentFormat::Json => serde_json::to_vec_pretty(lines).unwrap_or_default(),
        _ => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            let _ = writer.write_record(PRINT_HEADER);
            for line in lines {
                let _ = writer.write_record([
                    &line.card_number,
                    &line.escn,
                    &line.login,
                    &line.learner_number,
                    &line.family_name,
                    &line.given_names,
                    &line.photo_reference,
                    &line.expiry,
                    &line.card_id,
                ]);
            }
            writer.into_inner().unwrap_or_default()
        }
    }
}

/// The reference status of a hosted learner at the CROUS: hébergé.
pub const REFERENCE_STATUS: &str = "hbg";

/// One right-holder as the CROUS expects them. The due date is never in the past: a
/// closed right is sent with the day of its closing, or today when that has passed.
pub fn right_holder(line: &EpurseLine, eppn_scope: &str, today: Date) -> v1::EpurseRightHolder {
    let identifier = if line.ine.is_empty() {
        format!("{}@{eppn_scope}", line.login)
    } else {
        line.ine.clone()
    };
    v1::EpurseRightHolder {
        identifier,
        family_name: line.family_name.clone(),
        given_names: line.given_names.clone(),
        email: line.email.clone(),
        birth_date: line.birth_date.clone(),
        due_date: format_day(line.due_date.max(today)),
        reference_status: REFERENCE_STATUS.to_owned(),
        closed: line.closed_on.is_some(),
        learner_id: line.learner_id.to_string(),
    }
}

/// A right-holder as an export sent them, kept so that the export can be fetched again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRightHolder {
    pub identifier: String,
    pub family_name: String,
    pub given_names: String,
    pub email: String,
    pub birth_date: String,
    pub due_date: String,
    pub reference_status: String,
    pub closed: bool,
    pub learner_id: String,
}

impl From<&v1::EpurseRightHolder> for SentRightHolder {
    fn from(holder: &v1::EpurseRightHolder) -> Self {
        SentRightHolder {
            identifier: holder.identifier.clone(),
            family_name: holder.family_name.clone(),
            given_names: holder.given_names.clone(),
            email: holder.email.clone(),
            birth_date: holder.birth_date.clone(),
            due_date: holder.due_date.clone(),
            reference_status: holder.reference_status.clone(),
            closed: holder.closed,
            learner_id: holder.learner_id.clone(),
        }
    }
}

impl From<SentRightHolder> for v1::EpurseRightHolder {
    fn from(holder: SentRightHolder) -> Self {
        v1::EpurseRightHolder {
            identifier: holder.identifier,
            family_name: holder.family_name,
            given_names: holder.given_names,
            email: holder.email,
            birth_date: holder.birth_date,
            due_date: holder.due_date,
            reference_status: holder.reference_status,
            closed: holder.closed,
            learner_id: holder.learner_id,
        }
    }
}

const EPURSE_HEADER: [&str; 7] = [
    "identifiant",
    "nom",
    "prenom",
    "email",
    "date_naissance",
    "date_fin_validite",
    "statut_reference",
];

/// The right-holders as a semicolon-separated UTF-8 file, one line each.
pub fn epurse_document(holders: &[v1::EpurseRightHolder]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .delimiter(b';')
        .from_writer(Vec::new());
    let _ = writer.write_record(EPURSE_HEADER);
    for holder in holders {
        let _ = writer.write_record([
            &holder.identifier,
            &holder.family_name,
            &holder.given_names,
            &holder.email,
            &holder.birth_date,
            &holder.due_date,
            &holder.reference_status,
        ]);
    }
    writer.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use time::macros::date;
    use uuid::Uuid;

    use super::*;

    fn line(ine: &str, due: Date, closed: Option<Date>) -> EpurseLine {
        EpurseLine {
            learner_id: Uuid::nil(),
            login: "jdupont".to_owned(),
            family_name: "Dupont".to_owned(),
            given_names: "Jeanne".to_owned(),
            birth_date: "2001-02-03".to_owned(),
            email: "j@example.org".to_owned(),
            ine: ine.to_owned(),
            due_date: due,
            closed_on: closed,
            version: 1,
        }
    }

    #[test]
    fn identifier_is_the_ine_else_the_eppn() {
        let today = date!(2026 - 11 - 29);
        let with = right_holder(
            &line("123456789AB", date!(2027 - 06 - 30), None),
            "u.fr",
            today,
        );
        assert_eq!(with.identifier, "123456789AB");
        let without = right_holder(&line("", date!(2027 - 06 - 30), None), "u.fr", today);
        assert_eq!(without.identifier, "jdupont@u.fr");
        assert_eq!(without.reference_status, "hbg");
        assert_eq!(without.due_date, "2027-06-30");
    }

    #[test]
    fn due_date_is_never_in_the_past() {
        let today = date!(2026 - 11 - 29);
        let late = right_holder(
            &line("", date!(2026 - 11 - 20), Some(date!(2026 - 11 - 20))),
            "u.fr",
            today,
        );
        assert_eq!(late.due_date, "2026-11-29");
        assert!(late.closed);
    }

    #[test]
    fn epurse_csv_is_semicolon_separated() {
        let today = date!(2026 - 11 - 29);
        let holder = right_holder(&line("", date!(2027 - 06 - 30), None), "u.fr", today);
        let text = String::from_utf8(epurse_document(&[holder])).unwrap();
        assert_eq!(
            text,
            "identifiant;nom;prenom;email;date_naissance;date_fin_validite;statut_reference\n\
             jdupont@u.fr;Dupont;Jeanne;j@example.org;2001-02-03;2027-06-30;hbg\n"
        );
    }
}
