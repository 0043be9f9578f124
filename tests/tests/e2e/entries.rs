//! What directory publishes from the three sources: intake's learner, entitlement's
//! grants in force (eduPersonEntitlement) and cards' enabled card (supannRefId,
//! supannCMS), each entry written once per change, an import's entries once each.

use std::{collections::BTreeSet, time::Duration};

use hosted_contracts::v1;
use hosted_e2e::{TestSystem, cohort, registration, today_plus};
use hosted_platform::auth::Role;

const URN: &str = "urn:mace:univ-example.fr:entitlement:";

pub(crate) fn values(entry: &ldap3::SearchEntry, name: &str) -> BTreeSet<String> {
    entry
        .attrs
        .get(name)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Waits until the entry of `uid` satisfies `wanted`, and returns it.
pub(crate) async fn wait_for_entry(
    system: &TestSystem,
    uid: &str,
    what: &str,
    wanted: impl Fn(&ldap3::SearchEntry) -> bool,
) -> ldap3::SearchEntry {
    let filter = format!("(uid={uid})");
    for _ in 0..300 {
        if let Some(entry) = system.subtree.search(&filter).await.into_iter().next()
            && wanted(&entry)
        {
            return entry;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the entry of {uid} never had {what}");
}

/// The LDAP writes directory made, per login, once every account is published.
async fn writes(system: &TestSystem) -> Vec<(String, i32)> {
    let mut conn = system.directory_database.connect().await;
    for _ in 0..200 {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM accounts WHERE published_revision IS DISTINCT FROM revision",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sqlx::query_as(
        "SELECT a.login, COALESCE(w.writes, 0)::int4 FROM accounts a
         LEFT JOIN ldap_writes w USING (learner_id) ORDER BY a.login",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

async fn move_card(system: &TestSystem, card_id: &str, to: v1::CardState, reason: &str, csn: &str) {
    system
        .cards_client()
        .await
        .transition_card(system.as_role(
            Role::CardOffice,
            v1::TransitionCardRequest {
                card_id: card_id.to_owned(),
                to: to.into(),
                reason: reason.to_owned(),
                csn: csn.to_owned(),
                expected_version: 0,
            },
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_entry_carries_the_grants_in_force_and_the_enabled_card() {
    // Arrange: the four services; directory waits for each account's grants.
    let mut system = TestSystem::prepare(None).await;
    system.await_grants = Duration::from_secs(20);
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_cards().await;
    system.start_directory().await;
    let sponsor = system.add_staff("marie.curie").await;

    // Act: a C2i2e trainee (card and e-purse), sponsored by a person.
    let mut request = registration("Marchand", "Hugo", "2000-01-02");
    let stay = request.stay.as_mut().unwrap();
    stay.population = "RECTORAT_C2I2E".to_owned();
    stay.sponsor_login = "marie.curie".to_owned();
    system.register(request).await;

    // Assert: one write, with every resource in force as an entitlement.
    let entry = wait_for_entry(&system, "hugo.marchand", "entitlements", |entry| {
        !values(entry, "eduPersonEntitlement").is_empty()
    })
    .await;
    let expected: BTreeSet<String> = [
        "e-purse",
        "ent",
        "grades",
        "online-resources",
        "smart-card",
        "wifi",
    ]
    .iter()
    .map(|resource| format!("{URN}{resource}"))
    .collect();
    assert_eq!(values(&entry, "eduPersonEntitlement"), expected);
    assert_eq!(
        values(&entry, "supannParrainDN"),
        BTreeSet::from([sponsor.clone()])
    );
    let profile = values(&entry, "supannExtProfil");
    let profile = profile.first().unwrap();
    assert!(
        profile.starts_with("[etab={UAI}0999999F][affil="),
        "{profile}"
    );
    assert!(
        profile.contains(&format!("[parrain={sponsor}]")),
        "{profile}"
    );
    assert_eq!(values(&entry, "supannExtDateFin").len(), 1);
    assert!(
        values(&entry, "supannRefId").is_empty(),
        "no card enabled yet"
    );
    assert_eq!(writes(&system).await, [("hugo.marchand".to_owned(), 1)]);

    // Act: the card office prints, encodes and hands over the card.
    let card_id = loop {
        let cards = system
            .cards_client()
            .await
            .list_cards(system.as_role(
                Role::CardOffice,
                v1::ListCardsRequest {
                    learner: "hugo.marchand".to_owned(),
                },
            ))
            .await
            .map(|answer| answer.into_inner().cards)
            .unwrap_or_default();
        if let Some(card) = cards.first() {
            break card.card_id.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (to, csn) in [
        (v1::CardState::InPrint, ""),
        (v1::CardState::Printed, ""),
        (v1::CardState::Encoded, "E0:04:01:50:12:34:56:78"),
    ] {
        move_card(&system, &card_id, to, "", csn).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        writes(&system).await,
        [("hugo.marchand".to_owned(), 1)],
        "a card on its way changes nothing in the entry"
    );
    move_card(&system, &card_id, v1::CardState::Enabled, "handed over", "").await;

    // Assert: the enabled card is published.
    let entry = wait_for_entry(&system, "hugo.marchand", "the card", |entry| {
        !values(entry, "supannRefId").is_empty()
    })
    .await;
    assert_eq!(
        values(&entry, "supannRefId"),
        BTreeSet::from(["{ISO15693}E004015012345678".to_owned()])
    );
    assert_eq!(
        values(&entry, "supannCMSId"),
        BTreeSet::from(["{ISO15693}E004015012345678".to_owned()])
    );
    assert_eq!(values(&entry, "supannCMSDateFin").len(), 1);
    assert!(values(&entry, "objectClass").contains("supannCMS"));
    assert_eq!(writes(&system).await, [("hugo.marchand".to_owned(), 2)]);

    // Act: the card is lost.
    move_card(&system, &card_id, v1::CardState::Disabled, "lost", "").await;

    // Assert: the directory stops publishing it.
    let entry = wait_for_entry(&system, "hugo.marchand", "no card", |entry| {
        values(entry, "supannRefId").is_empty()
    })
    .await;
    assert!(values(&entry, "supannCMSId").is_empty());
    assert!(values(&entry, "supannCMSDateFin").is_empty());
    assert_eq!(writes(&system).await, [("hugo.marchand".to_owned(), 3)]);
    system.stop().await;
}

#[tokio::test]
async fn an_import_writes_each_entry_once_with_its_grants() {
    // Arrange
    let mut system = TestSystem::prepare(None).await;
    system.await_grants = Duration::from_secs(60);
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_directory().await;
    let learners = 1_000;
    let rows = cohort(learners, "Import", "Lou", 1970, |_, request| {
        request.stay.as_mut().unwrap().start_date = today_plus(-1);
    });

    // Act
    let imported = system.import(rows).await;
    assert_eq!(imported.len(), learners);

    // Assert: every entry, each with its grants, written once.
    let entries = system
        .subtree
        .wait_for_entries(learners, Duration::from_secs(120))
        .await;
    assert_eq!(entries.len(), learners);
    let written = writes(&system).await;
    assert_eq!(written.len(), learners);
    assert!(
        written.iter().all(|(_, writes)| *writes == 1),
        "{:?}",
        written
            .iter()
            .filter(|(_, writes)| *writes != 1)
            .collect::<Vec<_>>()
    );
    let entries = system.subtree.entries().await;
    let without: Vec<&ldap3::SearchEntry> = entries
        .iter()
        .filter(|entry| !values(entry, "eduPersonEntitlement").contains(&format!("{URN}library")))
        .collect();
    assert!(
        without.is_empty(),
        "{} entries without their grants",
        without.len()
    );
    // And nothing more is written later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total: i32 = writes(&system).await.iter().map(|(_, writes)| writes).sum();
    assert_eq!(total, learners as i32);
    system.stop().await;
}

#[tokio::test]
async fn without_entitlement_an_account_is_written_after_its_wait_then_completed() {
    // Arrange: no entitlement yet; directory waits one second for grants.
    let mut system = TestSystem::prepare(None).await;
    system.await_grants = Duration::from_secs(1);
    system.start_intake().await;
    system.start_directory().await;

    // Act
    system
        .register(registration("Attente", "Rose", "2001-05-06"))
        .await;

    // Assert: written without grants once the wait is over.
    let entry = wait_for_entry(&system, "rose.attente", "the entry", |_| true).await;
    assert!(values(&entry, "eduPersonEntitlement").is_empty());
    assert_eq!(writes(&system).await, [("rose.attente".to_owned(), 1)]);

    // Act: entitlement comes, and computes the grants.
    system.start_entitlement().await;

    // Assert: the entry is completed, with one more write.
    let entry = wait_for_entry(&system, "rose.attente", "entitlements", |entry| {
        !values(entry, "eduPersonEntitlement").is_empty()
    })
    .await;
    assert!(values(&entry, "eduPersonEntitlement").contains(&format!("{URN}library")));
    assert_eq!(writes(&system).await, [("rose.attente".to_owned(), 2)]);
    system.stop().await;
}

fn account_state(entry: &ldap3::SearchEntry) -> String {
    values(entry, "supannRessourceEtatDate")
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// `{COMPTE}<state>:<from>:<to>`, the days counted from today.
fn state(sub_state: &str, from: i64, to: i64) -> String {
    let compact = |offset| today_plus(offset).replace('-', "");
    format!("{{COMPTE}}{sub_state}:{}:{}", compact(from), compact(to))
}

#[tokio::test]
async fn the_account_lives_on_after_its_stay_then_goes_and_a_new_stay_brings_it_back() {
    // Arrange: directory on a manual clock (the defaults: 30 days of grace, 365 days
    // expired, 30 days before removal); a stay that ends in five days.
    let clock =
        hosted_platform::clock::Clock::manual("Europe/Paris", jiff::Timestamp::now()).unwrap();
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_directory_with_clock(clock.clone()).await;
    let mut request = registration("Temps", "Léon", "1999-12-12");
    request.stay.as_mut().unwrap().end_date = today_plus(5);
    let registered = system.register(request).await;
    let uid = "leon.temps";
    let entry = wait_for_entry(&system, uid, "the entry", |_| true).await;
    assert_eq!(account_state(&entry), state("A:SupannActif", -10, 5));
    // And one whose stay starts in three days: anticipated, then active that day.
    let mut later = registration("Bientôt", "Lise", "1998-11-11");
    let stay = later.stay.as_mut().unwrap();
    stay.start_date = today_plus(3);
    stay.end_date = today_plus(90);
    system.register(later).await;
    let early = wait_for_entry(&system, "lise.bientot", "the entry", |_| true).await;
    assert_eq!(account_state(&early), state("A:SupannAnticipe", 3, 90));
    clock.advance_days(3);
    let wanted = state("A:SupannActif", 3, 90);
    wait_for_entry(&system, "lise.bientot", &wanted, |entry| {
        account_state(entry) == wanted
    })
    .await;

    // Act and assert: each period, on its first day, with no event from intake.
    let steps = [
        (3, "A:SupannSursis", 6, 35),
        (30, "I:SupannExpire", 36, 400),
        (365, "I:SupannSupprDonnees", 401, 430),
    ];
    let mut elapsed = 3;
    for (days, sub_state, from, to) in steps {
        clock.advance_days(days);
        elapsed += days;
        let wanted = state(sub_state, from, to);
        wait_for_entry(&system, uid, &wanted, |entry| {
            account_state(entry) == wanted
        })
        .await;
    }
    // The last day of the data-deletion period passes: the entry goes.
    clock.advance_days(30);
    elapsed += 30;
    let filter = format!("(uid={uid})");
    for _ in 0..300 {
        if system.subtree.search(&filter).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        system.subtree.search(&filter).await.is_empty(),
        "the entry is removed"
    );
    let written = writes(&system).await;
    assert!(written.contains(&(uid.to_owned(), 5)), "{written:?}");

    // Act: a new stay, from the directory's today on.
    let learner_id = registered.learner.unwrap().person.unwrap().learner_id;
    let mut again = registration("Temps", "Léon", "1999-12-12");
    let stay = again.stay.as_mut().unwrap();
    stay.start_date = today_plus(elapsed);
    stay.end_date = today_plus(elapsed + 60);
    let added = system.register(again).await;
    assert_eq!(
        added.learner.unwrap().person.unwrap().learner_id,
        learner_id
    );

    // Assert: the account is active again.
    let wanted = state("A:SupannActif", elapsed, elapsed + 60);
    let entry = wait_for_entry(&system, uid, &wanted, |entry| {
        account_state(entry) == wanted
    })
    .await;
    assert_eq!(values(&entry, "uid"), BTreeSet::from([uid.to_owned()]));
    system.stop().await;
}

#[tokio::test]
async fn ldap_away_during_an_import_then_back_ends_with_every_entry_right() {
    use tonic_health::pb::health_check_response::ServingStatus;

    // Arrange: directory reaches slapd through a proxy the test stops.
    let mut system = TestSystem::prepare(None).await;
    let slapd = system
        .subtree
        .server
        .url
        .trim_start_matches("ldap://")
        .parse()
        .unwrap();
    let proxy = hosted_testkit::TcpProxy::start(slapd).await;
    system.ldap_url = Some(format!("ldap://{}", proxy.address()));
    system.start_intake().await;
    system.start_directory().await;
    let directory = system.directory.as_ref().unwrap().address;
    system
        .register(registration("Avant", "Ève", "1990-01-01"))
        .await;
    wait_for_entry(&system, "eve.avant", "the entry", |_| true).await;

    // Act: LDAP goes away; a cohort is imported meanwhile.
    proxy.stop().await;
    let learners = 200;
    system
        .import(cohort(learners, "Panne", "Max", 1980, |_, _| {}))
        .await;

    // Assert: the events are consumed into the projection, and the publisher says it
    // is degraded; LDAP holds only the first entry.
    let mut conn = system.directory_database.connect().await;
    let mut projected = 0;
    for _ in 0..200 {
        projected = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM accounts")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if projected == learners as i64 + 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(projected, learners as i64 + 1);
    let mut status = ServingStatus::Serving;
    for _ in 0..200 {
        status = hosted_e2e::component_health(directory, "hosted.directory.publisher").await;
        if status == ServingStatus::NotServing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, ServingStatus::NotServing);
    assert_eq!(
        hosted_e2e::health(directory).await,
        ServingStatus::Serving,
        "the service itself still answers"
    );

    // Act: LDAP comes back.
    proxy.resume().await;

    // Assert: every entry, written once; the publisher is well again.
    let entries = system
        .subtree
        .wait_for_entries(learners + 1, Duration::from_secs(120))
        .await;
    assert_eq!(entries.len(), learners + 1);
    let written = writes(&system).await;
    assert!(
        written.iter().all(|(_, writes)| *writes == 1),
        "{written:?}"
    );
    for _ in 0..200 {
        status = hosted_e2e::component_health(directory, "hosted.directory.publisher").await;
        if status == ServingStatus::Serving {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, ServingStatus::Serving);
    system.stop().await;
    proxy.stop().await;
}

async fn reconcile(system: &TestSystem, apply: bool) -> v1::ReconcileResponse {
    system
        .directory_client()
        .await
        .reconcile(system.as_role(
            Role::Dosi,
            v1::ReconcileRequest {
                apply,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn reconciliation_reports_hand_edits_then_repairs_exactly_them() {
    // Arrange: three accounts published; then someone edits LDAP by hand.
    let system = TestSystem::start().await;
    for (family, birth) in [
        ("Un", "1991-01-01"),
        ("Deux", "1992-02-02"),
        ("Trois", "1993-03-03"),
    ] {
        system.register(registration(family, "Zoé", birth)).await;
    }
    system
        .subtree
        .wait_for_entries(3, Duration::from_secs(20))
        .await;
    assert!(
        reconcile(&system, false).await.drifts.is_empty(),
        "no drift yet"
    );
    let base = system.subtree.base_dn.clone();
    let outside = hosted_testkit::TestSubtree::new().await;
    let mut ldap = system.subtree.server.connect().await;
    use ldap3::Mod;
    // A changed mail and a removed attribute.
    ldap.modify(
        &format!("uid=zoe.un,{base}"),
        vec![
            Mod::Replace("mail", ["someone@else.example"].into()),
            Mod::Delete("supannCodePopulation", Default::default()),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    // A deleted entry.
    ldap.delete(&format!("uid=zoe.deux,{base}"))
        .await
        .unwrap()
        .success()
        .unwrap();
    // An entry nobody asked for, under the base; and, left alone, an ou under the
    // base and an entry outside it.
    let person = |uid: &'static str| {
        vec![
            ("objectClass", ["inetOrgPerson"].into()),
            ("uid", [uid].into()),
            ("cn", ["Hand Made"].into()),
            ("sn", ["Made"].into()),
        ]
    };
    ldap.add(&format!("uid=intruder,{base}"), person("intruder"))
        .await
        .unwrap()
        .success()
        .unwrap();
    ldap.add(
        &format!("ou=staff,{base}"),
        vec![
            ("objectClass", ["organizationalUnit"].into()),
            ("ou", ["staff"].into()),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let elsewhere = format!("uid=zoe.un,{}", outside.base_dn);
    ldap.add(&elsewhere, person("zoe.un"))
        .await
        .unwrap()
        .success()
        .unwrap();

    // Act: a dry run.
    let report = reconcile(&system, false).await;

    // Assert: exactly the three drifts, and nothing changed.
    let found: Vec<(String, String, Vec<String>)> = report
        .drifts
        .iter()
        .map(|drift| {
            let mut names: Vec<String> = drift.differences.iter().map(|d| d.name.clone()).collect();
            names.sort();
            (drift.kind.clone(), drift.dn.to_ascii_lowercase(), names)
        })
        .collect();
    let base_lower = base.to_ascii_lowercase();
    assert_eq!(
        found,
        [
            (
                "missing".to_owned(),
                format!("uid=zoe.deux,{base_lower}"),
                vec![]
            ),
            (
                "different".to_owned(),
                format!("uid=zoe.un,{base_lower}"),
                vec!["mail".to_owned(), "supannCodePopulation".to_owned()]
            ),
            (
                "extra".to_owned(),
                format!("uid=intruder,{base_lower}"),
                vec![]
            ),
        ]
    );
    assert_eq!(
        (report.accounts, report.entries, report.applied),
        (3, 3, false)
    );
    assert!(
        system.subtree.search("(uid=intruder)").await.len() == 1,
        "a dry run changes nothing"
    );

    // Act: apply.
    let applied = reconcile(&system, true).await;

    // Assert: repaired; nothing else touched; no drift left.
    assert!(applied.applied);
    assert_eq!(applied.drifts.len(), 3);
    let un = system.subtree.search("(uid=zoe.un)").await;
    assert_eq!(un.len(), 1);
    assert_eq!(
        values(&un[0], "mail"),
        BTreeSet::from(["learner@example.org".to_owned()])
    );
    assert_eq!(values(&un[0], "supannCodePopulation").len(), 1);
    assert_eq!(system.subtree.search("(uid=zoe.deux)").await.len(), 1);
    assert!(system.subtree.search("(uid=intruder)").await.is_empty());
    assert_eq!(
        system.subtree.search("(ou=staff)").await.len(),
        1,
        "not an account"
    );
    let (outside_entries, _) = ldap
        .search(
            &elsewhere,
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["uid"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    assert_eq!(outside_entries.len(), 1, "outside the base: left alone");
    assert!(reconcile(&system, false).await.drifts.is_empty());
    let _ = ldap.delete(&elsewhere).await;
    let _ = ldap.delete(&format!("ou=staff,{base}")).await;
    system.stop().await;
}

#[tokio::test]
async fn a_repair_left_unrecorded_by_a_crash_is_recorded_by_the_next_reconciliation() {
    // Arrange: two accounts published. A reconciliation stopped (a crash) after LDAP
    // took its repair of zoe.un, before recording it; and before LDAP took its repair
    // of zoe.deux, whose entry is still missing.
    let system = TestSystem::start().await;
    for (family, birth) in [("Un", "1991-01-01"), ("Deux", "1992-02-02")] {
        system.register(registration(family, "Zoé", birth)).await;
    }
    system
        .subtree
        .wait_for_entries(2, Duration::from_secs(20))
        .await;
    let before = writes(&system).await;
    let base = system.subtree.base_dn.clone();
    let mut ldap = system.subtree.server.connect().await;
    ldap.delete(&format!("uid=zoe.deux,{base}"))
        .await
        .unwrap()
        .success()
        .unwrap();
    let mut conn = system.directory_database.connect().await;
    for (login, written) in [("zoe.un", "modified"), ("zoe.deux", "added")] {
        sqlx::query(
            "INSERT INTO reconcile_repairs (learner_id, dn, written, attributes)
             SELECT learner_id, $2, $3, 1 FROM accounts WHERE login = $1",
        )
        .bind(login)
        .bind(format!("uid={login},{base}"))
        .bind(written)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let announced = "SELECT count(*) FROM platform_outbox WHERE subject LIKE '%.account.published'";
    let announced_before: i64 = sqlx::query_scalar(announced)
        .fetch_one(&mut conn)
        .await
        .unwrap();

    // Act
    let applied = reconcile(&system, true).await;

    // Assert: zoe.un's repair recorded (counted, announced) without a new write;
    // zoe.deux's forgotten, its drift repaired now; each counted once.
    let kinds: Vec<(String, String)> = applied
        .drifts
        .iter()
        .map(|drift| (drift.kind.clone(), drift.dn.to_ascii_lowercase()))
        .collect();
    assert_eq!(
        kinds,
        [(
            "missing".to_owned(),
            format!("uid=zoe.deux,{}", base.to_ascii_lowercase())
        )]
    );
    let after = writes(&system).await;
    let added: Vec<(String, i32)> = after
        .iter()
        .zip(&before)
        .map(|((login, now), (_, then))| (login.clone(), now - then))
        .collect();
    assert_eq!(
        added,
        [("zoe.deux".to_owned(), 1), ("zoe.un".to_owned(), 1)]
    );
    let announced_after: i64 = sqlx::query_scalar(announced)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(announced_after - announced_before, 2);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM reconcile_repairs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(system.subtree.search("(uid=zoe.deux)").await.len(), 1);
    assert!(reconcile(&system, false).await.drifts.is_empty());
    system.stop().await;
}

/// Waits until directory has published the account of `login` at `version`.
async fn wait_published(system: &TestSystem, login: &str, version: i64) {
    let mut conn = system.directory_database.connect().await;
    for _ in 0..300 {
        let published: Option<(Option<i64>, bool)> = sqlx::query_as(
            "SELECT published_version, published_revision = revision FROM accounts WHERE login = $1",
        )
        .bind(login)
        .fetch_optional(&mut conn)
        .await
        .unwrap()
        .map(|(version, done): (Option<i64>, Option<bool>)| (version, done.unwrap_or(false)));
        if published.is_some_and(|(held, done)| held == Some(version) && done) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{login} never published at version {version}");
}

#[tokio::test]
async fn a_stay_to_come_changes_nothing_today_and_the_entry_changes_on_its_first_day() {
    // Arrange: directory on a manual clock; an IFSI student (AX, student) now.
    let clock =
        hosted_platform::clock::Clock::manual("Europe/Paris", jiff::Timestamp::now()).unwrap();
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_directory_with_clock(clock.clone()).await;
    system
        .register(registration("Soignant", "Iris", "2000-03-04"))
        .await;

    // Act: a visiting doctoral stay (RHJCF: faculty, researcher) in 60 days.
    let mut doctoral = registration("Soignant", "Iris", "2000-03-04");
    let stay = doctoral.stay.as_mut().unwrap();
    stay.population = "VISITING_DOCTORAL".to_owned();
    stay.start_date = today_plus(60);
    stay.end_date = today_plus(240);
    let registered = system.register(doctoral).await;
    assert_eq!(registered.learner.unwrap().version, 2);
    wait_published(&system, "iris.soignant", 2).await;

    // Assert: today's entry is the IFSI student's, and nothing of the stay to come.
    let entry = wait_for_entry(&system, "iris.soignant", "the entry", |_| true).await;
    assert_eq!(
        values(&entry, "supannCodePopulation"),
        BTreeSet::from(["AX".to_owned()])
    );
    assert_eq!(
        values(&entry, "eduPersonAffiliation"),
        BTreeSet::from(["student".to_owned()])
    );
    assert_eq!(
        values(&entry, "eduPersonPrimaryAffiliation"),
        BTreeSet::from(["student".to_owned()])
    );
    assert_eq!(values(&entry, "supannExtProfil").len(), 1);
    assert_eq!(account_state(&entry), state("A:SupannActif", -10, 200));

    // Act: the doctoral stay's first day comes, with no event from intake.
    clock.advance_days(60);

    // Assert: the entry changes that day.
    let entry = wait_for_entry(&system, "iris.soignant", "the doctoral stay", |entry| {
        values(entry, "supannCodePopulation").contains("RHJCF")
    })
    .await;
    assert_eq!(
        values(&entry, "eduPersonPrimaryAffiliation"),
        BTreeSet::from(["faculty".to_owned()])
    );
    assert!(values(&entry, "eduPersonAffiliation").contains("researcher"));
    assert_eq!(account_state(&entry), state("A:SupannActif", -10, 240));
    system.stop().await;
}

#[tokio::test]
async fn a_co_accredited_learners_entry_names_the_partner_institution() {
    // Arrange: an agreement with a partner that has a UAI.
    let system = TestSystem::start().await;
    let mut input = hosted_e2e::co_accredited_agreement(&[]);
    input.partner_uai = "0134009M".to_owned();
    let agreement = system.create_agreement(input).await;

    // Act
    system
        .register(hosted_e2e::co_accredited(
            "Partenaire",
            "Noé",
            "2001-07-08",
            &agreement.agreement_id,
        ))
        .await;

    // Assert: the university and the partner, each as SupAnn labels an institution.
    let entry = wait_for_entry(&system, "noe.partenaire", "the entry", |_| true).await;
    assert_eq!(
        values(&entry, "supannEtablissement"),
        BTreeSet::from(["{UAI}0999999F".to_owned(), "{UAI}0134009M".to_owned()])
    );
    assert_eq!(
        values(&entry, "supannCodePopulation"),
        BTreeSet::from(["AHH".to_owned()])
    );

    // Act: the legal directorate corrects the partner's UAI.
    let mut corrected = hosted_e2e::co_accredited_agreement(&[]);
    corrected.partner_uai = "0751717J".to_owned();
    system
        .intake_client()
        .await
        .amend_agreement(system.as_role(
            Role::Legal,
            v1::AmendAgreementRequest {
                agreement_id: agreement.agreement_id.clone(),
                expected_version: agreement.version,
                agreement: Some(corrected),
                reason: "UAI corrected".to_owned(),
            },
        ))
        .await
        .unwrap();

    // Assert: the entry follows, with no change of the learner.
    let entry = wait_for_entry(&system, "noe.partenaire", "the corrected UAI", |entry| {
        values(entry, "supannEtablissement").contains("{UAI}0751717J")
    })
    .await;
    assert_eq!(
        values(&entry, "supannEtablissement"),
        BTreeSet::from(["{UAI}0999999F".to_owned(), "{UAI}0751717J".to_owned()])
    );
    system.stop().await;
}

#[tokio::test]
async fn values_that_could_forge_a_composite_or_a_dn_are_never_written() {
    // Arrange: a learner published as intake gives them.
    let system = TestSystem::start().await;
    let mut request = registration("Forge", "Yann", "1997-09-10");
    request.stay.as_mut().unwrap().sponsor_login = "marie.curie".to_owned();
    let registered = system.register(request).await;
    wait_published(&system, "yann.forge", 1).await;

    // Act: a newer state of the learner reaches directory (straight on NATS: directory
    // must be safe whatever its sources let through) with a unit that would add a key
    // to supannExtProfil and a sponsor login that would add an RDN.
    let mut learner = registered.learner.unwrap();
    learner.version += 1;
    learner.stays[0].sponsor_unit = "IFSI][affil=staff".to_owned();
    learner.stays[0].sponsor_login = "jean,ou=evil".to_owned();
    let event_id = uuid::Uuid::now_v7().to_string();
    let event = v1::LearnerEvent {
        meta: Some(v1::EventMeta {
            event_id: event_id.clone(),
            learner_id: learner.person.as_ref().unwrap().learner_id.clone(),
            learner_version: learner.version,
            ..Default::default()
        }),
        learner: Some(learner),
        ..Default::default()
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", event_id.as_str());
    hosted_testkit::jetstream()
        .await
        .publish_with_headers(
            system
                .namespace
                .subject(hosted_contracts::subjects::intake::STAY_AMENDED),
            headers,
            hosted_contracts::prost::Message::encode_to_vec(&event).into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    wait_published(&system, "yann.forge", 2).await;

    // Assert: neither value is written, raw or otherwise; the rest of the profile is.
    let entry = wait_for_entry(&system, "yann.forge", "the entry", |_| true).await;
    let profiles = values(&entry, "supannExtProfil");
    assert_eq!(profiles.len(), 1);
    let profile = profiles.first().unwrap();
    assert!(!profile.contains("staff"), "{profile}");
    assert!(!profile.contains("[affect="), "{profile}");
    assert!(!profile.contains("[parrain="), "{profile}");
    assert!(profile.contains("[population=AX]"), "{profile}");
    assert!(values(&entry, "supannParrainDN").is_empty());
    assert_eq!(
        values(&entry, "eduPersonAffiliation"),
        BTreeSet::from(["student".to_owned()])
    );
    system.stop().await;
}

#[tokio::test]
async fn a_sponsor_is_named_only_once_their_entry_exists() {
    // Arrange: one person of the university has an entry; another login has none.
    let system = TestSystem::start().await;
    let known = system.add_staff("marie.curie").await;
    let sponsored = |family: &str, birth_date: &str, sponsor: &str| {
        let mut request = registration(family, "Lou", birth_date);
        request.stay.as_mut().unwrap().sponsor_login = sponsor.to_owned();
        request
    };

    // Act: a stay sponsored by each.
    system
        .register(sponsored("Connu", "1999-05-06", "marie.curie"))
        .await;
    let registered = system
        .register(sponsored("Inconnu", "1998-07-08", "nobody.here"))
        .await;
    wait_published(&system, "lou.connu", 1).await;
    wait_published(&system, "lou.inconnu", 1).await;

    // Assert: the sponsor with an entry is named; the other is not, anywhere.
    let entry = wait_for_entry(&system, "lou.connu", "the entry", |_| true).await;
    assert_eq!(
        values(&entry, "supannParrainDN"),
        BTreeSet::from([known.clone()])
    );
    let profile = values(&entry, "supannExtProfil");
    assert!(
        profile
            .first()
            .unwrap()
            .contains(&format!("[parrain={known}]")),
        "{profile:?}"
    );
    let entry = wait_for_entry(&system, "lou.inconnu", "the entry", |_| true).await;
    assert!(
        values(&entry, "supannParrainDN").is_empty(),
        "{:?}",
        values(&entry, "supannParrainDN")
    );
    let profile = values(&entry, "supannExtProfil");
    let profile = profile.first().unwrap();
    assert!(!profile.contains("[parrain="), "{profile}");
    assert!(profile.contains("[population=AX]"), "{profile}");
    assert!(
        reconcile(&system, false).await.drifts.is_empty(),
        "reconciliation computes the entries as the publisher does"
    );

    // Act: the sponsor's entry is made; an operator republishes the account.
    let made = system.add_staff("nobody.here").await;
    let learner_id = registered.learner.unwrap().person.unwrap().learner_id;
    system
        .directory_client()
        .await
        .republish_account(system.as_role(Role::Dosi, v1::RepublishAccountRequest { learner_id }))
        .await
        .unwrap();

    // Assert: the sponsor is named now.
    let entry = wait_for_entry(&system, "lou.inconnu", "the sponsor", |entry| {
        !values(entry, "supannParrainDN").is_empty()
    })
    .await;
    assert_eq!(
        values(&entry, "supannParrainDN"),
        BTreeSet::from([made.clone()])
    );
    let profile = values(&entry, "supannExtProfil");
    assert!(
        profile
            .first()
            .unwrap()
            .contains(&format!("[parrain={made}]")),
        "{profile:?}"
    );
    system.stop().await;
}

#[tokio::test]
async fn when_ldap_cannot_look_sponsors_up_they_are_named_on_their_login_alone() {
    // Arrange: the sponsor base is not there, so searching it fails (an LDAP that
    // cannot answer); the managed base is.
    let mut system = TestSystem::prepare(None).await;
    system.staff.base_dn = format!("ou=nowhere,{}", system.staff.base_dn);
    system.start_intake().await;
    system.start_directory().await;

    // Act
    let mut request = registration("Repli", "Ana", "1996-03-04");
    request.stay.as_mut().unwrap().sponsor_login = "nobody.here".to_owned();
    system.register(request).await;
    wait_published(&system, "ana.repli", 1).await;

    // Assert: published all the same, the sponsor named by the syntax rule.
    let entry = wait_for_entry(&system, "ana.repli", "the entry", |_| true).await;
    assert_eq!(
        values(&entry, "supannParrainDN"),
        BTreeSet::from([format!("uid=nobody.here,{}", system.staff.base_dn)])
    );
    system.stop().await;
}

/// Corrects `learner`'s e-mail through intake (the entry's `mail` follows).
async fn amend_email(system: &TestSystem, learner: &v1::Learner, email: &str) {
    system
        .intake_client()
        .await
        .amend_person(system.as_role(
            Role::Deve,
            v1::AmendPersonRequest {
                learner_id: learner.person.as_ref().unwrap().learner_id.clone(),
                expected_version: learner.version,
                person: Some(v1::PersonInput {
                    email: email.to_owned(),
                    ..Default::default()
                }),
                reason: "a new e-mail".to_owned(),
            },
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reconciliation_never_writes_back_an_account_a_publisher_changed_meanwhile() {
    // Arrange: two accounts published by a first replica, which reaches LDAP through a
    // proxy the test can freeze (with room to wait: LDAP calls time out after a
    // minute).
    let mut system = TestSystem::prepare(None).await;
    let slapd = system
        .subtree
        .server
        .url
        .trim_start_matches("ldap://")
        .parse()
        .unwrap();
    let proxy = hosted_testkit::TcpProxy::start(slapd).await;
    system.start_intake().await;
    let mut first_config = system.directory_config();
    first_config.ldap.url = format!("ldap://{}", proxy.address());
    first_config.ldap.timeout = Duration::from_secs(60);
    let first_replica = hosted_directory::Application::build(&first_config)
        .await
        .unwrap();
    let first_address = first_replica.local_addr();
    let (stop_first, first_stopped) = tokio::sync::oneshot::channel::<()>();
    let first_task = tokio::spawn(first_replica.run_until_stopped(async {
        let _ = first_stopped.await;
    }));
    hosted_e2e::wait_until_serving(first_address).await;
    let learner = system
        .register(registration("Course", "Léa", "1993-03-03"))
        .await
        .learner
        .unwrap();
    let busy = system
        .register(registration("Occupé", "Marc", "1994-04-04"))
        .await
        .learner
        .unwrap();
    system
        .subtree
        .wait_for_entries(2, Duration::from_secs(20))
        .await;
    wait_published(&system, "lea.course", learner.version).await;
    wait_published(&system, "marc.occupe", busy.version).await;

    // Act: LDAP frozen for the first replica; its publisher is held writing one
    // account, its reconciliation (--apply) held reading LDAP, having read the
    // accounts. Meanwhile the other account changes and a second replica, which
    // reaches LDAP directly, publishes the change.
    proxy.freeze();
    amend_email(&system, &busy, "marc.new@example.org").await;
    let mut conn = system.directory_database.connect().await;
    let mut claimed = false;
    for _ in 0..200 {
        claimed = sqlx::query_scalar::<_, bool>(
            "SELECT count(*) > 0 FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND state = 'idle in transaction' AND query LIKE 'SELECT a.learner_id, a.login, a.version%'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if claimed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        claimed,
        "the first replica's publisher never claimed the account"
    );
    let reconciliation = tokio::spawn({
        let mut client = v1::directory_service_client::DirectoryServiceClient::new(
            hosted_testkit::channel(first_address).await,
        );
        let request = system.as_role(
            Role::Dosi,
            v1::ReconcileRequest {
                apply: true,
                ..Default::default()
            },
        );
        async move { client.reconcile(request).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    system.start_directory().await;
    amend_email(&system, &learner, "lea.new@example.org").await;
    wait_for_entry(&system, "lea.course", "the new mail", |entry| {
        values(entry, "mail") == BTreeSet::from(["lea.new@example.org".to_owned()])
    })
    .await;
    proxy.thaw();
    reconciliation.await.unwrap().unwrap();
    wait_published(&system, "marc.occupe", busy.version + 1).await;

    // Assert: the entry keeps the change the second replica published; nothing drifts.
    let entry = wait_for_entry(&system, "lea.course", "the entry", |_| true).await;
    assert_eq!(
        values(&entry, "mail"),
        BTreeSet::from(["lea.new@example.org".to_owned()]),
        "the reconciliation wrote back what it had read before the change"
    );
    let drifts = reconcile(&system, false).await.drifts;
    assert!(
        drifts.is_empty(),
        "{:?}",
        drifts.iter().map(|drift| &drift.dn).collect::<Vec<_>>()
    );
    let _ = stop_first.send(());
    first_task.await.unwrap().unwrap();
    system.stop().await;
}
