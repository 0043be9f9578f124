//! The audit query across services: a learner's whole story (intake, entitlement,
//! cards, directory) in time order, with who did each thing, why and the event that
//! caused it, without personal data; and the roles that may not read it.

use std::time::Duration;

use hosted_contracts::v1;
use hosted_e2e::{TestSystem, registration, today_plus};
use hosted_hlctl::audit::{self, Line, Sources};
use hosted_platform::auth::Role;
use tonic::Code;

fn address(running: Option<&hosted_e2e::Running>) -> String {
    format!("http://{}", running.unwrap().address)
}

/// The four services of `system`, as hlctl's commands that ask them all reach them.
pub(crate) fn sources<'a>(system: &TestSystem, token: &'a str) -> Sources<'a> {
    let lazy = |running| hosted_hlctl::rpc::lazy(&address(running)).unwrap();
    Sources {
        intake: lazy(system.intake.as_ref()),
        entitlement: lazy(system.entitlement.as_ref()),
        cards: lazy(system.cards.as_ref()),
        directory: lazy(system.directory.as_ref()),
        token: Some(token),
    }
}

fn of<'a>(lines: &'a [Line], service: &str) -> Vec<&'a Line> {
    lines
        .iter()
        .filter(|line| line.entry.service == service)
        .collect()
}

/// Whether the story holds everything the test did, as far as each service goes.
fn complete(lines: &[Line]) -> bool {
    let actions: Vec<&str> = lines
        .iter()
        .map(|line| line.entry.action.as_str())
        .collect();
    ["stay.registered", "person.amended", "stay.ended"]
        .iter()
        .all(|action| actions.contains(action))
        && !of(lines, "cards").is_empty()
        && of(lines, "directory").len() >= 2
        && of(lines, "entitlement")
            .iter()
            .any(|line| line.entry.action == "grant.changed")
}

