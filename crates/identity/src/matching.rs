//! When two registrations are the same person, possibly the same, or not.
//!
//! The rule, which docs/cohort-import.md states for registrars:
//! - **Birth dates** must be equal; otherwise they are different persons.
//! - **Names**: a person goes by their family (usage) name and, when given, their
//!   birth name. Two registrations' names meet when one name of each is the same
//!   once folded; when both give a birth name, the birth names must be the ones that
//!   meet (a usage name changes with marriage, a birth name does not).
//! - **Given names**: the first given name, folded, must be the same.
//! - **Same person**: names meet, first given names are the same, and the INEs do not
//!   contradict each other (both given and different).
//! - **Possibly the same** (a near match, for a person to decide): names meet and the
//!   INEs differ; or names meet and the given names are partly the same (a compound
//!   written with or without its hyphen, `Jean-Pierre` / `Jean Pierre`; one given name
//!   the first word of the other, `Jean` / `Jean-Pierre`; one letter apart); or the
//!   names are one letter apart and the first given names the same.

use time::Date;

use crate::names::{edit_distance, first_given_name, first_given_word, fold};

/// A person's identity as matching sees it, folded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    family_name: String,
    birth_name: Option<String>,
    first_given: String,
    first_given_word: String,
    given_names: String,
    birth_date: Date,
    ine: Option<String>,
}

/// How alike two identities are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Likeness {
    Same,
    Near(NearReason),
    Different,
}

/// Why two identities may be the same person without being surely so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NearReason {
    /// Same names and birth date, another INE.
    IneDiffers,
    /// Same names and birth date; the given names agree only in part.
    GivenNamesPartly,
    /// Same first given name and birth date; the names are one letter apart.
    NamesOneLetterApart,
}

impl NearReason {
    /// Said to the registrar who decides.
    pub fn describe(self) -> &'static str {
        match self {
            NearReason::IneDiffers => "same names and birth date, but another INE",
            NearReason::GivenNamesPartly => {
                "same name and birth date; the given names agree only in part"
            }
            NearReason::NamesOneLetterApart => {
                "same given name and birth date; the names are one letter apart"
            }
        }
    }

    /// A stable code, for programs.
    pub fn code(self) -> &'static str {
        match self {
            NearReason::IneDiffers => "ine_differs",
            NearReason::GivenNamesPartly => "given_names_partly",
            NearReason::NamesOneLetterApart => "names_one_letter_apart",
        }
    }
}

impl Identity {
    pub fn new(
        family_name: &str,
        birth_name: Option<&str>,
        given_names: &str,
        birth_date: Date,
        ine: Option<&str>,
    ) -> Self {
        Self {
            family_name: fold(family_name),
            birth_name: birth_name.filter(|name| !name.trim().is_empty()).map(fold),
            first_given: fold(first_given_name(given_names)),
            first_given_word: fold(first_given_word(given_names)),
            given_names: fold(given_names),
            birth_date,
            ine: ine
                .map(str::trim)
                .filter(|ine| !ine.is_empty())
                .map(str::to_ascii_uppercase),
        }
    }

    /// The same identity, with an INE it lacked.
    pub fn with_ine(mut self, ine: &str) -> Self {
        self.ine = Some(ine.trim().to_ascii_uppercase());
        self
    }

    pub fn birth_date(&self) -> Date {
        self.birth_date
    }

    pub fn ine(&self) -> Option<&str> {
        self.ine.as_deref()
    }

    /// The fewest letters that separate a name of one from a name of the other.
    fn names_distance(&self, other: &Identity) -> usize {
        if let (Some(mine), Some(theirs)) = (&self.birth_name, &other.birth_name) {
            return edit_distance(mine, theirs);
        }
        let mine = [Some(&self.family_name), self.birth_name.as_ref()];
        let theirs = [Some(&other.family_name), other.birth_name.as_ref()];
        mine.iter()
            .flatten()
            .flat_map(|a| theirs.iter().flatten().map(move |b| edit_distance(a, b)))
            .min()
            .unwrap_or(usize::MAX)
    }

    fn given_partly(&self, other: &Identity) -> bool {
        self.given_names == other.given_names
            || self.first_given_word == other.first_given_word
            || edit_distance(&self.first_given, &other.first_given) <= 1
    }

