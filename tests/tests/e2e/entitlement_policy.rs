//! Policy change: simulate a candidate, then activate it; exactly the predicted
//! learners change, and only they get an event. Explain says why for each resource.

use std::{collections::BTreeSet, time::Duration};

use hosted_contracts::v1;
use hosted_e2e::{TestSystem, default_policy, registration};
use hosted_platform::{auth::Role, clock::Clock};
use tonic::Code;

use crate::{
    entitlement::{check, wait_for},
    entitlement_dates::grants_events,
};

/// The learner ids of every grants event so far.
async fn event_learners(system: &TestSystem) -> Vec<String> {
    grants_events(system)
        .await
        .into_iter()
        .map(|event| event.meta.unwrap().learner_id)
        .collect()
}

/// The default policy, as version 2026.2 with IFSI losing grades and C2i2e trainees
/// gaining the library.
pub(crate) fn candidate() -> String {
    let default = std::fs::read_to_string(default_policy().file).unwrap();
    let changed = default
        .replace(r#"version = "2026.1""#, r#"version = "2026.2""#)
        .replace(
            "[populations.IFSI]\nonline-resources = \"always\"\nlibrary = \"always\"\nsmart-card = \"never\"\ne-purse = \"never\"\ngrades = \"always\"",
            "[populations.IFSI]\nonline-resources = \"always\"\nlibrary = \"always\"\nsmart-card = \"never\"\ne-purse = \"never\"\ngrades = \"never\"",
        )
        .replace(
            "[populations.RECTORAT_C2I2E]\nonline-resources = \"always\"\nlibrary = { any = [\"option:library\", \"requested\"] }",
            "[populations.RECTORAT_C2I2E]\nonline-resources = \"always\"\nlibrary = \"always\"",
        );
    assert_eq!(changed.matches("2026.2").count(), 1);
    assert!(changed.contains("grades = \"never\""));
    assert!(changed.contains(
        "[populations.RECTORAT_C2I2E]\nonline-resources = \"always\"\nlibrary = \"always\""
    ));
    changed
}

async fn learner_id(system: &TestSystem, request: v1::RegisterStayRequest) -> String {
    system
        .register(request)
        .await
        .learner
        .unwrap()
        .person
        .unwrap()
        .learner_id
}

#[tokio::test]
async fn simulate_then_activate_changes_exactly_the_predicted_learners() {
    // Arrange: three IFSI students, two C2i2e trainees, one visiting doctoral student.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    let mut ifsi = BTreeSet::new();
    for (family, given, born) in [
        ("Bernard", "Lucie", "2001-01-11"),
        ("Petit", "Hugo", "2002-02-12"),
        ("Robert", "Emma", "2003-03-13"),
    ] {
        ifsi.insert(learner_id(&system, registration(family, given, born)).await);
    }
    let mut trainees = BTreeSet::new();
    for (family, given, born) in [
        ("Richard", "Louis", "1985-04-14"),
        ("Durand", "Alice", "1986-05-15"),
    ] {
        let mut request = registration(family, given, born);
        request.stay.as_mut().unwrap().population = "RECTORAT_C2I2E".to_owned();
        trainees.insert(learner_id(&system, request).await);
    }
    let mut request = registration("Dubois", "Nina", "1995-06-16");
    request.stay.as_mut().unwrap().population = "VISITING_DOCTORAL".to_owned();
    let untouched = learner_id(&system, request).await;
    for _ in 0..200 {
        if event_learners(&system).await.len() == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(event_learners(&system).await.len(), 6);
    let mut client = system.entitlement_client().await;

    // Act: simulate.
    let simulation = client
        .simulate_policy(system.as_role(
            Role::Dosi,
            v1::SimulatePolicyRequest {
                policy: candidate(),
            },
        ))
        .await
        .unwrap()
        .into_inner();

    // Assert: the IFSI students lose grades, the trainees gain the library.
    assert_eq!(simulation.active_version, "2026.1");
    assert_eq!(simulation.candidate_version, "2026.2");
    assert_eq!(simulation.learners_examined, 6);
    assert_eq!(simulation.learners_changed, 5);
    let impacts: Vec<(&str, i64, i64, i64)> = simulation
        .impacts
        .iter()
        .map(|impact| {
            (
                impact.resource.as_str(),
                impact.gained,
                impact.lost,
                impact.changed,
            )
        })
        .collect();
    assert_eq!(impacts, [("grades", 0, 3, 0), ("library", 2, 0, 0)]);
    let grades = &simulation.impacts[0];
    let library = &simulation.impacts[1];
    assert_eq!(
        grades
            .lost_examples
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        ifsi
    );
    assert_eq!(
        library
            .gained_examples
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>(),
        trainees
    );
    assert_eq!(
        event_learners(&system).await.len(),
        6,
        "a simulation publishes nothing"
    );

    // Act: activate, against the version simulated.
    let stale = client
        .activate_policy(system.as_role(
            Role::Dosi,
            v1::ActivatePolicyRequest {
                policy: candidate(),
                reason: "grades go through the IFSI's own system".to_owned(),
                expected_active_version: "2025.9".to_owned(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{}", stale.message());
    let activation = client
        .activate_policy(system.as_role(
            Role::Dosi,
            v1::ActivatePolicyRequest {
                policy: candidate(),
                reason: "grades go through the IFSI's own system".to_owned(),
                expected_active_version: simulation.active_version.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();

    // Assert: exactly the predicted learners changed, each with one event.
    assert_eq!(activation.policy_version, "2026.2");
    assert_eq!(activation.previous_version, "2026.1");
    assert_eq!(activation.learners_changed, 5);
    for _ in 0..200 {
        if event_learners(&system).await.len() >= 11 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = event_learners(&system).await;
    assert_eq!(events.len(), 11);
    let changed: BTreeSet<String> = events[6..].iter().cloned().collect();
    assert_eq!(changed, ifsi.union(&trainees).cloned().collect());
    assert!(!changed.contains(&untouched));
    let denied = wait_for(&system, "lucie.bernard", "grades", false).await;
    assert!(denied.reason.contains("never"), "{}", denied.reason);
    let granted = check(&system, "louis.richard", "library").await;
    assert!(granted.allowed);
    assert_eq!(granted.rule, "populations.RECTORAT_C2I2E.library");
    assert_eq!(granted.policy_version, "2026.2");

    // The same document again succeeds and changes nothing; another document under a
    // recorded version and an invalid document are refused, each with its reason.
    let again = client
        .activate_policy(system.as_role(
            Role::Dosi,
            v1::ActivatePolicyRequest {
                policy: candidate(),
                reason: "twice".to_owned(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(again.already_active);
    assert_eq!(again.learners_changed, 0);
    let default = std::fs::read_to_string(default_policy().file).unwrap();
    let taken = client
        .activate_policy(system.as_role(
            Role::Dosi,
            v1::ActivatePolicyRequest {
                policy: default.replace("grace_days = 7", "grace_days = 8"),
                reason: "a changed document under 2026.1".to_owned(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{}", taken.message());
    let invalid = client
        .simulate_policy(system.as_role(
            Role::Dosi,
            v1::SimulatePolicyRequest {
                policy: default.replace(r#"library = "always""#, r#"library = "sometimes""#),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(invalid.message().contains("line"), "{}", invalid.message());
    let no_reason = client
        .activate_policy(system.as_role(
            Role::Dosi,
            v1::ActivatePolicyRequest {
                policy: default.clone(),
                reason: " ".to_owned(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(no_reason.code(), Code::InvalidArgument);
    assert!(
        no_reason.message().contains("reason"),
        "{}",
        no_reason.message()
    );

    // Going back to 2026.1 is an activation like any other.
    let back = client
        .activate_policy(system.as_role(
            Role::Dosi,
            v1::ActivatePolicyRequest {
                policy: default,
                reason: "back to the previous policy".to_owned(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(back.learners_changed, 5);
    assert_eq!(back.previous_version, "2026.2");
    system.stop().await;
}

#[tokio::test]
async fn the_active_policy_survives_a_restart_with_an_older_configured_file() {
    // Arrange: 2026.2 activated through the API.
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

    // Act: restart with the file that still says 2026.1.
    system.stop_entitlement().await;
    system
        .start_entitlement_with(default_policy(), Clock::default())
        .await;

    // Assert: the database's active version is kept.
    let denied = check(&system, "lea.garnier", "grades").await;
    assert!(!denied.allowed);
    assert_eq!(denied.policy_version, "2026.2");
    system.stop().await;
}

#[tokio::test]
async fn explain_gives_every_resource_with_its_reason() {
    // Arrange
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system
        .register(registration("Faure", "Inès", "2001-12-24"))
        .await;
    wait_for(&system, "ines.faure", "library", true).await;

    // Act
    let explained = system
        .entitlement_client()
        .await
        .explain(system.as_role(
            Role::Deve,
            v1::ExplainRequest {
                learner_id: "ines.faure".to_owned(),
                at: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();

    // Assert
    assert_eq!(explained.login, "ines.faure");
    assert_eq!(explained.policy_version, "2026.1");
    let resources: Vec<(&str, bool)> = explained
        .resources
        .iter()
        .map(|one| (one.resource.as_str(), one.granted))
        .collect();
    assert_eq!(
        resources,
        [
            ("e-purse", false),
            ("ent", true),
            ("grades", true),
            ("library", true),
            ("online-resources", true),
            ("premises", false),
            ("smart-card", false),
            ("wifi", true),
        ]
    );
    let library = &explained.resources[3];
    assert_eq!(
        library.grant.as_ref().unwrap().rule,
        "populations.IFSI.library"
    );
    assert!(explained.resources[6].reason.contains("never"));
    assert!(
        explained.resources[5].reason.contains("no rule"),
        "{}",
        explained.resources[5].reason
    );
    let unknown = system
        .entitlement_client()
        .await
        .explain(system.as_role(
            Role::Deve,
            v1::ExplainRequest {
                learner_id: "nobody.here".to_owned(),
                at: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    system.stop().await;
}

/// The number of activations recorded.
async fn activations(system: &TestSystem) -> i64 {
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(&system.entitlement_database.url)
            .await
            .unwrap();
    sqlx::query_scalar("SELECT count(*) FROM policy_activations")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_changed_document_under_a_recorded_version_is_refused_and_the_same_one_is_done_already() {
    // Arrange: the default policy 2026.1 is active.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    let mut client = system.entitlement_client().await;
    let default = std::fs::read_to_string(default_policy().file).unwrap();
    let changed = default.replace("grace_days = 7", "grace_days = 8");
    assert_ne!(changed, default);
    let recorded = activations(&system).await;

    // Act: simulate, then activate, the changed document still under 2026.1.
    let simulation = client
        .simulate_policy(system.as_role(
            Role::Dosi,
            v1::SimulatePolicyRequest {
                policy: changed.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let refused = client
        .activate_policy(system.as_role(
            Role::Dosi,
            v1::ActivatePolicyRequest {
                policy: changed,
                reason: "a week and a day of wifi".to_owned(),
                expected_active_version: "2026.1".to_owned(),
            },
        ))
        .await
        .unwrap_err();

    // Assert: warned first, then refused, telling to change the version.
    assert_eq!(simulation.warnings.len(), 1, "{:?}", simulation.warnings);
    assert!(
        simulation.warnings[0].contains("2026.1 is already recorded with another document")
            && simulation.warnings[0].contains("change `version`"),
        "{}",
        simulation.warnings[0]
    );
    assert_eq!(refused.code(), Code::AlreadyExists, "{}", refused.message());
    assert!(
        refused.message().contains("change `version`"),
        "{}",
        refused.message()
    );
    assert!(
        !refused.message().contains("is already active"),
        "{}",
        refused.message()
    );

    // Act: the active document itself, simulated, then activated again against a
    // version that is no longer expected.
    let same = client
        .simulate_policy(system.as_role(
            Role::Dosi,
            v1::SimulatePolicyRequest {
                policy: default.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let again = client
        .activate_policy(system.as_role(
            Role::Dosi,
            v1::ActivatePolicyRequest {
                policy: format!("# the file as deployed\n{default}"),
                reason: "run again after a lost answer".to_owned(),
                expected_active_version: "2025.9".to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner();

    // Assert: said to change nothing, and done already: nothing recorded.
    assert_eq!(same.warnings.len(), 1, "{:?}", same.warnings);
    assert!(
        same.warnings[0].contains("changes nothing"),
        "{}",
        same.warnings[0]
    );
    assert_eq!(same.learners_changed, 0);
    assert!(again.already_active);
    assert_eq!(again.policy_version, "2026.1");
    assert_eq!(again.learners_changed, 0);
    assert_eq!(activations(&system).await, recorded);
    system.stop().await;
}

/// What replica `address` answers about `login`: Check's and Explain's policy versions,
/// whether `grades` is allowed, and Simulate's active version.
async fn replica_policy_versions(
    system: &TestSystem,
    address: std::net::SocketAddr,
    login: &str,
) -> (String, String, bool, String) {
    let mut client = v1::entitlement_service_client::EntitlementServiceClient::new(
        hosted_testkit::channel(address).await,
    );
    let checked = client
        .check(system.as_role(
            Role::Integrator,
            v1::CheckRequest {
                learner: Some(v1::check_request::Learner::Login(login.to_owned())),
                resource: "grades".to_owned(),
                at: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let explained = client
        .explain(system.as_role(
            Role::Deve,
            v1::ExplainRequest {
                learner_id: login.to_owned(),
                at: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let simulated = client
        .simulate_policy(system.as_role(
            Role::Dosi,
            v1::SimulatePolicyRequest {
                policy: candidate(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    (
        checked.policy_version,
        explained.policy_version,
        checked.allowed,
        simulated.active_version,
    )
}

#[tokio::test]
async fn every_replica_follows_an_activation_made_through_another() {
    // Arrange: two replicas on one database and namespace; an IFSI student known to
    // both, under 2026.1.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    let replica =
        hosted_entitlement::Application::build(&system.entitlement_config(default_policy()))
            .await
            .unwrap();
    let replica_address = replica.local_addr();
    let (stop_replica, replica_stopped) = tokio::sync::oneshot::channel::<()>();
    let replica_task = tokio::spawn(replica.run_until_stopped(async {
        let _ = replica_stopped.await;
    }));
    hosted_e2e::wait_until_serving(replica_address).await;
    system
        .register(registration("Marchand", "Zoé", "2002-10-11"))
        .await;
    wait_for(&system, "zoe.marchand", "grades", true).await;
    let before = replica_policy_versions(&system, replica_address, "zoe.marchand").await;
    assert_eq!(
        before,
        (
            "2026.1".to_owned(),
            "2026.1".to_owned(),
            true,
            "2026.1".to_owned()
        )
    );

    // Act: 2026.2 (IFSI loses grades) activated through the first replica.
    let activation = system
        .entitlement_client()
        .await
        .activate_policy(system.as_role(
            Role::Dosi,
            v1::ActivatePolicyRequest {
                policy: candidate(),
                reason: "grades go through the IFSI's own system".to_owned(),
                expected_active_version: "2026.1".to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(activation.policy_version, "2026.2");

    // Assert: the other replica answers with 2026.2 soon, Check, Explain and Simulate
    // alike, though nothing made it recompute anyone.
    let expected = (
        "2026.2".to_owned(),
        "2026.2".to_owned(),
        false,
        "2026.2".to_owned(),
    );
    let mut after = before;
    for _ in 0..100 {
        after = replica_policy_versions(&system, replica_address, "zoe.marchand").await;
        if after == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        after, expected,
        "(check's policy version, explain's, grades allowed, simulate's active version) \
         of the replica that did not activate"
    );
    let _ = stop_replica.send(());
    replica_task.await.unwrap().unwrap();
    system.stop().await;
}
