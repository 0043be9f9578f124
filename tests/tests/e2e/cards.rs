//! The card office: a card only with the smart-card grant, its whole lifecycle through
//! the card office's hands, one enabled card per person, the numbers (Luhn, ESCN),
//! the print batch and the e-purse exports, and expiry when the grant ends.

use std::time::Duration;

use hosted_cards::domain::{lifecycle::State, numbers};
use hosted_contracts::{
    prost::Message,
    subjects::{Service, cards::CARD_CHANGED},
    v1,
};
use hosted_e2e::{TestSystem, default_policy, registration, today_plus};
use hosted_platform::{auth::Role, clock::Clock};
use tonic::Code;

/// A C2i2e trainee of the rectorat (smart card and e-purse, always), with an INE.
fn trainee(family_name: &str, birth_date: &str, ine: &str) -> v1::RegisterStayRequest {
    let mut request = registration(family_name, "Alex", birth_date);
    request.person.as_mut().unwrap().ine = ine.to_owned();
    request.stay.as_mut().unwrap().population = "RECTORAT_C2I2E".to_owned();
    request
}

async fn cards_of(system: &TestSystem, learner: &str) -> Option<Vec<v1::Card>> {
    match system
        .cards_client()
        .await
        .list_cards(system.as_role(
            Role::CardOffice,
            v1::ListCardsRequest {
                learner: learner.to_owned(),
            },
        ))
        .await
    {
        Ok(answer) => Some(answer.into_inner().cards),
        Err(status) if status.code() == Code::NotFound => None,
        Err(status) => panic!("ListCards: {status}"),
    }
}

