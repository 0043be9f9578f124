//! The rules of a stay's life after registration: extension, early end, cancellation.

use hosted_platform::error::Violations;
use time::Date;

use super::{
    registration::{self, format_date},
    require_reason, resources, unit,
};

/// What the rules need to know of a stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StayFacts {
    pub start_date: Date,
    pub end_date: Date,
    pub cancelled: bool,
    pub population: String,
    pub max_duration_days: i32,
    /// The end of the stay's agreement, when it has one.
    pub agreement_end: Option<Date>,
}

/// Why a change of a stay is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request itself is wrong (INVALID_ARGUMENT).
    Invalid(Violations),
    /// The request is fine but the stay's state forbids it (FAILED_PRECONDITION).
    State(String),
}

fn live(stay: &StayFacts) -> Result<(), Refusal> {
    if stay.cancelled {
        Err(Refusal::State("the stay was cancelled".to_owned()))
    } else {
        Ok(())
    }
}

/// A later end date: within the population's maximum duration and the agreement.
pub fn check_extension(
    stay: &StayFacts,
    new_end: Date,
    reason: &str,
    today: Date,
) -> Result<(), Refusal> {
    live(stay)?;
    let mut violations = Violations::default();
    require_reason(reason, &mut violations);
    if new_end <= stay.end_date {
        violations.add(
            "new_end_date",
            format!(
                "must be after the current end date {}",
                format_date(stay.end_date)
            ),
        );
    } else {
        let days = (new_end - stay.start_date).whole_days() + 1;
        if days > i64::from(stay.max_duration_days) {
            violations.add(
                "new_end_date",
                format!(
                    "the stay would last {days} days; population {} allows at most {}",
                    stay.population, stay.max_duration_days
                ),
            );
        }
        if let Some(agreement_end) = stay.agreement_end
            && new_end > agreement_end
        {
            violations.add(
                "new_end_date",
                format!(
                    "after the end of the stay's agreement ({})",
                    format_date(agreement_end)
                ),
            );
        }
    }
    if !violations.is_empty() {
        return Err(Refusal::Invalid(violations));
    }
    if stay.end_date < today {
        return Err(Refusal::State(
            "the stay has ended: register a new stay instead".to_owned(),
        ));
    }
    Ok(())
}

/// Why a stay ended before its planned end: the codes a university records when a
/// learner goes before the end of their stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyEnd {
    /// Left of their own will: resigned, gave up, stopped coming.
    Left,
    /// Excluded by a decision of the university.
    Expelled,
    Deceased,
    /// Went on to another institution.
    Transferred,
}

impl EarlyEnd {
    /// The code as stored and as the policy names it (`left`).
    pub fn code(self) -> &'static str {
        match self {
            EarlyEnd::Left => "left",
            EarlyEnd::Expelled => "expelled",
            EarlyEnd::Deceased => "deceased",
            EarlyEnd::Transferred => "transferred",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        [
            EarlyEnd::Left,
            EarlyEnd::Expelled,
            EarlyEnd::Deceased,
            EarlyEnd::Transferred,
        ]
        .into_iter()
        .find(|early| early.code() == code)
    }
}

/// An earlier end date, not before the start (cancel instead). With an early end's
/// code it may be a past day (the learner left last week); without one, a shortening,
/// today at the earliest.
pub fn check_end(
    stay: &StayFacts,
    end_date: Date,
    early_end: Option<EarlyEnd>,
    reason: &str,
    today: Date,
) -> Result<(), Refusal> {
    live(stay)?;
    let mut violations = Violations::default();
    require_reason(reason, &mut violations);
    if end_date >= stay.end_date {
        violations.add(
            "end_date",
            format!(
                "must be before the current end date {} (use ExtendStay to go later)",
                format_date(stay.end_date)
            ),
        );
    }
    if end_date < stay.start_date {
        violations.add(
            "end_date",
            "before the stay's start: cancel the stay instead",
        );
    } else if end_date < today && early_end.is_none() {
        violations.add(
            "end_date",
            "in the past: give early_end (left, expelled, deceased or transferred) to end a \
             stay on a past day; without it, today at the earliest",
        );
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Invalid(violations))
    }
}

/// An amendment of a stay as asked; each part left out keeps the stay's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmendmentInput {
    pub sponsor_unit: Option<String>,
    /// `Some(None)` removes the sponsor person.
    pub sponsor_login: Option<Option<String>>,
    /// Replace the requested resources with `requested_resources` (possibly none).
    pub set_requested_resources: bool,
    pub requested_resources: Vec<String>,
}

