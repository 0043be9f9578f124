//! Rebuilding a derived store: directory's database lost (or restored from an old
//! backup) and entitlement's lost, each rebuilt by the sources restating their state
//! (`hlctl rebuild`'s own code); and a restatement of an intact system, which changes
//! nothing downstream.

use std::{collections::BTreeMap, time::Duration};

use hosted_contracts::{
    prost::Message,
    subjects::{self, Service},
    v1,
};
use hosted_e2e::{TestSystem, co_accredited, co_accredited_agreement, registration};
use hosted_hlctl::rebuild::{self, Derived, Owner, Publication, Services};
use hosted_platform::auth::Role;
use hosted_testkit::TestDatabase;

/// An LDAP entry's every attribute, operational ones included (`entryCSN`,
/// `modifyTimestamp`: a write of any kind changes them), values sorted.
type Entries = BTreeMap<String, BTreeMap<String, Vec<String>>>;

async fn entries(system: &TestSystem) -> Entries {
    system
        .subtree
        .entries()
        .await
        .into_iter()
        .map(|entry| {
            let attributes = entry
                .attrs
                .into_iter()
                .map(|(name, mut values)| {
                    values.sort();
                    (name, values)
                })
                .collect();
            (entry.dn, attributes)
        })
        .collect()
}

/// The logins of the learners [`populated`] registers.
const LOGINS: [&str; 3] = ["alex.roux", "anh.nguyen", "lea.durand"];

