//! Agreements (conventions) with partner institutions: what makes one valid.

use hosted_platform::error::Violations;
use time::Date;

use super::registration::parse_date;

/// Who pays for the stays under an agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payer {
    Nobody,
    Learner,
    Partner,
}

impl Payer {
    pub fn as_str(self) -> &'static str {
        match self {
            Payer::Nobody => "nobody",
            Payer::Learner => "learner",
            Payer::Partner => "partner",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "nobody" => Some(Payer::Nobody),
            "learner" => Some(Payer::Learner),
            "partner" => Some(Payer::Partner),
            _ => None,
        }
    }
}

/// An agreement as the caller gave it.
#[derive(Debug, Clone, Default)]
pub struct AgreementInput {
    pub partner_name: String,
    pub partner_uai: String,
    pub populations: Vec<String>,
    pub start_date: String,
    pub end_date: String,
    pub head_count_cap: i32,
    pub options: Vec<String>,
    pub payer: Option<Payer>,
}

/// A valid agreement, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAgreement {
    pub partner_name: String,
    pub partner_uai: Option<String>,
    pub populations: Vec<String>,
    pub start_date: Date,
    pub end_date: Date,
    pub head_count_cap: i32,
    pub options: Vec<String>,
    pub payer: Payer,
}

fn is_option_key(option: &str) -> bool {
    !option.is_empty()
        && option.len() <= 64
        && option
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks an agreement; `catalogue` is every population code the registry knows.
pub fn validate(input: &AgreementInput, catalogue: &[String]) -> Result<NewAgreement, Violations> {
    let mut violations = Violations::default();
    let partner_name = input.partner_name.trim().to_owned();
    if partner_name.is_empty() {
        violations.add("agreement.partner_name", "required");
    } else if partner_name.chars().count() > 200 {
        violations.add("agreement.partner_name", "longer than 200 characters");
    }
    let partner_uai = {
        let uai = input.partner_uai.trim().to_ascii_uppercase();
        if !uai.is_empty() && !hosted_identity::uai::is_valid(&uai) {
            violations.add(
                "agreement.partner_uai",
                "not a UAI: 7 digits and the key letter of their value modulo 23",
            );
        }
        (!uai.is_empty()).then_some(uai)
    };
    let mut populations: Vec<String> = input
        .populations
        .iter()
        .map(|p| p.trim().to_owned())
        .collect();
    populations.sort();
    populations.dedup();
    if populations.is_empty() {
        violations.add(
            "agreement.populations",
            "at least one population is required",
        );
    }
    for population in &populations {
        if !catalogue.contains(population) {
            violations.add(
                "agreement.populations",
                format!("{population:?} is not in the population catalogue"),
            );
        }
    }
    let start_date = parse_date("agreement.start_date", &input.start_date, &mut violations);
    let end_date = parse_date("agreement.end_date", &input.end_date, &mut violations);
    if let (Some(start), Some(end)) = (start_date, end_date)
        && end < start
    {
        violations.add("agreement.end_date", "before agreement.start_date");
    }
    if input.head_count_cap < 0 {
        violations.add("agreement.head_count_cap", "0 (no cap) or more");
    }
    let mut options: Vec<String> = input.options.iter().map(|o| o.trim().to_owned()).collect();
    options.sort();
    options.dedup();
    for option in &options {
        if !is_option_key(option) {
            violations.add(
                "agreement.options",
                format!(
                    "{option:?}: lower-case letters, digits and '-' (e.g. library, smart-card)"
                ),
            );
        }
    }
    if input.payer.is_none() {
        violations.add("agreement.payer", "required: nobody, learner or partner");
    }
    violations.into_result(()).map(|()| NewAgreement {
        partner_name,
        partner_uai,
        populations,
        start_date: start_date.unwrap_or(Date::MIN),
        end_date: end_date.unwrap_or(Date::MIN),
        head_count_cap: input.head_count_cap,
        options,
        payer: input.payer.unwrap_or(Payer::Nobody),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Vec<String> {
        vec!["CO_ACCREDITED".to_owned(), "IFSI".to_owned()]
    }

    fn input() -> AgreementInput {
        AgreementInput {
            partner_name: "Université partenaire".to_owned(),
            partner_uai: "0134009M".to_owned(),
            populations: vec!["CO_ACCREDITED".to_owned()],
            start_date: "2026-09-01".to_owned(),
            end_date: "2027-08-31".to_owned(),
            head_count_cap: 30,
            options: vec!["library".to_owned()],
            payer: Some(Payer::Partner),
        }
    }

    #[test]
    fn a_complete_agreement_is_valid() {
        let agreement = validate(&input(), &catalogue()).expect("valid");
        assert_eq!(agreement.partner_uai.as_deref(), Some("0134009M"));
        assert_eq!(agreement.payer, Payer::Partner);
    }

    #[test]
    fn every_problem_at_once() {
        let bad = AgreementInput {
            partner_name: String::new(),
            partner_uai: "0134009N".to_owned(),
            populations: vec!["ASTRONAUTS".to_owned()],
            start_date: "2027-09-01".to_owned(),
            end_date: "2026-08-31".to_owned(),
            head_count_cap: -1,
            options: vec!["Library Access".to_owned()],
            payer: None,
        };
        let fields: Vec<String> = validate(&bad, &catalogue())
            .expect_err("invalid")
            .0
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            [
                "agreement.partner_name",
                "agreement.partner_uai",
                "agreement.populations",
                "agreement.end_date",
                "agreement.head_count_cap",
                "agreement.options",
                "agreement.payer"
            ]
        );
    }
}
