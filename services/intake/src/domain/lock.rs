//! Locks (suspensions): the reasons a learner can be locked for, each of one of the
//! two kinds SupAnn 2021 names.

use hosted_platform::error::Violations;

/// What a lock says: an administrative or a technical suspension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Administrative,
    Technical,
}

/// Why a learner is locked, as a code programs can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockReason {
    Misconduct,
    Fraud,
    Unpaid,
    /// A compromised account.
    Compromised,
    /// Someone else's account was mistaken for theirs.
    Namesake,
}

impl LockReason {
    pub const ALL: [LockReason; 5] = [
        LockReason::Misconduct,
        LockReason::Fraud,
        LockReason::Unpaid,
        LockReason::Compromised,
        LockReason::Namesake,
    ];

    pub const fn code(self) -> &'static str {
        match self {
            LockReason::Misconduct => "misconduct",
            LockReason::Fraud => "fraud",
            LockReason::Unpaid => "unpaid",
            LockReason::Compromised => "compromised",
            LockReason::Namesake => "namesake",
        }
    }

    pub const fn kind(self) -> LockKind {
        match self {
            LockReason::Misconduct | LockReason::Fraud | LockReason::Unpaid => {
                LockKind::Administrative
            }
            LockReason::Compromised | LockReason::Namesake => LockKind::Technical,
        }
    }

    /// The reason behind a stored or typed code (any case), if it is one.
    pub fn from_code(code: &str) -> Option<LockReason> {
        let code = code.trim().to_ascii_lowercase();
        LockReason::ALL
            .into_iter()
            .find(|reason| reason.code() == code)
    }
}

/// The free-text note of a lock or unlock: optional, 500 characters at most.
pub fn check_note(note: &str, violations: &mut Violations) {
    if note.chars().count() > 500 {
        violations.add("note", "longer than 500 characters");
    }
}

/// The reason code of a lock request, or the violation that says which codes exist.
pub fn parse_reason(code: &str, violations: &mut Violations) -> Option<LockReason> {
    if code.trim().is_empty() {
        violations.add(
            "reason",
            "required: misconduct, fraud, unpaid (administrative), compromised or namesake (technical)",
        );
        return None;
    }
    let reason = LockReason::from_code(code);
    if reason.is_none() {
        violations.add(
            "reason",
            "unknown reason: misconduct, fraud, unpaid (administrative), compromised or namesake (technical)",
        );
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_kind_and_reads_back_from_its_code() {
        for reason in LockReason::ALL {
            assert_eq!(LockReason::from_code(reason.code()), Some(reason));
        }
        assert_eq!(LockReason::Fraud.kind(), LockKind::Administrative);
        assert_eq!(LockReason::Unpaid.kind(), LockKind::Administrative);
        assert_eq!(LockReason::Compromised.kind(), LockKind::Technical);
        assert_eq!(LockReason::Namesake.kind(), LockKind::Technical);
        assert_eq!(LockReason::from_code(" FRAUD "), Some(LockReason::Fraud));
        assert_eq!(LockReason::from_code("vandalism"), None);
    }

    #[test]
    fn a_reason_is_required_and_must_be_a_code() {
        let mut violations = Violations::default();
        assert_eq!(parse_reason("", &mut violations), None);
        assert_eq!(parse_reason("because", &mut violations), None);
        check_note(&"x".repeat(501), &mut violations);
        let fields: Vec<&str> = violations.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["reason", "reason", "note"]);
    }
}
