//! The soak: an isolated copy of the whole system (its own PostgreSQL cluster, NATS
//! server and slapd, the four services as processes) under a steady load for a
//! while, with the calendar running fast: registrations (`RegisterStay`),
//! amendments (`AmendPerson` and `ExtendStay`) and Checks, each at a fixed rate, on
//! a rehearsal clock (`[clock] rehearsal_days_per_minute`) so that stays start and
//! end, grants take effect and lapse, and accounts move through their states while
//! it runs.
//!
//! Every few seconds it samples each service's resident memory (VmRSS) and the CPU
//! time it has used (what the Kubernetes manifests' requests and limits are sized
//! from: docs/deploy.md), and it
//! keeps every call's latency, counted from when the call was due (a stall is not
//! hidden). It prints the memory series, each service's trend (the least-squares
//! slope over the second half, in KiB a minute) and each operation's p50 and p99
//! per window. It asserts what holds whatever the machine: no error, every call
//! answered, no panic, the system converged at the end (every registration in LDAP
//! with the grants entitlement computed last), the calendar seen to move, and each
//! service's memory at the end at most [`MEMORY_BOUND`] above what it was once
//! warmed up. Latencies are printed, not asserted.
//!
//! `HOSTED_SOAK_SECONDS` (90 by default, as in CI; `dev/soak` runs 1,800),
//! `HOSTED_SOAK_RATES` (`registrations,amendments,checks` a second: `4,4,100`),
//! `HOSTED_SOAK_DAYS_PER_MINUTE` (10).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hosted_contracts::v1;
use hosted_e2e::isolated::{self, Accepted, Isolated};
use hosted_platform::{
    clock::{Clock, format_day, parse_day},
    config::DEFAULT_TIME_ZONE,
};
use sqlx::Connection as _;
use time::Date;
use tokio::{task::JoinSet, time::MissedTickBehavior};
use tonic::transport::Channel;

/// How much above its RSS once warmed up a service may end: generous, for the
/// allocator's noise over a short run and for what the data itself adds (the Check
/// cache holds every learner: about 1.15 KiB of RSS each). For services of about 20 MiB
/// it catches a leak of some 4 KiB a Check in the CI run, 150 bytes in 30 minutes;
/// the printed slope shows less.
const MEMORY_BOUND: Bound = Bound {
    ratio: 1.5,
    slack_kib: 16 * 1024,
};

#[derive(Debug, Clone, Copy)]
struct Bound {
    ratio: f64,
    slack_kib: u64,
}

impl Bound {
    fn limit(self, warm_kib: u64) -> u64 {
        (warm_kib as f64 * self.ratio) as u64 + self.slack_kib
    }
}

/// The run's settings, from the environment.
#[derive(Debug, Clone, Copy)]
struct Settings {
    duration: Duration,
    /// Memory is compared with its value at the end of the warm-up.
    warm_up: Duration,
    sample_every: Duration,
    window: Duration,
    registrations: f64,
    amendments: f64,
    checks: f64,
    days_per_minute: u32,
}

impl Settings {
    fn from_env() -> Self {
        let seconds: u64 = std::env::var("HOSTED_SOAK_SECONDS")
            .ok()
            .and_then(|seconds| seconds.parse().ok())
            .unwrap_or(90);
        let rates: Vec<f64> = std::env::var("HOSTED_SOAK_RATES")
            .unwrap_or_else(|_| "4,4,100".to_owned())
            .split(',')
            .map(|rate| {
                rate.trim()
                    .parse()
                    .expect("HOSTED_SOAK_RATES: three numbers")
            })
            .collect();
        assert!(
            rates.len() == 3 && rates.iter().all(|rate| *rate > 0.0),
            "HOSTED_SOAK_RATES: registrations,amendments,checks a second, each above 0"
        );
        let days_per_minute = std::env::var("HOSTED_SOAK_DAYS_PER_MINUTE")
            .ok()
            .and_then(|days| days.parse().ok())
            .unwrap_or(10);
        let duration = Duration::from_secs(seconds.max(30));
        Self {
            duration,
            warm_up: (duration / 4).clamp(Duration::from_secs(20), Duration::from_secs(300)),
            sample_every: (duration / 60).clamp(Duration::from_secs(2), Duration::from_secs(10)),
            window: (duration / 10).clamp(Duration::from_secs(10), Duration::from_secs(60)),
            registrations: rates[0],
            amendments: rates[1],
            checks: rates[2],
            days_per_minute,
        }
    }
}

