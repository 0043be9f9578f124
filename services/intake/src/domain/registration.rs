//! Validation of a registration: every bad field is reported at once, by its path.

use hosted_platform::{
    clock::{format_day, parse_day},
    error::Violations,
};
use time::{Date, Duration, Month};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use uuid::Uuid;

use super::{
    names, resources,
    unit::{self, Unit},
};

/// A population of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Population {
    pub code: String,
    pub label: String,
    pub supann_population: String,
    pub agreement_required: bool,
    pub default_duration_days: i32,
    pub max_duration_days: i32,
    pub payment_required: bool,
    /// What a stay costs, in euro cents, when the university states it.
    pub fee_cents: Option<i64>,
}

impl Population {
    /// Checks a population definition before it enters the catalogue.
    pub fn check(&self) -> Result<(), Violations> {
        let mut violations = Violations::default();
        let code_ok = self.code.len() >= 2
            && self.code.len() <= 40
            && self.code.starts_with(|c: char| c.is_ascii_uppercase())
            && self
                .code
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !code_ok {
            violations.add(
                "population.code",
                "2 to 40 of A-Z, 0-9 and '_', starting with a letter (e.g. IFSI)",
            );
        }
        if self.label.trim().is_empty() {
            violations.add("population.label", "required");
        } else if self.label.chars().count() > 200 {
            violations.add("population.label", "longer than 200 characters");
        }
        let supann_ok = !self.supann_population.is_empty()
            && self.supann_population.len() <= 16
            && self
                .supann_population
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !supann_ok {
            violations.add(
                "population.supann_population",
                "a SupAnn population code (e.g. AHH, AX, RHJCF)",
            );
        }
        if !(1..=3650).contains(&self.default_duration_days) {
            violations.add("population.default_duration_days", "1 to 3650 days");
        }
        if self.max_duration_days < self.default_duration_days || self.max_duration_days > 3650 {
            violations.add(
                "population.max_duration_days",
                "at least the default duration, at most 3650 days",
            );
        }
        if self.fee_cents.is_some_and(|fee| fee < 0) {
            violations.add("population.fee_cents", "0 or more (euro cents)");
        }
        violations.into_result(())
    }
}

/// Identity data as the caller gave it.
#[derive(Debug, Clone, Default)]
pub struct PersonInput {
    pub family_name: String,
    pub birth_name: String,
    pub given_names: String,
    pub birth_date: String,
    pub email: String,
    pub ine: String,
    pub phone: String,
}

/// A stay as the caller gave it.
#[derive(Debug, Clone, Default)]
pub struct StayInput {
    pub population: String,
    pub sponsor_unit: String,
    pub sponsor_login: String,
    pub agreement_id: String,
    pub start_date: String,
    pub end_date: String,
    /// Resources the sponsor asks for, as given.
    pub requested_resources: Vec<String>,
}

/// A valid person, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPerson {
    pub family_name: String,
    pub birth_name: Option<String>,
    pub given_names: String,
    pub birth_date: Date,
    pub email: String,
    pub ine: Option<String>,
    pub phone: Option<String>,
}

impl NewPerson {
    /// What name searches look in.
    pub fn folded_names(&self) -> String {
        names::folded_names(
            &self.family_name,
            self.birth_name.as_deref(),
            &self.given_names,
        )
    }

    pub fn login_base(&self, pattern: &names::LoginPattern) -> String {
        pattern.base(&self.family_name, &self.given_names)
    }
}

/// A valid stay, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStay {
    pub population: String,
    pub sponsor_unit: String,
    pub sponsor_login: Option<String>,
    pub agreement_id: Option<Uuid>,
    pub start_date: Date,
    pub end_date: Date,
    /// Trimmed and sorted.
    pub requested_resources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub person: NewPerson,
    pub stay: NewStay,
}

const NAME_MAX: usize = 128;

