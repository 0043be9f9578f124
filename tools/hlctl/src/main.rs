//! `hlctl`: the operators' command line for hosted-learners.
//!
//! Talks to the services' gRPC APIs with a bearer token (`--token` or `HLCTL_TOKEN`),
//! over TLS for `https://` addresses (`--ca-path`, and `--cert-path` with `--key-path`
//! for mutual TLS); prints text for people and, with `--json`, JSON for scripts. Exit codes: 0 done, 1
//! failed, 2 not everything registered (`register`, `import stays`), 3 denied
//! (`check`), 64 usage. Every command is described in docs/hlctl.md.
#![allow(clippy::print_stdout)]

use std::{io::Read, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hosted_contracts::v1;
use hosted_hlctl::{
    agreements, audit, cards, entitlements, generate, import,
    learners::{self, print_learner},
    payments, persons,
    rebuild::{self, Derived, Owner},
    rpc::{self, authorized, connect, server_error},
    stats, stays, units, values,
};
use rand::RngCore;
use serde_json::json;

/// Where `--help` lists the global options (in this order): after each command's
/// own, which are the ones looked for.
const GLOBAL: usize = 1000;

#[derive(Debug, Parser)]
#[command(name = "hlctl", version, about = "Operate hosted-learners")]
struct Cli {
    /// Intake's gRPC address.
    #[arg(
        long,
        env = "HLCTL_INTAKE",
        default_value = "http://127.0.0.1:50051",
        global = true,
        display_order = GLOBAL
    )]
    intake: String,
    /// Directory's gRPC address.
    #[arg(
        long,
        env = "HLCTL_DIRECTORY",
        default_value = "http://127.0.0.1:50054",
        global = true,
        display_order = GLOBAL + 1
    )]
    directory: String,
    /// Entitlement's gRPC address.
    #[arg(
        long,
        env = "HLCTL_ENTITLEMENT",
        default_value = "http://127.0.0.1:50052",
        global = true,
        display_order = GLOBAL + 2
    )]
    entitlement: String,
    /// Cards's gRPC address.
    #[arg(
        long,
        env = "HLCTL_CARDS",
        default_value = "http://127.0.0.1:50053",
        global = true,
        display_order = GLOBAL + 3
    )]
    cards: String,
    /// Bearer token of the caller.
    #[arg(
        long,
        env = "HLCTL_TOKEN",
        hide_env_values = true,
        global = true,
        display_order = GLOBAL + 4
    )]
    token: Option<String>,
    /// JSON output, for scripts.
    #[arg(long, global = true, display_order = GLOBAL + 5)]
    json: bool,
    /// The CA certificate (PEM) that signed the services' certificates, for
    /// `https://` addresses.
    #[arg(long, env = "HLCTL_CA_PATH", global = true, display_order = GLOBAL + 6)]
    ca_path: Option<PathBuf>,
    /// hlctl's own client certificate (PEM), for mutual TLS; with --key-path.
    #[arg(long, env = "HLCTL_CERT_PATH", global = true, display_order = GLOBAL + 7)]
    cert_path: Option<PathBuf>,
    /// The key (PEM) of --cert-path.
    #[arg(long, env = "HLCTL_KEY_PATH", global = true, display_order = GLOBAL + 8)]
    key_path: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Makes a new random caller token and prints it with the hash to configure.
    NewToken,
    /// Prints the SHA-256 to configure for a token (read from standard input when absent).
    HashToken {
        /// The token to hash. Not named `token`: clap would fill it from the global
        /// `--token` (`HLCTL_TOKEN`, the operator's own token).
        #[arg(value_name = "TOKEN")]
        input: Option<String>,
    },
    /// Registers a person and one stay (role deve).
    Register(Box<RegisterArgs>),
    /// Shows a learner by login, hosted-learner number or id; finds learners;
    /// corrects identity data.
    Learner(learners::LearnerArgs),
    /// What the GDPR gives a person a right to: erasure on request (role deve), the
    /// export of everything held about them (role dosi).
    Person {
        #[command(subcommand)]
        action: persons::PersonAction,
    },
    /// Changes a stay's sponsor and what the sponsor asks for, extends, ends early or
    /// cancels it (role deve).
    Stay {
        #[command(subcommand)]
        action: stays::StayAction,
    },
    /// Agreements (conventions) with partner institutions.
    Agreement {
        #[command(subcommand)]
        action: agreements::AgreementAction,
    },
    /// Lists the stays whose payment is due (roles finance, deve) and records payments,
    /// for one stay or a cohort (role finance).
    Payment {
        #[command(subcommand)]
        action: payments::PaymentAction,
    },
    /// Counts hosted learners on a day, in all and by population, agreement and
    /// sponsor unit (roles dosi, deve).
    Stats(stats::StatsArgs),
    /// Lists the population catalogue.
    Populations,
    /// Adds a population to the catalogue or changes one (role deve).
    SavePopulation(SavePopulationArgs),
    /// The unit catalogue: lists it (any role), or saves a unit (`units save`, role
    /// deve).
    Units {
        #[command(subcommand)]
        action: Option<units::UnitsAction>,
    },
    /// Whether a learner may use a resource now, or on a day (roles integrator, dosi).
    /// Exit code 0 when allowed, 3 when denied.
    Check(entitlements::CheckArgs),
    /// A learner's grants: each resource with its days, rule, policy version and stay
    /// (roles dosi, deve, integrator).
    Grants(entitlements::GrantsArgs),
    /// Every resource of the policy, granted to a learner or not, and why (roles dosi,
    /// deve).
    Explain(entitlements::ExplainArgs),
    /// The entitlement policy: simulate a candidate, activate it (role dosi).
    Policy {
        #[command(subcommand)]
        action: entitlements::PolicyAction,
    },
    /// The card office: cards, the print queue and batches, each step of a card's
    /// life, replacements (role card-office; `show` and `list` also dosi).
    Card {
        #[command(subcommand)]
        action: cards::CardAction,
    },
    /// The story of a learner, an agreement or a card across the services, oldest
    /// first: when, which service, who, what, why (role dosi; an agreement also
    /// legal).
    Audit {
        #[command(subcommand)]
        action: audit::AuditAction,
    },
    /// The e-purse (Izly) right-holders for the CROUS (role card-office).
    Epurse {
        #[command(subcommand)]
        action: cards::EpurseAction,
    },
    /// Shows an account as directory projects it and as LDAP holds it, their
    /// differences (a missing entry included) and the LDAP writes made for it
    /// (role dosi).
    Account { login: String },
    /// Writes one account again from its projection, through the publisher; with
    /// `--service`, publishes that service's current state again, all of it or one
    /// learner's, for the consumers that lost it (a lost stream) (role dosi).
    Republish {
        /// The account to write again (directory), or the learner whose state to
        /// publish again (as --login).
        login: Option<String>,
        /// Publish this service's current state again: intake's learners and
        /// agreements, entitlement's grants, cards' cards; directory writes one
        /// account again (a login is needed).
        #[arg(long, value_enum)]
        service: Option<RepublishService>,
        /// Only this learner (login or id).
        #[arg(long = "login", value_name = "LOGIN")]
        only: Option<String>,
        /// Learners (or cards) per call.
        #[arg(long, default_value_t = 1000,
              value_parser = clap::value_parser!(i32).range(1..=5000))]
        page: i32,
    },
    /// Rebuilds a service's database, lost or restored from an old backup, from the
    /// services it derives from, each restating its current state: entitlement from
    /// intake; cards from intake and entitlement; directory from intake, entitlement
    /// and cards, with its publication held meanwhile (role dosi). Safe to run again
    /// and to interrupt.
    Rebuild(RebuildArgs),
    /// Compares every account with the entries under the managed base and reports
    /// the drift; `--apply` repairs exactly that (role dosi). Exit code 2 when a dry
    /// run finds drift.
    Reconcile {
        /// Repair the drift found (an add, a modify of the differing attributes, or a
        /// delete), instead of only reporting it.
        #[arg(long)]
        apply: bool,
        /// Only this account and the entry at its DN.
        #[arg(long)]
        login: Option<String>,
    },
    /// Waits until a service reports SERVING (gRPC health), at most `--wait` seconds.
    Health {
        /// e.g. http://127.0.0.1:50051
        address: String,
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// One part of the service instead of the whole, e.g. hosted.directory.publisher
        /// (NOT_SERVING while LDAP is away).
        #[arg(long, value_name = "NAME", default_value = "")]
        service: String,
    },
    /// Dead letters of a service's consumers (role dosi).
    DeadLetters {
        /// Whose dead letters: each service keeps those of its own consumers.
        #[arg(long, value_enum, default_value_t = DeadLetterOwner::Directory, global = true)]
        service: DeadLetterOwner,
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Cohort imports from CSV files (see docs/cohort-import.md).
    Import {
        #[command(subcommand)]
        action: ImportAction,
    },
}

