//! Locking a learner (issue 13, point 5): within seconds and everywhere, Check denies
//! every resource as locked, the grants close at the lock, the LDAP entry is
//! suspended without entitlements, the card is disabled and the e-purse right closes; an
//! unlock brings everything back.

use std::{collections::BTreeSet, time::Duration};

use hosted_contracts::v1;
use hosted_e2e::{TestSystem, registration, today_plus};
use hosted_platform::auth::Role;

use crate::{
    entitlement::check,
    entries::{values, wait_for_entry},
};

const RESOURCES: [&str; 8] = [
    "wifi",
    "ent",
    "online-resources",
    "library",
    "premises:LAB-CHEM",
    "grades",
    "smart-card",
    "e-purse",
];
const LOGIN: &str = "alex.verrou";

async fn card(system: &TestSystem) -> Option<v1::Card> {
    system
        .cards_client()
        .await
        .list_cards(system.as_role(
            Role::CardOffice,
            v1::ListCardsRequest {
                learner: LOGIN.to_owned(),
            },
        ))
        .await
        .ok()
        .and_then(|answer| answer.into_inner().cards.into_iter().next())
}

async fn wait_for_card(system: &TestSystem, state: v1::CardState) -> v1::Card {
    for _ in 0..300 {
        if let Some(card) = card(system).await
            && card.state() == state
        {
            return card;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the card never became {state:?}");
}

async fn move_card(system: &TestSystem, card: &v1::Card, to: v1::CardState, csn: &str) {
    system
        .cards_client()
        .await
        .transition_card(system.as_role(
            Role::CardOffice,
            v1::TransitionCardRequest {
                card_id: card.card_id.clone(),
                to: to.into(),
                reason: String::new(),
                csn: csn.to_owned(),
                expected_version: 0,
            },
        ))
        .await
        .unwrap();
}

/// The e-purse rights of the next delta export, once there is one.
async fn epurse_delta(system: &TestSystem) -> Vec<v1::EpurseRightHolder> {
    for _ in 0..300 {
        let holders = system
            .cards_client()
            .await
            .export_epurse(
                system.as_role(Role::CardOffice, v1::ExportEpurseRequest { full: false }),
            )
            .await
            .unwrap()
            .into_inner()
            .right_holders;
        if !holders.is_empty() {
            return holders;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no e-purse change was ever exported");
}

async fn wait_for_denials(system: &TestSystem, denial: v1::Denial) -> Vec<v1::CheckResponse> {
    for _ in 0..300 {
        let mut answers = Vec::new();
        for resource in RESOURCES {
            answers.push(check(system, LOGIN, resource).await);
        }
        if answers.iter().all(|answer| answer.denial() == denial) {
            return answers;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Check never said {denial:?} for every resource");
}

async fn grants(system: &TestSystem) -> Vec<v1::Grant> {
    system
        .entitlement_client()
        .await
        .list_grants(system.as_role(
            Role::Dosi,
            v1::ListGrantsRequest {
                learner_id: LOGIN.to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .grants
}

#[tokio::test]
async fn a_lock_stops_everything_within_seconds_and_an_unlock_brings_it_back() {
    // Arrange: the four services; a C2i2e trainee (card and e-purse) with an INE, the
    // card handed over, the e-purse right exported.
    let mut system = TestSystem::prepare(None).await;
    system.await_grants = Duration::from_secs(20);
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;
    system.start_directory().await;
    let mut request = registration("Verrou", "Alex", "1999-09-09");
    request.person.as_mut().unwrap().ine = "423456789AB".to_owned();
    request.stay.as_mut().unwrap().population = "RECTORAT_C2I2E".to_owned();
    system.register(request).await;
    let approved = wait_for_card(&system, v1::CardState::Approved).await;
    move_card(&system, &approved, v1::CardState::InPrint, "").await;
    move_card(&system, &approved, v1::CardState::Printed, "").await;
    move_card(&system, &approved, v1::CardState::Encoded, "04112233445566").await;
    move_card(&system, &approved, v1::CardState::Enabled, "").await;
    let opened = epurse_delta(&system).await;
    assert!(!opened[0].closed);
    wait_for_entry(&system, LOGIN, "entitlements and the card", |entry| {
        !values(entry, "eduPersonEntitlement").is_empty()
            && !values(entry, "supannRefId").is_empty()
    })
    .await;
    assert!(check(&system, LOGIN, "wifi").await.allowed);

    // Act: dosi locks the learner for fraud.
    let locked = system
        .intake_client()
        .await
        .lock_learner(system.as_role(
            Role::Dosi,
            v1::LockLearnerRequest {
                learner: LOGIN.to_owned(),
                reason: "fraud".to_owned(),
                note: "case 2026-114".to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(locked.changed);

    // Assert: Check denies every resource as locked, with a reason for people.
    let denials = wait_for_denials(&system, v1::Denial::Locked).await;
    assert!(denials.iter().all(|answer| !answer.allowed));
    assert_eq!(
        denials[0].reason,
        format!(
            "the account is locked since {} (administrative lock: fraud): every resource is denied",
            today_plus(0)
        )
    );
    assert_eq!(
        check(&system, LOGIN, "spaceship").await.denial(),
        v1::Denial::UnknownResource
    );
    // The grants are closed at the lock: none holds on its day, none has grace left.
    let closed = grants(&system).await;
    assert!(!closed.is_empty());
    assert!(
        closed.iter().all(|grant| grant.last_day == today_plus(-1)),
        "{closed:?}"
    );
    // grant_audit says why each grant changed: the lock, from intake's locked event.
    let mut entitlement_db = system.entitlement_database.connect().await;
    let whys: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT DISTINCT cause, why FROM grant_audit WHERE change IN ('changed', 'revoked')",
    )
    .fetch_all(&mut entitlement_db)
    .await
    .unwrap();
    assert_eq!(
        whys,
        [(
            "intake event".to_owned(),
            Some(format!(
                "locked on {}: administrative lock, fraud",
                today_plus(0)
            ))
        )]
    );
    // The entry is suspended and publishes no entitlement, nor the card.
    let entry = wait_for_entry(&system, LOGIN, "the lock", |entry| {
        values(entry, "supannRessourceEtatDate")
            .iter()
            .any(|value| value.starts_with("{COMPTE}S:"))
    })
    .await;
    assert_eq!(
        values(&entry, "supannRessourceEtatDate"),
        BTreeSet::from([format!(
            "{{COMPTE}}S:SupannVerrouAdministratif:{}:",
            today_plus(0).replace('-', "")
        )])
    );
    assert!(values(&entry, "eduPersonEntitlement").is_empty());
    assert!(values(&entry, "supannRefId").is_empty());
    // The card is disabled, the lock and who locked in its history; the right closes.
    let stopped = wait_for_card(&system, v1::CardState::Disabled).await;
    assert_eq!(stopped.card_id, approved.card_id);
    assert_eq!(stopped.state_reason, "locked: fraud");
    let history = system
        .cards_client()
        .await
        .get_card(system.as_role(
            Role::Dosi,
            v1::GetCardRequest {
                card: stopped.card_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .history;
    let last = history.last().unwrap();
    assert_eq!(
        (last.reason.as_str(), last.actor.as_str()),
        ("locked: fraud", "dosi")
    );
    let closing = epurse_delta(&system).await;
    assert_eq!(closing.len(), 1);
    assert!(closing[0].closed);
    assert_eq!(closing[0].identifier, "423456789AB");

    // Act: deve unlocks.
    system
        .intake_client()
        .await
        .unlock_learner(system.as_role(
            Role::Deve,
            v1::UnlockLearnerRequest {
                learner: LOGIN.to_owned(),
                note: "cleared".to_owned(),
            },
        ))
        .await
        .unwrap();

    // Assert: everything is back as if the lock had never been.
    let back = wait_for_card(&system, v1::CardState::Enabled).await;
    assert_eq!(
        back.card_id, approved.card_id,
        "the card the learner holds works again"
    );
    assert_eq!(back.state_reason, "the lock is lifted");
    let wifi = check(&system, LOGIN, "wifi").await;
    assert!(wifi.allowed, "{}", wifi.reason);
    assert_eq!(
        wifi.last_day,
        today_plus(207),
        "the stay's end and its grace"
    );
    assert!(
        grants(&system)
            .await
            .iter()
            .all(|grant| grant.last_day != today_plus(-1))
    );
    let entry = wait_for_entry(&system, LOGIN, "the unlock", |entry| {
        !values(entry, "eduPersonEntitlement").is_empty()
            && !values(entry, "supannRefId").is_empty()
    })
    .await;
    assert_eq!(
        values(&entry, "supannRessourceEtatDate"),
        BTreeSet::from([format!(
            "{{COMPTE}}A:SupannActif:{}:{}",
            today_plus(-10).replace('-', ""),
            today_plus(200).replace('-', "")
        )])
    );
    let mut intake_db = system.intake_database.connect().await;
    let audit: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT action, actor, reason FROM audit_trail WHERE action LIKE 'learner.%' ORDER BY id",
    )
    .fetch_all(&mut intake_db)
    .await
    .unwrap();
    assert_eq!(
        audit,
        [
            (
                "learner.locked".to_owned(),
                "dosi".to_owned(),
                Some("fraud".to_owned())
            ),
            (
                "learner.unlocked".to_owned(),
                "deve".to_owned(),
                Some("fraud".to_owned())
            ),
        ]
    );
    let reopened = epurse_delta(&system).await;
    assert_eq!(reopened.len(), 1);
    assert!(!reopened[0].closed);
    system.stop().await;
}

#[tokio::test]
async fn a_card_the_card_office_changed_while_locked_stays_as_the_card_office_left_it() {
    // Arrange: a C2i2e trainee's card handed over, then the learner locked: the card
    // is disabled for the lock.
    let mut system = TestSystem::prepare(None).await;
    system.await_grants = Duration::from_secs(20);
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;
    let mut request = registration("Verrou", "Alex", "1999-09-09");
    request.stay.as_mut().unwrap().population = "RECTORAT_C2I2E".to_owned();
    system.register(request).await;
    let approved = wait_for_card(&system, v1::CardState::Approved).await;
    move_card(&system, &approved, v1::CardState::InPrint, "").await;
    move_card(&system, &approved, v1::CardState::Printed, "").await;
    move_card(&system, &approved, v1::CardState::Encoded, "04112233445577").await;
    move_card(&system, &approved, v1::CardState::Enabled, "").await;
    let lock = |reason: &str| v1::LockLearnerRequest {
        learner: LOGIN.to_owned(),
        reason: reason.to_owned(),
        note: String::new(),
    };
    system
        .intake_client()
        .await
        .lock_learner(system.as_role(Role::Deve, lock("compromised")))
        .await
        .unwrap();
    let disabled = wait_for_card(&system, v1::CardState::Disabled).await;
    assert_eq!(disabled.state_reason, "locked: compromised");
    // The card office may not enable it while the learner is locked.
    let refused = system
        .cards_client()
        .await
        .transition_card(system.as_role(
            Role::CardOffice,
            v1::TransitionCardRequest {
                card_id: disabled.card_id.clone(),
                to: v1::CardState::Enabled.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    // Act: the card office takes the card back and destroys it; then the unlock.
    system
        .cards_client()
        .await
        .transition_card(system.as_role(
            Role::CardOffice,
            v1::TransitionCardRequest {
                card_id: disabled.card_id.clone(),
                to: v1::CardState::Destroyed.into(),
                reason: "taken back at the desk".to_owned(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    system
        .intake_client()
        .await
        .unlock_learner(system.as_role(
            Role::Deve,
            v1::UnlockLearnerRequest {
                learner: LOGIN.to_owned(),
                note: String::new(),
            },
        ))
        .await
        .unwrap();

    // Assert: the grants are back, and the card stays as the card office left it
    // (a replacement is the card office's decision).
    for _ in 0..400 {
        if check(&system, LOGIN, "wifi").await.allowed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(check(&system, LOGIN, "wifi").await.allowed);
    // Give cards the time to follow the grants, then look.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let newest = card(&system).await.unwrap();
    assert_eq!(newest.card_id, disabled.card_id);
    assert_eq!(newest.state(), v1::CardState::Destroyed);
    system.stop().await;
}
