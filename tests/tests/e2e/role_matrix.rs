//! The role matrix, written out here by hand: for every RPC of every service, the
//! roles that may call it. It is NOT read from the services' ACCESS tables, so a
//! change of what a service accepts fails here until someone decides it on purpose
//! (and changes docs/hlctl.md's "Roles by RPC", which lists the same rows in the
//! same order). Beside it, what the card office reads of cards.

use std::collections::BTreeSet;

use hosted_contracts::{FILE_DESCRIPTOR_SET, prost::Message, prost_types::FileDescriptorSet, v1};
use hosted_e2e::TestSystem;
use hosted_platform::auth::Role::{self, CardOffice, Deve, Dosi, Finance, Integrator, Legal};

const INTAKE: &str = "hosted.v1.IntakeService";
const ENTITLEMENT: &str = "hosted.v1.EntitlementService";
const CARDS: &str = "hosted.v1.CardsService";
const DIRECTORY: &str = "hosted.v1.DirectoryService";

/// (service, RPC, the roles that may call it): least privilege, in the order of
/// docs/hlctl.md.
const MATRIX: &[(&str, &str, &[Role])] = &[
    (INTAKE, "RegisterStay", &[Deve]),
    (INTAKE, "GetLearner", &[Deve, Dosi]),
    (INTAKE, "SearchLearners", &[Deve, Dosi]),
    (INTAKE, "IdentifyLearner", &[Deve, Dosi, Integrator]),
    (INTAKE, "LockLearner", &[Deve, Dosi]),
    (INTAKE, "UnlockLearner", &[Deve, Dosi]),
    (INTAKE, "AmendPerson", &[Deve]),
    (INTAKE, "ErasePerson", &[Deve]),
    (INTAKE, "ExportPersonalData", &[Dosi]),
    (INTAKE, "AmendStay", &[Deve]),
    (INTAKE, "ExtendStay", &[Deve]),
    (INTAKE, "EndStay", &[Deve]),
    (INTAKE, "CancelStay", &[Deve]),
    (INTAKE, "ImportStays", &[Deve]),
    (INTAKE, "CreateAgreement", &[Legal]),
    (INTAKE, "AmendAgreement", &[Legal]),
    (INTAKE, "EndAgreement", &[Legal]),
    (INTAKE, "GetAgreement", &[Deve, Legal, Finance, Dosi]),
    (INTAKE, "ListAgreements", &[Deve, Legal, Finance, Dosi]),
    (INTAKE, "ListPaymentsDue", &[Deve, Finance]),
    (INTAKE, "RecordPayment", &[Finance]),
    (INTAKE, "RecordCohortPayment", &[Finance]),
    (INTAKE, "GetStats", &[Deve, Dosi]),
    (
        INTAKE,
        "ListPopulations",
        &[Deve, Legal, Finance, CardOffice, Dosi, Integrator],
    ),
    (INTAKE, "SavePopulation", &[Deve]),
    (
        INTAKE,
        "ListUnits",
        &[Deve, Legal, Finance, CardOffice, Dosi, Integrator],
    ),
    (INTAKE, "SaveUnit", &[Deve]),
    (INTAKE, "ListAuditEntries", &[Dosi]),
    (INTAKE, "ListAgreementAuditEntries", &[Dosi, Legal]),
    (ENTITLEMENT, "Check", &[Dosi, Integrator]),
    (ENTITLEMENT, "ListGrants", &[Deve, Dosi, Integrator]),
    (ENTITLEMENT, "Explain", &[Deve, Dosi]),
    (ENTITLEMENT, "SimulatePolicy", &[Dosi]),
    (ENTITLEMENT, "ActivatePolicy", &[Dosi]),
    (CARDS, "GetCard", &[CardOffice, Dosi]),
    (CARDS, "ListCards", &[CardOffice, Dosi]),
    (CARDS, "ListPrintQueue", &[CardOffice]),
    (CARDS, "ExportPrintBatch", &[CardOffice]),
    (CARDS, "GetPrintBatch", &[CardOffice]),
    (CARDS, "TransitionCard", &[CardOffice]),
    (CARDS, "ReplaceCard", &[CardOffice]),
    (CARDS, "ExportEpurse", &[CardOffice]),
    (CARDS, "GetEpurseExport", &[CardOffice]),
    (ENTITLEMENT, "ListAuditEntries", &[Dosi]),
    (CARDS, "ListAuditEntries", &[Dosi]),
    (DIRECTORY, "ListAuditEntries", &[Dosi]),
    (ENTITLEMENT, "ExportPersonalData", &[Dosi]),
    (CARDS, "ExportPersonalData", &[Dosi]),
    (DIRECTORY, "ExportPersonalData", &[Dosi]),
    (DIRECTORY, "GetAccount", &[Dosi]),
    (DIRECTORY, "RepublishAccount", &[Dosi]),
    (INTAKE, "RestateLearners", &[Dosi]),
    (ENTITLEMENT, "RestateGrants", &[Dosi]),
    (CARDS, "RestateCards", &[Dosi]),
    (DIRECTORY, "HoldPublication", &[Dosi]),
    (DIRECTORY, "Reconcile", &[Dosi]),
    (DIRECTORY, "ListDeadLetters", &[Dosi]),
    (DIRECTORY, "ReplayDeadLetters", &[Dosi]),
    (ENTITLEMENT, "ListDeadLetters", &[Dosi]),
    (ENTITLEMENT, "ReplayDeadLetters", &[Dosi]),
    (CARDS, "ListDeadLetters", &[Dosi]),
    (CARDS, "ReplayDeadLetters", &[Dosi]),
];

