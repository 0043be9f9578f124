//! `hlctl import stays`: registers a cohort from a CSV file through
//! `IntakeService.ImportStays`, in chunks, and accounts for every row of the file in
//! a results file, whatever happened to it.
//!
//! Intake's import is idempotent (a stay already registered comes back `unchanged`).
//! That is what makes retrying a chunk after a transient error, and re-running a
//! whole file after a failure, safe; so on any other failure this stops and says so
//! rather than guessing what was written.
#![allow(clippy::print_stdout)]

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::{BufWriter, IsTerminal, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use hosted_contracts::v1;
use hosted_identity::{Identity, Likeness};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use serde_json::json;
use tonic::Code;

use crate::csv_rows::{self, CohortRow, RowError};

/// Exit code when the import went through but some rows were not accepted (rejected,
/// or held as possible duplicates).
pub const EXIT_REJECTED: u8 = 2;

/// Rows per `ImportStays` call that intake accepts at most.
pub const MAX_BATCH_SIZE: u64 = 1000;

/// Rows of each kind the summary lists: the results file has them all.
const LISTED_ROWS: usize = 50;

/// What became of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    StayAdded,
    Unchanged,
    Rejected,
    /// Intake knows a person close to this one: nothing was written until someone
    /// checks and confirms (`confirm_new_person`) or corrects the row.
    PossibleDuplicate,
    /// An earlier row of the file registers the same person and the same stay: this
    /// one adds nothing (it was not sent).
    DuplicateRow,
    /// No answer for the row: the import stopped before or while its chunk was sent.
    NoResult,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Created,
        Outcome::StayAdded,
        Outcome::Unchanged,
        Outcome::Rejected,
        Outcome::PossibleDuplicate,
        Outcome::DuplicateRow,
        Outcome::NoResult,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::StayAdded => "stay_added",
            Outcome::Unchanged => "unchanged",
            Outcome::Rejected => "rejected",
            Outcome::PossibleDuplicate => "possible_duplicate",
            Outcome::DuplicateRow => "duplicate_row",
            Outcome::NoResult => "no_result",
        }
    }
}

/// A registered person who may be the one a row describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PossibleDuplicate {
    pub learner_id: String,
    pub login: String,
    /// Why intake thinks so.
    pub reason: String,
}

/// One line of the results file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowResult {
    /// The row's line in the input file.
    pub row: u64,
    pub outcome: Outcome,
    pub learner_id: String,
    pub login: String,
    pub stay_id: String,
    pub errors: Vec<RowError>,
    pub possible_duplicates: Vec<PossibleDuplicate>,
    /// For `duplicate_row`: the earlier row's line.
    pub duplicate_of_row: Option<u64>,
}

impl RowResult {
    fn unanswered(row: u64, outcome: Outcome, errors: Vec<RowError>) -> Self {
        Self {
            row,
            outcome,
            learner_id: String::new(),
            login: String::new(),
            stay_id: String::new(),
            errors,
            possible_duplicates: Vec::new(),
            duplicate_of_row: None,
        }
    }

    /// A row that repeats the earlier row `earlier_row`, with its learner and stay.
    fn duplicate(earlier_row: u64, earlier: &RowResult) -> Self {
        Self {
            row: 0,
            outcome: Outcome::DuplicateRow,
            learner_id: earlier.learner_id.clone(),
            login: earlier.login.clone(),
            stay_id: earlier.stay_id.clone(),
            errors: Vec::new(),
            possible_duplicates: Vec::new(),
            duplicate_of_row: Some(earlier_row),
        }
    }

    /// `field: reason | field: reason`, as the results file and the summary show them;
    /// `duplicate of row N` for a duplicate row.
    pub fn errors_text(&self) -> String {
        if let Some(earlier) = self.duplicate_of_row {
            return format!("duplicate of row {earlier}");
        }
        self.errors
            .iter()
            .map(|error| format!("{}: {}", error.field, error.reason))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// `login (learner_id): reason | login (learner_id): reason`.
    pub fn possible_duplicates_text(&self) -> String {
        self.possible_duplicates
            .iter()
            .map(|candidate| {
                if candidate.reason.is_empty() {
                    format!("{} ({})", candidate.login, candidate.learner_id)
                } else {
                    format!(
                        "{} ({}): {}",
                        candidate.login, candidate.learner_id, candidate.reason
                    )
                }
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "row": self.row,
            "outcome": self.outcome.as_str(),
            "learner_id": self.learner_id,
            "login": self.login,
            "stay_id": self.stay_id,
            "errors": self.errors.iter().map(|error| json!({
                "field": error.field, "reason": error.reason,
            })).collect::<Vec<_>>(),
            "possible_duplicates": self.possible_duplicates.iter().map(|candidate| json!({
                "learner_id": candidate.learner_id, "login": candidate.login,
                "reason": candidate.reason,
            })).collect::<Vec<_>>(),
            "duplicate_of_row": self.duplicate_of_row,
        })
    }
}

/// How rows are sent.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Rows per `ImportStays` call.
    pub batch_size: usize,
    pub dry_run: bool,
    /// Further attempts at a chunk after a transient error.
    pub retries: u32,
    /// The wait before the first retry; it doubles at each one.
    pub first_backoff: Duration,
    /// How long to wait for one chunk's answer.
    pub timeout: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            dry_run: false,
            retries: 3,
            first_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(300),
        }
    }
}

