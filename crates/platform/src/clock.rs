//! The service's clock: what day it is in the university's time zone.
//!
//! Stays, agreements and grants are dated in days, and a day begins at midnight where
//! the university is (Europe/Paris, or an overseas zone), not at midnight UTC.

use time::{Date, Month};

/// Today's date in a configured IANA time zone.
#[derive(Debug, Clone)]
pub struct Clock {
    zone: jiff::tz::TimeZone,
}

impl Clock {
    /// A clock in `zone`, an IANA name such as `Europe/Paris` or `Indian/Reunion`.
    pub fn new(zone: &str) -> Result<Self, String> {
        jiff::tz::TimeZone::get(zone)
            .map(|zone| Self { zone })
            .map_err(|error| format!("{zone:?} is not a known time zone ({error})"))
    }

    /// The date now, where the university is.
    pub fn today(&self) -> Date {
        self.date_at(jiff::Timestamp::now())
    }

    fn date_at(&self, instant: jiff::Timestamp) -> Date {
        let date = self.zone.to_datetime(instant).date();
        Month::try_from(date.month() as u8)
            .ok()
            .and_then(|month| {
                Date::from_calendar_date(i32::from(date.year()), month, date.day() as u8).ok()
            })
            .unwrap_or(Date::MIN)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new(crate::config::DEFAULT_TIME_ZONE).unwrap_or(Self {
            zone: jiff::tz::TimeZone::UTC,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn at(instant: &str) -> jiff::Timestamp {
        instant.parse().expect("an instant")
    }

    #[test]
    fn the_day_changes_at_local_midnight() {
        let paris = Clock::new("Europe/Paris").expect("known zone");
        // 22:30 UTC in summer is 00:30 the next day in Paris.
        assert_eq!(
            paris.date_at(at("2026-07-01T22:30:00Z")),
            date!(2026 - 07 - 02)
        );
        assert_eq!(
            paris.date_at(at("2026-07-01T21:30:00Z")),
            date!(2026 - 07 - 01)
        );
        // In winter, one hour ahead only.
        assert_eq!(
            paris.date_at(at("2026-12-31T23:30:00Z")),
            date!(2027 - 01 - 01)
        );
        let noumea = Clock::new("Pacific/Noumea").expect("known zone");
        assert_eq!(
            noumea.date_at(at("2026-07-01T13:30:00Z")),
            date!(2026 - 07 - 02)
        );
        let guadeloupe = Clock::new("America/Guadeloupe").expect("known zone");
        assert_eq!(
            guadeloupe.date_at(at("2026-07-02T02:00:00Z")),
            date!(2026 - 07 - 01)
        );
    }

    #[test]
    fn an_unknown_zone_is_refused() {
        assert!(Clock::new("Europe/Atlantis").is_err());
    }
}