/// The operations of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Operation {
    Register,
    AmendPerson,
    ExtendStay,
    Check,
}

impl Operation {
    const ALL: [Self; 4] = [
        Self::Register,
        Self::AmendPerson,
        Self::ExtendStay,
        Self::Check,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Register => "RegisterStay",
            Self::AmendPerson => "AmendPerson",
            Self::ExtendStay => "ExtendStay",
            Self::Check => "Check",
        }
    }
}

/// A learner the soak registered, as it last saw them.
#[derive(Debug, Clone)]
struct Learner {
    id: String,
    login: String,
    version: i64,
    stay_id: String,
    start: Date,
    end: Date,
    /// An amendment is on its way: the next waits (the version must be the current).
    busy: bool,
}

/// What every call recorded.
#[derive(Debug, Default)]
struct Record {
    learners: Vec<Learner>,
    accepted: Accepted,
    /// Per operation: (when it was due, from the start; its latency).
    latencies: BTreeMap<Operation, Vec<(Duration, Duration)>>,
    errors: BTreeMap<Operation, Vec<String>>,
    /// Amendment ticks with no learner free to amend (the first seconds).
    skipped: u64,
    allowed: u64,
    denied: u64,
    next_amended: usize,
}

type Shared = Arc<Mutex<Record>>;

fn record(
    shared: &Shared,
    operation: Operation,
    start: Instant,
    due: Instant,
    error: Option<String>,
) {
    let latency = due.elapsed();
    let mut record = shared.lock().unwrap();
    record
        .latencies
        .entry(operation)
        .or_default()
        .push((due.duration_since(start), latency));
    if let Some(error) = error {
        record.errors.entry(operation).or_default().push(error);
    }
}

