use std::time::Duration;

use hosted_contracts::{subjects::Service, v1};
use hosted_e2e::{TestSystem, co_accredited, co_accredited_agreement, registration, today_plus};
use hosted_platform::auth::Role;

pub(crate) async fn check(system: &TestSystem, login: &str, resource: &str) -> v1::CheckResponse {
    system
        .entitlement_client()
        .await
        .check(system.as_role(
            Role::Integrator,
            v1::CheckRequest {
                learner: Some(v1::check_request::Learner::Login(login.to_owned())),
                resource: resource.to_owned(),
                at: None,
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// Waits until `resource` is allowed (or not) for `login`.
/// Kills the connection entitlement's Check cache listens on (there is one; the
/// follower of policy activations listens on another channel): the cache forgets every
/// learner until it listens again.
pub(crate) async fn kill_cache_listener(system: &TestSystem) {
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(&system.entitlement_database.url)
            .await
            .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%' || $1 || '%'",
    )
    .bind(hosted_entitlement::cache::CHANNEL)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(killed, [true], "one listening connection");
}

pub(crate) async fn wait_for(
    system: &TestSystem,
    login: &str,
    resource: &str,
    allowed: bool,
) -> v1::CheckResponse {
    for _ in 0..200 {
        let answer = check(system, login, resource).await;
        if answer.allowed == allowed {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{resource} never became allowed={allowed} for {login}");
}

#[tokio::test]
async fn grants_follow_the_policy_and_check_denies_by_default() {
    // Arrange
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;

    // Act: an IFSI student.
    system
        .register(registration("Fontaine", "Manon", "2002-03-04"))
        .await;

    // Assert
    let library = wait_for(&system, "manon.fontaine", "library", true).await;
    assert_eq!(library.rule, "populations.IFSI.library");
    assert_eq!(library.policy_version, "2026.1");
    assert!(check(&system, "manon.fontaine", "grades").await.allowed);
    // A login as a user types it in CAS: LDAP's uid is not case-sensitive, nor Check.
    assert!(check(&system, "Manon.FONTAINE", "grades").await.allowed);
    let card = check(&system, "manon.fontaine", "smart-card").await;
    assert!(!card.allowed);
    assert!(card.reason.contains("never"), "{}", card.reason);
    assert_eq!(card.denial(), v1::Denial::NotForPopulation);
    assert_eq!(library.denial(), v1::Denial::Unspecified);
    assert_eq!(library.on, today_plus(0));
    assert_eq!(library.last_day, today_plus(200));
    let stranger = check(&system, "nobody.here", "wifi").await;
    assert!(!stranger.allowed);
    assert_eq!(stranger.reason, "unknown learner");
    assert_eq!(stranger.denial(), v1::Denial::UnknownLearner);
    let typo = check(&system, "manon.fontaine", "spaceship").await;
    assert!(!typo.allowed);
    assert_eq!(typo.denial(), v1::Denial::UnknownResource);

    let grants = system
        .entitlement_client()
        .await
        .list_grants(system.as_role(
            Role::Dosi,
            v1::ListGrantsRequest {
                learner_id: "manon.fontaine".to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .grants;
    let mut resources: Vec<String> = grants.iter().map(|grant| grant.resource.clone()).collect();
    resources.sort();
    assert_eq!(
        resources,
        ["ent", "grades", "library", "online-resources", "wifi"]
    );
    let events =
        hosted_testkit::stream_messages(&system.namespace.stream(Service::Entitlement)).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].subject.as_str(),
        system
            .namespace
            .subject(hosted_contracts::subjects::entitlement::GRANTS_CHANGED)
    );
    hosted_testkit::assert_every_rpc_guarded(
        system.entitlement.as_ref().unwrap().address,
        "hosted.v1.EntitlementService",
        hosted_entitlement::grpc::ACCESS,
        &system.callers,
    )
    .await;
    system.stop().await;
}

#[tokio::test]
async fn a_co_accredited_student_gets_the_library_only_when_the_agreement_includes_it() {
    // Arrange: an agreement without the library option, a student under it.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    let agreement = system.create_agreement(co_accredited_agreement(&[])).await;
    system
        .register(co_accredited(
            "Nguyen",
            "Anh",
            "2001-05-06",
            &agreement.agreement_id,
        ))
        .await;
    wait_for(&system, "anh.nguyen", "online-resources", true).await;
    let without = check(&system, "anh.nguyen", "library").await;
    assert!(!without.allowed);
    assert!(without.reason.contains("library"), "{}", without.reason);

    // Act: the agreement gains the library option.
    system
        .intake_client()
        .await
        .amend_agreement(system.as_role(
            Role::Legal,
            v1::AmendAgreementRequest {
                agreement_id: agreement.agreement_id,
                expected_version: agreement.version,
                agreement: Some(co_accredited_agreement(&["library"])),
                reason: "annex 2".to_owned(),
            },
        ))
        .await
        .unwrap();

    // Assert: recomputed from the agreement's event, without any learner event.
    let with = wait_for(&system, "anh.nguyen", "library", true).await;
    assert_eq!(with.rule, "populations.CO_ACCREDITED.library");
    system.stop().await;
}

#[tokio::test]
async fn check_is_never_left_stale_when_the_cache_loses_its_listener() {
    // Arrange: a learner whose grants the cache holds.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    let registered = system
        .register(registration("Lambert", "Théo", "2000-10-11"))
        .await;
    let stay_id = registered.learner.unwrap().stays[0].stay_id.clone();
    wait_for(&system, "theo.lambert", "library", true).await;

    // Act: the cache's listening connection is killed, then the grants change.
    kill_cache_listener(&system).await;
    system
        .intake_client()
        .await
        .end_stay(system.as_role(
            Role::Deve,
            v1::EndStayRequest {
                stay_id,
                end_date: today_plus(0),
                reason: "left".to_owned(),
                early_end: v1::EarlyEnd::Unspecified.into(),
            },
        ))
        .await
        .unwrap();

    // Assert: Check sees the new last day.
    for _ in 0..200 {
        if check(&system, "theo.lambert", "library").await.last_day == today_plus(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        check(&system, "theo.lambert", "library").await.last_day,
        today_plus(0)
    );
    system.stop().await;
}

#[tokio::test]
async fn premises_are_granted_for_the_lab_whose_sponsor_asks() {
    // Arrange: a visiting doctoral student hosted by a lab that asks for its premises.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    let mut request = registration("Okafor", "Ada", "1994-02-03");
    let stay = request.stay.as_mut().unwrap();
    stay.population = "VISITING_DOCTORAL".to_owned();
    stay.sponsor_unit = "LAB-CHEM".to_owned();
    stay.requested_resources = vec!["premises".to_owned()];
    let registered = system.register(request).await;
    let stay_id = registered.learner.unwrap().stays[0].stay_id.clone();

    // Assert: that lab's premises, no other.
    let lab = wait_for(&system, "ada.okafor", "premises:LAB-CHEM", true).await;
    assert_eq!(lab.rule, "populations.VISITING_DOCTORAL.premises");
    let other = check(&system, "ada.okafor", "premises:LAB-BIO").await;
    assert!(!other.allowed);
    assert_eq!(other.denial(), v1::Denial::NotGranted);
    assert_eq!(other.reason, "granted for premises:LAB-CHEM only");

    // Act: the lab withdraws its request.
    system
        .intake_client()
        .await
        .amend_stay(system.as_role(
            Role::Deve,
            v1::AmendStayRequest {
                stay_id,
                set_requested_resources: true,
                requested_resources: vec![],
                reason: "access no longer needed".to_owned(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    // Assert
    let withdrawn = wait_for(&system, "ada.okafor", "premises:LAB-CHEM", false).await;
    assert_eq!(withdrawn.reason, "the stay's sponsor did not ask for it");
    system.stop().await;
}

/// The resources in force for `login`, from ListGrants (today within every grant).
async fn in_force(system: &TestSystem, login: &str) -> Vec<String> {
    let grants = system
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
        .grants;
    let mut resources: Vec<String> = grants.into_iter().map(|grant| grant.resource).collect();
    resources.sort();
    resources.dedup();
    resources
}

#[tokio::test]
async fn every_population_gets_what_the_requirements_table_says() {
    // Arrange: one learner of each population, with no agreement option, no request
    // from the sponsor and no payment: "possibly" is never a silent yes.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    let agreement = system.create_agreement(co_accredited_agreement(&[])).await;
    let base = ["ent", "online-resources", "wifi"];
    let expected: [(&str, &str, &[&str]); 9] = [
        (
            "IFSI",
            "Ifsi",
            &["ent", "grades", "library", "online-resources", "wifi"],
        ),
        (
            "RECTORAT_C2I2E",
            "Ctwoi",
            &[
                "e-purse",
                "ent",
                "grades",
                "online-resources",
                "smart-card",
                "wifi",
            ],
        ),
        (
            "SHORT_COURSE_RECTORAT",
            "Shortrect",
            &["ent", "grades", "online-resources", "wifi"],
        ),
        ("SHORT_COURSE_SUFA", "Shortsufa", &["ent", "wifi"]),
        ("CO_ACCREDITED", "Coaccred", &base),
        ("RECTORAT_CAPES_AGREG", "Capes", &base),
        ("RECTORAT_PAF", "Paf", &base),
        ("VAE", "Vae", &base),
        (
            "VISITING_DOCTORAL",
            "Doctoral",
            &["ent", "library", "online-resources", "wifi"],
        ),
    ];
    let mut stays = Vec::new();
    for (index, (population, family, _)) in expected.iter().enumerate() {
        let mut request = registration(family, "Sam", &format!("199{index}-01-0{}", index + 1));
        let stay = request.stay.as_mut().unwrap();
        stay.population = (*population).to_owned();
        if *population == "CO_ACCREDITED" {
            stay.agreement_id = agreement.agreement_id.clone();
        }
        stays.push(system.register(request).await.stay_id);
    }

    // Assert
    for (population, family, resources) in expected {
        let login = format!("sam.{}", family.to_lowercase());
        wait_for(&system, &login, "wifi", true).await;
        assert_eq!(in_force(&system, &login).await, resources, "{population}");
    }

    // Act: the visiting doctoral student pays; the card comes with the payment.
    system
        .intake_client()
        .await
        .record_payment(system.as_role(
            Role::Finance,
            v1::RecordPaymentRequest {
                stay_id: stays[8].clone(),
                amount_cents: 1200,
                paid_on: today_plus(0),
                payer: v1::Payer::Learner.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let card = wait_for(&system, "sam.doctoral", "smart-card", true).await;
    assert_eq!(card.rule, "populations.VISITING_DOCTORAL.smart-card");
    system.stop().await;
}

#[tokio::test]
async fn a_bad_event_in_a_batch_is_dead_lettered_and_the_others_are_applied() {
    // Arrange: while entitlement is not running, three registrations with garbage on a
    // learner subject among them, so that they arrive as one batch.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system
        .register(registration("Perrin", "Lou", "2001-03-01"))
        .await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
    hosted_testkit::jetstream()
        .await
        .publish_with_headers(
            system
                .namespace
                .subject(hosted_contracts::subjects::intake::STAY_REGISTERED),
            headers,
            vec![0xff, 0x00, 0x13].into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    system
        .register(registration("Marchand", "Eva", "2002-04-02"))
        .await;
    system
        .register(registration("Roche", "Noé", "2003-05-03"))
        .await;
    let intake_stream = system.namespace.stream(Service::Intake);
    for _ in 0..200 {
        if hosted_testkit::stream_messages(&intake_stream).await.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Act
    system.start_entitlement().await;

    // Assert: the three learners are granted, the garbage is in the dead letters.
    for login in ["lou.perrin", "eva.marchand", "noe.roche"] {
        wait_for(&system, login, "wifi", true).await;
    }
    let subjects: Vec<String> =
        hosted_testkit::stream_messages(&system.namespace.stream(Service::Entitlement))
            .await
            .into_iter()
            .map(|message| message.subject.to_string())
            .collect();
    let dead = subjects
        .iter()
        .filter(|subject| subject.contains(".deadletter."))
        .count();
    let granted = subjects
        .iter()
        .filter(|subject| subject.ends_with(".grants.changed"))
        .count();
    assert_eq!((dead, granted), (1, 3), "{subjects:?}");
    system.stop().await;
}
