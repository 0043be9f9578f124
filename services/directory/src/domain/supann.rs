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

/// Whether `uai` is an establishment code: 7 digits and the key letter SupAnn
/// computes from them (`"ABCDEFGHJKLMNPRSTUVWXYZ"[digits mod 23]`).
pub fn valid_uai(uai: &str) -> bool {
    const KEYS: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ";
    let bytes = uai.as_bytes();
    bytes.len() == 8
        && bytes[..7].iter().all(u8::is_ascii_digit)
        && uai[..7]
            .parse::<usize>()
            .is_ok_and(|digits| KEYS[digits % 23] == bytes[7])
}

/// Whether `login` is syntactically a login of the university, as a sponsor is
/// named: 1 to 64 ASCII letters, digits, `.`, `_` or `-`, starting with a letter or
/// a digit. Nothing else (a comma, an `=`, a space) can then reach a DN.
pub fn valid_login(login: &str) -> bool {
    (1..=64).contains(&login.len())
        && login
            .bytes()
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric())
        && login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

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
    fn uai_keys() {
        assert!(valid_uai("0999999F"));
        assert!(valid_uai("0134009M"));
        assert!(!valid_uai("0134009N"));
        assert!(!valid_uai("013409M"));
        assert!(!valid_uai("0134009M]"));
    }

    #[test]
    fn sponsor_logins() {
        for login in ["marie.curie", "jdupont", "j-p_martin2", "A.B"] {
            assert!(valid_login(login), "{login}");
        }
        for login in [
            "",
            "jean,ou=evil",
            "a=b",
            ".leading",
            "with space",
            "crochet]",
            "élodie",
            &"x".repeat(65),
        ] {
            assert!(!valid_login(login), "{login:?}");
        }
    }

    #[test]
    fn composite_values_cannot_add_a_key() {
        assert!(fits_composite("IFSI-NORD"));
        assert!(fits_composite("Lab. chimie (site Nord)"));
        for value in ["", "IFSI][affil=staff", "a=b", "IFSI\nNORD", "x]"] {
            assert!(!fits_composite(value), "{value:?}");
        }
    }
}