/// A checked amendment: `None` keeps the stay's value; requested resources are
/// trimmed and sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StayAmendment {
    pub sponsor_unit: Option<String>,
    pub sponsor_login: Option<Option<String>>,
    pub requested_resources: Option<Vec<String>>,
}

/// Another sponsor or other requested resources: something must be asked for, and a
/// cancelled stay stays as it was.
pub fn check_amendment(
    stay: &StayFacts,
    input: &AmendmentInput,
    reason: &str,
) -> Result<StayAmendment, Refusal> {
    live(stay)?;
    let mut violations = Violations::default();
    require_reason(reason, &mut violations);
    if input.sponsor_unit.is_none()
        && input.sponsor_login.is_none()
        && !input.set_requested_resources
    {
        violations.add(
            "sponsor_unit",
            "nothing to change: give a sponsor_unit, a sponsor_login or set_requested_resources",
        );
    }
    // The form here; whether the unit catalogue has it is checked against the
    // catalogue, at the edge.
    let sponsor_unit = input.sponsor_unit.as_deref().map(unit::normalise_code);
    if let Some(code) = &sponsor_unit
        && !unit::is_code(code)
    {
        violations.add(
            "sponsor_unit",
            format!("{code:?} is not a unit code: {}", unit::CODE_RULE),
        );
    }
    let sponsor_login = input.sponsor_login.as_ref().map(|login| {
        login.as_deref().and_then(|login| {
            registration::check_sponsor_login("sponsor_login", login, &mut violations)
        })
    });
    // A list without the flag would be silently kept as it is: say so instead.
    if !input.set_requested_resources && !input.requested_resources.is_empty() {
        violations.add(
            "set_requested_resources",
            "must be true to replace the requested resources (false keeps them)",
        );
    }
    let requested_resources = input.set_requested_resources.then(|| {
        resources::check_requested_resources(
            "requested_resources",
            &input.requested_resources,
            &mut violations,
        )
    });
    if !violations.is_empty() {
        return Err(Refusal::Invalid(violations));
    }
    Ok(StayAmendment {
        sponsor_unit,
        sponsor_login,
        requested_resources,
    })
}

