//! The unit catalogue: the university's sites, labs, schools and services that host
//! learners. A stay's `sponsor_unit` is a code of it; the code ends up in directory
//! entries (`supannEntiteAffectation`, SupAnn composites), so its form is narrow.

use hosted_platform::error::Violations;

/// The kinds of unit the catalogue holds.
pub const KINDS: &[&str] = &["site", "lab", "school", "service"];

/// What a unit code is, as error messages say it.
pub const CODE_RULE: &str =
    "2 to 32 of A-Z, 0-9, '-' and '_', starting with a letter or a digit (e.g. IFSI-NORD)";

/// A unit of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub code: String,
    /// One of [`KINDS`].
    pub kind: String,
    pub label: String,
}

/// A code as written in a file or a form: without surrounding spaces, upper-case
/// (`ifsi-nord` is `IFSI-NORD`). Anything else stays, for [`is_code`] to judge.
pub fn normalise_code(value: &str) -> String {
    value.trim().to_ascii_uppercase()
}

/// Upper-case letters, digits, `-` and `_` only: nothing that could close or open a
/// SupAnn composite (`[`, `]`, `=`), separate an LDAP name (`,`, `+`) or a line.
pub fn is_code(code: &str) -> bool {
    (2..=32).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_uppercase() || c.is_ascii_digit())
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Checks a stay's unit: its form, then that the catalogue has it (`unit` is the
/// catalogue's entry for the normalised code, when there is one). Returns the
/// normalised code.
pub fn check_sponsor_unit(
    field: &str,
    value: &str,
    unit: Option<&Unit>,
    violations: &mut Violations,
) -> String {
    let code = normalise_code(value);
    if code.is_empty() {
        violations.add(field, "required");
    } else if !is_code(&code) {
        violations.add(
            field,
            format!("{:?} is not a unit code: {CODE_RULE}", value.trim()),
        );
    } else if unit.is_none() {
        violations.add(field, not_in_catalogue(&code));
    }
    code
}

/// Why a well-formed code is refused.
pub fn not_in_catalogue(code: &str) -> String {
    format!("{code:?} is not in the unit catalogue (`hlctl units` lists them)")
}

impl Unit {
    /// Checks a unit definition before it enters the catalogue.
    pub fn check(&self) -> Result<(), Violations> {
        let mut violations = Violations::default();
        if !is_code(&self.code) {
            violations.add("unit.code", CODE_RULE);
        }
        if !KINDS.contains(&self.kind.as_str()) {
            violations.add("unit.kind", format!("one of {}", KINDS.join(", ")));
        }
        if self.label.trim().is_empty() {
            violations.add("unit.label", "required");
        } else if self.label.chars().count() > 200 {
            violations.add("unit.label", "longer than 200 characters");
        } else if self.label.chars().any(char::is_control) {
            violations.add("unit.label", "contains control characters");
        }
        violations.into_result(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> Unit {
        Unit {
            code: "LAB-CHEM".to_owned(),
            kind: "lab".to_owned(),
            label: "Chemistry laboratory".to_owned(),
        }
    }

    #[test]
    fn unit_codes() {
        for valid in ["IFSI-NORD", "INSPE", "ED-SPI", "LAB_7290", "7290"] {
            assert!(is_code(valid), "{valid}");
        }
        for invalid in [
            "IFSI\nNORD",
            "IFSI NORD",
            "ifsi-nord",
            "IFSI][affil=staff",
            "IFSI,OU=X",
            "-IFSI",
            "I",
            "ÉCOLE",
            &"A".repeat(33),
        ] {
            assert!(!is_code(invalid), "{invalid:?}");
        }
        assert_eq!(normalise_code(" ifsi-nord "), "IFSI-NORD");
    }

    #[test]
    fn a_sponsor_unit_is_a_code_of_the_catalogue() {
        let mut violations = Violations::default();
        let known = lab();
        assert_eq!(
            check_sponsor_unit(
                "stay.sponsor_unit",
                "lab-chem",
                Some(&known),
                &mut violations
            ),
            "LAB-CHEM"
        );
        assert!(violations.is_empty());
        check_sponsor_unit("stay.sponsor_unit", "LAB-NOWHERE", None, &mut violations);
        check_sponsor_unit(
            "stay.sponsor_unit",
            "IFSI][affil=staff",
            None,
            &mut violations,
        );
        check_sponsor_unit("stay.sponsor_unit", " ", None, &mut violations);
        let reasons: Vec<&str> = violations.0.iter().map(|v| v.reason.as_str()).collect();
        assert!(
            reasons[0].contains("not in the unit catalogue"),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("is not a unit code"), "{reasons:?}");
        assert_eq!(reasons[2], "required");
    }

    #[test]
    fn a_unit_definition_is_checked() {
        assert_eq!(lab().check(), Ok(()));
        let bad = Unit {
            code: "lab chem".to_owned(),
            kind: "faculty".to_owned(),
            label: " ".to_owned(),
        };
        let fields: Vec<String> = bad
            .check()
            .expect_err("invalid")
            .0
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["unit.code", "unit.kind", "unit.label"]);
    }
}
