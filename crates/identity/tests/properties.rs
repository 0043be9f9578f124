//! Property tests of the identity rules over generated names: whatever a registrar
//! or a cohort file sends, folding, transliteration, logins and matching never panic
//! and keep their invariants.
//!
//! The number of cases per property is proptest's: 256, or `PROPTEST_CASES`
//! (docs/reliability.md gives the hand run's figure).

use hosted_identity::{
    Identity, Likeness,
    logins::{LoginPattern, is_login},
    names::{fold, folded_names},
    transliteration::to_ascii,
    uai,
};
use proptest::prelude::*;
use time::Date;

/// Names as they come: Latin with accents, Cyrillic, Greek, CJK, punctuation, spaces,
/// and now and then anything at all.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z' -]{0,30}",
        "[a-zA-ZÀ-ÿŒœß' -]{0,30}",
        "[\u{0400}-\u{04FF}' -]{0,20}",
        "[\u{0370}-\u{03FF}\u{1F00}-\u{1FFF}' -]{0,20}",
        "[\u{4E00}-\u{4FFF}\u{AC00}-\u{AC80} ]{0,10}",
        "\\PC{0,30}",
        any::<String>(),
    ]
}

/// Latin, Cyrillic or Greek letters only (with spaces and hyphens).
fn european_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-ZÀ-ÿĀ-ž' -]{0,30}",
        "[\u{0400}-\u{04FF} -]{0,20}",
        "[\u{0370}-\u{03FF}\u{1F00}-\u{1FFF} -]{0,20}",
    ]
}

/// Configurable login patterns: placeholders between literal `[a-z0-9.-]`.
fn login_pattern() -> impl Strategy<Value = LoginPattern> {
    let piece = prop_oneof![
        Just("{given}".to_owned()),
        Just("{family}".to_owned()),
        Just("{g}".to_owned()),
        "[a-z0-9.-]{1,3}",
    ];
    (
        prop::sample::select(vec!["{given}", "{family}", "{g}"]),
        prop::collection::vec(piece, 0..5),
        3usize..=64,
    )
        .prop_map(|(placeholder, mut pieces, max_length)| {
            pieces.insert(pieces.len() / 2, placeholder.to_owned());
            LoginPattern::new(&pieces.concat(), max_length).expect("a generated pattern is valid")
        })
}

fn is_login_text(login: &str) -> bool {
    !login.is_empty()
        && login
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !login.starts_with(['.', '-'])
        && !login.ends_with(['.', '-'])
}

fn birth_date() -> impl Strategy<Value = Date> {
    (1900i32..2030, 1u16..=366).prop_map(|(year, day)| {
        Date::from_ordinal_date(year, day.min(365)).expect("a day of the year")
    })
}

