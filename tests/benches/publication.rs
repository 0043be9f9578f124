//! End-to-end publication against `ldapadd` (not a test: figures).
//!
//! `cargo bench -p hosted-e2e --bench publication` (after `eval "$(dev/deps env)"`)
//! runs intake, entitlement and directory in this process, each with a database of
//! its own, then in one run:
//! - imports a cohort of 10,000 learners into intake (ImportStays, 1,000 rows a call,
//!   as `hlctl import stays` sends them), and times it until every entry is in LDAP
//!   with its grants and population data, written once;
//! - writes the same 10,000 final entries, read back from LDAP, into a fresh subtree
//!   of the same slapd with `ldapadd` (one add at a time), and times that;
//! - prints the ratio, against the target of 1.25.
//!
//! Size: `BENCH_LEARNERS` (10000). The subtrees are deleted at the end.
//!
//! The slapd is one with production's durability (a disk write at every commit):
//! the bench starts it with `dev/deps` (`HOSTED_SLAPD_SYNC=1`), on
//! `BENCH_SLAPD_PORT` (3390), its state beside the tests' slapd's. With
//! `BENCH_SLAPD=tests` it uses the tests' slapd instead (`dbnosync`: fast, not
//! crash-safe).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    io::Write,
    time::{Duration, Instant},
};

use hosted_contracts::v1;
use hosted_e2e::{TestSystem, cohort, today_plus};
use hosted_testkit::{LdapServer, TestSubtree};
use ldap3::{Scope, SearchEntry};

const POPULATIONS: [&str; 5] = [
    "IFSI",
    "RECTORAT_C2I2E",
    "SHORT_COURSE_RECTORAT",
    "VISITING_DOCTORAL",
    "RECTORAT_PAF",
];

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn rows(learners: usize) -> Vec<v1::ImportRow> {
    cohort(learners, "Bénard", "Anaïs", 1950, |index, request| {
        let stay = request.stay.as_mut().unwrap();
        stay.population = POPULATIONS[index % POPULATIONS.len()].to_owned();
        stay.start_date = today_plus(-3);
    })
}

