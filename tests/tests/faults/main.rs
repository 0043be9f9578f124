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
//!
//! Beside them: the system on a three-node JetStream cluster losing a node, and two
//! processes of every service on one database and NATS losing one of each (the same
//! cohort size).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use hosted_contracts::v1;
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

/// How fast the replica test's calendar runs: a day every 15 s, so that a few of the
/// cohort's stays start (and their accounts turn active) while it runs.
const REPLICAS_DAYS_PER_MINUTE: u32 = 4;

/// The version the replica test activates (the default policy with wifi held two
/// weeks after a stay instead of one).
const CANDIDATE_POLICY: &str = "2026.2";

fn candidate_policy(system: &Isolated) -> std::path::PathBuf {
    let policy =
        std::fs::read_to_string(isolated::repository().join("policy/default.toml")).unwrap();
    let version = "version = \"2026.1\"";
    let wifi = "wifi = { when = \"always\", grace_days = 7 }";
    assert!(policy.contains(version) && policy.contains(wifi));
    let candidate = policy
        .replace(version, &format!("version = \"{CANDIDATE_POLICY}\""))
        .replace(wifi, "wifi = { when = \"always\", grace_days = 14 }");
    let path = system.root.join("candidate.toml");
    std::fs::write(&path, candidate).unwrap();
    path
}

fn authorized<T>(message: T) -> tonic::Request<T> {
    hosted_testkit::authorized(message, isolated::TOKEN)
}

type EntitlementClient =
    v1::entitlement_service_client::EntitlementServiceClient<tonic::transport::Channel>;

fn entitlement_client(system: &Isolated, replica: &str) -> EntitlementClient {
    let channel = tonic::transport::Endpoint::from_shared(system.endpoint(replica))
        .unwrap()
        .connect_lazy();
    v1::entitlement_service_client::EntitlementServiceClient::new(channel)
}

/// Each learner's Check of wifi on `at`, as one replica answers it.
async fn wifi_answers(
    client: &EntitlementClient,
    learners: &[String],
    at: hosted_contracts::prost_types::Timestamp,
) -> Vec<(bool, String, i32, String, String)> {
    let mut answers = Vec::with_capacity(learners.len());
    for learner in learners {
        let answer = client
            .clone()
            .check(authorized(v1::CheckRequest {
                learner: Some(v1::check_request::Learner::LearnerId(learner.clone())),
                resource: "wifi".to_owned(),
                at: Some(at),
            }))
            .await
            .unwrap_or_else(|status| panic!("Check of {learner}: {status}"))
            .into_inner();
        answers.push((
            answer.allowed,
            answer.last_day,
            answer.denial,
            answer.policy_version,
            answer.on,
        ));
    }
    answers
}