/// Cancellation: only before the stay starts.
pub fn check_cancel(stay: &StayFacts, reason: &str, today: Date) -> Result<(), Refusal> {
    live(stay)?;
    let mut violations = Violations::default();
    require_reason(reason, &mut violations);
    if !violations.is_empty() {
        return Err(Refusal::Invalid(violations));
    }
    if stay.start_date <= today {
        return Err(Refusal::State(
            "the stay has started: end it (EndStay) instead of cancelling it".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn stay() -> StayFacts {
        StayFacts {
            start_date: date!(2026 - 09 - 01),
            end_date: date!(2027 - 06 - 30),
            cancelled: false,
            population: "IFSI".to_owned(),
            max_duration_days: 400,
            agreement_end: None,
        }
    }

    const TODAY: Date = date!(2026 - 10 - 01);

    #[test]
    fn extension_within_limits() {
        assert_eq!(
            check_extension(&stay(), date!(2027 - 08 - 31), "jury", TODAY),
            Ok(())
        );
        let Err(Refusal::Invalid(too_long)) =
            check_extension(&stay(), date!(2027 - 12 - 31), "jury", TODAY)
        else {
            panic!("too long accepted");
        };
        assert!(too_long.0[0].reason.contains("at most 400"));
        let Err(Refusal::Invalid(earlier)) =
            check_extension(&stay(), date!(2027 - 01 - 31), "", TODAY)
        else {
            panic!("earlier accepted");
        };
        let fields: Vec<&str> = earlier.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["reason", "new_end_date"]);
    }

    #[test]
    fn extension_stays_within_the_agreement() {
        let mut stay = stay();
        stay.agreement_end = Some(date!(2027 - 07 - 15));
        assert!(check_extension(&stay, date!(2027 - 07 - 31), "jury", TODAY).is_err());
        assert_eq!(
            check_extension(&stay, date!(2027 - 07 - 15), "jury", TODAY),
            Ok(())
        );
    }

    #[test]
    fn early_end() {
        assert_eq!(
            check_end(&stay(), date!(2026 - 12 - 31), None, "shortened", TODAY),
            Ok(())
        );
        let Err(Refusal::Invalid(past)) =
            check_end(&stay(), date!(2026 - 09 - 15), None, "left", TODAY)
        else {
            panic!("a past day accepted without a code");
        };
        assert_eq!(past.0[0].field, "end_date");
        assert!(past.0[0].reason.contains("early_end"), "{:?}", past.0);
        assert_eq!(
            check_end(
                &stay(),
                date!(2026 - 09 - 15),
                Some(EarlyEnd::Left),
                "left last month",
                TODAY
            ),
            Ok(()),
            "a past day with a code"
        );
        assert!(
            check_end(
                &stay(),
                date!(2026 - 08 - 31),
                Some(EarlyEnd::Expelled),
                "x",
                TODAY
            )
            .is_err(),
            "before the start"
        );
        assert!(
            check_end(&stay(), date!(2027 - 06 - 30), None, "left", TODAY).is_err(),
            "not earlier"
        );
    }

    #[test]
    fn early_end_codes_read_back() {
        for early in [
            EarlyEnd::Left,
            EarlyEnd::Expelled,
            EarlyEnd::Deceased,
            EarlyEnd::Transferred,
        ] {
            assert_eq!(EarlyEnd::from_code(early.code()), Some(early));
        }
        assert_eq!(EarlyEnd::from_code("Left"), None);
    }

    #[test]
    fn an_amendment_asks_for_something_and_names_resources_well() {
        let nothing = check_amendment(&stay(), &AmendmentInput::default(), "reorganisation");
        let Err(Refusal::Invalid(nothing)) = nothing else {
            panic!("an empty amendment accepted");
        };
        assert_eq!(nothing.0[0].field, "sponsor_unit");

        let clear = AmendmentInput {
            set_requested_resources: true,
            ..AmendmentInput::default()
        };
        assert_eq!(
            check_amendment(&stay(), &clear, "withdrawn")
                .expect("clearing is an amendment")
                .requested_resources,
            Some(Vec::new())
        );

        let replace = AmendmentInput {
            set_requested_resources: true,
            requested_resources: vec!["premises".to_owned(), " library ".to_owned()],
            ..AmendmentInput::default()
        };
        assert_eq!(
            check_amendment(&stay(), &replace, "lab work")
                .expect("valid")
                .requested_resources,
            Some(vec!["library".to_owned(), "premises".to_owned()])
        );

        let bad = AmendmentInput {
            set_requested_resources: true,
            requested_resources: vec!["library".to_owned(), "Library".to_owned()],
            ..AmendmentInput::default()
        };
        let Err(Refusal::Invalid(bad)) = check_amendment(&stay(), &bad, "") else {
            panic!("a bad name accepted");
        };
        let fields: Vec<&str> = bad.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["reason", "requested_resources[1]"]);

        let unflagged = AmendmentInput {
            sponsor_unit: Some("IFSI-SUD".to_owned()),
            requested_resources: vec!["library".to_owned()],
            ..AmendmentInput::default()
        };
        let Err(Refusal::Invalid(unflagged)) = check_amendment(&stay(), &unflagged, "moved") else {
            panic!("a list without its flag accepted");
        };
        assert_eq!(unflagged.0[0].field, "set_requested_resources");

        let mut cancelled = stay();
        cancelled.cancelled = true;
        assert!(matches!(
            check_amendment(&cancelled, &replace, "lab work"),
            Err(Refusal::State(_))
        ));
    }

    #[test]
    fn an_amendment_gives_a_unit_code_and_a_login() {
        let forged = AmendmentInput {
            sponsor_unit: Some("IFSI][affil=staff".to_owned()),
            sponsor_login: Some(Some("jean,ou=evil".to_owned())),
            ..AmendmentInput::default()
        };
        let Err(Refusal::Invalid(forged)) = check_amendment(&stay(), &forged, "moved") else {
            panic!("a forged sponsor accepted");
        };
        let fields: Vec<&str> = forged.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["sponsor_unit", "sponsor_login"]);

        let fine = AmendmentInput {
            sponsor_unit: Some(" lab-bio".to_owned()),
            sponsor_login: Some(Some("Marie.Curie".to_owned())),
            ..AmendmentInput::default()
        };
        let amendment = check_amendment(&stay(), &fine, "moved").expect("valid");
        assert_eq!(amendment.sponsor_unit.as_deref(), Some("LAB-BIO"));
        assert_eq!(
            amendment.sponsor_login,
            Some(Some("marie.curie".to_owned()))
        );
    }

    #[test]
    fn cancellation_only_before_the_start() {
        assert!(matches!(
            check_cancel(&stay(), "never came", TODAY),
            Err(Refusal::State(_))
        ));
        assert_eq!(
            check_cancel(&stay(), "never came", date!(2026 - 08 - 01)),
            Ok(())
        );
        let mut cancelled = stay();
        cancelled.cancelled = true;
        assert!(matches!(
            check_cancel(&cancelled, "again", date!(2026 - 08 - 01)),
            Err(Refusal::State(_))
        ));
    }
}
