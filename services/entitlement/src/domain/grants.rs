//! Grants: what a learner's stays give under a policy, each with its dates and the
//! rule that gave it, and why a resource is or is not granted (deny by default).

use time::{Date, Duration};

use super::policy::{Condition, Policy, Rule};

/// What entitlement knows of a stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StayFacts {
    pub stay_id: String,
    pub population: String,
    /// First and last day, inclusive.
    pub start_date: Date,
    pub end_date: Date,
    pub cancelled: bool,
    pub paid: bool,
    /// The options of the stay's agreement (none without an agreement).
    pub agreement_options: Vec<String>,
}

/// One resource granted for a time by one stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub resource: String,
    /// First and last day the grant holds, inclusive.
    pub valid_from: Date,
    pub valid_until: Date,
    pub stay_id: String,
    /// Where the rule is written, e.g. `populations.IFSI.library`.
    pub rule: String,
    pub policy_version: String,
}

/// Why a rule does not grant, when it does not.
fn unmet(rule: &Rule, stay: &StayFacts) -> Option<String> {
    for condition in &rule.conditions {
        match condition {
            Condition::Always => {}
            Condition::Never => {
                return Some("the policy never grants it to this population".to_owned());
            }
            Condition::Paid if !stay.paid => return Some("the stay is not paid".to_owned()),
            Condition::Paid => {}
            Condition::Option(option) if !stay.agreement_options.contains(option) => {
                return Some(format!(
                    "the stay's agreement does not include the option {option:?}"
                ));
            }
            Condition::Option(_) => {}
        }
    }
    None
}

/// Every grant of a learner's stays (cancelled stays grant nothing).
pub fn grants(policy: &Policy, stays: &[StayFacts]) -> Vec<Grant> {
    let mut grants = Vec::new();
    for stay in stays.iter().filter(|stay| !stay.cancelled) {
        for resource in policy.resources.keys() {
            let Some((origin, rule)) = policy.rule_with_origin(&stay.population, resource) else {
                continue;
            };
            if unmet(rule, stay).is_some() {
                continue;
            }
            grants.push(Grant {
                resource: resource.clone(),
                valid_from: stay.start_date + Duration::days(i64::from(rule.start_offset_days)),
                valid_until: stay.end_date + Duration::days(i64::from(rule.grace_days)),
                stay_id: stay.stay_id.clone(),
                rule: origin,
                policy_version: policy.version.clone(),
            });
        }
    }
    grants.sort_by(|a, b| {
        (&a.resource, a.valid_from, &a.stay_id).cmp(&(&b.resource, b.valid_from, &b.stay_id))
    });
    grants
}

/// The resources some grant holds on `on`, sorted: what is in force that day.
pub fn in_force(grants: &[Grant], on: Date) -> Vec<String> {
    let mut resources: Vec<String> = grants
        .iter()
        .filter(|grant| grant.valid_from <= on && on <= grant.valid_until)
        .map(|grant| grant.resource.clone())
        .collect();
    resources.sort();
    resources.dedup();
    resources
}

/// The first day after `on` on which what is in force may change: a grant starts, or
/// the day after one's last. None when nothing is left to happen.
pub fn next_change(grants: &[Grant], on: Date) -> Option<Date> {
    grants
        .iter()
        .flat_map(|grant| [Some(grant.valid_from), grant.valid_until.next_day()])
        .flatten()
        .filter(|day| *day > on)
        .min()
}

/// Whether two sets of grants give the same thing: the same resources, from the same
/// stays, on the same days, by the same rules. The policy version that granted them
/// does not count: a grant a new policy leaves as it was keeps its version.
pub fn same_grants(a: &[Grant], b: &[Grant]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| {
            (
                &a.resource,
                &a.stay_id,
                a.valid_from,
                a.valid_until,
                &a.rule,
            ) == (
                &b.resource,
                &b.stay_id,
                b.valid_from,
                b.valid_until,
                &b.rule,
            )
        })
}

/// The answer to "may this learner use this resource on this day?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The last day of the grant that allows it.
    pub until: Option<Date>,
    pub reason: String,
    pub rule: Option<String>,
}

