//! Property tests of what the directory writes from outside values: escaped DN and
//! filter values read back as the values they were made from, and an entry made
//! from any learner has composites with only their own keys and a DN naming its
//! login. The number of cases is proptest's (256, or `PROPTEST_CASES`).

use std::collections::BTreeSet;

use hosted_contracts::v1;
use proptest::prelude::*;
use time::Date;

use super::{
    entry::{Card, EntrySettings, Extras, Lifecycle, desired},
    escape, supann,
};

/// A DN read as RFC 4514 says: its RDNs, each a list of `type=value`, values
/// unescaped. `None` when the text is not a DN (an unescaped special character in a
/// value, a bad escape, a value in `#` hex form, which escaping never writes).
fn parse_dn(text: &str) -> Option<Vec<Vec<(String, String)>>> {
    let mut rdns = vec![Vec::new()];
    let mut rest = text;
    loop {
        let equals = rest.find('=')?;
        let attribute = &rest[..equals];
        if attribute.is_empty()
            || !attribute
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return None;
        }
        let mut bytes = Vec::new();
        let mut chars = rest[equals + 1..].char_indices().peekable();
        let mut end = None;
        let mut escaped_last = false;
        let value_start = equals + 1;
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, next) = chars.next()?;
                    if "\"+,;<>\\=# ".contains(next) {
                        bytes.extend(next.to_string().bytes());
                    } else {
                        let (_, low) = chars.next()?;
                        let hex: String = [next, low].iter().collect();
                        bytes.push(u8::from_str_radix(&hex, 16).ok()?);
                    }
                    escaped_last = true;
                }
                ',' | '+' => {
                    end = Some((value_start + at, c));
                    break;
                }
                '"' | ';' | '<' | '>' | '\0' => return None,
                '#' if bytes.is_empty() => return None,
                ' ' if bytes.is_empty() => return None,
                _ => {
                    bytes.extend(c.to_string().bytes());
                    escaped_last = false;
                }
            }
        }
        if bytes.last() == Some(&b' ') && !escaped_last {
            return None;
        }
        let value = String::from_utf8(bytes).ok()?;
        rdns.last_mut()?.push((attribute.to_owned(), value));
        match end {
            None => return Some(rdns),
            Some((at, separator)) => {
                if separator == ',' {
                    rdns.push(Vec::new());
                }
                rest = &rest[at + 1..];
            }
        }
    }
}

/// A filter assertion value read back (RFC 4515): `None` when a special character
/// is left bare or an escape is not two hexadecimal digits.
fn unescape_filter(text: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let hex: String = [chars.next()?, chars.next()?].iter().collect();
                bytes.push(u8::from_str_radix(&hex, 16).ok()?);
            }
            '*' | '(' | ')' | '\0' => return None,
            _ => bytes.extend(c.to_string().bytes()),
        }
    }
    String::from_utf8(bytes).ok()
}

/// A composite value read back: its keys and values, in order. `None` when it is not
/// a run of `[key=value]`.
fn parse_composite(text: &str) -> Option<Vec<(String, String)>> {
    let mut keys = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let close = inner.find(']')?;
        let (key, value) = inner[..close].split_once('=')?;
        if key.is_empty() || value.contains('[') {
            return None;
        }
        keys.push((key.to_owned(), value.to_owned()));
        rest = &inner[close + 1..];
    }
    Some(keys)
}

/// Values as they come: typed by people, read from spreadsheets, anything.
fn outside_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 .,'()-]{0,20}",
        "[ #\"+,;<>\\\\=\\[\\]*()\0a-zé]{0,20}",
        "\\PC{0,20}",
        any::<String>(),
    ]
}

fn day() -> impl Strategy<Value = Date> {
    (2020i32..2032, 1u16..=365)
        .prop_map(|(year, day)| Date::from_ordinal_date(year, day).expect("a day of the year"))
}

fn date_text() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => day().prop_map(hosted_platform::clock::format_day),
        1 => Just("9999-12-31".to_owned()),
        1 => Just("-9999-01-01".to_owned()),
        1 => outside_text(),
    ]
}

