//! `hlctl check`, `grants`, `explain` and `policy`: what the entitlement service
//! grants a learner and why, and the policy it grants by (a candidate simulated, then
//! activated).
//!
//! Entitlement gives grants in days of the university's time zone: as instants (the
//! start of the first day and the end of the last, at local midnight) and as the days
//! themselves. hlctl shows the days, both included, as `hlctl learner` shows stays,
//! and never computes one from an instant: a local midnight is not a UTC one.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use hosted_contracts::{
    prost_types::Timestamp,
    v1::{self, check_request::Learner, get_learner_request::Key},
};
use serde_json::json;

use crate::{
    learners::learner_key,
    rpc::{EXIT_DENIED, Entitlement, server_error, usage},
    values,
};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The learner: login or id.
    #[arg(value_name = "LOGIN_OR_ID")]
    learner: String,
    /// The resource, e.g. wifi, library, smart-card (`hlctl explain` lists them).
    resource: String,
    /// Ask about this day (YYYY-MM-DD) instead of now.
    #[arg(long, value_name = "DAY", value_parser = values::noon_utc)]
    at: Option<Timestamp>,
}

#[derive(Debug, clap::Args)]
pub struct GrantsArgs {
    /// The learner: login or id.
    #[arg(value_name = "LOGIN_OR_ID")]
    learner: String,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The learner: login or id.
    #[arg(value_name = "LOGIN_OR_ID")]
    learner: String,
    /// Explain this day (YYYY-MM-DD) instead of today.
    #[arg(long, value_name = "DAY", value_parser = values::noon_utc)]
    at: Option<Timestamp>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Says what a candidate policy would change, resource by resource, without
    /// changing anything (role dosi).
    Simulate {
        /// The candidate policy: TOML, as policy/default.toml.
        file: PathBuf,
    },
    /// Makes a policy the active one: every learner's grants are computed again under
    /// it, and the learners whose grants change are published (role dosi). Simulate
    /// it first, then activate it with `--expect` the active version the simulation
    /// showed.
    Activate {
        /// The policy: TOML, as policy/default.toml. Its version must be new, or that
        /// of an earlier policy identical to it (going back).
        file: PathBuf,
        /// Why (recorded with the activation and who made it).
        #[arg(long)]
        reason: String,
        /// The version that must be active now: the one `policy simulate` compared
        /// the candidate with. If another was activated since, nothing changes and
        /// entitlement answers ABORTED.
        #[arg(long, value_name = "VERSION", value_parser = expected_version)]
        expect: Option<String>,
    },
}

/// A version for `--expect`: a blank one would be sent as no expectation at all,
/// and activate whatever is active.
fn expected_version(value: &str) -> Result<String, String> {
    let version = value.trim();
    if version.is_empty() {
        return Err("a policy version, as `hlctl policy simulate` shows it".to_owned());
    }
    Ok(version.to_owned())
}

/// How entitlement is asked about a learner: by id or by login. It does not know
/// hosted-learner numbers, and would deny one as an unknown learner, which a script
/// would take for a real denial: a number is refused here instead, as is a blank key
/// (which entitlement refuses as INVALID_ARGUMENT): both are command lines to correct.
fn learner(key: &str) -> anyhow::Result<Learner> {
    if key.trim().is_empty() {
        return usage("give a learner: a login or an id");
    }
    match learner_key(key) {
        Key::LearnerId(id) => Ok(Learner::LearnerId(id)),
        Key::Login(login) => Ok(Learner::Login(login)),
        Key::LearnerNumber(number) => usage(format!(
            "{number:?} looks like a hosted-learner number: entitlement knows learners by login \
             or id (`hlctl learner {number}` shows both)"
        )),
    }
}

/// The learner as Explain and ListGrants take it: one field for an id or a login.
fn learner_id_or_login(key: &str) -> anyhow::Result<String> {
    match learner(key)? {
        Learner::LearnerId(key) | Learner::Login(key) => Ok(key),
    }
}

