//! Card numbers (Luhn), the European Student Card Number (ESCN) and identifier (ESI),
//! and chip serial numbers (CSN).

use uuid::Uuid;

/// The Luhn check digit of `digits` (ASCII digits only).
pub fn luhn_digit(digits: &str) -> u8 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            if position % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// Whether `number` is digits whose last one is the Luhn check digit of the others.
pub fn luhn_valid(number: &str) -> bool {
    number.len() >= 2
        && number.bytes().all(|byte| byte.is_ascii_digit())
        && luhn_digit(&number[..number.len() - 1]) == number.as_bytes()[number.len() - 1] - b'0'
}

/// Total length of a card number, check digit included.
pub const CARD_NUMBER_LENGTH: usize = 16;

/// The card number for the `sequence`-th card: the configured prefix, the sequence
/// padded with zeros, and the Luhn check digit, 16 digits in all.
pub fn card_number(prefix: &str, sequence: u64) -> String {
    let width = CARD_NUMBER_LENGTH - 1 - prefix.len();
    let body = format!("{prefix}{sequence:0width$}");
    format!("{body}{}", luhn_digit(&body))
}

/// Whether a card number prefix can be used: 1 to 9 digits.
pub fn valid_prefix(prefix: &str) -> bool {
    (1..=9).contains(&prefix.len()) && prefix.bytes().all(|byte| byte.is_ascii_digit())
}

/// 100-nanosecond intervals between the start of the Gregorian calendar (1582-10-15)
/// and the Unix epoch: the origin of version-1 UUID timestamps.
const GREGORIAN_TO_UNIX: u64 = 0x01B2_1DD2_1381_4000;

/// A European Student Card Number: a version-1 UUID made at `at`, whose 48-bit node
/// field, written in hexadecimal, reads as 12 decimal digits: the generator's 3-digit
/// prefix and the institution's 9-digit Erasmus PIC. `sequence` (the card's number in
/// the sequence) makes the clock sequence, so that two cards made in the same instant
/// differ.
pub fn escn(generator: &str, pic: &str, at: jiff::Timestamp, sequence: u64) -> Option<Uuid> {
    if !valid_generator(generator) || !valid_pic(pic) {
        return None;
    }
    let digits = format!("{generator}{pic}");
    let mut node = [0u8; 6];
    for (index, pair) in digits.as_bytes().chunks(2).enumerate() {
        node[index] = ((pair[0] - b'0') << 4) | (pair[1] - b'0');
    }
    let ticks = u64::try_from(at.as_nanosecond() / 100).ok()? + GREGORIAN_TO_UNIX;
    let clock_sequence = (sequence % (1 << 14)) as u16;
    Some(Uuid::new_v1(
        uuid::Timestamp::from_gregorian_time(ticks, clock_sequence),
        &node,
    ))
}

/// An Erasmus PIC: 9 digits.
pub fn valid_pic(pic: &str) -> bool {
    pic.len() == 9 && pic.bytes().all(|byte| byte.is_ascii_digit())
}

/// An ESCN generator prefix: 3 digits.
pub fn valid_generator(generator: &str) -> bool {
    generator.len() == 3 && generator.bytes().all(|byte| byte.is_ascii_digit())
}

/// The European Student Identifier of a learner with an INE.
pub fn esi(ine: &str) -> Option<String> {
    (!ine.is_empty()).then(|| format!("urn:schac:personalUniqueCode:int:esi:fr:{ine}"))
}

