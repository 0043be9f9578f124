//! Each change says who caused it: the caller whose request set it off is the actor
//! of every event along the chain (intake, entitlement, cards, directory), and
//! `system` only for what the calendar does.

use std::time::Duration;

use hosted_contracts::{
    prost::Message,
    subjects::{
        Fact, Service,
        cards::CARD_CHANGED,
        directory::ACCOUNT_PUBLISHED,
        entitlement::{GRANTS_CHANGED, GRANTS_RESTATED},
        intake::STAY_REGISTERED,
    },
    v1,
};
use hosted_e2e::{TestSystem, default_policy, registration, today_plus};
use hosted_platform::{auth::Role, clock::Clock};

/// The actors of the events of `learner_id` published on `fact`, oldest first.
async fn actors(
    system: &TestSystem,
    service: Service,
    fact: Fact,
    learner_id: &str,
) -> Vec<String> {
    let subject = system.namespace.subject(fact);
    hosted_testkit::stream_messages(&system.namespace.stream(service))
        .await
        .into_iter()
        .filter(|message| message.subject.as_str() == subject)
        .filter_map(|message| {
            let meta = match service {
                Service::Intake => v1::LearnerEvent::decode(message.payload).unwrap().meta,
                Service::Entitlement => v1::GrantsEvent::decode(message.payload).unwrap().meta,
                Service::Cards => v1::CardEvent::decode(message.payload).unwrap().meta,
                Service::Directory => v1::AccountEvent::decode(message.payload).unwrap().meta,
            }
            .unwrap();
            (meta.learner_id == learner_id).then_some(meta.actor)
        })
        .collect()
}

/// Waits until `learner_id` has at least `count` events on `fact`; returns their actors.
async fn wait_for_actors(
    system: &TestSystem,
    service: Service,
    fact: Fact,
    learner_id: &str,
    count: usize,
) -> Vec<String> {
    for _ in 0..300 {
        let found = actors(system, service, fact, learner_id).await;
        if found.len() >= count {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{count} events on {fact} never came");
}

/// Waits until an event of `learner_id` on `fact` names the calendar; returns the
/// actors of all of them.
async fn wait_for_system(
    system: &TestSystem,
    service: Service,
    fact: Fact,
    learner_id: &str,
) -> Vec<String> {
    for _ in 0..300 {
        let found = actors(system, service, fact, learner_id).await;
        if found.iter().any(|actor| actor == "system") {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no event on {fact} named the calendar");
}

/// Whether `actors` are `registrar` (at least once), then only `system`.
fn registrar_then_calendar(actors: &[String], registrar: &str) -> bool {
    let calendar = actors.iter().position(|actor| actor == "system");
    let (before, after) = actors.split_at(calendar.unwrap_or(actors.len()));
    !before.is_empty()
        && before.iter().all(|actor| actor == registrar)
        && after.iter().all(|actor| actor == "system")
}

#[tokio::test]
async fn every_event_along_the_chain_names_the_caller_who_caused_it() {
    // Arrange: the four services, entitlement and directory on a manual clock.
    let clock = Clock::manual("Europe/Paris", jiff::Timestamp::now()).unwrap();
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system
        .start_entitlement_with(default_policy(), clock.clone())
        .await;
    system.start_cards().await;
    system.start_directory_with_clock(clock.clone()).await;

    // Act: the registrar (caller "deve") registers a C2i2e trainee, whose smart-card
    // grant asks cards for a card, for a stay that starts in 10 days.
    let mut request = registration("Marchand", "Inès", "2001-04-05");
    let stay = request.stay.as_mut().unwrap();
    stay.population = "RECTORAT_C2I2E".to_owned();
    stay.start_date = today_plus(10);
    stay.end_date = today_plus(100);
    let learner = system.register(request).await.learner.unwrap();
    let learner_id = learner.person.unwrap().learner_id;

    // Assert: intake, entitlement, cards and directory all name the registrar.
    let deve = Role::Deve.as_str();
    let registered =
        wait_for_actors(&system, Service::Intake, STAY_REGISTERED, &learner_id, 1).await;
    assert_eq!(registered, [deve]);
    let granted = wait_for_actors(
        &system,
        Service::Entitlement,
        GRANTS_CHANGED,
        &learner_id,
        1,
    )
    .await;
    assert_eq!(granted, [deve], "entitlement's grants name the registrar");
    let carded = wait_for_actors(&system, Service::Cards, CARD_CHANGED, &learner_id, 1).await;
    assert_eq!(carded, [deve], "the card request names the registrar");
    let published = wait_for_actors(
        &system,
        Service::Directory,
        ACCOUNT_PUBLISHED,
        &learner_id,
        1,
    )
    .await;
    assert!(
        published.iter().all(|actor| actor == deve),
        "the entry's writes name the registrar: {published:?}"
    );

    // Act: the start day comes; no one asked for anything.
    clock.advance_days(10);

    // Assert: what the calendar set off names `system`, all along the chain.
    let granted = wait_for_actors(
        &system,
        Service::Entitlement,
        GRANTS_CHANGED,
        &learner_id,
        2,
    )
    .await;
    assert_eq!(granted, [deve, "system"]);
    let published =
        wait_for_system(&system, Service::Directory, ACCOUNT_PUBLISHED, &learner_id).await;
    assert!(
        registrar_then_calendar(&published, deve),
        "the entry's writes name the registrar, then the calendar: {published:?}"
    );
    let carded = actors(&system, Service::Cards, CARD_CHANGED, &learner_id).await;
    assert!(
        registrar_then_calendar(&carded, deve),
        "the card's moves name the registrar, then the calendar: {carded:?}"
    );

    // Assert: entitlement's audit says who, too.
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(&system.entitlement_database.url)
            .await
            .unwrap();
    let audited: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT actor FROM grant_audit WHERE learner_id = $1::uuid ORDER BY actor",
    )
    .bind(&learner_id)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(audited, [deve, "system"]);

    // Act: an operator (caller "dosi") restates the learner's grants.
    system
        .entitlement_client()
        .await
        .restate_grants(system.as_role(
            Role::Dosi,
            v1::RestateGrantsRequest {
                learner: learner_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    // Assert: the restatement names the operator, not the service.
    let restated = wait_for_actors(
        &system,
        Service::Entitlement,
        GRANTS_RESTATED,
        &learner_id,
        1,
    )
    .await;
    assert_eq!(restated, [Role::Dosi.as_str()]);

    system.stop().await;
}
