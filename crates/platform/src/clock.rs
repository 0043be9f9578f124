//! The service's clock: what day it is in the university's time zone.
//!
//! Stays, agreements and grants are dated in days, and a day begins at midnight where
//! the university is (Europe/Paris, or an overseas zone), not at midnight UTC.
//!
//! A clock is the system's, or manual: tests set a manual clock to any instant and
//! whatever waits for the next day ([`DayChange`]) wakes at once, so that what happens
//! on a future date is shown without waiting for it.
//!
//! A third kind, the **rehearsal** clock, is for soak runs of whole processes, where a
//! test cannot move a manual clock: from a configured real instant on, it runs a
//! configured number of days per real minute, so that stays start and end, grants
//! take effect and lapse and accounts move on while the soak runs. Every process given
//! the same two settings shows the same instant. Never in production: it is off unless
//! both `[clock] rehearsal_days_per_minute` and `rehearsal_started_at` are set, and a
//! service that runs on it says so in a warning at start.

use std::{sync::Arc, time::Duration};

use time::{Date, Month, format_description::BorrowedFormatItem, macros::format_description};
use tokio::sync::watch;

/// Days travel as ISO 8601 text in the contracts: `YYYY-MM-DD`.
pub const ISO_DAY: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// An instant as the contracts carry it.
pub fn wire_instant(instant: jiff::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: instant.as_second(),
        nanos: instant.subsec_nanosecond(),
    }
}

/// A stored instant (a `timestamptz` column) as the contracts carry it.
pub fn wire_time(at: time::OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        nanos: at.nanosecond() as i32,
    }
}

/// A day as the contracts write it.
pub fn format_day(day: Date) -> String {
    day.format(ISO_DAY).unwrap_or_default()
}

/// A day as the contracts write it, read back; None when it is not one.
pub fn parse_day(text: &str) -> Option<Date> {
    Date::parse(text, ISO_DAY).ok()
}

/// Today's date in a configured IANA time zone.
#[derive(Debug, Clone)]
pub struct Clock {
    zone: jiff::tz::TimeZone,
    /// Set for a manual clock: the instant it shows.
    manual: Option<Arc<watch::Sender<jiff::Timestamp>>>,
    /// Set for a rehearsal clock: when it started and how fast it runs.
    rehearsal: Option<Rehearsal>,
}

/// An accelerated calendar: at `started_at` (a real instant) the clock shows
/// `started_at`; each real second after it, `speed` seconds pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rehearsal {
    started_at: jiff::Timestamp,
    speed: i128,
}

impl Rehearsal {
    /// The instant the rehearsal shows at the real instant `real`.
    fn shows_at(self, real: jiff::Timestamp) -> jiff::Timestamp {
        let elapsed = real.as_nanosecond() - self.started_at.as_nanosecond();
        elapsed
            .checked_mul(self.speed)
            .and_then(|shown| shown.checked_add(self.started_at.as_nanosecond()))
            .and_then(|shown| jiff::Timestamp::from_nanosecond(shown).ok())
            .unwrap_or(jiff::Timestamp::MAX)
    }

    /// How long, in real time, the rehearsal takes to show `shown` more.
    fn real(self, shown: Duration) -> Duration {
        let speed = u32::try_from(self.speed).unwrap_or(u32::MAX).max(1);
        shown / speed
    }
}

/// The fastest a rehearsal clock may run: a day a second.
pub const MAX_REHEARSAL_DAYS_PER_MINUTE: u32 = 60;

/// The longest a [`DayChange`] sleeps before looking at the system clock again, so
/// that a clock stepped by NTP or by hand is noticed.
const LONGEST_SLEEP: Duration = Duration::from_secs(300);

impl Clock {
    /// A clock in `zone`, an IANA name such as `Europe/Paris` or `Indian/Reunion`.
    pub fn new(zone: &str) -> Result<Self, String> {
        jiff::tz::TimeZone::get(zone)
            .map(|zone| Self {
                zone,
                manual: None,
                rehearsal: None,
            })
            .map_err(|error| format!("{zone:?} is not a known time zone ({error})"))
    }

    /// A clock that shows `instant` until [`Clock::set`] moves it (tests, simulations).
    pub fn manual(zone: &str, instant: jiff::Timestamp) -> Result<Self, String> {
        let mut clock = Self::new(zone)?;
        clock.manual = Some(Arc::new(watch::Sender::new(instant)));
        Ok(clock)
    }

