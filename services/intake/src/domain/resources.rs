//! The resources a sponsor asks for a stay. Intake checks their form only: which
//! resources exist, and what asking for one grants, is the entitlement policy's
//! business, and a name the policy does not know yet is not intake's to refuse.

use std::collections::HashMap;

use hosted_platform::error::Violations;

/// The longest resource name (`^[a-z0-9][a-z0-9-]{0,62}$`).
pub const RESOURCE_NAME_MAX: usize = 63;

/// A policy resource name: 1 to 63 of `a-z`, `0-9` and `-`, not starting with `-`.
pub fn is_resource_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.len() <= RESOURCE_NAME_MAX
        && allowed(first)
        && bytes[1..].iter().all(|b| allowed(b) || *b == b'-')
}

/// Checks the names as given, each reported under `field[index]`; returns them
/// trimmed and sorted (what is stored and published).
pub fn check_requested_resources(
    field: &str,
    names: &[String],
    violations: &mut Violations,
) -> Vec<String> {
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    let mut checked = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let name = name.trim();
        let path = format!("{field}[{index}]");
        if name.is_empty() {
            violations.add(path, "empty: a resource name is required");
        } else if !is_resource_name(name) {
            violations.add(
                path,
                format!(
                    "{name:?} is not a resource name: 1 to {RESOURCE_NAME_MAX} lower-case letters, \
                     digits and dashes, starting with a letter or a digit"
                ),
            );
        } else if let Some(first) = first_index.get(name) {
            violations.add(path, format!("{name:?} is already {field}[{first}]"));
        } else {
            first_index.insert(name, index);
            checked.push(name.to_owned());
        }
    }
    checked.sort();
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    #[test]
    fn names_are_trimmed_and_sorted() {
        let mut violations = Violations::default();
        let checked = check_requested_resources(
            "stay.requested_resources",
            &names(&[" premises", "library ", "wifi-eduroam", "0day"]),
            &mut violations,
        );
        assert!(violations.is_empty(), "{violations:?}");
        assert_eq!(checked, ["0day", "library", "premises", "wifi-eduroam"]);
    }

    #[test]
    fn every_bad_name_is_reported_by_its_index() {
        let too_long = "a".repeat(RESOURCE_NAME_MAX + 1);
        let mut violations = Violations::default();
        let checked = check_requested_resources(
            "stay.requested_resources",
            &names(&[
                "library",
                " ",
                "Premises",
                "-wifi",
                "smart_card",
                " library",
                &too_long,
                "carte-étudiant",
            ]),
            &mut violations,
        );
        let fields: Vec<&str> = violations.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "stay.requested_resources[1]",
                "stay.requested_resources[2]",
                "stay.requested_resources[3]",
                "stay.requested_resources[4]",
                "stay.requested_resources[5]",
                "stay.requested_resources[6]",
                "stay.requested_resources[7]",
            ]
        );
        assert!(
            violations.0[4]
                .reason
                .contains("already stay.requested_resources[0]"),
            "{violations:?}"
        );
        assert_eq!(checked, ["library"]);
    }

    #[test]
    fn the_longest_name_is_accepted() {
        assert!(is_resource_name(&"a".repeat(RESOURCE_NAME_MAX)));
        assert!(is_resource_name("9"));
        assert!(is_resource_name("a-"));
        assert!(!is_resource_name(""));
    }
}
