//! A card's lifecycle: its states and the transitions allowed between them, for the
//! card office and for the system (which follows the smart-card grant).
//!
//! ```text
//! requested → approved → in print → printed → encoded → enabled ⇄ disabled → destroyed
//!                 ↑__________|  (misprint)                  │
//! every state before destroyed ──(grant ends)──→ expired ───┴─(grant back, encoded)─→ enabled
//! ```

use std::fmt;

use hosted_contracts::v1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Requested,
    Approved,
    InPrint,
    Printed,
    Encoded,
    Enabled,
    Disabled,
    Destroyed,
    Expired,
}

use State::*;

impl State {
    pub const ALL: [State; 9] = [
        Requested, Approved, InPrint, Printed, Encoded, Enabled, Disabled, Destroyed, Expired,
    ];

    /// The name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Requested => "requested",
            Approved => "approved",
            InPrint => "in_print",
            Printed => "printed",
            Encoded => "encoded",
            Enabled => "enabled",
            Disabled => "disabled",
            Destroyed => "destroyed",
            Expired => "expired",
        }
    }

    pub fn parse(name: &str) -> Option<State> {
        Self::ALL.into_iter().find(|state| state.as_str() == name)
    }

    pub fn from_wire(state: v1::CardState) -> Option<State> {
        Some(match state {
            v1::CardState::Unspecified => return None,
            v1::CardState::Requested => Requested,
            v1::CardState::Approved => Approved,
            v1::CardState::InPrint => InPrint,
            v1::CardState::Printed => Printed,
            v1::CardState::Encoded => Encoded,
            v1::CardState::Enabled => Enabled,
            v1::CardState::Disabled => Disabled,
            v1::CardState::Destroyed => Destroyed,
            v1::CardState::Expired => Expired,
        })
    }

    pub const fn to_wire(self) -> v1::CardState {
        match self {
            Requested => v1::CardState::Requested,
            Approved => v1::CardState::Approved,
            InPrint => v1::CardState::InPrint,
            Printed => v1::CardState::Printed,
            Encoded => v1::CardState::Encoded,
            Enabled => v1::CardState::Enabled,
            Disabled => v1::CardState::Disabled,
            Destroyed => v1::CardState::Destroyed,
            Expired => v1::CardState::Expired,
        }
    }

    /// On its way to the holder or in their hands: a learner has at most one such card.
    pub const fn is_live(self) -> bool {
        matches!(
            self,
            Requested | Approved | InPrint | Printed | Encoded | Enabled
        )
    }
}

impl State {
    /// The name people read: `in-print` rather than `in_print`.
    pub const fn label(self) -> &'static str {
        match self {
            InPrint => "in-print",
            other => other.as_str(),
        }
    }

    /// "a requested card", "an enabled card".
    fn card(self) -> String {
        let article = if matches!(self.label().as_bytes()[0], b'a' | b'e' | b'i' | b'o' | b'u') {
            "an"
        } else {
            "a"
        };
        format!("{article} {self} card")
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Who moves a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The card office, through the API.
    Office,
    /// The service itself, following the smart-card grant.
    System,
}

/// Why a card is disabled, as the card office says it.
pub const DISABLE_REASONS: [&str; 3] = ["lost", "stolen", "out-of-order"];

/// Why a card is replaced.
pub const REPLACE_REASONS: [&str; 5] = ["lost", "stolen", "out-of-order", "worn", "spoiled"];

/// The reason a card bears when the grant ended.
pub const EXPIRED_REASON: &str = "expired";

/// How the reason of a card disabled by the holder's lock starts (`locked: fraud`):
/// the service enables it again at the unlock if it is still so, and only then.
pub const LOCKED_REASON_PREFIX: &str = "locked: ";

