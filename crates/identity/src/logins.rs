//! How logins are made: a pattern over the names, in lower-case ASCII, never longer
//! than the configured maximum, a collision suffix included.
//!
//! - Names are transliterated as [`crate::transliteration`] says (`Ольга` → `olga`,
//!   `Ελένη` → `eleni`), then lower-cased; what is not a letter or a digit separates
//!   words, joined by `-` (`D'Arc` → `d-arc`).
//! - Only the first given name is used.
//! - A login longer than the maximum is cut; a cut that leaves a last word of one or
//!   two letters drops it (`maximilian.o-brien-s` → `maximilian.o-brien`), and no login
//!   ends with `.` or `-`.
//! - When a login is taken, the next candidates are the base followed by 2, 3…; the
//!   base is cut further so that the whole stays within the maximum
//!   (`giorgos.papadopoulo2` for a maximum of 20).
//! - A name with nothing that transliterates gives the base `learner`.

use crate::{names::first_given_name, transliteration::to_ascii};

/// Lower-case ASCII letters and digits, words joined by `-` (é→e, ß→ss, œ→oe).
fn login_part(name: &str) -> String {
    let ascii = to_ascii(name).to_ascii_lowercase();
    let mut part = String::with_capacity(ascii.len());
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            part.push(c);
        } else if !part.is_empty() && !part.ends_with('-') {
            part.push('-');
        }
    }
    part.trim_end_matches('-').to_owned()
}

/// `login` cut to at most `max` characters at a sensible place.
fn cut(login: &str, max: usize) -> String {
    if login.len() <= max {
        return login.to_owned();
    }
    // Logins are ASCII: bytes are characters.
    let mut kept = login[..max].to_owned();
    let word_broken = login
        .as_bytes()
        .get(max)
        .is_some_and(u8::is_ascii_alphanumeric);
    if word_broken
        && let Some(separator) = kept.rfind(['.', '-'])
        && kept.len() - separator - 1 < 3
        && separator > 0
    {
        kept.truncate(separator);
    }
    while kept.ends_with(['.', '-']) {
        kept.pop();
    }
    kept
}

/// A login pattern and the longest login it may give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPattern {
    /// `{given}`, `{family}` and `{g}` (the given name's initial) between literal
    /// lower-case letters, digits, `.` or `-`; e.g. `{given}.{family}` or `{g}{family}`.
    pattern: String,
    /// Longest login, suffix included, as many systems cap uid lengths.
    max_length: usize,
}

impl Default for LoginPattern {
    fn default() -> Self {
        Self {
            pattern: "{given}.{family}".to_owned(),
            max_length: 20,
        }
    }
}

impl LoginPattern {
    /// Checks a configured pattern.
    pub fn new(pattern: &str, max_length: usize) -> Result<Self, String> {
        if !(pattern.contains("{family}") || pattern.contains("{given}") || pattern.contains("{g}"))
        {
            return Err("must use {given}, {family} or {g}".to_owned());
        }
        let literal = pattern
            .replace("{given}", "")
            .replace("{family}", "")
            .replace("{g}", "");
        if !literal
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        {
            return Err("besides the placeholders, only a-z, 0-9, '.' and '-'".to_owned());
        }
        if !(3..=64).contains(&max_length) {
            return Err("the maximum length must be between 3 and 64".to_owned());
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            max_length,
        })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The login before any collision suffix (first given name only).
    pub fn base(&self, family_name: &str, given_names: &str) -> String {
        let given = login_part(first_given_name(given_names));
        let family = login_part(family_name);
        let initial: String = given.chars().take(1).collect();
        let mut base = self
            .pattern
            .replace("{given}", &given)
            .replace("{family}", &family)
            .replace("{g}", &initial);
        // A name with nothing ASCII left leaves separators around nothing.
        base = base.trim_matches(['.', '-']).to_owned();
        while base.contains("..") {
            base = base.replace("..", ".");
        }
        if base.is_empty() {
            base = "learner".to_owned();
        }
        cut(&base, self.max_length)
    }

    /// The n-th candidate login for `base`: the base, then base2, base3…, each within
    /// the maximum length.
    pub fn candidate(&self, base: &str, n: u32) -> String {
        if n <= 1 {
            return cut(base, self.max_length);
        }
        let suffix = n.to_string();
        let room = self.max_length.saturating_sub(suffix.len()).max(1);
        format!("{}{suffix}", cut(base, room))
    }

    /// What every candidate of `base` starts with, for looking up the logins taken.
    pub fn candidates_prefix<'b>(&self, base: &'b str) -> &'b str {
        // Suffixes of up to six digits. A candidate is the base cut to the room its
        // suffix leaves, and a cut to less room is never longer (both are prefixes of
        // the base): the cut for six digits starts them all. A plain `max - 7` did
        // not, as a cut may drop a short last word (`…-in` for `…-in100000`).
        let room = self.max_length.saturating_sub(6).max(1);
        &base[..cut(base, room).len()]
    }
}