    /// How alike `self` and `other` are (the relation is symmetric).
    pub fn likeness(&self, other: &Identity) -> Likeness {
        if self.birth_date != other.birth_date {
            return Likeness::Different;
        }
        let names = self.names_distance(other);
        let given_same = self.first_given == other.first_given;
        let ines_differ = matches!((&self.ine, &other.ine), (Some(a), Some(b)) if a != b);
        match (names, given_same) {
            (0, true) if ines_differ => Likeness::Near(NearReason::IneDiffers),
            (0, true) => Likeness::Same,
            (0, false) if self.given_partly(other) => Likeness::Near(NearReason::GivenNamesPartly),
            (1, true) => Likeness::Near(NearReason::NamesOneLetterApart),
            _ => Likeness::Different,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const BORN: Date = date!(1999 - 05 - 12);

    fn person(family: &str, birth: Option<&str>, given: &str) -> Identity {
        Identity::new(family, birth, given, BORN, None)
    }

    #[test]
    fn the_same_person_whatever_the_accents_and_case() {
        assert_eq!(
            person("Lefèvre", None, "Élodie Marie").likeness(&person("LEFEVRE", None, "elodie")),
            Likeness::Same
        );
    }

    #[test]
    fn another_birth_date_is_another_person() {
        let other = Identity::new("Lefèvre", None, "Élodie", date!(1999 - 05 - 13), None);
        assert_eq!(
            person("Lefèvre", None, "Élodie").likeness(&other),
            Likeness::Different
        );
    }

    #[test]
    fn a_birth_name_given_once_and_not_the_other_time_meets() {
        let with = person("Dupont-Moreau", Some("Dupont"), "Claire");
        let without = person("Dupont-Moreau", None, "Claire");
        let by_birth_name = person("Dupont", None, "Claire");
        assert_eq!(with.likeness(&without), Likeness::Same);
        assert_eq!(without.likeness(&with), Likeness::Same);
        assert_eq!(with.likeness(&by_birth_name), Likeness::Same);
    }

    #[test]
    fn two_birth_names_must_be_the_same() {
        let one = person("Martin", Some("Dupont"), "Claire");
        let other = person("Martin", Some("Durand"), "Claire");
        assert_eq!(one.likeness(&other), Likeness::Different);
        let remarried = person("Bernard", Some("Dupont"), "Claire");
        assert_eq!(one.likeness(&remarried), Likeness::Same);
    }

    #[test]
    fn compound_and_partial_given_names_are_near() {
        let hyphen = person("Durand", None, "Jean-Pierre");
        let space = person("Durand", None, "Jean Pierre");
        let short = person("Durand", None, "Jean");
        let near = Likeness::Near(NearReason::GivenNamesPartly);
        assert_eq!(hyphen.likeness(&space), near);
        assert_eq!(space.likeness(&hyphen), near);
        assert_eq!(hyphen.likeness(&short), near);
        assert_eq!(short.likeness(&hyphen), near);
        // Only the first given name counts: Jean Pierre is a Jean.
        assert_eq!(space.likeness(&short), Likeness::Same);
        assert_eq!(
            hyphen.likeness(&person("Durand", None, "Paul")),
            Likeness::Different
        );
    }

    #[test]
    fn one_letter_apart_is_near() {
        assert_eq!(
            person("Lefèvre", None, "Élodie").likeness(&person("Lefebvre", None, "Élodie")),
            Likeness::Near(NearReason::NamesOneLetterApart)
        );
        assert_eq!(
            person("Martin", None, "Léa").likeness(&person("Martin", None, "Lea-Rose")),
            Likeness::Near(NearReason::GivenNamesPartly)
        );
        assert_eq!(
            person("Martin", None, "Léa").likeness(&person("Marin", None, "Lena")),
            Likeness::Different
        );
    }

    #[test]
    fn ines_that_differ_make_a_near_match_only() {
        let one = Identity::new("Petit", None, "Hugo", BORN, Some("123456789AB"));
        let other = Identity::new("Petit", None, "Hugo", BORN, Some("123456789AC"));
        let unknown = Identity::new("Petit", None, "Hugo", BORN, None);
        assert_eq!(one.likeness(&other), Likeness::Near(NearReason::IneDiffers));
        assert_eq!(one.likeness(&unknown), Likeness::Same);
    }

    #[test]
    fn names_in_other_scripts_meet_their_transliteration() {
        assert_eq!(
            person("Иванова", None, "Ольга").likeness(&person("Ivanova", None, "Olga")),
            Likeness::Same
        );
    }
}
