//! The entitlement policy as data: which resources a population's stays grant, on
//! which condition, for how long. Loaded from TOML (see `policy/default.toml`) and
//! checked whole: every problem is reported with the file, the line and the reason.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// One condition of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Always,
    Never,
    /// The stay is paid.
    Paid,
    /// The stay's agreement includes this option.
    Option(String),
    /// The stay's sponsor asked for this resource (decided by the sponsoring unit).
    Requested,
    /// At least one of these holds.
    Any(Vec<Condition>),
}

/// What a grant is scoped to, when it is not the whole resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The stay's sponsoring unit (a site or a lab): the grant is `<resource>:<unit>`,
    /// e.g. `premises:LAB-CHEM`.
    SponsorUnit,
}

/// How a population's stay grants one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// All must hold.
    pub conditions: Vec<Condition>,
    /// Days after the stay's start the grant begins (may be negative).
    pub start_offset_days: i32,
    /// Days after the stay's end the grant still holds.
    pub grace_days: i32,
    /// Granted per site or lab rather than whole.
    pub scope: Option<Scope>,
}

impl Rule {
    pub fn never(&self) -> bool {
        self.conditions.contains(&Condition::Never)
    }
}

/// A checked policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub version: String,
    /// Resource name → description.
    pub resources: BTreeMap<String, String>,
    /// Rules for every population, unless the population has its own for a resource.
    pub defaults: BTreeMap<String, Rule>,
    /// Population code → resource → rule.
    pub populations: BTreeMap<String, BTreeMap<String, Rule>>,
    /// Early end's code (`left`) → resource → days of grace after a stay that ended
    /// early for that reason; none for what is not listed.
    pub grace_after_early_end: BTreeMap<String, BTreeMap<String, i32>>,
}

/// The codes of an early end (intake's EarlyEnd) a policy can give grace for.
pub const EARLY_ENDS: [&str; 4] = ["left", "expelled", "deceased", "transferred"];

impl Policy {
    /// The rule for a population's stays and a resource, if any grants it.
    pub fn rule(&self, population: &str, resource: &str) -> Option<&Rule> {
        self.rule_with_origin(population, resource)
            .map(|(_, rule)| rule)
    }

    /// The rule and where it is written (`populations.IFSI.library`, `defaults.wifi`).
    pub fn rule_with_origin(&self, population: &str, resource: &str) -> Option<(String, &Rule)> {
        if let Some(rule) = self
            .populations
            .get(population)
            .and_then(|rules| rules.get(resource))
        {
            return Some((format!("populations.{population}.{resource}"), rule));
        }
        self.defaults
            .get(resource)
            .map(|rule| (format!("defaults.{resource}"), rule))
    }

    /// The days a grant of `resource` by `rule` holds after its stay's last day: the
    /// rule's grace when the stay ends as planned; after an early end, only what
    /// `[grace_after_early_end]` gives for its code and resource (none by default).
    pub fn grace_days(&self, rule: &Rule, resource: &str, early_end: Option<&str>) -> i32 {
        match early_end {
            None => rule.grace_days,
            Some(code) => self
                .grace_after_early_end
                .get(code)
                .and_then(|resources| resources.get(resource))
                .copied()
                .unwrap_or(0),
        }
    }
}

/// One problem of a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    pub line: usize,
    pub reason: String,
}

/// Every problem of a policy file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct PolicyErrors {
    pub file: String,
    pub problems: Vec<PolicyProblem>,
}

