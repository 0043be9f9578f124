//! The values operators type on the command line (days, amounts in euros, who
//! pays), checked and converted before anything is sent: a typo is a usage error
//! (exit code 64) at once, not a round trip to intake.

use clap::ValueEnum;
use hosted_contracts::{prost_types::Timestamp, v1};
use time::{Date, macros::format_description};

/// A calendar day as intake takes it, `YYYY-MM-DD`. `DD/MM/YYYY`, as French
/// spreadsheets and people write days, is accepted too and converted.
pub fn day(value: &str) -> Result<String, String> {
    let format = format_description!("[year]-[month]-[day]");
    let value = value.trim();
    let iso = crate::csv_rows::iso_date(value);
    Date::parse(&iso, format)
        .ok()
        .and_then(|date| date.format(format).ok())
        .ok_or_else(|| format!("{value:?} is not a day: YYYY-MM-DD (or DD/MM/YYYY)"))
}

/// A resource the sponsor asks for (`premises`, `library`), as `--request` takes it:
/// one name, or several separated by commas (clap splits them before this sees
/// them). Spaces around a name are dropped; an empty one is refused, since it is a
/// typo (`--request premises,`) or an attempt to withdraw the requests, which
/// `--no-requests` does. Whether the name is one is intake's rule, checked there.
pub fn resource(value: &str) -> Result<String, String> {
    let name = value.trim();
    if name.is_empty() {
        return Err(
            "an empty resource name: give one such as premises or library \
             (`hlctl stay sponsor --no-requests` withdraws every request)"
                .to_owned(),
        );
    }
    Ok(name.to_owned())
}

/// The most euros an amount may say: more than any stay costs, far below what cents
/// in an `i64` could hold.
const MAX_EUROS: i64 = 1_000_000_000;

/// An amount in euros, with at most two decimals after `.` or `,` (`170`, `170.5`,
/// `170,50`), as cents.
pub fn cents(value: &str) -> Result<i64, String> {
    let value = value.trim();
    let wrong = |why: &str| format!("{value:?}: {why}");
    let (units, decimals) = match value.split_once(['.', ',']) {
        Some((units, decimals)) => (units, decimals),
        None => (value, ""),
    };
    let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if value.starts_with('-') {
        return Err(wrong("an amount is 0 or more"));
    }
    if units.is_empty()
        || !digits(units)
        || !digits(decimals)
        || (value.len() > units.len() && decimals.is_empty())
    {
        return Err(wrong(
            "not an amount in euros: digits, then at most 2 decimals after '.' or ',' (e.g. 170.00)",
        ));
    }
    if decimals.len() > 2 {
        return Err(wrong("at most 2 decimals: amounts are in cents"));
    }
    let euros: i64 = units
        .parse()
        .ok()
        .filter(|euros| *euros <= MAX_EUROS)
        .ok_or_else(|| wrong("too large"))?;
    // "5" after the separator is 50 cents.
    let cents: i64 = format!("{decimals:0<2}")
        .parse()
        .map_err(|_| wrong("not an amount"))?;
    Ok(euros * 100 + cents)
}

/// Cents as euros: `17050` is `170.50`.
pub fn euros(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

/// `1 stay`, `2 stays`.
pub fn count(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// Who pays for the stays under an agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgreementPayer {
    Nobody,
    Learner,
    Partner,
}

impl From<AgreementPayer> for v1::Payer {
    fn from(payer: AgreementPayer) -> Self {
        match payer {
            AgreementPayer::Nobody => v1::Payer::Nobody,
            AgreementPayer::Learner => v1::Payer::Learner,
            AgreementPayer::Partner => v1::Payer::Partner,
        }
    }
}

/// Who paid one stay: nobody pays nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PaymentPayer {
    Learner,
    Partner,
}

impl From<PaymentPayer> for v1::Payer {
    fn from(payer: PaymentPayer) -> Self {
        match payer {
            PaymentPayer::Learner => v1::Payer::Learner,
            PaymentPayer::Partner => v1::Payer::Partner,
        }
    }
}

/// A payer as the command line names it (`partner`), from the wire's number.
pub fn payer_name(payer: i32) -> &'static str {
    match v1::Payer::try_from(payer) {
        Ok(v1::Payer::Nobody) => "nobody",
        Ok(v1::Payer::Learner) => "learner",
        Ok(v1::Payer::Partner) => "partner",
        Ok(v1::Payer::Unspecified) | Err(_) => "unspecified",
    }
}

/// A day as the instant entitlement asks about: noon UTC of that day. Entitlement
/// takes the day an instant falls on in the university's time zone, and noon UTC is
/// on the same day in every zone within eleven hours of UTC, summer or winter.
pub fn noon_utc(value: &str) -> Result<Timestamp, String> {
    let iso = day(value)?;
    let date = Date::parse(&iso, format_description!("[year]-[month]-[day]"))
        .map_err(|error| format!("{value:?}: {error}"))?;
    Ok(Timestamp {
        seconds: date
            .with_time(time::macros::time!(12:00))
            .assume_utc()
            .unix_timestamp(),
        nanos: 0,
    })
}