/// Every row's result, in the file's order, and why the import stopped, if it did.
#[derive(Debug)]
pub struct Report {
    pub results: Vec<RowResult>,
    /// Chunks intake answered.
    pub chunks_answered: usize,
    pub failure: Option<anyhow::Error>,
}

impl Report {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.results
            .iter()
            .filter(|result| result.outcome == outcome)
            .count()
    }

    /// 0 when every row was accepted, [`EXIT_REJECTED`] otherwise (a failure is an
    /// error, exit code 1).
    pub fn exit_code(&self) -> u8 {
        if self.results.iter().all(|result| {
            matches!(
                result.outcome,
                Outcome::Created | Outcome::StayAdded | Outcome::Unchanged | Outcome::DuplicateRow
            )
        }) {
            0
        } else {
            EXIT_REJECTED
        }
    }

    /// What people read at the end.
    pub fn summary(&self, file: &Path, results_path: &Path, dry_run: bool) -> String {
        let mut lines = vec![format!(
            "{}: {} rows{}",
            file.display(),
            self.results.len(),
            if dry_run {
                " (dry run: nothing was written)"
            } else {
                ""
            }
        )];
        for outcome in Outcome::ALL {
            let count = self.count(outcome);
            if count > 0 || !matches!(outcome, Outcome::NoResult | Outcome::DuplicateRow) {
                lines.push(format!("  {:<18} {count:>7}", outcome.as_str()));
            }
        }
        let listings = [
            (Outcome::Rejected, "rejected rows:"),
            (
                Outcome::PossibleDuplicate,
                "possible duplicates, not registered (check each; then correct the row, or set confirm_new_person to yes, and run the file again):",
            ),
            (
                Outcome::DuplicateRow,
                "rows that repeat an earlier row (same person, same stay: nothing added):",
            ),
        ];
        for (outcome, title) in listings {
            let listed: Vec<&RowResult> = self
                .results
                .iter()
                .filter(|result| result.outcome == outcome)
                .collect();
            if listed.is_empty() {
                continue;
            }
            lines.push(title.to_owned());
            for result in listed.iter().take(LISTED_ROWS) {
                let detail = match outcome {
                    Outcome::PossibleDuplicate => result.possible_duplicates_text(),
                    _ => result.errors_text(),
                };
                lines.push(format!("  row {}: {detail}", result.row));
            }
            if listed.len() > LISTED_ROWS {
                lines.push(format!(
                    "  … and {} more (see {})",
                    listed.len() - LISTED_ROWS,
                    results_path.display()
                ));
            }
        }
        lines.push(format!("results: {}", results_path.display()));
        lines.join("\n") + "\n"
    }
}

/// Which part of the file a chunk is, for messages.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    number: usize,
    of: usize,
    first_row: i64,
    last_row: i64,
}

impl std::fmt::Display for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chunk {} of {} (rows {} to {})",
            self.number, self.of, self.first_row, self.last_row
        )
    }
}