/// Whether `by` may move a card from `from` to `to`.
fn permits(from: State, to: State, by: By) -> bool {
    let office = matches!(
        (from, to),
        (Requested, Approved)
            | (Approved, InPrint)
            | (InPrint, Printed)
            // A misprint: back in the queue.
            | (InPrint, Approved)
            | (Printed, Encoded)
            | (Encoded, Enabled)
            | (Enabled, Disabled)
            // Found again, or repaired.
            | (Disabled, Enabled)
            // Spoiled before it was handed over, or taken back.
            | (Printed | Encoded | Disabled | Expired, Destroyed)
    );
    let system = matches!(
        (from, to),
        (Requested, Approved)
            | (
                Requested | Approved | InPrint | Printed | Encoded | Enabled,
                Expired
            )
            | (Expired, Enabled)
            // The holder is locked, then unlocked (or their grant ended meanwhile).
            | (Enabled, Disabled)
            | (Disabled, Enabled | Expired)
    );
    match by {
        By::Office => office,
        By::System => system,
    }
}

/// Whether `by` may move a card from `from` to `to`; the error says why not.
pub fn allowed(from: State, to: State, by: By) -> Result<(), String> {
    if permits(from, to, by) {
        return Ok(());
    }
    if from == to {
        return Err(format!("the card is already {from}"));
    }
    if to == Expired && by == By::Office {
        return Err("a card expires when the smart-card grant ends, not by a call".to_owned());
    }
    if to == Requested {
        return Err(
            "a card is requested only when its holder gains the smart-card grant".to_owned(),
        );
    }
    let next: Vec<&str> = State::ALL
        .into_iter()
        .filter(|candidate| permits(from, *candidate, by))
        .map(State::label)
        .collect();
    Err(if next.is_empty() {
        format!("{} cannot change any more", from.card())
    } else {
        format!("{} can become {}, not {to}", from.card(), next.join(" or "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table: every pair, for both actors.
    #[test]
    fn only_the_listed_transitions_are_allowed() {
        let office = [
            (Requested, Approved),
            (Approved, InPrint),
            (InPrint, Printed),
            (InPrint, Approved),
            (Printed, Encoded),
            (Encoded, Enabled),
            (Enabled, Disabled),
            (Disabled, Enabled),
            (Printed, Destroyed),
            (Encoded, Destroyed),
            (Disabled, Destroyed),
            (Expired, Destroyed),
        ];
        let system = [
            (Requested, Approved),
            (Requested, Expired),
            (Approved, Expired),
            (InPrint, Expired),
            (Printed, Expired),
            (Encoded, Expired),
            (Enabled, Expired),
            (Expired, Enabled),
            (Enabled, Disabled),
            (Disabled, Enabled),
            (Disabled, Expired),
        ];
        for from in State::ALL {
            for to in State::ALL {
                assert_eq!(
                    allowed(from, to, By::Office).is_ok(),
                    office.contains(&(from, to)),
                    "office {from} → {to}"
                );
                assert_eq!(
                    allowed(from, to, By::System).is_ok(),
                    system.contains(&(from, to)),
                    "system {from} → {to}"
                );
            }
        }
    }

    #[test]
    fn refusals_say_what_is_possible() {
        assert_eq!(
            allowed(Requested, Printed, By::Office).unwrap_err(),
            "a requested card can become approved, not printed"
        );
        assert_eq!(
            allowed(Enabled, Enabled, By::Office).unwrap_err(),
            "the card is already enabled"
        );
        assert_eq!(
            allowed(Destroyed, Enabled, By::Office).unwrap_err(),
            "a destroyed card cannot change any more"
        );
        assert_eq!(
            allowed(InPrint, Enabled, By::Office).unwrap_err(),
            "an in-print card can become approved or printed, not enabled"
        );
        assert!(
            allowed(Enabled, Expired, By::Office)
                .unwrap_err()
                .contains("grant ends")
        );
        assert!(
            allowed(Destroyed, Requested, By::Office)
                .unwrap_err()
                .contains("gains the smart-card grant")
        );
    }

    #[test]
    fn names_round_trip() {
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
            assert_eq!(State::from_wire(state.to_wire()), Some(state));
        }
        assert_eq!(State::parse("lost"), None);
    }
}
