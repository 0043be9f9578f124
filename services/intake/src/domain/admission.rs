//! What becomes of one registration, decided from what the registry knows: who the
//! person is (one already registered, someone new, or possibly someone registered,
//! for a person to decide), whether the stay is new, and whether its agreement takes
//! it. Pure functions: the store loads the facts, these decide.

use hosted_platform::error::Violations;
use time::{Date, Duration};
use uuid::Uuid;

use super::{
    NewPerson, NewStay,
    names::{Identity, Likeness, NearReason},
    registration::format_date,
};

/// The identity matching compares.
pub fn identity_of(person: &NewPerson) -> Identity {
    Identity::new(
        &person.family_name,
        person.birth_name.as_deref(),
        &person.given_names,
        person.birth_date,
        person.ine.as_deref(),
    )
}

/// A stay the registry holds, or that an earlier row of the same batch adds.
#[derive(Debug, Clone)]
pub struct KnownStay {
    pub stay_id: Uuid,
    pub population: String,
    pub start_date: Date,
    pub end_date: Date,
    pub cancelled: bool,
    /// The batch row that adds it, when it is not stored yet.
    pub from_row: Option<usize>,
}

/// A person the registry holds, or that an earlier row of the same batch creates.
#[derive(Debug, Clone)]
pub struct KnownPerson {
    pub learner_id: Uuid,
    pub login: String,
    pub identity: Identity,
    pub stays: Vec<KnownStay>,
}

/// Who a registration is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The person at this index of the known persons.
    Existing(usize),
    New,
    /// Persons who may be the one registered, with why: nothing is registered until
    /// someone decides.
    PossibleDuplicate(Vec<(usize, NearReason)>),
    /// The INE is another person's: registering would merge two people.
    IneOfAnother,
}

/// Finds who `identity` is among `known` (persons born the same day and the holder of
/// its INE, oldest first).
///
/// An INE names one person: a registration with the INE of a known person is that
/// person only when the rest of the identity is the same; anything else is refused,
/// never attached to the INE's holder nor given to a second person. Otherwise the
/// oldest person who is the same is the one; persons near it make a possible
/// duplicate unless the caller confirmed a new person.
pub fn resolve(
    identity: &Identity,
    known: &[&KnownPerson],
    confirm_new_person: bool,
) -> Resolution {
    if let Some(ine) = identity.ine()
        && let Some(holder) = known
            .iter()
            .position(|person| person.identity.ine() == Some(ine))
    {
        return if known[holder].identity.likeness(identity) == Likeness::Same {
            Resolution::Existing(holder)
        } else {
            Resolution::IneOfAnother
        };
    }
    let mut near = Vec::new();
    for (index, person) in known.iter().enumerate() {
        match person.identity.likeness(identity) {
            Likeness::Same => return Resolution::Existing(index),
            Likeness::Near(reason) => near.push((index, reason)),
            Likeness::Different => {}
        }
    }
    if near.is_empty() || confirm_new_person {
        Resolution::New
    } else {
        Resolution::PossibleDuplicate(near)
    }
}

/// What a stay is to the person's stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StayFit {
    /// The same stay (population and start date) is there: registering it again
    /// changes nothing. `from_row` when an earlier row of the batch added it.
    Same {
        stay_id: Uuid,
        from_row: Option<usize>,
    },
    New,
    /// It overlaps a stay of the same population.
    Overlaps(Violations),
}

pub fn fit_stay(stays: &[KnownStay], stay: &NewStay) -> StayFit {
    if let Some(same) = stays
        .iter()
        .find(|s| s.population == stay.population && s.start_date == stay.start_date)
    {
        return StayFit::Same {
            stay_id: same.stay_id,
            from_row: same.from_row,
        };
    }
    if let Some(overlap) = stays.iter().find(|s| {
        !s.cancelled
            && s.population == stay.population
            && s.start_date <= stay.end_date
            && s.end_date >= stay.start_date
    }) {
        let mut violations = Violations::default();
        violations.add(
            "stay.start_date",
            format!(
                "overlaps a stay of the same population from {} to {}",
                format_date(overlap.start_date),
                format_date(overlap.end_date)
            ),
        );
        return StayFit::Overlaps(violations);
    }
    StayFit::New
}

