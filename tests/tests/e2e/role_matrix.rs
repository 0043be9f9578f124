//! The role matrix, written out here by hand: for every RPC of every service, the
//! roles that may call it. It is NOT read from the services' ACCESS tables, so a
//! change of what a service accepts fails here until someone decides it on purpose
//! (and changes docs/hlctl.md's "Roles by RPC", which lists the same rows in the
//! same order).

use std::collections::BTreeSet;

use hosted_contracts::{FILE_DESCRIPTOR_SET, prost::Message, prost_types::FileDescriptorSet};
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
    (INTAKE, "AmendPerson", &[Deve]),
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