#[derive(Debug, Subcommand)]
enum ImportAction {
    /// Registers every row of a cohort file (role deve). Exit code 0 when every row
    /// was accepted, 2 when some were not (rejected, possible duplicates), 1 when the
    /// import failed.
    Stays(ImportStaysArgs),
    /// Writes a realistic cohort file, with invalid rows, for tests and benchmarks.
    Generate(GenerateArgs),
}

#[derive(Debug, clap::Args)]
struct ImportStaysArgs {
    /// The cohort file: CSV in UTF-8, `,` or `;`, a header row naming the columns.
    file: PathBuf,
    /// Rows per ImportStays call (intake takes at most 1000).
    #[arg(long, default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=import::MAX_BATCH_SIZE))]
    batch_size: u64,
    /// Validate and match without writing anything.
    #[arg(long)]
    dry_run: bool,
    /// Where to write one result per row [default: <FILE's stem>.results.csv beside
    /// FILE, or <stem>.dry-run.results.csv for a dry run].
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
    /// Seconds to wait for intake's answer to one chunk before trying it again.
    #[arg(long, value_name = "SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

#[derive(Debug, clap::Args)]
struct GenerateArgs {
    file: PathBuf,
    /// Rows in all, the invalid ones included.
    #[arg(long, default_value_t = 2000)]
    rows: usize,
    /// Rows that intake (or the reader) must reject, each wrong in one way.
    #[arg(long, default_value_t = 0)]
    bad: usize,
    /// The same seed, on the same day, writes the same file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write it as a French spreadsheet exports it: `;`, DD/MM/YYYY, byte-order
    /// mark, CRLF, header in capitals.
    #[arg(long)]
    spreadsheet: bool,
}

#[derive(Debug, clap::Args)]
struct RebuildArgs {
    /// The service whose database is to be rebuilt.
    #[arg(value_enum)]
    service: Derived,
    /// Learners (or cards) per call.
    #[arg(long, default_value_t = 1000,
          value_parser = clap::value_parser!(i32).range(1..=5000))]
    page: i32,
    /// Seconds to wait for directory to apply the restated events, then for its
    /// accounts to be compared with LDAP.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    wait: u64,
    /// Rebuild cards even though it holds no card (none was ever made): otherwise
    /// refused, a lost cards database comes back from its backup.
    #[arg(long)]
    no_cards_yet: bool,
}

