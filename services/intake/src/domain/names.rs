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

/// Longest login before a collision suffix, as many systems cap uid lengths.
pub const LOGIN_MAX_BASE: usize = 20;

/// The login before any collision suffix: `given.family`, first given name only.
pub fn login_base(family_name: &str, given_names: &str) -> String {
    let given = login_part(first_given_name(given_names));
    let family = login_part(family_name);
    let base = match (given.is_empty(), family.is_empty()) {
        (false, false) => format!("{given}.{family}"),
        (true, false) => family,
        (false, true) => given,
        (true, true) => "learner".to_owned(),
    };
    let mut base: String = base.chars().take(LOGIN_MAX_BASE).collect();
    while base.ends_with(['-', '.']) {
        base.pop();
    }
    base
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
