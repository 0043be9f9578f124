//! Registration throughput against real PostgreSQL and NATS (not a test: figures).
//!
//! `cargo bench -p hosted-intake --bench registration` (after `eval "$(dev/deps env)"`)
//! measures, in one run:
//! - the cohort import of 10,000 rows through `ImportStays` (chunks of 1,000, as
//!   `hlctl import` sends them), into intake's database and outbox;
//! - single `RegisterStay` calls from 8 concurrent clients;
//! - the reference: a plain PostgreSQL batch insert (`INSERT … SELECT FROM unnest`)
//!   of the same rows into a table of the same shape, in the same server.
//!
//! Sizes: `BENCH_ROWS` (10000), `BENCH_SINGLE` (2000), `BENCH_CLIENTS` (8).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use hosted_contracts::v1;
use hosted_intake::{Application, IntakeConfig, config::RegistryConfig};
use hosted_platform::auth::Role;
use hosted_testkit::{TestCallers, TestDatabase};
use sqlx::Connection;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn day(offset: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    (hosted_platform::clock::Clock::default().today() + time::Duration::days(offset))
        .format(format)
        .unwrap()
}

/// Distinct persons: names from the index, birth dates spread over 40 years.
fn row(index: usize) -> v1::ImportRow {
    let letters: String = format!("{index:06}")
        .chars()
        .map(|d| (b'a' + (d as u8 - b'0')) as char)
        .collect();
    let birth = time::Date::from_calendar_date(1965, time::Month::January, 1).unwrap()
        + time::Duration::days((index * 7 % 14_600) as i64);
    let format = time::macros::format_description!("[year]-[month]-[day]");
    v1::ImportRow {
        row_number: index as i64 + 2,
        person: Some(v1::PersonInput {
            family_name: format!("Bench{letters}"),
            given_names: format!("Camille{}", &letters[3..]),
            birth_date: birth.format(format).unwrap(),
            email: format!("bench{index}@example.org"),
            ..Default::default()
        }),
        stay: Some(v1::StayInput {
            population: ["IFSI", "RECTORAT_PAF", "VAE", "SHORT_COURSE_SUFA"][index % 4].to_owned(),
            sponsor_unit: "IFSI-NORD".to_owned(),
            start_date: day(-5),
            end_date: day(60),
            ..Default::default()
        }),
        confirm_new_person: true,
    }
}

async fn start_intake() -> (
    std::net::SocketAddr,
    TestCallers,
    TestDatabase,
    tokio::sync::oneshot::Sender<()>,
) {
    let database = TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
    let namespace = hosted_testkit::namespace().await;
    let callers = TestCallers::new();
    let mut common = hosted_testkit::common_config(
        &database,
        hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace),
        &callers,
    );
    common.database.max_connections = 16;
    let app = Application::build(&IntakeConfig {
        common,
        registry: RegistryConfig::default(),
        retention: Default::default(),
    })
    .await
    .unwrap();
    let address = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    (address, callers, database, stop)
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

async fn cohort_import(rows: usize) -> Duration {
    let (address, callers, _database, stop) = start_intake().await;
    let mut client =
        v1::intake_service_client::IntakeServiceClient::new(hosted_testkit::channel(address).await)
            .max_decoding_message_size(64 << 20);
    let all: Vec<v1::ImportRow> = (0..rows).map(row).collect();
    let started = Instant::now();
    for chunk in all.chunks(1000) {
        let results = client
            .import_stays(hosted_testkit::authorized(
                v1::ImportStaysRequest {
                    rows: chunk.to_vec(),
                    dry_run: false,
                },
                callers.token(Role::Deve),
            ))
            .await
            .unwrap()
            .into_inner()
            .results;
        assert!(
            results
                .iter()
                .all(|r| r.outcome() == v1::ImportOutcome::Created),
            "every row created"
        );
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    elapsed
}

async fn single_calls(count: usize, clients: usize) -> Duration {
    let (address, callers, _database, stop) = start_intake().await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_index in 0..clients {
        let token = callers.token(Role::Deve).to_owned();
        let channel = hosted_testkit::channel(address).await;
        tasks.push(tokio::spawn(async move {
            let mut client = v1::intake_service_client::IntakeServiceClient::new(channel);
            for index in (client_index..count).step_by(clients) {
                let row = row(index);
                let request = v1::RegisterStayRequest {
                    person: row.person,
                    stay: row.stay,
                    confirm_new_person: true,
                };
                client
                    .register_stay(hosted_testkit::authorized(request, &token))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    elapsed
}

/// The same rows into a table of the persons' shape, in one unnest insert per 1,000.
async fn reference_insert(rows: usize) -> Duration {
    let database = TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
    hosted_platform::db::create_database_if_missing(&database.url.parse().unwrap())
        .await
        .unwrap();
    let mut conn = sqlx::PgConnection::connect(&database.url).await.unwrap();
    sqlx::query(
        "CREATE TABLE persons (learner_id uuid PRIMARY KEY, family_name text, given_names text,
                               birth_date date, email text, population text)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let all: Vec<v1::ImportRow> = (0..rows).map(row).collect();
    let started = Instant::now();
    for chunk in all.chunks(1000) {
        let ids: Vec<uuid::Uuid> = chunk.iter().map(|_| uuid::Uuid::now_v7()).collect();
        let person = |r: &v1::ImportRow| r.person.clone().unwrap();
        let families: Vec<String> = chunk.iter().map(|r| person(r).family_name).collect();
        let givens: Vec<String> = chunk.iter().map(|r| person(r).given_names).collect();
        let births: Vec<String> = chunk.iter().map(|r| person(r).birth_date).collect();
        let emails: Vec<String> = chunk.iter().map(|r| person(r).email).collect();
        let populations: Vec<String> = chunk
            .iter()
            .map(|r| r.stay.clone().unwrap().population)
            .collect();
        sqlx::query(
            "INSERT INTO persons SELECT id, f, g, b::date, e, p
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(id, f, g, b, e, p)",
        )
        .bind(&ids)
        .bind(&families)
        .bind(&givens)
        .bind(&births)
        .bind(&emails)
        .bind(&populations)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let rows = env_or("BENCH_ROWS", 10_000);
    let single = env_or("BENCH_SINGLE", 2_000);
    let clients = env_or("BENCH_CLIENTS", 8);

    let reference = reference_insert(rows).await;
    let import = cohort_import(rows).await;
    let singles = single_calls(single, clients).await;

    println!("registration benchmark (PostgreSQL and NATS on this machine)");
    println!(
        "  plain batch insert, {rows} rows (reference):  {:>8.0} rows/s  ({:.2} s)",
        rate(rows, reference),
        reference.as_secs_f64()
    );
    println!(
        "  ImportStays, {rows} rows in chunks of 1000:   {:>8.0} rows/s  ({:.2} s, {:.1}x the reference time)",
        rate(rows, import),
        import.as_secs_f64(),
        import.as_secs_f64() / reference.as_secs_f64()
    );
    println!(
        "  RegisterStay, {single} calls, {clients} clients:       {:>8.0} calls/s ({:.2} s)",
        rate(single, singles),
        singles.as_secs_f64()
    );
}