proptest! {
    #[test]
    fn folding_is_idempotent(name in name()) {
        let folded = fold(&name);
        prop_assert_eq!(fold(&folded), folded.clone(), "folded {:?}", folded);
    }

    #[test]
    fn a_name_with_a_letter_never_folds_to_nothing(name in name()) {
        if name.chars().any(char::is_alphanumeric) {
            prop_assert!(!fold(&name).is_empty());
        }
    }

    #[test]
    fn folded_names_are_lower_case_words(
        family in name(), birth in proptest::option::of(name()), given in name(),
    ) {
        let words = folded_names(&family, birth.as_deref(), &given);
        prop_assert!(!words.starts_with(' ') && !words.ends_with(' ') && !words.contains("  "));
        for word in words.split(' ').filter(|word| !word.is_empty()) {
            prop_assert_eq!(fold(word), word);
        }
    }

    #[test]
    fn transliteration_is_ascii(name in name()) {
        prop_assert!(to_ascii(&name).is_ascii());
    }

    #[test]
    fn european_names_transliterate_to_letters(name in european_name()) {
        let ascii = to_ascii(&name);
        prop_assert!(ascii.is_ascii());
        if name.chars().any(char::is_alphabetic) {
            prop_assert!(!fold(&name).is_empty());
        }
    }

    #[test]
    fn login_bases_fit_their_pattern(
        pattern in login_pattern(), family in name(), given in name(),
    ) {
        let base = pattern.base(&family, &given);
        prop_assert!(is_login_text(&base), "{:?}", base);
        prop_assert!(base.len() <= pattern.max_length(), "{:?}", base);
        prop_assert!(is_login(&base));
    }

    #[test]
    fn login_candidates_fit_their_pattern(
        pattern in login_pattern(), family in name(), given in name(),
        n in prop_oneof![1u32..30, 1u32..1_000_000, any::<u32>()],
    ) {
        let base = pattern.base(&family, &given);
        let candidate = pattern.candidate(&base, n);
        prop_assert!(is_login_text(&candidate), "{:?}", candidate);
        prop_assert!(is_login(&candidate));
        // The suffix is the collision's number: it fits whenever its digits leave a
        // character of the base.
        if n.to_string().len() < pattern.max_length() {
            prop_assert!(candidate.len() <= pattern.max_length(), "{:?}", candidate);
        }
        if n <= 1 {
            prop_assert_eq!(&candidate, &base);
        } else {
            prop_assert!(candidate.ends_with(&n.to_string()));
        }
        if n < 1_000_000 {
            let prefix = pattern.candidates_prefix(&base);
            prop_assert!(candidate.starts_with(prefix), "{:?} {:?}", candidate, prefix);
        }
    }

    #[test]
    fn distinct_suffixes_give_distinct_candidates(
        pattern in login_pattern(), family in name(), given in name(),
        a in 1u32..100_000, b in 1u32..100_000,
    ) {
        let b = if a == b { a + 1 } else { b };
        let base = pattern.base(&family, &given);
        prop_assert_ne!(pattern.candidate(&base, a), pattern.candidate(&base, b));
    }

    #[test]
    fn likeness_is_reflexive_and_symmetric(
        (family_a, birth_a, given_a) in (name(), proptest::option::of(name()), name()),
        (family_b, birth_b, given_b) in (name(), proptest::option::of(name()), name()),
        born_a in birth_date(), born_b in birth_date(),
        ine_a in proptest::option::of("[0-9A-Za-z ]{0,11}"),
        ine_b in proptest::option::of("[0-9A-Za-z ]{0,11}"),
    ) {
        let a = Identity::new(&family_a, birth_a.as_deref(), &given_a, born_a, ine_a.as_deref());
        let b = Identity::new(&family_b, birth_b.as_deref(), &given_b, born_b, ine_b.as_deref());
        prop_assert_eq!(a.likeness(&a), Likeness::Same);
        prop_assert_eq!(a.likeness(&b), b.likeness(&a));
        // Case does not count, for names whose capitals are the same letters. (Greek
        // `ᾳ` has the capitals `ΑΙ`, the micro sign `µ` the Greek `Μ`: other letters.)
        if family_b.to_uppercase().to_lowercase() == family_b.to_lowercase() {
            let same_b_born_a = Identity::new(&family_b, birth_b.as_deref(), &given_b, born_a, None);
            let same_b_born_a_upper = Identity::new(
                &family_b.to_uppercase(), birth_b.as_deref(), &given_b, born_a, None,
            );
            prop_assert_eq!(same_b_born_a.likeness(&same_b_born_a_upper), Likeness::Same);
        }
    }

    #[test]
    fn any_configured_pattern_is_refused_or_keeps_its_promises(
        pattern in prop_oneof![
            "(\\{given\\}|\\{family\\}|\\{g\\}|[a-z0-9._{}-]){0,6}",
            "\\PC{0,20}",
        ],
        max_length in prop_oneof![0usize..80, any::<usize>()],
        family in name(), given in name(),
    ) {
        if let Ok(pattern) = LoginPattern::new(&pattern, max_length) {
            let base = pattern.base(&family, &given);
            prop_assert!(is_login_text(&base) && base.len() <= max_length, "{:?}", base);
        }
    }

    #[test]
    fn uai_validation_never_panics(value in prop_oneof!["[0-9]{7}[A-Z]", "\\PC{0,10}", any::<String>()]) {
        let valid = uai::is_valid(&value);
        if valid {
            prop_assert_eq!(value.len(), 8);
        }
    }
}
