//! Check throughput and latency against real PostgreSQL, NATS and slapd (not a test:
//! figures).
//!
//! `cargo bench -p hosted-entitlement --bench check` (after `eval "$(dev/deps env)"`)
//! seeds 100,000 learners into entitlement's database (grants computed under the
//! default policy) and the same learners into an LDAP subtree of slapd, each entry
//! with one `eduPersonEntitlement` URN per resource in force, then asks, in one run:
//! - entitlement's `Check` over gRPC, 64 concurrent clients (one connection each),
//!   random learners and resources: a first pass asking every learner once, then as
//!   fast as the answers come (the throughput), then 20,000 questions a second on
//!   schedule (the latency at that load, a late question counted from when it was
//!   due);
//! - slapd the same question, in the same two ways, 64 concurrent connections: a
//!   search for the learner's `eduPersonEntitlement` values by uid, then a look for
//!   the resource's URN;
//! - then a policy change over everyone (IFSI students lose grades): how long
//!   `SimulatePolicy` and `ActivatePolicy` take.
//!
//! The service runs as its own process (the `entitlement` binary), so that the CPU time
//! it spends per answer is read apart from the clients', and compared with slapd's.
//!
//! Sizes: `BENCH_LEARNERS` (100000), `BENCH_CLIENTS` (64), `BENCH_SECONDS` (10 per
//! measure), `BENCH_RATE` (20000 questions a second in all), `BENCH_CONNECTIONS` (as
//! many as clients; fewer shares each HTTP/2 connection between clients, as one
//! integrator's process does).
//! The LDAP entries are deleted at the end unless `BENCH_KEEP_LDAP=1`.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hosted_contracts::v1;
use hosted_entitlement::{
    Application, EntitlementConfig,
    config::PolicyConfig,
    domain::{
        grants::{self, StayFacts},
        policy,
    },
};
use hosted_platform::{auth::hash_token, clock::Clock};
use hosted_testkit::{TestCallers, TestDatabase, TestSubtree};
use ldap3::{LdapConnAsync, Scope, SearchEntry};
use sqlx::Connection;
use time::Duration as Days;
use uuid::Uuid;

const POPULATIONS: [&str; 5] = [
    "IFSI",
    "RECTORAT_C2I2E",
    "RECTORAT_PAF",
    "CO_ACCREDITED",
    "SHORT_COURSE_RECTORAT",
];
const ASKED: [&str; 6] = [
    "wifi",
    "library",
    "ent",
    "online-resources",
    "grades",
    "smart-card",
];
const URN: &str = "urn:mace:univ-example.fr:entitlement:";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn login(index: usize) -> String {
    format!("bench.learner{index:06}")
}

/// A small, fast, seeded generator: the same questions in every run.
struct Dice(u64);

impl Dice {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// Latencies in microseconds, sorted, and what they add up to.
struct Figures {
    calls: usize,
    allowed: usize,
    elapsed: Duration,
    micros: Vec<u32>,
}

impl Figures {
    fn percentile(&self, p: f64) -> f64 {
        let index = ((self.micros.len() as f64 * p).ceil() as usize).clamp(1, self.micros.len());
        f64::from(self.micros[index - 1]) / 1000.0
    }

    fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, what: &str) {
        println!(
            "{what:<40} {:>7.0} /s   p50 {:>6.2} ms   p99 {:>6.2} ms   p99.9 {:>6.2} ms   \
             ({} calls, {:.0}% allowed)",
            self.per_second(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.percentile(0.999),
            self.calls,
            100.0 * self.allowed as f64 / self.calls.max(1) as f64,
        );
    }
}

/// How the clients ask.
#[derive(Clone, Copy)]
enum Load {
    /// Every learner once, each client as fast as it is answered (fills the cache).
    EveryLearner,
    /// As fast as each client is answered, for that long: the throughput.
    Flat(Duration),
    /// `per_second` questions a second in all, spread over the clients and on
    /// schedule, for that long: the latency at that load. A question that leaves late
    /// because the one before was slow counts from when it was due (no coordinated
    /// omission).
    Paced { per_second: f64, lasting: Duration },
}

/// Runs one loop of `ask` per client under `load`, in one run.
async fn measure<F, Fut, C>(clients: Vec<C>, load: Load, learners: usize, ask: F) -> Figures
where
    C: Send + 'static,
    F: Fn(&mut C, String, &'static str) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let count = clients.len();
    let (deadline, per_client, interval) = match load {
        Load::EveryLearner => (None, Some(learners.div_ceil(count)), None),
        Load::Flat(lasting) => (Some(started + lasting), None, None),
        Load::Paced {
            per_second,
            lasting,
        } => (
            Some(started + lasting),
            None,
            Some(Duration::from_secs_f64(count as f64 / per_second)),
        ),
    };
    let mut tasks = Vec::new();
    for (index, mut client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1));
            let mut micros = Vec::new();
            let mut allowed = 0;
            let mut asked = 0;
            // Paced clients start evenly spread over one interval.
            let mut due = interval.map(|every| started + every * index as u32 / count as u32);
            loop {
                if per_client.is_some_and(|limit| asked >= limit)
                    || deadline.is_some_and(|deadline| Instant::now() >= deadline)
                {
                    break;
                }
                let learner = match per_client {
                    // The cache-filling pass asks every learner once.
                    Some(_) => login((asked * count + index) % learners),
                    None => login(dice.below(learners)),
                };
                let resource = ASKED[dice.below(ASKED.len())];
                let one = match due {
                    // Behind schedule: the wait counts.
                    Some(due) if Instant::now() >= due => due,
                    Some(due) => {
                        tokio::time::sleep_until(due.into()).await;
                        Instant::now()
                    }
                    None => Instant::now(),
                };
                if ask(&mut client, learner, resource).await {
                    allowed += 1;
                }
                micros.push(u32::try_from(one.elapsed().as_micros()).unwrap_or(u32::MAX));
                asked += 1;
                if let (Some(next), Some(every)) = (due.as_mut(), interval) {
                    *next += every;
                }
            }
            (micros, allowed)
        }));
    }
    let mut micros = Vec::new();
    let mut allowed = 0;
    for task in tasks {
        let (mine, yes) = task.await.unwrap();
        micros.extend(mine);
        allowed += yes;
    }
    let elapsed = started.elapsed();
    micros.sort_unstable();
    Figures {
        calls: micros.len(),
        allowed,
        elapsed,
        micros,
    }
}

/// What the default policy gives each bench learner (one stay from 10 days ago to 200
/// days ahead).
fn seed_stays(learners: usize, today: time::Date) -> Vec<(Uuid, StayFacts)> {
    (0..learners)
        .map(|index| {
            let learner = Uuid::now_v7();
            (
                learner,
                StayFacts {
                    stay_id: Uuid::now_v7().to_string(),
                    population: POPULATIONS[index % POPULATIONS.len()].to_owned(),
                    start_date: today - Days::days(10),
                    end_date: today + Days::days(200),
                    cancelled: false,
                    paid: false,
                    agreement_options: Vec::new(),
                    sponsor_unit: "BENCH".to_owned(),
                    requested: Vec::new(),
                    lock: None,
                    early_end: None,
                },
            )
        })
        .collect()
}