/// Asks whether the learner may use the resource; the exit code says it for scripts:
/// 0 allowed, [`EXIT_DENIED`] denied.
pub async fn check(
    args: CheckArgs,
    entitlement: &mut Entitlement,
    json: bool,
) -> anyhow::Result<u8> {
    let request = v1::CheckRequest {
        learner: Some(learner(&args.learner)?),
        resource: args.resource.trim().to_owned(),
        at: args.at,
    };
    let answer = entitlement
        .client()
        .await?
        .check(request)
        .await
        .map_err(server_error)?
        .into_inner();
    if json {
        println!("{}", check_json(args.resource.trim(), &answer));
    } else {
        println!(
            "{}",
            check_text(args.learner.trim(), args.resource.trim(), &answer)
        );
    }
    Ok(if answer.allowed { 0 } else { EXIT_DENIED })
}

/// The answer for people, the verdict first (`allowed`, `denied`), then the day
/// answered for when the verdict depends on the day: "now" is the university's day,
/// which near midnight need not be the operator's. An unknown learner or resource is
/// a denial on every day, and most often a typo: it is said as such.
pub fn check_text(learner: &str, resource: &str, answer: &v1::CheckResponse) -> String {
    let on = if answer.on.is_empty() {
        String::new()
    } else {
        format!(" on {}", answer.on)
    };
    if answer.allowed {
        let until = match (answer.on.is_empty(), answer.last_day.is_empty()) {
            (_, true) => String::new(),
            (true, false) => format!(" until {}", answer.last_day),
            (false, false) => format!(", until {}", answer.last_day),
        };
        return format!(
            "allowed{on}{until} ({}, policy {})",
            answer.rule, answer.policy_version
        );
    }
    match v1::Denial::try_from(answer.denial) {
        Ok(v1::Denial::UnknownLearner) => format!(
            "denied: unknown learner {learner:?}: entitlement knows no learner by this login or \
             id (one registered a moment ago may not have reached it yet)"
        ),
        Ok(v1::Denial::UnknownResource) => format!(
            "denied: unknown resource {resource:?}: policy {} has no such resource \
             (`hlctl explain` lists them)",
            answer.policy_version
        ),
        _ => format!(
            "denied{on}: {} (policy {})",
            answer.reason, answer.policy_version
        ),
    }
}

/// Why a check was denied, as `--json` names it (`unknown_learner`); none when
/// allowed.
fn denial_name(answer: &v1::CheckResponse) -> Option<&'static str> {
    (!answer.allowed).then(|| denial_code(answer.denial))
}

/// A denial code as `--json` names it: the contract's name without `DENIAL_`, in
/// lower case (`not_paid`).
fn denial_code(denial: i32) -> &'static str {
    match v1::Denial::try_from(denial) {
        Ok(v1::Denial::UnknownLearner) => "unknown_learner",
        Ok(v1::Denial::UnknownResource) => "unknown_resource",
        Ok(v1::Denial::NotGranted) => "not_granted",
        Ok(v1::Denial::NotStarted) => "not_started",
        Ok(v1::Denial::Ended) => "ended",
        Ok(v1::Denial::NotForPopulation) => "not_for_population",
        Ok(v1::Denial::NotPaid) => "not_paid",
        Ok(v1::Denial::OptionMissing) => "option_missing",
        Ok(v1::Denial::NotRequested) => "not_requested",
        Ok(v1::Denial::Locked) => "locked",
        // A server older or newer than this hlctl: denied for a reason it cannot name.
        Ok(v1::Denial::Unspecified) | Err(_) => "unspecified",
    }
}

