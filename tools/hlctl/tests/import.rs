//! `hlctl import stays` against a real intake (PostgreSQL, NATS): a generated
//! 2,000-row file with 20 bad rows, imported twice.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use hosted_intake::{Application, IntakeConfig, config::RegistryConfig};
use hosted_platform::auth::Role;

fn hlctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hlctl"))
}

#[tokio::test]
async fn a_generated_cohort_imports_once_whatever_the_number_of_runs() {
    // Arrange: an intake of the test's own, and the file.
    let database = hosted_testkit::TestDatabase::new().await;
    let namespace = hosted_testkit::namespace().await;
    let callers = hosted_testkit::TestCallers::new();
    let app = Application::build(&IntakeConfig {
        common: hosted_testkit::common_config(
            &database,
            hosted_testkit::nats_config(&namespace),
            &callers,
        ),
        registry: RegistryConfig::default(),
    })
    .await
    .unwrap();
    let address = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let folder = std::env::temp_dir().join(format!("hlctl-import-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("cohort.csv");
    let generated = hlctl()
        .args(["import", "generate"])
        .arg(&file)
        .args(["--rows", "2000", "--bad", "20", "--seed", "7"])
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );

    // Act: the same file twice.
    let token = callers.token(Role::Deve).to_owned();
    let run = |address: String, token: String, file: std::path::PathBuf| {
        let output = hlctl()
            .args(["--intake", &address, "--token", &token, "import", "stays"])
            .arg(&file)
            .output()
            .unwrap();
        let results = std::fs::read_to_string(file.with_file_name("cohort.results.csv")).unwrap();
        (output, results)
    };
    let (first, first_results) = {
        let (address, token, file) = (address.clone(), token.clone(), file.clone());
        tokio::task::spawn_blocking(move || run(address, token, file))
            .await
            .unwrap()
    };
    let (second, second_results) = {
        let (address, token, file) = (address.clone(), token.clone(), file.clone());
        tokio::task::spawn_blocking(move || run(address, token, file))
            .await
            .unwrap()
    };

    // Assert: 20 rows rejected both times (exit code 2), 1,980 stays, no twin.
    assert_eq!(
        first.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(second.status.code(), Some(2));
    let rejected = |results: &str| {
        results
            .lines()
            .filter(|line| line.contains(",rejected,"))
            .count()
    };
    assert_eq!(rejected(&first_results), 20);
    assert_eq!(rejected(&second_results), 20);
    assert_eq!(
        first_results.lines().count(),
        2001,
        "a header and one line per row"
    );
    assert_eq!(
        second_results
            .lines()
            .filter(|line| line.contains(",unchanged,"))
            .count(),
        1980
    );
    let mut conn = database.connect().await;
    let counts: (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM persons), (SELECT count(*) FROM stays)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(counts, (1980, 1980));
    let summary = String::from_utf8_lossy(&second.stdout);
    assert!(summary.contains("1980"), "{summary}");

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    std::fs::remove_dir_all(&folder).unwrap();
}
