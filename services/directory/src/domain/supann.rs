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
        }
    }
}
