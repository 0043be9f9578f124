//! Erasure of a person's identity (GDPR): why it is asked, the reference it may cite,
//! and the keyed digest that keeps an erased login from being given again.

use hmac::{Hmac, Mac};
use hosted_platform::error::Violations;
use sha2::Sha256;

/// Why an operator erases a person (ErasePerson's reason code). Codes, not free text:
/// the audit trail keeps them, and a free text would invite personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasureReason {
    /// The person asked (GDPR article 17).
    DataSubjectRequest,
    /// The record is a duplicate of another learner's, or registered by mistake.
    DuplicateRecord,
    /// A law, a court or the CNIL requires it.
    LegalObligation,
    /// The data was processed unlawfully (GDPR article 17.1.d) or consent withdrawn.
    UnlawfulProcessing,
}

impl ErasureReason {
    pub const ALL: [ErasureReason; 4] = [
        ErasureReason::DataSubjectRequest,
        ErasureReason::DuplicateRecord,
        ErasureReason::LegalObligation,
        ErasureReason::UnlawfulProcessing,
    ];

    pub const fn code(self) -> &'static str {
        match self {
            ErasureReason::DataSubjectRequest => "data-subject-request",
            ErasureReason::DuplicateRecord => "duplicate-record",
            ErasureReason::LegalObligation => "legal-obligation",
            ErasureReason::UnlawfulProcessing => "unlawful-processing",
        }
    }
}

/// The reason behind a typed code (any case), or a violation on `reason`.
pub fn parse_reason(code: &str, violations: &mut Violations) -> Option<ErasureReason> {
    let code = code.trim().to_ascii_lowercase();
    let reason = ErasureReason::ALL
        .into_iter()
        .find(|reason| reason.code() == code);
    if reason.is_none() {
        let known: Vec<&str> = ErasureReason::ALL.iter().map(|r| r.code()).collect();
        violations.add(
            "reason",
            if code.is_empty() {
                format!("required: one of {}", known.join(", "))
            } else {
                format!("unknown reason code: one of {}", known.join(", "))
            },
        );
    }
    reason
}

/// A reference is a ticket or case number (`DPO-2026-0042`): letters, digits and
/// `-_./#:`, 64 at most. A space or an `@` is refused, so that a name or an e-mail
/// cannot be written where only a number belongs.
pub fn check_reference(reference: &str, violations: &mut Violations) -> Option<String> {
    let reference = reference.trim();
    if reference.chars().count() > 64 {
        violations.add("reference", "longer than 64 characters");
        return None;
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_./#:".contains(c);
    if !reference.chars().all(allowed) {
        violations.add(
            "reference",
            "a ticket or case number only (letters, digits, - _ . / # :), never personal data",
        );
        return None;
    }
    (!reference.is_empty()).then(|| reference.to_owned())
}

/// The secret key of erased logins' digests (`[retention] login_key`), never printed.
#[derive(Clone, Default)]
pub struct LoginKey(std::sync::Arc<[u8]>);

impl LoginKey {
    pub fn new(key: &str) -> Self {
        Self(key.as_bytes().into())
    }

    /// See [`login_digest`].
    pub fn digest(&self, login: &str) -> Vec<u8> {
        login_digest(&self.0, login)
    }
}

impl std::fmt::Debug for LoginKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginKey(<secret>)")
    }
}

/// The keyed digest of a login (HMAC-SHA-256 under the configured key), as
/// `erased_logins` holds it: who has the key can check a candidate login, nobody can
/// read one back.
pub fn login_digest(key: &[u8], login: &str) -> Vec<u8> {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        unreachable!("HMAC accepts keys of every length")
    };
    mac.update(login.trim().to_ascii_lowercase().as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_read_in_any_case_and_unknown_ones_are_named() {
        let mut violations = Violations::default();
        assert_eq!(
            parse_reason(" Data-Subject-Request ", &mut violations),
            Some(ErasureReason::DataSubjectRequest)
        );
        assert!(violations.is_empty());
        assert_eq!(parse_reason("because", &mut violations), None);
        assert_eq!(parse_reason("", &mut violations), None);
        assert_eq!(violations.0.len(), 2);
        assert!(violations.0.iter().all(|v| v.field == "reason"));
    }

    #[test]
    fn a_reference_is_a_number_never_a_name_or_an_email() {
        let mut violations = Violations::default();
        assert_eq!(
            check_reference("DPO-2026/0042", &mut violations),
            Some("DPO-2026/0042".to_owned())
        );
        assert_eq!(check_reference("", &mut violations), None);
        assert!(violations.is_empty());
        assert_eq!(check_reference("Jean Dupont", &mut violations), None);
        assert_eq!(check_reference("jean@example.org", &mut violations), None);
        assert_eq!(check_reference(&"x".repeat(65), &mut violations), None);
        assert_eq!(violations.0.len(), 3);
    }

    #[test]
    fn a_login_digest_depends_on_the_key_and_ignores_case() {
        let digest = login_digest(b"key one", "paul.durand");
        assert_eq!(digest.len(), 32);
        assert_eq!(digest, login_digest(b"key one", " PAUL.DURAND"));
        assert_ne!(digest, login_digest(b"key two", "paul.durand"));
        assert_ne!(digest, login_digest(b"key one", "paul.durand2"));
    }
}
