//! The everyday operations of `hlctl` against a real intake and entitlement
//! (PostgreSQL, NATS): an agreement's life, two learners under it, their stays,
//! payments and counts; a learner's checks, grants and explanation, and a policy
//! simulated then activated. Each command runs as the role it needs, with its exit
//! code.
#![allow(clippy::unwrap_used)]

use std::{path::PathBuf, process::Command, time::Duration};

use common::{Services, day, default_policy};
use hosted_platform::auth::Role;
use serde_json::Value;

mod common;

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
    entitlement: Option<String>,
    cards: Option<String>,
    directory: Option<String>,
}

impl Hlctl {
    fn new(services: &Services) -> Self {
        Self {
            address: services.intake.clone(),
            entitlement: services.entitlement.clone(),
            cards: services.cards.clone(),
            directory: services.directory.clone(),
        }
    }

    /// Runs hlctl as the caller with `token`, off the runtime that serves intake.
    async fn run(&self, token: &str, args: &[&str]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hlctl"));
        command
            .env_remove("HLCTL_TOKEN")
            .env_remove("HLCTL_ENTITLEMENT")
            .env_remove("HLCTL_CARDS")
            .env_remove("HLCTL_DIRECTORY")
            .env_remove("RUST_BACKTRACE")
            .args(["--intake", &self.address, "--token", token]);
        if let Some(entitlement) = &self.entitlement {
            command.args(["--entitlement", entitlement]);
        }
        if let Some(cards) = &self.cards {
            command.args(["--cards", cards]);
        }
        if let Some(directory) = &self.directory {
            command.args(["--directory", directory]);
        }
        command.args(args);
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

    /// Runs hlctl until it exits with `code`, for at most ten seconds: entitlement
    /// learns of a change through NATS, a moment after the call that made it.
    async fn run_until(&self, code: i32, token: &str, args: &[&str]) -> Run {
        for _ in 0..100 {
            let run = self.run(token, args).await;
            if run.code == Some(code) {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("hlctl {args:?} never exited with {code}");
    }
}

#[tokio::test]
async fn an_agreement_its_learners_their_stays_and_payments() {
    // Arrange: an intake of the test's own.
    let services = Services::intake().await;
    let hlctl = Hlctl::new(&services);
    let legal = services.token(Role::Legal);
    let deve = services.token(Role::Deve);
    let finance = services.token(Role::Finance);
    let dosi = services.token(Role::Dosi);

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
    // An integrator identifies a learner and may not search or show one.
    let integrator = services.token(Role::Integrator);
    let identity = hlctl
        .run(&integrator, &["learner", "identify", &login, "--json"])
        .await
        .json();
    assert_eq!(identity["display_name"], "Élodie Lefèvre");
    assert_eq!(identity["valid_from"], day(-5).as_str());
    assert_eq!(identity["current"], true);
    assert!(identity.get("birth_date").is_none(), "{identity}");
    let refused = hlctl.run(&integrator, &["learner", &login]).await;
    assert!(
        refused.stderr.starts_with("Error: PERMISSION_DENIED"),
        "{refused:?}"
    );
    // A search without a filter is refused, whoever asks.
    let everyone = hlctl
        .run(&deve, &["learner", "search", "--name", "%"])
        .await;
    assert_eq!(everyone.code, Some(1), "{everyone:?}");
    assert!(
        everyone
            .stderr
            .contains("needs at least one letter or digit"),
        "{everyone:?}"
    );

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

    // The unit catalogue: a unit added by deve, listed for anyone.
    let unit = hlctl
        .run(
            &deve,
            &[
                "units",
                "save",
                "lab-phys",
                "--kind",
                "lab",
                "--label",
                "Physics laboratory",
                "--reason",
                "new lab",
            ],
        )
        .await;
    assert_eq!(unit.code, Some(0), "{unit:?}");
    assert_eq!(unit.stdout, "unit LAB-PHYS added\n");
    let units = hlctl.run(&dosi, &["units", "--json"]).await.json_lines();
    assert!(
        units.contains(&serde_json::json!({
            "code": "LAB-PHYS", "kind": "lab", "label": "Physics laboratory"
        })),
        "{units:?}"
    );
    let listed = hlctl.run(&dosi, &["units", "list"]).await;
    assert!(
        listed
            .stdout
            .contains("LAB-CHEM     lab      Chemistry laboratory\n"),
        "{listed:?}"
    );
    let refused = hlctl
        .run(
            &deve,
            &[
                "units", "save", "LAB X", "--kind", "lab", "--label", "X", "--reason", "typo",
            ],
        )
        .await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("unit.code"), "{refused:?}");
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

    // Finance finds what is due under the agreement: the stay there now (the coming
    // one was cancelled), with what matches a transfer and nothing more.
    let due = hlctl
        .run(
            &finance,
            &["payment", "due", "--agreement", &agreement_id, "--json"],
        )
        .await
        .json_lines();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0]["stay_id"], stay.as_str());
    assert_eq!(due[0]["login"], login.as_str());
    assert_eq!(due[0]["family_name"], "Lefèvre");
    assert!(due[0].get("birth_date").is_none() && due[0].get("email").is_none());

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
    let none_due = hlctl
        .run(&finance, &["payment", "due", "--agreement", &agreement_id])
        .await;
    assert_eq!(none_due.code, Some(0), "{none_due:?}");
    assert!(none_due.stderr.contains("no stay is due"), "{none_due:?}");
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
                "--reference",
                "VIR-1",
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
    // The learner left today, said with the code.
    let left = hlctl
        .run(
            &deve,
            &[
                "stay",
                "end",
                &stay,
                "--on",
                &day(0),
                "--early-end",
                "left",
                "--reason",
                "resigned by letter",
            ],
        )
        .await;
    assert_eq!(left.code, Some(0), "{left:?}");
    assert!(
        left.stdout
            .starts_with(&format!("stay {stay} ended early (left) on {}", day(0))),
        "{left:?}"
    );
    assert!(
        left.stdout.contains("\n    ended early: left\n"),
        "{left:?}"
    );
    let after = hlctl
        .run(&deve, &["learner", &login, "--json"])
        .await
        .json();
    assert_eq!(after["stays"][0]["early_end"], "left");
    assert_eq!(after["stays"][0]["end_reason"], "resigned by letter");

    services.stop().await;
}

