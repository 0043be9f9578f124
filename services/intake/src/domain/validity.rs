//! When a learner is hosted, as integrators see it: dates, never the stays themselves.

use time::Date;

/// The days a learner is valid, and whether today is one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub from: Date,
    pub until: Date,
    pub current: bool,
}

/// The validity given by `stays` (first and last days of the stays not cancelled):
/// the span of the stays covering today; when none does, the next stay to come; else
/// the last that ended. None without a stay.
pub fn validity(stays: &[(Date, Date)], today: Date) -> Option<Validity> {
    let covering: Vec<&(Date, Date)> = stays
        .iter()
        .filter(|(start, end)| *start <= today && today <= *end)
        .collect();
    if let (Some(from), Some(until)) = (
        covering.iter().map(|(start, _)| *start).min(),
        covering.iter().map(|(_, end)| *end).max(),
    ) {
        return Some(Validity {
            from,
            until,
            current: true,
        });
    }
    let next = stays
        .iter()
        .filter(|(start, _)| *start > today)
        .min_by_key(|(start, _)| *start);
    let last = || stays.iter().max_by_key(|(_, end)| *end);
    next.or_else(last).map(|(from, until)| Validity {
        from: *from,
        until: *until,
        current: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 10 - 01);

    #[test]
    fn the_stays_covering_today_give_the_validity() {
        let stays = [
            (date!(2026 - 01 - 01), date!(2026 - 06 - 30)),
            (date!(2026 - 09 - 01), date!(2026 - 12 - 31)),
            (date!(2026 - 10 - 01), date!(2027 - 03 - 31)),
            (date!(2027 - 09 - 01), date!(2028 - 06 - 30)),
        ];
        assert_eq!(
            validity(&stays, TODAY),
            Some(Validity {
                from: date!(2026 - 09 - 01),
                until: date!(2027 - 03 - 31),
                current: true
            })
        );
    }

    #[test]
    fn without_a_current_stay_the_next_then_the_last_one_counts() {
        let ended = (date!(2025 - 01 - 01), date!(2025 - 06 - 30));
        let older = (date!(2024 - 01 - 01), date!(2024 - 06 - 30));
        let coming = (date!(2027 - 01 - 01), date!(2027 - 06 - 30));
        let later = (date!(2028 - 01 - 01), date!(2028 - 06 - 30));
        let not_current = |(from, until): (Date, Date)| {
            Some(Validity {
                from,
                until,
                current: false,
            })
        };
        assert_eq!(
            validity(&[later, ended, coming], TODAY),
            not_current(coming)
        );
        assert_eq!(validity(&[older, ended], TODAY), not_current(ended));
        assert_eq!(validity(&[], TODAY), None);
    }
}
