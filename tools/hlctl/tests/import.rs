//! `hlctl import stays` against a real intake (PostgreSQL, NATS): a generated
//! 2,000-row file with 20 bad rows, imported twice; the resources sponsors ask for,
//! from their column, a bad name rejected under the column's name.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use common::{Services, day};
use hosted_platform::auth::Role;

mod common;

fn hlctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hlctl"))
}

#[tokio::test]
async fn a_generated_cohort_imports_once_whatever_the_number_of_runs() {
    // Arrange: an intake of the test's own, and the file.
    let services = Services::intake().await;
    let address = services.intake.clone();
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
    let token = services.token(Role::Deve);
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
    let mut conn = services.intake_database.connect().await;
    let counts: (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM persons), (SELECT count(*) FROM stays)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(counts, (1980, 1980));
    let summary = String::from_utf8_lossy(&second.stdout);
    assert!(summary.contains("1980"), "{summary}");

    services.stop().await;
    std::fs::remove_dir_all(&folder).unwrap();
}

#[tokio::test]
async fn requested_resources_come_from_their_column() {
    // Arrange: an intake of the test's own, and a file whose row 3 asks for a
    // resource that is not a name (a capital).
    let services = Services::intake().await;
    let address = services.intake.clone();
    let folder = std::env::temp_dir().join(format!("hlctl-requests-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("doctoral.csv");
    let (start, end) = (day(0), day(200));
    let row = |family: &str, given: &str, population: &str, unit: &str, requests: &str| {
        format!(
            "{family},{given},1995-05-05,{}@example.org,{population},{unit},{start},{end},{requests}\n",
            given.to_lowercase()
        )
    };
    let text = [
        "family_name,given_names,birth_date,email,population,sponsor_unit,start_date,end_date,requested_resources\n".to_owned(),
        row("Haddad", "Yanis", "VISITING_DOCTORAL", "LAB-CHEM", "premises|library"),
        row("Okafor", "Chidi", "VISITING_DOCTORAL", "LAB-CHEM", "Premises"),
        row("Kowalski", "Marta", "VISITING_DOCTORAL", "LAB-BIO", ""),
        row("Berthier", "Lucie", "SHORT_COURSE_SUFA", "SUFA", "online-resources; library"),
    ]
    .concat();
    std::fs::write(&file, text).unwrap();
    let token = services.token(Role::Deve);
    let hlctl_as_deve = move |args: Vec<String>| {
        let (address, token) = (address.clone(), token.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                hlctl()
                    .args(["--intake", &address, "--token", &token])
                    .args(args)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };

    // Act.
    let imported = hlctl_as_deve(vec![
        "import".to_owned(),
        "stays".to_owned(),
        file.display().to_string(),
        "--json".to_owned(),
    ])
    .await;

    // Assert: row 3 rejected under the column's name, the others created with their
    // lists (sorted by intake).
    assert_eq!(
        imported.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let results: Vec<serde_json::Value> = String::from_utf8(imported.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let outcomes: Vec<(u64, &str)> = results
        .iter()
        .map(|result| {
            (
                result["row"].as_u64().unwrap(),
                result["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (2, "created"),
            (3, "rejected"),
            (4, "created"),
            (5, "created")
        ]
    );
    let errors = results[1]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["field"], "requested_resources");
    assert!(
        errors[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("\"Premises\" is not a resource name"),
        "{errors:?}"
    );
    let saved = std::fs::read_to_string(folder.join("doctoral.results.csv")).unwrap();
    assert!(
        saved.contains(
            "\n3,rejected,,,,\"requested_resources: \"\"Premises\"\" is not a resource name"
        ),
        "{saved}"
    );
    let mut asked = Vec::new();
    for result in results
        .iter()
        .filter(|result| result["outcome"] == "created")
    {
        let login = result["login"].as_str().unwrap().to_owned();
        let shown = hlctl_as_deve(vec!["learner".to_owned(), login, "--json".to_owned()]).await;
        assert!(shown.status.success(), "{shown:?}");
        let learner: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        asked.push(learner["stays"][0]["requested_resources"].clone());
    }
    assert_eq!(
        asked,
        [
            serde_json::json!(["library", "premises"]),
            serde_json::json!([]),
            serde_json::json!(["library", "online-resources"]),
        ]
    );

    // The same file again, row 2 asking for something else: its stay is already
    // registered (unchanged) and keeps what it asked for; `hlctl stay sponsor
    // --request` is how requests change.
    std::fs::write(
        &file,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace("premises|library", "premises"),
    )
    .unwrap();
    let again = hlctl_as_deve(vec![
        "import".to_owned(),
        "stays".to_owned(),
        file.display().to_string(),
        "--json".to_owned(),
    ])
    .await;
    assert_eq!(again.status.code(), Some(2));
    let first: serde_json::Value = serde_json::from_str(
        String::from_utf8(again.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["outcome"], "unchanged");
    let login = first["login"].as_str().unwrap().to_owned();
    let shown = hlctl_as_deve(vec!["learner".to_owned(), login, "--json".to_owned()]).await;
    let learner: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        learner["stays"][0]["requested_resources"],
        serde_json::json!(["library", "premises"])
    );

    services.stop().await;
    std::fs::remove_dir_all(&folder).unwrap();
}

/// Intake's connection drops in the middle of a chunk (intake restarting): the chunk
/// is sent again, as docs/cohort-import.md promises, and the import completes.
#[tokio::test]
async fn a_chunk_cut_off_in_the_middle_is_sent_again() {
    // Arrange: hlctl reaches intake through a proxy that cuts the first connection
    // once part of the first chunk has gone through.
    let services = Services::intake().await;
    let target = services
        .intake
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = hosted_testkit::TcpProxy::start(target).await;
    proxy.cut_next_after(2000);
    let folder = std::env::temp_dir().join(format!("hlctl-cut-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("cohort.csv");
    let generated = hlctl()
        .args(["import", "generate"])
        .arg(&file)
        .args(["--rows", "100", "--bad", "0", "--seed", "11"])
        .output()
        .unwrap();
    assert!(generated.status.success());

    // Act
    let address = format!("http://{}", proxy.address());
    let token = services.token(Role::Deve);
    let output = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || {
            hlctl()
                .args(["--intake", &address, "--token", &token, "import", "stays"])
                .arg(&file)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };

    // Assert: one retry reported, every row imported once.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("retry 1 of"), "{stderr}");
    let mut conn = services.intake_database.connect().await;
    let stays: i64 = sqlx::query_scalar("SELECT count(*) FROM stays")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(stays, 100);
    proxy.stop().await;
    services.stop().await;
    std::fs::remove_dir_all(&folder).unwrap();
}