pub fn check_json(resource: &str, answer: &v1::CheckResponse) -> serde_json::Value {
    let present = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    json!({
        "resource": resource,
        "on": present(&answer.on),
        "allowed": answer.allowed,
        "denial": denial_name(answer),
        "last_day": present(&answer.last_day),
        "allowed_until": answer.allowed_until.as_ref().map(|at| values::instant(at.seconds, at.nanos)),
        "reason": answer.reason,
        "rule": answer.rule,
        "policy_version": answer.policy_version,
    })
}

pub async fn grants(
    args: GrantsArgs,
    entitlement: &mut Entitlement,
    json: bool,
) -> anyhow::Result<()> {
    let listed = entitlement
        .client()
        .await?
        .list_grants(v1::ListGrantsRequest {
            learner_id: learner_id_or_login(&args.learner)?,
        })
        .await
        .map_err(server_error)?
        .into_inner();
    if json {
        for grant in &listed.grants {
            let mut line = grant_json(grant);
            line["learner_version"] = json!(listed.learner_version);
            println!("{line}");
        }
        return Ok(());
    }
    println!(
        "grants computed from version {} of the learner",
        listed.learner_version
    );
    if listed.grants.is_empty() {
        println!("no grant");
    } else {
        print!("{}", grants_table(&listed.grants));
    }
    Ok(())
}

/// A grant: its days as entitlement gives them (both included), then the instants
/// they begin and end at.
pub fn grant_json(grant: &v1::Grant) -> serde_json::Value {
    let instant = |at: &Option<Timestamp>| {
        at.as_ref()
            .map(|at| values::instant(at.seconds, at.nanos))
            .unwrap_or_default()
    };
    json!({
        "resource": grant.resource,
        "first_day": grant.first_day,
        "last_day": grant.last_day,
        "valid_from": instant(&grant.valid_from),
        "valid_until": instant(&grant.valid_until),
        "rule": grant.rule,
        "policy_version": grant.policy_version,
        "stay_id": grant.stay_id,
    })
}

/// One line per grant under a header, the columns as wide as their widest value.
pub fn grants_table(grants: &[v1::Grant]) -> String {
    let width = |header: &str, value: fn(&v1::Grant) -> &str| {
        grants
            .iter()
            .map(|grant| value(grant).chars().count())
            .chain([header.len()])
            .max()
            .unwrap_or_default()
    };
    let resource = width("resource", |grant| &grant.resource);
    let rule = width("rule", |grant| &grant.rule);
    let policy = width("policy", |grant| &grant.policy_version);
    let mut table = format!(
        "{:<resource$}  {:<10}  {:<10}  {:<rule$}  {:<policy$}  stay\n",
        "resource", "from", "until", "rule", "policy"
    );
    for grant in grants {
        table.push_str(&format!(
            "{:<resource$}  {:<10}  {:<10}  {:<rule$}  {:<policy$}  {}\n",
            grant.resource,
            grant.first_day,
            grant.last_day,
            grant.rule,
            grant.policy_version,
            grant.stay_id
        ));
    }
    table
}

pub async fn explain(
    args: ExplainArgs,
    entitlement: &mut Entitlement,
    json: bool,
) -> anyhow::Result<()> {
    let explained = entitlement
        .client()
        .await?
        .explain(v1::ExplainRequest {
            learner_id: learner_id_or_login(&args.learner)?,
            at: args.at,
        })
        .await
        .map_err(server_error)?
        .into_inner();
    if json {
        println!("{}", explain_json(&explained));
    } else {
        print!("{}", explain_text(&explained));
    }
    Ok(())
}

pub fn explain_json(explained: &v1::ExplainResponse) -> serde_json::Value {
    json!({
        "learner_id": explained.learner_id,
        "login": explained.login,
        "on": explained.on,
        "policy_version": explained.policy_version,
        "resources": explained.resources.iter().map(|one| json!({
            "resource": one.resource,
            "description": one.description,
            "granted": one.granted,
            "denial": (!one.granted).then(|| denial_code(one.denial)),
            "reason": one.reason,
            "grant": one.grant.as_ref().map(grant_json),
        })).collect::<Vec<_>>(),
    })
}