fn population_code() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["AHH", "AGG", "AX", "AHL", "RHJCF", "PXI", "PXL", ""])
            .prop_map(str::to_owned),
        outside_text(),
    ]
}

fn stay() -> impl Strategy<Value = v1::Stay> {
    (
        (outside_text(), population_code(), outside_text()),
        (
            prop_oneof!["[a-z]{1,8}\\.[a-z]{1,8}", outside_text()],
            date_text(),
            date_text(),
        ),
        (
            prop::sample::select(vec![
                v1::StayStatus::Active,
                v1::StayStatus::Cancelled,
                v1::StayStatus::Unspecified,
            ]),
            prop_oneof!["0999999F", "0134009M", outside_text()],
        ),
    )
        .prop_map(
            |(
                (stay_id, supann_population, sponsor_unit),
                (sponsor_login, start_date, end_date),
                (status, partner_uai),
            )| v1::Stay {
                stay_id,
                population: "P".to_owned(),
                supann_population,
                sponsor_unit,
                sponsor_login,
                start_date,
                end_date,
                status: status.into(),
                partner_uai,
                ..Default::default()
            },
        )
}

fn learner() -> impl Strategy<Value = v1::Learner> {
    (
        prop_oneof!["[a-z]{1,10}\\.[a-z]{1,10}[0-9]{0,2}", outside_text()],
        (outside_text(), outside_text(), outside_text()),
        (date_text(), outside_text(), outside_text()),
        prop::collection::vec(stay(), 0..4),
    )
        .prop_map(
            |(login, (family_name, birth_name, given_names), (birth_date, email, ine), stays)| {
                v1::Learner {
                    person: Some(v1::Person {
                        learner_id: "id".to_owned(),
                        login,
                        family_name,
                        birth_name,
                        given_names,
                        birth_date,
                        email,
                        ine,
                        ..Default::default()
                    }),
                    stays,
                    version: 1,
                    ..Default::default()
                }
            },
        )
}

fn settings() -> EntrySettings {
    EntrySettings {
        base_dn: "ou=people,dc=univ-example,dc=fr".to_owned(),
        eppn_scope: "univ-example.fr".to_owned(),
        entitlement_prefix: "urn:mace:univ-example.fr:entitlement:".to_owned(),
        establishment: "{UAI}0999999F".to_owned(),
        sponsor_base_dn: "ou=staff,dc=univ-example,dc=fr".to_owned(),
        clock: hosted_platform::clock::Clock::default(),
        lifecycle: Lifecycle::default(),
    }
}

const PROFILE_KEYS: [&str; 6] = [
    "etab",
    "affil",
    "affect",
    "parrain",
    "population",
    "datefin",
];