/// Waits until `login`'s entry satisfies `wanted`.
async fn wait_for_entry(
    system: &TestSystem,
    login: &str,
    what: &str,
    wanted: impl Fn(&ldap3::SearchEntry) -> bool,
) {
    let filter = format!("(uid={login})");
    for _ in 0..400 {
        if let Some(entry) = system.subtree.search(&filter).await.into_iter().next()
            && wanted(&entry)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the entry of {login} never had {what}");
}

fn has(entry: &ldap3::SearchEntry, attribute: &str, part: &str) -> bool {
    entry
        .attrs
        .get(attribute)
        .is_some_and(|values| values.iter().any(|value| value.contains(part)))
}

async fn account(
    system: &TestSystem,
    login: &str,
) -> Result<v1::GetAccountResponse, tonic::Status> {
    system
        .directory_client()
        .await
        .get_account(system.as_role(
            Role::Dosi,
            v1::GetAccountRequest {
                key: Some(v1::get_account_request::Key::Login(login.to_owned())),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The LDAP writes directory counted for each learner.
async fn ldap_writes(system: &TestSystem) -> Vec<i64> {
    let mut writes = Vec::new();
    for login in LOGINS {
        writes.push(account(system, login).await.unwrap().ldap_writes);
    }
    writes
}

fn address(running: Option<&hosted_e2e::Running>) -> String {
    running
        .map(|running| format!("http://{}", running.address))
        .unwrap_or_else(|| "http://127.0.0.1:9".to_owned())
}

/// The sources as `hlctl` reaches them, with the dosi caller's token.
fn sources<'a>(system: &TestSystem, token: &'a str) -> Services<'a> {
    Services {
        intake: hosted_hlctl::rpc::lazy(&address(system.intake.as_ref())).unwrap(),
        entitlement: hosted_hlctl::rpc::lazy(&address(system.entitlement.as_ref())).unwrap(),
        cards: hosted_hlctl::rpc::lazy(&address(system.cards.as_ref())).unwrap(),
        token: Some(token),
    }
}

fn publication<'a>(system: &TestSystem, token: &'a str) -> Publication<'a> {
    Publication {
        directory: hosted_hlctl::rpc::lazy(&address(system.directory.as_ref())).unwrap(),
        token: Some(token),
    }
}

/// `hlctl rebuild <derived>`, as the command runs it.
async fn rebuild(system: &TestSystem, derived: Derived) -> rebuild::Rebuilt {
    try_rebuild(system, derived).await.unwrap()
}

async fn try_rebuild(system: &TestSystem, derived: Derived) -> anyhow::Result<rebuild::Rebuilt> {
    let token = system.callers.token(Role::Dosi).to_owned();
    let publication = publication(system, &token);
    rebuild::rebuild(
        &sources(system, &token),
        (derived == Derived::Directory).then_some(&publication),
        derived,
        2,
        Duration::from_secs(60),
        false,
        |_| {},
    )
    .await
}

/// A service's database lost (the service stopped first), and an empty one made in
/// its place by the administrator, as the service may not create databases.
async fn drop_database(database: &TestDatabase) {
    database.recreate_empty().await;
}

/// Waits until every account is compared with LDAP.
async fn wait_until_published(system: &TestSystem) {
    let token = system.callers.token(Role::Dosi).to_owned();
    let state = publication(system, &token)
        .wait_published(Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    assert_eq!(state.accounts_pending, 0, "accounts left unpublished");
}

/// The four services, directory waiting for grants as deployed, and three learners
/// whose entries come from every source: a C2i2e trainee with a card enabled (cards),
/// a co-accredited student under an agreement with a partner UAI and the library
/// option (intake's agreements, entitlement), an IFSI student (entitlement's grants).
/// Returns once every entry is complete and published.
async fn populated() -> TestSystem {
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;
    system.await_grants = Duration::from_secs(10);
    system.start_directory().await;

    let mut trainee = registration("Roux", "Alex", "2001-02-03");
    trainee.person.as_mut().unwrap().ine = "223456789AB".to_owned();
    trainee.stay.as_mut().unwrap().population = "RECTORAT_C2I2E".to_owned();
    system.register(trainee).await;
    let agreement = system
        .create_agreement(v1::AgreementInput {
            partner_uai: "0134009M".to_owned(),
            ..co_accredited_agreement(&["library"])
        })
        .await;
    system
        .register(co_accredited(
            "Nguyen",
            "Anh",
            "1999-04-05",
            &agreement.agreement_id,
        ))
        .await;
    system
        .register(registration("Durand", "Léa", "2000-01-02"))
        .await;

    // The trainee's card, through the card office's hands to enabled.
    let mut cards = system.cards_client().await;
    let mut card = None;
    for _ in 0..200 {
        card = cards
            .list_cards(system.as_role(
                Role::CardOffice,
                v1::ListCardsRequest {
                    learner: "alex.roux".to_owned(),
                },
            ))
            .await
            .ok()
            .and_then(|answer| answer.into_inner().cards.into_iter().next())
            .filter(|card| card.state() == v1::CardState::Approved);
        if card.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let card = card.expect("the trainee's card was never approved");
    for (to, csn) in [
        (v1::CardState::InPrint, ""),
        (v1::CardState::Printed, ""),
        (v1::CardState::Encoded, "04A22BCA7C4D80"),
        (v1::CardState::Enabled, ""),
    ] {
        cards
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

    wait_for_entry(&system, "alex.roux", "the card", |entry| {
        has(entry, "supannRefId", "04A22BCA7C4D80")
    })
    .await;
    wait_for_entry(
        &system,
        "anh.nguyen",
        "the partner and the library",
        |entry| {
            has(entry, "supannEtablissement", "0134009M")
                && has(entry, "eduPersonEntitlement", ":library")
        },
    )
    .await;
    wait_for_entry(&system, "lea.durand", "the grants", |entry| {
        has(entry, "eduPersonEntitlement", ":library")
    })
    .await;
    wait_until_published(&system).await;
    system
}

/// How many events of `fact` a service's stream holds.
async fn published(system: &TestSystem, service: Service, fact: subjects::Fact) -> usize {
    let subject = system.namespace.subject(fact);
    hosted_testkit::stream_messages(&system.namespace.stream(service))
        .await
        .into_iter()
        .filter(|message| message.subject.as_str() == subject)
        .count()
}

/// Waits until the durable consumer `durable` of `source`'s stream has applied
/// everything.
async fn wait_consumed(system: &TestSystem, source: Service, durable: &str) {
    let jetstream = hosted_testkit::jetstream().await;
    let stream = system.namespace.stream(source);
    for _ in 0..400 {
        if hosted_platform::nats::consumer_backlog(&jetstream, &stream, durable)
            .await
            .unwrap()
            == 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{durable} never caught up");
}

#[tokio::test]
async fn directory_rebuilt_from_nothing_gets_every_entry_back_unchanged() {
    // Arrange: a running system whose entries are published; directory's database is
    // lost while it is stopped, and it starts again on an empty one.
    let mut system = populated().await;
    let before = entries(&system).await;
    assert_eq!(before.len(), 3);
    system.stop_directory().await;
    drop_database(&system.directory_database).await;
    system.start_directory().await;
    // Its consumers' positions are past every event: nothing comes back by itself.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lost = account(&system, "lea.durand").await.unwrap_err();
    assert_eq!(lost.code(), tonic::Code::NotFound);

    // Act
    let rebuilt = rebuild(&system, Derived::Directory).await;

    // Assert: every source restated everything; every entry is back in the
    // projection, and LDAP is exactly as it was (no write: entryCSN and
    // modifyTimestamp unchanged, and directory counted none).
    let restated: Vec<(Owner, i64)> = rebuilt
        .restated
        .iter()
        .map(|(owner, totals)| (*owner, totals.items))
        .collect();
    assert_eq!(
        restated,
        [
            (Owner::Intake, 3),
            (Owner::Entitlement, 3),
            (Owner::Cards, 1)
        ]
    );
    assert_eq!(rebuilt.restated[0].1.agreements, 1);
    assert_eq!(rebuilt.accounts_pending, Some(0));
    assert_eq!(entries(&system).await, before);
    for login in LOGINS {
        let account = account(&system, login).await.unwrap();
        assert_eq!(
            account.status(),
            v1::PublicationStatus::Published,
            "{login}"
        );
        assert!(
            account.differences.is_empty(),
            "{login}: {:?}",
            account.differences
        );
        assert_eq!(account.ldap_writes, 0, "{login} was written again");
    }

    // A rebuild run again changes nothing either.
    rebuild(&system, Derived::Directory).await;
    assert_eq!(entries(&system).await, before);
    assert_eq!(ldap_writes(&system).await, [0, 0, 0]);
    system.stop().await;
}

#[tokio::test]
async fn directory_restored_from_an_old_backup_catches_up_without_rewriting() {
    // Arrange: directory's database as an older backup would have it: a learner
    // registered since is missing (with their grants), so is the card enabled since,
    // and a learner is held at an older version with older grants (without the hold,
    // the newer learner, restated first, would be written with the older grants).
    let mut system = populated().await;
    let before = entries(&system).await;
    let writes = ldap_writes(&system).await;
    system.stop_directory().await;
    let mut conn = system.directory_database.connect().await;
    sqlx::query(
        "DELETE FROM grants
         WHERE learner_id = (SELECT learner_id FROM accounts WHERE login = 'lea.durand')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("DELETE FROM accounts WHERE login = 'lea.durand'")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE accounts SET version = version - 1 WHERE login = 'anh.nguyen'")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM cards")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE grants SET grants_version = 1, in_force = '{}'
         WHERE learner_id = (SELECT learner_id FROM accounts WHERE login = 'anh.nguyen')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);
    system.start_directory().await;

    // Act
    let rebuilt = rebuild(&system, Derived::Directory).await;

    // Assert: the projection caught up, and no entry was written, not even for a
    // moment from a projection half rebuilt.
    assert_eq!(rebuilt.accounts_pending, Some(0));
    assert_eq!(entries(&system).await, before);
    assert_eq!(ldap_writes(&system).await, writes);
    let durand = account(&system, "lea.durand").await.unwrap();
    assert!(durand.differences.is_empty());
    system.stop().await;
}

#[tokio::test]
async fn a_restatement_of_an_intact_system_changes_nothing_downstream() {
    // Arrange
    let system = populated().await;
    let before = entries(&system).await;
    let writes = ldap_writes(&system).await;
    let grants_changed = published(
        &system,
        Service::Entitlement,
        subjects::entitlement::GRANTS_CHANGED,
    )
    .await;
    let cards_changed = published(&system, Service::Cards, subjects::cards::CARD_CHANGED).await;
    let announced = published(
        &system,
        Service::Directory,
        subjects::directory::ACCOUNT_PUBLISHED,
    )
    .await;

    // Act: each owner restates everything (`hlctl republish --service …`), and intake
    // one learner again.
    let token = system.callers.token(Role::Dosi).to_owned();
    let services = sources(&system, &token);
    let mut restated = Vec::new();
    for owner in [Owner::Intake, Owner::Entitlement, Owner::Cards] {
        let totals = services
            .restate(owner, None, 1000, async |_| Ok(()))
            .await
            .unwrap();
        assert_eq!(totals.unpublished_pages, 0);
        restated.push(totals.items);
    }
    let one = services
        .restate(Owner::Intake, Some("lea.durand"), 1000, async |_| Ok(()))
        .await
        .unwrap();
    for (source, durable) in [
        (Service::Intake, "entitlement-intake"),
        (Service::Intake, "cards-intake"),
        (Service::Entitlement, "cards-entitlement"),
        (Service::Intake, "directory-intake"),
        (Service::Entitlement, "directory-entitlement"),
        (Service::Cards, "directory-cards"),
    ] {
        wait_consumed(&system, source, durable).await;
    }
    wait_until_published(&system).await;

    // Assert: the restated facts are there, and nothing followed from them: no new
    // grants version, no card change, no LDAP write, no announcement.
    assert_eq!(restated, [3, 3, 1]);
    assert_eq!(one.items, 1);
    assert_eq!(
        published(&system, Service::Intake, subjects::intake::LEARNER_RESTATED).await,
        4
    );
    let grants_restated: Vec<v1::GrantsEvent> = {
        let subject = system
            .namespace
            .subject(subjects::entitlement::GRANTS_RESTATED);
        hosted_testkit::stream_messages(&system.namespace.stream(Service::Entitlement))
            .await
            .into_iter()
            .filter(|message| message.subject.as_str() == subject)
            .map(|message| v1::GrantsEvent::decode(message.payload).unwrap())
            .collect()
    };
    assert_eq!(grants_restated.len(), 3);
    assert!(grants_restated.iter().all(|event| event.grants_version > 0));
    assert_eq!(
        published(
            &system,
            Service::Entitlement,
            subjects::entitlement::GRANTS_CHANGED
        )
        .await,
        grants_changed
    );
    assert_eq!(
        published(&system, Service::Cards, subjects::cards::CARD_CHANGED).await,
        cards_changed
    );
    assert_eq!(
        published(
            &system,
            Service::Directory,
            subjects::directory::ACCOUNT_PUBLISHED
        )
        .await,
        announced
    );
    assert_eq!(entries(&system).await, before);
    assert_eq!(ldap_writes(&system).await, writes);
    system.stop().await;
}

async fn grants_of(system: &TestSystem, login: &str) -> Option<Vec<v1::Grant>> {
    system
        .entitlement_client()
        .await
        .list_grants(system.as_role(
            Role::Dosi,
            v1::ListGrantsRequest {
                learner_id: login.to_owned(),
            },
        ))
        .await
        .ok()
        .map(|answer| answer.into_inner().grants)
}

async fn amend_options(
    system: &TestSystem,
    agreement: &v1::Agreement,
    options: &[&str],
) -> v1::Agreement {
    system
        .intake_client()
        .await
        .amend_agreement(system.as_role(
            Role::Legal,
            v1::AmendAgreementRequest {
                agreement_id: agreement.agreement_id.clone(),
                expected_version: agreement.version,
                agreement: Some(co_accredited_agreement(options)),
                reason: "annex".to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .agreement
        .unwrap()
}

#[tokio::test]
async fn entitlement_rebuilt_gives_the_same_grants_and_directory_takes_what_follows() {
    // Arrange: a co-accredited student whose grants changed three times (the
    // agreement's options), published in LDAP.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system.await_grants = Duration::from_secs(10);
    system.start_directory().await;
    let agreement = system.create_agreement(co_accredited_agreement(&[])).await;
    system
        .register(co_accredited(
            "Nguyen",
            "Anh",
            "1999-04-05",
            &agreement.agreement_id,
        ))
        .await;
    wait_for_entry(&system, "anh.nguyen", "online resources", |entry| {
        has(entry, "eduPersonEntitlement", ":online-resources")
    })
    .await;
    let agreement = amend_options(&system, &agreement, &["library"]).await;
    wait_for_entry(&system, "anh.nguyen", "the library", |entry| {
        has(entry, "eduPersonEntitlement", ":library")
    })
    .await;
    let agreement = amend_options(&system, &agreement, &["library", "grades"]).await;
    wait_for_entry(&system, "anh.nguyen", "grades", |entry| {
        has(entry, "eduPersonEntitlement", ":grades")
    })
    .await;
    let grants = grants_of(&system, "anh.nguyen").await.unwrap();
    wait_until_published(&system).await;
    let before = entries(&system).await;

    // Act: entitlement's database is lost; it starts on an empty one and is rebuilt
    // from intake.
    system.stop_entitlement().await;
    drop_database(&system.entitlement_database).await;
    system.start_entitlement().await;
    assert_eq!(grants_of(&system, "anh.nguyen").await, None);
    let rebuilt = rebuild(&system, Derived::Entitlement).await;

    // Assert: the same grants are back, and LDAP was not written for them.
    assert_eq!(rebuilt.restated.len(), 1);
    assert_eq!(rebuilt.restated[0].1.agreements, 1);
    let mut back = None;
    for _ in 0..200 {
        back = grants_of(&system, "anh.nguyen").await;
        if back.as_ref().is_some_and(|back| back.len() == grants.len()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(back.unwrap(), grants);
    wait_consumed(&system, Service::Entitlement, "directory-entitlement").await;
    wait_until_published(&system).await;
    assert_eq!(entries(&system).await, before);

    // And what changes next reaches LDAP: directory takes the rebuilt entitlement's
    // versions, which are above those it held before the loss.
    amend_options(&system, &agreement, &[]).await;
    wait_for_entry(&system, "anh.nguyen", "no more library", |entry| {
        has(entry, "eduPersonEntitlement", ":online-resources")
            && !has(entry, "eduPersonEntitlement", ":library")
    })
    .await;
    system.stop().await;
}

#[tokio::test]
async fn a_lost_stream_is_made_again_and_republished() {
    // Arrange: two learners published.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system.await_grants = Duration::from_secs(10);
    system.start_directory().await;
    system
        .register(registration("Durand", "Léa", "2000-01-02"))
        .await;
    system
        .register(registration("Petit", "Jean", "2001-03-04"))
        .await;
    for login in ["lea.durand", "jean.petit"] {
        wait_for_entry(&system, login, "the grants", |entry| {
            has(entry, "eduPersonEntitlement", ":library")
        })
        .await;
    }
    wait_until_published(&system).await;
    let before = entries(&system).await;

    // Act: intake's stream is lost, with every fact it held; a learner is registered
    // after that; then intake restates what it holds (`hlctl republish --service
    // intake`).
    let stream = system.namespace.stream(Service::Intake);
    hosted_testkit::jetstream()
        .await
        .delete_stream(&stream)
        .await
        .unwrap();
    system
        .register(registration("Martin", "Zoé", "2002-05-06"))
        .await;

    // Assert: the relay made the stream again and the consumers attached to it again:
    // the new learner's entry comes, with the grants entitlement computed.
    wait_for_entry(&system, "zoe.martin", "the grants", |entry| {
        has(entry, "eduPersonEntitlement", ":library")
    })
    .await;
    let token = system.callers.token(Role::Dosi).to_owned();
    let totals = sources(&system, &token)
        .restate(Owner::Intake, None, 1000, async |_| Ok(()))
        .await
        .unwrap();
    assert_eq!(totals.items, 3);
    assert_eq!(
        published(&system, Service::Intake, subjects::intake::LEARNER_RESTATED).await,
        3,
        "the stream holds every learner's state again"
    );
    wait_consumed(&system, Service::Intake, "entitlement-intake").await;
    wait_consumed(&system, Service::Intake, "directory-intake").await;
    wait_until_published(&system).await;
    let after = entries(&system).await;
    assert_eq!(after.len(), 3);
    for (dn, attributes) in &before {
        assert_eq!(after.get(dn), Some(attributes), "{dn} changed");
    }
    system.stop().await;
}

#[tokio::test]
async fn cards_restored_from_an_old_backup_catches_up_and_an_empty_one_is_refused() {
    // Arrange: cards' database as an older backup would have it: the trainee's INE and
    // e-purse grant not known yet, no e-purse right.
    let mut system = populated().await;
    let cards_changed = published(&system, Service::Cards, subjects::cards::CARD_CHANGED).await;
    system.stop_cards().await;
    let mut conn = system.cards_database.connect().await;
    sqlx::query("DELETE FROM epurse_rights")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE learners SET person_version = 0, ine = '', grants_version = 0,
                epurse_until = NULL, epurse_in_force = false",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);
    system.start_cards().await;

    // Act
    let rebuilt = rebuild(&system, Derived::Cards).await;
    wait_consumed(&system, Service::Intake, "cards-intake").await;
    wait_consumed(&system, Service::Entitlement, "cards-entitlement").await;

    // Assert: who the trainee is and what they hold are back, and the e-purse right
    // with them; the card, which had not changed, is not changed.
    let restated: Vec<Owner> = rebuilt.restated.iter().map(|(owner, _)| *owner).collect();
    assert_eq!(restated, [Owner::Intake, Owner::Entitlement]);
    let export = system
        .cards_client()
        .await
        .export_epurse(system.as_role(Role::CardOffice, v1::ExportEpurseRequest { full: true }))
        .await
        .unwrap()
        .into_inner();
    let holders: Vec<&str> = export
        .right_holders
        .iter()
        .map(|holder| holder.identifier.as_str())
        .collect();
    assert_eq!(holders, ["223456789AB"]);
    assert_eq!(
        published(&system, Service::Cards, subjects::cards::CARD_CHANGED).await,
        cards_changed
    );

    // And a cards database lost with every card is not "rebuilt": its cards are its own.
    system.stop_cards().await;
    drop_database(&system.cards_database).await;
    system.start_cards().await;
    let refused = try_rebuild(&system, Derived::Cards).await.unwrap_err();
    assert!(
        refused.to_string().contains("cards holds no card"),
        "{refused:#}"
    );
    system.stop().await;
}