/// The learner and the day, then one line per resource: granted or not, the last
/// day of the grant that allows it, and why.
pub fn explain_text(explained: &v1::ExplainResponse) -> String {
    let mut text = format!(
        "{}  {}  on {}, policy {}\n",
        explained.login, explained.learner_id, explained.on, explained.policy_version
    );
    let resource = explained
        .resources
        .iter()
        .map(|one| one.resource.chars().count())
        .max()
        .unwrap_or_default();
    for one in &explained.resources {
        let until = match &one.grant {
            Some(grant) if one.granted => format!("until {}", grant.last_day),
            _ => String::new(),
        };
        text.push_str(&format!(
            "  {:<resource$}  {:<3}  {until:<16}  {}\n",
            one.resource,
            if one.granted { "yes" } else { "no" },
            one.reason
        ));
    }
    text
}

pub async fn policy(
    action: PolicyAction,
    entitlement: &mut Entitlement,
    json: bool,
) -> anyhow::Result<()> {
    match action {
        PolicyAction::Simulate { file } => {
            let document = read_policy(&file)?;
            let simulation = entitlement
                .client()
                .await?
                .simulate_policy(v1::SimulatePolicyRequest { policy: document })
                .await
                .map_err(server_error)?
                .into_inner();
            if json {
                println!("{}", simulation_json(&simulation));
            } else {
                print!("{}", simulation_text(&simulation));
                if let Some(next) = activation_hint(&file, &simulation) {
                    eprintln!("{next}");
                }
            }
        }
        PolicyAction::Activate {
            file,
            reason,
            expect,
        } => {
            let document = read_policy(&file)?;
            let activation = entitlement
                .client()
                .await?
                .activate_policy(v1::ActivatePolicyRequest {
                    policy: document,
                    reason,
                    expected_active_version: expect.unwrap_or_default(),
                })
                .await
                .map_err(activation_refused)?
                .into_inner();
            if json {
                println!(
                    "{}",
                    json!({
                        "policy_version": activation.policy_version,
                        "previous_version": activation.previous_version,
                        "learners_changed": activation.learners_changed,
                        "already_active": activation.already_active,
                    })
                );
            } else {
                println!("{}", activation_text(&activation));
            }
        }
    }
    Ok(())
}

/// A refused activation. ABORTED (another version became active since the one
/// `--expect` gave) is said to have changed nothing, so that the operator simulates
/// again rather than wonders which policy is active.
fn activation_refused(status: tonic::Status) -> anyhow::Error {
    let aborted = status.code() == tonic::Code::Aborted;
    let error = server_error(status);
    if aborted {
        error.context("policy not activated")
    } else {
        error
    }
}

/// The command that activates what was simulated, and only if the active version is
/// still the one it was compared with. None when there is nothing to activate.
fn activation_hint(file: &Path, simulation: &v1::SimulatePolicyResponse) -> Option<String> {
    if simulation.active_version.is_empty()
        || simulation.active_version == simulation.candidate_version
        || !simulation.warnings.is_empty()
    {
        return None;
    }
    Some(format!(
        "to activate it: hlctl policy activate {} --reason \"…\" --expect {}",
        file.display(),
        simulation.active_version
    ))
}