/// Polls until both replicas give the same answers for `learners`, all under
/// `version`. Panics after two minutes with the differences.
async fn same_answers(
    first: &EntitlementClient,
    second: &EntitlementClient,
    learners: &[String],
    at: hosted_contracts::prost_types::Timestamp,
    version: &str,
) {
    let started = Instant::now();
    loop {
        let one = wifi_answers(first, learners, at).await;
        let other = wifi_answers(second, learners, at).await;
        if one == other && one.iter().all(|answer| answer.3 == version) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the two entitlement replicas still answer differently (or not under {version}):\n{:?}",
            one.iter()
                .zip(&other)
                .filter(|(a, b)| a != b || a.3 != version)
                .take(5)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Rows a query of a service's database gives as text, for the messages of failed
/// assertions (empty when the query finds nothing, which is what is asserted).
async fn offending(system: &Isolated, service: &str, query: &str) -> Vec<String> {
    let mut connection = system.database(service).await;
    sqlx::query_scalar::<_, String>(query)
        .fetch_all(&mut connection)
        .await
        .unwrap_or_else(|error| panic!("{service}: {query}: {error}"))
}

/// The real instant at which `clock`, a rehearsal clock started at `started_at`,
/// shows the start of `day`, in milliseconds since the epoch.
fn rehearsal_midnight(
    clock: &hosted_platform::clock::Clock,
    started_at: jiff::Timestamp,
    day: time::Date,
) -> i64 {
    let shown = clock.start_of(day).as_nanosecond();
    let speed = i128::from(REPLICAS_DAYS_PER_MINUTE) * 1440;
    let start = started_at.as_nanosecond();
    ((start + (shown - start) / speed) / 1_000_000) as i64
}

/// Holds, as a replica's pass of entitlement's schedule would, half of the learners
/// due on the next day that has two or more (from the day after tomorrow on), until
/// the other half were recomputed on that day (another replica's pass ran); then lets
/// them go, as that replica's death does, waits until that day is over, and asserts
/// that they were recomputed on it (their grants version is the millisecond of their
/// recomputation), not at the next midnight. Returns the day and how many were held.
async fn schedule_pass_held(
    system: &Isolated,
    clock: &hosted_platform::clock::Clock,
    started_at: jiff::Timestamp,
) -> (time::Date, usize) {
    let mut connection = system.database("entitlement").await;
    let from = clock.today() + time::Duration::days(2);
    let due_day: time::Date = sqlx::query_scalar(
        "SELECT next_due FROM learners WHERE next_due >= $1 GROUP BY next_due \
         HAVING count(*) >= 2 ORDER BY next_due LIMIT 1",
    )
    .bind(from)
    .fetch_one(&mut connection)
    .await
    .expect("a day on which two learners are due");
    let mut pass = sqlx::Connection::begin(&mut connection).await.unwrap();
    let due: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT learner_id FROM learners WHERE next_due = $1 ORDER BY learner_id",
    )
    .bind(due_day)
    .fetch_all(&mut *pass)
    .await
    .unwrap();
    let held: Vec<uuid::Uuid> = due.iter().step_by(2).copied().collect();
    sqlx::query("SELECT 1 FROM learners WHERE learner_id = ANY($1) FOR UPDATE")
        .bind(&held)
        .execute(&mut *pass)
        .await
        .unwrap();
    let still_due = |learners: Vec<uuid::Uuid>| {
        let url = system.database_url("entitlement");
        async move {
            let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM learners WHERE learner_id = ANY($1) AND next_due <= $2",
            )
            .bind(&learners)
            .bind(due_day)
            .fetch_one(&mut connection)
            .await
            .unwrap()
        }
    };
    let others: Vec<uuid::Uuid> = due
        .iter()
        .filter(|learner| !held.contains(learner))
        .copied()
        .collect();
    while clock.today() < due_day || still_due(others.clone()).await > 0 {
        assert!(
            clock.today() <= due_day,
            "the learners not held were not recomputed on {due_day}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The pass that held them dies.
    pass.rollback().await.unwrap();
    let next_day = due_day + time::Duration::days(1);
    while clock.today() < next_day || still_due(held.clone()).await > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let versions: Vec<(String, i64)> = sqlx::query_as(
        "SELECT learner_id::text, grants_version FROM learners WHERE learner_id = ANY($1)",
    )
    .bind(&held)
    .fetch_all(&mut connection)
    .await
    .unwrap();
    let (day_starts, day_ends) = (
        rehearsal_midnight(clock, started_at, due_day),
        rehearsal_midnight(clock, started_at, next_day),
    );
    let late: Vec<&(String, i64)> = versions
        .iter()
        .filter(|(_, version)| !(day_starts..day_ends).contains(version))
        .collect();
    assert!(
        late.is_empty(),
        "learners due on {due_day} (from {day_starts} to {day_ends} in real milliseconds), \
         held by a pass that died, were recomputed at other times: {late:?}"
    );
    (due_day, held.len())
}

/// Issue 15, point 1: two processes of every service on one database and NATS, the
/// calendar running (a rehearsal clock, a day every 15 s). A cohort is imported
/// through one intake while the other serves reads; one process of each service is
/// killed a third of the way and not started again. Every learner ends up once in
/// every service and once in LDAP, and nothing happened twice: no event twice in a
/// stream, no entry added twice, no card twice, no calendar change recorded twice
/// (the days crossed with two entitlement and two directory processes running,
/// before the kills and after new ones started), no e-purse right in two deltas taken
/// at once through two cards processes. Check answers the same through two
/// entitlement processes, and after a policy activation through one the other
/// follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_every_service_publish_each_learner_once() {
    let _alone = ONE_SYSTEM_AT_A_TIME.lock().await;
    // Arrange: two processes of each service, on a rehearsal clock.
    let size = Size::from_env();
    let started_at = jiff::Timestamp::now();
    let clock = hosted_platform::clock::Clock::rehearsal(
        hosted_platform::config::DEFAULT_TIME_ZONE,
        started_at,
        REPLICAS_DAYS_PER_MINUTE,
    )
    .unwrap();
    let first_day = clock.today();
    let mut system = tokio::task::block_in_place(Isolated::servers);
    system.rehearse(started_at, REPLICAS_DAYS_PER_MINUTE);
    // As in the soak: no entry removed while the days pass (convergence counts one
    // entry per learner).
    system.set("directory", "ACCOUNTS__EXPIRED_DAYS", "3650");
    tokio::task::block_in_place(|| {
        system.start_services();
        for service in isolated::SERVICES {
            system.start_replica(service);
        }
    });
    eprintln!(
        "faults: replicas in {}, {REPLICAS_DAYS_PER_MINUTE} days a minute from {first_day}",
        system.root.display()
    );

    // Act: the import through intake, reads through intake-2 meanwhile.
    let file = system.generate_cohort("replicas", size.rows, size.rows / 100, 17);
    let import = system.start_import(&file);
    let reads = {
        let channel = tonic::transport::Endpoint::from_shared(system.endpoint("intake-2"))
            .unwrap()
            .connect_lazy();
        let client = v1::intake_service_client::IntakeServiceClient::new(channel);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut reads, mut seen) = (0_u64, 0_i64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let stats = client
                        .clone()
                        .get_stats(authorized(v1::GetStatsRequest::default()))
                        .await
                        .unwrap_or_else(|status| panic!("read {reads} through intake-2: {status}"))
                        .into_inner();
                    seen = seen.max(stats.total_learners);
                    reads += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (reads, seen)
            })
        };
        (stop, task)
    };
    let third = (size.rows / 3) as i64;
    let started = Instant::now();
    while persons(&system).await.unwrap_or_default() < third
        && started.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One process of each killed, for good: intake's is the one the import goes
    // through, which then stops and is run again through intake-2.
    eprintln!(
        "faults: killing one process of each service at {:.1?}",
        started.elapsed()
    );
    for service in isolated::SERVICES {
        system.kill(service);
    }
    let accepted = tokio::task::block_in_place(|| system.import_until_done(&file, Some(import)));
    reads.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let (reads_done, learners_read) = reads.1.await.unwrap();
    let settled = system.converge(&accepted, size.limit).await;
    eprintln!(
        "faults: replicas: {} learners converged {settled:.1?} after the import; {reads_done} \
         reads through intake-2 meanwhile, the last saw {learners_read} learners",
        accepted.learners.len()
    );
    assert!(reads_done > 0 && learners_read > 0);

    // Two processes of entitlement, cards and directory again, and two more days.
    tokio::task::block_in_place(|| {
        for service in ["entitlement", "cards", "directory"] {
            system.start_replica(service);
        }
    });
    let today = clock.today();
    while clock.today() < today + time::Duration::days(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    system.converge(&accepted, size.limit).await;
    eprintln!(
        "faults: replicas: converged again on {} ({} days after {first_day})",
        clock.today(),
        (clock.today() - first_day).whole_days()
    );

    // A replica's pass of the schedule dies before its commit (the test holds some of
    // a day's learners as that pass would): the other replicas recompute those
    // learners on their due day, not a day late.
    let (due_day, held) = schedule_pass_held(&system, &clock, started_at).await;
    eprintln!(
        "faults: replicas: {} learners due on {due_day} recomputed that day after the \
         pass that held them died",
        held
    );

    // Assert: nothing twice. Each service's stream holds each event of its outbox
    // once (a relay killed with a claimed batch leaves it to another after the lease;
    // NATS drops the copy by its message id).
    let seeds: Vec<async_nats::ServerAddr> = vec![system.nats.url().parse().unwrap()];
    let jetstream = async_nats::jetstream::new(async_nats::connect(seeds).await.unwrap());
    for service in isolated::SERVICES {
        let stream_name = format!("HOSTED_{}", service.to_uppercase());
        let mut stream = jetstream.get_stream(&stream_name).await.unwrap();
        // The calendar keeps publishing: counted when nothing is on its way, the same
        // before and after the stream is asked.
        let count = "SELECT count(*) FILTER (WHERE published_at IS NOT NULL) \
                     + 1000000 * count(*) FILTER (WHERE published_at IS NULL) \
                     FROM platform_outbox";
        let (messages, published) = loop {
            let before = system.number(service, count).await;
            let messages = stream.info().await.unwrap().state.messages;
            if before < 1_000_000 && system.number(service, count).await == before {
                break (messages, before);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            messages, published as u64,
            "{stream_name} holds {messages} messages for {published} events published"
        );
    }
    let twice_added = offending(
        &system,
        "directory",
        "SELECT learner_id::text FROM account_writes WHERE written = 'added' \
         GROUP BY learner_id HAVING count(*) > 1",
    )
    .await;
    assert!(
        twice_added.is_empty(),
        "entries added twice: {twice_added:?}"
    );
    let twice_carded = offending(
        &system,
        "cards",
        "SELECT learner_id::text FROM cards GROUP BY learner_id HAVING count(*) > 1",
    )
    .await;
    assert!(twice_carded.is_empty(), "two cards: {twice_carded:?}");

    // The calendar's changes, each recorded once, whichever replica made it.
    let scheduled = system
        .number(
            "entitlement",
            "SELECT count(*) FROM grant_audit WHERE actor = 'system'",
        )
        .await;
    let twice_scheduled = offending(
        &system,
        "entitlement",
        "SELECT learner_id || ' ' || resource || ' ' || change || ' ' || valid_from \
         FROM grant_audit WHERE actor = 'system' \
         GROUP BY learner_id, resource, stay_id, change, valid_from, valid_until, policy_version \
         HAVING count(*) > 1",
    )
    .await;
    let stepped = system
        .number(
            "directory",
            "SELECT count(*) FROM account_writes WHERE actor = 'system'",
        )
        .await;
    // No account goes back to a state it had left: each state is entered once, as
    // the calendar moves it on (a state written again later would be an older write
    // after a newer one).
    let twice_stepped = offending(
        &system,
        "directory",
        "WITH writes AS (SELECT learner_id, account_state, lag(account_state) \
             OVER (PARTITION BY learner_id ORDER BY id) AS previous \
             FROM account_writes WHERE written <> 'deleted') \
         SELECT learner_id || ' ' || account_state FROM writes \
         WHERE previous IS DISTINCT FROM account_state \
         GROUP BY learner_id, account_state HAVING count(*) > 1",
    )
    .await;
    eprintln!(
        "faults: replicas: {scheduled} grant changes by the calendar, {stepped} entries \
         written by it"
    );
    assert!(
        scheduled > 0 && stepped > 0,
        "the calendar changed nothing in {} days",
        (clock.today() - first_day).whole_days()
    );
    assert!(
        twice_scheduled.is_empty(),
        "calendar changes recorded twice: {twice_scheduled:?}"
    );
    assert!(
        twice_stepped.is_empty(),
        "accounts written back to a state they had left: {twice_stepped:?}"
    );

    // Two e-purse deltas at once, through two cards processes: no right in both.
    let newest_before: String = offending(
        &system,
        "cards",
        "SELECT coalesce(max(export_id::text), '') FROM epurse_exports",
    )
    .await
    .concat();
    let exports: Vec<std::process::Child> = system
        .replicas("cards")
        .iter()
        .filter(|name| *name != "cards")
        .map(|name| {
            system
                .hlctl()
                .env("HLCTL_CARDS", system.endpoint(name))
                .args(["epurse", "export", "--output"])
                .arg(system.root.join(format!("{name}-epurse.csv")))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    assert_eq!(exports.len(), 2);
    for mut export in exports {
        assert!(export.wait().unwrap().success(), "e-purse export failed");
    }
    let in_two = offending(
        &system,
        "cards",
        &format!(
            "SELECT line->>'learner_id' FROM epurse_exports e, jsonb_array_elements(e.lines) line \
             WHERE e.export_id::text > '{newest_before}' \
             GROUP BY 1 HAVING count(DISTINCT e.export_id) > 1"
        ),
    )
    .await;
    assert!(in_two.is_empty(), "rights in both deltas: {in_two:?}");

    // Check: the same answers through both entitlement processes; after a policy
    // activation through one, the other answers under the new version too.
    let replicas = system.replicas("entitlement");
    let live: Vec<&String> = replicas
        .iter()
        .filter(|name| *name != "entitlement")
        .collect();
    assert_eq!(live.len(), 2);
    let (first, second) = (
        entitlement_client(&system, live[0]),
        entitlement_client(&system, live[1]),
    );
    let learners: Vec<String> = accepted.learners.iter().take(60).cloned().collect();
    let instant = clock.now() + jiff::SignedDuration::from_hours(24 * 60);
    let at = hosted_contracts::prost_types::Timestamp {
        seconds: instant.as_second(),
        nanos: 0,
    };
    same_answers(&first, &second, &learners, at, "2026.1").await;
    let candidate = candidate_policy(&system);
    let activated = system
        .hlctl()
        .env("HLCTL_ENTITLEMENT", system.endpoint(live[0]))
        .args(["policy", "activate"])
        .arg(&candidate)
        .args(["--reason", "replica test", "--expect", "2026.1"])
        .output()
        .unwrap();
    assert!(
        activated.status.success(),
        "{}",
        String::from_utf8_lossy(&activated.stderr)
    );
    same_answers(&first, &second, &learners, at, CANDIDATE_POLICY).await;
    let panics = system.panics();
    assert!(panics.is_empty(), "panics:\n{}", panics.join("\n"));
}