/// Sends the readable rows in chunks, one chunk at a time so that two rows of the
/// same person in different chunks are seen in the file's order, and puts every
/// row's result, local rejections included, back in the file's order.
pub async fn send<F>(
    rows: &[CohortRow],
    options: &SendOptions,
    progress: &ProgressBar,
    mut import: F,
) -> Report
where
    F: AsyncFnMut(v1::ImportStaysRequest) -> Result<v1::ImportStaysResponse, tonic::Status>,
{
    let readable: Vec<&v1::ImportRow> = rows
        .iter()
        .filter_map(|row| row.content.as_ref().ok())
        .collect();
    let chunks: Vec<&[&v1::ImportRow]> = readable.chunks(options.batch_size.max(1)).collect();
    let mut answered: HashMap<i64, RowResult> = HashMap::with_capacity(readable.len());
    let mut registered = RegisteredRows::default();
    let mut chunks_answered = 0;
    let mut failure = None;
    for (index, chunk_rows) in chunks.iter().enumerate() {
        let chunk = Chunk {
            number: index + 1,
            of: chunks.len(),
            first_row: chunk_rows.first().map_or(0, |row| row.row_number),
            last_row: chunk_rows.last().map_or(0, |row| row.row_number),
        };
        // A row that repeats a row of an earlier chunk that went through is not sent
        // (intake itself tells the repeats within a chunk): the dry run and the
        // import say the same.
        let (repeats, to_send): (Vec<_>, Vec<_>) = chunk_rows
            .iter()
            .map(|row| (registered.earlier(row), *row))
            .partition(|(earlier, _)| earlier.is_some());
        let outcome = if to_send.is_empty() {
            Ok(Vec::new())
        } else {
            let request = v1::ImportStaysRequest {
                rows: to_send.iter().map(|(_, row)| (*row).clone()).collect(),
                dry_run: options.dry_run,
            };
            let sent: Vec<&v1::ImportRow> = to_send.iter().map(|(_, row)| *row).collect();
            match call(&mut import, &request, options, progress, chunk).await {
                Ok(response) => account(&sent, response).with_context(|| {
                    format!("{chunk}: intake's answer does not account for every row sent")
                }),
                Err(error) => Err(error),
            }
        };
        match outcome {
            Ok(results) => {
                let by_number: HashMap<i64, &v1::ImportRow> = chunk_rows
                    .iter()
                    .map(|row| (row.row_number, *row))
                    .collect();
                for (row_number, result) in &results {
                    if matches!(
                        result.outcome,
                        Outcome::Created | Outcome::StayAdded | Outcome::Unchanged
                    ) && let Some(row) = by_number.get(row_number)
                    {
                        registered.add(row);
                    }
                }
                answered.extend(results);
                for (earlier, row) in repeats {
                    if let Some(earlier) = earlier
                        && let Some(first) = answered.get(&earlier)
                    {
                        let repeat =
                            RowResult::duplicate(u64::try_from(earlier).unwrap_or(0), first);
                        answered.insert(row.row_number, repeat);
                    }
                }
                chunks_answered += 1;
                progress.inc(chunk_rows.len() as u64);
            }
            Err(error) => {
                failure = Some(stopped(&error, options.dry_run, chunks_answered));
                break;
            }
        }
    }
    let results = rows
        .iter()
        .map(|row| match &row.content {
            Err(errors) => RowResult::unanswered(row.line, Outcome::Rejected, errors.clone()),
            Ok(sent) => answered.remove(&sent.row_number).map_or_else(
                || RowResult::unanswered(row.line, Outcome::NoResult, Vec::new()),
                |answer| RowResult {
                    row: row.line,
                    ..answer
                },
            ),
        })
        .collect();
    Report {
        results,
        chunks_answered,
        failure,
    }
}

/// The rows of the file that went through (created, added or already there), to
/// recognise a later row that repeats one: the same person, as intake matches
/// persons, and the same stay (population and start date), as intake tells stays.
#[derive(Debug, Default)]
struct RegisteredRows {
    by_stay: HashMap<(String, String, String), Vec<(Identity, i64)>>,
}

impl RegisteredRows {
    fn key(row: &v1::ImportRow) -> Option<((String, String, String), Identity)> {
        let person = row.person.as_ref()?;
        let stay = row.stay.as_ref()?;
        let birth_date = hosted_platform::clock::parse_day(person.birth_date.trim())?;
        let identity = Identity::new(
            &person.family_name,
            Some(person.birth_name.as_str()),
            &person.given_names,
            birth_date,
            Some(person.ine.as_str()),
        );
        let key = (
            person.birth_date.trim().to_owned(),
            stay.population.trim().to_owned(),
            stay.start_date.trim().to_owned(),
        );
        Some((key, identity))
    }

    fn add(&mut self, row: &v1::ImportRow) {
        if let Some((key, identity)) = Self::key(row) {
            self.by_stay
                .entry(key)
                .or_default()
                .push((identity, row.row_number));
        }
    }

    /// The earlier row that `row` repeats, if any.
    fn earlier(&self, row: &v1::ImportRow) -> Option<i64> {
        let (key, identity) = Self::key(row)?;
        self.by_stay.get(&key)?.iter().find_map(|(earlier, line)| {
            (earlier.likeness(&identity) == Likeness::Same).then_some(*line)
        })
    }
}

/// One chunk, retried after the errors that say "try again later".
async fn call<F>(
    import: &mut F,
    request: &v1::ImportStaysRequest,
    options: &SendOptions,
    progress: &ProgressBar,
    chunk: Chunk,
) -> anyhow::Result<v1::ImportStaysResponse>
where
    F: AsyncFnMut(v1::ImportStaysRequest) -> Result<v1::ImportStaysResponse, tonic::Status>,
{
    let mut backoff = options.first_backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let status = match tokio::time::timeout(options.timeout, import(request.clone())).await {
            Ok(Ok(response)) => return Ok(response),
            Ok(Err(status)) => status,
            Err(_) => tonic::Status::deadline_exceeded(format!(
                "no answer within {} s",
                options.timeout.as_secs()
            )),
        };
        // A connection cut in the middle of a call (intake restarting) comes back as
        // UNKNOWN "transport error": intake itself never answers UNKNOWN, and sending a
        // chunk again is harmless (the import is idempotent).
        let transient = matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown
        );
        if !transient || attempt > options.retries {
            let attempts = if attempt > 1 {
                format!(" after {attempt} attempts")
            } else {
                String::new()
            };
            let hint = match status.code() {
                Code::Unauthenticated | Code::PermissionDenied => {
                    " (the token must be a caller's with the role deve)"
                }
                Code::ResourceExhausted => " (a smaller --batch-size may help)",
                _ => "",
            };
            bail!(
                "{chunk} failed{attempts}: {:?}: {}{hint}",
                status.code(),
                status.message()
            );
        }
        progress.suspend(|| {
            eprintln!(
                "{chunk}: {:?}: {}; retry {attempt} of {} in {} ms",
                status.code(),
                status.message(),
                options.retries,
                backoff.as_millis()
            );
        });
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2);
    }
}