/// An agreement as registration needs it: what it covers, its cap and the periods
/// of the stays under it (only when it has a cap).
#[derive(Debug, Clone)]
pub struct AgreementTerms {
    pub populations: Vec<String>,
    pub start_date: Date,
    pub end_date: Date,
    /// 0: no cap.
    pub head_count_cap: i32,
    /// First and last days of the stays under it, not cancelled.
    pub stays: Vec<(Date, Date)>,
}

impl AgreementTerms {
    /// Whether the agreement covers the stay: its population and every day of it.
    /// A stay it does not cover is a mistake in the request (INVALID_ARGUMENT).
    pub fn check_coverage(&self, stay: &NewStay, violations: &mut Violations) {
        if !self.populations.contains(&stay.population) {
            violations.add(
                "stay.agreement_id",
                format!(
                    "the agreement does not cover population {}",
                    stay.population
                ),
            );
        }
        if stay.start_date < self.start_date || stay.end_date > self.end_date {
            violations.add(
                "stay.agreement_id",
                format!(
                    "the agreement runs from {} to {}: it does not cover the whole stay",
                    format_date(self.start_date),
                    format_date(self.end_date)
                ),
            );
        }
    }

    /// The cap is a head count *at once*: the stay fits when, on every day of it,
    /// fewer stays than the cap run under the agreement. Stays of other years do not
    /// count. Over the cap is a state of the agreement (FAILED_PRECONDITION).
    pub fn check_cap(&self, stay: &NewStay) -> Result<(), Violations> {
        let Ok(cap) = usize::try_from(self.head_count_cap) else {
            return Ok(());
        };
        if cap == 0 {
            return Ok(());
        }
        let peak = peak_head_count(&self.stays, stay.start_date, stay.end_date);
        if peak < cap {
            return Ok(());
        }
        let mut violations = Violations::default();
        violations.add(
            "stay.agreement_id",
            format!(
                "the agreement's head-count cap ({cap} at once) is reached: {peak} stays under it run during this one"
            ),
        );
        Err(violations)
    }

    /// Counts the stay as taking a place.
    pub fn take_place(&mut self, stay: &NewStay) {
        self.stays.push((stay.start_date, stay.end_date));
    }
}

