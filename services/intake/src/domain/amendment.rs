//! A correction of a person's identity: what the caller leaves blank keeps its value.

use super::registration::{PersonInput, format_date};

/// The identity as it is, in the form a caller gives one.
#[derive(Debug, Clone)]
pub struct CurrentPerson<'a> {
    pub family_name: &'a str,
    pub birth_name: Option<&'a str>,
    pub given_names: &'a str,
    pub birth_date: time::Date,
    pub email: &'a str,
    pub ine: Option<&'a str>,
    pub phone: Option<&'a str>,
}

/// `given` over `current`: a blank field keeps the current value (a correction names
/// only what it corrects).
pub fn merge(current: &CurrentPerson<'_>, given: PersonInput) -> PersonInput {
    let keep = |given: String, current: &str| {
        if given.trim().is_empty() {
            current.to_owned()
        } else {
            given
        }
    };
    PersonInput {
        family_name: keep(given.family_name, current.family_name),
        birth_name: keep(given.birth_name, current.birth_name.unwrap_or_default()),
        given_names: keep(given.given_names, current.given_names),
        birth_date: keep(given.birth_date, &format_date(current.birth_date)),
        email: keep(given.email, current.email),
        ine: keep(given.ine, current.ine.unwrap_or_default()),
        phone: keep(given.phone, current.phone.unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn blank_fields_keep_their_value() {
        let current = CurrentPerson {
            family_name: "Martin",
            birth_name: Some("Dupont"),
            given_names: "Léa",
            birth_date: date!(2000 - 01 - 02),
            email: "lea@example.org",
            ine: None,
            phone: Some("0600000000"),
        };
        let merged = merge(
            &current,
            PersonInput {
                ine: "123456789AB".to_owned(),
                email: "  ".to_owned(),
                ..PersonInput::default()
            },
        );
        assert_eq!(merged.family_name, "Martin");
        assert_eq!(merged.birth_name, "Dupont");
        assert_eq!(merged.birth_date, "2000-01-02");
        assert_eq!(merged.email, "lea@example.org");
        assert_eq!(merged.ine, "123456789AB");
        assert_eq!(merged.phone, "0600000000");
    }
}