/// Intake's results for a chunk, checked to be exactly one per row sent.
fn account(
    rows: &[&v1::ImportRow],
    response: v1::ImportStaysResponse,
) -> anyhow::Result<Vec<(i64, RowResult)>> {
    let sent: HashSet<i64> = rows.iter().map(|row| row.row_number).collect();
    let mut pending = sent.clone();
    let mut results = Vec::with_capacity(rows.len());
    for result in response.results {
        if !pending.remove(&result.row_number) {
            if sent.contains(&result.row_number) {
                bail!("two results for row {}", result.row_number);
            }
            bail!("a result for row {}, which was not sent", result.row_number);
        }
        let outcome = match result.outcome() {
            v1::ImportOutcome::Created => Outcome::Created,
            v1::ImportOutcome::StayAdded => Outcome::StayAdded,
            v1::ImportOutcome::Unchanged => Outcome::Unchanged,
            v1::ImportOutcome::Rejected => Outcome::Rejected,
            v1::ImportOutcome::PossibleDuplicate => Outcome::PossibleDuplicate,
            v1::ImportOutcome::DuplicateRow => Outcome::DuplicateRow,
            v1::ImportOutcome::Unspecified => bail!("no outcome for row {}", result.row_number),
        };
        let errors = result
            .violations
            .into_iter()
            .map(|violation| RowError::new(column_of(&violation.field), violation.reason))
            .collect();
        results.push((
            result.row_number,
            RowResult {
                row: 0,
                outcome,
                learner_id: result.learner_id,
                login: result.login,
                stay_id: result.stay_id,
                errors,
                possible_duplicates: result
                    .possible_duplicates
                    .into_iter()
                    .map(|candidate| PossibleDuplicate {
                        learner_id: candidate.learner_id,
                        login: candidate.login,
                        reason: candidate.reason,
                    })
                    .collect(),
                duplicate_of_row: u64::try_from(result.duplicate_of_row)
                    .ok()
                    .filter(|row| *row > 0),
            },
        ));
    }
    if !pending.is_empty() {
        let mut missing: Vec<i64> = pending.into_iter().collect();
        missing.sort_unstable();
        let listed: Vec<String> = missing.iter().take(10).map(i64::to_string).collect();
        bail!(
            "no result for {} row(s): {}{}",
            missing.len(),
            listed.join(", "),
            if missing.len() > 10 { "…" } else { "" }
        );
    }
    Ok(results)
}

/// Intake names a field by its path in the request (`stay.end_date`, and
/// `stay.requested_resources[1]` for one name of a list); the operator knows the
/// file's columns, which have the same names without the prefix and the index (the
/// reason names the value).
fn column_of(field: &str) -> String {
    field
        .strip_prefix("person.")
        .or_else(|| field.strip_prefix("stay."))
        .map(without_index)
        .filter(|column| csv_rows::COLUMNS.contains(column))
        .unwrap_or(field)
        .to_owned()
}

/// `requested_resources[1]` is `requested_resources`; anything else stays as it is.
fn without_index(path: &str) -> &str {
    path.strip_suffix(']')
        .and_then(|rest| rest.rsplit_once('['))
        .filter(|(_, index)| !index.is_empty() && index.bytes().all(|byte| byte.is_ascii_digit()))
        .map_or(path, |(name, _)| name)
}

/// The failure as the operator needs it: which chunk, what is known of what was
/// written, and that running the file again is the remedy.
fn stopped(error: &anyhow::Error, dry_run: bool, chunks_answered: usize) -> anyhow::Error {
    let answered = if chunks_answered == 0 {
        "No chunk was answered."
    } else if dry_run {
        "The chunks before it were checked; its rows and the later ones have the outcome no_result."
    } else {
        "The chunks before it were imported; its rows (which may or may not have been) and the later ones have the outcome no_result."
    };
    let remedy = if dry_run {
        "This was a dry run: nothing was written."
    } else {
        "Running the same file again is safe: the import is idempotent, and rows already imported come back as unchanged."
    };
    anyhow!("{error:#}. {answered} {remedy}")
}

/// The results file, opened before anything is sent so that an unwritable place is
/// found while nothing has been imported, and renamed into place once complete so
/// that a half-written file never stands under the expected name.
#[derive(Debug)]
pub struct ResultsFile {
    path: PathBuf,
    partial: PathBuf,
    file: File,
}

impl ResultsFile {
    /// `<stem>.results.csv` beside the input (`<stem>.dry-run.results.csv` for a dry
    /// run, so that checking a file again never overwrites the ids of a real import).
    pub fn default_path(input: &Path, dry_run: bool) -> PathBuf {
        let stem = input
            .file_stem()
            .map_or_else(|| "cohort".into(), |stem| stem.to_string_lossy());
        let kind = if dry_run { ".dry-run" } else { "" };
        input.with_file_name(format!("{stem}{kind}.results.csv"))
    }