fn optional(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// A name as it is stored and published: Unicode NFC (an `é` typed as `e` and a
/// combining accent is the one character `é`), no spaces around it, one space
/// between words (any run of white space, a no-break space included).
pub fn normalise_name(value: &str) -> String {
    let composed: String = value.nfc().collect();
    composed.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A character no one sees or that turns the text around: Unicode's format
/// characters (category Cf: zero-width space and joiners, right-to-left override and
/// isolates, soft hyphen, byte-order mark…).
fn is_format(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

/// Checks a name and returns it normalised ([`normalise_name`]). Control characters
/// and format characters are refused, never silently removed: a name is what the
/// person's papers say, and a hidden character is a mistake or a forgery.
fn check_name(field: &str, value: &str, required: bool, violations: &mut Violations) -> String {
    let name = normalise_name(value);
    if name.is_empty() {
        if required {
            violations.add(field, "required");
        }
    } else if name.chars().count() > NAME_MAX {
        violations.add(field, format!("longer than {NAME_MAX} characters"));
    } else if value.chars().any(char::is_control) {
        violations.add(field, "contains control characters");
    } else if let Some(hidden) = name.chars().find(|c| is_format(*c)) {
        violations.add(
            field,
            format!(
                "contains an invisible or direction-changing character (U+{:04X})",
                u32::from(hidden)
            ),
        );
    } else if !name.chars().any(char::is_alphabetic) {
        violations.add(field, "contains no letter");
    }
    name
}

/// What a login of the university is, as error messages say it.
pub const LOGIN_RULE: &str = "a login: 1 to 64 of a-z, 0-9, '.', '-' and '_', starting with a letter or a digit (e.g. jean.dupont)";

/// A login of the university, as `hosted-identity` says (the rule directory applies
/// too): nothing that could end or extend an LDAP name or a SupAnn composite (`,`,
/// `=`, `[`, `]`, spaces).
pub use super::names::is_login;

/// Checks a sponsor's login, when one is given: trimmed and lower-cased (logins are
/// case-insensitive: `Jean.Dupont` is `jean.dupont`), then its form. Whether the
/// directory has such a person is not intake's to say.
pub fn check_sponsor_login(
    field: &str,
    value: &str,
    violations: &mut Violations,
) -> Option<String> {
    let login = optional(value)?.to_ascii_lowercase();
    if !is_login(&login) {
        violations.add(field, format!("{:?} is not {LOGIN_RULE}", value.trim()));
    }
    Some(login)
}

/// How far ahead a stay may start, by default: two years.
pub const DEFAULT_MAX_START_AHEAD_DAYS: u32 = 730;

/// Parses a `YYYY-MM-DD` day; `None` (with a violation) when absent or malformed.
pub fn parse_date(field: &str, value: &str, violations: &mut Violations) -> Option<Date> {
    let value = value.trim();
    if value.is_empty() {
        violations.add(field, "required (YYYY-MM-DD)");
        return None;
    }
    match parse_day(value) {
        Some(date) => Some(date),
        None => {
            violations.add(field, format!("{value:?} is not a date YYYY-MM-DD"));
            None
        }
    }
}

pub fn format_date(date: Date) -> String {
    format_day(date)
}

/// A deliberately plain check: one `@`, something before it, a dotted domain after
/// it, no spaces. Deliverability is the mail system's business.
fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && value.len() <= 254
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with(['.', '-'])
        && !domain.contains("..")
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// INE formats (11 characters): INE-RNIE, INE-BEA, base 36, apprenticeship. There is no
/// public check-key rule: the format is what can be checked.
pub fn is_ine(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() != 11 || !value.is_ascii() {
        return false;
    }
    let digit = |b: &u8| b.is_ascii_digit();
    let upper = |b: &u8| b.is_ascii_uppercase();
    let rnie = bytes[..9].iter().all(digit) && bytes[9..].iter().all(upper);
    let bea = bytes[..10].iter().all(digit) && upper(&bytes[10]);
    let base36 = bytes[..10].iter().all(|b| digit(b) || upper(b)) && digit(&bytes[10]);
    let apprenticeship = bytes[..4].iter().all(digit)
        && bytes[4] == b'A'
        && bytes[5..10].iter().all(digit)
        && upper(&bytes[10]);
    rnie || bea || base36 || apprenticeship
}

/// Checks identity data alone (an amendment of a person).
pub fn validate_person(person: &PersonInput, today: Date) -> Result<NewPerson, Violations> {
    let mut violations = Violations::default();
    let person = check_person(person, today, &mut violations);
    violations.into_result(person)
}

fn check_person(person: &PersonInput, today: Date, violations: &mut Violations) -> NewPerson {
    let family_name = check_name("person.family_name", &person.family_name, true, violations);
    let birth_name = check_name("person.birth_name", &person.birth_name, false, violations);
    let given_names = check_name("person.given_names", &person.given_names, true, violations);
    let birth_date = parse_date("person.birth_date", &person.birth_date, violations);
    if let Some(birth_date) = birth_date {
        let oldest =
            Date::from_calendar_date(today.year() - 100, Month::January, 1).unwrap_or(Date::MIN);
        let youngest = today.replace_year(today.year() - 14).unwrap_or(today);
        if birth_date < oldest || birth_date > youngest {
            violations.add(
                "person.birth_date",
                format!(
                    "{} is not a plausible birth date for a learner",
                    format_date(birth_date)
                ),
            );
        }
    }
    let email = person.email.trim().to_owned();
    if email.is_empty() {
        violations.add("person.email", "required");
    } else if !is_email(&email) {
        violations.add("person.email", "not an e-mail address");
    }
    let ine = optional(&person.ine).map(|ine| ine.to_ascii_uppercase());
    if let Some(ine) = &ine
        && !is_ine(ine)
    {
        violations.add("person.ine", "not an INE (11 characters, e.g. 123456789AB)");
    }
    let phone = optional(&person.phone);
    if let Some(phone) = &phone
        && (phone.len() > 32
            || !phone
                .chars()
                .all(|c| c.is_ascii_digit() || " +-.()".contains(c)))
    {
        violations.add("person.phone", "not a telephone number");
    }

    NewPerson {
        family_name,
        birth_name: (!birth_name.is_empty()).then_some(birth_name),
        given_names,
        birth_date: birth_date.unwrap_or(today),
        email,
        ine,
        phone,
    }
}

/// Checks a registration. `population` is the catalogue's entry for
/// `stay.population`, `unit` the unit catalogue's entry for `stay.sponsor_unit` (as
/// [`unit::normalise_code`] gives it), when there is one; a stay may start at most
/// `max_start_ahead_days` after `today`, which also anchors the plausibility checks.
pub fn validate(
    person: &PersonInput,
    stay: &StayInput,
    population: Option<&Population>,
    unit: Option<&Unit>,
    max_start_ahead_days: u32,
    today: Date,
) -> Result<Registration, Violations> {
    let mut violations = Violations::default();
    let person = check_person(person, today, &mut violations);
    let population_code = stay.population.trim().to_owned();
    if population_code.is_empty() {
        violations.add("stay.population", "required");
    } else if population.is_none() {
        violations.add(
            "stay.population",
            format!("{population_code:?} is not in the population catalogue"),
        );
    }
    let sponsor_unit = unit::check_sponsor_unit(
        "stay.sponsor_unit",
        &stay.sponsor_unit,
        unit,
        &mut violations,
    );
    let sponsor_login =
        check_sponsor_login("stay.sponsor_login", &stay.sponsor_login, &mut violations);
    let agreement_id = match optional(&stay.agreement_id) {
        Some(id) => match Uuid::parse_str(&id) {
            Ok(id) => Some(id),
            Err(_) => {
                violations.add("stay.agreement_id", "not an agreement id");
                None
            }
        },
        None => {
            if let Some(population) = population
                && population.agreement_required
            {
                violations.add(
                    "stay.agreement_id",
                    format!(
                        "required: population {} needs an agreement",
                        population.code
                    ),
                );
            }
            None
        }
    };
    let start_date = parse_date("stay.start_date", &stay.start_date, &mut violations);
    let end_date = parse_date("stay.end_date", &stay.end_date, &mut violations);
    if let Some(start) = start_date {
        let latest = today + Duration::days(i64::from(max_start_ahead_days));
        if start > latest {
            violations.add(
                "stay.start_date",
                format!(
                    "more than {max_start_ahead_days} days ahead (the latest start is {}): register the stay nearer to it",
                    format_date(latest)
                ),
            );
        }
    }
    if let (Some(start), Some(end)) = (start_date, end_date) {
        if end < start {
            violations.add("stay.end_date", "before stay.start_date");
        } else if let Some(population) = population {
            let days = (end - start).whole_days() + 1;
            if days > i64::from(population.max_duration_days) {
                violations.add(
                    "stay.end_date",
                    format!(
                        "the stay lasts {days} days; population {} allows at most {}",
                        population.code, population.max_duration_days
                    ),
                );
            }
        }
        if end < today {
            violations.add(
                "stay.end_date",
                "in the past: a stay that has ended cannot be registered",
            );
        }
    }
    let requested_resources = resources::check_requested_resources(
        "stay.requested_resources",
        &stay.requested_resources,
        &mut violations,
    );

    violations.into_result(()).map(|()| Registration {
        person,
        stay: NewStay {
            population: population_code,
            sponsor_unit,
            sponsor_login,
            agreement_id,
            start_date: start_date.unwrap_or(today),
            end_date: end_date.unwrap_or(today),
            requested_resources,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn ifsi() -> Population {
        Population {
            code: "IFSI".to_owned(),
            label: "Nursing".to_owned(),
            supann_population: "AX".to_owned(),
            agreement_required: false,
            default_duration_days: 365,
            max_duration_days: 400,
            payment_required: false,
            fee_cents: Some(17_000),
        }
    }

    #[test]
    fn a_population_definition_is_checked() {
        assert_eq!(ifsi().check(), Ok(()));
        let bad = Population {
            code: "ifsi".to_owned(),
            label: " ".to_owned(),
            supann_population: "a x".to_owned(),
            agreement_required: false,
            default_duration_days: 0,
            max_duration_days: 5000,
            payment_required: false,
            fee_cents: Some(-1),
        };
        let fields: Vec<String> = bad
            .check()
            .expect_err("invalid")
            .0
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            [
                "population.code",
                "population.label",
                "population.supann_population",
                "population.default_duration_days",
                "population.max_duration_days",
                "population.fee_cents"
            ]
        );
    }

    fn person() -> PersonInput {
        PersonInput {
            family_name: "Lefèvre".to_owned(),
            given_names: "Élodie".to_owned(),
            birth_date: "2001-02-03".to_owned(),
            email: "elodie@example.org".to_owned(),
            ..PersonInput::default()
        }
    }

    fn stay() -> StayInput {
        StayInput {
            population: "IFSI".to_owned(),
            sponsor_unit: "IFSI-NORD".to_owned(),
            start_date: "2026-09-01".to_owned(),
            end_date: "2027-06-30".to_owned(),
            ..StayInput::default()
        }
    }

    const TODAY: Date = date!(2026 - 08 - 15);
    const HORIZON: u32 = DEFAULT_MAX_START_AHEAD_DAYS;

    fn nord() -> Unit {
        Unit {
            code: "IFSI-NORD".to_owned(),
            kind: "school".to_owned(),
            label: "Nursing school, north site".to_owned(),
        }
    }

    fn fields(violations: &Violations) -> Vec<&str> {
        violations.0.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn names_are_normalised_at_the_door() {
        let mut spaced = person();
        spaced.family_name = "  Du  Pont\u{a0} ".to_owned();
        // "Élodie" written with a combining acute accent (NFD).
        spaced.given_names = " E\u{301}lodie \t  Anne".to_owned();
        let violations = validate_person(&spaced, TODAY).expect_err("a tab is a control character");
        assert_eq!(fields(&violations), ["person.given_names"]);

        spaced.given_names = " E\u{301}lodie    Anne ".to_owned();
        let person = validate_person(&spaced, TODAY).expect("valid");
        assert_eq!(person.family_name, "Du Pont");
        assert_eq!(person.given_names, "\u{c9}lodie Anne");
        assert_eq!(normalise_name("  "), "");
    }

    #[test]
    fn invisible_and_direction_changing_characters_are_refused() {
        for hidden in [
            '\u{200b}', '\u{202e}', '\u{2066}', '\u{ad}', '\u{feff}', '\u{200d}',
        ] {
            let mut forged = person();
            forged.family_name = format!("Du{hidden}pont");
            forged.birth_name = format!("{hidden}Martin");
            let violations = validate_person(&forged, TODAY).expect_err("refused");
            assert_eq!(
                fields(&violations),
                ["person.family_name", "person.birth_name"],
                "{hidden:?}"
            );
            assert!(
                violations.0[0]
                    .reason
                    .contains("invisible or direction-changing"),
                "{violations:?}"
            );
        }
    }

    #[test]
    fn sponsor_fields_are_checked() {
        for (unit, login) in [
            ("IFSI\nNORD", "nobody here"),
            ("ifsi nord", "jean,ou=evil"),
            ("IFSI][affil=staff", "-jean"),
        ] {
            let mut forged = stay();
            forged.sponsor_unit = unit.to_owned();
            forged.sponsor_login = login.to_owned();
            let violations = validate(&person(), &forged, Some(&ifsi()), None, HORIZON, TODAY)
                .expect_err("refused");
            assert_eq!(
                fields(&violations),
                ["stay.sponsor_unit", "stay.sponsor_login"],
                "{unit:?} {login:?}"
            );
        }
        let mut unknown = stay();
        unknown.sponsor_unit = "LAB-NOWHERE".to_owned();
        let violations = validate(&person(), &unknown, Some(&ifsi()), None, HORIZON, TODAY)
            .expect_err("refused");
        assert!(
            violations.0[0].reason.contains("not in the unit catalogue"),
            "{violations:?}"
        );

        let mut sponsored = stay();
        sponsored.sponsor_unit = " ifsi-nord ".to_owned();
        sponsored.sponsor_login = " Jean.Dupont ".to_owned();
        let registration = validate(
            &person(),
            &sponsored,
            Some(&ifsi()),
            Some(&nord()),
            HORIZON,
            TODAY,
        )
        .expect("valid");
        assert_eq!(registration.stay.sponsor_unit, "IFSI-NORD");
        assert_eq!(
            registration.stay.sponsor_login.as_deref(),
            Some("jean.dupont")
        );
    }

    #[test]
    fn a_stay_starts_within_the_horizon() {
        let mut far = stay();
        far.start_date = "9999-01-01".to_owned();
        far.end_date = "9999-06-30".to_owned();
        let violations = validate(
            &person(),
            &far,
            Some(&ifsi()),
            Some(&nord()),
            HORIZON,
            TODAY,
        )
        .expect_err("refused");
        assert_eq!(fields(&violations), ["stay.start_date"]);
        assert!(
            violations.0[0].reason.contains("2028-08-14"),
            "{violations:?}"
        );

        let mut last = stay();
        last.start_date = "2028-08-14".to_owned();
        last.end_date = "2028-12-31".to_owned();
        assert!(
            validate(
                &person(),
                &last,
                Some(&ifsi()),
                Some(&nord()),
                HORIZON,
                TODAY
            )
            .is_ok()
        );
        assert!(validate(&person(), &last, Some(&ifsi()), Some(&nord()), 30, TODAY).is_err());
    }

    #[test]
    fn a_complete_registration_is_valid() {
        let registration = validate(
            &person(),
            &stay(),
            Some(&ifsi()),
            Some(&nord()),
            HORIZON,
            TODAY,
        )
        .expect("valid");
        assert_eq!(registration.person.birth_date, date!(2001 - 02 - 03));
        assert_eq!(registration.stay.end_date, date!(2027 - 06 - 30));
        assert_eq!(registration.person.ine, None);
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let person = PersonInput {
            family_name: " ".to_owned(),
            given_names: "Élodie".to_owned(),
            birth_date: "2001-13-03".to_owned(),
            email: "elodie.example.org".to_owned(),
            ine: "12345".to_owned(),
            ..PersonInput::default()
        };
        let stay = StayInput {
            population: "IFSI".to_owned(),
            sponsor_unit: String::new(),
            start_date: "2027-06-30".to_owned(),
            end_date: "2026-09-01".to_owned(),
            ..StayInput::default()
        };
        let violations = validate(&person, &stay, Some(&ifsi()), Some(&nord()), HORIZON, TODAY)
            .expect_err("invalid")
            .0;
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "person.family_name",
                "person.birth_date",
                "person.email",
                "person.ine",
                "stay.sponsor_unit",
                "stay.end_date"
            ]
        );
    }

    #[test]
    fn unknown_population_and_too_long_stay() {
        let mut long = stay();
        long.end_date = "2028-06-30".to_owned();
        let violations = validate(
            &person(),
            &long,
            Some(&ifsi()),
            Some(&nord()),
            HORIZON,
            TODAY,
        )
        .expect_err("too long")
        .0;
        assert!(
            violations[0].reason.contains("at most 400"),
            "{violations:?}"
        );
        let violations = validate(&person(), &stay(), None, Some(&nord()), HORIZON, TODAY)
            .expect_err("unknown")
            .0;
        assert_eq!(violations[0].field, "stay.population");
    }

    #[test]
    fn requested_resources_are_checked_with_the_rest_of_the_stay() {
        let mut asking = stay();
        asking.requested_resources = vec!["premises ".to_owned(), "library".to_owned()];
        let registration = validate(
            &person(),
            &asking,
            Some(&ifsi()),
            Some(&nord()),
            HORIZON,
            TODAY,
        )
        .expect("valid");
        assert_eq!(
            registration.stay.requested_resources,
            ["library", "premises"]
        );

        asking.sponsor_unit = String::new();
        asking.requested_resources.push("Lab 3".to_owned());
        let violations = validate(
            &person(),
            &asking,
            Some(&ifsi()),
            Some(&nord()),
            HORIZON,
            TODAY,
        )
        .expect_err("invalid")
        .0;
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["stay.sponsor_unit", "stay.requested_resources[2]"]);
    }

    #[test]
    fn an_agreement_is_required_where_the_population_says_so() {
        let mut population = ifsi();
        population.agreement_required = true;
        let violations = validate(
            &person(),
            &stay(),
            Some(&population),
            Some(&nord()),
            HORIZON,
            TODAY,
        )
        .expect_err("no agreement")
        .0;
        assert_eq!(violations[0].field, "stay.agreement_id");
    }

    #[test]
    fn ine_formats() {
        for valid in ["123456789AB", "1234567890A", "0A1B2C3D4E5", "1234A12345B"] {
            assert!(is_ine(valid), "{valid}");
        }
        for invalid in ["123456789ab", "12345678AB", "1234567890AB", "ÉÉÉÉÉÉÉÉÉÉÉ"] {
            assert!(!is_ine(invalid), "{invalid}");
        }
    }

    #[test]
    fn emails() {
        assert!(is_email("a.b+c@univ-example.fr"));
        for invalid in ["a@b", "@b.fr", "a b@c.fr", "a@b..fr", "a@@b.fr", "a@.b.fr"] {
            assert!(!is_email(invalid), "{invalid}");
        }
    }
}