/// Whose state `republish --service` publishes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RepublishService {
    Intake,
    Entitlement,
    Cards,
    Directory,
}

/// The services that consume events, hence keep dead letters.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DeadLetterOwner {
    Directory,
    Entitlement,
    Cards,
}

#[derive(Debug, Subcommand)]
enum DeadLetterAction {
    List,
    /// Applies dead letters again (all, or the given sequences).
    Replay {
        sequences: Vec<u64>,
    },
}

#[derive(Debug, clap::Args)]
struct SavePopulationArgs {
    /// The code, e.g. ERASMUS_INCOMING (A-Z, 0-9, _).
    code: String,
    #[arg(long)]
    label: String,
    /// The SupAnn population code it maps to, e.g. AHL.
    #[arg(long)]
    supann: String,
    /// Stays of this population need an agreement.
    #[arg(long)]
    agreement_required: bool,
    /// Stays without an agreement must be paid for.
    #[arg(long)]
    payment_required: bool,
    /// What a stay costs, in euros (170.00, 170,50): `payment due` gives it as the
    /// amount owed. Not stated when left out.
    #[arg(long, value_name = "EUROS", value_parser = values::cents)]
    fee: Option<i64>,
    #[arg(long)]
    default_days: i32,
    #[arg(long)]
    max_days: i32,
    /// Why (kept in the audit trail).
    #[arg(long)]
    reason: String,
}

