//! No personal data in logs or traces (issue 14, point 5): the end-to-end suite runs
//! again, as a child process, with every crate logging at debug level to JSON lines
//! (each span's fields included, at its opening and closing); then every name, birth
//! date, e-mail, INE and phone of the persons that suite registered is looked for in
//! every line.
//!
//! The suite's binary is the one cargo built beside this one (`cargo test` builds
//! every test target before it runs any): `cargo test -p hosted-e2e --test e2e
//! --test privacy` when run alone.
#![allow(clippy::unwrap_used, clippy::print_stdout, unreachable_pub)]

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Instant, SystemTime},
};

use aho_corasick::AhoCorasick;
use hosted_e2e::LOG_DIR_ENV;
use hosted_testkit::{DatabaseOwner, database_url_as, server_database_url};
use sqlx::{Connection as _, PgConnection, Row as _};

/// Every crate at debug level, except the body of JetStream API requests and replies:
/// async-nats writes them whole at debug, and the reply to a read of one message by
/// its sequence (`STREAM.MSG.GET`) holds the message, base64-encoded. No service reads
/// a message that way, only this suite's harness does (to show what a stream holds);
/// the same directive keeps it out of a service's debug logs (docs/privacy.md).
const LOG_FILTER: &str = "debug,async_nats::jetstream::context=info";

/// The end-to-end suite registers more persons than this; fewer would mean that the
/// databases were not found, and the scan proves little.
const MIN_PERSONS: usize = 50;

/// Shorter parts of a name (`Li`, `Ba`) are found inside ordinary words and ids;
/// the whole name is still looked for.
const MIN_NAME_PART: usize = 3;

/// Birth dates of the suite's persons that the suite also writes as another date,
/// in its own SQL (not the services'): found, they say nothing about a person.
const OTHER_DATES: [(&str, &str); 1] = [(
    "2000-01-01",
    "tests/tests/e2e/startup.rs makes a learner due since that day, in SQL of its own",
)];

/// The system's own texts: words written there (population codes, unit and resource
/// labels, the schema's comments, which sqlx logs with the migrations) are the
/// system's vocabulary, not a person's name, even when a test names a person after
/// one (`Ifsi`, `Doctoral`, `Capes`).
const VOCABULARY: [&str; 3] = ["services", "crates", "policy"];

#[tokio::test]
async fn the_end_to_end_suite_logs_no_personal_data_at_debug_level() {
    // Arrange
    let suite = end_to_end_binary();
    let logs = LogDir::new();
    let databases_before = intake_databases().await;

    // Act
    let started = Instant::now();
    let suite_output = logs.path.join("suite-output.txt");
    let output = fs::File::create(&suite_output).unwrap();
    let status = Command::new(&suite)
        .env(LOG_DIR_ENV, &logs.path)
        .env("RUST_LOG", LOG_FILTER)
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .status()
        .unwrap_or_else(|error| panic!("{} does not run: {error}", suite.display()));
    let took = started.elapsed();
    println!(
        "the end-to-end suite ran in {:.0?} at debug level ({status})",
        took
    );

    let databases: Vec<String> = intake_databases()
        .await
        .difference(&databases_before)
        .cloned()
        .collect();
    let persons = registered_persons(&databases).await;
    let vocabulary = vocabulary(&hosted_e2e::isolated::repository());
    let scan = scan(&logs.path, &persons, &vocabulary);
    println!(
        "{} persons in {} databases, {} needles (left out, as words of the system or other \
         dates: {:?}); {} log lines ({} at debug, {} span openings) in {} files",
        persons.len(),
        databases.len(),
        scan.needles,
        scan.left_out,
        scan.lines,
        scan.debug_lines,
        scan.span_openings,
        scan.files
    );

    // The suite's own failures are reported by its own target, which `cargo test` runs
    // too: failing here as well would fail two targets for one flaky test. What the
    // failed tests logged before they failed is looked in all the same, and the
    // checks below refuse a run too short to prove anything.
    if !status.success() {
        println!(
            "the end-to-end suite failed ({status}); its failures:\n{}",
            failures(&suite_output)
        );
    }

    // Assert
    assert!(
        scan.hits.is_empty(),
        "personal data in the logs at debug level: {} lines, {} matches ({}); logs kept in {}:\n{}",
        scan.hits
            .iter()
            .map(|hit| (&hit.file, hit.line))
            .collect::<BTreeSet<_>>()
            .len(),
        scan.hits.len(),
        scan.kinds(),
        logs.keep(),
        scan.report(20)
    );
    assert!(
        scan.lines > 0 && scan.debug_lines > 0 && scan.span_openings > 0,
        "nothing to look in: {} lines, {} at debug, {} span openings",
        scan.lines,
        scan.debug_lines,
        scan.span_openings
    );
    assert!(
        persons.len() >= MIN_PERSONS,
        "only {} persons found in the suite's intake databases ({databases:?}): fewer than \
         the suite registers, so the scan looked for too little",
        persons.len()
    );
}

