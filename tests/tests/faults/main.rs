//! The fault suite: an isolated copy of the whole system (its own PostgreSQL
//! cluster, NATS server and slapd, the four services as processes), a cohort
//! imported with `hlctl import stays` for each scenario, one fault in the middle of
//! it, and then everything that must hold once the system has recovered (see
//! `Isolated::converge`): every accepted row one person, one stay, one learner in
//! entitlement, one account and exactly one LDAP entry holding the grants in force,
//! no outbox row left, no dead letter, every consumer caught up, no drift, no panic.
//!
//! The scenarios run one after the other, each with a cohort of its own: in CI on
//! one system, so that each also checks that the earlier ones left nothing behind;
//! at full size each on a fresh system, so that each figure is about one cohort.
//! Sizes: `HOSTED_FAULTS_ROWS` learners per scenario (300 by default, as in CI;
//! `dev/faults` runs 10,000) and the outages of the issue scaled by
//! `HOSTED_FAULTS_FULL=1` (NATS 20 s, slapd 60 s, PostgreSQL 20 s; a few seconds
//! otherwise). `HOSTED_FAULTS_ONLY=a,b` runs some scenarios only. Each prints the
//! time from the last recovery to convergence, and a table at the end.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use hosted_e2e::isolated::{self, Accepted, Isolated};
use sqlx::Connection as _;

/// How big and how long: CI's size unless `HOSTED_FAULTS_FULL=1`.
#[derive(Debug, Clone, Copy)]
struct Size {
    rows: usize,
    nats_down: Duration,
    slapd_down: Duration,
    postgres_down: Duration,
    /// How long a killed service stays down before it is started again.
    service_down: Duration,
    /// How long a scenario may take to converge before it fails.
    limit: Duration,
    /// A new system for each scenario (full size: each figure is about one cohort),
    /// or one for all (CI: each scenario also checks what the earlier ones left).
    fresh: bool,
}

impl Size {
    fn from_env() -> Self {
        let full = std::env::var("HOSTED_FAULTS_FULL").is_ok_and(|value| value == "1");
        let rows = std::env::var("HOSTED_FAULTS_ROWS")
            .ok()
            .and_then(|rows| rows.parse().ok())
            .unwrap_or(if full { 10_000 } else { 300 });
        let seconds =
            |full_size: u64, ci: u64| Duration::from_secs(if full { full_size } else { ci });
        Self {
            rows,
            nats_down: seconds(20, 3),
            slapd_down: seconds(60, 5),
            postgres_down: seconds(20, 3),
            service_down: seconds(2, 1),
            limit: seconds(180, 120),
            fresh: full,
        }
    }
}