/// A number that looks random, from `n` (splitmix64).
fn scramble(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A family name of its own for the `n`th registration: syllables, letters only.
fn family_name(n: u64) -> String {
    const SYLLABLES: [&str; 16] = [
        "ba", "ce", "di", "fo", "gu", "la", "me", "ni", "po", "ru", "sa", "te", "vi", "zo", "ka",
        "le",
    ];
    let mut name = String::new();
    let mut rest = n;
    loop {
        name.push_str(SYLLABLES[(rest % 16) as usize]);
        rest /= 16;
        if rest == 0 {
            break;
        }
    }
    let mut chars = name.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn registration(n: u64, today: Date) -> v1::RegisterStayRequest {
    const GIVEN: [&str; 6] = ["Amélie", "Jonas", "Inès", "Mateo", "Sofia", "Yanis"];
    let draw = scramble(n);
    let (population, unit, requested): (&str, &str, &[&str]) = match n % 5 {
        0 => ("IFSI", "IFSI-NORD", &[]),
        1 => ("RECTORAT_PAF", "INSPE", &[]),
        // A card with the smart-card grant: cards follows these.
        2 => ("RECTORAT_C2I2E", "INSPE", &[]),
        3 => (
            "SHORT_COURSE_SUFA",
            "SUFA",
            &["library", "online-resources"],
        ),
        _ => ("VISITING_DOCTORAL", "ED-SPI", &["premises"]),
    };
    // Most start within a few days and last a few days to a few weeks, so that the
    // rehearsal's calendar starts and ends them while the soak runs. Ends are at
    // least two days ahead: a registration near the rehearsal's midnight is never
    // refused for an end the services already see as past.
    let start = today + time::Duration::days((draw % 4) as i64);
    let end = start + time::Duration::days(2 + (draw >> 8) as i64 % 19);
    let birth = Date::from_calendar_date(1975 + (draw >> 16) as i32 % 30, time::Month::March, 1)
        .unwrap()
        + time::Duration::days((draw >> 24) as i64 % 300);
    v1::RegisterStayRequest {
        person: Some(v1::PersonInput {
            family_name: family_name(n),
            given_names: GIVEN[(draw >> 32) as usize % GIVEN.len()].to_owned(),
            birth_date: format_day(birth),
            email: format!("soak{n}@example.org"),
            ..Default::default()
        }),
        stay: Some(v1::StayInput {
            population: population.to_owned(),
            sponsor_unit: unit.to_owned(),
            start_date: format_day(start),
            end_date: format_day(end),
            requested_resources: requested.iter().map(|&name| name.to_owned()).collect(),
            ..Default::default()
        }),
        confirm_new_person: true,
    }
}

/// The clients of the load, one HTTP/2 connection per service.
#[derive(Debug, Clone)]
struct Clients {
    intake: v1::intake_service_client::IntakeServiceClient<Channel>,
    entitlement: v1::entitlement_service_client::EntitlementServiceClient<Channel>,
}

fn authorized<T>(message: T) -> tonic::Request<T> {
    hosted_testkit::authorized(message, isolated::TOKEN)
}

async fn register(
    clients: Clients,
    shared: Shared,
    clock: Clock,
    n: u64,
    start: Instant,
    due: Instant,
) {
    let request = registration(n, clock.today());
    let stay = request.stay.clone().unwrap_or_default();
    let outcome = clients
        .clone()
        .intake
        .register_stay(authorized(request))
        .await;
    let error = match outcome {
        Ok(response) => {
            let response = response.into_inner();
            let learner = response.learner.unwrap_or_default();
            let person = learner.person.unwrap_or_default();
            let mut record = shared.lock().unwrap();
            record.accepted.learners.insert(person.learner_id.clone());
            record.accepted.stays.insert(response.stay_id.clone());
            record.learners.push(Learner {
                id: person.learner_id,
                login: person.login,
                version: learner.version,
                stay_id: response.stay_id,
                start: parse_day(&stay.start_date).unwrap(),
                end: parse_day(&stay.end_date).unwrap(),
                busy: false,
            });
            None
        }
        Err(status) => Some(format!("{}: {}", status.code(), status.message())),
    };
    record(&shared, Operation::Register, start, due, error);
}

/// An amendment of the next learner free to take one: an identity correction, or an
/// extension of their stay while it has at least two days to run (so that the
/// services, whose day may have turned already, never see it ended).
async fn amend(
    clients: Clients,
    shared: Shared,
    clock: Clock,
    n: u64,
    start: Instant,
    due: Instant,
) {
    let today = clock.today();
    let picked = {
        let mut record = shared.lock().unwrap();
        let count = record.learners.len();
        let from = record.next_amended;
        let found = (0..count)
            .map(|offset| (from + offset) % count)
            .find(|&index| !record.learners[index].busy);
        match found {
            Some(index) => {
                record.next_amended = index + 1;
                record.learners[index].busy = true;
                Some((index, record.learners[index].clone()))
            }
            None => {
                record.skipped += 1;
                None
            }
        }
    };
    let Some((index, learner)) = picked else {
        return;
    };
    let extend = n % 2 == 1
        && learner.end >= today + time::Duration::days(2)
        && (learner.end - learner.start).whole_days() < 300;
    let mut intake = clients.intake.clone();
    let (operation, outcome) = if extend {
        let new_end = learner.end + time::Duration::days(1 + (scramble(n) % 5) as i64);
        let outcome = intake
            .extend_stay(authorized(v1::ExtendStayRequest {
                stay_id: learner.stay_id.clone(),
                new_end_date: format_day(new_end),
                reason: "soak: the sponsor extends the stay".to_owned(),
            }))
            .await
            .map(|response| response.into_inner().learner);
        (
            Operation::ExtendStay,
            outcome.map(|learner| (learner, Some(new_end))),
        )
    } else {
        let outcome = intake
            .amend_person(authorized(v1::AmendPersonRequest {
                learner_id: learner.id.clone(),
                expected_version: learner.version,
                person: Some(v1::PersonInput {
                    email: format!("soak{n}.amended@example.org"),
                    phone: format!(
                        "+33 1 {:02} {:02} {:02} {:02}",
                        n % 100,
                        n / 100 % 100,
                        n / 10_000 % 100,
                        n % 97
                    ),
                    ..Default::default()
                }),
                reason: "soak: the learner gave new contact details".to_owned(),
            }))
            .await
            .map(|response| response.into_inner().learner);
        (
            Operation::AmendPerson,
            outcome.map(|learner| (learner, None)),
        )
    };
    let error = {
        let mut record = shared.lock().unwrap();
        let slot = &mut record.learners[index];
        slot.busy = false;
        match outcome {
            Ok((answered, new_end)) => {
                slot.version = answered.map_or(slot.version, |answered| answered.version);
                slot.end = new_end.unwrap_or(slot.end);
                None
            }
            Err(status) => Some(format!("{}: {}", status.code(), status.message())),
        }
    };
    record(&shared, operation, start, due, error);
}

/// A Check of a learner registered so far (or of nobody, before the first), for one
/// of the policy's resources: allowed or denied, both are answers.
async fn check(clients: Clients, shared: Shared, n: u64, start: Instant, due: Instant) {
    const RESOURCES: [&str; 7] = [
        "wifi",
        "ent",
        "library",
        "online-resources",
        "smart-card",
        "grades",
        "premises:ED-SPI",
    ];
    let draw = scramble(n);
    let login = {
        let record = shared.lock().unwrap();
        match record.learners.len() {
            0 => "nobody.yet".to_owned(),
            count => record.learners[(draw % count as u64) as usize]
                .login
                .clone(),
        }
    };
    let outcome = clients
        .entitlement
        .clone()
        .check(authorized(v1::CheckRequest {
            learner: Some(v1::check_request::Learner::Login(login)),
            resource: RESOURCES[(draw >> 32) as usize % RESOURCES.len()].to_owned(),
            at: None,
        }))
        .await;
    let error = match outcome {
        Ok(response) => {
            let mut record = shared.lock().unwrap();
            if response.into_inner().allowed {
                record.allowed += 1;
            } else {
                record.denied += 1;
            }
            None
        }
        Err(status) => Some(format!("{}: {}", status.code(), status.message())),
    };
    record(&shared, Operation::Check, start, due, error);
}

/// Calls `call(n, due)` `rate` times a second until `end`, each in a task of its own
/// so that a slow answer never delays the next call; returns the calls not answered
/// within a minute of the end.
async fn drive<F, Fut>(rate: f64, start: Instant, end: Instant, call: F) -> usize
where
    F: Fn(u64, Instant) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut calls = JoinSet::new();
    let mut ticks = tokio::time::interval_at(start.into(), Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut n = 0;
    loop {
        let due = ticks.tick().await.into_std();
        if due >= end {
            break;
        }
        calls.spawn(call(n, due));
        n += 1;
        while calls.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while calls.join_next().await.is_some() {}
    })
    .await;
    let unanswered = calls.len();
    calls.abort_all();
    unanswered
}

/// Each service's resident memory and CPU time, sampled.
#[derive(Debug, Default)]
struct Memory {
    /// (seconds since the start, KiB per service in [`isolated::SERVICES`]' order).
    samples: Vec<(f64, Vec<u64>)>,
    /// The CPU seconds each service had used by then, in the same order.
    cpu: Vec<Vec<f64>>,
    /// The learners registered by then, at each sample.
    learners: Vec<usize>,
}

impl Memory {
    fn series(&self, service: usize) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.samples
            .iter()
            .map(move |(seconds, kib)| (*seconds, kib[service]))
    }

    /// The first sample at or after `at`.
    fn at(&self, service: usize, at: Duration) -> u64 {
        self.series(service)
            .find(|(seconds, _)| *seconds >= at.as_secs_f64())
            .or_else(|| self.series(service).last())
            .map_or(0, |(_, kib)| kib)
    }

    /// The learners registered at the first sample at or after `at`.
    fn learners_at(&self, at: Duration) -> usize {
        self.samples
            .iter()
            .zip(&self.learners)
            .find(|((seconds, _), _)| *seconds >= at.as_secs_f64())
            .map_or_else(
                || self.learners.last().copied().unwrap_or(0),
                |(_, learners)| *learners,
            )
    }

    fn last(&self, service: usize) -> u64 {
        self.series(service).last().map_or(0, |(_, kib)| kib)
    }

    /// The cores a service used on average from `from` to the end, and at most
    /// between two samples.
    fn cores(&self, service: usize, from: Duration) -> (f64, f64) {
        let points: Vec<(f64, f64)> = self
            .samples
            .iter()
            .zip(&self.cpu)
            .map(|((seconds, _), cpu)| (*seconds, cpu[service]))
            .collect();
        let rate = |(t0, c0): (f64, f64), (t1, c1): (f64, f64)| {
            if t1 > t0 { (c1 - c0) / (t1 - t0) } else { 0.0 }
        };
        let peak = points
            .windows(2)
            .map(|pair| rate(pair[0], pair[1]))
            .fold(0.0, f64::max);
        let first = points
            .iter()
            .find(|(seconds, _)| *seconds >= from.as_secs_f64())
            .or(points.first());
        let average = match (first, points.last()) {
            (Some(first), Some(last)) => rate(*first, *last),
            _ => 0.0,
        };
        (average, peak)
    }

    /// The least-squares slope of the second half, in KiB a minute.
    fn slope(&self, service: usize) -> f64 {
        let points: Vec<(f64, f64)> = self
            .series(service)
            .skip(self.samples.len() / 2)
            .map(|(seconds, kib)| (seconds / 60.0, kib as f64))
            .collect();
        let count = points.len() as f64;
        if count < 2.0 {
            return 0.0;
        }
        let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / count;
        let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / count;
        let covariance: f64 = points
            .iter()
            .map(|(x, y)| (x - mean_x) * (y - mean_y))
            .sum();
        let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
        if variance == 0.0 {
            0.0
        } else {
            covariance / variance
        }
    }
}