impl PolicyErrors {
    fn render(&self) -> String {
        self.problems
            .iter()
            .map(|problem| format!("{}:{}: {}", self.file, problem.line, problem.reason))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: Spanned<String>,
    #[serde(default)]
    resources: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    defaults: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    populations: BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    #[serde(default)]
    grace_after_early_end: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

/// A grant as written: a condition, a list of conditions that must all hold, or a
/// table. Read by hand rather than by serde, so that a mistake is named precisely.
#[derive(Debug, Default)]
struct GrantSpec {
    conditions: Vec<String>,
    /// The conditions are alternatives (`any`).
    any: bool,
    start_offset_days: i32,
    grace_days: i32,
    scope: Option<String>,
}

const GRANT_KEYS: &str = "when, any, start_offset_days, grace_days, scope";

fn texts(value: &toml::Value, key: &str) -> Result<Vec<String>, String> {
    match value {
        toml::Value::String(text) => Ok(vec![text.clone()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{key}: a list of conditions (text)"))
            })
            .collect(),
        _ => Err(format!("{key}: a condition or a list of conditions")),
    }
}

fn days(value: &toml::Value, key: &str) -> Result<i32, String> {
    value
        .as_integer()
        .and_then(|days| i32::try_from(days).ok())
        .ok_or_else(|| format!("{key}: a whole number of days"))
}

/// Reads one grant; every problem of it at once.
fn grant_spec(value: &toml::Value) -> Result<GrantSpec, Vec<String>> {
    let mut spec = GrantSpec::default();
    let mut problems = Vec::new();
    let table = match value {
        toml::Value::Table(table) => table,
        other => {
            return texts(other, "when")
                .map(|conditions| GrantSpec {
                    conditions,
                    ..GrantSpec::default()
                })
                .map_err(|problem| vec![problem]);
        }
    };
    for (key, value) in table {
        let read = match key.as_str() {
            "when" => match value {
                toml::Value::Table(inner) if inner.len() == 1 && inner.contains_key("any") => {
                    spec.any = true;
                    texts(&inner["any"], "when.any").map(|all| spec.conditions.extend(all))
                }
                _ => texts(value, "when").map(|all| spec.conditions.extend(all)),
            },
            "any" => {
                spec.any = true;
                texts(value, "any").map(|all| spec.conditions.extend(all))
            }
            "start_offset_days" => days(value, key).map(|days| spec.start_offset_days = days),
            "grace_days" => days(value, key).map(|days| spec.grace_days = days),
            "scope" => value
                .as_str()
                .map(|scope| spec.scope = Some(scope.to_owned()))
                .ok_or_else(|| "scope: text (sponsor_unit)".to_owned()),
            other => Err(format!("unknown key {other:?} ({GRANT_KEYS})")),
        };
        if let Err(problem) = read {
            problems.push(problem);
        }
    }
    if table.contains_key("when") && table.contains_key("any") {
        problems.push("when and any: give one of them".to_owned());
    } else if !table.contains_key("when") && !table.contains_key("any") {
        problems.push("when: required (or any)".to_owned());
    }
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(problems)
    }
}

/// Turns a byte offset into a 1-based line number.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn condition(text: &str) -> Result<Condition, String> {
    match text.trim() {
        "always" => Ok(Condition::Always),
        "never" => Ok(Condition::Never),
        "paid" => Ok(Condition::Paid),
        "requested" => Ok(Condition::Requested),
        other => match other.strip_prefix("option:") {
            Some(option)
                if !option.is_empty()
                    && option
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') =>
            {
                Ok(Condition::Option(option.to_owned()))
            }
            _ => Err(format!(
                "unknown condition {other:?} (always, never, paid, requested or option:<name>)"
            )),
        },
    }
}

