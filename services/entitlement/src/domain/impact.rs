//! What a candidate policy would change: per resource, the learners who would gain
//! it, lose it, or keep it with other dates or under another rule.

use std::collections::{BTreeMap, BTreeSet};

use super::grants::{Grant, same_grants};

/// How many learner ids each list of examples holds at most.
pub const EXAMPLES: usize = 10;

/// The impact on one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceImpact {
    pub gained: u64,
    pub lost: u64,
    pub changed: u64,
    pub gained_examples: Vec<String>,
    pub lost_examples: Vec<String>,
    pub changed_examples: Vec<String>,
}

/// The impact on every learner examined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Impact {
    /// Only the resources something happens to, by name.
    pub resources: BTreeMap<String, ResourceImpact>,
    pub examined: u64,
    /// The learners whose grants would change, in the order examined.
    pub changed_learners: Vec<String>,
}

fn count(total: &mut u64, examples: &mut Vec<String>, learner: &str) {
    *total += 1;
    if examples.len() < EXAMPLES {
        examples.push(learner.to_owned());
    }
}

impl Impact {
    /// Adds one learner's grants now and under the candidate.
    pub fn add(&mut self, learner: &str, current: &[Grant], candidate: &[Grant]) {
        self.examined += 1;
        if same_grants(current, candidate) {
            return;
        }
        self.changed_learners.push(learner.to_owned());
        let of = |grants: &[Grant], resource: &str| -> Vec<Grant> {
            grants
                .iter()
                .filter(|grant| grant.resource == resource)
                .cloned()
                .collect()
        };
        let resources: BTreeSet<&str> = current
            .iter()
            .chain(candidate)
            .map(|grant| grant.resource.as_str())
            .collect();
        for resource in resources {
            let before = of(current, resource);
            let after = of(candidate, resource);
            if same_grants(&before, &after) {
                continue;
            }
            let impact = self.resources.entry(resource.to_owned()).or_default();
            match (before.is_empty(), after.is_empty()) {
                (true, false) => count(&mut impact.gained, &mut impact.gained_examples, learner),
                (false, true) => count(&mut impact.lost, &mut impact.lost_examples, learner),
                _ => count(&mut impact.changed, &mut impact.changed_examples, learner),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn grant(resource: &str, until: time::Date) -> Grant {
        Grant {
            resource: resource.to_owned(),
            valid_from: date!(2026 - 09 - 01),
            valid_until: until,
            stay_id: "s".to_owned(),
            rule: format!("defaults.{resource}"),
            policy_version: "1".to_owned(),
        }
    }

    #[test]
    fn gains_losses_and_changes_are_counted_per_resource() {
        let end = date!(2027 - 06 - 30);
        let mut impact = Impact::default();
        impact.add(
            "a",
            &[grant("wifi", end)],
            &[grant("library", end), grant("wifi", end)],
        );
        impact.add(
            "b",
            &[grant("library", end), grant("wifi", end)],
            &[grant("wifi", end)],
        );
        impact.add(
            "c",
            &[grant("wifi", end)],
            &[grant("wifi", date!(2027 - 07 - 31))],
        );
        impact.add("d", &[grant("wifi", end)], &[grant("wifi", end)]);
        assert_eq!(impact.examined, 4);
        assert_eq!(impact.changed_learners, ["a", "b", "c"]);
        let library = &impact.resources["library"];
        assert_eq!((library.gained, library.lost, library.changed), (1, 1, 0));
        assert_eq!(library.gained_examples, ["a"]);
        assert_eq!(library.lost_examples, ["b"]);
        let wifi = &impact.resources["wifi"];
        assert_eq!((wifi.gained, wifi.lost, wifi.changed), (0, 0, 1));
        assert_eq!(wifi.changed_examples, ["c"]);
    }

    #[test]
    fn examples_are_bounded() {
        let mut impact = Impact::default();
        for n in 0..25 {
            impact.add(
                &format!("{n:02}"),
                &[],
                &[grant("wifi", date!(2027 - 06 - 30))],
            );
        }
        let wifi = &impact.resources["wifi"];
        assert_eq!(wifi.gained, 25);
        assert_eq!(wifi.gained_examples.len(), EXAMPLES);
        assert_eq!(wifi.gained_examples[0], "00");
    }
}