#[tokio::test]
async fn a_learners_story_is_told_by_every_service_in_time_order_with_who_and_why() {
    // Arrange: the four services; a C2i2e trainee (grants, a card, an account).
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;
    system.start_directory().await;
    let mut request = registration("Audit", "Alex", "1993-03-03");
    request.stay.as_mut().unwrap().population = "RECTORAT_C2I2E".to_owned();
    request.stay.as_mut().unwrap().end_date = today_plus(60);
    let registered = system.register(request).await;
    let learner = registered.learner.unwrap();
    let learner_id = learner.person.unwrap().learner_id;

    // Act: the learner is amended (a new e-mail) and their stay ended early.
    system
        .intake_client()
        .await
        .amend_person(system.as_role(
            Role::Deve,
            v1::AmendPersonRequest {
                learner_id: learner_id.clone(),
                expected_version: learner.version,
                person: Some(v1::PersonInput {
                    email: "secret.address@example.org".to_owned(),
                    ..Default::default()
                }),
                reason: "typo in the e-mail".to_owned(),
            },
        ))
        .await
        .unwrap();
    system
        .intake_client()
        .await
        .end_stay(system.as_role(
            Role::Deve,
            v1::EndStayRequest {
                stay_id: registered.stay_id.clone(),
                end_date: today_plus(1),
                reason: "left early".to_owned(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let dosi = system.callers.token(Role::Dosi).to_owned();
    let dosi_sources = sources(&system, &dosi);
    let mut lines = Vec::new();
    // Up to 30 s: the whole suite runs beside it.
    for _ in 0..600 {
        lines = audit::learner_story(&dosi_sources, "alex.audit")
            .await
            .unwrap();
        if complete(&lines) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Assert: every service's entries, in time order, each with an actor.
    let told: Vec<String> = lines
        .iter()
        .map(|line| {
            format!(
                "{} {} {}",
                line.entry.service,
                line.who(),
                line.entry.action
            )
        })
        .collect();
    assert!(complete(&lines), "{told:#?}");
    let instants: Vec<(i64, i32)> = lines
        .iter()
        .map(|line| {
            let at = line.entry.occurred_at.unwrap();
            (at.seconds, at.nanos)
        })
        .collect();
    assert!(instants.is_sorted(), "{told:#?}");
    assert!(
        lines.iter().all(|line| !line.entry.actor.is_empty()),
        "{told:#?}"
    );
    assert!(lines.iter().all(|line| line.entry.learner_id == learner_id));
    // Intake: the caller, the reason, the fields changed (never their values), and
    // the event each change published.
    let intake = of(&lines, "intake");
    assert!(
        intake.iter().all(|line| line.entry.actor == "deve"),
        "{told:#?}"
    );
    let amended = intake
        .iter()
        .find(|line| line.entry.action == "person.amended")
        .unwrap();
    assert_eq!(amended.entry.reason, "typo in the e-mail");
    assert!(
        amended.entry.detail.contains("email"),
        "{}",
        amended.entry.detail
    );
    let ended = intake
        .iter()
        .find(|line| line.entry.action == "stay.ended")
        .unwrap();
    assert_eq!(ended.entry.reason, "left early");
    assert!(
        intake.iter().all(|line| !line.entry.event_id.is_empty()),
        "{told:#?}"
    );
    // Entitlement: each grant change names the intake event behind it and the caller
    // behind that, carried along the chain; the early end shortened the grants.
    let entitlement = of(&lines, "entitlement");
    assert!(
        entitlement
            .iter()
            .all(|line| !line.entry.cause_event_id.is_empty()
                && line.entry.actor == "deve"
                && line.who() == "deve"),
        "{told:#?}"
    );
    let shortened = entitlement
        .iter()
        .find(|line| line.entry.action == "grant.changed")
        .unwrap();
    assert_eq!(shortened.entry.cause_event_id, ended.entry.event_id);
    assert!(
        entitlement
            .iter()
            .all(|line| !line.entry.event_id.is_empty()),
        "{told:#?}"
    );
    // Cards: the card's steps, each following a grants event, so made for the caller
    // behind it along the chain; directory: the LDAP writes with their events, for
    // the same caller.
    assert!(
        of(&lines, "cards").iter().all(|line| {
            !line.entry.card_id.is_empty()
                && entitlement
                    .iter()
                    .any(|grant| grant.entry.event_id == line.entry.cause_event_id)
                && line.who() == "deve"
        }),
        "{told:#?}"
    );
    assert!(
        of(&lines, "directory")
            .iter()
            .all(|line| line.entry.action.starts_with("ldap.")
                && !line.entry.event_id.is_empty()
                && line.entry.actor == "deve"),
        "{told:#?}"
    );
    // No personal data: neither the e-mail (old or new) nor the birth date.
    for line in &lines {
        let entry = &line.entry;
        let text = [&entry.actor, &entry.action, &entry.detail, &entry.reason]
            .map(|field| field.as_str())
            .join(" | ");
        for personal in ["secret.address", "example.org", "1993-03-03", "Audit"] {
            assert!(!text.contains(personal), "{personal} in {text}");
        }
    }
    system.stop().await;
}

#[tokio::test]
async fn only_the_dosi_reads_a_story_and_the_legal_role_an_agreements() {
    // Arrange
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;
    system.start_directory().await;
    let registered = system
        .register(registration("Refus", "Alex", "1992-02-02"))
        .await;
    let learner_id = registered.learner.unwrap().person.unwrap().learner_id;

    // Act + Assert: integrator and finance are refused by every service, legal by
    // a learner's story; the refusal names the role it needs.
    for role in [
        Role::Integrator,
        Role::Finance,
        Role::Legal,
        Role::CardOffice,
    ] {
        let token = system.callers.token(role).to_owned();
        let refused = audit::learner_story(&sources(&system, &token), &learner_id)
            .await
            .unwrap_err();
        assert!(
            format!("{refused:#}").contains("PERMISSION_DENIED"),
            "{role:?}: {refused:#}"
        );
        let learner_id = learner_id.clone();
        let statuses = [
            system
                .intake_client()
                .await
                .list_audit_entries(system.as_role(
                    role,
                    v1::ListAuditEntriesRequest {
                        learner_id: learner_id.clone(),
                    },
                ))
                .await
                .unwrap_err(),
            system
                .entitlement_client()
                .await
                .list_audit_entries(system.as_role(
                    role,
                    v1::EntitlementServiceListAuditEntriesRequest {
                        learner_id: learner_id.clone(),
                    },
                ))
                .await
                .unwrap_err(),
            system
                .cards_client()
                .await
                .list_audit_entries(system.as_role(
                    role,
                    v1::CardsServiceListAuditEntriesRequest {
                        learner_id: learner_id.clone(),
                        card_id: String::new(),
                    },
                ))
                .await
                .unwrap_err(),
            system
                .directory_client()
                .await
                .list_audit_entries(system.as_role(
                    role,
                    v1::DirectoryServiceListAuditEntriesRequest {
                        learner_id: learner_id.clone(),
                    },
                ))
                .await
                .unwrap_err(),
        ];
        for status in statuses {
            assert_eq!(
                status.code(),
                Code::PermissionDenied,
                "{role:?}: {status:?}"
            );
            assert!(status.message().contains("dosi"), "{}", status.message());
        }
    }
    // Legal reads an agreement's story; a learner given there is refused by name.
    let agreement = system
        .create_agreement(hosted_e2e::co_accredited_agreement(&[]))
        .await;
    let legal = system.callers.token(Role::Legal).to_owned();
    let story = audit::agreement_story(&sources(&system, &legal), &agreement.agreement_id)
        .await
        .unwrap();
    assert_eq!(story.len(), 1, "{story:?}");
    assert_eq!(story[0].entry.action, "agreement.created");
    assert_eq!(story[0].entry.actor, "legal");
    let malformed = system
        .intake_client()
        .await
        .list_agreement_audit_entries(system.as_role(
            Role::Legal,
            v1::ListAgreementAuditEntriesRequest {
                agreement_id: "AGR-1".to_owned(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(
        malformed.message().contains("agreement_id"),
        "{}",
        malformed.message()
    );
    // A card's story names one subject: neither or both is refused.
    for (learner, card) in [("", ""), (learner_id.as_str(), learner_id.as_str())] {
        let refused = system
            .cards_client()
            .await
            .list_audit_entries(system.as_role(
                Role::Dosi,
                v1::CardsServiceListAuditEntriesRequest {
                    learner_id: learner.to_owned(),
                    card_id: card.to_owned(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().contains("subject"),
            "{}",
            refused.message()
        );
    }
    system.stop().await;
}