#[tokio::test]
async fn what_a_sponsor_asks_for_at_registration_then_changed_and_withdrawn() {
    // Arrange: an intake of the test's own.
    let services = Services::intake().await;
    let hlctl = Hlctl::new(&services);
    let deve = services.token(Role::Deve);
    let dosi = services.token(Role::Dosi);
    let (start, end) = (day(0), day(180));
    let register = |requests: &'static [&'static str]| {
        let (hlctl, deve, start, end) = (&hlctl, &deve, start.clone(), end.clone());
        async move {
            let mut args = vec![
                "register",
                "--family-name",
                "Haddad",
                "--given-names",
                "Yanis",
                "--birth-date",
                "1996-03-08",
                "--email",
                "yanis.haddad@example.org",
                "--population",
                "VISITING_DOCTORAL",
                "--sponsor-unit",
                "LAB-CHEM",
                "--start-date",
                &start,
                "--end-date",
                &end,
                "--json",
            ];
            args.extend_from_slice(requests);
            hlctl.run(deve, &args).await
        }
    };

    // An empty name is a usage error, before anything is sent.
    let empty = register(&["--request", "premises,"]).await;
    assert_eq!(empty.code, Some(64), "{empty:?}");
    assert!(empty.stderr.contains("an empty resource name"), "{empty:?}");

    // Registered asking for two resources, separated by a comma.
    let registered = register(&["--request", "premises,library"]).await.json();
    let stay_id = registered["stay_id"].as_str().unwrap().to_owned();
    let login = registered["learner"]["login"].as_str().unwrap().to_owned();
    assert_eq!(
        registered["learner"]["stays"][0]["requested_resources"],
        serde_json::json!(["library", "premises"]),
        "intake keeps them sorted: {registered}"
    );
    let shown = hlctl.run(&dosi, &["learner", &login]).await;
    assert_eq!(shown.code, Some(0), "{shown:?}");
    assert!(
        shown
            .stdout
            .contains(&format!("  stay {stay_id} VISITING_DOCTORAL ")),
        "{shown:?}"
    );
    assert!(
        shown
            .stdout
            .contains("\n    requested resources: library, premises\n"),
        "{shown:?}"
    );
    let shown = hlctl
        .run(&dosi, &["learner", "show", &login, "--json"])
        .await
        .json();
    assert_eq!(
        shown["stays"][0]["requested_resources"],
        serde_json::json!(["library", "premises"])
    );

    // Changed: the list given replaces the stay's.
    let sponsor = async |token: &str, args: &[&str]| {
        let line = [&["stay", "sponsor", stay_id.as_str()], args].concat();
        hlctl.run(token, &line).await
    };
    let refused = sponsor(&dosi, &["--request", "premises", "--reason", "lab only"]).await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.starts_with("Error: PERMISSION_DENIED"),
        "{refused:?}"
    );
    let changed = sponsor(&deve, &["--request", "premises", "--reason", "lab only"]).await;
    assert_eq!(changed.code, Some(0), "{changed:?}");
    assert!(
        changed
            .stdout
            .starts_with(&format!("stay {stay_id}: requests now premises\n")),
        "{changed:?}"
    );
    assert!(
        changed
            .stdout
            .contains("\n    requested resources: premises\n"),
        "{changed:?}"
    );

    // Another unit: the requests are kept.
    let moved = sponsor(&deve, &["--unit", "LAB-BIO", "--reason", "moved", "--json"])
        .await
        .json();
    assert_eq!(moved["stays"][0]["sponsor_unit"], "LAB-BIO");
    assert_eq!(
        moved["stays"][0]["requested_resources"],
        serde_json::json!(["premises"])
    );

    // A name that is not one: intake refuses it and names it.
    let bad = sponsor(
        &deve,
        &[
            "--request",
            "premises",
            "--request",
            "Library",
            "--reason",
            "x",
        ],
    )
    .await;
    assert_eq!(bad.code, Some(1), "{bad:?}");
    assert!(
        bad.stderr
            .starts_with("Error: INVALID_ARGUMENT: invalid request\n"),
        "{bad:?}"
    );
    assert!(
        bad.stderr
            .contains("\n  requested_resources[1]: \"Library\" is not a resource name"),
        "{bad:?}"
    );

    // Withdrawn; nothing left to show in text.
    let nothing = sponsor(&deve, &["--reason", "x"]).await;
    assert_eq!(nothing.code, Some(64), "{nothing:?}");
    let withdrawn = sponsor(
        &deve,
        &["--no-requests", "--reason", "premises no longer needed"],
    )
    .await;
    assert_eq!(withdrawn.code, Some(0), "{withdrawn:?}");
    assert!(
        withdrawn
            .stdout
            .starts_with(&format!("stay {stay_id}: requests withdrawn\n")),
        "{withdrawn:?}"
    );
    let shown = hlctl.run(&deve, &["learner", &login]).await;
    assert_eq!(shown.code, Some(0), "{shown:?}");
    assert!(!shown.stdout.contains("requested"), "{shown:?}");
    let shown = hlctl
        .run(&deve, &["learner", &login, "--json"])
        .await
        .json();
    assert_eq!(
        shown["stays"][0]["requested_resources"],
        serde_json::json!([])
    );
    assert_eq!(shown["stays"][0]["sponsor_unit"], "LAB-BIO");

    services.stop().await;
}

/// The repository's policy.
/// A file of this test's own, removed when dropped.
struct PolicyFile(PathBuf);

