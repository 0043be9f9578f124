//! Property tests of registration's validation over any request: the protobuf bytes
//! a client sends, decoded and converted as the gRPC edge does, or fields typed
//! anyhow. Validation answers a registration or its violations, never a panic, and
//! what it accepts is what is stored and published: names in NFC, trimmed, without
//! control or format characters, with a folding and a login. Cases: proptest's (256,
//! or `PROPTEST_CASES`).

use hosted_contracts::v1;
use proptest::prelude::*;
use prost::Message;
use time::Date;
use unicode_normalization::is_nfc;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use super::{
    Population, Registration, Unit,
    names::{LoginPattern, is_login},
    registration::{PersonInput, StayInput, validate, validate_person},
    resources::is_resource_name,
    unit::{is_code, normalise_code},
};
use crate::grpc::{person_input, stay_input};

const TODAY: Date = time::macros::date!(2026 - 10 - 01);

fn population(code: &str) -> Option<Population> {
    ["IFSI", "CO_ACCREDITED"]
        .contains(&code.trim())
        .then(|| Population {
            code: code.trim().to_owned(),
            label: "A population".to_owned(),
            supann_population: "AX".to_owned(),
            agreement_required: code.trim() == "CO_ACCREDITED",
            default_duration_days: 365,
            max_duration_days: 400,
            payment_required: false,
            fee_cents: None,
        })
}

/// The catalogue has every well-formed unit code but `GONE`.
fn unit(value: &str) -> Option<Unit> {
    let code = normalise_code(value);
    (is_code(&code) && code != "GONE").then(|| Unit {
        code,
        kind: "site".to_owned(),
        label: "A site".to_owned(),
    })
}

/// Text as people and programs send it: names with accents and other scripts,
/// invisible and control characters, combining marks, odd spaces, anything.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[A-Za-zÀ-ÿ' -]{0,20}",
        2 => "[ a-zé\u{0301}\u{0308}\u{00A0}\u{2000}\u{3000}\u{200B}\u{200D}\u{202E}\u{FEFF}\u{00AD}\t\r\n\0-]{0,12}",
        1 => "[\u{0400}-\u{04FF}\u{0370}-\u{03FF}\u{4E00}-\u{4E20}\u{1100}-\u{1112}\u{1161}-\u{1175} ]{0,12}",
        1 => "\\PC{0,20}",
        1 => any::<String>(),
        1 => "[a-zA-Z]{120,140}",
    ]
}

/// A name, most often one a registrar would type.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ' -]{0,18}",
        1 => "[\u{0400}-\u{04FF}\u{0370}-\u{03FF}\u{4E00}-\u{4E20}]{1,8}",
        3 => text(),
    ]
}

fn date_text() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => (1920i32..2015, 1u16..=366).prop_map(|(year, day)| {
            Date::from_ordinal_date(year, day.min(365))
                .map(hosted_platform::clock::format_day)
                .unwrap_or_default()
        }),
        1 => Just(" 2026-10-01 ".to_owned()),
        1 => text(),
    ]
}

fn person() -> impl Strategy<Value = PersonInput> {
    (
        (
            name(),
            prop_oneof![3 => Just(String::new()), 1 => name()],
            name(),
        ),
        (
            date_text(),
            prop_oneof![8 => "[a-z]{1,8}@[a-z]{1,8}\\.org", 1 => text()],
            prop_oneof![5 => Just(String::new()), 4 => "[0-9]{9}[A-Za-z]{2}", 1 => text()],
            prop_oneof![5 => Just(String::new()), 4 => "[0-9 +.()-]{0,20}", 1 => text()],
        ),
    )
        .prop_map(
            |((family_name, birth_name, given_names), (birth_date, email, ine, phone))| {
                PersonInput {
                    family_name,
                    birth_name,
                    given_names,
                    birth_date,
                    email,
                    ine,
                    phone,
                }
            },
        )
}

fn stay() -> impl Strategy<Value = StayInput> {
    (
        prop_oneof![
            6 => Just("IFSI".to_owned()),
            3 => Just(" CO_ACCREDITED".to_owned()),
            1 => text()
        ],
        prop_oneof![8 => "[a-zA-Z0-9][a-zA-Z0-9_-]{1,10}", 1 => Just("gone".to_owned()), 1 => text()],
        prop_oneof![4 => Just(String::new()), 4 => "[a-zA-Z][a-zA-Z.]{0,11}", 1 => text()],
        prop_oneof![
            4 => Just(String::new()),
            4 => Just("0190d6a2-61f4-7c8e-9d2a-3b4c5d6e7f80".to_owned()),
            1 => text()
        ],
        prop_oneof![
            6 => (-60i64..800, -10i64..500).prop_map(|(from_today, days)| {
                let start = TODAY + time::Duration::days(from_today);
                let end = start + time::Duration::days(days);
                (
                    hosted_platform::clock::format_day(start),
                    hosted_platform::clock::format_day(end),
                )
            }),
            1 => (date_text(), date_text()),
        ],
        prop::collection::vec(prop_oneof![9 => " ?[a-z0-9][a-z0-9-]{0,10}", 1 => text()], 0..3),
    )
        .prop_map(
            |(population, sponsor_unit, sponsor_login, agreement_id, (start, end), requested)| {
                StayInput {
                    population,
                    sponsor_unit,
                    sponsor_login,
                    agreement_id,
                    start_date: start,
                    end_date: end,
                    requested_resources: requested,
                }
            },
        )
}

