//! Crash tests: `kill -9` of a service in the middle of one of its big operations,
//! started through hlctl as an operator starts it. Each test runs on an isolated copy
//! of the whole system (its own PostgreSQL cluster, NATS and slapd, the four services
//! as processes; see `hosted_e2e::isolated`), prepares enough data for the operation
//! to take a while, strikes when the service's database or LDAP shows the operation
//! under way, starts the service again, and then asserts on the real stores:
//!
//! - entitlement's `ActivatePolicy` (`hlctl policy activate`) happened whole or not at
//!   all, and activating again does it once;
//! - directory's reconciliation (`hlctl reconcile --apply`) left every drift repaired
//!   or as it was, and running it again repairs the rest, each entry written once;
//! - cards' print-batch export (`hlctl card print-batch`) moved no card and kept no
//!   batch, and exporting again takes each card into exactly one batch;
//! - intake's cohort payment (`hlctl payment cohort`) booked nothing, and recording it
//!   again books each stay once, a third time (the same reference) nothing.
//!
//! After each, the whole system converges (`Isolated::converge`). Sizes:
//! `HOSTED_CRASH_LEARNERS` learners for the activation (2,000 by default, as in CI;
//! `dev/crashes` runs the 100,000), `HOSTED_CRASH_ROWS` for the other three
//! (1,000 by default).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use hosted_e2e::isolated::{Accepted, Isolated, PEOPLE, repository};

/// How big: CI's size unless the environment says otherwise.
#[derive(Debug, Clone, Copy)]
struct Size {
    /// Learners the policy activation recomputes.
    learners: usize,
    /// Learners of the other operations (drifted accounts, cards, paid stays).
    rows: usize,
}

impl Size {
    fn from_env() -> Self {
        let number = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|value| value.replace(['_', ','], "").parse().ok())
                .unwrap_or(default)
        };
        Self {
            learners: number("HOSTED_CRASH_LEARNERS", 2_000),
            rows: number("HOSTED_CRASH_ROWS", 1_000),
        }
    }

    /// How long the system may take to converge (importing included).
    fn limit(learners: usize) -> Duration {
        Duration::from_secs(120 + (learners / 50) as u64)
    }
}

/// Starts an isolated system (blocking: servers and services start as processes).
fn start_system(name: &str) -> Isolated {
    let system = tokio::task::block_in_place(Isolated::start);
    eprintln!(
        "crashes: {name}: isolated system in {}",
        system.root.display()
    );
    system
}

/// Imports `file` until it completes and waits until everything converged.
async fn import(system: &Isolated, file: &Path, learners: usize) -> Accepted {
    let started = Instant::now();
    let accepted = tokio::task::block_in_place(|| system.import_until_done(file, None));
    assert_eq!(accepted.rejected, 0, "every generated row is valid");
    system.converge(&accepted, Size::limit(learners)).await;
    eprintln!(
        "crashes: {} learners imported and converged in {:.1?}",
        accepted.learners.len(),
        started.elapsed()
    );
    accepted
}

/// The day `offset` days from today, where the university is, as hlctl takes it.
fn day(offset: i64) -> String {
    let today = hosted_platform::clock::Clock::new("Europe/Paris")
        .unwrap()
        .today();
    hosted_platform::clock::format_day(today + time::Duration::days(offset))
}

/// Rewrites every row of a generated cohort file: one population, its unit, one
/// agreement (or none), a stay from today for 60 days, nothing requested. The names,
/// birth dates and e-mails stay as generated (each row another person).
fn rewrite_cohort(file: &Path, population: &str, unit: &str, agreement_id: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|field| *field == name).unwrap();
    let start = day(0);
    let end = day(60);
    let mut rewritten = vec![header.join(",")];
    for line in lines {
        let mut fields: Vec<String> = line.split(',').map(str::to_owned).collect();
        // A quoted cell could hold a comma: such rows (none so far) are left out.
        if line.contains('"') || fields.len() != header.len() {
            continue;
        }
        fields[column("population")] = population.to_owned();
        fields[column("sponsor_unit")] = unit.to_owned();
        fields[column("sponsor_login")] = String::new();
        fields[column("agreement_id")] = agreement_id.to_owned();
        fields[column("start_date")] = start.clone();
        fields[column("end_date")] = end.clone();
        fields[column("requested_resources")] = String::new();
        rewritten.push(fields.join(","));
    }
    std::fs::write(file, rewritten.join("\n") + "\n").unwrap();
}

