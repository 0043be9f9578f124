//! SupAnn 2021 facts the directory needs: the affiliations and weight of each
//! population code of the hosted learners' family, and account states.

/// The affiliations the SupAnn population table gives a code, and its weight (the
/// heaviest population gives the primary affiliation).
pub fn population(code: &str) -> Option<(&'static [&'static str], u32)> {
    Some(match code {
        "AHH" => (&["student"], 500),
        "AGG" => (&["student"], 460),
        "AX" => (&["student"], 180),
        "AHL" => (&["student"], 250),
        "RHJCF" => (&["faculty", "researcher", "member"], 580),
        "PXI" => (&["affiliate"], 300),
        "PXL" => (&["registered-reader"], 190),
        _ => return None,
    })
}

/// State and sub-state of the `{COMPTE}` resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    /// Operational, before the first stay starts.
    Anticipated,
    /// Operational, during a stay.
    Active,
    /// Operational still, in the grace period after the last stay.
    Grace,
    /// Every stay has ended, and the grace period too.
    Expired,
    /// Expired, and the data-deletion deadline is reached: the entry goes next.
    DataDeletion,
    /// No stay that counts (all cancelled).
    Inactive,
    /// Locked (suspended) for administrative reasons: misconduct, fraud, unpaid.
    LockedAdministrative,
    /// Locked for technical reasons: a compromised account, a namesake.
    LockedTechnical,
}

impl AccountState {
    pub fn supann(self) -> (&'static str, &'static str) {
        match self {
            AccountState::Anticipated => ("A", "SupannAnticipe"),
            AccountState::Active => ("A", "SupannActif"),
            AccountState::Grace => ("A", "SupannSursis"),
            AccountState::Expired => ("I", "SupannExpire"),
            AccountState::DataDeletion => ("I", "SupannSupprDonnees"),
            AccountState::Inactive => ("I", "SupannInactif"),
            AccountState::LockedAdministrative => ("S", "SupannVerrouAdministratif"),
            AccountState::LockedTechnical => ("S", "SupannVerrouTechnique"),
        }
    }
}

pub use hosted_identity::{logins::is_login as valid_login, uai::is_valid as valid_uai};

/// Whether `value` can be written as the value of one key of a SupAnn composite
/// (`[key=value]…`) without adding a key or ending the value early: no `[`, `]` or
/// `=`, and no control character. SupAnn defines no escape for these values, so a
/// value that does not fit is left out, never written raw.
pub fn fits_composite(value: &str) -> bool {
    !value.is_empty()
        && !value
            .chars()
            .any(|c| matches!(c, '[' | ']' | '=') || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_values_cannot_add_a_key() {
        assert!(fits_composite("IFSI-NORD"));
        assert!(fits_composite("Lab. chimie (site Nord)"));
        for value in ["", "IFSI][affil=staff", "a=b", "IFSI\nNORD", "x]"] {
            assert!(!fits_composite(value), "{value:?}");
        }
    }
}