/// A name as registration promises to store it.
fn stored_name(name: &str) -> Result<(), TestCaseError> {
    prop_assert!(!name.is_empty());
    prop_assert_eq!(name.trim(), name);
    prop_assert!(!name.contains("  "), "{:?}", name);
    prop_assert!(name.chars().count() <= 128);
    prop_assert!(is_nfc(name), "{:?}", name);
    prop_assert!(
        !name
            .chars()
            .any(|c| c.is_control() || c.general_category() == GeneralCategory::Format),
        "{:?}",
        name
    );
    prop_assert!(name.chars().any(char::is_alphabetic));
    prop_assert!(!hosted_identity::names::fold(name).is_empty());
    Ok(())
}

fn check(
    person: &PersonInput,
    stay: &StayInput,
    max_start_ahead_days: u32,
) -> Result<(), TestCaseError> {
    let population = population(&stay.population);
    let unit = unit(&stay.sponsor_unit);
    let result = validate(
        person,
        stay,
        population.as_ref(),
        unit.as_ref(),
        max_start_ahead_days,
        TODAY,
    );
    let Ok(Registration { person, stay }) = result else {
        let violations = result.err().unwrap_or_default();
        prop_assert!(!violations.0.is_empty());
        return Ok(());
    };
    stored_name(&person.family_name)?;
    stored_name(&person.given_names)?;
    if let Some(birth_name) = &person.birth_name {
        stored_name(birth_name)?;
    }
    prop_assert!(!person.folded_names().is_empty());
    let pattern = LoginPattern::default();
    let base = person.login_base(&pattern);
    prop_assert!(
        is_login(&base) && base.len() <= pattern.max_length(),
        "{:?}",
        base
    );
    prop_assert_eq!(person.email.trim(), person.email.as_str());
    prop_assert!(person.email.contains('@'));
    if let Some(ine) = &person.ine {
        prop_assert!(ine.len() == 11 && ine.is_ascii() && *ine == ine.to_ascii_uppercase());
    }
    prop_assert!(population.is_some());
    prop_assert!(is_code(&stay.sponsor_unit), "{:?}", stay.sponsor_unit);
    if let Some(login) = &stay.sponsor_login {
        prop_assert!(is_login(login), "{:?}", login);
    }
    prop_assert!(stay.start_date <= stay.end_date && stay.end_date >= TODAY);
    prop_assert!(
        stay.requested_resources
            .iter()
            .all(|name| is_resource_name(name))
    );
    prop_assert!(stay.requested_resources.is_sorted());
    Ok(())
}

proptest! {
    #[test]
    fn any_registration_is_accepted_whole_or_refused(
        person in person(), stay in stay(), max_start_ahead_days in 1u32..=3650,
    ) {
        check(&person, &stay, max_start_ahead_days)?;
    }

    #[test]
    fn any_person_alone_is_accepted_whole_or_refused(person in person()) {
        if let Ok(person) = validate_person(&person, TODAY) {
            stored_name(&person.family_name)?;
            stored_name(&person.given_names)?;
        }
    }

    #[test]
    fn any_protobuf_request_is_accepted_whole_or_refused(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            (person(), stay()).prop_map(|(person, stay)| {
                // A well-formed request with a few bytes changed.
                v1::RegisterStayRequest {
                    person: Some(v1::PersonInput {
                        family_name: person.family_name,
                        birth_name: person.birth_name,
                        given_names: person.given_names,
                        birth_date: person.birth_date,
                        email: person.email,
                        ine: person.ine,
                        phone: person.phone,
                    }),
                    stay: Some(v1::StayInput {
                        population: stay.population,
                        sponsor_unit: stay.sponsor_unit,
                        sponsor_login: stay.sponsor_login,
                        agreement_id: stay.agreement_id,
                        start_date: stay.start_date,
                        end_date: stay.end_date,
                        requested_resources: stay.requested_resources,
                    }),
                    confirm_new_person: false,
                }
                .encode_to_vec()
            }),
        ],
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let mut bytes = bytes;
        if !bytes.is_empty() {
            for (at, byte) in flips {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
        }
        if let Ok(request) = v1::RegisterStayRequest::decode(bytes.as_slice()) {
            let person = person_input(request.person);
            let stay = stay_input(request.stay);
            check(&person, &stay, 730)?;
        }
    }
}