/// The CPU time a process has used (user and system, `/proc/<pid>/stat`), in
/// seconds; None when the process is gone. Linux counts it in ticks of 1/100 s
/// (USER_HZ).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's name, in parentheses: state is the 3rd field, utime the
    // 14th and stime the 15th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index - 3)?.parse::<u64>().ok();
    Some((ticks(14)? + ticks(15)?) as f64 / 100.0)
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn millis(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1_000.0)
}

/// Thousands with a comma, as the docs write them.
fn grouped(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// What the calendar did during the run, from the services' own records.
async fn calendar(system: &Isolated, today: Date) -> BTreeMap<String, i64> {
    let mut seen = BTreeMap::new();
    let mut intake = sqlx::PgConnection::connect(&system.database_url("intake"))
        .await
        .unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT CASE WHEN start_date > $1::date THEN 'upcoming' \
                     WHEN end_date < $1::date THEN 'ended' ELSE 'active' END, count(*) \
         FROM stays GROUP BY 1",
    )
    .bind(format_day(today))
    .fetch_all(&mut intake)
    .await
    .unwrap();
    seen.extend(
        rows.into_iter()
            .map(|(state, count)| (format!("intake: stays {state}"), count)),
    );
    let mut entitlement = sqlx::PgConnection::connect(&system.database_url("entitlement"))
        .await
        .unwrap();
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT change, count(*) FROM grant_audit GROUP BY change")
            .fetch_all(&mut entitlement)
            .await
            .unwrap();
    seen.extend(
        rows.into_iter()
            .map(|(change, count)| (format!("entitlement: grants {change}"), count)),
    );
    let mut cards = sqlx::PgConnection::connect(&system.database_url("cards"))
        .await
        .unwrap();
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM cards GROUP BY state")
            .fetch_all(&mut cards)
            .await
            .unwrap();
    seen.extend(
        rows.into_iter()
            .map(|(state, count)| (format!("cards: {state}"), count)),
    );
    for state in system.account_states() {
        *seen
            .entry(format!("directory: accounts {state}"))
            .or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_holds_a_steady_load_as_the_days_pass() {
    // Arrange
    let settings = Settings::from_env();
    let started_at = jiff::Timestamp::now();
    let mut system = tokio::task::block_in_place(Isolated::servers);
    system.rehearse(started_at, settings.days_per_minute);
    // A short grace, so that accounts also move on to expired while the soak runs;
    // the longest expiry (ten years), so that none is removed: each accepted learner
    // keeps an entry, which is what convergence counts.
    system.set("directory", "ACCOUNTS__GRACE_DAYS", "3");
    system.set("directory", "ACCOUNTS__EXPIRED_DAYS", "3650");
    tokio::task::block_in_place(|| {
        system.start_services();
    });
    let clock = Clock::rehearsal(DEFAULT_TIME_ZONE, started_at, settings.days_per_minute).unwrap();
    let first_day = clock.today();
    eprintln!(
        "soak: isolated system in {}; {:?} at {} registrations, {} amendments, {} Checks a second; \
         {} days a minute from {first_day}",
        system.root.display(),
        settings.duration,
        settings.registrations,
        settings.amendments,
        settings.checks,
        settings.days_per_minute,
    );
    let connect = |service: &str| {
        tonic::transport::Endpoint::from_shared(system.endpoint(service))
            .unwrap()
            .connect_lazy()
    };
    let clients = Clients {
        intake: v1::intake_service_client::IntakeServiceClient::new(connect("intake")),
        entitlement: v1::entitlement_service_client::EntitlementServiceClient::new(connect(
            "entitlement",
        )),
    };
    let pids: Vec<u32> = isolated::SERVICES
        .iter()
        .map(|service| system.pid(service))
        .collect();
    let shared: Shared = Arc::default();

    // Act
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + settings.duration;
    let registrations = {
        let (clients, shared, clock) = (clients.clone(), shared.clone(), clock.clone());
        tokio::spawn(drive(settings.registrations, start, end, move |n, due| {
            register(
                clients.clone(),
                shared.clone(),
                clock.clone(),
                n,
                start,
                due,
            )
        }))
    };
    let amendments = {
        let (clients, shared, clock) = (clients.clone(), shared.clone(), clock.clone());
        tokio::spawn(drive(settings.amendments, start, end, move |n, due| {
            amend(
                clients.clone(),
                shared.clone(),
                clock.clone(),
                n,
                start,
                due,
            )
        }))
    };
    let checks = {
        let (clients, shared) = (clients.clone(), shared.clone());
        tokio::spawn(drive(settings.checks, start, end, move |n, due| {
            check(clients.clone(), shared.clone(), n, start, due)
        }))
    };
    let mut memory = Memory::default();
    let mut sampling = tokio::time::interval_at(start.into(), settings.sample_every);
    loop {
        let due = sampling.tick().await.into_std();
        if due > end {
            break;
        }
        let kib: Vec<u64> = pids
            .iter()
            .map(|&pid| isolated::resident_kib(pid).unwrap_or(0))
            .collect();
        let seconds = due.duration_since(start).as_secs_f64();
        let (learners, calls, errors) = {
            let record = shared.lock().unwrap();
            (
                record.learners.len(),
                record.latencies.values().map(Vec::len).sum::<usize>(),
                record.errors.values().map(Vec::len).sum::<usize>(),
            )
        };
        eprintln!(
            "soak: {seconds:>6.0} s  day {}  RSS KiB {}  learners {learners}, calls {calls}, errors {errors}",
            clock.today(),
            isolated::SERVICES
                .iter()
                .zip(&kib)
                .map(|(service, kib)| format!("{service} {}", grouped(*kib)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        memory.samples.push((seconds, kib));
        memory.cpu.push(
            pids.iter()
                .map(|&pid| cpu_seconds(pid).unwrap_or(0.0))
                .collect(),
        );
        memory.learners.push(learners);
    }
    let unanswered =
        registrations.await.unwrap() + amendments.await.unwrap() + checks.await.unwrap();
    let last_day = clock.today();
    let expected = shared.lock().unwrap().accepted.clone();
    let converged = system.converge(&expected, Duration::from_secs(300)).await;
    let calendar = calendar(&system, clock.today()).await;

    // The report.
    let record = shared.lock().unwrap();
    let mut report = format!(
        "\nsoak: {:.0} s, {} days a minute ({first_day} to {last_day}); {} learners registered; \
         converged {converged:.1?} after the load stopped\n\nmemory (VmRSS, KiB; warmed up at {:.0} s):\n\
         | service | warmed up | end | max | end / warmed up | slope, second half (KiB/min) | growth a learner registered since warm-up (bytes) |\n|---|---|---|---|---|---|---|\n",
        settings.duration.as_secs_f64(),
        settings.days_per_minute,
        record.learners.len(),
        settings.warm_up.as_secs_f64(),
    );
    let mut too_much = Vec::new();
    let learners_since = record
        .learners
        .len()
        .saturating_sub(memory.learners_at(settings.warm_up))
        .max(1);
    for (index, service) in isolated::SERVICES.iter().enumerate() {
        let warm = memory.at(index, settings.warm_up);
        let last = memory.last(index);
        let max = memory.series(index).map(|(_, kib)| kib).max().unwrap_or(0);
        let _ = writeln!(
            report,
            "| {service} | {} | {} | {} | {:.2} | {:+.0} | {:.0} |",
            grouped(warm),
            grouped(last),
            grouped(max),
            last as f64 / warm.max(1) as f64,
            memory.slope(index),
            (last as f64 - warm as f64) * 1_024.0 / learners_since as f64,
        );
        if last > MEMORY_BOUND.limit(warm) {
            too_much.push(format!(
                "{service}: {} KiB at the end, {} once warmed up (bound {} KiB)",
                grouped(last),
                grouped(warm),
                grouped(MEMORY_BOUND.limit(warm))
            ));
        }
    }
    let _ = writeln!(
        report,
        "\nCPU (cores; average from the warm-up on, and the most between two samples):\n\
         | service | average | peak |\n|---|---|---|"
    );
    for (index, service) in isolated::SERVICES.iter().enumerate() {
        let (average, peak) = memory.cores(index, settings.warm_up);
        let _ = writeln!(report, "| {service} | {average:.3} | {peak:.3} |");
    }
    let _ = writeln!(
        report,
        "\nlatency (ms, from when each call was due), per window of {:.0} s:\n\
         | operation | window | calls | p50 | p99 | max | errors |\n|---|---|---|---|---|---|---|",
        settings.window.as_secs_f64()
    );
    for operation in Operation::ALL {
        let calls = record
            .latencies
            .get(&operation)
            .cloned()
            .unwrap_or_default();
        let windows =
            (settings.duration.as_secs_f64() / settings.window.as_secs_f64()).ceil() as u32;
        for window in 0..windows {
            let from = settings.window * window;
            let to = from + settings.window;
            let mut latencies: Vec<Duration> = calls
                .iter()
                .filter(|(due, _)| *due >= from && *due < to)
                .map(|(_, latency)| *latency)
                .collect();
            latencies.sort();
            let _ = writeln!(
                report,
                "| {} | {:.0}–{:.0} s | {} | {} | {} | {} | |",
                operation.name(),
                from.as_secs_f64(),
                to.as_secs_f64(),
                latencies.len(),
                millis(percentile(&latencies, 0.5)),
                millis(percentile(&latencies, 0.99)),
                millis(latencies.last().copied().unwrap_or_default()),
            );
        }
        let mut all: Vec<Duration> = calls.iter().map(|(_, latency)| *latency).collect();
        all.sort();
        let _ = writeln!(
            report,
            "| {} | all | {} | {} | {} | {} | {} |",
            operation.name(),
            all.len(),
            millis(percentile(&all, 0.5)),
            millis(percentile(&all, 0.99)),
            millis(all.last().copied().unwrap_or_default()),
            record.errors.get(&operation).map_or(0, Vec::len),
        );
    }
    let _ = writeln!(
        report,
        "\nChecks allowed {}, denied {}; amendment ticks with no learner free {}; unanswered {unanswered}\n\
         \nthe calendar ({} days):",
        record.allowed,
        record.denied,
        record.skipped,
        (last_day - first_day).whole_days()
    );
    for (what, count) in &calendar {
        let _ = writeln!(report, "  {what}: {count}");
    }
    eprintln!("{report}");

    // Assert
    let errors: Vec<String> = record
        .errors
        .iter()
        .flat_map(|(operation, errors)| {
            errors
                .iter()
                .take(5)
                .map(move |error| format!("{}: {error}", operation.name()))
        })
        .collect();
    assert!(
        errors.is_empty(),
        "errors (the first five of each kind):\n{}",
        errors.join("\n")
    );
    assert_eq!(unanswered, 0, "calls never answered");
    let panics = system.panics();
    assert!(panics.is_empty(), "panics:\n{}", panics.join("\n"));
    for operation in [
        Operation::Register,
        Operation::AmendPerson,
        Operation::Check,
    ] {
        assert!(
            record
                .latencies
                .get(&operation)
                .is_some_and(|calls| !calls.is_empty()),
            "no {} answered",
            operation.name()
        );
    }
    // The days passed for the services, not only for the soak's own clock.
    for what in [
        "entitlement: grants took effect",
        "entitlement: grants lapsed",
        "directory: accounts SupannActif",
        "directory: accounts SupannExpire",
    ] {
        assert!(
            calendar.get(what).is_some_and(|count| *count > 0),
            "no {what}"
        );
    }
    assert!(too_much.is_empty(), "memory grew:\n{}", too_much.join("\n"));
}