/// Every entry directly under `base`, with its user attributes.
async fn entries(subtree: &TestSubtree) -> Vec<SearchEntry> {
    let mut ldap = subtree.server.connect().await;
    let (entries, _) = ldap
        .search(
            &subtree.base_dn,
            Scope::OneLevel,
            "(objectClass=*)",
            vec!["*"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let _ = ldap.unbind().await;
    entries.into_iter().map(SearchEntry::construct).collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One `name: value` line of LDIF, base64 when the value is not safe as it is.
fn ldif_line(out: &mut String, name: &str, value: &str) {
    let safe = value.bytes().all(|byte| (0x20..0x7f).contains(&byte))
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ');
    if safe {
        out.push_str(&format!("{name}: {value}\n"));
    } else {
        out.push_str(&format!("{name}:: {}\n", base64(value.as_bytes())));
    }
}

/// The entries as LDIF, moved under `base`.
fn ldif(entries: &[SearchEntry], from: &str, to: &str) -> String {
    let mut out = String::new();
    for entry in entries {
        let dn = format!("{}{to}", &entry.dn[..entry.dn.len() - from.len()]);
        ldif_line(&mut out, "dn", &dn);
        let attributes: BTreeMap<&String, &Vec<String>> = entry.attrs.iter().collect();
        for (name, values) in attributes {
            for value in values {
                ldif_line(&mut out, name, value);
            }
        }
        out.push('\n');
    }
    out
}

async fn delete_all(subtree: &TestSubtree) {
    let dns: Vec<String> = entries(subtree).await.into_iter().map(|e| e.dn).collect();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let server = subtree.server.clone();
        let mine: Vec<String> = dns.iter().skip(worker).step_by(8).cloned().collect();
        tasks.push(tokio::spawn(async move {
            let mut ldap = server.connect().await;
            for dn in mine {
                let _ = ldap.delete(&dn).await;
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

/// The slapd to measure against: production's durability, started by `dev/deps`,
/// unless `BENCH_SLAPD=tests`.
fn slapd() -> (LdapServer, &'static str) {
    let tests = LdapServer::from_env();
    if std::env::var("BENCH_SLAPD").as_deref() == Ok("tests") {
        return (tests, "the tests' slapd (dbnosync)");
    }
    let port = env_or("BENCH_SLAPD_PORT", 3390);
    let state = std::env::var("HOSTED_STATE_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.local/state/hosted-learners",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let deps = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dev/deps");
    let started = std::process::Command::new(deps)
        .arg("start")
        .env("HOSTED_STATE_DIR", format!("{state}/durable"))
        .env("HOSTED_LDAP_PORT", port.to_string())
        .env("HOSTED_SLAPD_SYNC", "1")
        .status()
        .expect("dev/deps");
    assert!(
        started.success(),
        "dev/deps could not start the durable slapd"
    );
    (
        LdapServer::local(u16::try_from(port).unwrap(), &format!("{state}/durable")),
        "a slapd with production's durability",
    )
}

#[tokio::main]
async fn main() {
    let learners = env_or("BENCH_LEARNERS", 10_000);
    let (server, which) = tokio::task::spawn_blocking(slapd).await.unwrap();
    println!("slapd: {which}, {}", server.url);
    let mut system = TestSystem::prepare_on(None, TestSubtree::on(server.clone()).await).await;
    system.await_grants = Duration::from_secs(120);
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_directory().await;
    let rows = rows(learners);

    // The pipeline: import → intake → entitlement → directory → LDAP.
    let started = Instant::now();
    for chunk in rows.chunks(1000) {
        let results = system.import(chunk.to_vec()).await;
        assert!(
            results
                .iter()
                .all(|result| result.outcome() == v1::ImportOutcome::Created),
            "every row created"
        );
    }
    let imported = started.elapsed();
    // When each stage was through: entitlement's grants events all published,
    // directory's projection complete, every entry written.
    let jetstream = hosted_testkit::jetstream().await;
    let grants_stream = system
        .namespace
        .stream(hosted_contracts::subjects::Service::Entitlement);
    let mut conn = system.directory_database.connect().await;
    let (mut granted, mut projected) = (None, None);
    loop {
        if granted.is_none() {
            let mut stream = jetstream.get_stream(&grants_stream).await.unwrap();
            if stream.info().await.unwrap().state.messages >= learners as u64 {
                granted = Some(started.elapsed());
            }
        }
        let (accounts, published): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE published_revision = revision) FROM accounts",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if projected.is_none() && accounts == learners as i64 {
            projected = Some(started.elapsed());
        }
        if published == learners as i64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "publication stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pipeline = started.elapsed();
    let at = |moment: Option<Duration>| moment.map_or(f64::NAN, |moment| moment.as_secs_f64());
    println!(
        "stages done after: import calls {:.2} s, entitlement's grants events {:.2} s, \
         directory's projection {:.2} s, every entry written {:.2} s",
        imported.as_secs_f64(),
        at(granted),
        at(projected),
        pipeline.as_secs_f64()
    );
    let writes: i64 = sqlx::query_scalar("SELECT COALESCE(sum(writes), 0)::int8 FROM ldap_writes")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let published = entries(&system.subtree).await;
    let with_grants = published
        .iter()
        .filter(|entry| entry.attrs.contains_key("eduPersonEntitlement"))
        .count();
    let source = system.subtree.clone();
    system.stop().await;
    println!(
        "{learners} learners, cohort import → entries in LDAP: {:.2} s \
         (import calls {:.2} s; {} LDAP writes; {with_grants} entries with their grants)",
        pipeline.as_secs_f64(),
        imported.as_secs_f64(),
        writes,
    );

    // The same final entries, by ldapadd, into the same slapd.
    let target = TestSubtree::on(server).await;
    let file = std::env::temp_dir().join(format!("hosted-bench-{}.ldif", uuid::Uuid::now_v7()));
    std::fs::File::create(&file)
        .unwrap()
        .write_all(ldif(&published, &source.base_dn, &target.base_dn).as_bytes())
        .unwrap();
    let server = target.server.clone();
    let started = Instant::now();
    let status = std::process::Command::new("ldapadd")
        .args(["-x", "-H", &server.url, "-D", &server.bind_dn, "-w"])
        .arg(&server.bind_password)
        .arg("-f")
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("ldapadd (ldap-utils; dev/deps installs it)");
    let ldapadd = started.elapsed();
    assert!(status.success(), "ldapadd failed");
    let _ = std::fs::remove_file(&file);
    println!(
        "ldapadd of the same {} entries (one add at a time): {:.2} s",
        published.len(),
        ldapadd.as_secs_f64()
    );
    let ratio = pipeline.as_secs_f64() / ldapadd.as_secs_f64();
    println!(
        "pipeline / ldapadd: {ratio:.2} (target: at most 1.25, {})",
        if ratio <= 1.25 { "holds" } else { "MISSED" }
    );

    delete_all(&source).await;
    delete_all(&target).await;
}