/// Starts an hlctl command in the background, its output kept for [`finish`].
fn spawn(mut command: Command) -> Child {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

/// Runs an hlctl command to its end and returns its output, whatever its status.
fn hlctl(system: &Isolated, args: &[&str]) -> Output {
    system.hlctl().args(args).output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs an hlctl command that must succeed, and returns its standard output as JSON.
fn hlctl_json(system: &Isolated, args: &[&str]) -> serde_json::Value {
    let output = hlctl(system, args);
    assert!(
        output.status.success(),
        "hlctl {args:?} failed: {}",
        text(&output)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("hlctl {args:?}: not JSON ({error}): {}", text(&output)))
}

/// Waits until `ready` holds (polled every few milliseconds); panics after `limit`
/// with `what`, and when `operation` (the hlctl command) ended first: the operation
/// was over before the strike, too small to be interrupted.
async fn until<F, Fut>(what: &str, operation: &mut Child, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if ready().await {
            eprintln!("crashes: {what} after {:.2?}", started.elapsed());
            return;
        }
        if let Some(status) = operation.try_wait().unwrap() {
            let mut output = String::new();
            if let Some(mut stderr) = operation.stderr.take() {
                std::io::Read::read_to_string(&mut stderr, &mut output).unwrap();
            }
            panic!(
                "the operation ended ({status}) before {what}: too small to be interrupted? {output}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{what}: not seen within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `kill -9` of `service`, then the interrupted hlctl command must have failed; the
/// service is started again and waited for.
fn strike(system: &mut Isolated, service: &str, operation: Child) {
    system.kill(service);
    let output = finish(operation);
    assert!(
        !output.status.success(),
        "the operation succeeded although {service} was killed during it: {}",
        text(&output)
    );
    eprintln!(
        "crashes: {service} killed; hlctl said: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    system.start_service(service);
    system.wait_serving(service);
}

/// `learner_id → number` from a query of a service's database.
async fn by_learner(system: &Isolated, service: &str, query: &str) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(query)
        .fetch_all(&mut system.database(service).await)
        .await
        .unwrap_or_else(|error| panic!("{query}: {error}"));
    rows.into_iter().collect()
}

// ---------------------------------------------------------------------------------
// entitlement: ActivatePolicy

const ACTIVE: &str = "2026.1";
const CANDIDATE: &str = "2026.2";

/// The default policy as version 2026.2, wifi held two weeks after a stay instead of
/// one: every learner's grants change.
fn candidate_policy(system: &Isolated) -> PathBuf {
    let policy = std::fs::read_to_string(repository().join("policy/default.toml")).unwrap();
    let version = format!("version = \"{ACTIVE}\"");
    let wifi = "wifi = { when = \"always\", grace_days = 7 }";
    assert!(policy.contains(&version) && policy.contains(wifi));
    let candidate = policy
        .replace(&version, &format!("version = \"{CANDIDATE}\""))
        .replace(wifi, "wifi = { when = \"always\", grace_days = 14 }");
    let path = system.root.join("candidate.toml");
    std::fs::write(&path, candidate).unwrap();
    path
}

/// What the activation could have changed in entitlement's database.
#[derive(Debug, PartialEq, Eq)]
struct PolicyState {
    active: String,
    versions: Vec<String>,
    activations: i64,
    grants_versions: BTreeMap<String, i64>,
    candidate_grants: i64,
}

async fn policy_state(system: &Isolated) -> PolicyState {
    let mut db = system.database("entitlement").await;
    PolicyState {
        active: sqlx::query_scalar("SELECT version FROM active_policy")
            .fetch_one(&mut db)
            .await
            .unwrap(),
        versions: sqlx::query_scalar("SELECT version FROM policy_versions ORDER BY version")
            .fetch_all(&mut db)
            .await
            .unwrap(),
        activations: system
            .number("entitlement", "SELECT count(*) FROM policy_activations")
            .await,
        grants_versions: by_learner(
            system,
            "entitlement",
            "SELECT learner_id::text, grants_version FROM learners",
        )
        .await,
        candidate_grants: system
            .number(
                "entitlement",
                &format!("SELECT count(*) FROM grants WHERE policy_version = '{CANDIDATE}'"),
            )
            .await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_activation_killed_midway_happened_not_at_all_then_once() {
    // Arrange: the learners, converged, and a candidate that changes them all.
    let size = Size::from_env();
    let mut system = start_system("activation");
    let file = system.generate_cohort("activation", size.learners, 0, 21);
    let expected = import(&system, &file, size.learners).await;
    let learners = expected.learners.len();
    let candidate_file = candidate_policy(&system);
    let candidate = candidate_file.to_str().unwrap();
    let before = policy_state(&system).await;
    assert_eq!(before.active, ACTIVE);
    let outbox_before = system.outbox_sequence("entitlement").await;

    // Act: activate, and kill entitlement while it recomputes the learners: once
    // half of them are enqueued, or (all of them in one page of 5,000) once its
    // transaction has recorded the version and works on their grants.
    let reason = "wifi for two weeks after a stay";
    let mut activation = spawn({
        let mut command = system.hlctl();
        command.args([
            "policy", "activate", candidate, "--reason", reason, "--expect", ACTIVE,
        ]);
        command
    });
    let started = Instant::now();
    until(
        "entitlement recomputing the learners",
        &mut activation,
        || async {
            let enqueued = system.outbox_sequence("entitlement").await - outbox_before;
            enqueued as usize >= learners / 2
                || (learners <= 5_000
                    && system
                        .writing_transaction("entitlement", "grants")
                        .await
                        .is_some())
        },
    )
    .await;
    let enqueued = system.outbox_sequence("entitlement").await - outbox_before;
    tokio::task::block_in_place(|| strike(&mut system, "entitlement", activation));
    eprintln!(
        "crashes: activation struck after {:.2?}, {enqueued} of {learners} learners' events enqueued",
        started.elapsed()
    );

    // Assert: not at all. The active policy, the versions, the audit, every learner's
    // grants and the outbox are as before.
    let after_crash = policy_state(&system).await;
    assert_eq!(
        after_crash, before,
        "the interrupted activation left a trace"
    );
    assert_eq!(
        system
            .number(
                "entitlement",
                &format!("SELECT count(*) FROM platform_outbox WHERE id > {outbox_before}"),
            )
            .await,
        0,
        "events of the interrupted activation were kept"
    );

    // Act: the operator runs the command again.
    let rerun_started = Instant::now();
    let activated = hlctl_json(
        &system,
        &[
            "--json", "policy", "activate", candidate, "--reason", reason, "--expect", ACTIVE,
        ],
    );
    let rerun = rerun_started.elapsed();

    // Assert: once, whole: every learner recomputed and published once.
    assert_eq!(activated["policy_version"], CANDIDATE);
    assert_eq!(activated["previous_version"], ACTIVE);
    assert_eq!(activated["learners_changed"], learners as u64);
    let after = policy_state(&system).await;
    assert_eq!(after.active, CANDIDATE);
    assert_eq!(after.versions, [ACTIVE, CANDIDATE]);
    assert_eq!(after.activations, before.activations + 1);
    // Every learner's grants moved on, and with one event per learner in all, each
    // was published once.
    let unchanged: Vec<&String> = before
        .grants_versions
        .iter()
        .filter(|(learner, version)| after.grants_versions.get(*learner) <= Some(*version))
        .map(|(learner, _)| learner)
        .collect();
    assert!(
        unchanged.is_empty(),
        "{} learners were not recomputed, e.g. {:?}",
        unchanged.len(),
        unchanged.first()
    );
    let wifi_grants = system
        .number(
            "entitlement",
            &format!(
                "SELECT count(DISTINCT learner_id) FROM grants \
                 WHERE resource = 'wifi' AND policy_version = '{CANDIDATE}'"
            ),
        )
        .await;
    assert_eq!(wifi_grants as usize, learners);
    let published = system
        .number(
            "entitlement",
            &format!("SELECT count(*) FROM platform_outbox WHERE id > {outbox_before}"),
        )
        .await;
    assert_eq!(published as usize, learners, "one grants event per learner");

    // Act and assert: a third run changes nothing: the same document is already
    // active, a success that records and recomputes nothing, whether or not it names
    // the version it expected (now out of date).
    for args in [
        &[
            "policy", "activate", candidate, "--reason", reason, "--expect", ACTIVE,
        ][..],
        &["policy", "activate", candidate, "--reason", reason][..],
    ] {
        let again = hlctl(&system, args);
        assert!(
            again.status.success() && text(&again).contains("already active"),
            "{}",
            text(&again)
        );
    }
    assert_eq!(policy_state(&system).await, after);

    let converged = system.converge(&expected, Size::limit(learners)).await;
    eprintln!(
        "crashes: activation over {learners} learners: activated again in {rerun:.1?}, converged {converged:.1?} later"
    );
}

// ---------------------------------------------------------------------------------
// directory: reconcile --apply

/// The drifts a dry run reports, as `kind dn`.
fn drifts(system: &Isolated) -> BTreeSet<String> {
    system.drift().into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_killed_midway_repaired_each_drift_whole_or_not_then_the_rest() {
    // Arrange: the accounts published, then drift behind directory's back: a third of
    // the entries deleted, a third changed, some entries no account wants.
    let size = Size::from_env();
    let mut system = start_system("reconcile");
    let file = system.generate_cohort("reconcile", size.rows, 0, 22);
    let expected = import(&system, &file, size.rows).await;
    let dns: Vec<String> = system.ldap_values(&["1.1"]).into_keys().collect();
    assert_eq!(dns.len(), expected.learners.len());
    let deleted: Vec<&String> = dns.iter().step_by(3).collect();
    let changed: Vec<&String> = dns.iter().skip(1).step_by(3).collect();
    let extra: Vec<String> = (0..size.rows / 50 + 1)
        .map(|n| format!("uid=crash-intruder-{n},{PEOPLE}"))
        .collect();
    system.ldap_input(
        "ldapdelete",
        &[],
        &deleted
            .iter()
            .map(|dn| format!("{dn}\n"))
            .collect::<String>(),
    );
    system.ldap_input(
        "ldapmodify",
        &[],
        &changed
            .iter()
            .map(|dn| {
                format!(
                    "dn: {dn}\nchangetype: modify\nreplace: mail\nmail: crash@example.invalid\n-\n\
                     replace: supannCodePopulation\nsupannCodePopulation: {{SUPANN}}XX\n\n"
                )
            })
            .collect::<String>(),
    );
    system.ldap_input(
        "ldapadd",
        &[],
        &extra
            .iter()
            .enumerate()
            .map(|(n, dn)| {
                format!(
                    "dn: {dn}\nobjectClass: inetOrgPerson\nuid: crash-intruder-{n}\n\
                     cn: Intruder {n}\nsn: Intruder\n\n"
                )
            })
            .collect::<String>(),
    );
    let drifted = drifts(&system);
    let repairs = deleted.len() + changed.len();
    assert_eq!(drifted.len(), repairs + extra.len(), "{drifted:?}");
    let writes = "SELECT a.learner_id::text, coalesce(w.writes, 0) FROM accounts a \
                  LEFT JOIN ldap_writes w USING (learner_id)";
    let writes_before = by_learner(&system, "directory", writes).await;
    let counted = "SELECT coalesce(sum(writes), 0)::bigint FROM ldap_writes";
    let counted_before = system.number("directory", counted).await;
    let outbox_before = system.outbox_sequence("directory").await;

    // Act: reconcile --apply, killed once a third of the repairs are counted.
    let mut reconcile = spawn({
        let mut command = system.hlctl();
        command.args(["reconcile", "--apply"]);
        command
    });
    until("a third of the repairs made", &mut reconcile, || async {
        let done = system.number("directory", counted).await - counted_before;
        done as usize >= repairs / 3
    })
    .await;
    tokio::task::block_in_place(|| strike(&mut system, "directory", reconcile));

    // Assert: each drift repaired whole or left as it was: what drifts now is some of
    // what drifted, nothing else, and neither none nor all of it.
    let remaining = drifts(&system);
    let new: Vec<&String> = remaining.difference(&drifted).collect();
    assert!(new.is_empty(), "drift the reconciliation made: {new:?}");
    assert!(
        !remaining.is_empty() && remaining.len() < drifted.len(),
        "the kill struck in the middle: {} of {} drifts remain",
        remaining.len(),
        drifted.len()
    );
    let writes_crash = by_learner(&system, "directory", writes).await;
    let twice: Vec<&String> = writes_before
        .iter()
        .filter(|(learner, count)| writes_crash[*learner] > **count + 1)
        .map(|(learner, _)| learner)
        .collect();
    assert!(twice.is_empty(), "accounts written twice: {twice:?}");
    let unfinished = "SELECT count(*) FROM reconcile_repairs";
    let in_flight = system.number("directory", unfinished).await;
    assert!(in_flight <= 1, "{in_flight} repairs in flight at once");
    eprintln!(
        "crashes: reconciliation struck with {} of {} drifts left, {in_flight} repair left unrecorded",
        remaining.len(),
        drifted.len()
    );

    // Act: the operator runs it again.
    let rerun_started = Instant::now();
    let report = hlctl_json(&system, &["--json", "reconcile", "--apply"]);
    let rerun = rerun_started.elapsed();

    // Assert: it repaired exactly what remained, and nothing drifts any more; each
    // drifted account was written, counted and announced once in all, the repair
    // LDAP took just before the kill included; no other account was written.
    let reported: BTreeSet<String> = report["drifts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|drift| format!("{} {}", drift["kind"], drift["dn"]))
        .collect();
    assert_eq!(reported, remaining, "the rerun repaired what remained");
    assert_eq!(report["applied"], true);
    assert!(drifts(&system).is_empty(), "no drift after the rerun");
    let repaired: BTreeSet<String> = deleted
        .iter()
        .chain(&changed)
        .map(|dn| dn.to_ascii_lowercase())
        .collect();
    let dn_of: BTreeMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT learner_id::text, login FROM accounts")
            .fetch_all(&mut system.database("directory").await)
            .await
            .unwrap()
            .into_iter()
            .map(|(learner, login)| {
                (
                    learner,
                    format!("uid={login},{PEOPLE}").to_ascii_lowercase(),
                )
            })
            .collect();
    assert_eq!(dn_of.len(), expected.learners.len());
    let writes_after = by_learner(&system, "directory", writes).await;
    let wrong: Vec<String> = writes_before
        .iter()
        .filter_map(|(learner, before)| {
            let added = writes_after[learner] - before;
            let wanted = i64::from(repaired.contains(&dn_of[learner]));
            (added != wanted).then(|| format!("{} counted {added}, not {wanted}", dn_of[learner]))
        })
        .collect();
    assert!(wrong.is_empty(), "LDAP writes counted: {wrong:?}");
    let announced = system
        .number(
            "directory",
            &format!(
                "SELECT count(*) FROM platform_outbox WHERE id > {outbox_before} \
                 AND subject LIKE '%.account.published'"
            ),
        )
        .await as usize;
    assert_eq!(announced, repairs, "one announcement per repair");
    assert_eq!(system.number("directory", unfinished).await, 0);
    let entries = system.ldap_values(&["1.1"]);
    assert!(
        extra
            .iter()
            .all(|dn| !entries.contains_key(&dn.to_ascii_lowercase()))
    );

    let converged = system.converge(&expected, Size::limit(size.rows)).await;
    eprintln!(
        "crashes: reconciliation of {} drifts: the rest repaired in {rerun:.1?}, converged {converged:.1?} later",
        drifted.len()
    );
}

// ---------------------------------------------------------------------------------
// cards: print-batch export

/// How many of the cards are in each state.
async fn card_states(system: &Isolated) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>("SELECT state, count(*) FROM cards GROUP BY state")
        .fetch_all(&mut system.database("cards").await)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// The card numbers of a print-batch file (CSV).
fn batch_cards(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = header
        .iter()
        .position(|name| *name == "card_number")
        .unwrap();
    lines
        .map(|line| line.split(',').nth(column).unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_print_batch_killed_midway_exported_nothing_then_each_card_once() {
    // Arrange: C2i2e trainees from today (their card is requested and approved with
    // the grant), every card approved.
    let size = Size::from_env();
    let mut system = start_system("print-batch");
    let file = system.generate_cohort("cards", size.rows, 0, 23);
    rewrite_cohort(&file, "RECTORAT_C2I2E", "INSPE", "");
    let expected = import(&system, &file, size.rows).await;
    let cards = expected.learners.len() as i64;
    let approved = BTreeMap::from([("approved".to_owned(), cards)]);
    assert_eq!(card_states(&system).await, approved);
    let outbox_before = system.outbox_sequence("cards").await;
    let batch = cards.min(1_000);

    // Act: export a batch, killed once a third of its cards have moved.
    let first = system.root.join("batch-1.csv");
    let mut export = spawn({
        let mut command = system.hlctl();
        command.args(["card", "print-batch", "--limit", "1000", "--output"]);
        command.arg(&first);
        command
    });
    until(
        "a third of the batch moved to in-print",
        &mut export,
        || async { system.outbox_sequence("cards").await - outbox_before >= batch / 3 },
    )
    .await;
    tokio::task::block_in_place(|| strike(&mut system, "cards", export));

    // Assert: nothing exported: no file, no batch, no card moved, no event, no history.
    assert!(!first.exists(), "a batch file was written");
    assert_eq!(card_states(&system).await, approved);
    assert_eq!(
        system
            .number("cards", "SELECT count(*) FROM print_batches")
            .await,
        0
    );
    assert_eq!(
        system
            .number(
                "cards",
                "SELECT count(*) FROM card_transitions WHERE to_state = 'in_print'",
            )
            .await,
        0
    );
    assert_eq!(
        system
            .number(
                "cards",
                &format!("SELECT count(*) FROM platform_outbox WHERE id > {outbox_before}"),
            )
            .await,
        0
    );

    // Act: export again, until nothing is left to print.
    let rerun_started = Instant::now();
    let mut exported: Vec<String> = Vec::new();
    let mut batches = Vec::new();
    for n in 2.. {
        let path = system.root.join(format!("batch-{n}.csv"));
        let output = hlctl_json(
            &system,
            &[
                "--json",
                "card",
                "print-batch",
                "--limit",
                "1000",
                "--output",
                path.to_str().unwrap(),
            ],
        );
        if output["batch_id"].is_null() {
            assert!(!path.exists());
            break;
        }
        let numbers = batch_cards(&path);
        assert_eq!(output["cards"], numbers.len() as u64, "{output}");
        exported.extend(numbers);
        batches.push((output["batch_id"].as_str().unwrap().to_owned(), path));
    }

    let rerun = rerun_started.elapsed();

    // Assert: each card in exactly one batch, and the batches kept as exported.
    let distinct: BTreeSet<&String> = exported.iter().collect();
    assert_eq!(distinct.len(), exported.len(), "a card exported twice");
    assert_eq!(exported.len() as i64, cards);
    assert_eq!(
        card_states(&system).await,
        BTreeMap::from([("in_print".to_owned(), cards)])
    );
    assert_eq!(
        system
            .number("cards", "SELECT count(*) FROM print_batches")
            .await,
        batches.len() as i64
    );
    assert_eq!(
        system
            .number(
                "cards",
                "SELECT count(*) FROM card_transitions WHERE to_state = 'in_print'",
            )
            .await,
        cards,
        "one move to in-print per card"
    );
    for (batch_id, path) in &batches {
        let again = system.root.join(format!("again-{batch_id}.csv"));
        hlctl_json(
            &system,
            &[
                "--json",
                "card",
                "batch",
                batch_id,
                "--output",
                again.to_str().unwrap(),
            ],
        );
        assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(path).unwrap());
    }

    let converged = system.converge(&expected, Size::limit(size.rows)).await;
    eprintln!(
        "crashes: {cards} cards exported again in {} batch(es) in {rerun:.1?}, converged {converged:.1?} later",
        batches.len()
    );
}

// ---------------------------------------------------------------------------------
// intake: a cohort payment

/// What a cohort payment could have changed in intake's database.
#[derive(Debug, PartialEq, Eq)]
struct Booked {
    cohort_payments: i64,
    payments: i64,
    paid_stays: i64,
    due_stays: i64,
    versions: BTreeMap<String, i64>,
}

async fn booked(system: &Isolated, agreement_id: &str) -> Booked {
    let under = format!("agreement_id = '{agreement_id}'");
    Booked {
        cohort_payments: system
            .number("intake", "SELECT count(*) FROM cohort_payments")
            .await,
        payments: system
            .number("intake", "SELECT count(*) FROM payments")
            .await,
        paid_stays: system
            .number(
                "intake",
                &format!("SELECT count(*) FROM stays WHERE {under} AND payment_status = 'paid'"),
            )
            .await,
        due_stays: system
            .number(
                "intake",
                &format!("SELECT count(*) FROM stays WHERE {under} AND payment_status = 'due'"),
            )
            .await,
        versions: by_learner(
            system,
            "intake",
            "SELECT learner_id::text, version FROM persons",
        )
        .await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cohort_payment_killed_midway_booked_nothing_then_each_stay_once() {
    // Arrange: an agreement the partner pays for, and a cohort under it, every stay
    // due.
    let size = Size::from_env();
    let mut system = start_system("cohort-payment");
    let agreement = hlctl_json(
        &system,
        &[
            "--json",
            "agreement",
            "create",
            "--partner-name",
            "Rectorat",
            "--population",
            "RECTORAT_PAF",
            "--start",
            &day(-30),
            "--end",
            &day(300),
            "--payer",
            "partner",
        ],
    );
    let agreement_id = agreement["agreement_id"].as_str().unwrap().to_owned();
    let file = system.generate_cohort("payment", size.rows, 0, 24);
    rewrite_cohort(&file, "RECTORAT_PAF", "INSPE", &agreement_id);
    let expected = import(&system, &file, size.rows).await;
    let stays = expected.stays.len() as i64;
    let before = booked(&system, &agreement_id).await;
    assert_eq!((before.due_stays, before.paid_stays), (stays, 0));
    let outbox_before = system.outbox_sequence("intake").await;

    // Act: the cohort payment, killed once a third of the stays are booked.
    let paid_on = day(0);
    let payment = [
        "payment",
        "cohort",
        agreement_id.as_str(),
        "--amount",
        "120000",
        "--paid-on",
        paid_on.as_str(),
        "--reference",
        "VIR-CRASH-1",
    ];
    let mut first = spawn({
        let mut command = system.hlctl();
        command.args(payment);
        command
    });
    until("a third of the stays booked", &mut first, || async {
        system.outbox_sequence("intake").await - outbox_before >= stays / 3
    })
    .await;
    tokio::task::block_in_place(|| strike(&mut system, "intake", first));

    // Assert: nothing booked.
    assert_eq!(booked(&system, &agreement_id).await, before);
    assert_eq!(
        system
            .number(
                "intake",
                &format!("SELECT count(*) FROM platform_outbox WHERE id > {outbox_before}"),
            )
            .await,
        0
    );

    // Act: the finance office records it again.
    let mut with_json = vec!["--json"];
    with_json.extend(payment);
    let rerun_started = Instant::now();
    let recorded = hlctl_json(&system, &with_json);
    let rerun = rerun_started.elapsed();

    // Assert: once, every stay, each learner's version moved once.
    assert_eq!(
        recorded["paid_stay_ids"].as_array().unwrap().len() as i64,
        stays
    );
    let after = booked(&system, &agreement_id).await;
    assert_eq!(after.cohort_payments, 1);
    assert_eq!(after.payments, stays);
    assert_eq!((after.paid_stays, after.due_stays), (stays, 0));
    assert!(
        before
            .versions
            .iter()
            .all(|(learner, version)| after.versions[learner] == version + 1),
        "each learner's version moved once"
    );
    assert_eq!(
        system
            .number(
                "intake",
                &format!("SELECT count(*) FROM platform_outbox WHERE id > {outbox_before}"),
            )
            .await,
        stays,
        "one payment event per stay"
    );
    let amount = system
        .number("intake", "SELECT amount_cents FROM cohort_payments")
        .await;
    assert_eq!(amount, 12_000_000);

    // Act and assert: a third run books nothing (the reference is already booked:
    // the first booking is answered again), nor does one with another reference
    // (nothing is due).
    let again = hlctl(&system, &payment);
    assert!(
        again.status.success() && text(&again).contains("already booked"),
        "{}",
        text(&again)
    );
    let mut other_reference = payment;
    other_reference[8] = "VIR-CRASH-2";
    let again = hlctl(&system, &other_reference);
    assert!(
        !again.status.success() && text(&again).contains("nothing to pay"),
        "{}",
        text(&again)
    );
    assert_eq!(booked(&system, &agreement_id).await, after);

    let converged = system.converge(&expected, Size::limit(size.rows)).await;
    eprintln!(
        "crashes: cohort payment of {stays} stays recorded again in {rerun:.1?}, converged {converged:.1?} later"
    );
}
