//! Start-up never hangs on data: a service restarted over hostile stored rows (dates
//! beyond what the code reads, NULLs inside arrays, many rows) reaches SERVING and
//! still serves its good rows. The 60 s bounds detect a hang; they measure nothing.

use std::time::Duration;

use hosted_contracts::v1;
use hosted_e2e::{TestSystem, component_health, default_policy, registration};
use hosted_platform::{auth::Role, clock::Clock};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::{
    entitlement::{check, wait_for},
    entitlement_policy::candidate,
};

/// Generous: a start-up that has not finished by then is hung.
const HANG: Duration = Duration::from_secs(60);

/// Waits until the health component `component` of `address` is SERVING.
async fn wait_for_component(address: std::net::SocketAddr, component: &str) {
    let serving = async {
        while component_health(address, component).await != ServingStatus::Serving {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(HANG, serving)
        .await
        .unwrap_or_else(|_| panic!("{component} not SERVING within {HANG:?}"));
}

#[tokio::test]
async fn entitlement_starts_whatever_its_learners_hold() {
    // Arrange: one learner registered the ordinary way, then, straight into the
    // database, one whose stay and grant end at `infinity`, one whose arrays hold
    // NULLs, and 2,500 more (more than one page of the Check cache's warm-up).
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system
        .register(registration("Garnier", "Léa", "2002-09-10"))
        .await;
    wait_for(&system, "lea.garnier", "library", true).await;
    system.stop_entitlement().await;
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(&system.entitlement_database.url)
            .await
            .unwrap();
    for statement in [
        "INSERT INTO learners (learner_id, login, version, in_force) VALUES
            ('00000000-0000-0000-0000-0000000000a1', 'hostile.dates', 1, '{}'),
            ('00000000-0000-0000-0000-0000000000a2', 'hostile.nulls', 1, '{NULL,library}')",
        "INSERT INTO stays (stay_id, learner_id, population, start_date, end_date, cancelled,
                            paid, requested)
         VALUES ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000a1',
                 'IFSI', '2020-01-01', 'infinity', false, true, '{}'),
                ('00000000-0000-0000-0000-0000000000b2', '00000000-0000-0000-0000-0000000000a2',
                 'IFSI', '2020-01-01', '2020-06-30', false, true, '{NULL}')",
        "INSERT INTO grants (learner_id, resource, stay_id, valid_from, valid_until, rule,
                             policy_version)
         VALUES ('00000000-0000-0000-0000-0000000000a1', 'library',
                 '00000000-0000-0000-0000-0000000000b1', '2020-01-01', 'infinity', 'old', '2026.1')",
        "INSERT INTO learners (learner_id, login, version)
         SELECT gen_random_uuid(), 'seeded.' || n, 1 FROM generate_series(1, 2500) AS n",
    ] {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }

    // Act: start again.
    tokio::time::timeout(HANG, system.start_entitlement())
        .await
        .expect("entitlement reaches SERVING");
    let address = system.entitlement.as_ref().unwrap().address;

    // Assert: the Check cache is warmed despite them, and the good rows answer.
    wait_for_component(address, hosted_entitlement::cache::CACHE_HEALTH).await;
    assert!(check(&system, "lea.garnier", "library").await.allowed);
    assert!(!check(&system, "seeded.2500", "library").await.allowed);
    assert!(!check(&system, "hostile.nulls", "library").await.allowed);
    system.stop().await;
}