/// Writes the learners, their stays and their grants straight into entitlement's
/// tables, as the consumer would have.
async fn seed_database(
    url: &str,
    policy: &policy::Policy,
    stays: &[(Uuid, StayFacts)],
    today: time::Date,
) -> Vec<Vec<String>> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let mut in_force_all = Vec::with_capacity(stays.len());
    for (chunk_index, chunk) in stays.chunks(10_000).enumerate() {
        let mut tx = conn.begin().await.unwrap();
        let ids: Vec<Uuid> = chunk.iter().map(|(id, _)| *id).collect();
        let logins: Vec<String> = (0..chunk.len())
            .map(|i| login(chunk_index * 10_000 + i))
            .collect();
        let mut in_force_text = Vec::new();
        let (mut g_learner, mut g_resource, mut g_stay, mut g_from, mut g_until, mut g_rule) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (learner, stay) in chunk {
            let given = grants::grants(policy, std::slice::from_ref(stay));
            let in_force = grants::in_force(&given, today);
            in_force_text.push(format!("{{{}}}", in_force.join(",")));
            in_force_all.push(in_force);
            for grant in given {
                g_learner.push(*learner);
                g_resource.push(grant.resource);
                g_stay.push(Uuid::parse_str(&grant.stay_id).unwrap());
                g_from.push(grant.valid_from);
                g_until.push(grant.valid_until);
                g_rule.push(grant.rule);
            }
        }
        sqlx::query(
            "INSERT INTO learners (learner_id, login, version, grants_version, in_force)
             SELECT id, l, 1, 1, f::text[] FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(id, l, f)",
        )
        .bind(&ids)
        .bind(&logins)
        .bind(&in_force_text)
        .execute(&mut *tx)
        .await
        .unwrap();
        let stay_ids: Vec<Uuid> = chunk
            .iter()
            .map(|(_, stay)| Uuid::parse_str(&stay.stay_id).unwrap())
            .collect();
        let populations: Vec<&str> = chunk.iter().map(|(_, s)| s.population.as_str()).collect();
        let starts: Vec<time::Date> = chunk.iter().map(|(_, s)| s.start_date).collect();
        let ends: Vec<time::Date> = chunk.iter().map(|(_, s)| s.end_date).collect();
        sqlx::query(
            "INSERT INTO stays (stay_id, learner_id, population, start_date, end_date, cancelled, paid)
             SELECT s, l, p, b, e, false, false
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::date[], $5::date[]) AS u(s, l, p, b, e)",
        )
        .bind(&stay_ids)
        .bind(&ids)
        .bind(&populations)
        .bind(&starts)
        .bind(&ends)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO grants (learner_id, resource, stay_id, valid_from, valid_until, rule, policy_version)
             SELECT l, r, s, f, u, ru, $7
             FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::date[], $5::date[], $6::text[])
                  AS g(l, r, s, f, u, ru)",
        )
        .bind(&g_learner)
        .bind(&g_resource)
        .bind(&g_stay)
        .bind(&g_from)
        .bind(&g_until)
        .bind(&g_rule)
        .bind(&policy.version)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    in_force_all
}

