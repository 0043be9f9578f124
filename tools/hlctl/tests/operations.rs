//! The everyday intake operations of `hlctl` against a real intake (PostgreSQL,
//! NATS): an agreement's life, two learners under it, their stays, payments and
//! counts, each command run as the role it needs, with its exit code.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use hosted_intake::{Application, IntakeConfig, config::RegistryConfig};
use hosted_platform::auth::Role;
use serde_json::Value;

/// What one run of hlctl gave.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The output of a run that must have succeeded, as one JSON object.
    fn json(&self) -> Value {
        assert_eq!(self.code, Some(0), "{self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| panic!("{error}: {self:?}"))
    }

    /// One JSON object per line.
    fn json_lines(&self) -> Vec<Value> {
        assert_eq!(self.code, Some(0), "{self:?}");
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

struct Hlctl {
    address: String,
}

impl Hlctl {
    /// Runs hlctl as the caller with `token`, off the runtime that serves intake.
    async fn run(&self, token: &str, args: &[&str]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hlctl"));
        command
            .env_remove("HLCTL_TOKEN")
            .env_remove("RUST_BACKTRACE")
            .args(["--intake", &self.address, "--token", token])
            .args(args);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        Run {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }
}

fn day(offset: i64) -> String {
    (hosted_platform::clock::Clock::default().today() + time::Duration::days(offset)).to_string()
}

#[tokio::test]
async fn an_agreement_its_learners_their_stays_and_payments() {
    // Arrange: an intake of the test's own.
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
    let hlctl = Hlctl {
        address: format!("http://{}", app.local_addr()),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let legal = callers.token(Role::Legal).to_owned();
    let deve = callers.token(Role::Deve).to_owned();
    let finance = callers.token(Role::Finance).to_owned();
    let dosi = callers.token(Role::Dosi).to_owned();

    // An agreement, by legal only.
    let (start, end) = (day(-10), day(300));
    let create = [
        "agreement",
        "create",
        "--partner-name",
        "IFSI Nord",
        "--partner-uai",
        "0134009M",
        "--population",
        "IFSI",
        "--start",
        &start,
        "--end",
        &end,
        "--cap",
        "2",
        "--option",
        "library",
        "--payer",
        "partner",
    ];
    let refused = hlctl.run(&deve, &create).await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.starts_with("Error: PERMISSION_DENIED"),
        "{refused:?}"
    );
    let agreement = hlctl
        .run(&legal, &[&create[..], &["--json"]].concat())
        .await
        .json();
    let agreement_id = agreement["agreement_id"].as_str().unwrap().to_owned();
    assert_eq!(agreement["payer"], "partner");
    assert_eq!(agreement["options"], serde_json::json!(["library"]));

    // Two learners under it: one there now, one coming.
    let register = |family: &'static str, given: &'static str, from: String, to: String| {
        let agreement_id = agreement_id.clone();
        let hlctl = &hlctl;
        let deve = &deve;
        async move {
            let email = format!("{}@example.org", given.to_lowercase());
            hlctl
                .run(
                    deve,
                    &[
                        "register",
                        "--family-name",
                        family,
                        "--given-names",
                        given,
                        "--birth-date",
                        "2001-02-03",
                        "--email",
                        &email,
                        "--population",
                        "IFSI",
                        "--sponsor-unit",
                        "IFSI-NORD",
                        "--agreement-id",
                        &agreement_id,
                        "--start-date",
                        &from,
                        "--end-date",
                        &to,
                        "--json",
                    ],
                )
                .await
                .json()
        }
    };
    let first = register("Lefèvre", "Élodie", day(-5), day(100)).await;
    let second = register("Martin", "Léa", day(10), day(100)).await;
    let stay = first["stay_id"].as_str().unwrap().to_owned();
    let coming_stay = second["stay_id"].as_str().unwrap().to_owned();
    let login = first["learner"]["login"].as_str().unwrap().to_owned();
    let learner_id = first["learner"]["learner_id"].as_str().unwrap().to_owned();

    let shown = hlctl
        .run(&legal, &["agreement", "show", &agreement_id, "--json"])
        .await
        .json();
    assert_eq!(shown["current_head_count"], 2);
    let text = hlctl
        .run(&legal, &["agreement", "show", &agreement_id])
        .await;
    assert!(
        text.stdout
            .contains("stays now    2 (at most 2 stays at once)"),
        "{text:?}"
    );

    // Search: both, then one at a time with a note that there are more.
    let found = hlctl
        .run(
            &deve,
            &["learner", "search", "--agreement", &agreement_id, "--json"],
        )
        .await
        .json_lines();
    assert_eq!(found.len(), 2);
    let limited = hlctl
        .run(
            &dosi,
            &[
                "learner",
                "search",
                "--agreement",
                &agreement_id,
                "--limit",
                "1",
            ],
        )
        .await;
    assert_eq!(limited.code, Some(0), "{limited:?}");
    assert_eq!(limited.stdout.lines().count(), 1, "{limited:?}");
    assert!(
        limited.stderr.contains("more learners match"),
        "{limited:?}"
    );
    let by_name = hlctl
        .run(&deve, &["learner", "search", "--name", "lefevre elodie"])
        .await;
    assert!(by_name.stdout.starts_with(&login), "{by_name:?}");
    assert!(by_name.stdout.contains("IFSI until"), "{by_name:?}");

    // Amend by login, at the current version; then a stale version is refused.
    let amended = hlctl
        .run(
            &deve,
            &[
                "learner",
                "amend",
                &login,
                "--email",
                "elodie.lefevre@example.org",
                "--reason",
                "typo in the e-mail",
                "--json",
            ],
        )
        .await
        .json();
    assert_eq!(amended["email"], "elodie.lefevre@example.org");
    assert_eq!(amended["given_names"], "Élodie", "the rest is kept");
    let stale = hlctl
        .run(
            &deve,
            &[
                "learner",
                "amend",
                &learner_id,
                "--expected-version",
                "1",
                "--phone",
                "0601020304",
                "--reason",
                "phone",
            ],
        )
        .await;
    assert_eq!(stale.code, Some(1), "{stale:?}");
    assert!(stale.stderr.starts_with("Error: ABORTED: "), "{stale:?}");

    // Stays: a refused extension names its field on a line of its own.
    let refused = hlctl
        .run(
            &deve,
            &[
                "stay",
                "extend",
                &stay,
                "--to",
                &day(50),
                "--reason",
                "more",
            ],
        )
        .await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused
            .stderr
            .starts_with("Error: INVALID_ARGUMENT: invalid request\n"),
        "{refused:?}"
    );
    assert!(
        refused
            .stderr
            .contains("\n  new_end_date: must be after the current end date"),
        "{refused:?}"
    );
    let extended = hlctl
        .run(
            &deve,
            &[
                "stay",
                "extend",
                &stay,
                "--to",
                &day(200),
                "--reason",
                "more",
                "--json",
            ],
        )
        .await
        .json();
    assert_eq!(extended["stays"][0]["end_date"], day(200));
    let sponsored = hlctl
        .run(
            &deve,
            &[
                "stay",
                "sponsor",
                &stay,
                "--unit",
                "LAB-42",
                "--reason",
                "moved lab",
                "--json",
            ],
        )
        .await
        .json();
    assert_eq!(
        sponsored["stays"][0]["sponsor_unit"], "LAB-42",
        "{sponsored}"
    );
    let saved = hlctl
        .run(
            &deve,
            &[
                "save-population",
                "ERASMUS_INCOMING",
                "--label",
                "Incoming exchange students",
                "--supann",
                "AHL",
                "--default-days",
                "150",
                "--max-days",
                "365",
                "--reason",
                "new exchange",
                "--json",
            ],
        )
        .await
        .json();
    assert_eq!(saved["created"], true);
    let cancelled = hlctl
        .run(
            &deve,
            &["stay", "cancel", &coming_stay, "--reason", "withdrew"],
        )
        .await;
    assert_eq!(cancelled.code, Some(0), "{cancelled:?}");
    assert!(cancelled.stdout.contains("CANCELLED"), "{cancelled:?}");
    let bad_date = hlctl
        .run(
            &deve,
            &["stay", "end", &stay, "--on", "31/02/2027", "--reason", "x"],
        )
        .await;
    assert_eq!(bad_date.code, Some(64), "{bad_date:?}");

    // Payments: euros with a comma, sent as cents.
    let payment = hlctl
        .run(
            &finance,
            &[
                "payment",
                "record",
                &stay,
                "--amount",
                "170,50",
                "--paid-on",
                &day(0),
                "--payer",
                "partner",
                "--payer-name",
                "rectorat",
                "--json",
            ],
        )
        .await
        .json();
    assert_eq!(payment["amount_cents"], 17050);
    assert_eq!(payment["payer"], "partner");
    // Every stay under the agreement is paid now: a cohort payment is refused.
    let cohort = hlctl
        .run(
            &finance,
            &[
                "payment",
                "cohort",
                &agreement_id,
                "--amount",
                "1000",
                "--paid-on",
                &day(0),
                "--json",
            ],
        )
        .await;
    assert_eq!(cohort.code, Some(1), "{cohort:?}");
    assert!(cohort.stderr.contains("FAILED_PRECONDITION"), "{cohort:?}");

    // Counts.
    let stats = hlctl.run(&dosi, &["stats", "--json"]).await.json();
    assert_eq!(stats["total_learners"], 1);
    assert_eq!(stats["by_agreement"][&agreement_id], 1);
    let table = hlctl.run(&deve, &["stats"]).await;
    assert!(
        table.stdout.contains(&format!("{agreement_id} IFSI Nord")),
        "{table:?}"
    );

    // The agreement: amended (the rest kept), listed, ended with its stays.
    let amended = hlctl
        .run(
            &legal,
            &[
                "agreement",
                "amend",
                &agreement_id,
                "--cap",
                "5",
                "--reason",
                "amendment no. 1",
                "--json",
            ],
        )
        .await
        .json();
    assert_eq!(amended["head_count_cap"], 5);
    assert_eq!(amended["partner_uai"], "0134009M");
    assert_eq!(amended["options"], serde_json::json!(["library"]));
    assert_eq!(amended["version"], 2);
    let listed = hlctl
        .run(
            &legal,
            &["agreement", "list", "--population", "IFSI", "--json"],
        )
        .await
        .json_lines();
    assert!(
        listed
            .iter()
            .any(|agreement| agreement["agreement_id"] == agreement_id.as_str()),
        "{listed:?}"
    );
    let ended = hlctl
        .run(
            &legal,
            &[
                "agreement",
                "end",
                &agreement_id,
                "--on",
                &day(50),
                "--reason",
                "the partner closed",
                "--json",
            ],
        )
        .await
        .json();
    assert_eq!(ended["affected_stay_ids"], serde_json::json!([stay]));
    let after = hlctl
        .run(&deve, &["learner", &login, "--json"])
        .await
        .json();
    assert_eq!(after["stays"][0]["end_date"], day(50));
    let ended_early = hlctl
        .run(
            &deve,
            &["stay", "end", &stay, "--on", &day(20), "--reason", "left"],
        )
        .await;
    assert_eq!(ended_early.code, Some(0), "{ended_early:?}");
    assert!(
        ended_early
            .stdout
            .starts_with(&format!("stay {stay} now ends on {}", day(20))),
        "{ended_early:?}"
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