#[derive(Debug, clap::Args)]
struct RegisterArgs {
    /// Register a new person even though a near match exists.
    #[arg(long)]
    confirm_new_person: bool,
    #[arg(long)]
    family_name: String,
    #[arg(long, default_value = "")]
    birth_name: String,
    #[arg(long)]
    given_names: String,
    /// YYYY-MM-DD
    #[arg(long)]
    birth_date: String,
    #[arg(long)]
    email: String,
    #[arg(long, default_value = "")]
    ine: String,
    /// Population code, e.g. IFSI (see `hlctl populations`).
    #[arg(long)]
    population: String,
    #[arg(long)]
    sponsor_unit: String,
    #[arg(long, default_value = "")]
    agreement_id: String,
    /// YYYY-MM-DD
    #[arg(long)]
    start_date: String,
    /// YYYY-MM-DD
    #[arg(long)]
    end_date: String,
    /// A resource the sponsor asks for, e.g. premises (which the policy's
    /// `requested` condition grants): repeat it, or separate names with commas.
    #[arg(
        long,
        value_name = "RESOURCE",
        value_delimiter = ',',
        value_parser = values::resource
    )]
    request: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Not clap's 2 for a usage error: `import stays` says "rows rejected" with 2,
        // and a script must not take a mistyped option for that. 64 is EX_USAGE, as
        // the services use.
        Err(error) => {
            // Nothing better to do when standard error is gone.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                rpc::EXIT_USAGE
            } else {
                0
            });
        }
    };
    match run(cli).await {
        Ok(code) => code,
        Err(error) => ExitCode::from(rpc::report(&error)),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    rpc::use_tls(rpc::ClientTls {
        ca_path: cli.ca_path.clone(),
        cert_path: cli.cert_path.clone(),
        key_path: cli.key_path.clone(),
    });
    let token = cli.token.as_deref();
    let addresses = cli_addresses(&cli);
    match cli.command {
        Command::NewToken => {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let token = hex::encode(bytes);
            let hash = hosted_platform::auth::hash_token(&token);
            if cli.json {
                println!("{}", json!({ "token": token, "token_sha256": hash }));
            } else {
                println!("token:        {token}\ntoken_sha256: {hash}");
            }
        }
        Command::HashToken { input } => {
            let token = match input {
                Some(token) => token,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_to_string(&mut line)?;
                    line.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            println!("{}", hosted_platform::auth::hash_token(&token));
        }
        Command::Register(args) => {
            let mut client =
                v1::intake_service_client::IntakeServiceClient::new(connect(&cli.intake).await?);
            let request = v1::RegisterStayRequest {
                person: Some(v1::PersonInput {
                    family_name: args.family_name,
                    birth_name: args.birth_name,
                    given_names: args.given_names,
                    birth_date: args.birth_date,
                    email: args.email,
                    ine: args.ine,
                    phone: String::new(),
                }),
                stay: Some(v1::StayInput {
                    population: args.population,
                    sponsor_unit: args.sponsor_unit,
                    sponsor_login: String::new(),
                    agreement_id: args.agreement_id,
                    start_date: args.start_date,
                    end_date: args.end_date,
                    requested_resources: args.request,
                }),
                confirm_new_person: args.confirm_new_person,
            };
            let response = client
                .register_stay(authorized(token, request)?)
                .await
                .map_err(server_error)?
                .into_inner();
            if !response.possible_duplicates.is_empty() {
                let candidates: Vec<serde_json::Value> = response
                    .possible_duplicates
                    .iter()
                    .map(|candidate| {
                        json!({
                            "learner_id": candidate.learner_id,
                            "login": candidate.login,
                            "reason": candidate.reason,
                            "reason_code": candidate.reason_code,
                        })
                    })
                    .collect();
                if cli.json {
                    println!("{}", json!({ "possible_duplicates": candidates }));
                } else {
                    println!("not registered: this may be a person already registered:");
                    for candidate in &response.possible_duplicates {
                        println!(
                            "  {}  {}  ({})",
                            candidate.login, candidate.learner_id, candidate.reason
                        );
                    }
                    println!(
                        "check with `hlctl learner LOGIN`; if it is someone else, run again with --confirm-new-person; \
                         if it is them with a wrong INE on record, correct it with `hlctl learner amend` and register again"
                    );
                }
                return Ok(ExitCode::from(2));
            }
            let learner = response.learner.unwrap_or_default();
            if cli.json {
                println!(
                    "{}",
                    json!({ "new_person": response.new_person, "stay_id": response.stay_id, "learner": learners::learner_json(&learner) })
                );
            } else {
                println!(
                    "{} stay {}",
                    if response.new_person {
                        "registered"
                    } else {
                        "added to existing learner:"
                    },
                    response.stay_id
                );
                print_learner(&learner, false);
            }
        }
        Command::Learner(args) => {
            let mut intake = rpc::Intake::new(&cli.intake, token);
            learners::run(args, &mut intake, cli.json).await?;
        }
        Command::Person { action } => {
            let mut intake = rpc::Intake::new(&cli.intake, token);
            persons::run(action, &mut intake, &sources(&addresses, token)?, cli.json).await?;
        }
        Command::Stay { action } => {
            let mut intake = rpc::Intake::new(&cli.intake, token);
            stays::run(action, &mut intake, cli.json).await?;
        }
        Command::Agreement { action } => {
            let mut intake = rpc::Intake::new(&cli.intake, token);
            agreements::run(action, &mut intake, cli.json).await?;
        }
        Command::Payment { action } => {
            let mut intake = rpc::Intake::new(&cli.intake, token);
            payments::run(action, &mut intake, cli.json).await?;
        }
        Command::Stats(args) => {
            let mut intake = rpc::Intake::new(&cli.intake, token);
            stats::run(args, &mut intake, cli.json).await?;
        }
        Command::Units { action } => {
            let mut intake = rpc::Intake::new(&cli.intake, token);
            let action = action.unwrap_or(units::UnitsAction::List);
            units::run(action, &mut intake, cli.json).await?;
        }
        Command::Check(args) => {
            let mut entitlement = rpc::Entitlement::new(&cli.entitlement, token);
            let code = entitlements::check(args, &mut entitlement, cli.json).await?;
            return Ok(ExitCode::from(code));
        }
        Command::Grants(args) => {
            let mut entitlement = rpc::Entitlement::new(&cli.entitlement, token);
            entitlements::grants(args, &mut entitlement, cli.json).await?;
        }
        Command::Explain(args) => {
            let mut entitlement = rpc::Entitlement::new(&cli.entitlement, token);
            entitlements::explain(args, &mut entitlement, cli.json).await?;
        }
        Command::Policy { action } => {
            let mut entitlement = rpc::Entitlement::new(&cli.entitlement, token);
            entitlements::policy(action, &mut entitlement, cli.json).await?;
        }
        Command::Card { action } => {
            let mut cards = rpc::Cards::new(&cli.cards, token);
            cards::card(action, &mut cards, cli.json).await?;
        }
        Command::Epurse { action } => {
            let mut cards = rpc::Cards::new(&cli.cards, token);
            cards::epurse(action, &mut cards, cli.json).await?;
        }
        Command::SavePopulation(args) => {
            let mut client =
                v1::intake_service_client::IntakeServiceClient::new(connect(&cli.intake).await?);
            let request = v1::SavePopulationRequest {
                population: Some(v1::Population {
                    code: args.code,
                    label: args.label,
                    supann_population: args.supann,
                    agreement_required: args.agreement_required,
                    default_duration_days: args.default_days,
                    max_duration_days: args.max_days,
                    payment_required: args.payment_required,
                    fee_cents: args.fee,
                }),
                reason: args.reason,
            };
            let saved = client
                .save_population(authorized(token, request)?)
                .await
                .map_err(server_error)?
                .into_inner();
            let population = saved.population.unwrap_or_default();
            if cli.json {
                println!(
                    "{}",
                    json!({ "code": population.code, "created": saved.created })
                );
            } else {
                println!(
                    "population {} {}",
                    population.code,
                    if saved.created { "added" } else { "changed" }
                );
            }
        }
        Command::Populations => {
            let mut client =
                v1::intake_service_client::IntakeServiceClient::new(connect(&cli.intake).await?);
            let populations = client
                .list_populations(authorized(token, v1::ListPopulationsRequest {})?)
                .await
                .map_err(server_error)?
                .into_inner()
                .populations;
            for population in populations {
                if cli.json {
                    println!(
                        "{}",
                        json!({
                            "code": population.code, "label": population.label,
                            "supann_population": population.supann_population,
                            "agreement_required": population.agreement_required,
                            "payment_required": population.payment_required,
                            "fee_cents": population.fee_cents,
                            "default_duration_days": population.default_duration_days,
                            "max_duration_days": population.max_duration_days,
                        })
                    );
                } else {
                    let mut notes: Vec<String> = Vec::new();
                    if population.agreement_required {
                        notes.push("agreement required".to_owned());
                    }
                    if population.payment_required {
                        notes.push("payment required".to_owned());
                    }
                    if let Some(fee) = population.fee_cents {
                        notes.push(format!("fee {} €", values::euros(fee)));
                    }
                    let notes = if notes.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", notes.join(", "))
                    };
                    println!(
                        "{:<22} {:<6} {}{notes}",
                        population.code, population.supann_population, population.label,
                    );
                }
            }
        }
        Command::Reconcile { apply, login } => {
            let mut client = v1::directory_service_client::DirectoryServiceClient::new(
                connect(&cli.directory).await?,
            );
            let login = login.unwrap_or_default();
            let report = client
                .reconcile(authorized(token, v1::ReconcileRequest { apply, login })?)
                .await
                .map_err(server_error)?
                .into_inner();
            if cli.json {
                let drifts: Vec<serde_json::Value> = report
                    .drifts
                    .iter()
                    .map(|drift| {
                        json!({
                            "dn": drift.dn, "learner_id": drift.learner_id, "kind": drift.kind,
                            "differences": drift.differences.iter().map(|d| json!({
                                "name": d.name, "desired": d.desired, "actual": d.actual,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    json!({
                        "accounts": report.accounts, "entries": report.entries,
                        "applied": report.applied, "drifts": drifts,
                    })
                );
            } else {
                let what = match (report.drifts.is_empty(), report.applied) {
                    (true, _) => "no drift".to_owned(),
                    (false, true) => format!("{} drift(s), repaired", report.drifts.len()),
                    (false, false) => format!(
                        "{} drift(s) (dry run: --apply repairs them)",
                        report.drifts.len()
                    ),
                };
                println!(
                    "{} accounts, {} entries under the managed base: {what}",
                    report.accounts, report.entries
                );
                for drift in &report.drifts {
                    let names: Vec<&str> =
                        drift.differences.iter().map(|d| d.name.as_str()).collect();
                    println!("  {:<9}  {}  {}", drift.kind, drift.dn, names.join(", "));
                }
            }
            if !report.drifts.is_empty() && !report.applied {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Account { login } => {
            let mut client = v1::directory_service_client::DirectoryServiceClient::new(
                connect(&cli.directory).await?,
            );
            let account = client
                .get_account(authorized(
                    token,
                    v1::GetAccountRequest {
                        key: Some(v1::get_account_request::Key::Login(login)),
                    },
                )?)
                .await
                .map_err(server_error)?
                .into_inner();
            let attributes = |list: &[v1::Attribute]| -> serde_json::Value {
                list.iter()
                    .map(|a| (a.name.clone(), json!(a.values)))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            };
            if cli.json {
                println!(
                    "{}",
                    json!({
                        "learner_id": account.learner_id, "dn": account.dn,
                        "version": account.version, "published_version": account.published_version,
                        "status": account.status().as_str_name(),
                        "desired": attributes(&account.desired), "actual": attributes(&account.actual),
                        "differences": account.differences.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
                        "entry_missing": account.entry_missing, "ldap_writes": account.ldap_writes,
                    })
                );
            } else {
                println!(
                    "{}  version {} published {} ({}), {} LDAP write(s)",
                    account.dn,
                    account.version,
                    account.published_version,
                    account.status().as_str_name(),
                    account.ldap_writes
                );
                if account.entry_missing {
                    println!(
                        "  entry missing from LDAP (hlctl republish or reconcile --apply writes it)"
                    );
                } else if account.differences.is_empty() {
                    println!("  no differences");
                }
                for attribute in &account.actual {
                    for value in &attribute.values {
                        println!("  {}: {value}", attribute.name);
                    }
                }
                for difference in &account.differences {
                    println!(
                        "  differs: {} wants {:?} has {:?}",
                        difference.name, difference.desired, difference.actual
                    );
                }
            }
        }
        Command::Republish {
            login,
            service,
            only,
            page,
        } => {
            let owner = match service {
                Some(RepublishService::Intake) => Some(Owner::Intake),
                Some(RepublishService::Entitlement) => Some(Owner::Entitlement),
                Some(RepublishService::Cards) => Some(Owner::Cards),
                Some(RepublishService::Directory) | None => None,
            };
            let learner = match (login, only) {
                (Some(_), Some(_)) => {
                    return rpc::usage("give the login once: LOGIN or --login LOGIN");
                }
                (one, other) => one.or(other),
            };
            if let Some(owner) = owner {
                let services = rebuild::Services {
                    intake: rpc::lazy(&cli.intake)?,
                    entitlement: rpc::lazy(&cli.entitlement)?,
                    cards: rpc::lazy(&cli.cards)?,
                    token,
                };
                let json = cli.json;
                let totals = services
                    .restate(owner, learner.as_deref(), page, async |totals| {
                        if !json {
                            print_restated(owner, totals);
                        }
                        Ok(())
                    })
                    .await?;
                if json {
                    println!("{}", restated_json(owner, &totals));
                }
                return Ok(ExitCode::SUCCESS);
            }
            let Some(login) = learner else {
                return rpc::usage("a login is needed: hlctl republish LOGIN");
            };
            let mut client = v1::directory_service_client::DirectoryServiceClient::new(
                connect(&cli.directory).await?,
            );
            let account = client
                .get_account(authorized(
                    token,
                    v1::GetAccountRequest {
                        key: Some(v1::get_account_request::Key::Login(login)),
                    },
                )?)
                .await
                .map_err(server_error)?
                .into_inner();
            let republished = client
                .republish_account(authorized(
                    token,
                    v1::RepublishAccountRequest {
                        learner_id: account.learner_id.clone(),
                    },
                )?)
                .await
                .map_err(server_error)?
                .into_inner()
                .account
                .unwrap_or(account);
            if cli.json {
                println!(
                    "{}",
                    json!({
                        "learner_id": republished.learner_id, "dn": republished.dn,
                        "version": republished.version,
                        "status": republished.status().as_str_name(),
                    })
                );
            } else {
                println!(
                    "{}  version {}: to be written again ({})",
                    republished.dn,
                    republished.version,
                    republished.status().as_str_name()
                );
            }
        }
        Command::Audit { action } => {
            audit::run(action, &sources(&addresses, token)?, cli.json).await?;
        }
        Command::Rebuild(args) => rebuild_derived(&addresses, token, &args, cli.json).await?,
        Command::Health {
            address,
            wait,
            service,
        } => {
            use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
            loop {
                let status = match connect(&address).await {
                    Ok(channel) => HealthClient::new(channel)
                        .check(HealthCheckRequest {
                            service: service.clone(),
                        })
                        .await
                        .map(|response| response.into_inner().status().as_str_name().to_owned())
                        .map_err(|status| status.message().to_owned()),
                    Err(error) => Err(format!("{error:#}")),
                };
                match status {
                    Ok(serving) if serving == "SERVING" => {
                        println!("{address}: SERVING");
                        break;
                    }
                    other if std::time::Instant::now() >= deadline => {
                        bail!("{address}: {}", other.unwrap_or_else(|error| error))
                    }
                    _ => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
                }
            }
        }
        Command::DeadLetters { service, action } => {
            let channel = connect(match service {
                DeadLetterOwner::Directory => &cli.directory,
                DeadLetterOwner::Entitlement => &cli.entitlement,
                DeadLetterOwner::Cards => &cli.cards,
            })
            .await?;
            match action {
                DeadLetterAction::List => {
                    let letters = match service {
                        DeadLetterOwner::Directory => {
                            v1::directory_service_client::DirectoryServiceClient::new(channel)
                                .list_dead_letters(authorized(
                                    token,
                                    v1::ListDeadLettersRequest {},
                                )?)
                                .await
                                .map(|response| response.into_inner().dead_letters)
                        }
                        DeadLetterOwner::Entitlement => {
                            v1::entitlement_service_client::EntitlementServiceClient::new(channel)
                                .list_dead_letters(authorized(
                                    token,
                                    v1::EntitlementServiceListDeadLettersRequest {},
                                )?)
                                .await
                                .map(|response| response.into_inner().dead_letters)
                        }
                        DeadLetterOwner::Cards => {
                            v1::cards_service_client::CardsServiceClient::new(channel)
                                .list_dead_letters(authorized(
                                    token,
                                    v1::CardsServiceListDeadLettersRequest {},
                                )?)
                                .await
                                .map(|response| response.into_inner().dead_letters)
                        }
                    }
                    .map_err(server_error)?;
                    for letter in letters {
                        if cli.json {
                            println!(
                                "{}",
                                json!({
                                    "sequence": letter.sequence, "event_id": letter.event_id,
                                    "subject": letter.original_subject, "consumer": letter.consumer,
                                    "error": letter.error, "deliveries": letter.deliveries,
                                })
                            );
                        } else {
                            println!(
                                "{:>6} {} {} after {} deliveries: {}",
                                letter.sequence,
                                letter.original_subject,
                                letter.event_id,
                                letter.deliveries,
                                letter.error
                            );
                        }
                    }
                }
                DeadLetterAction::Replay { sequences } => {
                    let (replayed, failed) = match service {
                        DeadLetterOwner::Directory => {
                            v1::directory_service_client::DirectoryServiceClient::new(channel)
                                .replay_dead_letters(authorized(
                                    token,
                                    v1::ReplayDeadLettersRequest { sequences },
                                )?)
                                .await
                                .map(|response| {
                                    let outcome = response.into_inner();
                                    (outcome.replayed, outcome.failed)
                                })
                        }
                        DeadLetterOwner::Entitlement => {
                            v1::entitlement_service_client::EntitlementServiceClient::new(channel)
                                .replay_dead_letters(authorized(
                                    token,
                                    v1::EntitlementServiceReplayDeadLettersRequest { sequences },
                                )?)
                                .await
                                .map(|response| {
                                    let outcome = response.into_inner();
                                    (outcome.replayed, outcome.failed)
                                })
                        }
                        DeadLetterOwner::Cards => {
                            v1::cards_service_client::CardsServiceClient::new(channel)
                                .replay_dead_letters(authorized(
                                    token,
                                    v1::CardsServiceReplayDeadLettersRequest { sequences },
                                )?)
                                .await
                                .map(|response| {
                                    let outcome = response.into_inner();
                                    (outcome.replayed, outcome.failed)
                                })
                        }
                    }
                    .map_err(server_error)?;
                    if cli.json {
                        println!("{}", json!({ "replayed": replayed, "failed": failed }));
                    } else {
                        println!("replayed {replayed}, still failing {failed}");
                    }
                }
            }
        }
        Command::Import {
            action: ImportAction::Stays(args),
        } => {
            // Checked before the file is read: every chunk needs it.
            authorized(token, ())?;
            // Lazy: an intake that is away answers the first chunk UNAVAILABLE, which
            // is retried and reported like any other chunk's.
            let channel = rpc::lazy(&cli.intake)?;
            let mut client = v1::intake_service_client::IntakeServiceClient::new(channel);
            let command = import::ImportCommand {
                file: args.file,
                results: args.results,
                options: import::SendOptions {
                    batch_size: usize::try_from(args.batch_size).context("--batch-size")?,
                    dry_run: args.dry_run,
                    timeout: Duration::from_secs(args.timeout),
                    ..import::SendOptions::default()
                },
                json: cli.json,
            };
            let code = import::run(&command, async |request| {
                let request = authorized(token, request)
                    .map_err(|error| tonic::Status::unauthenticated(format!("{error:#}")))?;
                client
                    .import_stays(request)
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await?;
            return Ok(ExitCode::from(code));
        }
        Command::Import {
            action: ImportAction::Generate(args),
        } => {
            let layout = if args.spreadsheet {
                generate::Layout::Spreadsheet
            } else {
                generate::Layout::Plain
            };
            let today = hosted_platform::clock::Clock::default().today();
            let generated = generate::generate(args.rows, args.bad, args.seed, today, layout)?;
            std::fs::write(&args.file, &generated.bytes)
                .with_context(|| format!("writing {}", args.file.display()))?;
            if cli.json {
                println!(
                    "{}",
                    json!({
                        "file": args.file.display().to_string(), "rows": args.rows,
                        "seed": args.seed,
                        "bad_rows": generated.bad.iter().map(|(row, flaw)| json!({
                            "row": row, "flaw": flaw.as_str(),
                        })).collect::<Vec<_>>(),
                    })
                );
            } else {
                println!(
                    "{}: {} rows, {} of them invalid",
                    args.file.display(),
                    args.rows,
                    generated.bad.len()
                );
                if !generated.bad.is_empty() {
                    let rows: Vec<String> = generated
                        .bad
                        .iter()
                        .map(|(row, flaw)| format!("{row} ({})", flaw.as_str()))
                        .collect();
                    println!("invalid rows: {}", rows.join(", "));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The services' addresses, apart from the parsed command line.
struct Addresses {
    intake: String,
    entitlement: String,
    cards: String,
    directory: String,
}

fn cli_addresses(cli: &Cli) -> Addresses {
    Addresses {
        intake: cli.intake.clone(),
        entitlement: cli.entitlement.clone(),
        cards: cli.cards.clone(),
        directory: cli.directory.clone(),
    }
}

/// The four services at their addresses, for the caller: nothing is connected until
/// the first call.
fn sources<'a>(
    addresses: &Addresses,
    token: Option<&'a str>,
) -> anyhow::Result<audit::Sources<'a>> {
    Ok(audit::Sources {
        intake: rpc::lazy(&addresses.intake)?,
        entitlement: rpc::lazy(&addresses.entitlement)?,
        cards: rpc::lazy(&addresses.cards)?,
        directory: rpc::lazy(&addresses.directory)?,
        token,
    })
}

fn print_restated(owner: Owner, totals: &rebuild::Restated) {
    let agreements = if totals.agreements > 0 {
        format!(" and {} agreement(s)", totals.agreements)
    } else {
        String::new()
    };
    println!(
        "{}: {} {}{agreements} restated",
        owner.as_str(),
        totals.items,
        rebuild::items_of(owner)
    );
}

fn restated_json(owner: Owner, totals: &rebuild::Restated) -> serde_json::Value {
    json!({
        "service": owner.as_str(),
        rebuild::items_of(owner): totals.items,
        "agreements": totals.agreements,
        "pages": totals.pages,
        "unpublished_pages": totals.unpublished_pages,
    })
}

/// `hlctl rebuild SERVICE`: the sources restate their state, in order; for directory,
/// with its publication held until it has applied them all.
async fn rebuild_derived(
    addresses: &Addresses,
    token: Option<&str>,
    args: &RebuildArgs,
    json: bool,
) -> anyhow::Result<()> {
    let services = rebuild::Services {
        intake: rpc::lazy(&addresses.intake)?,
        entitlement: rpc::lazy(&addresses.entitlement)?,
        cards: rpc::lazy(&addresses.cards)?,
        token,
    };
    let publication = if args.service == Derived::Directory {
        Some(rebuild::Publication {
            directory: connect(&addresses.directory).await?,
            token,
        })
    } else {
        None
    };
    let rebuilt = rebuild::rebuild(
        &services,
        publication.as_ref(),
        args.service,
        args.page,
        Duration::from_secs(args.wait),
        args.no_cards_yet,
        |progress| {
            if json {
                return;
            }
            match progress {
                rebuild::Progress::Held => println!(
                    "directory: publication held (it resumes by itself {} s after the last renewal)",
                    rebuild::HOLD.as_secs()
                ),
                rebuild::Progress::Restated(owner, totals) => print_restated(owner, totals),
                rebuild::Progress::EventsPending(0) | rebuild::Progress::AccountsPending(0) => {}
                rebuild::Progress::EventsPending(events) => {
                    println!("directory: {events} event(s) still to apply");
                }
                rebuild::Progress::Resumed => {
                    println!("directory: every restated event applied; publication resumed");
                }
                rebuild::Progress::AccountsPending(accounts) => {
                    println!("directory: {accounts} account(s) to compare with LDAP");
                }
            }
        },
    )
    .await?;
    let restated: Vec<serde_json::Value> = rebuilt
        .restated
        .iter()
        .map(|(owner, totals)| restated_json(*owner, totals))
        .collect();
    match rebuilt.accounts_pending {
        _ if json => println!(
            "{}",
            json!({
                "service": args.service.as_str(),
                "restated": restated,
                "accounts_pending": rebuilt.accounts_pending,
            })
        ),
        Some(0) => {
            println!(
                "directory: every account compared with LDAP (written only where it differed)"
            );
        }
        Some(accounts) => println!(
            "directory: {accounts} account(s) still to compare with LDAP (hlctl reconcile shows the drift)"
        ),
        None => println!(
            "{}: restated by {}; it applies them as its consumers take them",
            args.service.as_str(),
            args.service
                .sources()
                .iter()
                .map(|owner| owner.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    Ok(())
}