    /// A rehearsal clock (soak runs only, see the module's documentation): it shows
    /// `started_at` at the real instant `started_at`, and from then on runs
    /// `days_per_minute` days per real minute (1 to
    /// [`MAX_REHEARSAL_DAYS_PER_MINUTE`]).
    pub fn rehearsal(
        zone: &str,
        started_at: jiff::Timestamp,
        days_per_minute: u32,
    ) -> Result<Self, String> {
        if !(1..=MAX_REHEARSAL_DAYS_PER_MINUTE).contains(&days_per_minute) {
            return Err(format!(
                "{days_per_minute} days per minute: from 1 to {MAX_REHEARSAL_DAYS_PER_MINUTE}"
            ));
        }
        let mut clock = Self::new(zone)?;
        clock.rehearsal = Some(Rehearsal {
            started_at,
            // A day a minute is 1,440 times as fast as real time.
            speed: i128::from(days_per_minute) * 1_440,
        });
        Ok(clock)
    }

    /// Whether this is a rehearsal clock.
    pub fn is_rehearsal(&self) -> bool {
        self.rehearsal.is_some()
    }

    /// Moves a manual clock (and every clone of it) to `instant`, waking whatever
    /// waits for a day change. Returns false, and does nothing, on the system clock.
    pub fn set(&self, instant: jiff::Timestamp) -> bool {
        match &self.manual {
            Some(manual) => {
                manual.send_replace(instant);
                true
            }
            None => false,
        }
    }

    /// Moves a manual clock by whole days (see [`Clock::set`]).
    pub fn advance_days(&self, days: i64) -> bool {
        let next = self.now() + jiff::SignedDuration::from_hours(24 * days);
        self.set(next)
    }

    /// The instant now.
    pub fn now(&self) -> jiff::Timestamp {
        match &self.manual {
            Some(manual) => *manual.borrow(),
            None => match self.rehearsal {
                Some(rehearsal) => rehearsal.shows_at(jiff::Timestamp::now()),
                None => jiff::Timestamp::now(),
            },
        }
    }

    /// The date now, where the university is.
    pub fn today(&self) -> Date {
        self.date_at(self.now())
    }

    /// The date at `instant`, where the university is.
    pub fn date_at(&self, instant: jiff::Timestamp) -> Date {
        let date = self.zone.to_datetime(instant).date();
        Month::try_from(date.month() as u8)
            .ok()
            .and_then(|month| {
                Date::from_calendar_date(i32::from(date.year()), month, date.day() as u8).ok()
            })
            .unwrap_or(Date::MIN)
    }

    /// The instant `day` begins where the university is (its local midnight, or the
    /// first instant of the day when a time change skips midnight).
    pub fn start_of(&self, day: Date) -> jiff::Timestamp {
        jiff::civil::Date::new(
            i16::try_from(day.year()).unwrap_or(i16::MAX),
            u8::from(day.month()) as i8,
            day.day() as i8,
        )
        .ok()
        .and_then(|date| self.zone.to_timestamp(date.at(0, 0, 0, 0)).ok())
        .unwrap_or(jiff::Timestamp::MIN)
    }

    /// The instant `day` ends where the university is: the next day's start.
    pub fn end_of(&self, day: Date) -> jiff::Timestamp {
        self.start_of(day.next_day().unwrap_or(day))
    }

    /// How long until the next local midnight, from `instant`.
    fn until_next_day(&self, instant: jiff::Timestamp) -> Duration {
        let tomorrow = self
            .zone
            .to_datetime(instant)
            .date()
            .tomorrow()
            .ok()
            .and_then(|day| self.zone.to_timestamp(day.at(0, 0, 0, 0)).ok());
        tomorrow
            .and_then(|midnight| Duration::try_from(midnight.duration_since(instant)).ok())
            .unwrap_or(LONGEST_SLEEP)
    }

    /// Something to wait on for the next day.
    pub fn day_change(&self) -> DayChange {
        DayChange {
            clock: self.clone(),
            manual: self.manual.as_ref().map(|manual| manual.subscribe()),
        }
    }
}

/// Waits for the date to change: the next local midnight on the system clock (or a
/// few minutes, whichever comes first), the next [`Clock::set`] on a manual one, the
/// rehearsal's next midnight, as soon as it comes in real time, on a rehearsal clock.
#[derive(Debug)]
pub struct DayChange {
    clock: Clock,
    manual: Option<watch::Receiver<jiff::Timestamp>>,
}

