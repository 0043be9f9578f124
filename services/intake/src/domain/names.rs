//! Names as identity: folding for matching, and ASCII logins.

/// Folds a name for matching: accents, case, hyphens, spaces and apostrophes do not
/// count ("Lefèvre-D'Arc" and "lefevre d arc" fold alike).
pub fn fold(name: &str) -> String {
    deunicode::deunicode(name)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Family, birth and given names folded, each word apart, for name searches.
pub fn folded_names(family_name: &str, birth_name: Option<&str>, given_names: &str) -> String {
    [Some(family_name), birth_name, Some(given_names)]
        .into_iter()
        .flatten()
        .flat_map(|names| names.split([' ', '-', '\'', ',']))
        .map(fold)
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first of the given names ("Marie-Claire Anne" → "Marie-Claire").
pub fn first_given_name(given_names: &str) -> &str {
    given_names
        .split([' ', ','])
        .find(|part| !part.is_empty())
        .unwrap_or(given_names)
}

/// The key that says two registrations are the same person.
pub fn match_key(birth_name: &str, given_names: &str, birth_date: time::Date) -> String {
    format!(
        "{}|{}|{}",
        fold(birth_name),
        fold(first_given_name(given_names)),
        birth_date
    )
}

/// Lower-case ASCII letters and digits, words joined by `-` (é→e, ß→ss, œ→oe).
fn login_part(name: &str) -> String {
    let ascii = deunicode::deunicode(name).to_ascii_lowercase();
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

/// How logins are made: a pattern over the names and a length cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPattern {
    /// `{given}`, `{family}` and `{g}` (the given name's initial) between literal
    /// lower-case letters, digits, `.` or `-`; e.g. `{given}.{family}` or `{g}{family}`.
    pattern: String,
    /// Longest login before a collision suffix, as many systems cap uid lengths.
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
        let mut base: String = base.chars().take(self.max_length).collect();
        while base.ends_with(['-', '.']) {
            base.pop();
        }
        base
    }
}

/// The login base with the default pattern, `given.family`.
pub fn login_base(family_name: &str, given_names: &str) -> String {
    LoginPattern::default().base(family_name, given_names)
}

/// The n-th candidate login: the base, then base2, base3…
pub fn login_candidate(base: &str, n: u32) -> String {
    if n <= 1 {
        base.to_owned()
    } else {
        format!("{base}{n}")
    }
}

/// Levenshtein distance, for near matches of folded names.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_accents_case_and_punctuation() {
        assert_eq!(fold("Lefèvre-D'Arc"), fold("lefevre d arc"));
        assert_eq!(fold("ÉLODIE"), "elodie");
    }

    #[test]
    fn logins_are_ascii() {
        assert_eq!(login_base("Lefèvre", "Élodie Marie"), "elodie.lefevre");
        assert_eq!(login_base("Straße", "Jürgen"), "jurgen.strasse");
        assert_eq!(login_base("Cœur", "Zoë"), "zoe.coeur");
        assert_eq!(login_base("D'Arc", "Jeanne"), "jeanne.d-arc");
        assert_eq!(login_base("Ngô", "Thị Minh"), "thi.ngo");
        assert_eq!(
            login_base("O'Brien-Smithsonian", "Maximilian"),
            "maximilian.o-brien-s"
        );
        assert_eq!(login_base("王", "小明"), "xiao-ming.wang");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("lefevre", "lefevre"), 0);
        assert_eq!(edit_distance("lefevre", "lefebvre"), 1);
        assert_eq!(edit_distance("martin", "martan"), 1);
        assert_eq!(edit_distance("martin", "mratin"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn login_patterns() {
        let initial = LoginPattern::new("{g}{family}", 8).expect("valid");
        assert_eq!(initial.base("Lefèvre", "Élodie"), "elefevre");
        assert_eq!(initial.base("Montgomery-Smith", "Anne"), "amontgom");
        let family_first = LoginPattern::new("{family}.{given}", 20).expect("valid");
        assert_eq!(family_first.base("Martin", "Léa"), "martin.lea");
        assert!(LoginPattern::new("{surname}", 20).is_err());
        assert!(LoginPattern::new("{given}_{family}", 20).is_err());
        assert!(LoginPattern::new("{given}.{family}", 2).is_err());
    }

    #[test]
    fn candidates_add_a_suffix_after_the_first() {
        assert_eq!(login_candidate("a.b", 1), "a.b");
        assert_eq!(login_candidate("a.b", 2), "a.b2");
    }

    #[test]
    fn match_key_uses_the_first_given_name() {
        let date = time::macros::date!(2001 - 02 - 03);
        assert_eq!(
            match_key("Lefèvre", "Élodie Marie", date),
            match_key("LEFEVRE", "elodie", date)
        );
        assert_ne!(
            match_key("Lefèvre", "Élodie", date),
            match_key("Lefèvre", "Marie", date)
        );
    }
}