/// The end-to-end suite's test binary, `target/<profile>/deps/e2e-<hash>`: the newest,
/// refused when one of its sources changed since it was built.
fn end_to_end_binary() -> PathBuf {
    let own = std::env::current_exe().unwrap();
    let deps = own.parent().unwrap();
    let newest = fs::read_dir(deps)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.strip_prefix("e2e-")
                .is_some_and(|hash| hash.chars().all(|c| c.is_ascii_hexdigit()))
                && path.is_file()
        })
        .filter_map(|path| Some((modified(&path)?, path)))
        .max();
    let Some((built, binary)) = newest else {
        panic!(
            "no end-to-end test binary (e2e-<hash>) in {}: build it first with \
             `cargo test -p hosted-e2e --test e2e --no-run` (`cargo test --workspace` builds \
             every test target before it runs any)",
            deps.display()
        );
    };
    let root = hosted_e2e::isolated::repository();
    if let Some(source) = sources(&root, &binary)
        .into_iter()
        .find(|source| modified(source).is_some_and(|changed| changed > built))
    {
        panic!(
            "{} is older than {}: build it again with `cargo test -p hosted-e2e --test e2e \
             --no-run`",
            binary.display(),
            source.display()
        );
    }
    binary
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|meta| meta.modified()).ok()
}

/// What a change of makes cargo build `binary` again: its own sources, as its
/// dep-info file (`<binary>.d`) lists them, and the sources of the workspace's
/// libraries (not their `main.rs`, which only their binaries are built from).
fn sources(root: &Path, binary: &Path) -> Vec<PathBuf> {
    let dep_info = fs::read_to_string(binary.with_extension("d")).unwrap_or_default();
    let mut sources: Vec<PathBuf> = dep_info
        .lines()
        .filter_map(|line| line.split_once(": "))
        .flat_map(|(_, files)| files.split_whitespace())
        .map(|file| root.join(file))
        .collect();
    let mut pending: Vec<PathBuf> = ["crates", "services", "tools"]
        .iter()
        .flat_map(|group| fs::read_dir(root.join(group)).into_iter().flatten())
        .filter_map(Result::ok)
        .map(|member| member.path().join("src"))
        .chain([root.join("tests/src")])
        .collect();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let is_src = dir.ends_with("src");
        for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
            let name = path.file_name().unwrap_or_default();
            if path.is_dir() {
                if !(is_src && name == "bin") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|extension| extension == "rs")
                && !(is_src && name == "main.rs")
            {
                sources.push(path);
            }
        }
    }
    sources
}

/// A directory of this test's own for the suite's logs, removed when the test passes.
struct LogDir {
    path: PathBuf,
    keep: std::cell::Cell<bool>,
}

impl LogDir {
    fn new() -> Self {
        let unique = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let path = std::env::temp_dir().join(format!("hl-privacy-{}-{unique}", std::process::id()));
        fs::create_dir_all(&path).unwrap();
        Self {
            path,
            keep: std::cell::Cell::new(false),
        }
    }

