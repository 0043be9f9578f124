//! Grants follow the calendar by themselves: the due-time schedule publishes what comes
//! into force or lapses, with the time injected (a manual clock), not waited for.

use std::time::Duration;

use hosted_contracts::{
    prost::Message,
    subjects::{Service, entitlement::GRANTS_CHANGED},
    v1,
};
use hosted_e2e::{
    TestSystem, co_accredited, co_accredited_agreement, default_policy, registration, today_plus,
};
use hosted_platform::{auth::Role, clock::Clock};

use crate::entitlement::{check, wait_for};

/// The grants events published so far, oldest first.
pub(crate) async fn grants_events(system: &TestSystem) -> Vec<v1::GrantsEvent> {
    let subject = system.namespace.subject(GRANTS_CHANGED);
    hosted_testkit::stream_messages(&system.namespace.stream(Service::Entitlement))
        .await
        .into_iter()
        .filter(|message| message.subject.as_str() == subject)
        .map(|message| v1::GrantsEvent::decode(message.payload).unwrap())
        .collect()
}

/// Waits for the `count`th grants event and returns it.
async fn nth_event(system: &TestSystem, count: usize) -> v1::GrantsEvent {
    for _ in 0..200 {
        let events = grants_events(system).await;
        if events.len() >= count {
            assert_eq!(events.len(), count, "one event per change, no more");
            return events[count - 1].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("grants event {count} never came");
}

/// The entitlement database's audit of one learner: (resource, change, cause).
async fn audit(system: &TestSystem, learner_id: &str) -> Vec<(String, String, String)> {
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(&system.entitlement_database.url)
            .await
            .unwrap();
    sqlx::query_as(
        "SELECT resource, change, cause FROM grant_audit WHERE learner_id = $1::uuid ORDER BY id",
    )
    .bind(learner_id)
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

fn manual_clock() -> Clock {
    Clock::manual("Europe/Paris", jiff::Timestamp::now()).unwrap()
}

#[tokio::test]
async fn a_future_stay_comes_into_force_by_itself_and_lapses_after_its_grace() {
    // Arrange: entitlement on a manual clock; a stay from day 20 to day 60.
    let clock = manual_clock();
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system
        .start_entitlement_with(default_policy(), clock.clone())
        .await;
    let mut request = registration("Lefebvre", "Chloé", "2003-01-02");
    let stay = request.stay.as_mut().unwrap();
    stay.start_date = today_plus(20);
    stay.end_date = today_plus(60);
    let registered = system.register(request).await;
    let learner = registered.learner.unwrap();
    let learner_id = learner.person.unwrap().learner_id;
    let stay_id = learner.stays[0].stay_id.clone();
    let granted = nth_event(&system, 1).await;
    assert_eq!(granted.grants.len(), 5, "granted ahead, with their dates");
    assert!(granted.in_force.is_empty(), "nothing in force yet");
    let early = check(&system, "chloe.lefebvre", "wifi").await;
    assert!(!early.allowed);
    assert!(early.reason.contains("starts"), "{}", early.reason);

    // Act: the start date comes, with no event from intake.
    clock.advance_days(20);

    // Assert
    let started = nth_event(&system, 2).await;
    assert_eq!(
        started.in_force,
        ["ent", "grades", "library", "online-resources", "wifi"]
    );
    assert_eq!(started.effective_on, today_plus(20));
    assert!(started.grants_version > granted.grants_version);
    assert!(check(&system, "chloe.lefebvre", "library").await.allowed);

    // Act: the stay is ended early, on day 25 (an intake event), then the days pass.
    system
        .intake_client()
        .await
        .end_stay(system.as_role(
            Role::Deve,
            v1::EndStayRequest {
                stay_id,
                end_date: today_plus(25),
                reason: "training interrupted".to_owned(),
                // A shortening, not an early end: the grace applies.
                early_end: v1::EarlyEnd::Unspecified.into(),
            },
        ))
        .await
        .unwrap();
    let shortened = nth_event(&system, 3).await;
    assert_eq!(shortened.in_force.len(), 5, "still in force until day 25");
    clock.advance_days(6);

    // Assert: on day 26 the library and grades lapse; wifi has 7 days of grace, the
    // ENT 30.
    let lapsed = nth_event(&system, 4).await;
    assert_eq!(lapsed.in_force, ["ent", "wifi"]);
    let library = wait_for(&system, "chloe.lefebvre", "library", false).await;
    assert!(library.reason.contains("ended"), "{}", library.reason);
    assert!(check(&system, "chloe.lefebvre", "wifi").await.allowed);
    clock.advance_days(7);
    assert_eq!(nth_event(&system, 5).await.in_force, ["ent"]);
    assert!(!check(&system, "chloe.lefebvre", "wifi").await.allowed);
    clock.advance_days(23);
    assert!(nth_event(&system, 6).await.in_force.is_empty());

    // Every grant and every lapse is audited with its cause.
    let audit = audit(&system, &learner_id).await;
    let lines = |change: &str, cause: &str| {
        let mut resources: Vec<String> = audit
            .iter()
            .filter(|(_, c, k)| c == change && k == cause)
            .map(|(resource, _, _)| resource.clone())
            .collect();
        resources.sort();
        resources
    };
    let all = ["ent", "grades", "library", "online-resources", "wifi"];
    assert_eq!(lines("granted", "intake event"), all);
    assert_eq!(lines("took effect", "due date"), all);
    assert_eq!(lines("changed", "intake event"), all, "shortened");
    assert_eq!(lines("lapsed", "due date"), all);

    // Nothing more is due.
    clock.advance_days(400);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(grants_events(&system).await.len(), 6);
    system.stop().await;
}

#[tokio::test]
async fn ending_an_agreement_revokes_its_students_after_the_grace_period() {
    // Arrange: a co-accredited student under an agreement with the library option.
    let clock = manual_clock();
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system
        .start_entitlement_with(default_policy(), clock.clone())
        .await;
    let agreement = system
        .create_agreement(co_accredited_agreement(&["library"]))
        .await;
    system
        .register(co_accredited(
            "Moreau",
            "Jules",
            "2000-07-08",
            &agreement.agreement_id,
        ))
        .await;
    wait_for(&system, "jules.moreau", "library", true).await;

    // Act: the agreement ends on day 5.
    system
        .intake_client()
        .await
        .end_agreement(system.as_role(
            Role::Legal,
            v1::EndAgreementRequest {
                agreement_id: agreement.agreement_id,
                end_date: today_plus(5),
                reason: "partnership ended".to_owned(),
            },
        ))
        .await
        .unwrap();
    let shortened = nth_event(&system, 2).await;
    let library = shortened
        .grants
        .iter()
        .find(|grant| grant.resource == "library")
        .unwrap();
    assert_eq!(
        library.last_day,
        today_plus(5),
        "the library ends with day 5"
    );
    assert_eq!(
        library.valid_until.as_ref().unwrap().seconds,
        day_start(&today_plus(6)),
        "at the end of day 5, where the university is"
    );
    assert!(shortened.in_force.contains(&"library".to_owned()));

    // Assert: still allowed until day 5, revoked from day 6; wifi until day 12.
    clock.advance_days(5);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(check(&system, "jules.moreau", "library").await.allowed);
    clock.advance_days(1);
    let revoked = wait_for(&system, "jules.moreau", "library", false).await;
    assert!(revoked.reason.contains("ended"), "{}", revoked.reason);
    assert!(check(&system, "jules.moreau", "wifi").await.allowed);
    clock.advance_days(7);
    wait_for(&system, "jules.moreau", "wifi", false).await;
    for _ in 0..200 {
        if grants_events(&system).await.pop().unwrap().in_force == ["ent"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = grants_events(&system).await.pop().unwrap();
    assert_eq!(last.in_force, ["ent"], "published by the schedule");
    system.stop().await;
}

/// The instant a day starts in Paris, as grants carry it.
fn day_start(day: &str) -> i64 {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let paris = Clock::new("Europe/Paris").unwrap();
    paris
        .start_of(time::Date::parse(day, format).unwrap())
        .as_second()
}