proptest! {
    #[test]
    fn an_escaped_dn_value_parses_back_to_itself(value in outside_text()) {
        let dn = format!("uid={},ou=people,dc=univ-example,dc=fr", escape::dn_value(&value));
        let rdns = parse_dn(&dn);
        prop_assert!(rdns.is_some(), "{:?}", dn);
        let rdns = rdns.unwrap_or_default();
        prop_assert_eq!(rdns.len(), 4);
        prop_assert_eq!(&rdns[0], &vec![("uid".to_owned(), value)]);
    }

    #[test]
    fn an_escaped_filter_value_leaves_nothing_special(value in outside_text()) {
        let escaped = escape::filter_value(&value);
        prop_assert!(!escaped.contains(['*', '(', ')', '\0']));
        prop_assert_eq!(unescape_filter(&escaped), Some(value));
    }

    #[test]
    fn a_uid_filter_reads_back_as_its_logins(
        logins in prop::collection::vec(outside_text(), 1..4),
    ) {
        let filter = crate::ldap::uid_filter(&logins);
        let terms = if logins.len() == 1 {
            filter.as_str()
        } else {
            let inner = filter.strip_prefix("(|").and_then(|rest| rest.strip_suffix(')'));
            prop_assert!(inner.is_some(), "{:?}", filter);
            inner.unwrap_or_default()
        };
        // Escaped values hold no bare parenthesis: every term ends at the first `)`.
        let mut read = Vec::new();
        let mut rest = terms;
        while !rest.is_empty() {
            let term = rest.strip_prefix("(uid=");
            prop_assert!(term.is_some(), "{:?}", filter);
            let term = term.unwrap_or_default();
            let close = term.find(')');
            prop_assert!(close.is_some(), "{:?}", filter);
            let close = close.unwrap_or_default();
            read.push(unescape_filter(&term[..close]));
            rest = &term[close + 1..];
        }
        prop_assert_eq!(read, logins.into_iter().map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn a_value_that_fits_a_composite_adds_no_key(value in outside_text()) {
        if supann::fits_composite(&value) {
            prop_assert!(!value.contains(['[', ']', '=']));
            let composite = format!("[affect={value}][datefin=20270630]");
            prop_assert_eq!(
                parse_composite(&composite),
                Some(vec![
                    ("affect".to_owned(), value),
                    ("datefin".to_owned(), "20270630".to_owned()),
                ])
            );
        }
    }

    #[test]
    fn an_entry_from_any_learner_keeps_its_shape(
        learner in learner(),
        today in day(),
        in_force in prop::collection::vec(outside_text(), 0..3),
        csn in proptest::option::of(prop_oneof!["[0-9A-F]{14}", outside_text()]),
        missing in prop::collection::btree_set("[a-z]{1,8}\\.[a-z]{1,8}", 0..2),
    ) {
        let extras = Extras {
            in_force: &in_force,
            card: csn.as_deref().map(|csn| Card { csn, valid_until: None }),
            sponsors_without_entry: &missing,
        };
        let Ok(Some(entry)) = desired(&learner, extras, &settings(), today) else {
            return Ok(());
        };
        let login = learner.person.as_ref().map(|p| p.login.clone()).unwrap_or_default();
        let rdns = parse_dn(&entry.dn).unwrap_or_default();
        prop_assert_eq!(rdns.first(), Some(&vec![("uid".to_owned(), login)]), "{}", entry.dn);
        prop_assert_eq!(&rdns[1..], &parse_dn(&settings().base_dn).unwrap_or_default()[..]);
        for profile in entry.attributes.get("supannExtProfil").into_iter().flatten() {
            let keys = parse_composite(profile);
            prop_assert!(keys.is_some(), "{:?}", profile);
            let keys = keys.unwrap_or_default();
            let names: Vec<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
            let distinct: BTreeSet<&str> = names.iter().copied().collect();
            prop_assert_eq!(distinct.len(), names.len(), "{:?}", profile);
            for (key, value) in &keys {
                prop_assert!(PROFILE_KEYS.contains(&key.as_str()), "{:?}", profile);
                if key != "parrain" {
                    prop_assert!(supann::fits_composite(value), "{:?}", profile);
                }
            }
        }
        for sponsor in entry.attributes.get("supannParrainDN").into_iter().flatten() {
            let rdns = parse_dn(sponsor);
            prop_assert!(rdns.is_some(), "{:?}", sponsor);
            let rdns = rdns.unwrap_or_default();
            prop_assert_eq!(rdns.len(), 4, "{:?}", sponsor);
            prop_assert_eq!(&rdns[0][0].0, "uid");
            prop_assert!(supann::valid_login(&rdns[0][0].1));
        }
        for code in entry.attributes.get("supannCodePopulation").into_iter().flatten() {
            prop_assert!(supann::fits_composite(code));
        }
    }
}

#[test]
fn the_test_dn_reader_refuses_what_is_not_escaped() {
    assert_eq!(
        parse_dn("uid=a\\,b+cn=c,dc=fr"),
        Some(vec![
            vec![
                ("uid".to_owned(), "a,b".to_owned()),
                ("cn".to_owned(), "c".to_owned())
            ],
            vec![("dc".to_owned(), "fr".to_owned())],
        ])
    );
    assert_eq!(
        parse_dn("uid=\\00\\c3\\a9"),
        Some(vec![vec![("uid".to_owned(), "\0é".to_owned())]])
    );
    for bad in [
        "uid= a",
        "uid=a ",
        "uid=#a",
        "uid=a;b",
        "uid=a\\",
        "uid=a\\zz",
        "=a",
    ] {
        assert_eq!(parse_dn(bad), None, "{bad}");
    }
}