/// Parses and checks a policy; `file` names it in the errors.
pub fn load(file: &str, text: &str) -> Result<Policy, PolicyErrors> {
    let fail = |problems: Vec<PolicyProblem>| PolicyErrors {
        file: file.to_owned(),
        problems,
    };
    let parsed: PolicyFile = toml::from_str(text).map_err(|error| {
        let line = error.span().map_or(1, |span| line_of(text, span.start));
        fail(vec![PolicyProblem {
            line,
            reason: error.message().to_owned(),
        }])
    })?;
    let mut problems = Vec::new();
    let mut problem = |span: std::ops::Range<usize>, reason: String| {
        problems.push(PolicyProblem {
            line: line_of(text, span.start),
            reason,
        });
    };

    let version = parsed.version.get_ref().trim().to_owned();
    if version.is_empty() {
        problem(
            parsed.version.span(),
            "version: required (e.g. \"2026.1\")".to_owned(),
        );
    }
    let resources: BTreeMap<String, String> = parsed
        .resources
        .iter()
        .map(|(name, description)| (name.get_ref().clone(), description.get_ref().clone()))
        .collect();
    if resources.is_empty() {
        problem(
            0..0,
            "resources: at least one resource is required".to_owned(),
        );
    }
    for name in parsed.resources.keys() {
        let text = name.get_ref();
        if text.is_empty()
            || !text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            problem(
                name.span(),
                format!("resources.{text}: a resource name is made of a-z, 0-9 and -"),
            );
        }
    }
    let known = resources.keys().cloned().collect::<Vec<_>>().join(", ");

    let rules = |section: &str,
                 grants: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
                 problem: &mut dyn FnMut(std::ops::Range<usize>, String)| {
        let mut checked = BTreeMap::new();
        for (resource, grant) in grants {
            let path = format!("{section}.{}", resource.get_ref());
            if !resources.contains_key(resource.get_ref()) {
                problem(
                    resource.span(),
                    format!("{path}: unknown resource (known: {known})"),
                );
                continue;
            }
            let spec = match grant_spec(grant.get_ref()) {
                Ok(spec) => spec,
                Err(reasons) => {
                    for reason in reasons {
                        problem(grant.span(), format!("{path}: {reason}"));
                    }
                    continue;
                }
            };
            let GrantSpec {
                conditions: texts,
                any,
                start_offset_days,
                grace_days,
                scope,
            } = spec;
            if texts.is_empty() {
                problem(grant.span(), format!("{path}: an empty condition list"));
                continue;
            }
            let mut conditions = Vec::new();
            for text in &texts {
                match condition(text) {
                    Ok(condition) => conditions.push(condition),
                    Err(reason) => problem(grant.span(), format!("{path}: {reason}")),
                }
            }
            if any {
                if conditions.iter().any(|c| matches!(c, Condition::Never)) {
                    problem(
                        grant.span(),
                        format!("{path}: \"never\" means nothing among alternatives"),
                    );
                }
                conditions = vec![Condition::Any(conditions)];
            }
            let scope = match scope.as_deref() {
                None => None,
                Some("sponsor_unit") => Some(Scope::SponsorUnit),
                Some(other) => {
                    problem(
                        grant.span(),
                        format!("{path}: unknown scope {other:?} (sponsor_unit)"),
                    );
                    None
                }
            };
            if grace_days < 0 {
                problem(
                    grant.span(),
                    format!("{path}: grace_days must be 0 or more"),
                );
            }
            if !(-365..=365).contains(&start_offset_days) {
                problem(
                    grant.span(),
                    format!("{path}: start_offset_days must be within a year of the start"),
                );
            }
            checked.insert(
                resource.get_ref().clone(),
                Rule {
                    conditions,
                    start_offset_days,
                    grace_days,
                    scope,
                },
            );
        }
        checked
    };
    let defaults = rules("defaults", &parsed.defaults, &mut problem);
    let mut populations = BTreeMap::new();
    for (population, grants) in &parsed.populations {
        let code = population.get_ref();
        if code.is_empty()
            || !code
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            problem(
                population.span(),
                format!("populations.{code}: not a population code (A-Z, 0-9, _)"),
            );
        }
        let checked = rules(&format!("populations.{code}"), grants, &mut problem);
        populations.insert(code.clone(), checked);
    }
    let mut grace_after_early_end = BTreeMap::new();
    for (code, grants) in &parsed.grace_after_early_end {
        let code_text = code.get_ref();
        let path = format!("grace_after_early_end.{code_text}");
        if !EARLY_ENDS.contains(&code_text.as_str()) {
            problem(
                code.span(),
                format!("{path}: unknown early end ({})", EARLY_ENDS.join(", ")),
            );
            continue;
        }
        let Some(table) = grants.get_ref().as_table() else {
            problem(
                grants.span(),
                format!("{path}: a table of resource = days, e.g. {{ ent = 7 }}"),
            );
            continue;
        };
        let mut days_by_resource = BTreeMap::new();
        for (resource, days) in table {
            if !resources.contains_key(resource) {
                problem(
                    grants.span(),
                    format!("{path}.{resource}: unknown resource (known: {known})"),
                );
                continue;
            }
            match days.as_integer().and_then(|days| i32::try_from(days).ok()) {
                Some(days) if days >= 0 => {
                    days_by_resource.insert(resource.clone(), days);
                }
                _ => problem(
                    grants.span(),
                    format!("{path}.{resource}: a whole number of days, 0 or more"),
                ),
            }
        }
        grace_after_early_end.insert(code_text.clone(), days_by_resource);
    }
    if !problems.is_empty() {
        // In the file's order, as a reader goes through it.
        problems.sort_by_key(|problem| problem.line);
        return Err(fail(problems));
    }
    Ok(Policy {
        version,
        resources,
        defaults,
        populations,
        grace_after_early_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = include_str!("../../../../policy/default.toml");

    #[test]
    fn the_default_policy_encodes_the_requirements_table() {
        let policy = load("policy/default.toml", DEFAULT).expect("valid default policy");
        let conditions = |population: &str, resource: &str| {
            policy
                .rule(population, resource)
                .map(|rule| rule.conditions.clone())
        };
        // Every active stay: ENT and wifi.
        assert_eq!(conditions("VAE", "ent"), Some(vec![Condition::Always]));
        assert_eq!(
            policy.rule("IFSI", "wifi").map(|rule| rule.grace_days),
            Some(7)
        );
        // IFSI: library and grades, never a card.
        assert_eq!(conditions("IFSI", "library"), Some(vec![Condition::Always]));
        assert_eq!(conditions("IFSI", "grades"), Some(vec![Condition::Always]));
        assert!(policy.rule("IFSI", "smart-card").is_some_and(Rule::never));
        // C2i2e: a card with its e-purse.
        assert_eq!(
            conditions("RECTORAT_C2I2E", "smart-card"),
            Some(vec![Condition::Always])
        );
        assert_eq!(
            conditions("RECTORAT_C2I2E", "e-purse"),
            Some(vec![Condition::Always])
        );
        // Co-accredited: "possibly" is a condition, never a silent yes.
        assert_eq!(
            conditions("CO_ACCREDITED", "library"),
            Some(vec![Condition::Option("library".to_owned())])
        );
        // Nothing unlisted is granted.
        assert_eq!(conditions("VAE", "premises"), None);
        // Visiting doctoral students: the lab they are hosted by, when it asks.
        let premises = policy.rule("VISITING_DOCTORAL", "premises").expect("rule");
        assert_eq!(premises.conditions, [Condition::Requested]);
        assert_eq!(premises.scope, Some(Scope::SponsorUnit));
        // Decided per case by the agreement or by the sponsoring unit.
        assert_eq!(
            conditions("RECTORAT_C2I2E", "library"),
            Some(vec![Condition::Any(vec![
                Condition::Option("library".to_owned()),
                Condition::Requested
            ])])
        );
    }

    #[test]
    fn alternatives_and_scopes_are_checked() {
        let text = r#"version = "1"

[resources]
premises = "Premises"
Wifi = "Wifi"

[defaults]
premises = { when = { any = ["requested", "never"] }, scope = "building" }

[populations.IFSI]
premises = { when = "always", grace = 3, grace_days = "two" }
"#;
        let errors = load("p.toml", text).expect_err("invalid");
        let rendered = errors.to_string();
        assert!(
            rendered.contains("p.toml:5: resources.Wifi: a resource name"),
            "{rendered}"
        );
        assert!(
            rendered.contains("p.toml:8: defaults.premises: \"never\" means nothing"),
            "{rendered}"
        );
        assert!(
            rendered.contains("unknown scope \"building\""),
            "{rendered}"
        );
        assert!(
            rendered.contains("p.toml:11: populations.IFSI.premises: unknown key \"grace\""),
            "{rendered}"
        );
        assert!(
            rendered.contains("populations.IFSI.premises: grace_days: a whole number of days"),
            "{rendered}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = r#"version = ""

[resources]
wifi = "Wifi"

[defaults]
wifi = "sometimes"
lbrary = "always"

[populations.ifsi]
wifi = { when = "always", grace_days = -3 }
"#;
        let errors = load("policy/broken.toml", text).expect_err("invalid");
        let rendered = errors.to_string();
        let lines: Vec<usize> = errors.problems.iter().map(|problem| problem.line).collect();
        assert_eq!(lines, [1, 7, 8, 10, 11], "{rendered}");
        assert!(
            rendered
                .contains("policy/broken.toml:7: defaults.wifi: unknown condition \"sometimes\""),
            "{rendered}"
        );
        assert!(
            rendered.contains("policy/broken.toml:8: defaults.lbrary: unknown resource"),
            "{rendered}"
        );
        assert!(
            rendered.contains("grace_days must be 0 or more"),
            "{rendered}"
        );
    }

    #[test]
    fn grace_after_an_early_end_is_given_per_reason_and_resource() {
        let text = r#"version = "1"

[resources]
wifi = "Wifi"
ent = "ENT"

[defaults]
wifi = { when = "always", grace_days = 7 }
ent = { when = "always", grace_days = 30 }

[grace_after_early_end]
left = { ent = 7 }
transferred = { ent = 30, wifi = 0 }
"#;
        let policy = load("p.toml", text).expect("valid");
        let ent = policy.rule("IFSI", "ent").expect("rule");
        let wifi = policy.rule("IFSI", "wifi").expect("rule");
        assert_eq!(policy.grace_days(ent, "ent", None), 30, "as planned");
        assert_eq!(policy.grace_days(ent, "ent", Some("left")), 7);
        assert_eq!(
            policy.grace_days(wifi, "wifi", Some("left")),
            0,
            "not listed"
        );
        assert_eq!(policy.grace_days(ent, "ent", Some("expelled")), 0);
        assert_eq!(policy.grace_days(ent, "ent", Some("transferred")), 30);

        let broken = r#"version = "1"

[resources]
ent = "ENT"

[grace_after_early_end]
quit = { ent = 7 }
left = { ent = -1, lbrary = 3 }
deceased = 4
"#;
        let rendered = load("p.toml", broken).expect_err("invalid").to_string();
        assert!(
            rendered.contains("p.toml:7: grace_after_early_end.quit: unknown early end (left, expelled, deceased, transferred)"),
            "{rendered}"
        );
        assert!(
            rendered.contains(
                "p.toml:8: grace_after_early_end.left.ent: a whole number of days, 0 or more"
            ),
            "{rendered}"
        );
        assert!(
            rendered.contains("grace_after_early_end.left.lbrary: unknown resource"),
            "{rendered}"
        );
        assert!(
            rendered.contains("p.toml:9: grace_after_early_end.deceased: a table"),
            "{rendered}"
        );
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let errors =
            load("p.toml", "version = \"1\"\n[resources\nwifi = 1\n").expect_err("invalid");
        assert_eq!(errors.problems[0].line, 2, "{errors}");
    }
}

/// Property tests: whatever text an operator loads (a typo, a truncated file, a
/// binary), the loader answers a policy or its problems, never a panic, and a policy
/// it accepts keeps its rules' promises. Cases: proptest's (256, or `PROPTEST_CASES`).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    const DEFAULT: &str = include_str!("../../../../policy/default.toml");

    /// Problems name lines of the file (or the line after its end, for what is missing).
    fn lines_are_in_the_file(text: &str, errors: &PolicyErrors) -> bool {
        let lines = text.matches('\n').count() + 1;
        !errors.problems.is_empty()
            && errors
                .problems
                .iter()
                .all(|problem| (1..=lines).contains(&problem.line))
    }

    /// What an accepted policy promises of every rule.
    fn rules_keep_their_promises(policy: &Policy) -> bool {
        let rules = policy
            .defaults
            .iter()
            .chain(policy.populations.values().flat_map(|rules| rules.iter()));
        !policy.version.is_empty()
            && !policy.resources.is_empty()
            && rules.into_iter().all(|(resource, rule)| {
                policy.resources.contains_key(resource)
                    && !rule.conditions.is_empty()
                    && rule.grace_days >= 0
                    && (-365..=365).contains(&rule.start_offset_days)
                    && rule.conditions.iter().all(|condition| match condition {
                        Condition::Any(alternatives) => !alternatives.contains(&Condition::Never),
                        _ => true,
                    })
            })
    }

    fn condition_text() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => prop::sample::select(vec!["always", "never", "paid", "requested", " paid "])
                .prop_map(str::to_owned),
            3 => "option:[a-z0-9-]{0,8}",
            1 => "\\PC{0,10}",
        ]
    }

    /// A TOML string literal of `text`, whatever it holds.
    fn quoted(text: &str) -> String {
        toml::Value::String(text.to_owned()).to_string()
    }

    fn conditions() -> impl Strategy<Value = String> {
        prop::collection::vec(condition_text(), 0..3).prop_map(|all| {
            let items: Vec<String> = all.iter().map(|text| quoted(text)).collect();
            format!("[{}]", items.join(", "))
        })
    }

    fn days() -> impl Strategy<Value = i64> {
        prop_oneof![8 => -30i64..60, 1 => -400i64..400, 1 => any::<i64>()]
    }

    fn grant() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => condition_text().prop_map(|text| quoted(&text)),
            2 => conditions(),
            4 =>
            (
                prop::sample::select(vec!["when", "any"]),
                conditions(),
                proptest::option::of(days()),
                proptest::option::of(days()),
                proptest::option::of(prop_oneof![
                    4 => Just("sponsor_unit".to_owned()),
                    1 => "\\PC{0,8}"
                ]),
            )
                .prop_map(|(key, conditions, offset, grace, scope)| {
                    let mut table = vec![format!("{key} = {conditions}")];
                    table.extend(offset.map(|days| format!("start_offset_days = {days}")));
                    table.extend(grace.map(|days| format!("grace_days = {days}")));
                    table.extend(scope.map(|scope| format!("scope = {}", quoted(&scope))));
                    format!("{{ {} }}", table.join(", "))
                }),
            1 => "\\PC{0,12}",
        ]
    }

    /// Policies as an operator might write them: names right or wrong, grants of every
    /// shape.
    fn policy_text() -> impl Strategy<Value = String> {
        let resource = prop_oneof![
            8 => prop::sample::select(vec!["wifi", "library", "premises"]).prop_map(str::to_owned),
            1 => "[a-z][a-z0-9-]{0,10}",
            1 => "[A-Za-z0-9_ -]{0,6}",
        ];
        let population = prop_oneof![4 => "[A-Z][A-Z0-9_]{0,10}", 1 => "[a-z0-9 -]{0,6}"];
        (
            prop_oneof![4 => Just("2026.1".to_owned()), 1 => "\\PC{0,6}"],
            prop::collection::vec(resource.clone(), 0..4),
            prop::collection::vec((resource.clone(), grant()), 0..3),
            prop::collection::vec(
                (population, prop::collection::vec((resource, grant()), 0..3)),
                0..3,
            ),
        )
            .prop_map(|(version, resources, defaults, populations)| {
                let mut text = format!("version = {}\n[resources]\n", quoted(&version));
                // Most policies declare the resources their grants name.
                let resources: BTreeMap<&str, ()> = ["wifi", "library", "premises"]
                    .into_iter()
                    .chain(resources.iter().map(String::as_str))
                    .map(|name| (name, ()))
                    .collect();
                let resources = resources.keys();
                for name in resources {
                    text.push_str(&format!("{} = \"described\"\n", quoted(name)));
                }
                text.push_str("[defaults]\n");
                for (name, grant) in &defaults {
                    text.push_str(&format!("{} = {grant}\n", quoted(name)));
                }
                for (code, grants) in &populations {
                    text.push_str(&format!("[populations.{}]\n", quoted(code)));
                    for (name, grant) in grants {
                        text.push_str(&format!("{} = {grant}\n", quoted(name)));
                    }
                }
                text
            })
    }

    /// The default policy with a few characters changed, cut or inserted.
    fn damaged_default() -> impl Strategy<Value = String> {
        prop::collection::vec((0..DEFAULT.len(), 0usize..3, "\\PC{0,3}"), 1..4).prop_map(|edits| {
            let mut text = DEFAULT.to_owned();
            for (at, cut, insert) in edits {
                let mut start = at.min(text.len());
                while !text.is_char_boundary(start) {
                    start -= 1;
                }
                let mut end = (start + cut).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(start..end, &insert);
            }
            text
        })
    }

    fn check(text: &str) -> Result<(), TestCaseError> {
        match load("policy.toml", text) {
            Ok(policy) => prop_assert!(rules_keep_their_promises(&policy), "{:?}", policy),
            Err(errors) => prop_assert!(lines_are_in_the_file(text, &errors), "{:?}", errors),
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_text_is_a_policy_or_its_problems(text in prop_oneof!["\\PC{0,200}", any::<String>()]) {
            check(&text)?;
        }

        #[test]
        fn a_damaged_policy_is_a_policy_or_its_problems(text in damaged_default()) {
            check(&text)?;
        }

        #[test]
        fn a_generated_policy_is_a_policy_or_its_problems(text in policy_text()) {
            check(&text)?;
        }
    }
}