/// A protobuf timestamp as RFC 3339 (UTC); empty when absent.
pub fn instant(seconds: i64, nanos: i32) -> String {
    let nanos = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_iso_and_exist() {
        assert_eq!(day("2027-09-01"), Ok("2027-09-01".to_owned()));
        assert_eq!(day(" 2027-09-01 "), Ok("2027-09-01".to_owned()));
        assert_eq!(day("01/09/2027"), Ok("2027-09-01".to_owned()));
        assert_eq!(day("1/9/2027"), Ok("2027-09-01".to_owned()));
        assert_eq!(day("29/02/2028"), Ok("2028-02-29".to_owned()));
        for wrong in [
            "2027-02-30",
            "2027-13-01",
            "29/02/2027",
            "2027-9-1",
            "01/09/27",
            "tomorrow",
            "",
        ] {
            assert!(day(wrong).is_err(), "{wrong}");
        }
        assert_eq!(
            day("2027-02-30"),
            Err("\"2027-02-30\" is not a day: YYYY-MM-DD (or DD/MM/YYYY)".to_owned())
        );
    }

    #[test]
    fn resource_names_are_trimmed_and_not_empty() {
        assert_eq!(resource("premises"), Ok("premises".to_owned()));
        assert_eq!(resource(" library "), Ok("library".to_owned()));
        // The name's rules are intake's: a capital is sent, for intake to refuse.
        assert_eq!(resource("Premises"), Ok("Premises".to_owned()));
        for empty in ["", " "] {
            assert!(
                resource(empty).is_err_and(|message| message.contains("--no-requests")),
                "{empty:?}"
            );
        }
    }

    #[test]
    fn euros_become_cents() {
        assert_eq!(cents("170"), Ok(17000));
        assert_eq!(cents("170.00"), Ok(17000));
        assert_eq!(cents("170.5"), Ok(17050));
        assert_eq!(cents("170,50"), Ok(17050));
        assert_eq!(cents("0,05"), Ok(5));
        assert_eq!(cents("0"), Ok(0));
        assert_eq!(cents(" 12.34 "), Ok(1234));
        assert_eq!(cents("1000000000.99"), Ok(100_000_000_099));
        for wrong in [
            "",
            "170.",
            ",50",
            "170.555",
            "1.234,50",
            "1 234",
            "12e3",
            "-5",
            "+5",
            "170€",
            "abc",
            "10000000000",
        ] {
            assert!(cents(wrong).is_err(), "{wrong}");
        }
        assert_eq!(
            cents("170.555"),
            Err("\"170.555\": at most 2 decimals: amounts are in cents".to_owned())
        );
    }

    #[test]
    fn cents_read_as_euros() {
        assert_eq!(euros(17050), "170.50");
        assert_eq!(euros(5), "0.05");
        assert_eq!(euros(0), "0.00");
        assert_eq!(euros(-120), "-1.20");
        for amount in ["170", "170,5", "0.05", "99.99"] {
            let Ok(in_cents) = cents(amount) else {
                panic!("{amount}");
            };
            assert_eq!(cents(&euros(in_cents)), Ok(in_cents));
        }
    }

    #[test]
    fn counts_agree() {
        assert_eq!(count(1, "stay", "stays"), "1 stay");
        assert_eq!(count(2, "stay", "stays"), "2 stays");
        assert_eq!(count(0, "stay", "stays"), "0 stays");
    }

    #[test]
    fn payers_by_name() {
        let agreement = |name: &str| AgreementPayer::from_str(name, false).map(v1::Payer::from);
        assert_eq!(agreement("nobody"), Ok(v1::Payer::Nobody));
        assert_eq!(agreement("learner"), Ok(v1::Payer::Learner));
        assert_eq!(agreement("partner"), Ok(v1::Payer::Partner));
        assert!(agreement("rectorat").is_err());
        let payment = |name: &str| PaymentPayer::from_str(name, false).map(v1::Payer::from);
        assert_eq!(payment("learner"), Ok(v1::Payer::Learner));
        assert_eq!(payment("partner"), Ok(v1::Payer::Partner));
        assert!(payment("nobody").is_err(), "nobody pays nothing");
        for payer in [v1::Payer::Nobody, v1::Payer::Learner, v1::Payer::Partner] {
            let name = payer_name(payer.into());
            assert_eq!(agreement(name), Ok(payer), "{name}");
        }
        assert_eq!(payer_name(0), "unspecified");
        assert_eq!(payer_name(42), "unspecified");
    }

    #[test]
    fn days_are_asked_about_at_noon_utc() {
        // 2027-07-01T12:00:00Z.
        let noon = Timestamp {
            seconds: 1_814_443_200,
            nanos: 0,
        };
        assert_eq!(noon_utc("2027-07-01"), Ok(noon));
        assert_eq!(noon_utc("01/07/2027"), Ok(noon));
        assert!(noon_utc("2027-02-30").is_err());
        assert_eq!(instant(noon.seconds, noon.nanos), "2027-07-01T12:00:00Z");
    }

    #[test]
    fn instants_are_rfc3339() {
        assert_eq!(instant(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            instant(1_800_000_000, 500_000_000),
            "2027-01-15T08:00:00.5Z"
        );
    }
}
