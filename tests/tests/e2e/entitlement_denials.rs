//! Check's denial codes: one per reason a program can act on, the same whether the
//! learner's grants are held in memory or read from the database, and the same in
//! Explain.

use std::time::Duration;

use hosted_contracts::v1;
use hosted_e2e::{
    TestSystem, co_accredited, co_accredited_agreement, component_health, registration,
};
use hosted_entitlement::cache::CACHE_HEALTH;
use hosted_platform::{auth::Role, clock::wire_instant};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::entitlement::{kill_cache_listener, wait_for};

/// Check for `login` and `resource`, `days` from now (now when 0).
async fn check_on(
    system: &TestSystem,
    login: &str,
    resource: &str,
    days: i64,
) -> v1::CheckResponse {
    let at = (days != 0).then(|| {
        wire_instant(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days))
    });
    system
        .entitlement_client()
        .await
        .check(system.as_role(
            Role::Integrator,
            v1::CheckRequest {
                learner: Some(v1::check_request::Learner::Login(login.to_owned())),
                resource: resource.to_owned(),
                at,
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// Every case and the code it must give: (login, resource, days from now, code).
const CASES: &[(&str, &str, i64, v1::Denial)] = &[
    ("nobody.here", "wifi", 0, v1::Denial::UnknownLearner),
    ("ines.faure", "spaceship", 0, v1::Denial::UnknownResource),
    // The stay runs from 10 days ago to 200 days ahead; wifi has 7 days of grace.
    ("ines.faure", "wifi", -20, v1::Denial::NotStarted),
    ("ines.faure", "wifi", 220, v1::Denial::Ended),
    ("ines.faure", "smart-card", 0, v1::Denial::NotForPopulation),
    ("ines.faure", "premises", 0, v1::Denial::NotForPopulation),
    ("ada.okafor", "smart-card", 0, v1::Denial::NotPaid),
    (
        "ada.okafor",
        "premises:LAB-CHEM",
        0,
        v1::Denial::NotRequested,
    ),
    ("anh.nguyen", "library", 0, v1::Denial::OptionMissing),
    // Asked without a lab, or for any lab: the rule says why.
    ("ada.okafor", "premises", 0, v1::Denial::NotRequested),
];

async fn assert_codes(system: &TestSystem, path: &str) {
    for &(login, resource, days, expected) in CASES {
        let answer = check_on(system, login, resource, days).await;
        assert!(!answer.allowed, "{path}: {login} {resource} {days}");
        assert_eq!(
            answer.denial(),
            expected,
            "{path}: {login} {resource} {days}: {}",
            answer.reason
        );
        assert!(
            !answer.reason.is_empty(),
            "the sentence stays beside the code"
        );
    }
}

#[tokio::test]
async fn check_gives_a_code_for_each_reason_from_memory_and_from_the_database() {
    // Arrange: an IFSI student, a visiting doctoral student whose stay is due and
    // whose lab asked for nothing, a co-accredited student without the library option.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system
        .register(registration("Faure", "Inès", "2001-04-05"))
        .await;
    let mut doctoral = registration("Okafor", "Ada", "1994-02-03");
    let stay = doctoral.stay.as_mut().unwrap();
    stay.population = "VISITING_DOCTORAL".to_owned();
    stay.sponsor_unit = "LAB-CHEM".to_owned();
    system.register(doctoral).await;
    let agreement = system.create_agreement(co_accredited_agreement(&[])).await;
    system
        .register(co_accredited(
            "Nguyen",
            "Anh",
            "2001-05-06",
            &agreement.agreement_id,
        ))
        .await;
    for login in ["ines.faure", "ada.okafor", "anh.nguyen"] {
        wait_for(&system, login, "online-resources", true).await;
    }

    // Act + Assert: held in memory (each learner was just loaded by wait_for).
    assert_codes(&system, "memory").await;

    // Act: the cache's listening connection is killed: it forgets everything, so the
    // next ask for each learner reads the database.
    kill_cache_listener(&system).await;
    let address = system.entitlement.as_ref().unwrap().address;
    for _ in 0..200 {
        if component_health(address, CACHE_HEALTH).await != ServingStatus::Serving {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_ne!(
        component_health(address, CACHE_HEALTH).await,
        ServingStatus::Serving,
        "the cache saw its listener go, and forgot every learner"
    );

    // Assert: the same codes.
    assert_codes(&system, "database").await;

    // Explain gives the same codes.
    let explained = system
        .entitlement_client()
        .await
        .explain(system.as_role(
            Role::Dosi,
            v1::ExplainRequest {
                learner_id: "ada.okafor".to_owned(),
                at: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let denial = |resource: &str| {
        explained
            .resources
            .iter()
            .find(|one| one.resource == resource)
            .unwrap()
            .denial()
    };
    assert_eq!(denial("smart-card"), v1::Denial::NotPaid);
    assert_eq!(denial("grades"), v1::Denial::NotForPopulation);
    assert_eq!(denial("library"), v1::Denial::Unspecified, "granted");
    system.stop().await;
}