    /// Keeps the logs for a post-mortem; returns their path.
    fn keep(&self) -> String {
        self.keep.set(true);
        self.path.display().to_string()
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if !self.keep.get() && !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// The failures section of a test binary's output (from its first `failures:` line,
/// 80 lines at most): which tests failed and why.
fn failures(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines
        .iter()
        .position(|line| *line == "failures:")
        .unwrap_or(lines.len().saturating_sub(20));
    lines[from..]
        .iter()
        .take(80)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

/// The test databases of intake that exist now: `hl_test_*`, owned by intake's role.
/// Those that appear while the suite runs are its own, and those of any other test
/// run on the same server at the time: persons looked for in vain, harmless.
async fn intake_databases() -> BTreeSet<String> {
    let mut admin = PgConnection::connect(&server_database_url())
        .await
        .unwrap_or_else(|error| panic!("PostgreSQL ({error}); run dev/deps"));
    let names = sqlx::query_scalar::<_, String>(
        "SELECT d.datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
         WHERE d.datname LIKE 'hl\\_test\\_%' AND r.rolname = $1",
    )
    .bind(DatabaseOwner::Intake.role())
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
    names.into_iter().collect()
}

/// What of a person is looked for, and what kind of data it is.
#[derive(Debug)]
struct Needle {
    kind: &'static str,
    text: String,
}

/// The identity of one person, as intake stores it.
#[derive(Debug)]
struct Person {
    needles: Vec<Needle>,
}

/// Every person of `databases` (those without a `persons` table, whose intake never
/// started, have none). Erased persons have no identity left, and add nothing.
async fn registered_persons(databases: &[String]) -> Vec<Person> {
    let role = DatabaseOwner::Intake;
    let mut persons = Vec::new();
    for database in databases {
        let url = database_url_as(
            &server_database_url(),
            role.role(),
            &role.password(),
            database,
        );
        // A database dropped since it was listed (swept by another test process).
        let Ok(mut connection) = PgConnection::connect(&url).await else {
            continue;
        };
        let has_persons: bool =
            sqlx::query_scalar("SELECT to_regclass('public.persons') IS NOT NULL")
                .fetch_one(&mut connection)
                .await
                .unwrap();
        if !has_persons {
            continue;
        }
        let rows = sqlx::query(
            "SELECT family_name, birth_name, given_names, birth_date, email, ine, phone \
             FROM persons WHERE erased_at IS NULL",
        )
        .fetch_all(&mut connection)
        .await
        .unwrap();
        for row in rows {
            let mut needles = Vec::new();
            for (column, kind) in [
                ("family_name", "family name"),
                ("birth_name", "birth name"),
                ("given_names", "given names"),
            ] {
                if let Some(name) = row.get::<Option<String>, _>(column) {
                    name_needles(kind, &name, &mut needles);
                }
            }
            if let Some(date) = row.get::<Option<time::Date>, _>("birth_date") {
                let (year, month, day) = (date.year(), u8::from(date.month()), date.day());
                for text in [
                    format!("{year:04}-{month:02}-{day:02}"),
                    format!("{day:02}/{month:02}/{year:04}"),
                ] {
                    needles.push(Needle {
                        kind: "birth date",
                        text,
                    });
                }
            }
            if let Some(email) = row.get::<Option<String>, _>("email") {
                let lower = email.to_lowercase();
                if lower != email {
                    needles.push(Needle {
                        kind: "e-mail",
                        text: lower,
                    });
                }
                needles.push(Needle {
                    kind: "e-mail",
                    text: email,
                });
            }
            for (column, kind) in [("ine", "INE"), ("phone", "phone")] {
                if let Some(text) = row.get::<Option<String>, _>(column) {
                    needles.push(Needle { kind, text });
                }
            }
            persons.push(Person { needles });
        }
        let _ = connection.close().await;
    }
    persons
}

/// A name as stored, in capitals (as some formats write a family name), and each of
/// its words long enough not to be found by chance: case-sensitive, so that logins,
/// which are ids made of the names in lower case, are not taken for names.
fn name_needles(kind: &'static str, name: &str, needles: &mut Vec<Needle>) {
    let mut texts = BTreeSet::new();
    texts.insert(name.to_owned());
    texts.insert(name.to_uppercase());
    for part in name.split([' ', '-', '\'']) {
        if part.chars().count() >= MIN_NAME_PART {
            texts.insert(part.to_owned());
        }
    }
    needles.extend(
        texts
            .into_iter()
            .filter(|text| !text.is_empty())
            .map(|text| Needle { kind, text }),
    );
}

/// A line of the logs where personal data was found.
#[derive(Debug)]
struct Hit {
    file: String,
    line: usize,
    kind: &'static str,
    text: String,
}

#[derive(Debug, Default)]
struct Scan {
    files: usize,
    lines: usize,
    debug_lines: usize,
    span_openings: usize,
    needles: usize,
    /// The distinct texts left out (words of the vocabulary, other dates).
    left_out: BTreeSet<String>,
    hits: Vec<Hit>,
}

impl Scan {
    fn kinds(&self) -> String {
        let kinds: BTreeSet<&str> = self.hits.iter().map(|hit| hit.kind).collect();
        kinds.into_iter().collect::<Vec<_>>().join(", ")
    }

    /// The first `count` lines found, with where they are and what was found.
    fn report(&self, count: usize) -> String {
        let mut seen = BTreeSet::new();
        let mut report = String::new();
        for hit in &self.hits {
            if !seen.insert((&hit.file, hit.line)) {
                continue;
            }
            if seen.len() > count {
                report.push_str("…\n");
                break;
            }
            let text: String = hit.text.chars().take(1500).collect();
            report.push_str(&format!(
                "{}:{}: {}\n  {text}\n",
                hit.file, hit.line, hit.kind
            ));
        }
        report
    }
}

/// Looks for every person's needles in every line of every `*.jsonl` file of `dir`,
/// as written and with its JSON escapes undone; a needle counts where it stands as a
/// whole (not inside a longer word or id: `Eva` in a random inbox name), and names
/// of the `vocabulary` and [`OTHER_DATES`] are left out.
fn scan(dir: &Path, persons: &[Person], vocabulary: &BTreeSet<String>) -> Scan {
    let all = persons.iter().flat_map(|person| &person.needles);
    let (needles, left_out): (Vec<&Needle>, Vec<&Needle>) = all.partition(|needle| {
        let word = needle.kind.contains("name") && vocabulary.contains(&needle.text);
        let other_date =
            needle.kind == "birth date" && OTHER_DATES.iter().any(|(date, _)| *date == needle.text);
        !word && !other_date
    });
    let finder = AhoCorasick::new(needles.iter().map(|needle| &needle.text)).unwrap();
    let mut scan = Scan {
        needles: needles.len(),
        left_out: left_out.iter().map(|needle| needle.text.clone()).collect(),
        ..Scan::default()
    };
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "jsonl")
        })
        .collect();
    files.sort();
    for path in files {
        scan.files += 1;
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        let reader = BufReader::new(fs::File::open(&path).unwrap());
        for (index, line) in reader.split(b'\n').enumerate() {
            let line = String::from_utf8_lossy(&line.unwrap()).into_owned();
            scan.lines += 1;
            if line.contains(r#""level":"DEBUG""#) {
                scan.debug_lines += 1;
            }
            if line.contains(r#""message":"new""#) {
                scan.span_openings += 1;
            }
            let mut kinds = BTreeSet::new();
            let decoded = line.contains('\\').then(|| unescaped(&line));
            for text in std::iter::once(&line).chain(decoded.as_ref()) {
                for found in finder.find_overlapping_iter(text.as_str()) {
                    if stands_whole(text, found.start(), found.end()) {
                        kinds.insert(needles[found.pattern().as_usize()].kind);
                    }
                }
            }
            for kind in kinds {
                scan.hits.push(Hit {
                    file: file_name.clone(),
                    line: index + 1,
                    kind,
                    text: line.clone(),
                });
            }
        }
    }
    scan
}