/// The same learners as LDAP entries with their entitlements, 8 connections adding.
async fn seed_ldap(subtree: &TestSubtree, in_force: &[Vec<String>]) -> Duration {
    let started = Instant::now();
    let in_force = Arc::new(in_force.to_vec());
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let server = subtree.server.clone();
        let base = subtree.base_dn.clone();
        let in_force = in_force.clone();
        tasks.push(tokio::spawn(async move {
            let mut ldap = server.connect().await;
            for index in (worker..in_force.len()).step_by(8) {
                let uid = login(index);
                let entitlements: std::collections::HashSet<String> = in_force[index]
                    .iter()
                    .map(|resource| format!("{URN}{resource}"))
                    .collect();
                let mut attributes = vec![
                    (
                        "objectClass".to_owned(),
                        ["inetOrgPerson", "eduPerson"]
                            .into_iter()
                            .map(str::to_owned)
                            .collect(),
                    ),
                    ("uid".to_owned(), [uid.clone()].into()),
                    ("cn".to_owned(), [format!("Learner {index}")].into()),
                    ("sn".to_owned(), [format!("Learner{index}")].into()),
                ];
                if !entitlements.is_empty() {
                    attributes.push(("eduPersonEntitlement".to_owned(), entitlements));
                }
                ldap.add(&format!("uid={uid},{base}"), attributes)
                    .await
                    .unwrap()
                    .success()
                    .unwrap();
            }
            let _ = ldap.unbind().await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

async fn delete_ldap(subtree: &TestSubtree, learners: usize) {
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let server = subtree.server.clone();
        let base = subtree.base_dn.clone();
        tasks.push(tokio::spawn(async move {
            let mut ldap = server.connect().await;
            for index in (worker..learners).step_by(8) {
                let _ = ldap.delete(&format!("uid={},{base}", login(index))).await;
            }
            let _ = ldap.unbind().await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut ldap = subtree.server.connect().await;
    let _ = ldap.delete(&subtree.base_dn).await;
}

const TOKEN: &str = "bench-token";

/// The service's process, stopped however the bench ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The CPU time a process has used (user and system), from /proc.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|index| fields.get(*index)?.parse::<u64>().ok())
        .sum();
    let per_second = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(100);
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// The slapd of `dev/deps`, if it can be found.
fn slapd_pid() -> Option<u32> {
    let state = std::env::var("HOSTED_STATE_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.local/state/hosted-learners",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    std::fs::read_to_string(format!("{state}/slapd/slapd.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn wait_until_serving(address: std::net::SocketAddr) {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    for _ in 0..600 {
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
        {
            let status = HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await
                .map(|answer| answer.into_inner().status());
            if status.is_ok_and(|status| status == ServingStatus::Serving) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("entitlement never became SERVING");
}

#[tokio::main]
async fn main() {
    let learners = env_or("BENCH_LEARNERS", 100_000);
    let clients = env_or("BENCH_CLIENTS", 64);
    let lasting = Duration::from_secs(env_or("BENCH_SECONDS", 10) as u64);
    let rate = env_or("BENCH_RATE", 20_000);
    let at_rate = Load::Paced {
        per_second: rate as f64,
        lasting,
    };
    let connections = env_or("BENCH_CONNECTIONS", clients).max(1);
    let policy_file =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policy/default.toml");
    let policy = policy::load(
        "default.toml",
        &std::fs::read_to_string(&policy_file).unwrap(),
    )
    .unwrap();
    let today = Clock::default().today();

    // Entitlement's database, migrated (by building the service in this process,
    // then dropping it) and seeded.
    let database = TestDatabase::new(hosted_testkit::DatabaseOwner::Entitlement).await;
    let namespace = hosted_testkit::namespace().await;
    let callers = TestCallers::new();
    let common = hosted_testkit::common_config(
        &database,
        hosted_testkit::nats_config(hosted_contracts::subjects::Service::Entitlement, &namespace),
        &callers,
    );
    drop(
        Application::build(&EntitlementConfig {
            common,
            policy: PolicyConfig {
                file: policy_file.clone(),
            },
            check: Default::default(),
        })
        .await
        .unwrap(),
    );
    let stays = seed_stays(learners, today);
    let seeding = Instant::now();
    let in_force = seed_database(&database.url, &policy, &stays, today).await;
    println!(
        "seeded {learners} learners into PostgreSQL in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    // Intake's stream, which entitlement's consumer attaches to before it is ready.
    hosted_platform::nats::ensure_stream(
        &hosted_testkit::jetstream().await,
        hosted_platform::nats::stream_config(
            &namespace,
            hosted_contracts::subjects::Service::Intake,
            &hosted_testkit::nats_admin_config(&namespace),
        ),
    )
    .await
    .unwrap();

    // The service as it runs in production: its own process (whose CPU time is read
    // from /proc), warming its cache from the database at start.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_entitlement"))
        .env("ENTITLEMENT__GRPC__LISTEN", address.to_string())
        .env("ENTITLEMENT__DATABASE__URL", &database.url)
        .env("ENTITLEMENT__DATABASE__MAX_CONNECTIONS", "16")
        .envs(hosted_testkit::nats_env(
            hosted_contracts::subjects::Service::Entitlement,
            &namespace,
        ))
        .env("ENTITLEMENT__POLICY__FILE", &policy_file)
        .env(
            "ENTITLEMENT__TELEMETRY__FILTER",
            "warn,hosted_entitlement::cache=info",
        )
        .env(
            "ENTITLEMENT__AUTH__CALLERS__BENCH__TOKEN_SHA256",
            hash_token(TOKEN),
        )
        .env(
            "ENTITLEMENT__AUTH__CALLERS__BENCH__ROLES",
            "integrator,dosi",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The service says when its cache is warm; the asks wait for it.
    let (warmed_tx, warmed) = std::sync::mpsc::channel::<String>();
    let output = server.stdout.take().unwrap();
    let server = Server(server);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(output)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("cache warmed") {
                let _ = warmed_tx.send(line);
            }
        }
    });
    wait_until_serving(address).await;
    let warm_line =
        tokio::task::spawn_blocking(move || warmed.recv_timeout(Duration::from_secs(120)))
            .await
            .unwrap()
            .unwrap_or_default();
    println!("entitlement started: {}", warm_line.trim());
    let server_pid = server.0.id();

    let subtree = TestSubtree::new().await;
    let took = seed_ldap(&subtree, &in_force).await;
    println!(
        "seeded {learners} entries into slapd in {:.1} s",
        took.as_secs_f64()
    );

    let token = TOKEN.to_owned();
    let mut channels = Vec::new();
    for _ in 0..connections.min(clients) {
        channels.push(hosted_testkit::channel(address).await);
    }
    let grpc_clients: Vec<_> = (0..clients)
        .map(|index| {
            (
                v1::entitlement_service_client::EntitlementServiceClient::new(
                    channels[index % channels.len()].clone(),
                ),
                token.clone(),
            )
        })
        .collect();
    let check = |(client, token): &mut (
        v1::entitlement_service_client::EntitlementServiceClient<tonic::transport::Channel>,
        String,
    ),
                 login: String,
                 resource: &'static str| {
        let mut client = client.clone();
        let token = token.clone();
        async move {
            client
                .check(hosted_testkit::authorized(
                    v1::CheckRequest {
                        learner: Some(v1::check_request::Learner::Login(login)),
                        resource: resource.to_owned(),
                        at: None,
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
                .allowed
        }
    };
    println!(
        "\n{clients} concurrent clients over {} gRPC connections, {learners} learners:",
        channels.len()
    );
    measure(grpc_clients.clone(), Load::EveryLearner, learners, check)
        .await
        .print("Check, first pass: every learner once");
    let before = cpu(server_pid);
    let steady = measure(grpc_clients.clone(), Load::Flat(lasting), learners, check).await;
    let server_cpu = cpu(server_pid) - before;
    steady.print("Check, as fast as answered");
    let paced = measure(grpc_clients, at_rate, learners, check).await;
    paced.print(&format!("Check, {rate} asked per second"));

    let mut ldap_clients = Vec::new();
    for _ in 0..clients {
        let (connection, mut ldap) = LdapConnAsync::new(&subtree.server.url).await.unwrap();
        ldap3::drive!(connection);
        ldap.simple_bind(&subtree.server.bind_dn, &subtree.server.bind_password)
            .await
            .unwrap();
        ldap_clients.push((ldap, subtree.base_dn.clone()));
    }
    let search =
        |(ldap, base): &mut (ldap3::Ldap, String), login: String, resource: &'static str| {
            let mut ldap = ldap.clone();
            let base = base.clone();
            async move {
                let (entries, _) = ldap
                    .search(
                        &base,
                        Scope::OneLevel,
                        &format!("(uid={login})"),
                        vec!["eduPersonEntitlement"],
                    )
                    .await
                    .unwrap()
                    .success()
                    .unwrap();
                let wanted = format!("{URN}{resource}");
                entries
                    .into_iter()
                    .map(SearchEntry::construct)
                    .any(|entry| {
                        entry
                            .attrs
                            .get("eduPersonEntitlement")
                            .is_some_and(|values| values.contains(&wanted))
                    })
            }
        };
    let slapd_pid = slapd_pid();
    let before = slapd_pid.map(cpu);
    let searches = measure(ldap_clients.clone(), Load::Flat(lasting), learners, search).await;
    let slapd_cpu = slapd_pid.zip(before).map(|(pid, before)| cpu(pid) - before);
    searches.print("slapd search, as fast as answered");
    let searches_paced = measure(ldap_clients, at_rate, learners, search).await;
    searches_paced.print(&format!("slapd search, {rate} asked per second"));
    println!(
        "\nserver CPU per answer: entitlement {:.0} µs{}",
        server_cpu.as_secs_f64() * 1e6 / steady.calls as f64,
        slapd_cpu.map_or(String::new(), |used| format!(
            ", slapd {:.0} µs",
            used.as_secs_f64() * 1e6 / searches.calls as f64
        ))
    );
    println!(
        "Check against slapd: {:.1}× the throughput, p99 {:.1}× lower as fast as answered, \
         {:.1}× lower at {rate}/s",
        steady.per_second() / searches.per_second(),
        searches.percentile(0.99) / steady.percentile(0.99),
        searches_paced.percentile(0.99) / paced.percentile(0.99),
    );
    let verdict = |holds: bool| if holds { "holds" } else { "MISSED" };
    println!(
        "target: at least {rate}/s {}; p99 at most 5 ms at {rate}/s {}; faster than LDAP {}",
        verdict(steady.per_second() >= rate as f64),
        verdict(paced.percentile(0.99) <= 5.0 && paced.per_second() >= 0.98 * rate as f64),
        verdict(
            steady.per_second() > searches.per_second()
                && steady.percentile(0.99) < searches.percentile(0.99)
        ),
    );

    // A policy change over everyone: IFSI students (a fifth) lose grades.
    let candidate = std::fs::read_to_string(&policy_file)
        .unwrap()
        .replace(r#"version = "2026.1""#, r#"version = "2026.2""#)
        .replace(
            "e-purse = \"never\"\ngrades = \"always\"",
            "e-purse = \"never\"\ngrades = \"never\"",
        );
    let mut admin = v1::entitlement_service_client::EntitlementServiceClient::new(
        hosted_testkit::channel(address).await,
    )
    .max_decoding_message_size(64 << 20);
    let dosi = TOKEN.to_owned();
    let started = Instant::now();
    let simulation = admin
        .simulate_policy(hosted_testkit::authorized(
            v1::SimulatePolicyRequest {
                policy: candidate.clone(),
            },
            &dosi,
        ))
        .await
        .unwrap()
        .into_inner();
    println!(
        "\nSimulatePolicy over {} learners: {:.1} s ({} would change)",
        simulation.learners_examined,
        started.elapsed().as_secs_f64(),
        simulation.learners_changed
    );
    let started = Instant::now();
    let activation = admin
        .activate_policy(hosted_testkit::authorized(
            v1::ActivatePolicyRequest {
                policy: candidate,
                reason: "benchmark".to_owned(),
                expected_active_version: simulation.active_version,
            },
            &dosi,
        ))
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    println!(
        "ActivatePolicy: {:.1} s, {} learners changed ({:.0} learners/s, with their events)",
        took.as_secs_f64(),
        activation.learners_changed,
        activation.learners_changed as f64 / took.as_secs_f64()
    );

    drop(server);
    if std::env::var("BENCH_KEEP_LDAP").as_deref() != Ok("1") {
        let cleaning = Instant::now();
        delete_ldap(&subtree, learners).await;
        println!(
            "\nremoved the LDAP entries in {:.1} s",
            cleaning.elapsed().as_secs_f64()
        );
    }
}