/// Every `service/RPC` the contracts define for the four services.
fn contract_rpcs() -> BTreeSet<String> {
    let descriptors = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
    descriptors
        .file
        .iter()
        .filter(|file| file.package() == "hosted.v1")
        .flat_map(|file| file.service.iter())
        .flat_map(|service| {
            service
                .method
                .iter()
                .map(|method| format!("hosted.v1.{}/{}", service.name(), method.name()))
        })
        .collect()
}

#[test]
fn the_matrix_lists_every_rpc_of_the_contracts_once() {
    let listed: Vec<String> = MATRIX
        .iter()
        .map(|(service, method, _)| format!("{service}/{method}"))
        .collect();
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "an RPC is listed twice");
    let contracts = contract_rpcs();
    let missing: Vec<&String> = contracts.difference(&unique).collect();
    let unknown: Vec<&String> = unique.difference(&contracts).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "not in the matrix: {missing:?}; in the matrix but not an RPC: {unknown:?}"
    );
    for (service, method, roles) in MATRIX {
        assert!(!roles.is_empty(), "{service}/{method}: nobody may call it");
    }
}

#[tokio::test]
async fn each_role_is_let_through_exactly_where_the_matrix_says() {
    // Arrange: the four services, each with one caller per role.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;
    system.start_directory().await;
    let address = |service: &str| {
        let running = match service {
            INTAKE => &system.intake,
            ENTITLEMENT => &system.entitlement,
            CARDS => &system.cards,
            _ => &system.directory,
        };
        running.as_ref().unwrap().address
    };
    let mut wrong = Vec::new();

    for (service, method, allowed) in MATRIX {
        let channel = hosted_testkit::channel(address(service)).await;
        for role in Role::ALL {
            // Act: an empty request; past the guard it fails or not on its merits.
            let outcome = hosted_testkit::raw_call(
                channel.clone(),
                service,
                method,
                Some(system.callers.token(role)),
            )
            .await;

            // Assert
            let denied =
                matches!(&outcome, Err(status) if status.code() == tonic::Code::PermissionDenied);
            let unauthenticated =
                matches!(&outcome, Err(status) if status.code() == tonic::Code::Unauthenticated);
            if unauthenticated || denied == allowed.contains(&role) {
                wrong.push(format!(
                    "{service}/{method} as {role}: {} by the matrix, got {outcome:?}",
                    if allowed.contains(&role) {
                        "allowed"
                    } else {
                        "refused"
                    }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    system.stop().await;
}

/// Whether `needle` is in `haystack`.
fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// The card office works from cards' queue: what cards answers it names the card's
/// holder and the card's dates, never the stay or its payment.
#[tokio::test]
async fn the_card_office_sees_the_holder_and_the_card_dates_never_the_stay_or_its_payment() {
    // Arrange: a visiting doctoral student whose card comes once the stay is paid.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;
    let mut doctoral = hosted_e2e::registration("Moreau", "Lucas", "1994-05-06");
    doctoral.stay.as_mut().unwrap().population = "VISITING_DOCTORAL".to_owned();
    let registered = system.register(doctoral).await;
    // And a C2i2e trainee with an INE (a card and the e-purse right), whose stay a
    // third party paid too.
    let mut trainee = hosted_e2e::registration("Girard", "Alex", "2000-07-08");
    trainee.person.as_mut().unwrap().ine = "123456789AB".to_owned();
    trainee.stay.as_mut().unwrap().population = "RECTORAT_C2I2E".to_owned();
    let trainee = system.register(trainee).await;
    let mut payments = Vec::new();
    for (stay_id, reference) in [
        (&registered.stay_id, "FAC-2026-4417"),
        (&trainee.stay_id, "FAC-2026-4418"),
    ] {
        let payment = system
            .intake_client()
            .await
            .record_payment(system.as_role(
                Finance,
                v1::RecordPaymentRequest {
                    stay_id: stay_id.clone(),
                    amount_cents: 1200,
                    paid_on: hosted_e2e::today_plus(0),
                    payer: v1::Payer::Partner.into(),
                    payer_name: "rectorat".to_owned(),
                    reference: reference.to_owned(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .payment
            .unwrap();
        payments.push((payment.payment_id, reference));
    }
    let mut cards = system.cards_client().await;
    let mut listed = None;
    for _ in 0..200 {
        let trainee_has_one = cards
            .list_cards(system.as_role(
                CardOffice,
                v1::ListCardsRequest {
                    learner: "alex.girard".to_owned(),
                },
            ))
            .await
            .is_ok_and(|answer| !answer.get_ref().cards.is_empty());
        let answer = cards
            .list_cards(system.as_role(
                CardOffice,
                v1::ListCardsRequest {
                    learner: "lucas.moreau".to_owned(),
                },
            ))
            .await;
        if let Ok(answer) = answer
            && !answer.get_ref().cards.is_empty()
            && trainee_has_one
        {
            listed = Some(answer.into_inner());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let listed = listed.expect("a card once paid");
    let card = listed.cards[0].clone();

    // Act: everything the card office reads of it.
    let got = cards
        .get_card(system.as_role(
            CardOffice,
            v1::GetCardRequest {
                card: card.card_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let queue = cards
        .list_print_queue(system.as_role(CardOffice, v1::ListPrintQueueRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let batch = cards
        .export_print_batch(system.as_role(
            CardOffice,
            v1::ExportPrintBatchRequest {
                format: v1::DocumentFormat::Json.into(),
                limit: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let epurse = cards
        .export_epurse(system.as_role(CardOffice, v1::ExportEpurseRequest { full: true }))
        .await
        .unwrap()
        .into_inner();

    // Assert: the holder and the card's last day are there; no stay, population,
    // unit or payment.
    assert_eq!(card.login, "lucas.moreau");
    assert_eq!(card.last_day, hosted_e2e::today_plus(200));
    assert_eq!(queue.cards.len(), 2);
    assert_eq!(batch.cards.len(), 2);
    let answers = [
        ("ListCards", listed.encode_to_vec()),
        ("GetCard", got.encode_to_vec()),
        ("ListPrintQueue", queue.encode_to_vec()),
        ("ExportPrintBatch", batch.encode_to_vec()),
        ("ExportEpurse", epurse.encode_to_vec()),
    ];
    let mut stays_and_payments = vec![
        registered.stay_id.as_str(),
        trainee.stay_id.as_str(),
        "VISITING_DOCTORAL",
        "RECTORAT_C2I2E",
        "IFSI-NORD",
        "rectorat",
    ];
    for (payment_id, reference) in &payments {
        stays_and_payments.extend([payment_id.as_str(), *reference]);
    }
    for (rpc, answer) in &answers {
        assert!(
            ["lucas.moreau", "alex.girard", "Girard"]
                .iter()
                .any(|holder| holds(answer, holder)),
            "{rpc}: a holder, as a control"
        );
        for stay_or_payment in &stays_and_payments {
            assert!(
                !holds(answer, stay_or_payment),
                "{rpc} shows {stay_or_payment}"
            );
        }
    }
    system.stop().await;
}