/// The login base with the default pattern, `given.family`.
pub fn login_base(family_name: &str, given_names: &str) -> String {
    LoginPattern::default().base(family_name, given_names)
}

/// Whether `login` could be a login of the university (a sponsor's, say, which this
/// registry did not make): 1 to 64 ASCII letters, digits, `.`, `-` and `_`, starting
/// with a letter or a digit. Nothing else (a comma, an `=`, a space) can then reach a
/// DN or a filter.
pub fn is_login(login: &str) -> bool {
    (1..=64).contains(&login.len())
        && login.starts_with(|c: char| c.is_ascii_alphanumeric())
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_ascii() {
        assert_eq!(login_base("Lefèvre", "Élodie Marie"), "elodie.lefevre");
        assert_eq!(login_base("Straße", "Jürgen"), "jurgen.strasse");
        assert_eq!(login_base("Cœur", "Zoë"), "zoe.coeur");
        assert_eq!(login_base("D'Arc", "Jeanne"), "jeanne.d-arc");
        assert_eq!(login_base("Ngô", "Thị Minh"), "thi.ngo");
        assert_eq!(login_base("王", "小明"), "xiao-ming.wang");
        assert_eq!(login_base("𓀀𓀁", "𓀂"), "learner");
    }

    #[test]
    fn cyrillic_and_greek_by_their_standards() {
        assert_eq!(login_base("Иванова", "Ольга"), "olga.ivanova");
        assert_eq!(login_base("Παπαδοπούλου", "Ελένη"), "eleni.papadopoulou");
    }

    #[test]
    fn long_logins_are_cut_at_a_sensible_place() {
        assert_eq!(
            login_base("O'Brien-Smithsonian", "Maximilian"),
            "maximilian.o-brien"
        );
        assert_eq!(
            login_base("Papadopoulos", "Giorgos"),
            "giorgos.papadopoulos"
        );
    }

    #[test]
    fn the_maximum_includes_the_suffix() {
        let pattern = LoginPattern::default();
        let base = pattern.base("Papadopoulos", "Giorgos");
        assert_eq!(pattern.candidate(&base, 1), "giorgos.papadopoulos");
        assert_eq!(pattern.candidate(&base, 2), "giorgos.papadopoulo2");
        assert_eq!(pattern.candidate(&base, 19), "giorgos.papadopoul19");
        for n in 1..2000 {
            assert!(pattern.candidate(&base, n).len() <= 20, "{n}");
        }
        assert_eq!(pattern.candidate("li.wu", 3), "li.wu3");
        assert!(
            pattern
                .candidate(&base, 123)
                .starts_with(pattern.candidates_prefix(&base))
        );
    }

    #[test]
    fn every_candidate_starts_with_the_prefix() {
        // Found by the property tests: a six-digit suffix cut the base before its short
        // last word, and the candidate no longer started with `max - 7` characters.
        let pattern = LoginPattern::new("{given}{given}", 24).expect("valid");
        let base = "yhrrm1-haman-in-sab";
        let prefix = pattern.candidates_prefix(base);
        for n in [1, 2, 99, 10_000, 100_000, 999_999] {
            let candidate = pattern.candidate(base, n);
            assert!(candidate.starts_with(prefix), "{candidate} {prefix}");
        }
        assert_eq!(pattern.candidate(base, 100_000), "yhrrm1-haman-in100000");
    }

    #[test]
    fn login_patterns() {
        let initial = LoginPattern::new("{g}{family}", 8).expect("valid");
        assert_eq!(initial.base("Lefèvre", "Élodie"), "elefevre");
        assert_eq!(initial.base("Montgomery-Smith", "Anne"), "amontgom");
        assert_eq!(initial.candidate("elefevre", 2), "elefevr2");
        let family_first = LoginPattern::new("{family}.{given}", 20).expect("valid");
        assert_eq!(family_first.base("Martin", "Léa"), "martin.lea");
        assert!(LoginPattern::new("{surname}", 20).is_err());
        assert!(LoginPattern::new("{given}_{family}", 20).is_err());
        assert!(LoginPattern::new("{given}.{family}", 2).is_err());
    }

    #[test]
    fn logins_of_the_university() {
        for login in ["jean.dupont", "jdupont2", "m_martin", "a-b.c", "JDupont"] {
            assert!(is_login(login), "{login}");
        }
        for login in [
            "",
            "nobody here",
            "jean,ou=evil",
            ".x",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!is_login(login), "{login}");
        }
    }
}