    pub fn create(path: &Path, input: &Path) -> anyhow::Result<Self> {
        if path.exists() && std::fs::canonicalize(path).ok() == std::fs::canonicalize(input).ok() {
            bail!(
                "the results would overwrite the input {}: choose another --results",
                input.display()
            );
        }
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        let partial = path.with_file_name(name);
        let file =
            File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
        Ok(Self {
            path: path.to_owned(),
            partial,
            file,
        })
    }

    /// Leaves whatever stands under the expected name as it was.
    pub fn discard(self) -> anyhow::Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.partial)
            .with_context(|| format!("removing {}", self.partial.display()))
    }

    pub fn save(self, separator: u8, bom: bool, results: &[RowResult]) -> anyhow::Result<()> {
        let mut writer = BufWriter::new(self.file);
        write_results(&mut writer, separator, bom, results)?;
        writer
            .into_inner()
            .map_err(|error| error.into_error())
            .and_then(|file| file.sync_all())
            .with_context(|| format!("writing {}", self.partial.display()))?;
        std::fs::rename(&self.partial, &self.path)
            .with_context(|| format!("renaming {} into place", self.partial.display()))
    }
}

/// `row,outcome,learner_id,login,stay_id,errors,possible_duplicates`, written the way the input was
/// (same separator, a byte-order mark if it had one) so that the spreadsheet that
/// made the input opens the results the same way.
pub fn write_results(
    writer: impl Write,
    separator: u8,
    bom: bool,
    results: &[RowResult],
) -> anyhow::Result<()> {
    let mut writer = writer;
    if bom {
        writer.write_all("\u{feff}".as_bytes())?;
    }
    let mut csv = csv::WriterBuilder::new()
        .delimiter(separator)
        .from_writer(writer);
    csv.write_record([
        "row",
        "outcome",
        "learner_id",
        "login",
        "stay_id",
        "errors",
        "possible_duplicates",
    ])?;
    for result in results {
        let row = result.row.to_string();
        let errors = result.errors_text();
        let possible_duplicates = result.possible_duplicates_text();
        csv.write_record([
            row.as_str(),
            result.outcome.as_str(),
            &result.learner_id,
            &result.login,
            &result.stay_id,
            &errors,
            &possible_duplicates,
        ])?;
    }
    csv.flush()?;
    Ok(())
}

