//! Leaving early: a stay ended with an early end's code (left, expelled, …) ends its
//! grants on its last day, with no grace unless the policy gives some for that code;
//! a stay shortened without a code keeps the policy's grace.

use hosted_contracts::v1;
use hosted_e2e::{TestSystem, default_policy, registration, today_plus};
use hosted_platform::auth::Role;

use crate::entitlement::{check, wait_for};

/// Registers an IFSI student (from 10 days ago to 200 days ahead) and waits until
/// entitlement grants them wifi; their stay id.
async fn registered(system: &TestSystem, family: &str, given: &str, login: &str) -> String {
    let registered = system
        .register(registration(family, given, "2000-01-02"))
        .await;
    wait_for(system, login, "wifi", true).await;
    registered.learner.unwrap().stays[0].stay_id.clone()
}

async fn end_stay(system: &TestSystem, stay_id: &str, end_date: String, early_end: v1::EarlyEnd) {
    system
        .intake_client()
        .await
        .end_stay(system.as_role(
            Role::Deve,
            v1::EndStayRequest {
                stay_id: stay_id.to_owned(),
                end_date,
                reason: "resigned by letter".to_owned(),
                early_end: early_end.into(),
            },
        ))
        .await
        .unwrap();
}

/// The last day of each of `login`'s grants, by resource.
async fn last_days(system: &TestSystem, login: &str) -> Vec<(String, String)> {
    let mut days: Vec<(String, String)> = system
        .entitlement_client()
        .await
        .list_grants(system.as_role(
            Role::Dosi,
            v1::ListGrantsRequest {
                learner_id: login.to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .grants
        .into_iter()
        .map(|grant| (grant.resource, grant.last_day))
        .collect();
    days.sort();
    days
}

#[tokio::test]
async fn a_learner_who_left_yesterday_loses_everything_now_and_a_shortened_stay_keeps_its_grace() {
    // Arrange
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    let left = registered(&system, "Marchand", "Jules", "jules.marchand").await;
    let shortened = registered(&system, "Colin", "Sarah", "sarah.colin").await;

    // Act: one left yesterday; the other's course ends today as newly planned.
    end_stay(&system, &left, today_plus(-1), v1::EarlyEnd::Left).await;
    end_stay(
        &system,
        &shortened,
        today_plus(0),
        v1::EarlyEnd::Unspecified,
    )
    .await;

    // Assert: no wifi nor ENT for the one who left, from today.
    let wifi = wait_for(&system, "jules.marchand", "wifi", false).await;
    assert_eq!(wifi.denial(), v1::Denial::Ended);
    assert!(
        wifi.reason.ends_with("(the stay ended early: left)"),
        "{}",
        wifi.reason
    );
    let ent = check(&system, "jules.marchand", "ent").await;
    assert!(!ent.allowed, "{}", ent.reason);
    assert_eq!(ent.denial(), v1::Denial::Ended);
    let yesterday = today_plus(-1);
    assert!(
        last_days(&system, "jules.marchand")
            .await
            .iter()
            .all(|(_, last)| *last == yesterday),
        "{:?}",
        last_days(&system, "jules.marchand").await
    );
    // The shortened stay: wifi 7 days and the ENT 30 after its new last day.
    for _ in 0..200 {
        if check(&system, "sarah.colin", "library").await.last_day == today_plus(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let planned = last_days(&system, "sarah.colin").await;
    let last = |resource: &str| {
        planned
            .iter()
            .find(|(name, _)| name == resource)
            .map(|(_, day)| day.clone())
    };
    assert_eq!(last("library"), Some(today_plus(0)));
    assert_eq!(last("wifi"), Some(today_plus(7)));
    assert_eq!(last("ent"), Some(today_plus(30)));
    system.stop().await;
}

#[tokio::test]
async fn the_policy_can_give_grace_after_an_early_end_per_reason() {
    // Arrange: a policy that leaves the ENT a week to whoever left, nothing else.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    let default = std::fs::read_to_string(default_policy().file).unwrap();
    let candidate = format!(
        "{}\n[grace_after_early_end]\nleft = {{ ent = 7 }}\n",
        default.replace(r#"version = "2026.1""#, r#"version = "2026.2""#)
    );
    system
        .entitlement_client()
        .await
        .activate_policy(system.as_role(
            Role::Dosi,
            v1::ActivatePolicyRequest {
                policy: candidate,
                reason: "a week to fetch one's documents after leaving".to_owned(),
                expected_active_version: "2026.1".to_owned(),
            },
        ))
        .await
        .unwrap();
    let left = registered(&system, "Perrin", "Noah", "noah.perrin").await;
    let expelled = registered(&system, "Roux", "Léa", "lea.roux").await;

    // Act
    end_stay(&system, &left, today_plus(-1), v1::EarlyEnd::Left).await;
    end_stay(&system, &expelled, today_plus(-1), v1::EarlyEnd::Expelled).await;

    // Assert: the ENT for a week after the last day for the one who left; nothing
    // for the one expelled.
    wait_for(&system, "noah.perrin", "wifi", false).await;
    let ent = check(&system, "noah.perrin", "ent").await;
    assert!(ent.allowed, "{}", ent.reason);
    assert_eq!(ent.last_day, today_plus(6));
    wait_for(&system, "lea.roux", "wifi", false).await;
    let none = check(&system, "lea.roux", "ent").await;
    assert_eq!(none.denial(), v1::Denial::Ended, "{}", none.reason);
    system.stop().await;
}