impl PolicyFile {
    fn new(text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("hlctl-policy-{}.toml", uuid::Uuid::now_v7()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn a_learners_checks_grants_explanation_and_a_policy_change() {
    // Arrange: an intake and an entitlement of the test's own, on one namespace.
    let services = Services::intake_and_entitlement().await;
    let entitlement_address = services.entitlement.clone().unwrap();
    let hlctl = Hlctl::new(&services);
    let deve = services.token(Role::Deve);
    let dosi = services.token(Role::Dosi);
    let integrator = services.token(Role::Integrator);
    let ready = hlctl
        .run("", &["health", "--wait", "30", &entitlement_address])
        .await;
    assert_eq!(ready.code, Some(0), "{ready:?}");

    // An IFSI student: library yes, never a card.
    let (start, end) = (day(-5), day(100));
    let registered = hlctl
        .run(
            &deve,
            &[
                "register",
                "--family-name",
                "Faure",
                "--given-names",
                "Inès",
                "--birth-date",
                "2001-12-24",
                "--email",
                "ines@example.org",
                "--population",
                "IFSI",
                "--sponsor-unit",
                "IFSI-NORD",
                "--start-date",
                &start,
                "--end-date",
                &end,
                "--json",
            ],
        )
        .await
        .json();
    let login = registered["learner"]["login"].as_str().unwrap().to_owned();
    let learner_id = registered["learner"]["learner_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stay_id = registered["stay_id"].as_str().unwrap().to_owned();

    // Check: 0 allowed, 3 denied, 1 refused, 64 a wrong command line; the day
    // answered for, and the grant's last day as entitlement gives it.
    let today = day(0);
    let allowed = hlctl
        .run_until(0, &integrator, &["check", &login, "library"])
        .await;
    assert_eq!(
        allowed.stdout,
        format!("allowed on {today}, until {end} (populations.IFSI.library, policy 2026.1)\n")
    );
    let allowed = hlctl
        .run(&dosi, &["check", &learner_id, "library", "--json"])
        .await
        .json();
    assert_eq!(allowed["allowed"], true);
    assert_eq!(allowed["denial"], Value::Null);
    assert_eq!(allowed["on"], today.as_str());
    assert_eq!(allowed["last_day"], end.as_str());
    let denied = hlctl
        .run(&integrator, &["check", &login, "smart-card"])
        .await;
    assert_eq!(denied.code, Some(3), "{denied:?}");
    assert!(
        denied.stdout.starts_with(&format!("denied on {today}: ")),
        "{denied:?}"
    );
    assert!(denied.stdout.contains("never"), "{denied:?}");
    assert!(denied.stdout.ends_with(" (policy 2026.1)\n"), "{denied:?}");
    let denied = hlctl
        .run(&integrator, &["check", &login, "smart-card", "--json"])
        .await;
    assert_eq!(denied.code, Some(3), "{denied:?}");
    let denied: Value = serde_json::from_str(&denied.stdout).unwrap();
    assert_eq!(denied["allowed"], false);
    assert_eq!(denied["denial"], "not_for_population");
    assert_eq!(denied["on"], today.as_str());
    assert_eq!(denied["last_day"], Value::Null);
    let during = hlctl
        .run(&integrator, &["check", &login, "library", "--at", &day(50)])
        .await;
    assert_eq!(during.code, Some(0), "{during:?}");
    assert!(
        during
            .stdout
            .starts_with(&format!("allowed on {}, until {end} ", day(50))),
        "{during:?}"
    );
    let after = (hosted_platform::clock::Clock::default().today() + time::Duration::days(150))
        .format(time::macros::format_description!("[day]/[month]/[year]"))
        .unwrap();
    let ended = hlctl
        .run(&integrator, &["check", &login, "library", "--at", &after])
        .await;
    assert_eq!(ended.code, Some(3), "{ended:?}");
    assert!(
        ended
            .stdout
            .starts_with(&format!("denied on {}: ", day(150))),
        "{ended:?}"
    );
    assert!(ended.stdout.contains("ended"), "{ended:?}");
    // An unknown learner or resource: a denial too, said as the typo it most often is.
    let stranger = hlctl
        .run(&integrator, &["check", "nobody.here", "wifi"])
        .await;
    assert_eq!(stranger.code, Some(3), "{stranger:?}");
    assert!(
        stranger
            .stdout
            .starts_with("denied: unknown learner \"nobody.here\": "),
        "{stranger:?}"
    );
    let stranger = hlctl
        .run(&integrator, &["check", "nobody.here", "wifi", "--json"])
        .await;
    assert_eq!(stranger.code, Some(3), "{stranger:?}");
    let stranger: Value = serde_json::from_str(&stranger.stdout).unwrap();
    assert_eq!(stranger["denial"], "unknown_learner");
    assert_eq!(stranger["on"], today.as_str());
    let typo = hlctl.run(&integrator, &["check", &login, "wfii"]).await;
    assert_eq!(typo.code, Some(3), "{typo:?}");
    assert!(
        typo.stdout
            .starts_with("denied: unknown resource \"wfii\": policy 2026.1 has no such resource"),
        "{typo:?}"
    );
    let typo = hlctl
        .run(&integrator, &["check", &login, "wfii", "--json"])
        .await;
    assert_eq!(typo.code, Some(3), "{typo:?}");
    let typo: Value = serde_json::from_str(&typo.stdout).unwrap();
    assert_eq!(typo["denial"], "unknown_resource");
    let refused = hlctl.run(&deve, &["check", &login, "wifi"]).await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.starts_with("Error: PERMISSION_DENIED"),
        "{refused:?}"
    );
    let number = hlctl
        .run(&integrator, &["check", "H00000001", "wifi"])
        .await;
    assert_eq!(number.code, Some(64), "{number:?}");
    let bad_day = hlctl
        .run(
            &integrator,
            &["check", &login, "wifi", "--at", "31/02/2027"],
        )
        .await;
    assert_eq!(bad_day.code, Some(64), "{bad_day:?}");
    let blank = hlctl.run(&integrator, &["grants", " "]).await;
    assert_eq!(blank.code, Some(64), "{blank:?}");

    // Grants: days, the last one included, as entitlement gives them; the instants
    // are the university's midnights (Paris: the evening before, in UTC).
    let grants = hlctl
        .run(&integrator, &["grants", &login, "--json"])
        .await
        .json_lines();
    let days: Vec<(&str, &str, &str)> = grants
        .iter()
        .map(|grant| {
            (
                grant["resource"].as_str().unwrap(),
                grant["first_day"].as_str().unwrap(),
                grant["last_day"].as_str().unwrap(),
            )
        })
        .collect();
    let (ent_end, wifi_end) = (day(130), day(107));
    assert_eq!(
        days,
        [
            ("ent", start.as_str(), ent_end.as_str()),
            ("grades", &start, &end),
            ("library", &start, &end),
            ("online-resources", &start, &end),
            ("wifi", &start, &wifi_end),
        ]
    );
    assert!(
        grants
            .iter()
            .all(|grant| grant["stay_id"] == stay_id.as_str())
    );
    assert!(
        grants.iter().all(|grant| grant["valid_from"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}T2", day(-6)))),
        "{grants:?}"
    );
    let table = hlctl.run(&deve, &["grants", &login]).await;
    assert_eq!(table.code, Some(0), "{table:?}");
    let library: Vec<&str> = table
        .stdout
        .lines()
        .find(|line| line.starts_with("library "))
        .unwrap_or_else(|| panic!("{table:?}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        library,
        [
            "library",
            &start,
            &end,
            "populations.IFSI.library",
            "2026.1",
            &stay_id
        ],
        "{table:?}"
    );

    // Explain: every resource, today and on a later day.
    let explained = hlctl.run(&dosi, &["explain", &login]).await;
    assert_eq!(explained.code, Some(0), "{explained:?}");
    assert!(
        explained
            .stdout
            .starts_with(&format!("{login}  {learner_id}  on ")),
        "{explained:?}"
    );
    let line = |resource: &str| {
        explained
            .stdout
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{resource} ")))
            .unwrap_or_else(|| panic!("{resource}: {explained:?}"))
            .to_owned()
    };
    assert_eq!(explained.stdout.lines().count(), 9, "{explained:?}");
    assert!(line("library").contains(&format!(" yes  until {end}  granted by stay {stay_id}")));
    assert!(line("smart-card").contains(" no "));
    assert!(line("smart-card").contains("never"));
    let later = hlctl
        .run(
            &deve,
            &["explain", &learner_id, "--at", &day(150), "--json"],
        )
        .await
        .json();
    assert_eq!(later["on"], day(150));
    assert_eq!(later["login"], login.as_str());
    assert!(
        later["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|one| one["granted"] == false),
        "{later}"
    );

    // A candidate policy: IFSI students no longer keep their grades here.
    let default = std::fs::read_to_string(default_policy()).unwrap();
    let changed = default
        .replace(r#"version = "2026.1""#, r#"version = "2026.2""#)
        .replace(
            "[populations.IFSI]\nonline-resources = \"always\"\nlibrary = \"always\"\n\
             smart-card = \"never\"\ne-purse = \"never\"\ngrades = \"always\"",
            "[populations.IFSI]\nonline-resources = \"always\"\nlibrary = \"always\"\n\
             smart-card = \"never\"\ne-purse = \"never\"\ngrades = \"never\"",
        );
    assert!(changed.contains("version = \"2026.2\""));
    assert!(changed.contains("grades = \"never\""));
    let candidate = PolicyFile::new(&changed);
    let simulated = hlctl
        .run(&dosi, &["policy", "simulate", candidate.path()])
        .await;
    assert_eq!(simulated.code, Some(0), "{simulated:?}");
    assert_eq!(
        simulated.stdout,
        format!(
            "policy 2026.1 → 2026.2: 1 learner examined, 1 learner would change\n  \
             grades  gained 0  lost 1  changed 0\n    lost: {learner_id}\n"
        )
    );
    assert!(
        simulated.stderr.contains(&format!(
            "hlctl policy activate {} --reason \"…\" --expect 2026.1",
            candidate.path()
        )),
        "{simulated:?}"
    );
    let simulated = hlctl
        .run(&dosi, &["policy", "simulate", candidate.path(), "--json"])
        .await
        .json();
    assert_eq!(simulated["learners_changed"], 1);
    assert_eq!(
        simulated["impacts"][0]["lost_examples"],
        serde_json::json!([learner_id])
    );

    // An invalid policy: each problem with its line.
    let wifi = r#"wifi = { when = "always", grace_days = 7 }"#;
    let wifi_line = default.lines().position(|line| line == wifi).unwrap() + 1;
    let invalid = PolicyFile::new(&default.replacen(
        wifi,
        r#"wifi = { when = "sometimes", grace_days = 7 }"#,
        1,
    ));
    let refused = hlctl
        .run(&dosi, &["policy", "simulate", invalid.path()])
        .await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused
            .stderr
            .starts_with("Error: INVALID_ARGUMENT: invalid request\n"),
        "{refused:?}"
    );
    assert!(
        refused.stderr.contains(&format!(
            "\n  policy: line {wifi_line}: defaults.wifi: unknown condition \"sometimes\""
        )),
        "{refused:?}"
    );

    // A syntax error: the parser's message may take several lines, all kept under
    // the field.
    let header_line = default
        .lines()
        .position(|line| line == "[populations.IFSI]")
        .unwrap()
        + 1;
    let broken = PolicyFile::new(&default.replacen("[populations.IFSI]", "[populations.IFSI", 1));
    let refused = hlctl
        .run(&dosi, &["policy", "simulate", broken.path()])
        .await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains(&format!("\n  policy: line {header_line}: ")),
        "{refused:?}"
    );
    assert!(
        refused
            .stderr
            .lines()
            .skip(1)
            .all(|line| line.starts_with("  ")),
        "{refused:?}"
    );

    // Activation: a reason is required, and a blank --expect is no version.
    let no_reason = hlctl
        .run(&dosi, &["policy", "activate", candidate.path()])
        .await;
    assert_eq!(no_reason.code, Some(64), "{no_reason:?}");
    let blank = hlctl
        .run(
            &dosi,
            &[
                "policy",
                "activate",
                candidate.path(),
                "--reason",
                "x",
                "--expect",
                " ",
            ],
        )
        .await;
    assert_eq!(blank.code, Some(64), "{blank:?}");
    // Another version than the active one expected: refused, nothing changes.
    let stale = hlctl
        .run(
            &dosi,
            &[
                "policy",
                "activate",
                candidate.path(),
                "--reason",
                "grades go through the IFSI's own system",
                "--expect",
                "2025.9",
            ],
        )
        .await;
    assert_eq!(stale.code, Some(1), "{stale:?}");
    assert!(
        stale
            .stderr
            .starts_with("Error: policy not activated: ABORTED: "),
        "{stale:?}"
    );
    assert!(stale.stderr.contains("2026.1"), "{stale:?}");
    let unchanged = hlctl
        .run(&dosi, &["policy", "simulate", candidate.path(), "--json"])
        .await
        .json();
    assert_eq!(unchanged["active_version"], "2026.1");
    // The version the simulation was against: the student loses the grades.
    let activated = hlctl
        .run(
            &dosi,
            &[
                "policy",
                "activate",
                candidate.path(),
                "--reason",
                "grades go through the IFSI's own system",
                "--expect",
                "2026.1",
            ],
        )
        .await;
    assert_eq!(activated.code, Some(0), "{activated:?}");
    assert_eq!(
        activated.stdout,
        "policy 2026.2 is active (was 2026.1): grants changed for 1 learner\n"
    );
    let lost = hlctl
        .run_until(3, &integrator, &["check", &login, "grades"])
        .await;
    assert!(lost.stdout.ends_with(" (policy 2026.2)\n"), "{lost:?}");
    let again = hlctl
        .run(
            &dosi,
            &["policy", "activate", candidate.path(), "--reason", "twice"],
        )
        .await;
    assert_eq!(again.code, Some(0), "{again:?}");
    assert_eq!(
        again.stdout,
        "policy 2026.2 was already active with this same document: nothing changed\n"
    );
    // Another document still under 2026.2: warned by the simulation, refused.
    let edited = PolicyFile::new(&changed.replace("grace_days = 7", "grace_days = 8"));
    let warned = hlctl
        .run(&dosi, &["policy", "simulate", edited.path()])
        .await;
    assert_eq!(warned.code, Some(0), "{warned:?}");
    assert!(
        warned.stdout.contains(
            "\nwarning: version 2026.2 is already recorded with another document: activating \
             this one will be refused (ALREADY_EXISTS); change `version` in the document\n"
        ),
        "{warned:?}"
    );
    assert!(!warned.stderr.contains("to activate it"), "{warned:?}");
    let taken = hlctl
        .run(
            &dosi,
            &["policy", "activate", edited.path(), "--reason", "edited"],
        )
        .await;
    assert_eq!(taken.code, Some(1), "{taken:?}");
    assert!(
        taken.stderr.starts_with("Error: ALREADY_EXISTS: ")
            && taken.stderr.contains("change `version`"),
        "{taken:?}"
    );

    services.stop().await;
}

#[tokio::test]
async fn the_card_office_prints_encodes_enables_replaces_and_exports_the_epurse() {
    // Arrange: intake, entitlement and cards of the test's own; a C2i2e trainee with an
    // INE, whose card the grant requests and approves.
    let services = Services::all_but_directory().await;
    let hlctl = Hlctl::new(&services);
    let deve = services.token(Role::Deve);
    let office = services.token(Role::CardOffice);
    let dosi = services.token(Role::Dosi);
    let cards_address = services.cards.clone().unwrap();
    let ready = hlctl
        .run("", &["health", "--wait", "30", &cards_address])
        .await;
    assert_eq!(ready.code, Some(0), "{ready:?}");
    let (start, end) = (day(-5), day(100));
    let registered = hlctl
        .run(
            &deve,
            &[
                "register",
                "--family-name",
                "Lambert",
                "--given-names",
                "Noé",
                "--birth-date",
                "1999-03-14",
                "--email",
                "noe@example.org",
                "--ine",
                "123456789AB",
                "--population",
                "RECTORAT_C2I2E",
                "--sponsor-unit",
                "INSPE",
                "--start-date",
                &start,
                "--end-date",
                &end,
                "--json",
            ],
        )
        .await
        .json();
    let login = registered["learner"]["login"].as_str().unwrap().to_owned();

    // The card is approved once the grant has arrived.
    let mut queued = Value::Null;
    for _ in 0..100 {
        let lines = hlctl
            .run(&office, &["card", "list", &login, "--json"])
            .await;
        if lines.code == Some(0) {
            let lines = lines.json_lines();
            if lines.len() == 1 && lines[0]["state"] == "approved" {
                queued = lines[0].clone();
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(queued["state"], "approved", "the card never came");
    let number = queued["card_number"].as_str().unwrap().to_owned();
    assert_eq!(queued["last_day"], end.as_str());
    assert!(queued["escn"].as_str().unwrap().ends_with("-001999123456"));
    let queue = hlctl.run(&office, &["card", "queue"]).await;
    assert_eq!(queue.code, Some(0), "{queue:?}");
    assert!(queue.stdout.starts_with(&number), "{queue:?}");

    // A print batch, written to a file.
    let directory = tempdir();
    let file = directory.join("batch.csv");
    let batch = hlctl
        .run(
            &office,
            &[
                "card",
                "print-batch",
                "--output",
                file.to_str().unwrap(),
                "--json",
            ],
        )
        .await
        .json();
    assert_eq!(batch["cards"], 1);
    let csv = std::fs::read_to_string(&file).unwrap();
    assert!(csv.contains(&format!("{number},")), "{csv}");
    assert!(csv.contains("Lambert,Noé"), "{csv}");
    let nothing = hlctl.run(&office, &["card", "print-batch"]).await;
    assert_eq!(nothing.stdout, "nothing to print\n", "{nothing:?}");

    // Printed, encoded, enabled; a refused step says why, exit code 1.
    let early = hlctl.run(&office, &["card", "enable", &number]).await;
    assert_eq!(early.code, Some(1), "{early:?}");
    assert!(early.stderr.contains("FAILED_PRECONDITION"), "{early:?}");
    assert!(
        early
            .stderr
            .contains("an in-print card can become approved or printed, not enabled"),
        "{early:?}"
    );
    for step in [
        vec!["card", "printed", &number],
        vec!["card", "encode", &number, "--csn", "04:a2:2b:ca:7c:4d:80"],
        vec!["card", "enable", &number, "--reason", "handed over"],
    ] {
        let run = hlctl.run(&office, &step).await;
        assert_eq!(run.code, Some(0), "{step:?}: {run:?}");
    }
    let shown = hlctl
        .run(&dosi, &["card", "show", &number, "--json"])
        .await
        .json();
    assert_eq!(shown["state"], "enabled");
    assert_eq!(shown["csn"], "04A22BCA7C4D80");
    assert_eq!(shown["history"].as_array().unwrap().len(), 5);
    assert_eq!(shown["history"][4]["reason"], "handed over");
    let text = hlctl.run(&dosi, &["card", "show", &number]).await;
    assert!(
        text.stdout
            .contains("encoded → enabled  by card-office: handed over"),
        "{text:?}"
    );
    // A stale expectation changes nothing.
    let stale = hlctl
        .run(
            &office,
            &[
                "card", "disable", &number, "--reason", "lost", "--expect", "1",
            ],
        )
        .await;
    assert_eq!(stale.code, Some(1), "{stale:?}");
    assert!(stale.stderr.contains("ABORTED"), "{stale:?}");
    let bad_reason = hlctl
        .run(&office, &["card", "disable", &number, "--reason", "gone"])
        .await;
    assert_eq!(bad_reason.code, Some(64), "{bad_reason:?}");

    // Lost: replaced by a new card, approved; the old one disabled.
    let replaced = hlctl
        .run(
            &office,
            &["card", "replace", &number, "--reason", "lost", "--json"],
        )
        .await
        .json();
    assert_eq!(replaced["replaced"]["state"], "disabled");
    assert_eq!(replaced["replaced"]["state_reason"], "lost");
    assert_eq!(replaced["card"]["state"], "approved");
    assert_eq!(
        replaced["card"]["replaces_card_id"],
        shown["card_id"].as_str().unwrap()
    );

    // The e-purse export: the INE, hbg, the grant's last day.
    let epurse = directory.join("izly.csv");
    let export = hlctl
        .run(
            &office,
            &["epurse", "export", "--output", epurse.to_str().unwrap()],
        )
        .await;
    assert_eq!(export.code, Some(0), "{export:?}");
    assert!(
        export
            .stdout
            .contains("1 right-holder(s), 0 of them closed"),
        "{export:?}"
    );
    let izly = std::fs::read_to_string(&epurse).unwrap();
    assert!(
        izly.contains(&format!(
            "123456789AB;Lambert;Noé;noe@example.org;1999-03-14;{end};hbg"
        )),
        "{izly}"
    );

    // The same export again, by its id, as it was sent; a full one to look leaves
    // the next delta as it was (empty: the right was sent above).
    let export_id = export.stdout.split_whitespace().nth(2).unwrap().to_owned();
    let again_file = directory.join("izly-again.csv");
    let again = hlctl
        .run(
            &office,
            &[
                "--json",
                "epurse",
                "get",
                &export_id,
                "--output",
                again_file.to_str().unwrap(),
            ],
        )
        .await
        .json();
    assert_eq!(again["export_id"], export_id.as_str());
    assert_eq!(again["kind"], "delta");
    assert_eq!(again["right_holders"], 1);
    assert_eq!(std::fs::read_to_string(&again_file).unwrap(), izly);
    let full_file = directory.join("izly-full.csv");
    let full = hlctl
        .run(
            &office,
            &[
                "--json",
                "epurse",
                "export",
                "--full",
                "--output",
                full_file.to_str().unwrap(),
            ],
        )
        .await
        .json();
    assert_eq!(
        (full["kind"].as_str(), full["right_holders"].as_u64()),
        (Some("full"), Some(1))
    );
    let delta_file = directory.join("izly-delta.csv");
    let delta = hlctl
        .run(
            &office,
            &[
                "--json",
                "epurse",
                "export",
                "--output",
                delta_file.to_str().unwrap(),
            ],
        )
        .await
        .json();
    assert_eq!(delta["right_holders"], 0, "{delta}");

    // The card's story, for dosi: every step, oldest first, with who did it.
    let story = hlctl
        .run(&dosi, &["--json", "audit", "card", &number])
        .await
        .json();
    let steps: Vec<&str> = story
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    assert_eq!(steps.first(), Some(&"card.approved"), "{story}");
    assert!(steps.contains(&"card.enabled"), "{story}");
    assert!(
        story.as_array().unwrap().iter().all(
            |entry| entry["service"] == "cards" && !entry["actor"].as_str().unwrap().is_empty()
        ),
        "{story}"
    );
    let told = hlctl.run(&dosi, &["audit", "card", &number]).await;
    assert_eq!(told.code, Some(0), "{told:?}");
    assert!(told.stdout.starts_with("time"), "{told:?}");
    let refused = hlctl.run(&office, &["audit", "card", &number]).await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("PERMISSION_DENIED"), "{refused:?}");

    // The card office's token is refused where dosi's is needed, and the other way.
    let refused = hlctl.run(&dosi, &["card", "queue"]).await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("PERMISSION_DENIED"), "{refused:?}");
    let _ = std::fs::remove_dir_all(&directory);
    services.stop().await;
}

/// A directory of this test's own, under the system's temporary directory.
fn tempdir() -> PathBuf {
    let directory = std::env::temp_dir().join(format!("hlctl-cards-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

/// Runs `hlctl account LOGIN --json` until the account is published.
async fn published_account(hlctl: &Hlctl, dosi: &str, login: &str) -> Value {
    for _ in 0..200 {
        let run = hlctl.run(dosi, &["account", login, "--json"]).await;
        if run.code == Some(0) {
            let account = run.json();
            if account["status"] == "PUBLICATION_STATUS_PUBLISHED" {
                return account;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{login} never published");
}

#[tokio::test]
async fn an_account_shows_its_missing_entry_and_its_writes_then_is_republished_and_reconciled_alone()
 {
    // Arrange: intake and directory; two learners, each published once.
    let services = Services::intake_and_directory().await;
    let hlctl = Hlctl::new(&services);
    let deve = services.token(Role::Deve);
    let dosi = services.token(Role::Dosi);
    for (family, given) in [("Compte", "Alma"), ("Voisin", "Basile")] {
        let (start, end) = (day(-5), day(100));
        let run = hlctl
            .run(
                &deve,
                &[
                    "register",
                    "--family-name",
                    family,
                    "--given-names",
                    given,
                    "--birth-date",
                    "2000-04-05",
                    "--email",
                    "learner@example.org",
                    "--population",
                    "IFSI",
                    "--sponsor-unit",
                    "IFSI-NORD",
                    "--start-date",
                    &start,
                    "--end-date",
                    &end,
                ],
            )
            .await;
        assert_eq!(run.code, Some(0), "{run:?}");
    }
    let alma = published_account(&hlctl, &dosi, "alma.compte").await;
    assert_eq!(alma["entry_missing"], false);
    assert_eq!(alma["ldap_writes"], 1);
    assert_eq!(alma["differences"], serde_json::json!([]));
    published_account(&hlctl, &dosi, "basile.voisin").await;

    // Act: both entries are deleted by hand.
    let subtree = services.subtree.as_ref().unwrap();
    let mut ldap = subtree.server.connect().await;
    for uid in ["alma.compte", "basile.voisin"] {
        ldap.delete(&format!("uid={uid},{}", subtree.base_dn))
            .await
            .unwrap()
            .success()
            .unwrap();
    }

    // Assert: the account says its entry is missing, as differences, with its writes.
    let alma = hlctl
        .run(&dosi, &["account", "alma.compte", "--json"])
        .await
        .json();
    assert_eq!(alma["entry_missing"], true);
    assert_eq!(alma["ldap_writes"], 1);
    let differences = alma["differences"].as_array().unwrap();
    assert!(
        differences.contains(&Value::from("uid"))
            && differences.contains(&Value::from("supannRessourceEtatDate")),
        "{alma}"
    );
    let text = hlctl.run(&dosi, &["account", "alma.compte"]).await;
    assert_eq!(text.code, Some(0), "{text:?}");
    assert!(text.stdout.contains("1 LDAP write(s)"), "{text:?}");
    assert!(text.stdout.contains("entry missing from LDAP"), "{text:?}");

    // Act and assert: reconcile one account: a dry run finds its one drift only.
    let dry = hlctl
        .run(&dosi, &["reconcile", "--login", "alma.compte", "--json"])
        .await;
    assert_eq!(dry.code, Some(2), "{dry:?}");
    let report: Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(report["accounts"], 1);
    let drifts = report["drifts"].as_array().unwrap();
    assert_eq!(drifts.len(), 1, "{report}");
    assert_eq!(drifts[0]["kind"], "missing");
    assert!(
        drifts[0]["dn"]
            .as_str()
            .unwrap()
            .starts_with("uid=alma.compte,")
    );
    let applied = hlctl
        .run(
            &dosi,
            &["reconcile", "--login", "alma.compte", "--apply", "--json"],
        )
        .await
        .json();
    assert_eq!(applied["applied"], true);
    assert_eq!(subtree.search("(uid=alma.compte)").await.len(), 1);
    let alma = hlctl
        .run(&dosi, &["account", "alma.compte", "--json"])
        .await
        .json();
    assert_eq!(alma["entry_missing"], false);
    assert_eq!(alma["ldap_writes"], 2, "the repair is counted");
    assert!(
        subtree.search("(uid=basile.voisin)").await.is_empty(),
        "only the account named"
    );
    let unknown = hlctl
        .run(&dosi, &["reconcile", "--login", "nobody.here"])
        .await;
    assert_eq!(unknown.code, Some(1), "{unknown:?}");
    assert!(unknown.stderr.contains("NOT_FOUND"), "{unknown:?}");
    let forged = hlctl
        .run(&dosi, &["reconcile", "--login", "jean,ou=evil"])
        .await;
    assert_eq!(forged.code, Some(1), "{forged:?}");
    assert!(
        forged.stderr.contains("INVALID_ARGUMENT") && forged.stderr.contains("login"),
        "{forged:?}"
    );

    // Act and assert: republish the other one; it comes back, a second write.
    let republished = hlctl.run(&dosi, &["republish", "basile.voisin"]).await;
    assert_eq!(republished.code, Some(0), "{republished:?}");
    let mut back = Vec::new();
    for _ in 0..100 {
        back = subtree.search("(uid=basile.voisin)").await;
        if !back.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back.len(), 1);
    let basile = published_account(&hlctl, &dosi, "basile.voisin").await;
    assert_eq!(basile["entry_missing"], false);
    assert_eq!(basile["ldap_writes"], 2);
    services.stop().await;
}

/// Entitlement's and cards' dead letters are listed and replayed as directory's are.
#[tokio::test]
async fn entitlement_and_cards_dead_letters_are_listed_and_replayed() {
    // Arrange: an event neither entitlement nor cards can read.
    let services = Services::all_but_directory().await;
    let hlctl = Hlctl::new(&services);
    let dosi = services.token(Role::Dosi);
    let jetstream = hosted_testkit::jetstream().await;
    let mut headers = async_nats::HeaderMap::new();
    let event_id = uuid::Uuid::now_v7().to_string();
    headers.insert("Nats-Msg-Id", event_id.as_str());
    jetstream
        .publish_with_headers(
            format!("{}.intake.stay.registered", services.namespace.as_str()),
            headers,
            vec![0xff, 0xff, 0xff].into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    for service in ["entitlement", "cards"] {
        // Act
        let mut letters = Vec::new();
        for _ in 0..100 {
            letters = hlctl
                .run(
                    &dosi,
                    &["--json", "dead-letters", "list", "--service", service],
                )
                .await
                .json_lines();
            if !letters.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let replay = hlctl
            .run(&dosi, &["dead-letters", "replay", "--service", service])
            .await;

        // Assert: the one event, once; still failing when replayed, so still listed.
        assert_eq!(letters.len(), 1, "{service}: {letters:?}");
        assert_eq!(letters[0]["event_id"], event_id.as_str(), "{service}");
        assert_eq!(replay.code, Some(0), "{service}: {replay:?}");
        assert!(
            replay.stdout.contains("replayed 0, still failing 1"),
            "{service}: {replay:?}"
        );
    }
    services.stop().await;
}

/// `hash-token` hashes what it is given, from the argument or standard input, even
/// when `HLCTL_TOKEN` (the operator's own token) is set.
#[test]
fn hash_token_hashes_its_input_not_the_operators_token() {
    use std::io::Write;
    let expected = hosted_platform::auth::hash_token("the-new-callers-token");
    let from_argument = Command::new(env!("CARGO_BIN_EXE_hlctl"))
        .env("HLCTL_TOKEN", "the-operators-own-token")
        .args(["hash-token", "the-new-callers-token"])
        .output()
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hlctl"))
        .env("HLCTL_TOKEN", "the-operators-own-token")
        .arg("hash-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"the-new-callers-token\n")
        .unwrap();
    let from_stdin = child.wait_with_output().unwrap();
    for output in [from_argument, from_stdin] {
        assert!(output.status.success());
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), expected);
    }
}

#[tokio::test]
async fn a_service_republished_and_entitlement_rebuilt_from_the_command_line() {
    // Arrange: intake and entitlement; two learners with their grants.
    let services = Services::intake_and_entitlement().await;
    let hlctl = Hlctl::new(&services);
    let deve = services.token(Role::Deve);
    let dosi = services.token(Role::Dosi);
    for (family, given) in [("Restat", "Alma"), ("Restat", "Basile")] {
        let (start, end) = (day(-5), day(100));
        let run = hlctl
            .run(
                &deve,
                &[
                    "register",
                    "--family-name",
                    family,
                    "--given-names",
                    given,
                    "--birth-date",
                    "2000-04-05",
                    "--email",
                    "learner@example.org",
                    "--population",
                    "IFSI",
                    "--sponsor-unit",
                    "IFSI-NORD",
                    "--start-date",
                    &start,
                    "--end-date",
                    &end,
                ],
            )
            .await;
        assert_eq!(run.code, Some(0), "{run:?}");
    }
    for login in ["alma.restat", "basile.restat"] {
        hlctl.run_until(0, &dosi, &["grants", login]).await;
    }

    // Act and assert: a login given twice, or none, is a usage error.
    let none = hlctl.run(&dosi, &["republish"]).await;
    assert_eq!(none.code, Some(64), "{none:?}");
    let twice = hlctl
        .run(
            &dosi,
            &[
                "republish",
                "alma.restat",
                "--login",
                "alma.restat",
                "--service",
                "intake",
            ],
        )
        .await;
    assert_eq!(twice.code, Some(64), "{twice:?}");

    // Intake's learners, a page of one at a time, with the running total.
    let all = hlctl
        .run(&dosi, &["republish", "--service", "intake", "--page", "1"])
        .await;
    assert_eq!(all.code, Some(0), "{all:?}");
    assert_eq!(
        all.stdout.lines().last(),
        Some("intake: 2 learners restated"),
        "{all:?}"
    );
    // Entitlement's grants, and one learner of intake's.
    let grants = hlctl
        .run(&dosi, &["--json", "republish", "--service", "entitlement"])
        .await
        .json();
    assert_eq!(grants["learners"], 2, "{grants}");
    let one = hlctl
        .run(
            &dosi,
            &[
                "--json",
                "republish",
                "--service",
                "intake",
                "--login",
                "basile.restat",
            ],
        )
        .await
        .json();
    assert_eq!(one["learners"], 1, "{one}");
    // Only dosi restates.
    let refused = hlctl
        .run(&deve, &["republish", "--service", "intake"])
        .await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("PERMISSION_DENIED"), "{refused:?}");

    // Entitlement rebuilt: intake restates its learners (and agreements) for it.
    let rebuilt = hlctl.run(&dosi, &["rebuild", "entitlement"]).await;
    assert_eq!(rebuilt.code, Some(0), "{rebuilt:?}");
    assert!(
        rebuilt.stdout.contains("intake: 2 learners restated"),
        "{rebuilt:?}"
    );
    services.stop().await;
}

#[tokio::test]
async fn a_learner_is_locked_then_unlocked_and_check_says_so() {
    // Arrange: an IFSI student with the library.
    let services = Services::intake_and_entitlement().await;
    let entitlement_address = services.entitlement.clone().unwrap();
    let hlctl = Hlctl::new(&services);
    let deve = services.token(Role::Deve);
    let dosi = services.token(Role::Dosi);
    let integrator = services.token(Role::Integrator);
    let ready = hlctl
        .run("", &["health", "--wait", "30", &entitlement_address])
        .await;
    assert_eq!(ready.code, Some(0), "{ready:?}");
    let registered = hlctl
        .run(
            &deve,
            &[
                "register",
                "--family-name",
                "Roux",
                "--given-names",
                "Théo",
                "--birth-date",
                "2000-05-06",
                "--email",
                "theo@example.org",
                "--population",
                "IFSI",
                "--sponsor-unit",
                "IFSI-NORD",
                "--start-date",
                &day(-5),
                "--end-date",
                &day(100),
                "--json",
            ],
        )
        .await
        .json();
    let login = registered["learner"]["login"].as_str().unwrap().to_owned();
    hlctl
        .run_until(0, &integrator, &["check", &login, "library"])
        .await;

    // Act
    let locked = hlctl
        .run(
            &dosi,
            &[
                "learner", "lock", &login, "--reason", "fraud", "--note", "case 7", "--json",
            ],
        )
        .await
        .json();
    let again = hlctl
        .run(&deve, &["learner", "lock", &login, "--reason", "fraud"])
        .await;
    let unknown = hlctl
        .run(&deve, &["learner", "lock", &login, "--reason", "vandalism"])
        .await;
    let refused = hlctl
        .run(
            &integrator,
            &["learner", "lock", &login, "--reason", "fraud"],
        )
        .await;

    // Assert
    assert_eq!(locked["changed"], true);
    assert_eq!(locked["learner"]["lock"]["kind"], "administrative");
    assert_eq!(locked["learner"]["lock"]["reason"], "fraud");
    assert_eq!(locked["learner"]["lock"]["by"], "dosi");
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(
        again
            .stdout
            .starts_with("already locked for this reason:\n"),
        "{again:?}"
    );
    assert!(
        again
            .stdout
            .contains("  LOCKED (administrative lock: fraud) since "),
        "{again:?}"
    );
    assert_eq!(unknown.code, Some(64), "{unknown:?}");
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("PERMISSION_DENIED"), "{refused:?}");
    let denied = hlctl
        .run_until(3, &integrator, &["check", &login, "library", "--json"])
        .await;
    let denied: Value = serde_json::from_str(&denied.stdout).unwrap();
    assert_eq!(denied["denial"], "locked");
    assert!(
        denied["reason"]
            .as_str()
            .unwrap()
            .starts_with("the account is locked since "),
        "{denied}"
    );

    // Act: deve unlocks, twice.
    let unlocked = hlctl.run(&deve, &["learner", "unlock", &login]).await;
    let not_locked = hlctl
        .run(&deve, &["learner", "unlock", &login, "--json"])
        .await
        .json();

    // Assert
    assert_eq!(unlocked.code, Some(0), "{unlocked:?}");
    assert!(unlocked.stdout.starts_with("unlocked:\n"), "{unlocked:?}");
    assert!(!unlocked.stdout.contains("LOCKED"), "{unlocked:?}");
    assert_eq!(not_locked["changed"], false);
    assert_eq!(not_locked["learner"]["lock"], Value::Null);
    hlctl
        .run_until(0, &integrator, &["check", &login, "library"])
        .await;
    services.stop().await;
}

#[tokio::test]
async fn over_tls_with_the_ca_and_as_a_caller_known_by_its_certificate() {
    // Arrange: intake on mutual TLS, with `operator` known by its certificate alone.
    let pki = hosted_testkit::TestPki::new();
    let database = hosted_testkit::TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
    let namespace = hosted_testkit::namespace().await;
    let mut callers = hosted_testkit::TestCallers::new();
    callers.auth.callers.insert(
        "operator".to_owned(),
        hosted_platform::config::CallerConfig {
            token_sha256: String::new(),
            roles: vec!["deve".to_owned()],
            certificate_subject: "CN=operator".to_owned(),
        },
    );
    let mut common = hosted_testkit::common_config(
        &database,
        hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace),
        &callers,
    );
    common.grpc.tls = pki.tls_config();
    let app = hosted_intake::Application::build(&hosted_intake::IntakeConfig {
        common,
        registry: hosted_intake::config::RegistryConfig::default(),
        retention: Default::default(),
    })
    .await
    .unwrap();
    let address = format!("https://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let ca_path = pki.ca_path();
    let ca = ca_path.to_str().unwrap();
    let (cert_path, key_path) = pki.client_files("operator", None);
    let (cert, key) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());
    let run = async |args: Vec<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hlctl"));
        command
            .env_remove("HLCTL_TOKEN")
            .env_remove("HLCTL_CA_PATH")
            .env_remove("HLCTL_CERT_PATH")
            .env_remove("HLCTL_KEY_PATH")
            .args(["--intake", &address])
            .args(args);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let deve = callers.token(Role::Deve).to_owned();

    // Act, Assert: a token over TLS, with the CA.
    let (code, stderr) = run(vec!["--ca-path", ca, "--token", &deve, "populations"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    // https:// without the CA is a usage error that says what is missing.
    let (code, stderr) = run(vec!["--token", &deve, "populations"]).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--ca-path"), "{stderr}");
    // The client certificate alone is the caller.
    let (code, stderr) = run(vec![
        "--ca-path",
        ca,
        "--cert-path",
        cert,
        "--key-path",
        key,
        "populations",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    // ... and a token of another caller beside it is refused.
    let (code, stderr) = run(vec![
        "--ca-path",
        ca,
        "--cert-path",
        cert,
        "--key-path",
        key,
        "--token",
        callers.token(Role::Dosi),
        "populations",
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("UNAUTHENTICATED"), "{stderr}");
    // A certificate without its key is a usage error.
    let (code, stderr) = run(vec!["--ca-path", ca, "--cert-path", cert, "populations"]).await;
    assert_eq!(code, Some(64), "{stderr}");

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
