//! Names as identity: folded for matching, split into the parts matching compares.

use crate::transliteration::to_ascii;

/// Folds a name for matching: accents, case, hyphens, spaces and apostrophes do not
/// count (`Lefèvre-D'Arc` and `lefevre d arc` fold alike), and other scripts are
/// transliterated first (`Ольга` folds as `Olga`). A name with nothing that
/// transliterates (Egyptian hieroglyphs, say) folds to its own letters in lower case,
/// never to nothing: every name that registration accepts has a folding.
pub fn fold(name: &str) -> String {
    // Lower case first: the general table writes some capitals otherwise than their
    // small letters (Georgian Mtavruli `Ღ` → `gh`, Mkhedruli `ღ` → `g`; Cyrillic
    // palochka `Ӏ` → nothing, `ӏ` → `h`), and case must not count.
    let lower = name.to_lowercase();
    let folded: String = to_ascii(&lower)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if !folded.is_empty() {
        return folded;
    }
    lower.chars().filter(|c| c.is_alphanumeric()).collect()
}

/// Where a name splits into words: spaces, hyphens, apostrophes, commas.
fn words(names: &str) -> impl Iterator<Item = &str> {
    names
        .split([' ', '-', '\'', '’', ','])
        .filter(|word| !word.is_empty())
}

/// Family, birth and given names folded, each word apart, for name searches.
pub fn folded_names(family_name: &str, birth_name: Option<&str>, given_names: &str) -> String {
    [Some(family_name), birth_name, Some(given_names)]
        .into_iter()
        .flatten()
        .flat_map(words)
        .map(fold)
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first of the given names (`Marie-Claire Anne` → `Marie-Claire`): given names
/// are separated by spaces or commas, a hyphen joins a compound one.
pub fn first_given_name(given_names: &str) -> &str {
    given_names
        .split([' ', ','])
        .find(|part| !part.is_empty())
        .unwrap_or(given_names)
}

/// The first word of the given names (`Jean-Pierre` and `Jean Pierre` → `Jean`).
pub fn first_given_word(given_names: &str) -> &str {
    words(given_names).next().unwrap_or(given_names)
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
        assert_eq!(fold("Ольга"), fold("Olga"));
        assert_eq!(fold("Ελένη"), "eleni");
    }

    #[test]
    fn capitals_fold_as_their_small_letters() {
        // Found by the property tests: `Ӏ` folded to `ӏ`, which folds to `h`.
        assert_eq!(fold("Ӏ"), fold("ӏ"));
        assert_eq!(fold(&fold("Ӏ")), fold("Ӏ"));
        assert_eq!(fold("ᲦᲘᲝᲠᲒᲘ"), fold("ღიორგი"));
    }

    #[test]
    fn a_name_that_transliterates_to_nothing_still_folds() {
        assert_eq!(fold("𓀀𓀁"), "𓀀𓀁");
        assert_ne!(fold("𓀀𓀁"), fold("𓀂"));
        assert_eq!(folded_names("𓀀𓀁", None, "𓀂"), "𓀀𓀁 𓀂");
    }

    #[test]
    fn given_names_split() {
        assert_eq!(first_given_name("Marie-Claire Anne"), "Marie-Claire");
        assert_eq!(first_given_name(" Jean, Paul"), "Jean");
        assert_eq!(first_given_word("Jean-Pierre"), "Jean");
        assert_eq!(first_given_word("Jean Pierre"), "Jean");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("lefevre", "lefevre"), 0);
        assert_eq!(edit_distance("lefevre", "lefebvre"), 1);
        assert_eq!(edit_distance("martin", "martan"), 1);
        assert_eq!(edit_distance("martin", "mratin"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