fn read_policy(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

pub fn simulation_json(simulation: &v1::SimulatePolicyResponse) -> serde_json::Value {
    json!({
        "active_version": simulation.active_version,
        "candidate_version": simulation.candidate_version,
        "learners_examined": simulation.learners_examined,
        "learners_changed": simulation.learners_changed,
        "warnings": simulation.warnings,
        "impacts": simulation.impacts.iter().map(|impact| json!({
            "resource": impact.resource,
            "gained": impact.gained,
            "lost": impact.lost,
            "changed": impact.changed,
            "gained_examples": impact.gained_examples,
            "lost_examples": impact.lost_examples,
            "changed_examples": impact.changed_examples,
        })).collect::<Vec<_>>(),
    })
}

/// The versions and the counts, then per resource who gains, loses or keeps it
/// differently, with the learner ids entitlement gives as examples.
pub fn simulation_text(simulation: &v1::SimulatePolicyResponse) -> String {
    let learners = |count: i64| {
        values::count(
            usize::try_from(count).unwrap_or_default(),
            "learner",
            "learners",
        )
    };
    let mut text = format!(
        "policy {} → {}: {} examined, {} would change\n",
        simulation.active_version,
        simulation.candidate_version,
        learners(simulation.learners_examined),
        learners(simulation.learners_changed),
    );
    for warning in &simulation.warnings {
        text.push_str(&format!("warning: {warning}\n"));
    }
    if simulation.impacts.is_empty() {
        text.push_str("no learner's grants would change\n");
        return text;
    }
    let resource = simulation
        .impacts
        .iter()
        .map(|impact| impact.resource.chars().count())
        .max()
        .unwrap_or_default();
    for impact in &simulation.impacts {
        text.push_str(&format!(
            "  {:<resource$}  gained {}  lost {}  changed {}\n",
            impact.resource, impact.gained, impact.lost, impact.changed
        ));
        for (kind, count, examples) in [
            ("gained", impact.gained, &impact.gained_examples),
            ("lost", impact.lost, &impact.lost_examples),
            ("changed", impact.changed, &impact.changed_examples),
        ] {
            if examples.is_empty() {
                continue;
            }
            let shown = i64::try_from(examples.len()).unwrap_or(i64::MAX);
            let more = if count > shown {
                format!(", … ({count} in all)")
            } else {
                String::new()
            };
            text.push_str(&format!("    {kind}: {}{more}\n", examples.join(", ")));
        }
    }
    text
}

pub fn activation_text(activation: &v1::ActivatePolicyResponse) -> String {
    if activation.already_active {
        return format!(
            "policy {} was already active with this same document: nothing changed",
            activation.policy_version
        );
    }
    let previous = if activation.previous_version.is_empty() {
        String::new()
    } else {
        format!(" (was {})", activation.previous_version)
    };
    format!(
        "policy {} is active{previous}: grants changed for {}",
        activation.policy_version,
        values::count(
            usize::try_from(activation.learners_changed).unwrap_or_default(),
            "learner",
            "learners"
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Usage;

    /// 2027-07-01T00:00:00+02:00, local midnight in Paris: 2027-06-30 in UTC.
    const PARIS_JULY_FIRST: i64 = 1_814_392_800;
    const DAY: i64 = 86_400;

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn learners_are_logins_or_ids_never_numbers() {
        assert_eq!(
            learner(" ines.faure ").ok(),
            Some(Learner::Login("ines.faure".to_owned()))
        );
        assert_eq!(
            learner("0190d3a4-5b6c-7d8e-9f00-112233445566").ok(),
            Some(Learner::LearnerId(
                "0190d3a4-5b6c-7d8e-9f00-112233445566".to_owned()
            ))
        );
        let number = learner("H2026000042")
            .err()
            .map(|error| error.downcast::<Usage>());
        assert!(matches!(number, Some(Ok(_))), "{number:?}");
        let blank = learner_id_or_login("  ")
            .err()
            .map(|error| error.downcast::<Usage>());
        assert!(matches!(blank, Some(Ok(_))), "{blank:?}");
    }

    fn allowed() -> v1::CheckResponse {
        v1::CheckResponse {
            allowed: true,
            allowed_until: at(PARIS_JULY_FIRST),
            reason: "granted by stay s under populations.IFSI.library".to_owned(),
            rule: "populations.IFSI.library".to_owned(),
            policy_version: "2026.1".to_owned(),
            denial: v1::Denial::Unspecified.into(),
            on: "2027-06-15".to_owned(),
            last_day: "2027-06-30".to_owned(),
        }
    }

    fn denied(denial: v1::Denial, reason: &str) -> v1::CheckResponse {
        v1::CheckResponse {
            allowed: false,
            reason: reason.to_owned(),
            policy_version: "2026.1".to_owned(),
            denial: denial.into(),
            on: "2027-06-15".to_owned(),
            ..v1::CheckResponse::default()
        }
    }

    #[test]
    fn an_allowed_check_reads_as_the_day_asked_and_the_last_day_given() {
        assert_eq!(
            check_text("ines.faure", "library", &allowed()),
            "allowed on 2027-06-15, until 2027-06-30 (populations.IFSI.library, policy 2026.1)"
        );
        // The last day is entitlement's, never one derived from the instant.
        let json = check_json("library", &allowed());
        assert_eq!(json["on"], "2027-06-15");
        assert_eq!(json["denial"], json!(null));
        assert_eq!(json["last_day"], "2027-06-30");
        assert_eq!(json["allowed_until"], "2027-06-30T22:00:00Z");
        // From a server that gives neither day: the verdict and the rule only.
        let bare = v1::CheckResponse {
            on: String::new(),
            last_day: String::new(),
            ..allowed()
        };
        assert_eq!(
            check_text("ines.faure", "library", &bare),
            "allowed (populations.IFSI.library, policy 2026.1)"
        );
        assert_eq!(check_json("library", &bare)["last_day"], json!(null));
    }

    #[test]
    fn a_denied_check_says_why_and_names_a_typo_as_such() {
        let not_granted = denied(
            v1::Denial::NotForPopulation,
            "the policy never grants it to this population",
        );
        assert_eq!(
            check_text("ines.faure", "smart-card", &not_granted),
            "denied on 2027-06-15: the policy never grants it to this population (policy 2026.1)"
        );
        let json = check_json("smart-card", &not_granted);
        assert_eq!(json["denial"], "not_for_population");
        for (denial, name) in [
            (v1::Denial::NotGranted, "not_granted"),
            (v1::Denial::NotStarted, "not_started"),
            (v1::Denial::Ended, "ended"),
            (v1::Denial::NotPaid, "not_paid"),
            (v1::Denial::OptionMissing, "option_missing"),
            (v1::Denial::NotRequested, "not_requested"),
            (v1::Denial::Locked, "locked"),
        ] {
            assert_eq!(check_json("wifi", &denied(denial, "why"))["denial"], name);
        }
        assert_eq!(json["on"], "2027-06-15");
        assert_eq!(json["last_day"], json!(null));
        assert_eq!(json["allowed_until"], json!(null));

        let stranger = denied(v1::Denial::UnknownLearner, "unknown learner");
        assert!(
            check_text("ines.faur", "wifi", &stranger)
                .starts_with("denied: unknown learner \"ines.faur\": entitlement knows no learner"),
            "{}",
            check_text("ines.faur", "wifi", &stranger)
        );
        assert_eq!(check_json("wifi", &stranger)["denial"], "unknown_learner");

        let typo = denied(v1::Denial::UnknownResource, "unknown resource \"wfii\"");
        assert_eq!(
            check_text("ines.faure", "wfii", &typo),
            "denied: unknown resource \"wfii\": policy 2026.1 has no such resource \
             (`hlctl explain` lists them)"
        );
        assert_eq!(check_json("wfii", &typo)["denial"], "unknown_resource");

        // A denial this hlctl cannot name is still a denial.
        let newer = v1::CheckResponse {
            denial: 42,
            ..denied(v1::Denial::NotGranted, "suspended")
        };
        assert_eq!(
            check_text("ines.faure", "wifi", &newer),
            "denied on 2027-06-15: suspended (policy 2026.1)"
        );
        assert_eq!(check_json("wifi", &newer)["denial"], "unspecified");
    }

    /// A grant from 2027-06-01 to 2027-06-30 in Paris: its instants are the local
    /// midnights, on the day before in UTC.
    fn grant(resource: &str, rule: &str) -> v1::Grant {
        v1::Grant {
            resource: resource.to_owned(),
            valid_from: at(PARIS_JULY_FIRST - 30 * DAY),
            valid_until: at(PARIS_JULY_FIRST),
            rule: rule.to_owned(),
            policy_version: "2026.1".to_owned(),
            stay_id: "s-1".to_owned(),
            first_day: "2027-06-01".to_owned(),
            last_day: "2027-06-30".to_owned(),
        }
    }

    #[test]
    fn grants_show_their_first_and_last_days() {
        let table = grants_table(&[
            grant("library", "populations.IFSI.library"),
            grant("wifi", "defaults.wifi"),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "resource  from        until       rule                      policy  stay",
                "library   2027-06-01  2027-06-30  populations.IFSI.library  2026.1  s-1",
                "wifi      2027-06-01  2027-06-30  defaults.wifi             2026.1  s-1",
            ]
        );
        let json = grant_json(&grant("wifi", "defaults.wifi"));
        assert_eq!(json["first_day"], "2027-06-01");
        assert_eq!(json["last_day"], "2027-06-30");
        assert_eq!(json["valid_from"], "2027-05-31T22:00:00Z");
        assert_eq!(json["valid_until"], "2027-06-30T22:00:00Z");
    }

    #[test]
    fn an_explanation_gives_the_last_day_of_what_is_granted() {
        let explained = v1::ExplainResponse {
            resources: vec![
                v1::ResourceExplanation {
                    resource: "e-purse".to_owned(),
                    granted: false,
                    reason: "populations.IFSI.e-purse: never".to_owned(),
                    ..v1::ResourceExplanation::default()
                },
                v1::ResourceExplanation {
                    resource: "wifi".to_owned(),
                    granted: true,
                    reason: "granted by stay s-1 under defaults.wifi".to_owned(),
                    grant: Some(v1::Grant {
                        last_day: "2027-07-07".to_owned(),
                        ..grant("wifi", "defaults.wifi")
                    }),
                    ..v1::ResourceExplanation::default()
                },
            ],
            policy_version: "2026.1".to_owned(),
            learner_id: "id-1".to_owned(),
            login: "ines.faure".to_owned(),
            on: "2027-06-15".to_owned(),
        };
        assert_eq!(
            explain_text(&explained),
            "ines.faure  id-1  on 2027-06-15, policy 2026.1\n\
             \x20 e-purse  no                     populations.IFSI.e-purse: never\n\
             \x20 wifi     yes  until 2027-07-07  granted by stay s-1 under defaults.wifi\n"
        );
        let json = explain_json(&explained);
        assert_eq!(json["resources"][0]["grant"], json!(null));
        assert_eq!(json["resources"][1]["grant"]["last_day"], "2027-07-07");
    }

    #[test]
    fn a_simulation_lists_each_resource_with_examples() {
        let simulation = v1::SimulatePolicyResponse {
            impacts: vec![
                v1::ResourceImpact {
                    resource: "grades".to_owned(),
                    lost: 12,
                    lost_examples: vec!["a".to_owned(), "b".to_owned()],
                    ..v1::ResourceImpact::default()
                },
                v1::ResourceImpact {
                    resource: "library".to_owned(),
                    gained: 1,
                    gained_examples: vec!["c".to_owned()],
                    ..v1::ResourceImpact::default()
                },
            ],
            active_version: "2026.1".to_owned(),
            candidate_version: "2026.2".to_owned(),
            learners_examined: 40,
            learners_changed: 13,
            warnings: Vec::new(),
        };
        assert_eq!(
            simulation_text(&simulation),
            "policy 2026.1 → 2026.2: 40 learners examined, 13 learners would change\n\
             \x20 grades   gained 0  lost 12  changed 0\n\
             \x20   lost: a, b, … (12 in all)\n\
             \x20 library  gained 1  lost 0  changed 0\n\
             \x20   gained: c\n"
        );
        let nothing = v1::SimulatePolicyResponse {
            learners_examined: 1,
            ..v1::SimulatePolicyResponse::default()
        };
        assert!(
            simulation_text(&nothing).ends_with("\nno learner's grants would change\n"),
            "{}",
            simulation_text(&nothing)
        );
    }

    #[test]
    fn an_activation_says_both_versions() {
        let activation = v1::ActivatePolicyResponse {
            policy_version: "2026.2".to_owned(),
            learners_changed: 1,
            previous_version: "2026.1".to_owned(),
            already_active: false,
        };
        assert_eq!(
            activation_text(&activation),
            "policy 2026.2 is active (was 2026.1): grants changed for 1 learner"
        );
    }

    #[test]
    fn a_lost_race_to_activate_says_nothing_changed() {
        let aborted = activation_refused(tonic::Status::aborted(
            "the active policy is 2026.3, not 2026.1: simulate against it again",
        ));
        assert_eq!(
            format!("{aborted:#}"),
            "policy not activated: ABORTED: the active policy is 2026.3, not 2026.1: \
             simulate against it again"
        );
        let again = activation_refused(tonic::Status::failed_precondition(
            "policy version 2026.2 is already active",
        ));
        assert_eq!(
            format!("{again:#}"),
            "FAILED_PRECONDITION: policy version 2026.2 is already active"
        );
    }

    #[test]
    fn an_expected_version_is_never_blank() {
        assert_eq!(expected_version(" 2026.1 "), Ok("2026.1".to_owned()));
        assert!(expected_version("  ").is_err());
    }

    #[test]
    fn a_simulation_gives_the_command_that_activates_it_safely() {
        let simulation = v1::SimulatePolicyResponse {
            active_version: "2026.1".to_owned(),
            candidate_version: "2026.2".to_owned(),
            ..v1::SimulatePolicyResponse::default()
        };
        assert_eq!(
            activation_hint(Path::new("candidate.toml"), &simulation).as_deref(),
            Some(
                "to activate it: hlctl policy activate candidate.toml --reason \"…\" --expect 2026.1"
            )
        );
        let same = v1::SimulatePolicyResponse {
            candidate_version: "2026.1".to_owned(),
            ..simulation
        };
        assert_eq!(activation_hint(Path::new("candidate.toml"), &same), None);
    }

    #[test]
    fn a_version_recorded_with_another_document_is_said_before_activating() {
        let simulation = v1::SimulatePolicyResponse {
            active_version: "2026.2".to_owned(),
            candidate_version: "2026.1".to_owned(),
            learners_examined: 1,
            warnings: vec![
                "version 2026.1 is already recorded with another document: activating this one \
                 will be refused (ALREADY_EXISTS); change `version` in the document"
                    .to_owned(),
            ],
            ..v1::SimulatePolicyResponse::default()
        };
        let text = simulation_text(&simulation);
        assert!(
            text.contains("\nwarning: version 2026.1 is already recorded with another document"),
            "{text}"
        );
        assert_eq!(
            simulation_json(&simulation)["warnings"][0],
            simulation.warnings[0]
        );
        assert_eq!(
            activation_hint(Path::new("candidate.toml"), &simulation),
            None,
            "no command for an activation that would be refused"
        );
    }

    #[test]
    fn the_active_document_again_is_said_to_change_nothing() {
        let again = v1::ActivatePolicyResponse {
            policy_version: "2026.2".to_owned(),
            learners_changed: 0,
            previous_version: "2026.2".to_owned(),
            already_active: true,
        };
        assert_eq!(
            activation_text(&again),
            "policy 2026.2 was already active with this same document: nothing changed"
        );
    }
}
