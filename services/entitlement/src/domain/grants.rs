//! Grants: what a learner's stays give under a policy, each with its dates and the
//! rule that gave it, and why a resource is or is not granted (deny by default).

use time::{Date, Duration};

use super::policy::{Condition, Policy, Rule, Scope};

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
    /// The sponsoring unit (a structure code: a site, a lab).
    pub sponsor_unit: String,
    /// The resources the sponsor asked for.
    pub requested: Vec<String>,
    /// Why the stay ended early (`left`, `expelled`, `deceased`, `transferred`), when
    /// it did: the policy's grace then applies only as `[grace_after_early_end]` says.
    pub early_end: Option<String>,
    /// The learner's lock, while there is one (the same on each of their stays).
    pub lock: Option<Lock>,
}

/// A learner's lock (suspension), as the rules see it: from its day on, nothing is
/// granted, whatever the stays and without grace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The day of the lock, where the university is.
    pub on: Date,
    /// "administrative" or "technical".
    pub kind: String,
    /// The reason code, e.g. "fraud".
    pub reason: String,
    /// The instant of the lock and who locked (a caller's name), as intake says.
    pub since: Option<time::OffsetDateTime>,
    pub by: String,
}

impl Lock {
    /// What Check and the audit say of it: no personal data, the codes only.
    pub fn describe(&self) -> String {
        format!(
            "the account is locked since {} ({} lock: {}): every resource is denied",
            self.on, self.kind, self.reason
        )
    }
}

/// The lock in force on `on`, if the learner is locked by then.
pub fn locked(stays: &[StayFacts], on: Date) -> Option<&Lock> {
    stays
        .iter()
        .find_map(|stay| stay.lock.as_ref())
        .filter(|lock| lock.on <= on)
}

/// A grant cut by a lock: it ends the day before the lock's day, with no grace; a
/// grant that would start on that day or later is not given at all.
fn closed_by_lock(mut grant: Grant, lock: Option<&Lock>) -> Option<Grant> {
    let Some(lock) = lock else {
        return Some(grant);
    };
    let last_day = lock.on.previous_day()?;
    if grant.valid_from > last_day {
        return None;
    }
    grant.valid_until = grant.valid_until.min(last_day);
    Some(grant)
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

/// Why a resource is denied, for programs; [`Decision::reason`] says it for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The policy has no such resource.
    UnknownResource,
    /// A grant of the resource starts later (its stay, or the rule's offset).
    NotStarted,
    /// The grant ended, its grace included.
    Ended,
    /// The policy never grants it to the learner's population: `never`, or no rule.
    NotForPopulation,
    /// The rule needs the stay paid, and it is not.
    NotPaid,
    /// The rule needs an option the stay's agreement does not include.
    OptionMissing,
    /// The rule needs the sponsor's request, and the sponsor did not ask for it.
    NotRequested,
    /// The learner is locked: every resource of the policy, from the lock's day.
    Locked,
    /// Any other case: no stay (or only cancelled ones), another site or lab than the
    /// one granted, a resource granted per site or lab asked for without one, a stay
    /// without the sponsoring unit a per-unit rule needs.
    NotGranted,
}

/// Why a condition does not hold for a stay and a resource, when it does not.
fn unmet_condition(
    condition: &Condition,
    stay: &StayFacts,
    resource: &str,
) -> Option<(Denial, String)> {
    match condition {
        Condition::Always => None,
        Condition::Never => Some((
            Denial::NotForPopulation,
            "the policy never grants it to this population".to_owned(),
        )),
        Condition::Paid => {
            (!stay.paid).then(|| (Denial::NotPaid, "the stay is not paid".to_owned()))
        }
        Condition::Option(option) => (!stay.agreement_options.contains(option)).then(|| {
            (
                Denial::OptionMissing,
                format!("the stay's agreement does not include the option {option:?}"),
            )
        }),
        Condition::Requested => {
            (!stay.requested.iter().any(|asked| asked == resource)).then(|| {
                (
                    Denial::NotRequested,
                    "the stay's sponsor did not ask for it".to_owned(),
                )
            })
        }
        // None holds: the code of the first alternative as written (the policy's
        // author puts the usual way first), every alternative's reason in the text.
        Condition::Any(alternatives) => {
            let unmet: Option<Vec<(Denial, String)>> = alternatives
                .iter()
                .map(|alternative| unmet_condition(alternative, stay, resource))
                .collect();
            unmet.map(|unmet| {
                let denial = unmet
                    .first()
                    .map_or(Denial::NotGranted, |(denial, _)| *denial);
                let reasons: Vec<String> = unmet.into_iter().map(|(_, reason)| reason).collect();
                (denial, format!("none holds: {}", reasons.join("; ")))
            })
        }
    }
}