/// Whether `text[start..end]` is not part of a longer word: no letter, digit or `_`
/// just before or after it.
fn stands_whole(text: &str, start: usize, end: usize) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    !text[..start].chars().next_back().is_some_and(word)
        && !text[end..].chars().next().is_some_and(word)
}

/// Every word of the system's own texts under [`VOCABULARY`]: the migrations (`.sql`)
/// and the policy (`.toml`), as written (case kept).
fn vocabulary(root: &Path) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    let mut pending: Vec<PathBuf> = VOCABULARY.iter().map(|dir| root.join(dir)).collect();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|extension| extension == "sql" || extension == "toml")
                && path.file_name().is_some_and(|name| name != "Cargo.toml")
            {
                let text = fs::read_to_string(&path).unwrap_or_default();
                words.extend(
                    text.split(|c: char| !c.is_alphanumeric())
                        .filter(|word| !word.is_empty())
                        .map(str::to_owned),
                );
            }
        }
    }
    words
}

/// Every string of a JSON line, its escapes undone, one per line.
fn unescaped(line: &str) -> String {
    fn strings(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::String(text) => {
                out.push_str(text);
                out.push('\n');
            }
            serde_json::Value::Array(values) => values.iter().for_each(|v| strings(v, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(line) {
        strings(&value, &mut out);
    }
    out
}