/// A chip serial number as recorded: hexadecimal, upper case, 4 to 10 bytes (ISO
/// 14443 UIDs are 4, 7 or 10 bytes, ISO 15693 ones 8). Separators (`:`, `-`, spaces)
/// are dropped.
pub fn csn(input: &str) -> Result<String, &'static str> {
    let hex: String = input
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if hex.is_empty() {
        return Err("required: the chip's serial number, in hexadecimal");
    }
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("not hexadecimal");
    }
    if !hex.len().is_multiple_of(2) || !(8..=20).contains(&hex.len()) {
        return Err("must be 4 to 10 whole bytes (8 to 20 hexadecimal digits)");
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_of_known_numbers() {
        // The classic examples.
        assert_eq!(luhn_digit("7992739871"), 3);
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("79927398710"));
        assert!(luhn_valid("4539578763621486"));
        assert!(!luhn_valid("4539578763621487"));
        assert!(!luhn_valid("45395787636214a6"));
        assert!(!luhn_valid("4"));
    }

    #[test]
    fn every_single_digit_error_is_caught() {
        let number = card_number("9250", 1234);
        assert!(luhn_valid(&number));
        for position in 0..number.len() {
            for digit in b'0'..=b'9' {
                let mut wrong = number.clone().into_bytes();
                if wrong[position] == digit {
                    continue;
                }
                wrong[position] = digit;
                assert!(!luhn_valid(std::str::from_utf8(&wrong).unwrap()));
            }
        }
    }

    #[test]
    fn card_numbers_are_sixteen_digits() {
        assert_eq!(card_number("9250", 1), "9250000000000016");
        assert_eq!(card_number("9250", 1).len(), CARD_NUMBER_LENGTH);
        assert_eq!(card_number("1", 42).len(), CARD_NUMBER_LENGTH);
        assert!(luhn_valid(&card_number("123456789", 999_999)));
        assert!(valid_prefix("9250"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("92a"));
        assert!(!valid_prefix("1234567890"));
    }

    #[test]
    fn escn_is_a_version_one_uuid_with_the_pic_in_its_node() {
        let at = jiff::Timestamp::from_second(1_788_000_000).unwrap();
        let escn = escn("001", "999876543", at, 7).unwrap();
        assert_eq!(escn.get_version_num(), 1);
        assert_eq!(escn.get_variant(), uuid::Variant::RFC4122);
        let text = escn.to_string();
        assert!(text.ends_with("-001999876543"), "{text}");
        // The timestamp reads back as the instant it was made.
        let (seconds, _) = escn.get_timestamp().unwrap().to_unix();
        assert_eq!(seconds, 1_788_000_000);
        // Two cards of the same instant differ by their clock sequence.
        assert_ne!(escn, super::escn("001", "999876543", at, 8).unwrap());
        assert_eq!(super::escn("01", "999876543", at, 7), None);
        assert_eq!(super::escn("001", "99987654", at, 7), None);
    }

    #[test]
    fn esi_needs_an_ine() {
        assert_eq!(
            esi("123456789AB").as_deref(),
            Some("urn:schac:personalUniqueCode:int:esi:fr:123456789AB")
        );
        assert_eq!(esi(""), None);
    }

    #[test]
    fn csn_forms() {
        assert_eq!(csn("04:a2:2b:ca:7c:4d:80").as_deref(), Ok("04A22BCA7C4D80"));
        assert_eq!(csn("E0040150 12345678").as_deref(), Ok("E004015012345678"));
        assert!(csn("").is_err());
        assert!(csn("04a22bcx").is_err());
        assert!(csn("04a22b").is_err());
        assert!(csn("04a22bca7").is_err());
    }
}

/// Property tests of the numbers made from configuration and of the serial numbers
/// operators type. Cases: proptest's (256, or `PROPTEST_CASES`).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn a_card_number_is_luhn_valid_and_16_digits_while_the_sequence_fits(
            prefix in "[0-9]{1,9}",
            sequence in prop_oneof![0u64..1_000_000, any::<u64>()],
        ) {
            let number = card_number(&prefix, sequence);
            prop_assert!(valid_prefix(&prefix));
            prop_assert!(luhn_valid(&number), "{}", number);
            prop_assert!(number.starts_with(&prefix));
            // The sequence has the room the prefix leaves (6 digits for a 9-digit
            // prefix, 11 for the default `9250`); beyond, the number is longer.
            if sequence.to_string().len() <= CARD_NUMBER_LENGTH - 1 - prefix.len() {
                prop_assert_eq!(number.len(), CARD_NUMBER_LENGTH);
            }
        }

        #[test]
        fn a_changed_digit_is_caught(
            prefix in "[0-9]{1,9}", sequence in 0u64..1_000_000,
            at in any::<prop::sample::Index>(), digit in 0u8..10,
        ) {
            let number = card_number(&prefix, sequence);
            let at = at.index(number.len());
            let mut changed = number.clone().into_bytes();
            changed[at] = b'0' + digit;
            let changed = String::from_utf8(changed).unwrap_or_default();
            prop_assert_eq!(luhn_valid(&changed), changed == number);
        }

        #[test]
        fn any_text_is_a_serial_number_or_a_reason(
            input in prop_oneof![
                "([0-9a-fA-F]{2}[:\\- ]?){3,11}",
                "\\PC{0,24}",
                any::<String>(),
            ],
        ) {
            if let Ok(csn) = csn(&input) {
                prop_assert!(csn.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
                prop_assert!(csn.len() % 2 == 0 && (8..=20).contains(&csn.len()));
                prop_assert_eq!(super::csn(&csn), Ok(csn.clone()));
            }
            if luhn_valid(&input) {
                prop_assert!(input.bytes().all(|b| b.is_ascii_digit()));
            }
        }

        #[test]
        fn an_escn_carries_the_generator_and_the_pic(
            generator in prop_oneof!["[0-9]{3}", "\\PC{0,4}"],
            pic in prop_oneof!["[0-9]{9}", "\\PC{0,10}"],
            seconds in prop_oneof![0i64..4_102_444_800, any::<i64>()],
            sequence in any::<u64>(),
        ) {
            let at = jiff::Timestamp::from_second(seconds).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            let escn = escn(&generator, &pic, at, sequence);
            prop_assert_eq!(escn.is_some(), valid_generator(&generator) && valid_pic(&pic) && at >= jiff::Timestamp::UNIX_EPOCH);
            if let Some(escn) = escn {
                let text = escn.to_string();
                prop_assert_eq!(escn.get_version_num(), 1);
                prop_assert!(text.ends_with(&format!("{generator}{pic}")), "{}", text);
            }
        }
    }
}