impl DayChange {
    /// Resolves when the date may have changed; the caller looks at the clock again.
    pub async fn wait(&mut self) {
        match &mut self.manual {
            Some(receiver) => {
                if receiver.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => {
                let until_midnight = self.clock.until_next_day(self.clock.now());
                let sleep = match self.clock.rehearsal {
                    Some(rehearsal) => rehearsal.real(until_midnight),
                    None => until_midnight,
                }
                .min(LONGEST_SLEEP);
                // Just past midnight, so that the date has changed when it wakes.
                tokio::time::sleep(sleep + Duration::from_millis(50)).await;
            }
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new(crate::config::DEFAULT_TIME_ZONE).unwrap_or(Self {
            zone: jiff::tz::TimeZone::UTC,
            manual: None,
            rehearsal: None,
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
    fn days_begin_and_end_at_local_midnight() {
        let paris = Clock::new("Europe/Paris").expect("known zone");
        assert_eq!(
            paris.start_of(date!(2026 - 07 - 02)),
            at("2026-07-01T22:00:00Z")
        );
        assert_eq!(
            paris.end_of(date!(2026 - 12 - 31)),
            at("2026-12-31T23:00:00Z")
        );
        let reunion = Clock::new("Indian/Reunion").expect("known zone");
        assert_eq!(
            reunion.start_of(date!(2026 - 07 - 02)),
            at("2026-07-01T20:00:00Z")
        );
    }

    #[test]
    fn the_next_day_begins_at_local_midnight() {
        let paris = Clock::new("Europe/Paris").expect("known zone");
        // 21:30 UTC in summer is 23:30 in Paris: half an hour to go.
        assert_eq!(
            paris.until_next_day(at("2026-07-01T21:30:00Z")),
            Duration::from_secs(30 * 60)
        );
    }

    #[tokio::test]
    async fn a_manual_clock_moves_every_clone_and_wakes_the_waiters() {
        let clock = Clock::manual("Europe/Paris", at("2026-07-01T10:00:00Z")).expect("zone");
        let clone = clock.clone();
        let mut change = clone.day_change();
        assert_eq!(clone.today(), date!(2026 - 07 - 01));
        assert!(clock.advance_days(3));
        tokio::time::timeout(Duration::from_secs(5), change.wait())
            .await
            .expect("woken by the change");
        assert_eq!(clone.today(), date!(2026 - 07 - 04));
        assert!(!Clock::default().set(at("2026-07-01T10:00:00Z")));
    }

    #[test]
    fn a_rehearsal_runs_its_days_per_minute_from_its_start() {
        let rehearsal = Rehearsal {
            started_at: at("2026-07-01T10:00:00Z"),
            speed: 10 * 1_440,
        };
        assert_eq!(
            rehearsal.shows_at(at("2026-07-01T10:00:00Z")),
            at("2026-07-01T10:00:00Z")
        );
        // Ten days a minute: one real minute later, ten days later.
        assert_eq!(
            rehearsal.shows_at(at("2026-07-01T10:01:00Z")),
            at("2026-07-11T10:00:00Z")
        );
        assert_eq!(
            rehearsal.shows_at(at("2026-07-01T10:00:06Z")),
            at("2026-07-02T10:00:00Z")
        );
        assert_eq!(
            rehearsal.real(Duration::from_secs(86_400)),
            Duration::from_secs(6)
        );
        assert_eq!(
            rehearsal.shows_at(jiff::Timestamp::MAX),
            jiff::Timestamp::MAX,
            "no overflow"
        );
        assert!(Clock::rehearsal("Europe/Paris", at("2026-07-01T10:00:00Z"), 0).is_err());
        assert!(Clock::rehearsal("Europe/Paris", at("2026-07-01T10:00:00Z"), 61).is_err());
        assert!(!Clock::default().is_rehearsal());
    }

    #[tokio::test]
    async fn a_rehearsal_clock_wakes_its_waiters_at_each_of_its_midnights() {
        // A day a second, started now: a midnight comes within a real second.
        let clock = Clock::rehearsal("Europe/Paris", jiff::Timestamp::now(), 60).expect("zone");
        assert!(clock.is_rehearsal());
        assert!(
            !clock.set(at("2026-07-01T10:00:00Z")),
            "only a manual clock is set"
        );
        let mut change = clock.day_change();
        let mut day = clock.today();
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(30), change.wait())
                .await
                .expect("woken at the rehearsal's midnight, not minutes later");
            // Woken past its midnight, never before: the date has changed.
            assert!(clock.today() > day, "{} after {day}", clock.today());
            day = clock.today();
        }
    }

    #[test]
    fn an_unknown_zone_is_refused() {
        assert!(Clock::new("Europe/Atlantis").is_err());
    }
}