/// The most stays of `stays` that run on one same day between `from` and `to`.
pub fn peak_head_count(stays: &[(Date, Date)], from: Date, to: Date) -> usize {
    // +1 on the first day a stay counts, -1 the day after its last: ends before
    // starts on the same day, so that back-to-back stays do not add up.
    let mut changes: Vec<(Date, i64)> = Vec::new();
    for &(start, end) in stays {
        if start > to || end < from {
            continue;
        }
        changes.push((start.max(from), 1));
        if let Some(after) = end.min(to).checked_add(Duration::DAY) {
            changes.push((after, -1));
        }
    }
    changes.sort();
    let (mut running, mut peak) = (0i64, 0i64);
    for (_, change) in changes {
        running += change;
        peak = peak.max(running);
    }
    usize::try_from(peak).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const BORN: Date = date!(2000 - 01 - 02);

    fn known(family: &str, given: &str, ine: Option<&str>) -> KnownPerson {
        KnownPerson {
            learner_id: Uuid::now_v7(),
            login: "x".to_owned(),
            identity: Identity::new(family, None, given, BORN, ine),
            stays: Vec::new(),
        }
    }

    #[test]
    fn an_ine_of_another_person_is_refused_never_merged() {
        let registry = [&known("Martin", "Léa", Some("123456789AB"))];
        let stranger = Identity::new("Durand", None, "Paul", BORN, Some("123456789AB"));
        assert_eq!(
            resolve(&stranger, &registry, false),
            Resolution::IneOfAnother
        );
        assert_eq!(
            resolve(&stranger, &registry, true),
            Resolution::IneOfAnother
        );
        let herself = Identity::new("MARTIN", None, "Lea", BORN, Some("123456789AB"));
        assert_eq!(resolve(&herself, &registry, false), Resolution::Existing(0));
    }

    #[test]
    fn another_ine_for_the_same_names_is_a_possible_duplicate() {
        let registry = [&known("Martin", "Léa", Some("123456789AB"))];
        let twin = Identity::new("Martin", None, "Léa", BORN, Some("123456789AC"));
        assert_eq!(
            resolve(&twin, &registry, false),
            Resolution::PossibleDuplicate(vec![(0, NearReason::IneDiffers)])
        );
        assert_eq!(resolve(&twin, &registry, true), Resolution::New);
    }

    #[test]
    fn the_oldest_same_person_wins() {
        let (first, second) = (known("Martin", "Léa", None), known("Martin", "Léa", None));
        let registry = [&first, &second];
        let again = Identity::new("Martin", None, "Léa", BORN, None);
        assert_eq!(resolve(&again, &registry, false), Resolution::Existing(0));
    }

    fn stay(population: &str, start: Date, end: Date) -> NewStay {
        NewStay {
            population: population.to_owned(),
            sponsor_unit: "IFSI-NORD".to_owned(),
            sponsor_login: None,
            agreement_id: None,
            start_date: start,
            end_date: end,
            requested_resources: Vec::new(),
        }
    }

    #[test]
    fn stays_fit_or_overlap() {
        let known = [KnownStay {
            stay_id: Uuid::now_v7(),
            population: "IFSI".to_owned(),
            start_date: date!(2026 - 09 - 01),
            end_date: date!(2027 - 06 - 30),
            cancelled: false,
            from_row: Some(3),
        }];
        assert!(matches!(
            fit_stay(
                &known,
                &stay("IFSI", date!(2026 - 09 - 01), date!(2027 - 05 - 01))
            ),
            StayFit::Same {
                from_row: Some(3),
                ..
            }
        ));
        assert!(matches!(
            fit_stay(
                &known,
                &stay("IFSI", date!(2027 - 06 - 01), date!(2027 - 12 - 01))
            ),
            StayFit::Overlaps(_)
        ));
        assert_eq!(
            fit_stay(
                &known,
                &stay("VAE", date!(2027 - 06 - 01), date!(2027 - 12 - 01))
            ),
            StayFit::New
        );
    }

    #[test]
    fn the_cap_counts_stays_at_once() {
        let mut terms = AgreementTerms {
            populations: vec!["IFSI".to_owned()],
            start_date: date!(2026 - 01 - 01),
            end_date: date!(2030 - 12 - 31),
            head_count_cap: 1,
            stays: vec![(date!(2026 - 09 - 01), date!(2027 - 06 - 30))],
        };
        let next_year = stay("IFSI", date!(2027 - 09 - 01), date!(2028 - 06 - 30));
        assert_eq!(terms.check_cap(&next_year), Ok(()));
        let same_year = stay("IFSI", date!(2027 - 01 - 01), date!(2027 - 03 - 31));
        assert!(terms.check_cap(&same_year).is_err());
        terms.take_place(&next_year);
        assert!(terms.check_cap(&next_year).is_err());
        terms.head_count_cap = 0;
        assert_eq!(terms.check_cap(&same_year), Ok(()));
    }

    #[test]
    fn peaks() {
        let stays = [
            (date!(2026 - 01 - 01), date!(2026 - 01 - 31)),
            (date!(2026 - 02 - 01), date!(2026 - 02 - 28)),
            (date!(2026 - 01 - 15), date!(2026 - 02 - 15)),
        ];
        // Back to back: never two of the first two at once.
        assert_eq!(
            peak_head_count(&stays[..2], date!(2026 - 01 - 01), date!(2026 - 12 - 31)),
            1
        );
        assert_eq!(
            peak_head_count(&stays, date!(2026 - 01 - 01), date!(2026 - 12 - 31)),
            2
        );
        assert_eq!(
            peak_head_count(&stays, date!(2026 - 03 - 01), date!(2026 - 12 - 31)),
            0
        );
    }
}