/// Waits until the learner's newest card is in `state`, and returns it.
async fn wait_for_card(system: &TestSystem, learner: &str, state: v1::CardState) -> v1::Card {
    for _ in 0..200 {
        if let Some(card) = cards_of(system, learner)
            .await
            .and_then(|cards| cards.into_iter().next())
            && card.state() == state
        {
            return card;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{learner}'s card never became {state:?}");
}

async fn transition(
    system: &TestSystem,
    card: &v1::Card,
    to: v1::CardState,
    reason: &str,
    csn: &str,
) -> Result<v1::Card, tonic::Status> {
    system
        .cards_client()
        .await
        .transition_card(system.as_role(
            Role::CardOffice,
            v1::TransitionCardRequest {
                card_id: card.card_id.clone(),
                to: to.into(),
                reason: reason.to_owned(),
                csn: csn.to_owned(),
                expected_version: 0,
            },
        ))
        .await
        .map(|answer| answer.into_inner().card.unwrap())
}

/// The card office cannot move `card` anywhere but `allowed`: every other state is
/// refused as FAILED_PRECONDITION, and the card is left as it was.
async fn refuses_all_but(system: &TestSystem, card: &v1::Card, allowed: &[State]) {
    for to in State::ALL {
        if allowed.contains(&to) {
            continue;
        }
        let refused = transition(system, card, to.to_wire(), "lost", "")
            .await
            .expect_err(&format!("{:?} → {to} must be refused", card.state()));
        assert_eq!(
            refused.code(),
            Code::FailedPrecondition,
            "{:?} → {to}: {}",
            card.state(),
            refused.message()
        );
    }
    let after = get_card(system, &card.card_id).await.card.unwrap();
    assert_eq!(after.version, card.version, "a refusal changes nothing");
}

async fn get_card(system: &TestSystem, card: &str) -> v1::GetCardResponse {
    system
        .cards_client()
        .await
        .get_card(system.as_role(
            Role::Dosi,
            v1::GetCardRequest {
                card: card.to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The card events published so far, oldest first.
async fn card_events(system: &TestSystem) -> Vec<v1::CardEvent> {
    let subject = system.namespace.subject(CARD_CHANGED);
    hosted_testkit::stream_messages(&system.namespace.stream(Service::Cards))
        .await
        .into_iter()
        .filter(|message| message.subject.as_str() == subject)
        .map(|message| v1::CardEvent::decode(message.payload).unwrap())
        .collect()
}

async fn wait_for_events(system: &TestSystem, count: usize) -> Vec<v1::CardEvent> {
    for _ in 0..200 {
        let events = card_events(system).await;
        if events.len() >= count {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{count} card events never came");
}

/// Intake, and entitlement and cards on one manual clock.
async fn on_one_manual_clock() -> (TestSystem, Clock) {
    let clock = Clock::manual("Europe/Paris", jiff::Timestamp::now()).unwrap();
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system
        .start_entitlement_with(default_policy(), clock.clone())
        .await;
    system
        .start_cards_with(system.cards_config(), clock.clone())
        .await;
    (system, clock)
}

async fn export_epurse(system: &TestSystem, full: bool) -> v1::ExportEpurseResponse {
    system
        .cards_client()
        .await
        .export_epurse(system.as_role(Role::CardOffice, v1::ExportEpurseRequest { full }))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn a_card_exists_only_with_the_grant_and_only_once_paid_where_the_policy_says_so() {
    // Arrange
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;

    // Act: an IFSI student (no card), a visiting doctoral student (a card once paid)
    // and a C2i2e trainee with an INE (a card), in that order.
    system
        .register(registration("Fontaine", "Manon", "2002-03-04"))
        .await;
    let mut doctoral = registration("Moreau", "Lucas", "1994-05-06");
    doctoral.stay.as_mut().unwrap().population = "VISITING_DOCTORAL".to_owned();
    let doctoral_stay = system.register(doctoral).await.stay_id;
    system
        .register(trainee("Girard", "2000-07-08", "123456789AB"))
        .await;

    // Assert: the trainee's card is approved at once (the grant is in force), with a
    // 16-digit Luhn number, an ESCN with the PIC in its node and the ESI.
    let card = wait_for_card(&system, "alex.girard", v1::CardState::Approved).await;
    assert_eq!(card.card_number.len(), 16);
    assert!(
        numbers::luhn_valid(&card.card_number),
        "{}",
        card.card_number
    );
    assert!(card.card_number.starts_with("9250"));
    let escn = uuid::Uuid::parse_str(&card.escn).unwrap();
    assert_eq!(escn.get_version_num(), 1);
    assert!(card.escn.ends_with("-001999123456"), "{}", card.escn);
    assert_eq!(
        card.esi,
        "urn:schac:personalUniqueCode:int:esi:fr:123456789AB"
    );
    assert_eq!(card.last_day, today_plus(200));
    // The grants events are consumed in order: the others' came first, and gave no card.
    assert_eq!(cards_of(&system, "manon.fontaine").await, Some(Vec::new()));
    assert_eq!(cards_of(&system, "lucas.moreau").await, Some(Vec::new()));

    // Act: the visiting doctoral student pays.
    system
        .intake_client()
        .await
        .record_payment(system.as_role(
            Role::Finance,
            v1::RecordPaymentRequest {
                stay_id: doctoral_stay,
                amount_cents: 1200,
                paid_on: today_plus(0),
                payer: v1::Payer::Learner.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    // Assert: their card comes with the payment, without an ESCN (no INE).
    let paid = wait_for_card(&system, "lucas.moreau", v1::CardState::Approved).await;
    assert!(paid.escn.is_empty());
    assert!(paid.esi.is_empty());
    assert_ne!(paid.card_number, card.card_number);
    let history = get_card(&system, &paid.card_number).await.history;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].actor, "finance", "who recorded the payment");
    assert!(
        !history[0].cause_event_id.is_empty(),
        "caused by a grants event"
    );

    // Nothing asks for a card of the IFSI student: there is no call that would.
    assert_eq!(cards_of(&system, "manon.fontaine").await, Some(Vec::new()));
    system.stop().await;
}

#[tokio::test]
async fn every_allowed_transition_and_the_refusal_of_every_other_one() {
    use State::*;

    // Arrange: a trainee whose card the office does not approve by itself.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    let mut config = system.cards_config();
    config.cards.auto_approve = false;
    system.start_cards_with(config, Clock::default()).await;
    system
        .register(trainee("Roux", "2001-02-03", "223456789AB"))
        .await;
    let card = wait_for_card(&system, "alex.roux", v1::CardState::Requested).await;

    // Act and assert, state by state: what the office may do, and nothing else.
    refuses_all_but(&system, &card, &[Approved]).await;
    let card = transition(&system, &card, v1::CardState::Approved, "", "")
        .await
        .unwrap();
    refuses_all_but(&system, &card, &[InPrint]).await;
    let card = transition(&system, &card, v1::CardState::InPrint, "", "")
        .await
        .unwrap();
    refuses_all_but(&system, &card, &[Printed, Approved]).await;
    // A misprint goes back to the queue, with its reason.
    let missing = transition(&system, &card, v1::CardState::Approved, "", "")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    let card = transition(&system, &card, v1::CardState::Approved, "misprint", "")
        .await
        .unwrap();
    let card = transition(&system, &card, v1::CardState::InPrint, "", "")
        .await
        .unwrap();
    let card = transition(&system, &card, v1::CardState::Printed, "", "")
        .await
        .unwrap();
    refuses_all_but(&system, &card, &[Encoded, Destroyed]).await;
    let no_csn = transition(&system, &card, v1::CardState::Encoded, "", "")
        .await
        .unwrap_err();
    assert_eq!(no_csn.code(), Code::InvalidArgument);
    assert!(no_csn.message().contains("csn"), "{}", no_csn.message());
    let card = transition(
        &system,
        &card,
        v1::CardState::Encoded,
        "",
        "04:a2:2b:ca:7c:4d:80",
    )
    .await
    .unwrap();
    assert_eq!(card.csn, "04A22BCA7C4D80");
    refuses_all_but(&system, &card, &[Enabled, Destroyed]).await;
    let card = transition(&system, &card, v1::CardState::Enabled, "handed over", "")
        .await
        .unwrap();
    refuses_all_but(&system, &card, &[Disabled]).await;
    let vague = transition(&system, &card, v1::CardState::Disabled, "gone", "")
        .await
        .unwrap_err();
    assert_eq!(vague.code(), Code::InvalidArgument);
    let card = transition(&system, &card, v1::CardState::Disabled, "lost", "")
        .await
        .unwrap();
    assert_eq!(card.state_reason, "lost");
    refuses_all_but(&system, &card, &[Enabled, Destroyed]).await;
    let card = transition(&system, &card, v1::CardState::Enabled, "found again", "")
        .await
        .unwrap();
    let card = transition(&system, &card, v1::CardState::Disabled, "out-of-order", "")
        .await
        .unwrap();
    let card = transition(&system, &card, v1::CardState::Destroyed, "shredded", "")
        .await
        .unwrap();
    refuses_all_but(&system, &card, &[]).await;

    // Every step is in the history (who, why) and was published with the whole card.
    let history = get_card(&system, &card.card_id).await.history;
    let steps: Vec<(v1::CardState, String)> = history
        .iter()
        .map(|step| (step.to(), step.actor.clone()))
        .collect();
    assert_eq!(steps.len(), 12);
    assert_eq!(
        steps[0],
        (v1::CardState::Requested, "deve".to_owned()),
        "requested on behalf of the registrar"
    );
    assert!(steps[1..].iter().all(|(_, actor)| actor == "card-office"));
    assert_eq!(history[3].reason, "misprint");
    let events = wait_for_events(&system, 12).await;
    assert_eq!(events.len(), 12, "one event per change, none for a refusal");
    let last = events.last().unwrap().card.as_ref().unwrap();
    assert_eq!(last.state(), v1::CardState::Destroyed);
    assert_eq!(last.csn, "04A22BCA7C4D80");
    assert_eq!(last.version, card.version);
    system.stop().await;
}

#[tokio::test]
async fn print_batches_and_replacements_keep_one_enabled_card_per_person() {
    // Arrange: two trainees with approved cards.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;
    system
        .register(trainee("Blanc", "2001-04-05", "323456789AB"))
        .await;
    system.register(trainee("Noir", "2001-06-07", "")).await;
    wait_for_card(&system, "alex.blanc", v1::CardState::Approved).await;
    wait_for_card(&system, "alex.noir", v1::CardState::Approved).await;

    // Act: the card office exports a print batch as CSV.
    let mut client = system.cards_client().await;
    let batch = client
        .export_print_batch(system.as_role(
            Role::CardOffice,
            v1::ExportPrintBatchRequest {
                format: v1::DocumentFormat::Csv.into(),
                limit: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();

    // Assert: both cards, in print, with what the printer needs.
    assert_eq!(batch.cards.len(), 2);
    assert!(
        batch
            .cards
            .iter()
            .all(|card| card.state() == v1::CardState::InPrint)
    );
    let csv = String::from_utf8(batch.document.clone()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "card_number,escn,login,learner_number,family_name,given_names,photo_reference,expiry,card_id"
    );
    assert_eq!(lines.len(), 3);
    let blanc = lines
        .iter()
        .find(|line| line.contains("alex.blanc"))
        .unwrap();
    assert!(blanc.contains("Blanc,Alex"), "{blanc}");
    assert!(blanc.contains("-001999123456"), "the ESCN: {blanc}");
    assert!(blanc.contains(&today_plus(200)), "the expiry: {blanc}");
    assert!(blanc.contains(".jpg"), "the photo reference: {blanc}");
    // Nothing is left to print; the batch can be fetched again, as JSON.
    let empty = client
        .export_print_batch(
            system.as_role(Role::CardOffice, v1::ExportPrintBatchRequest::default()),
        )
        .await
        .unwrap()
        .into_inner();
    assert!(empty.batch_id.is_empty() && empty.cards.is_empty());
    let again = client
        .get_print_batch(system.as_role(
            Role::CardOffice,
            v1::GetPrintBatchRequest {
                batch_id: batch.batch_id.clone(),
                format: v1::DocumentFormat::Json.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let json: serde_json::Value = serde_json::from_slice(&again.document).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert!(json[0]["card_number"].as_str().unwrap().len() == 16);

    // Act: Blanc's card is printed, encoded, enabled, then lost and replaced.
    let card = batch
        .cards
        .iter()
        .find(|card| card.login == "alex.blanc")
        .unwrap()
        .clone();
    let card = transition(&system, &card, v1::CardState::Printed, "", "")
        .await
        .unwrap();
    let card = transition(
        &system,
        &card,
        v1::CardState::Encoded,
        "",
        "E004015012345678",
    )
    .await
    .unwrap();
    let card = transition(&system, &card, v1::CardState::Enabled, "", "")
        .await
        .unwrap();
    let replaced = client
        .replace_card(system.as_role(
            Role::CardOffice,
            v1::ReplaceCardRequest {
                card_id: card.card_id.clone(),
                reason: "stolen".to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner();

    // Assert: the old card is disabled, the new one approved and linked to it.
    let old = replaced.replaced.unwrap();
    let new = replaced.card.unwrap();
    assert_eq!(old.state(), v1::CardState::Disabled);
    assert_eq!(old.state_reason, "stolen");
    assert_eq!(new.state(), v1::CardState::Approved);
    assert_eq!(new.replaces_card_id, card.card_id);
    assert_ne!(new.card_number, card.card_number);
    // The old card cannot come back while the new one is on its way: one at a time.
    let twice = transition(&system, &old, v1::CardState::Enabled, "found", "")
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);
    assert!(
        twice.message().contains("already has card"),
        "{}",
        twice.message()
    );
    // Nor can a chip be recorded on two cards.
    let new = transition(&system, &new, v1::CardState::InPrint, "", "")
        .await
        .unwrap();
    let new = transition(&system, &new, v1::CardState::Printed, "", "")
        .await
        .unwrap();
    let same_chip = transition(
        &system,
        &new,
        v1::CardState::Encoded,
        "",
        "E004015012345678",
    )
    .await
    .unwrap_err();
    assert_eq!(same_chip.code(), Code::InvalidArgument);
    let new = transition(
        &system,
        &new,
        v1::CardState::Encoded,
        "",
        "E004015087654321",
    )
    .await
    .unwrap();
    transition(&system, &new, v1::CardState::Enabled, "", "")
        .await
        .unwrap();
    // A replacement needs a reason the office knows.
    let vague = client
        .replace_card(system.as_role(
            Role::CardOffice,
            v1::ReplaceCardRequest {
                card_id: new.card_id.clone(),
                reason: "bored".to_owned(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(vague.code(), Code::InvalidArgument);
    let cards = cards_of(&system, "alex.blanc").await.unwrap();
    let enabled = cards
        .iter()
        .filter(|card| card.state() == v1::CardState::Enabled)
        .count();
    assert_eq!((cards.len(), enabled), (2, 1));
    system.stop().await;
}

#[tokio::test]
async fn losing_the_grant_expires_the_card_and_closes_the_epurse_right() {
    // Arrange: entitlement and cards on one manual clock; a trainee whose stay ends in
    // five days, with a card enabled and an e-purse right.
    let (system, clock) = on_one_manual_clock().await;
    let mut request = trainee("Petit", "1999-09-09", "423456789AB");
    request.stay.as_mut().unwrap().end_date = today_plus(5);
    let stay_id = system.register(request).await.stay_id;
    system.register(trainee("Grand", "1998-08-08", "")).await;
    let card = wait_for_card(&system, "alex.petit", v1::CardState::Approved).await;
    wait_for_card(&system, "alex.grand", v1::CardState::Approved).await;
    let card = transition(&system, &card, v1::CardState::InPrint, "", "")
        .await
        .unwrap();
    let card = transition(&system, &card, v1::CardState::Printed, "", "")
        .await
        .unwrap();
    let card = transition(&system, &card, v1::CardState::Encoded, "", "04112233445566")
        .await
        .unwrap();
    let card = transition(&system, &card, v1::CardState::Enabled, "", "")
        .await
        .unwrap();
    assert_eq!(card.last_day, today_plus(5));

    // The e-purse export: both right-holders, the INE else the eppn, "hbg".
    let first = export_epurse(&system, false).await;
    let mut holders = first.right_holders.clone();
    holders.sort_by(|a, b| a.family_name.cmp(&b.family_name));
    assert_eq!(holders.len(), 2);
    assert_eq!(holders[0].identifier, "alex.grand@univ-example.fr");
    assert_eq!(holders[1].identifier, "423456789AB");
    assert_eq!(holders[1].due_date, today_plus(5));
    assert_eq!(holders[1].birth_date, "1999-09-09");
    assert!(
        holders
            .iter()
            .all(|holder| holder.reference_status == "hbg")
    );
    let csv = String::from_utf8(first.document).unwrap();
    assert!(csv.starts_with(
        "identifiant;nom;prenom;email;date_naissance;date_fin_validite;statut_reference\n"
    ));
    assert!(csv.contains(&format!(
        "423456789AB;Petit;Alex;learner@example.org;1999-09-09;{};hbg",
        today_plus(5)
    )));
    // Sent once: a second export has nothing new; a full one has both again.
    assert!(export_epurse(&system, false).await.right_holders.is_empty());
    assert_eq!(export_epurse(&system, true).await.right_holders.len(), 2);

    // Act: the last day passes, with no event from intake.
    clock.advance_days(6);

    // Assert: the card expires ("expired"), and the right is closed.
    let expired = wait_for_card(&system, "alex.petit", v1::CardState::Expired).await;
    assert_eq!(expired.state_reason, "expired");
    assert_eq!(expired.csn, "04112233445566");
    let events = card_events(&system).await;
    let last = events
        .iter()
        .rev()
        .find(|event| event.card.as_ref().unwrap().card_id == card.card_id)
        .unwrap();
    assert_eq!(last.card.as_ref().unwrap().state(), v1::CardState::Expired);
    let closing = export_epurse(&system, false).await;
    assert_eq!(closing.right_holders.len(), 1);
    let closed = &closing.right_holders[0];
    assert!(closed.closed);
    assert_eq!(closed.identifier, "423456789AB");
    assert_eq!(
        closed.due_date,
        today_plus(6),
        "closed on the day the grant ended"
    );
    assert_eq!(export_epurse(&system, true).await.right_holders.len(), 1);

    // Act: a new stay brings the grant back.
    system
        .intake_client()
        .await
        .extend_stay(system.as_role(
            Role::Deve,
            v1::ExtendStayRequest {
                stay_id,
                new_end_date: today_plus(100),
                reason: "second session".to_owned(),
            },
        ))
        .await
        .unwrap();

    // Assert: the card the learner still holds works again, until the new last day.
    let back = wait_for_card(&system, "alex.petit", v1::CardState::Enabled).await;
    assert_eq!(back.card_id, card.card_id);
    assert_eq!(back.last_day, today_plus(100));
    assert_eq!(cards_of(&system, "alex.petit").await.unwrap().len(), 1);
    let reopened = export_epurse(&system, false).await;
    assert_eq!(reopened.right_holders.len(), 1);
    assert!(!reopened.right_holders[0].closed);
    assert_eq!(reopened.right_holders[0].due_date, today_plus(100));
    system.stop().await;
}

async fn replace(system: &TestSystem, card: &v1::Card, reason: &str) -> v1::ReplaceCardResponse {
    system
        .cards_client()
        .await
        .replace_card(system.as_role(
            Role::CardOffice,
            v1::ReplaceCardRequest {
                card_id: card.card_id.clone(),
                reason: reason.to_owned(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// Walks a card through the office's steps, in order (a chip of its own to encode).
async fn walk(system: &TestSystem, mut card: v1::Card, steps: &[v1::CardState]) -> v1::Card {
    for step in steps {
        let csn = if *step == v1::CardState::Encoded {
            format!("{}AB", &card.card_number[4..16])
        } else {
            String::new()
        };
        card = transition(system, &card, *step, "", &csn).await.unwrap();
    }
    card
}

#[tokio::test]
async fn every_card_on_its_way_expires_with_the_grant_and_spoiled_cards_are_destroyed() {
    use v1::CardState::{Approved, Destroyed, Enabled, Encoded, Expired, InPrint, Printed};

    // Arrange: entitlement and cards on one manual clock; C2i2e trainees whose stays
    // end in five days, each card left at another step.
    let (system, clock) = on_one_manual_clock().await;
    let steps: [(&str, &[v1::CardState]); 5] = [
        ("Un", &[]),
        ("Deux", &[InPrint]),
        ("Trois", &[InPrint, Printed]),
        ("Quatre", &[InPrint, Printed, Encoded]),
        ("Cinq", &[InPrint, Printed, Encoded, Enabled]),
    ];
    let mut cards = Vec::new();
    for (index, (family, path)) in steps.iter().enumerate() {
        let mut request = trainee(family, &format!("199{index}-02-0{}", index + 1), "");
        request.stay.as_mut().unwrap().end_date = today_plus(5);
        system.register(request).await;
        let login = format!("alex.{}", family.to_lowercase());
        let card = wait_for_card(&system, &login, Approved).await;
        cards.push((login, walk(&system, card, path).await));
    }
    // One more whose stay starts later: requested, then the stay is cancelled.
    let mut later = trainee("Six", "1996-03-03", "");
    let stay = later.stay.as_mut().unwrap();
    stay.start_date = today_plus(20);
    stay.end_date = today_plus(40);
    let later_stay = system.register(later).await.stay_id;
    let requested = wait_for_card(&system, "alex.six", v1::CardState::Requested).await;
    assert_eq!(requested.last_day, today_plus(40));

    // Act: the stay that has not started is cancelled.
    system
        .intake_client()
        .await
        .cancel_stay(system.as_role(
            Role::Deve,
            v1::CancelStayRequest {
                stay_id: later_stay,
                reason: "withdrawn".to_owned(),
            },
        ))
        .await
        .unwrap();

    // Assert: its request expires.
    let gone = wait_for_card(&system, "alex.six", Expired).await;
    assert_eq!(gone.card_id, requested.card_id);
    assert_eq!(gone.state_reason, "expired");

    // Act: a printed card comes out spoiled, then its replacement's chip is faulty.
    let mut spoiled = trainee("Sept", "1997-04-04", "");
    spoiled.stay.as_mut().unwrap().end_date = today_plus(5);
    system.register(spoiled).await;
    let first = wait_for_card(&system, "alex.sept", Approved).await;
    let first = walk(&system, first, &[InPrint, Printed]).await;
    let first = transition(&system, &first, Destroyed, "spoiled", "")
        .await
        .unwrap();
    let second = replace(&system, &first, "spoiled").await.card.unwrap();
    assert_eq!(second.replaces_card_id, first.card_id);
    let second = walk(&system, second, &[InPrint, Printed, Encoded]).await;
    let replaced = replace(&system, &second, "spoiled").await;
    // An encoded card never handed over is destroyed, not disabled.
    assert_eq!(replaced.replaced.unwrap().state(), Destroyed);
    let third = replaced.card.unwrap();
    assert_eq!(third.state(), Approved);

    // Act: the last day passes.
    clock.advance_days(6);

    // Assert: every card on its way or enabled expires, whatever its step.
    for (login, card) in &cards {
        let expired = wait_for_card(&system, login, Expired).await;
        assert_eq!(expired.card_id, card.card_id, "{login}");
        assert_eq!(expired.state_reason, "expired");
    }
    let third = wait_for_card(&system, "alex.sept", Expired).await;
    // The office destroys an expired card it takes back; a destroyed one stays so.
    let current = get_card(&system, &cards[4].1.card_id).await.card.unwrap();
    assert_eq!(current.state(), Expired);
    let destroyed = transition(&system, &current, Destroyed, "taken back", "")
        .await
        .unwrap();
    assert_eq!(destroyed.state(), Destroyed);
    refuses_all_but(&system, &destroyed, &[]).await;
    refuses_all_but(&system, &third, &[State::Destroyed]).await;
    system.stop().await;
}

#[tokio::test]
async fn between_two_stays_the_card_stops_and_works_again_at_the_next() {
    // Arrange: a trainee with a stay ending in five days and another from day 20 to
    // day 40; their card enabled.
    let (system, clock) = on_one_manual_clock().await;
    let mut first = trainee("Entre", "1997-07-07", "");
    first.stay.as_mut().unwrap().end_date = today_plus(5);
    system.register(first).await;
    let card = wait_for_card(&system, "alex.entre", v1::CardState::Approved).await;
    let card = walk(
        &system,
        card,
        &[
            v1::CardState::InPrint,
            v1::CardState::Printed,
            v1::CardState::Encoded,
            v1::CardState::Enabled,
        ],
    )
    .await;
    let mut second = trainee("Entre", "1997-07-07", "");
    let stay = second.stay.as_mut().unwrap();
    stay.start_date = today_plus(20);
    stay.end_date = today_plus(40);
    system.register(second).await;
    // The card now lasts until the second stay's end.
    let mut extended = None;
    for _ in 0..200 {
        let cards = cards_of(&system, "alex.entre").await.unwrap_or_default();
        if cards
            .first()
            .is_some_and(|card| card.last_day == today_plus(40))
        {
            extended = cards.into_iter().next();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let extended = extended.expect("the card follows the second stay");
    assert_eq!(extended.card_id, card.card_id);
    assert_eq!(extended.state(), v1::CardState::Enabled);

    // Act: the first stay ends.
    clock.advance_days(6);

    // Assert: the card stops working meanwhile; no new card is asked for.
    let gap = wait_for_card(&system, "alex.entre", v1::CardState::Expired).await;
    assert_eq!(gap.card_id, card.card_id);
    assert_eq!(gap.state_reason, "expired");

    // Act: the second stay starts.
    clock.advance_days(14);

    // Assert: the same card works again, until the second stay's end.
    let back = wait_for_card(&system, "alex.entre", v1::CardState::Enabled).await;
    assert_eq!(back.card_id, card.card_id);
    assert_eq!(back.last_day, today_plus(40));
    assert_eq!(cards_of(&system, "alex.entre").await.unwrap().len(), 1);
    system.stop().await;
}

/// Waits until a full export holds `count` right-holders, and returns it.
async fn wait_for_full_export(system: &TestSystem, count: usize) -> v1::ExportEpurseResponse {
    for _ in 0..200 {
        let full = export_epurse(system, true).await;
        if full.right_holders.len() >= count {
            return full;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the full e-purse export never held {count} right-holder(s)");
}

fn identifiers(export: &v1::ExportEpurseResponse) -> Vec<String> {
    let mut identifiers: Vec<String> = export
        .right_holders
        .iter()
        .map(|holder| holder.identifier.clone())
        .collect();
    identifiers.sort();
    identifiers
}

#[tokio::test]
async fn a_full_export_taken_to_look_leaves_the_changes_to_the_next_delta() {
    // Arrange: a trainee with an e-purse right not sent yet.
    let (system, _clock) = on_one_manual_clock().await;
    system
        .register(trainee("Roux", "1997-07-07", "523456789AB"))
        .await;

    // Act: full exports, to look, before and after a second trainee's right opens.
    let looked = wait_for_full_export(&system, 1).await;
    system
        .register(trainee("Vidal", "1996-06-06", "623456789AB"))
        .await;
    let looked_again = wait_for_full_export(&system, 2).await;

    // Assert: the next delta still carries both rights, then nothing until a change.
    assert_eq!(identifiers(&looked), ["523456789AB"]);
    assert_eq!(identifiers(&looked_again), ["523456789AB", "623456789AB"]);
    let delta = export_epurse(&system, false).await;
    assert_eq!(
        identifiers(&delta),
        ["523456789AB", "623456789AB"],
        "a full export must not swallow what waits for the delta"
    );
    assert!(export_epurse(&system, false).await.right_holders.is_empty());
    assert_eq!(export_epurse(&system, true).await.right_holders.len(), 2);
    system.stop().await;
}

async fn get_epurse_export(
    system: &TestSystem,
    role: Role,
    export_id: &str,
) -> Result<v1::GetEpurseExportResponse, tonic::Status> {
    system
        .cards_client()
        .await
        .get_epurse_export(system.as_role(
            role,
            v1::GetEpurseExportRequest {
                export_id: export_id.to_owned(),
            },
        ))
        .await
        .map(|answer| answer.into_inner())
}

#[tokio::test]
async fn every_epurse_export_full_or_delta_can_be_fetched_again_as_sent() {
    // Arrange: a delta with one trainee, a full export once a second has a right,
    // then an empty delta.
    let (system, _clock) = on_one_manual_clock().await;
    system
        .register(trainee("Lemoine", "1995-05-05", "723456789AB"))
        .await;
    wait_for_full_export(&system, 1).await;
    let delta = export_epurse(&system, false).await;
    system
        .register(trainee("Marchal", "1994-04-04", "823456789AB"))
        .await;
    let full = wait_for_full_export(&system, 2).await;
    let empty = export_epurse(&system, false).await;
    assert_eq!(identifiers(&delta), ["723456789AB"]);

    // Act
    let delta_again = get_epurse_export(&system, Role::CardOffice, &delta.export_id)
        .await
        .unwrap();
    let full_again = get_epurse_export(&system, Role::CardOffice, &full.export_id)
        .await
        .unwrap();
    let empty_again = get_epurse_export(&system, Role::CardOffice, &empty.export_id)
        .await
        .unwrap();

    // Assert: each as it was sent, the same file, which kind and who took it.
    assert_eq!(delta_again.right_holders, delta.right_holders);
    assert_eq!(delta_again.document, delta.document);
    assert!(!delta_again.full);
    assert_eq!(full_again.right_holders, full.right_holders);
    assert_eq!(full_again.document, full.document);
    assert!(full_again.full);
    assert!(!full_again.actor.is_empty());
    assert!(full_again.exported_at.is_some());
    assert_eq!(empty.right_holders.len(), 1, "the second trainee, once");
    assert_eq!(empty_again.right_holders, empty.right_holders);

    // Refusals: a missing or malformed id names the field, an unknown one is not
    // found, and dosi may not read the right-holders' personal data.
    for (export_id, field_reason) in [("", "required"), ("not-an-id", "not an e-purse export id")] {
        let refused = get_epurse_export(&system, Role::CardOffice, export_id)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{export_id:?}");
        assert!(
            refused.message().contains("export_id") && refused.message().contains(field_reason),
            "{}",
            refused.message()
        );
    }
    let unknown = get_epurse_export(&system, Role::CardOffice, &uuid::Uuid::now_v7().to_string())
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let dosi = get_epurse_export(&system, Role::Dosi, &full.export_id)
        .await
        .unwrap_err();
    assert_eq!(dosi.code(), Code::PermissionDenied);
    system.stop().await;
}