/// One fault, applied while a cohort is being imported and published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Nothing: the reference the other figures compare with.
    None,
    Kill(&'static str),
    /// Killed and started again within one second (a Kubernetes restart).
    QuickRestart(&'static str),
    KillNats,
    StopSlapd,
    StopPostgres,
    FreezeThenKillNats,
    /// Directory and NATS killed at the same moment.
    DirectoryAndNats,
}

impl Fault {
    fn name(self) -> String {
        match self {
            Self::None => "no fault (reference)".to_owned(),
            Self::Kill(service) => format!("kill -9 {service}"),
            Self::QuickRestart(service) => format!("{service} restarted within 1 s"),
            Self::KillNats => "kill -9 NATS".to_owned(),
            Self::StopSlapd => "slapd stopped".to_owned(),
            Self::StopPostgres => "PostgreSQL stopped (immediate)".to_owned(),
            Self::FreezeThenKillNats => "NATS frozen, then killed".to_owned(),
            Self::DirectoryAndNats => "kill -9 directory and NATS".to_owned(),
        }
    }

    fn key(self) -> String {
        self.name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect::<String>()
            .split('_')
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("_")
    }

    /// Applies the fault and recovers from it; returns when the last recovery is done.
    fn apply(self, system: &mut Isolated, size: Size) {
        match self {
            Self::None => {}
            Self::Kill(service) => {
                system.kill(service);
                std::thread::sleep(size.service_down);
                system.start_service(service);
            }
            Self::QuickRestart(service) => {
                system.kill(service);
                std::thread::sleep(Duration::from_millis(500));
                system.start_service(service);
            }
            Self::KillNats => {
                system.nats.kill();
                std::thread::sleep(size.nats_down);
                system.nats.start();
            }
            Self::StopSlapd => {
                system.slapd.stop();
                std::thread::sleep(size.slapd_down);
                system.slapd.start();
            }
            Self::StopPostgres => {
                system.postgres.stop_immediately();
                std::thread::sleep(size.postgres_down);
                system.postgres.start();
            }
            Self::FreezeThenKillNats => {
                system.nats.freeze();
                std::thread::sleep(size.nats_down.min(Duration::from_secs(10)));
                system.nats.kill();
                std::thread::sleep(Duration::from_secs(1));
                system.nats.start();
            }
            Self::DirectoryAndNats => {
                system.kill("directory");
                system.nats.kill();
                std::thread::sleep(size.nats_down);
                system.nats.start();
                system.start_service("directory");
            }
        }
    }
}

const SCENARIOS: [Fault; 11] = [
    Fault::None,
    Fault::Kill("intake"),
    Fault::Kill("entitlement"),
    Fault::Kill("cards"),
    Fault::Kill("directory"),
    Fault::QuickRestart("entitlement"),
    Fault::KillNats,
    Fault::FreezeThenKillNats,
    Fault::StopSlapd,
    Fault::StopPostgres,
    Fault::DirectoryAndNats,
];

async fn persons(system: &Isolated) -> Option<i64> {
    let mut connection = sqlx::PgConnection::connect(&system.database_url("intake"))
        .await
        .ok()?;
    sqlx::query_scalar("SELECT count(*) FROM persons")
        .fetch_one(&mut connection)
        .await
        .ok()
}

/// The login of the first accepted row of an import's results.
fn first_login(file: &std::path::Path) -> String {
    let results = std::fs::read_to_string(file.with_extension("results.csv")).unwrap();
    results
        .lines()
        .skip(1)
        .map(|line| line.split(',').collect::<Vec<_>>())
        .find(|fields| fields[1] == "created")
        .map(|fields| fields[3].to_owned())
        .expect("a created row")
}

/// A system started afresh, with a first cohort (nothing wrong with it) converged:
/// the baseline the scenarios add to. `check_the_checks` first shows that the
/// convergence checks see what they are there for: an entry deleted behind
/// directory's back is drift, until reconciliation puts it back.
async fn fresh_system(size: Size, check_the_checks: bool) -> (Isolated, Accepted) {
    let system = tokio::task::block_in_place(Isolated::start);
    eprintln!("faults: isolated system in {}", system.root.display());
    let file = system.generate_cohort("baseline", size.rows.min(200), 3, 1);
    let expected = tokio::task::block_in_place(|| system.import_until_done(&file, None));
    let settled = system.converge(&expected, size.limit).await;
    eprintln!("faults: baseline converged in {settled:.1?}");
    if check_the_checks {
        let deleted = format!("uid={},{}", first_login(&file), isolated::PEOPLE);
        system.ldap_input("ldapdelete", &[&deleted], "");
        assert_eq!(system.drift().len(), 1, "the deleted entry is drift");
        let repaired = system
            .hlctl()
            .args(["reconcile", "--apply"])
            .output()
            .unwrap();
        assert!(
            repaired.status.success(),
            "{}",
            String::from_utf8_lossy(&repaired.stderr)
        );
        system.converge(&expected, size.limit).await;
    }
    (system, expected)
}

/// One isolated system at a time: the tests of this suite run one after the other,
/// so that no outage or convergence limit is measured on a machine another system
/// loads.
static ONE_SYSTEM_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_recovers_from_every_fault() {
    let _alone = ONE_SYSTEM_AT_A_TIME.lock().await;
    let size = Size::from_env();
    let only: Vec<String> = std::env::var("HOSTED_FAULTS_ONLY")
        .map(|only| {
            only.split(',')
                .filter(|key| !key.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut current: Option<(Isolated, Accepted)> = None;
    let mut report = String::from(
        "| scenario | learners | import | converged after the last recovery |\n|---|---|---|---|\n",
    );
    for (index, fault) in SCENARIOS.into_iter().enumerate() {
        if !only.is_empty() && !only.iter().any(|key| fault.key().contains(key.as_str())) {
            continue;
        }
        if size.fresh || current.is_none() {
            // The previous system stops before the next one starts.
            drop(current.take());
            current = Some(fresh_system(size, index == 0 || !size.fresh).await);
        }
        let (system, expected) = current.as_mut().unwrap();
        let seed = 100 + index as u64;
        let file = system.generate_cohort(&fault.key(), size.rows, size.rows / 100, seed);
        let before = persons(system).await.unwrap_or_default();
        let import = system.start_import(&file);
        // The fault strikes once about a third of the cohort is in intake: events are
        // on their way through NATS, entitlement and directory.
        let third = before + (size.rows / 3) as i64;
        let started = Instant::now();
        while persons(system).await.unwrap_or_default() < third
            && started.elapsed() < Duration::from_secs(120)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "faults: {}: striking at {:.1?}",
            fault.name(),
            started.elapsed()
        );
        tokio::task::block_in_place(|| fault.apply(system, size));
        let recovered = Instant::now();
        let accepted =
            tokio::task::block_in_place(|| system.import_until_done(&file, Some(import)));
        let imported = started.elapsed();
        expected.add(&accepted);
        system.converge(expected, size.limit).await;
        let since_recovery = recovered.elapsed();
        eprintln!(
            "faults: {}: {} learners, import done after {imported:.1?}, converged \
             {since_recovery:.1?} after the last recovery",
            fault.name(),
            expected.learners.len()
        );
        let _ = writeln!(
            report,
            "| {} | {} | {:.1} s | {:.1} s |",
            fault.name(),
            expected.learners.len(),
            imported.as_secs_f64(),
            since_recovery.as_secs_f64()
        );
    }
    eprintln!("\n{report}");
}

/// Issue 15, point 2: on a three-node JetStream cluster whose streams keep three
/// replicas, the node that leads intake's stream is killed while a cohort is
/// imported; publishing and consuming go on through the other two (the clients
/// reconnect to another seed), and nothing is lost or done twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_cluster_loses_nothing_when_a_node_dies() {
    let _alone = ONE_SYSTEM_AT_A_TIME.lock().await;
    // Arrange: every stream on the three nodes.
    let size = Size::from_env();
    let mut system = tokio::task::block_in_place(Isolated::start_clustered);
    eprintln!("faults: clustered system in {}", system.root.display());
    let seeds: Vec<async_nats::ServerAddr> = system
        .nats_url()
        .split(',')
        .map(|seed| seed.parse().unwrap())
        .collect();
    let jetstream = async_nats::jetstream::new(async_nats::connect(seeds).await.unwrap());
    for stream in [
        "HOSTED_INTAKE",
        "HOSTED_ENTITLEMENT",
        "HOSTED_CARDS",
        "HOSTED_DIRECTORY",
    ] {
        let info = jetstream
            .get_stream(stream)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone();
        assert_eq!(info.config.num_replicas, 3, "{stream}");
    }
    let leader = jetstream
        .get_stream("HOSTED_INTAKE")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .and_then(|cluster| cluster.leader)
        .expect("intake's stream has a leader");
    drop(jetstream);
    let file = system.generate_cohort("cluster", size.rows, size.rows / 100, 15);
    let import = system.start_import(&file);
    let third = (size.rows / 3) as i64;
    let started = Instant::now();
    while persons(&system).await.unwrap_or_default() < third
        && started.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Act: the leader of intake's stream dies, and stays dead.
    eprintln!(
        "faults: killing {leader}, intake's stream leader, at {:.1?}",
        started.elapsed()
    );
    system.nats_node(&leader).kill();
    let accepted = tokio::task::block_in_place(|| system.import_until_done(&file, Some(import)));

    // Assert: every learner once in every service and in LDAP, nothing left over.
    let settled = system.converge(&accepted, size.limit).await;
    eprintln!(
        "faults: cluster: {} learners converged {settled:.1?} after the node's death",
        accepted.learners.len()
    );
}
