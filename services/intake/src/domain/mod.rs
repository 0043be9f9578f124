//! The rules of registration, as pure functions over plain types: no tonic, no sqlx.

pub mod admission;
pub mod agreement;
pub mod amendment;
pub mod erasure;
pub mod lock;
pub mod names;
pub mod registration;
pub mod resources;
pub mod stay;
pub mod unit;
pub mod validity;

#[cfg(test)]
mod properties;

pub use registration::{NewPerson, NewStay, Population, Registration};
pub use unit::Unit;

use hosted_platform::error::Violations;

/// Every change says why: a reason is required, 500 characters at most.
pub fn require_reason(reason: &str, violations: &mut Violations) {
    if reason.trim().is_empty() {
        violations.add("reason", "required: say why");
    } else if reason.chars().count() > 500 {
        violations.add("reason", "longer than 500 characters");
    }
}

/// `checked` with its reason checked beside it: every problem reported at once.
pub fn with_reason<T>(checked: Result<T, Violations>, reason: &str) -> Result<T, Violations> {
    let mut violations = Violations::default();
    let value = checked.map_err(|problems| violations.0.extend(problems.0));
    require_reason(reason, &mut violations);
    match value {
        Ok(value) if violations.is_empty() => Ok(value),
        _ => Err(violations),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_reason_is_reported_with_the_other_problems() {
        let mut bad = Violations::default();
        bad.add("unit.code", "not a code");
        let fields = |result: Result<(), Violations>| -> Vec<String> {
            result
                .expect_err("refused")
                .0
                .into_iter()
                .map(|v| v.field)
                .collect()
        };
        assert_eq!(fields(with_reason(Err(bad), " ")), ["unit.code", "reason"]);
        assert_eq!(fields(with_reason(Ok(()), &"x".repeat(501))), ["reason"]);
        assert_eq!(with_reason(Ok(7), "moved lab"), Ok(7));
    }
}