/// A bar on a terminal; nothing otherwise, so that logs and pipes stay clean.
fn progress_bar(rows: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(rows as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{wide_bar} {pos}/{len} rows  {rate}  ETA {eta}")
    {
        bar.set_style(style.progress_chars("=> ").with_key(
            "rate",
            |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{:.0} rows/s", state.per_sec());
            },
        ));
    }
    // Redraws while a chunk is out, so that elapsed time and rate keep moving.
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// `hlctl import stays`.
#[derive(Debug, Clone)]
pub struct ImportCommand {
    pub file: PathBuf,
    /// Where the results go; [`ResultsFile::default_path`] when absent.
    pub results: Option<PathBuf>,
    pub options: SendOptions,
    /// One JSON object per row on standard output instead of the summary.
    pub json: bool,
}

/// Reads, sends, writes the results, prints; the exit code when the import went
/// through (0, or [`EXIT_REJECTED`]), an error when it did not.
pub async fn run<F>(command: &ImportCommand, import: F) -> anyhow::Result<u8>
where
    F: AsyncFnMut(v1::ImportStaysRequest) -> Result<v1::ImportStaysResponse, tonic::Status>,
{
    let input = &command.file;
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let cohort = csv_rows::parse(&bytes)
        .with_context(|| format!("{}: nothing was sent", input.display()))?;
    let results_path = command
        .results
        .clone()
        .unwrap_or_else(|| ResultsFile::default_path(input, command.options.dry_run));
    let results_file = ResultsFile::create(&results_path, input)?;

    let progress = progress_bar(cohort.readable().count());
    let report = send(&cohort.rows, &command.options, &progress, import).await;
    progress.finish_and_clear();

    if let Some(failure) = &report.failure
        && report.chunks_answered == 0
    {
        // Rows that all say no_result would only overwrite an earlier run's results.
        results_file.discard()?;
        bail!("{failure:#}\nNo results file was written.");
    }

    results_file
        .save(cohort.separator, cohort.bom, &report.results)
        .with_context(|| {
            format!(
                "writing the results to {} (the import itself went through: running it again is safe)",
                results_path.display()
            )
        })?;
    if command.json {
        for result in &report.results {
            println!("{}", result.to_json());
        }
    } else {
        print!(
            "{}",
            report.summary(input, &results_path, command.options.dry_run)
        );
    }
    match report.failure {
        Some(failure) => bail!(
            "{failure:#}\nThe results so far are in {}.",
            results_path.display()
        ),
        None => Ok(report.exit_code()),
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, collections::VecDeque};

    use super::*;

    const HEADER: &str =
        "family_name,given_names,birth_date,email,population,sponsor_unit,start_date,end_date";

    /// A cohort of `count` readable rows (lines 2…) and one unreadable one at line 4.
    fn cohort(count: usize) -> Vec<CohortRow> {
        let mut text = format!("{HEADER}\n");
        for index in 0..count {
            if index == 2 {
                text.push_str("Short,Row\n");
            }
            text.push_str(&format!(
                "Martin{index},Paul,1990-01-01,paul{index}@example.org,VAE,SUFA,2026-09-01,2027-06-30\n"
            ));
        }
        csv_rows::parse(text.as_bytes()).expect("parsed").rows
    }

    /// Plays intake: answers each row `created`, except those whose family name
    /// ends in 7 (`rejected`) or 8 (`possible_duplicate`); `failures` are returned
    /// first, one per call.
    struct FakeIntake {
        requests: RefCell<Vec<v1::ImportStaysRequest>>,
        failures: RefCell<VecDeque<tonic::Status>>,
    }

    impl FakeIntake {
        fn new(failures: Vec<tonic::Status>) -> Self {
            Self {
                requests: RefCell::new(Vec::new()),
                failures: RefCell::new(failures.into()),
            }
        }

        fn answer(
            &self,
            request: v1::ImportStaysRequest,
        ) -> Result<v1::ImportStaysResponse, tonic::Status> {
            self.requests.borrow_mut().push(request.clone());
            if let Some(status) = self.failures.borrow_mut().pop_front() {
                return Err(status);
            }
            let results = request
                .rows
                .iter()
                .map(|row| {
                    let family_name = row
                        .person
                        .as_ref()
                        .map(|person| person.family_name.clone())
                        .unwrap_or_default();
                    if family_name.ends_with('8') {
                        v1::ImportResult {
                            row_number: row.row_number,
                            outcome: v1::ImportOutcome::PossibleDuplicate.into(),
                            possible_duplicates: vec![v1::PossibleDuplicate {
                                learner_id: "0190".to_owned(),
                                login: "paul.martin".to_owned(),
                                reason: "one letter apart".to_owned(),
                                reason_code: "names_one_letter_apart".to_owned(),
                            }],
                            ..v1::ImportResult::default()
                        }
                    } else if family_name.ends_with('7') {
                        v1::ImportResult {
                            row_number: row.row_number,
                            outcome: v1::ImportOutcome::Rejected.into(),
                            violations: vec![v1::FieldViolation {
                                field: "stay.end_date".to_owned(),
                                reason: "before stay.start_date".to_owned(),
                            }],
                            ..v1::ImportResult::default()
                        }
                    } else {
                        v1::ImportResult {
                            row_number: row.row_number,
                            outcome: v1::ImportOutcome::Created.into(),
                            learner_id: format!("id-{}", row.row_number),
                            login: format!("login{}", row.row_number),
                            stay_id: format!("stay-{}", row.row_number),
                            ..v1::ImportResult::default()
                        }
                    }
                })
                // Intake may answer in any order: results are matched by row number.
                .rev()
                .collect();
            Ok(v1::ImportStaysResponse { results })
        }
    }

    fn fast(batch_size: usize) -> SendOptions {
        SendOptions {
            batch_size,
            first_backoff: Duration::ZERO,
            ..SendOptions::default()
        }
    }

    async fn run_fake(rows: &[CohortRow], options: &SendOptions, intake: &FakeIntake) -> Report {
        send(rows, options, &ProgressBar::hidden(), async |request| {
            intake.answer(request)
        })
        .await
    }

    #[tokio::test]
    async fn rows_go_in_chunks_and_come_back_in_the_files_order() {
        let rows = cohort(5);
        let intake = FakeIntake::new(Vec::new());
        let options = SendOptions {
            dry_run: true,
            ..fast(2)
        };
        let report = run_fake(&rows, &options, &intake).await;
        assert!(report.failure.is_none());
        let sent: Vec<Vec<i64>> = intake
            .requests
            .borrow()
            .iter()
            .map(|request| {
                assert!(request.dry_run);
                request.rows.iter().map(|row| row.row_number).collect()
            })
            .collect();
        // Line 4 is unreadable: it is never sent.
        assert_eq!(sent, [vec![2, 3], vec![5, 6], vec![7]]);
        let outcomes: Vec<(u64, &str)> = report
            .results
            .iter()
            .map(|result| (result.row, result.outcome.as_str()))
            .collect();
        assert_eq!(
            outcomes,
            [
                (2, "created"),
                (3, "created"),
                (4, "rejected"),
                (5, "created"),
                (6, "created"),
                (7, "created")
            ]
        );
        assert_eq!(report.results[0].login, "login2");
        assert_eq!(report.exit_code(), EXIT_REJECTED);
    }

    #[tokio::test]
    async fn a_row_that_repeats_one_of_an_earlier_chunk_is_not_sent() {
        // Lines 2 and 3, then line 4 repeating line 2 (the same person written
        // otherwise, the same stay) and line 5 another stay of that person.
        let text = format!(
            "{HEADER}\n\
             Martin,Paul,1990-01-01,paul@example.org,VAE,SUFA,2026-09-01,2027-06-30\n\
             Durand,Léa,1991-01-01,lea@example.org,VAE,SUFA,2026-09-01,2027-06-30\n\
             MARTIN,paul Henri,01/01/1990,paul@example.org,VAE,SUFA,2026-09-01,2027-06-30\n\
             Martin,Paul,1990-01-01,paul@example.org,IFSI,IFSI-NORD,2026-09-01,2027-06-30\n"
        );
        let rows = csv_rows::parse(text.as_bytes()).expect("parsed").rows;
        for dry_run in [true, false] {
            let intake = FakeIntake::new(Vec::new());
            let options = SendOptions { dry_run, ..fast(2) };
            let report = run_fake(&rows, &options, &intake).await;
            let sent: Vec<Vec<i64>> = intake
                .requests
                .borrow()
                .iter()
                .map(|request| request.rows.iter().map(|row| row.row_number).collect())
                .collect();
            assert_eq!(sent, [vec![2, 3], vec![5]]);
            let repeat = &report.results[2];
            assert_eq!(repeat.outcome, Outcome::DuplicateRow);
            assert_eq!(repeat.duplicate_of_row, Some(2));
            assert_eq!(repeat.errors_text(), "duplicate of row 2");
            assert_eq!(repeat.login, "login2");
            assert_eq!(report.results[3].outcome, Outcome::Created);
            assert_eq!(report.exit_code(), 0);
        }
    }

    #[tokio::test]
    async fn every_row_accepted_exits_zero() {
        let rows: Vec<CohortRow> = cohort(2);
        let intake = FakeIntake::new(Vec::new());
        let report = run_fake(&rows, &fast(500), &intake).await;
        assert_eq!(report.exit_code(), 0);
        assert_eq!(report.count(Outcome::Created), 2);
    }

    #[tokio::test]
    async fn transient_errors_are_retried() {
        let rows = cohort(3);
        let intake = FakeIntake::new(vec![
            tonic::Status::unavailable("restarting"),
            tonic::Status::deadline_exceeded("slow"),
            tonic::Status::unavailable("restarting"),
        ]);
        let report = run_fake(&rows, &fast(500), &intake).await;
        assert!(report.failure.is_none(), "{:?}", report.failure);
        assert_eq!(intake.requests.borrow().len(), 4);
        assert_eq!(report.count(Outcome::Created), 3);
    }

    #[tokio::test]
    async fn a_chunk_that_keeps_failing_stops_the_import_and_says_which() {
        let rows = cohort(5);
        let intake = FakeIntake::new(Vec::new());
        let options = fast(2);
        // The first chunk goes through; the second meets four transient errors.
        let mut calls = 0;
        let report = send(&rows, &options, &ProgressBar::hidden(), async |request| {
            calls += 1;
            if calls == 1 {
                intake.answer(request)
            } else {
                Err(tonic::Status::unavailable("connection refused"))
            }
        })
        .await;
        assert_eq!(calls, 5);
        let message = format!("{:#}", report.failure.expect("failed"));
        assert!(
            message.contains("chunk 2 of 3 (rows 5 to 6) failed after 4 attempts: Unavailable: connection refused"),
            "{message}"
        );
        assert!(
            message.contains("The chunks before it were imported"),
            "{message}"
        );
        assert!(
            message.contains("Running the same file again is safe"),
            "{message}"
        );
        assert_eq!(report.chunks_answered, 1);
        let outcomes: Vec<&str> = report
            .results
            .iter()
            .map(|result| result.outcome.as_str())
            .collect();
        assert_eq!(
            outcomes,
            [
                "created",
                "created",
                "rejected",
                "no_result",
                "no_result",
                "no_result"
            ]
        );
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried() {
        let rows = cohort(3);
        let intake = FakeIntake::new(vec![tonic::Status::permission_denied("role deve required")]);
        let report = run_fake(&rows, &fast(500), &intake).await;
        assert_eq!(intake.requests.borrow().len(), 1);
        let message = format!("{:#}", report.failure.expect("failed"));
        assert!(
            message.contains("chunk 1 of 1 (rows 2 to 5) failed: PermissionDenied"),
            "{message}"
        );
        assert!(message.contains("No chunk was answered"), "{message}");
    }

    #[tokio::test]
    async fn an_answer_that_misses_a_row_is_a_failure() {
        let rows = cohort(3);
        let intake = FakeIntake::new(Vec::new());
        let report = send(&rows, &fast(500), &ProgressBar::hidden(), async |request| {
            let mut response = intake.answer(request)?;
            response.results.retain(|result| result.row_number != 5);
            Ok(response)
        })
        .await;
        let message = format!("{:#}", report.failure.expect("failed"));
        assert!(message.contains("no result for 1 row(s): 5"), "{message}");
        assert!(
            report
                .results
                .iter()
                .filter(|result| result.row != 4)
                .all(|result| result.outcome == Outcome::NoResult)
        );
    }

    #[tokio::test]
    async fn possible_duplicates_are_held_and_listed() {
        let rows = cohort(9);
        let intake = FakeIntake::new(Vec::new());
        let report = run_fake(&rows, &fast(500), &intake).await;
        let held = report
            .results
            .iter()
            .find(|result| result.outcome == Outcome::PossibleDuplicate)
            .expect("a possible duplicate");
        assert_eq!(held.row, 11);
        assert_eq!(
            held.possible_duplicates_text(),
            "paul.martin (0190): one letter apart"
        );
        assert_eq!(report.exit_code(), EXIT_REJECTED);
        let summary = report.summary(Path::new("c.csv"), Path::new("c.results.csv"), false);
        assert!(
            summary.contains("  possible_duplicate       1\n"),
            "{summary}"
        );
        assert!(
            summary.contains("\n  row 11: paul.martin (0190): one letter apart\n"),
            "{summary}"
        );
    }

    #[tokio::test]
    async fn intake_field_paths_become_column_names() {
        let rows = cohort(8);
        let intake = FakeIntake::new(Vec::new());
        let report = run_fake(&rows, &fast(500), &intake).await;
        let rejected: Vec<&RowResult> = report
            .results
            .iter()
            .filter(|result| result.outcome == Outcome::Rejected)
            .collect();
        assert_eq!(rejected.len(), 2);
        assert_eq!(rejected[1].row, 10);
        assert_eq!(
            rejected[1].errors_text(),
            "end_date: before stay.start_date"
        );
        assert_eq!(column_of("person.email"), "email");
        assert_eq!(column_of("stay.end_date"), "end_date");
        assert_eq!(column_of("rows"), "rows");
        assert_eq!(column_of("person.nickname"), "person.nickname");
        assert_eq!(
            column_of("stay.requested_resources[0]"),
            "requested_resources"
        );
        assert_eq!(
            column_of("stay.requested_resources[12]"),
            "requested_resources"
        );
        assert_eq!(column_of("stay.requested_resources"), "requested_resources");
        for kept in [
            "stay.requested_resources[]",
            "stay.requested_resources[x]",
            "stay.end_date[0",
            "stay.nickname[0]",
        ] {
            assert_eq!(column_of(kept), kept);
        }
    }

    #[test]
    fn results_file_and_summary() {
        let mut results: Vec<RowResult> = (2..60)
            .map(|row| {
                RowResult::unanswered(
                    row,
                    Outcome::Rejected,
                    vec![
                        RowError::new("email", "required"),
                        RowError::new("end_date", "before stay.start_date, really"),
                    ],
                )
            })
            .collect();
        results[0] = RowResult {
            row: 2,
            outcome: Outcome::Created,
            learner_id: "0191".to_owned(),
            login: "paul.martin".to_owned(),
            stay_id: "0192".to_owned(),
            errors: Vec::new(),
            possible_duplicates: Vec::new(),
            duplicate_of_row: None,
        };
        let mut written = Vec::new();
        write_results(&mut written, b';', true, &results[..2]).expect("written");
        assert_eq!(
            String::from_utf8(written).expect("UTF-8"),
            "\u{feff}row;outcome;learner_id;login;stay_id;errors;possible_duplicates\n\
             2;created;0191;paul.martin;0192;;\n\
             3;rejected;;;;email: required | end_date: before stay.start_date, really;\n"
        );
        let mut written = Vec::new();
        write_results(&mut written, b',', false, &results[1..2]).expect("written");
        assert!(String::from_utf8(written).expect("UTF-8").ends_with(
            "3,rejected,,,,\"email: required | end_date: before stay.start_date, really\",\n"
        ));

        let report = Report {
            results,
            chunks_answered: 1,
            failure: None,
        };
        let summary = report.summary(
            Path::new("cohort.csv"),
            Path::new("cohort.results.csv"),
            false,
        );
        assert!(
            summary.starts_with("cohort.csv: 58 rows\n  created                  1\n"),
            "{summary}"
        );
        assert!(
            summary.contains("  rejected                57\n"),
            "{summary}"
        );
        assert!(!summary.contains("no_result"), "{summary}");
        assert!(
            summary.contains("  row 3: email: required | end_date"),
            "{summary}"
        );
        assert!(summary.contains("  row 52: "), "{summary}");
        assert!(!summary.contains("  row 53: "), "{summary}");
        assert!(
            summary.contains("  … and 7 more (see cohort.results.csv)\n"),
            "{summary}"
        );
    }

    #[test]
    fn default_results_path_is_beside_the_input() {
        assert_eq!(
            ResultsFile::default_path(Path::new("imports/ifsi-2026.csv"), false),
            Path::new("imports/ifsi-2026.results.csv")
        );
        assert_eq!(
            ResultsFile::default_path(Path::new("ifsi-2026.csv"), true),
            Path::new("ifsi-2026.dry-run.results.csv")
        );
    }

    #[test]
    fn json_lines() {
        let result =
            RowResult::unanswered(4, Outcome::Rejected, vec![RowError::new("row", "short")]);
        assert_eq!(
            result.to_json(),
            json!({
                "row": 4, "outcome": "rejected", "learner_id": "", "login": "", "stay_id": "",
                "errors": [{ "field": "row", "reason": "short" }], "possible_duplicates": [],
                "duplicate_of_row": null,
            })
        );
    }
}