/// Why a rule does not grant, when it does not.
fn unmet(rule: &Rule, stay: &StayFacts, resource: &str) -> Option<(Denial, String)> {
    if rule.scope == Some(Scope::SponsorUnit) && stay.sponsor_unit.trim().is_empty() {
        return Some((
            Denial::NotGranted,
            "granted per sponsoring unit, and the stay has none".to_owned(),
        ));
    }
    rule.conditions
        .iter()
        .find_map(|condition| unmet_condition(condition, stay, resource))
}

/// The name a rule grants a resource under for a stay: `premises:LAB-CHEM` when
/// scoped to the sponsoring unit, the resource otherwise.
fn granted_name(resource: &str, rule: &Rule, stay: &StayFacts) -> String {
    match rule.scope {
        Some(Scope::SponsorUnit) => format!("{resource}:{}", stay.sponsor_unit.trim()),
        None => resource.to_owned(),
    }
}

/// A resource asked for, split into the policy's resource and the site or lab.
pub fn split(asked: &str) -> (&str, Option<&str>) {
    match asked.split_once(':') {
        Some((resource, scope)) => (resource, Some(scope)),
        None => (asked, None),
    }
}

/// Every grant of a learner's stays (cancelled stays grant nothing).
pub fn grants(policy: &Policy, stays: &[StayFacts]) -> Vec<Grant> {
    let mut grants = Vec::new();
    for stay in stays.iter().filter(|stay| !stay.cancelled) {
        for resource in policy.resources.keys() {
            let Some((origin, rule)) = policy.rule_with_origin(&stay.population, resource) else {
                continue;
            };
            if unmet(rule, stay, resource).is_some() {
                continue;
            }
            let grant = Grant {
                resource: granted_name(resource, rule, stay),
                valid_from: stay.start_date + Duration::days(i64::from(rule.start_offset_days)),
                valid_until: stay.end_date
                    + Duration::days(i64::from(policy.grace_days(
                        rule,
                        resource,
                        stay.early_end.as_deref(),
                    ))),
                stay_id: stay.stay_id.clone(),
                rule: origin,
                policy_version: policy.version.clone(),
            };
            grants.extend(closed_by_lock(grant, stay.lock.as_ref()));
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
    /// Why not, when denied.
    pub denial: Option<Denial>,
}

/// Checks one resource on one day, denying by default, with the reason either way. A
/// resource granted per site or lab is asked for as `<resource>:<unit>`.
pub fn check(policy: &Policy, stays: &[StayFacts], asked: &str, on: Date) -> Decision {
    let deny = |denial: Denial, reason: String| Decision {
        allowed: false,
        until: None,
        reason,
        rule: None,
        denial: Some(denial),
    };
    let (resource, scope) = split(asked);
    if !policy.resources.contains_key(resource) {
        return deny(
            Denial::UnknownResource,
            format!("unknown resource {resource:?}"),
        );
    }
    if let Some(lock) = locked(stays, on) {
        return deny(Denial::Locked, lock.describe());
    }
    let all = grants(policy, stays);
    let holding = all
        .iter()
        .filter(|grant| {
            grant.resource == asked && grant.valid_from <= on && on <= grant.valid_until
        })
        .max_by_key(|grant| grant.valid_until);
    if let Some(grant) = holding {
        return Decision {
            allowed: true,
            until: Some(grant.valid_until),
            reason: format!("granted by stay {} under {}", grant.stay_id, grant.rule),
            rule: Some(grant.rule.clone()),
            denial: None,
        };
    }
    // Denied: say the most useful why.
    let live: Vec<&StayFacts> = stays.iter().filter(|stay| !stay.cancelled).collect();
    if live.is_empty() {
        return deny(Denial::NotGranted, "no stay".to_owned());
    }
    let mut scoped: Vec<&str> = all
        .iter()
        .filter(|grant| matches!(split(&grant.resource), (base, Some(_)) if base == resource))
        .map(|grant| grant.resource.as_str())
        .collect();
    scoped.dedup();
    if !scoped.is_empty() && scope.is_none() {
        return deny(
            Denial::NotGranted,
            format!(
                "{resource} is granted per site or lab: ask for {}",
                scoped.join(" or ")
            ),
        );
    }
    // A grant to come says more than one that ended: the nearest to come, else the
    // last to end.
    let asked_grants = all.iter().filter(|grant| grant.resource == asked);
    let upcoming = asked_grants
        .clone()
        .filter(|grant| on < grant.valid_from)
        .min_by_key(|grant| grant.valid_from);
    if let Some(grant) = upcoming {
        return deny(
            Denial::NotStarted,
            format!(
                "the grant from stay {} starts: it holds from {} to {}",
                grant.stay_id, grant.valid_from, grant.valid_until
            ),
        );
    }
    if let Some(grant) = asked_grants.max_by_key(|grant| grant.valid_until) {
        let early = stays
            .iter()
            .find(|stay| stay.stay_id == grant.stay_id)
            .and_then(|stay| stay.early_end.as_deref())
            .map(|code| format!(" (the stay ended early: {code})"))
            .unwrap_or_default();
        return deny(
            Denial::Ended,
            format!(
                "the grant from stay {} ended: it holds from {} to {}{early}",
                grant.stay_id, grant.valid_from, grant.valid_until
            ),
        );
    }
    if !scoped.is_empty() {
        return deny(
            Denial::NotGranted,
            format!("granted for {} only", scoped.join(", ")),
        );
    }
    for stay in &live {
        if let Some(rule) = policy.rule(&stay.population, resource)
            && let Some((denial, why)) = unmet(rule, stay, resource)
        {
            return deny(denial, why);
        }
    }
    deny(
        Denial::NotForPopulation,
        format!(
            "no rule of policy {} grants {resource:?} to population {}",
            policy.version,
            live.iter()
                .map(|stay| stay.population.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
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

/// Every resource of the policy, by name, with why it is or is not granted; a
/// resource granted per site or lab is explained with the grant that holds, if any.
pub fn explain(policy: &Policy, stays: &[StayFacts], on: Date) -> Vec<Explanation> {
    let all = grants(policy, stays);
    policy
        .resources
        .iter()
        .map(|(resource, description)| {
            let grant = all
                .iter()
                .filter(|grant| {
                    split(&grant.resource).0 == resource
                        && grant.valid_from <= on
                        && on <= grant.valid_until
                })
                .max_by_key(|grant| grant.valid_until)
                .cloned();
            // Nothing holds: a resource granted per site or lab is explained by its
            // grant that is to come or ended, so that the code says which.
            let scoped = all.iter().filter(
                |other| matches!(split(&other.resource), (base, Some(_)) if base == resource),
            );
            let asked = grant
                .as_ref()
                .or_else(|| {
                    scoped
                        .clone()
                        .filter(|other| on < other.valid_from)
                        .min_by_key(|other| other.valid_from)
                })
                .or_else(|| scoped.max_by_key(|other| other.valid_until))
                .map_or(resource.as_str(), |grant| grant.resource.as_str());
            let decision = check(policy, stays, asked, on);
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
            sponsor_unit: "UNIT".to_owned(),
            requested: Vec::new(),
            lock: None,
            early_end: None,
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
    fn premises_are_granted_for_the_lab_that_asks() {
        let policy = policy();
        let mut doctoral = stay("VISITING_DOCTORAL");
        doctoral.sponsor_unit = "LAB-CHEM".to_owned();
        let not_asked = check(
            &policy,
            std::slice::from_ref(&doctoral),
            "premises:LAB-CHEM",
            DURING,
        );
        assert!(!not_asked.allowed);
        assert_eq!(not_asked.reason, "the stay's sponsor did not ask for it");
        doctoral.requested = vec!["premises".to_owned()];
        let stays = [doctoral];
        assert!(resources(&stays).contains(&"premises:LAB-CHEM".to_owned()));
        let allowed = check(&policy, &stays, "premises:LAB-CHEM", DURING);
        assert!(allowed.allowed);
        assert_eq!(
            allowed.rule.as_deref(),
            Some("populations.VISITING_DOCTORAL.premises")
        );
        let elsewhere = check(&policy, &stays, "premises:LAB-BIO", DURING);
        assert!(!elsewhere.allowed);
        assert_eq!(elsewhere.reason, "granted for premises:LAB-CHEM only");
        let unscoped = check(&policy, &stays, "premises", DURING);
        assert!(!unscoped.allowed);
        assert!(
            unscoped.reason.contains("ask for premises:LAB-CHEM"),
            "{}",
            unscoped.reason
        );
        let explained = explain(&policy, &stays, DURING);
        let premises = explained
            .iter()
            .find(|one| one.resource == "premises")
            .expect("premises");
        assert!(premises.decision.allowed);
        assert_eq!(
            premises.grant.as_ref().map(|grant| grant.resource.as_str()),
            Some("premises:LAB-CHEM")
        );
    }

    #[test]
    fn possibly_is_decided_by_the_agreement_or_the_sponsor() {
        let policy = policy();
        let mut trainee = stay("RECTORAT_C2I2E");
        let neither = check(&policy, std::slice::from_ref(&trainee), "library", DURING);
        assert!(!neither.allowed);
        assert_eq!(
            neither.reason,
            "none holds: the stay's agreement does not include the option \"library\"; the stay's sponsor did not ask for it"
        );
        trainee.requested = vec!["library".to_owned()];
        assert!(check(&policy, std::slice::from_ref(&trainee), "library", DURING).allowed);
        trainee.requested.clear();
        trainee.agreement_options = vec!["library".to_owned()];
        assert!(check(&policy, &[trainee], "library", DURING).allowed);
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
    #[test]
    fn every_denial_has_its_code() {
        let policy = policy();
        let code =
            |stays: &[StayFacts], asked: &str, on: Date| check(&policy, stays, asked, on).denial;
        let ifsi = [stay("IFSI")];
        assert_eq!(code(&ifsi, "library", DURING), None);
        assert_eq!(
            code(&ifsi, "spaceship", DURING),
            Some(Denial::UnknownResource)
        );
        assert_eq!(
            code(&ifsi, "wifi", date!(2026 - 08 - 01)),
            Some(Denial::NotStarted)
        );
        assert_eq!(
            code(&ifsi, "wifi", date!(2027 - 07 - 08)),
            Some(Denial::Ended)
        );
        assert_eq!(
            code(&ifsi, "smart-card", DURING),
            Some(Denial::NotForPopulation)
        );
        assert_eq!(
            code(&ifsi, "premises", DURING),
            Some(Denial::NotForPopulation),
            "no rule"
        );
        let doctoral = [stay("VISITING_DOCTORAL")];
        assert_eq!(code(&doctoral, "smart-card", DURING), Some(Denial::NotPaid));
        assert_eq!(
            code(&doctoral, "premises:UNIT", DURING),
            Some(Denial::NotRequested)
        );
        let co_accredited = [stay("CO_ACCREDITED")];
        assert_eq!(
            code(&co_accredited, "library", DURING),
            Some(Denial::OptionMissing)
        );
        // None of the alternatives holds: the first one's code.
        let trainee = [stay("RECTORAT_C2I2E")];
        assert_eq!(
            code(&trainee, "library", DURING),
            Some(Denial::OptionMissing)
        );
        assert_eq!(
            code(&[], "wifi", DURING),
            Some(Denial::NotGranted),
            "no stay"
        );
    }

    #[test]
    fn a_grant_to_come_says_more_than_one_that_ended() {
        let mut next = stay("IFSI");
        next.stay_id = "IFSI-2".to_owned();
        next.start_date = date!(2027 - 09 - 01);
        next.end_date = date!(2028 - 06 - 30);
        let decision = check(
            &policy(),
            &[stay("IFSI"), next],
            "library",
            date!(2027 - 08 - 01),
        );
        assert_eq!(decision.denial, Some(Denial::NotStarted));
        assert!(
            decision.reason.contains("IFSI-2 starts"),
            "{}",
            decision.reason
        );
    }

    #[test]
    fn an_early_end_has_no_grace_unless_the_policy_gives_some() {
        let mut left = stay("IFSI");
        left.end_date = date!(2026 - 11 - 15);
        left.early_end = Some("left".to_owned());
        let policy = policy();
        let all = grants(&policy, std::slice::from_ref(&left));
        let until = |resource: &str| {
            all.iter()
                .find(|grant| grant.resource == resource)
                .map(|grant| grant.valid_until)
        };
        assert_eq!(until("wifi"), Some(date!(2026 - 11 - 15)), "no 7 days");
        assert_eq!(until("ent"), Some(date!(2026 - 11 - 15)), "no 30 days");
        let after = check(
            &policy,
            std::slice::from_ref(&left),
            "wifi",
            date!(2026 - 11 - 16),
        );
        assert_eq!(after.denial, Some(Denial::Ended));
        assert!(
            after.reason.ends_with("(the stay ended early: left)"),
            "{}",
            after.reason
        );

        let mut generous = policy.clone();
        generous
            .grace_after_early_end
            .insert("left".to_owned(), [("ent".to_owned(), 7)].into());
        let all = grants(&generous, &[left]);
        let ent = all
            .iter()
            .find(|grant| grant.resource == "ent")
            .expect("ent");
        assert_eq!(ent.valid_until, date!(2026 - 11 - 22));
    }

    #[test]
    fn explain_says_when_a_lab_grant_ended() {
        let policy = policy();
        let mut doctoral = stay("VISITING_DOCTORAL");
        doctoral.sponsor_unit = "LAB-CHEM".to_owned();
        doctoral.requested = vec!["premises".to_owned()];
        let explained = explain(&policy, &[doctoral], date!(2027 - 08 - 01));
        let premises = explained
            .iter()
            .find(|one| one.resource == "premises")
            .expect("premises");
        assert!(!premises.decision.allowed);
        assert_eq!(premises.decision.denial, Some(Denial::Ended));
        assert!(
            premises.decision.reason.contains("ended"),
            "{}",
            premises.decision.reason
        );
    }

    #[test]
    fn a_lock_closes_every_grant_the_day_before_without_grace_and_denies_from_its_day() {
        let policy = policy();
        let lock = Lock {
            on: DURING,
            kind: "administrative".to_owned(),
            reason: "fraud".to_owned(),
            since: None,
            by: "dosi".to_owned(),
        };
        let mut locked_stay = stay("IFSI");
        locked_stay.lock = Some(lock.clone());
        let mut later = stay("IFSI");
        later.stay_id = "IFSI-2".to_owned();
        later.start_date = date!(2027 - 09 - 01);
        later.end_date = date!(2027 - 12 - 20);
        later.lock = Some(lock);

        let all = grants(&policy, &[locked_stay.clone(), later]);

        assert!(!all.is_empty());
        assert!(
            all.iter().all(
                |grant| grant.valid_until == date!(2026 - 09 - 30) && grant.stay_id == "IFSI-1"
            ),
            "every grant ends the day before the lock, none of the later stay: {all:?}"
        );
        assert!(in_force(&all, DURING).is_empty());
        assert_eq!(next_change(&all, DURING), None);
        let stays = [locked_stay];
        let denied = check(&policy, &stays, "wifi", DURING);
        assert!(!denied.allowed);
        assert_eq!(denied.denial, Some(Denial::Locked));
        assert_eq!(
            denied.reason,
            "the account is locked since 2026-10-01 (administrative lock: fraud): every resource is denied"
        );
        assert!(
            check(&policy, &stays, "wifi", date!(2026 - 09 - 30)).allowed,
            "before the lock"
        );
        assert!(
            !check(&policy, &stays, "spaceship", DURING)
                .reason
                .contains("locked")
        );
    }
}