/// Waits until directory has written every change of `login`'s account to LDAP.
async fn wait_caught_up(system: &TestSystem, login: &str) {
    let mut conn = system.directory_database.connect().await;
    let caught_up = async {
        loop {
            let done: Option<bool> = sqlx::query_scalar(
                "SELECT published_revision = revision FROM accounts WHERE login = $1",
            )
            .bind(login)
            .fetch_optional(&mut conn)
            .await
            .unwrap()
            .flatten();
            if done == Some(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(HANG, caught_up)
        .await
        .unwrap_or_else(|_| panic!("{login} not published within {HANG:?}"));
}

#[tokio::test]
async fn directory_starts_and_publishes_whatever_its_accounts_hold() {
    // Arrange: one account published the ordinary way; then, straight into the
    // database, an account whose learner blob does not decode, whose grants hold a
    // NULL and whose enabled card is valid until `infinity`, and the good account
    // changed so that both wait in the same publication batch.
    let mut system = TestSystem::start().await;
    system
        .register(registration("Garnier", "Léa", "2002-09-10"))
        .await;
    wait_caught_up(&system, "lea.garnier").await;
    system.stop_directory().await;
    let mut conn = system.directory_database.connect().await;
    for statement in [
        "INSERT INTO accounts (learner_id, login, version, learner, revision)
         VALUES ('00000000-0000-0000-0000-0000000000c1', 'hostile.blob', 1, '\\xdeadbeefff', 2)",
        "INSERT INTO grants (learner_id, grants_version, learner_version, effective_on, in_force)
         VALUES ('00000000-0000-0000-0000-0000000000c1', 1, 1, '2026-01-01', '{NULL,library}')",
        "INSERT INTO cards (card_id, learner_id, version, state, csn, valid_until)
         VALUES ('00000000-0000-0000-0000-0000000000d1', '00000000-0000-0000-0000-0000000000c1',
                 1, 'enabled', '04A1B2C3', 'infinity')",
        "UPDATE accounts SET revision = revision + 1, next_attempt_at = now()
         WHERE login = 'lea.garnier'",
    ] {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }

    // Act: start again.
    tokio::time::timeout(HANG, system.start_directory())
        .await
        .expect("directory reaches SERVING");

    // Assert: the good account is written again; the hostile one is refused, on
    // its own, with its error kept.
    wait_caught_up(&system, "lea.garnier").await;
    let address = system.directory.as_ref().unwrap().address;
    assert_eq!(
        component_health(address, "hosted.directory.publisher").await,
        ServingStatus::Serving
    );
    let refused: (i32, Option<String>) = sqlx::query_as(
        "SELECT publish_attempts, last_error FROM accounts WHERE login = 'hostile.blob'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(refused.0 >= 1, "{refused:?}");
    assert!(refused.1.is_some_and(|error| error.contains("projection")));
    system.stop().await;
}

#[tokio::test]
async fn entitlement_starts_when_the_active_policy_no_longer_loads() {
    // Arrange: 2026.2 activated through the API, then its stored document changed
    // into one this code does not load (as a rule an older version accepted).
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system
        .register(registration("Garnier", "Léa", "2002-09-10"))
        .await;
    wait_for(&system, "lea.garnier", "grades", true).await;
    system
        .entitlement_client()
        .await
        .activate_policy(system.as_role(
            Role::Dosi,
            v1::ActivatePolicyRequest {
                policy: candidate(),
                reason: "test".to_owned(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    system.stop_entitlement().await;
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(&system.entitlement_database.url)
            .await
            .unwrap();
    sqlx::query(
        "UPDATE policy_versions SET document = 'version = \"2026.2\"\n[an older rule' WHERE version = '2026.2'",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    // Act: start again with the file that says 2026.1.
    tokio::time::timeout(
        HANG,
        system.start_entitlement_with(default_policy(), Clock::default()),
    )
    .await
    .expect("entitlement reaches SERVING");

    // Assert: the configured policy is in force again, and recorded as activated.
    let answer = wait_for(&system, "lea.garnier", "grades", true).await;
    assert_eq!(answer.policy_version, "2026.1");
    let reason: String =
        sqlx::query_scalar("SELECT reason FROM policy_activations ORDER BY id DESC LIMIT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(reason, "configured: the active policy no longer loads");
    system.stop().await;
}

#[tokio::test]
async fn the_due_time_schedule_runs_whatever_its_learners_hold() {
    // Arrange: a learner registered the ordinary way, made due; and, straight into
    // the database, a learner due since `-infinity` whose stay ends at `infinity`.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system
        .register(registration("Garnier", "Léa", "2002-09-10"))
        .await;
    wait_for(&system, "lea.garnier", "library", true).await;
    system.stop_entitlement().await;
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(&system.entitlement_database.url)
            .await
            .unwrap();
    for statement in [
        "UPDATE learners SET next_due = '2000-01-01' WHERE login = 'lea.garnier'",
        "INSERT INTO learners (learner_id, login, version, next_due)
         VALUES ('00000000-0000-0000-0000-0000000000e1', 'hostile.due', 1, '-infinity')",
        "INSERT INTO stays (stay_id, learner_id, population, start_date, end_date, cancelled, paid)
         VALUES ('00000000-0000-0000-0000-0000000000f1', '00000000-0000-0000-0000-0000000000e1',
                 'IFSI', '2020-01-01', 'infinity', false, true)",
    ] {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }

    // Act: start again; the schedule runs at once.
    tokio::time::timeout(HANG, system.start_entitlement())
        .await
        .expect("entitlement reaches SERVING");

    // Assert: the good learner is recomputed (no longer due), the hostile one is
    // taken off the schedule.
    let recomputed = async {
        loop {
            let due: Vec<String> = sqlx::query_scalar(
                "SELECT login FROM learners WHERE next_due <= '2000-01-01' ORDER BY login",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            if due.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(HANG, recomputed)
        .await
        .expect("due learners taken within the bound");
    assert!(check(&system, "lea.garnier", "library").await.allowed);
    system.stop().await;
}

#[tokio::test]
async fn a_policy_activated_at_start_skips_learners_it_cannot_read() {
    // Arrange: an IFSI learner with grades under 2026.1 and, straight into the
    // database, a learner whose stay ends at `infinity`.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system
        .register(registration("Garnier", "Léa", "2002-09-10"))
        .await;
    wait_for(&system, "lea.garnier", "grades", true).await;
    system.stop_entitlement().await;
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(&system.entitlement_database.url)
            .await
            .unwrap();
    for statement in [
        "INSERT INTO learners (learner_id, login, version)
         VALUES ('00000000-0000-0000-0000-000000000101', 'hostile.stay', 1)",
        "INSERT INTO stays (stay_id, learner_id, population, start_date, end_date, cancelled, paid)
         VALUES ('00000000-0000-0000-0000-000000000201', '00000000-0000-0000-0000-000000000101',
                 'IFSI', '2020-01-01', 'infinity', false, true)",
    ] {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    let file = std::env::temp_dir().join(format!("policy-{}.toml", uuid::Uuid::now_v7()));
    std::fs::write(&file, candidate()).unwrap();

    // Act: start again with 2026.2 configured, which the start activates.
    tokio::time::timeout(
        HANG,
        system.start_entitlement_with(
            hosted_entitlement::config::PolicyConfig { file: file.clone() },
            Clock::default(),
        ),
    )
    .await
    .expect("entitlement reaches SERVING");

    // Assert: 2026.2 is in force for the learners it could read.
    let answer = wait_for(&system, "lea.garnier", "grades", false).await;
    assert_eq!(answer.policy_version, "2026.2");
    std::fs::remove_file(file).unwrap();
    system.stop().await;
}