/// Checks one resource on one day, denying by default, with the reason either way.
pub fn check(policy: &Policy, stays: &[StayFacts], resource: &str, on: Date) -> Decision {
    let deny = |reason: String| Decision {
        allowed: false,
        until: None,
        reason,
        rule: None,
    };
    if !policy.resources.contains_key(resource) {
        return deny(format!("unknown resource {resource:?}"));
    }
    let all = grants(policy, stays);
    let holding = all
        .iter()
        .filter(|grant| {
            grant.resource == resource && grant.valid_from <= on && on <= grant.valid_until
        })
        .max_by_key(|grant| grant.valid_until);
    if let Some(grant) = holding {
        return Decision {
            allowed: true,
            until: Some(grant.valid_until),
            reason: format!("granted by stay {} under {}", grant.stay_id, grant.rule),
            rule: Some(grant.rule.clone()),
        };
    }
    // Denied: say the most useful why.
    let live: Vec<&StayFacts> = stays.iter().filter(|stay| !stay.cancelled).collect();
    if live.is_empty() {
        return deny("no stay".to_owned());
    }
    if let Some(grant) = all.iter().find(|grant| grant.resource == resource) {
        let when = if on < grant.valid_from {
            "starts"
        } else {
            "ended"
        };
        return deny(format!(
            "the grant from stay {} {when}: it holds from {} to {}",
            grant.stay_id, grant.valid_from, grant.valid_until
        ));
    }
    for stay in &live {
        if let Some(rule) = policy.rule(&stay.population, resource)
            && let Some(why) = unmet(rule, stay)
        {
            return deny(why);
        }
    }
    deny(format!(
        "no rule of policy {} grants {resource:?} to population {}",
        policy.version,
        live.iter()
            .map(|stay| stay.population.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// One resource of the policy, explained for one learner on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub resource: String,
    pub description: String,
    pub decision: Decision,
    /// The grant that allows it, when allowed.
    pub grant: Option<Grant>,
}

/// Every resource of the policy, in its order, with why it is or is not granted.
pub fn explain(policy: &Policy, stays: &[StayFacts], on: Date) -> Vec<Explanation> {
    let all = grants(policy, stays);
    policy
        .resources
        .iter()
        .map(|(resource, description)| {
            let decision = check(policy, stays, resource, on);
            let grant = decision
                .allowed
                .then(|| {
                    all.iter()
                        .filter(|grant| {
                            grant.resource == *resource
                                && grant.valid_from <= on
                                && on <= grant.valid_until
                        })
                        .max_by_key(|grant| grant.valid_until)
                        .cloned()
                })
                .flatten();
            Explanation {
                resource: resource.clone(),
                description: description.clone(),
                decision,
                grant,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy;
    use time::macros::date;

    fn policy() -> Policy {
        policy::load(
            "default.toml",
            include_str!("../../../../policy/default.toml"),
        )
        .expect("valid")
    }

    fn stay(population: &str) -> StayFacts {
        StayFacts {
            stay_id: format!("{population}-1"),
            population: population.to_owned(),
            start_date: date!(2026 - 09 - 01),
            end_date: date!(2027 - 06 - 30),
            cancelled: false,
            paid: false,
            agreement_options: Vec::new(),
        }
    }

    fn resources(stays: &[StayFacts]) -> Vec<String> {
        let mut names: Vec<String> = grants(&policy(), stays)
            .into_iter()
            .map(|grant| grant.resource)
            .collect();
        names.dedup();
        names
    }

    const DURING: Date = date!(2026 - 10 - 01);

    #[test]
    fn the_seed_table_outcomes() {
        assert_eq!(
            resources(&[stay("IFSI")]),
            ["ent", "grades", "library", "online-resources", "wifi"]
        );
        assert_eq!(
            resources(&[stay("RECTORAT_C2I2E")]),
            [
                "e-purse",
                "ent",
                "grades",
                "online-resources",
                "smart-card",
                "wifi"
            ]
        );
        let mut co_accredited = stay("CO_ACCREDITED");
        assert!(!resources(std::slice::from_ref(&co_accredited)).contains(&"library".to_owned()));
        co_accredited.agreement_options = vec!["library".to_owned()];
        assert!(resources(&[co_accredited]).contains(&"library".to_owned()));
    }

    #[test]
    fn grants_are_bounded_by_the_stay_and_its_grace() {
        let all = grants(&policy(), &[stay("IFSI")]);
        let wifi = all
            .iter()
            .find(|grant| grant.resource == "wifi")
            .expect("wifi");
        assert_eq!(wifi.valid_from, date!(2026 - 09 - 01));
        assert_eq!(
            wifi.valid_until,
            date!(2027 - 07 - 07),
            "seven days of grace"
        );
        assert_eq!(wifi.rule, "defaults.wifi");
        assert_eq!(wifi.policy_version, "2026.1");
        let library = all
            .iter()
            .find(|grant| grant.resource == "library")
            .expect("library");
        assert_eq!(library.valid_until, date!(2027 - 06 - 30));
        assert_eq!(library.rule, "populations.IFSI.library");
    }

    #[test]
    fn check_denies_by_default_and_says_why() {
        let policy = policy();
        let ifsi = [stay("IFSI")];
        let allowed = check(&policy, &ifsi, "library", DURING);
        assert!(allowed.allowed);
        assert_eq!(allowed.until, Some(date!(2027 - 06 - 30)));
        let card = check(&policy, &ifsi, "smart-card", DURING);
        assert!(!card.allowed);
        assert!(card.reason.contains("never"), "{}", card.reason);
        assert!(!check(&policy, &ifsi, "spaceship", DURING).allowed);
        assert_eq!(check(&policy, &[], "wifi", DURING).reason, "no stay");
        let before = check(&policy, &ifsi, "wifi", date!(2026 - 08 - 01));
        assert!(!before.allowed);
        assert!(before.reason.contains("starts"), "{}", before.reason);
        let after_grace = check(&policy, &ifsi, "wifi", date!(2027 - 07 - 08));
        assert!(!after_grace.allowed);
        let in_grace = check(&policy, &ifsi, "wifi", date!(2027 - 07 - 07));
        assert!(in_grace.allowed);
        let mut cancelled = stay("IFSI");
        cancelled.cancelled = true;
        assert!(!check(&policy, &[cancelled], "wifi", DURING).allowed);
    }

    #[test]
    fn what_is_in_force_and_when_it_next_changes() {
        let mut later = stay("IFSI");
        later.stay_id = "IFSI-2".to_owned();
        later.start_date = date!(2027 - 09 - 01);
        later.end_date = date!(2027 - 12 - 20);
        let all = grants(&policy(), &[stay("IFSI"), later]);
        assert_eq!(
            in_force(&all, DURING),
            ["ent", "grades", "library", "online-resources", "wifi"]
        );
        // The library and grades lapse the day after the stay's end; wifi has 7 days of
        // grace, the ENT 30.
        assert_eq!(next_change(&all, DURING), Some(date!(2027 - 07 - 01)));
        assert_eq!(
            in_force(&all, date!(2027 - 07 - 01)),
            ["ent", "wifi"],
            "in grace"
        );
        assert_eq!(
            next_change(&all, date!(2027 - 07 - 01)),
            Some(date!(2027 - 07 - 08))
        );
        assert_eq!(
            next_change(&all, date!(2027 - 07 - 31)),
            Some(date!(2027 - 09 - 01)),
            "the next stay"
        );
        assert_eq!(next_change(&all, date!(2028 - 01 - 20)), None);
        assert!(in_force(&all, date!(2028 - 01 - 20)).is_empty());
    }

    #[test]
    fn the_policy_version_alone_does_not_change_grants() {
        let before = grants(&policy(), &[stay("IFSI")]);
        let mut after = before.clone();
        for grant in &mut after {
            grant.policy_version = "2027.1".to_owned();
        }
        assert!(same_grants(&before, &after));
        after[0].valid_until = date!(2027 - 07 - 31);
        assert!(!same_grants(&before, &after));
        assert!(!same_grants(&before, &after[1..]));
    }

    #[test]
    fn explain_says_why_for_every_resource() {
        let policy = policy();
        let explained = explain(&policy, &[stay("IFSI")], DURING);
        assert_eq!(explained.len(), policy.resources.len());
        let library = explained
            .iter()
            .find(|one| one.resource == "library")
            .expect("library");
        assert!(library.decision.allowed);
        assert_eq!(
            library.grant.as_ref().map(|grant| grant.rule.as_str()),
            Some("populations.IFSI.library")
        );
        let card = explained
            .iter()
            .find(|one| one.resource == "smart-card")
            .expect("card");
        assert!(!card.decision.allowed);
        assert!(card.grant.is_none());
        assert!(card.decision.reason.contains("never"));
    }

    #[test]
    fn a_paid_condition_waits_for_the_payment() {
        let policy = policy();
        let mut doctoral = stay("VISITING_DOCTORAL");
        let unpaid = check(
            &policy,
            std::slice::from_ref(&doctoral),
            "smart-card",
            DURING,
        );
        assert!(!unpaid.allowed);
        assert_eq!(unpaid.reason, "the stay is not paid");
        doctoral.paid = true;
        assert!(check(&policy, &[doctoral], "smart-card", DURING).allowed);
    }
}
