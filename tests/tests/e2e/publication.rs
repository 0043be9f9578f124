use std::{collections::HashSet, time::Duration};

use hosted_e2e::{TestSystem, name_for, registration, today_plus};
use hosted_platform::auth::Role;

fn first<'a>(entry: &'a ldap3::SearchEntry, name: &str) -> &'a str {
    entry
        .attrs
        .get(name)
        .and_then(|values| values.first())
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{name} missing from {:?}", entry.attrs))
}

fn all(entry: &ldap3::SearchEntry, name: &str) -> HashSet<String> {
    entry
        .attrs
        .get(name)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn a_registered_learner_appears_in_ldap() {
    // Arrange
    let system = TestSystem::start().await;

    // Act
    let response = system
        .register(registration("Lefèvre", "Élodie Marie", "2001-02-03"))
        .await;

    // Assert
    let learner = response.learner.unwrap();
    let person = learner.person.unwrap();
    system
        .subtree
        .wait_for_entries(1, Duration::from_secs(20))
        .await;
    let entries = system.subtree.search("(uid=elodie.lefevre)").await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(
        entry.dn,
        format!("uid=elodie.lefevre,{}", system.subtree.base_dn)
    );
    let classes: HashSet<String> = all(entry, "objectClass")
        .iter()
        .map(|c| c.to_lowercase())
        .collect();
    for class in ["inetorgperson", "eduperson", "supannperson"] {
        assert!(classes.contains(class), "{class} missing: {classes:?}");
    }
    assert_eq!(first(entry, "uid"), "elodie.lefevre");
    assert_eq!(first(entry, "cn"), "Élodie Marie Lefèvre");
    assert_eq!(first(entry, "sn"), "Lefèvre");
    assert_eq!(first(entry, "givenName"), "Élodie Marie");
    assert_eq!(first(entry, "mail"), "learner@example.org");
    assert_eq!(
        first(entry, "eduPersonPrincipalName"),
        "elodie.lefevre@univ-example.fr"
    );
    assert_eq!(
        all(entry, "eduPersonAffiliation"),
        HashSet::from(["student".to_owned()])
    );
    assert_eq!(first(entry, "eduPersonPrimaryAffiliation"), "student");
    assert_eq!(first(entry, "supannCodePopulation"), "AX");
    assert_eq!(first(entry, "supannOIDCDateDeNaissance"), "2001-02-03");
    let start = today_plus(-10).replace('-', "");
    let end = today_plus(200).replace('-', "");
    assert_eq!(
        first(entry, "supannRessourceEtatDate"),
        format!("{{COMPTE}}A:SupannActif:{start}:{end}")
    );

    // The operators' view agrees: published, no difference. Directory records the
    // write once LDAP has taken it, so the entry can be read a moment before.
    let mut account = Default::default();
    for _ in 0..100 {
        account = system
            .directory_client()
            .await
            .get_account(system.as_role(
                Role::Dosi,
                hosted_contracts::v1::GetAccountRequest {
                    key: Some(hosted_contracts::v1::get_account_request::Key::LearnerId(
                        person.learner_id.clone(),
                    )),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        if account.published_version == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(account.version, 1);
    assert_eq!(account.published_version, 1);
    assert!(account.differences.is_empty(), "{:?}", account.differences);
    // A login in any case is the same account, as LDAP's uid is.
    let shouted = system
        .directory_client()
        .await
        .get_account(system.as_role(
            Role::Dosi,
            hosted_contracts::v1::GetAccountRequest {
                key: Some(hosted_contracts::v1::get_account_request::Key::Login(
                    "Elodie.LEFEVRE".to_owned(),
                )),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shouted.learner_id, person.learner_id);
    system.stop().await;
}

#[tokio::test]
async fn names_that_need_escaping_round_trip_exactly() {
    let system = TestSystem::start().await;
    // Intake trims the spaces around names (normalised at the door, so that
    // displayName keeps the first given name); every character that LDAP escapes is
    // still there.
    let family_name = "O'Brien, Jr. + \"Ünïcödé\" \\ = (sic) *";
    let given_names = "Zoë-Åsa d'Arc=1+2";
    let response = system
        .register(registration(
            &format!(" {family_name}"),
            &format!("  {given_names}"),
            "1999-12-31",
        ))
        .await;
    let login = response.learner.unwrap().person.unwrap().login;
    assert!(login.is_ascii(), "{login}");
    system
        .subtree
        .wait_for_entries(1, Duration::from_secs(20))
        .await;

    // Found by a filter built from the raw name: RFC 4515 escaping at work.
    let filter = format!(
        "(&(sn={})(givenName={}))",
        hosted_directory::domain::escape::filter_value(family_name),
        hosted_directory::domain::escape::filter_value(given_names)
    );
    let entries = system.subtree.search(&filter).await;
    assert_eq!(entries.len(), 1, "{filter}");
    let entry = &entries[0];
    assert_eq!(first(entry, "sn"), family_name);
    assert_eq!(first(entry, "givenName"), given_names);
    assert_eq!(first(entry, "cn"), format!("{given_names} {family_name}"));
    assert_eq!(
        first(entry, "displayName"),
        format!("Zoë-Åsa {family_name}")
    );
    assert_eq!(first(entry, "supannNomDeNaissance"), family_name);
    system.stop().await;
}

#[tokio::test]
async fn learners_registered_while_directory_is_stopped_are_published_once_it_starts() {
    // Arrange: directory attached once (its durable consumer exists), then stopped.
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_directory().await;
    system.stop_directory().await;

    // Act
    for i in 0..50 {
        system
            .register(registration(
                &format!("Durand {}", name_for(i)),
                "Paul",
                // Born on different days: not near matches of each other.
                &format!("2000-{:02}-{:02}", i / 28 + 1, i % 28 + 1),
            ))
            .await;
    }
    assert!(system.subtree.entries().await.is_empty());
    system.start_directory().await;

    // Assert
    let entries = system
        .subtree
        .wait_for_entries(50, Duration::from_secs(60))
        .await;
    let uids: HashSet<&str> = entries.iter().map(|entry| first(entry, "uid")).collect();
    assert_eq!(uids.len(), 50);
    // Each account was written once, at its one version. The publisher marks a batch
    // of accounts published when the batch is done: the entries can show first.
    let mut conn = system.directory_database.connect().await;
    let mut rows: Vec<(i64, Option<i64>, i32)> = Vec::new();
    for _ in 0..100 {
        rows = sqlx::query_as("SELECT version, published_version, publish_attempts FROM accounts")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        if rows.iter().all(|row| row.1.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows.len(), 50);
    assert!(rows.iter().all(|row| *row == (1, Some(1), 0)), "{rows:?}");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM platform_inbox")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(applied, 50);
    system.stop().await;
}

/// The `account.published` events directory has announced so far, in order.
async fn account_events(system: &TestSystem) -> Vec<hosted_contracts::v1::AccountEvent> {
    use hosted_contracts::{prost::Message, subjects};
    let subject = system
        .namespace
        .subject(subjects::directory::ACCOUNT_PUBLISHED);
    let stream = system.namespace.stream(subjects::Service::Directory);
    let jetstream = hosted_testkit::jetstream().await;
    if jetstream.get_stream(&stream).await.is_err() {
        return Vec::new();
    }
    hosted_testkit::stream_messages(&stream)
        .await
        .into_iter()
        .filter(|message| message.subject.as_str() == subject)
        .map(|message| hosted_contracts::v1::AccountEvent::decode(message.payload).unwrap())
        .collect()
}

async fn wait_for_events(
    system: &TestSystem,
    count: usize,
) -> Vec<hosted_contracts::v1::AccountEvent> {
    for _ in 0..300 {
        let events = account_events(system).await;
        if events.len() >= count {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} account events");
}

#[tokio::test]
async fn each_write_and_the_removal_of_an_entry_is_announced_with_the_accounts_state() {
    // Arrange: directory on a manual clock.
    let clock =
        hosted_platform::clock::Clock::manual("Europe/Paris", jiff::Timestamp::now()).unwrap();
    let mut system = TestSystem::prepare(None).await;
    system.start_intake().await;
    system.start_directory_with_clock(clock.clone()).await;

    // Act: a learner is registered.
    let registered = system
        .register(registration("Annonce", "Léa", "1996-06-07"))
        .await;
    let learner_id = registered.learner.unwrap().person.unwrap().learner_id;

    // Assert: one event for the add, with the account's state.
    let events = wait_for_events(&system, 1).await;
    assert_eq!(events.len(), 1);
    let added = &events[0];
    assert_eq!(added.meta.as_ref().unwrap().learner_id, learner_id);
    assert_eq!(added.published_version, 1);
    assert_eq!(added.login, "lea.annonce");
    assert_eq!(
        added.dn,
        format!("uid=lea.annonce,{}", system.subtree.base_dn)
    );
    assert_eq!(
        (
            added.state.as_str(),
            added.sub_state.as_str(),
            added.removed
        ),
        ("A", "SupannActif", false)
    );
    assert_eq!(
        (added.state_from.as_str(), added.state_to.as_str()),
        (today_plus(-10).as_str(), today_plus(200).as_str())
    );

    // Act: a republish that finds the entry as it should be writes nothing.
    system
        .directory_client()
        .await
        .republish_account(system.as_role(
            Role::Dosi,
            hosted_contracts::v1::RepublishAccountRequest {
                learner_id: learner_id.clone(),
            },
        ))
        .await
        .unwrap();
    // Then the stay and every period after it pass: the entry is removed.
    clock.advance_days(201 + 30 + 365 + 30);
    let filter = "(uid=lea.annonce)";
    for _ in 0..300 {
        if system.subtree.search(filter).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(system.subtree.search(filter).await.is_empty());

    // Assert: one more event, the removal; none for the write that changed nothing.
    let events = wait_for_events(&system, 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let removed = &events[1];
    assert!(removed.removed);
    assert_eq!(
        (removed.state.as_str(), removed.sub_state.as_str()),
        ("", "")
    );
    assert_eq!(removed.meta.as_ref().unwrap().learner_id, learner_id);
    assert_ne!(
        removed.meta.as_ref().unwrap().event_id,
        added.meta.as_ref().unwrap().event_id
    );
    system.stop().await;
}

#[tokio::test]
async fn get_account_shows_a_missing_entry_and_the_writes_made() {
    // Arrange: one account, published once.
    let system = TestSystem::start().await;
    let registered = system
        .register(registration("Manquant", "Paul", "1995-05-05"))
        .await;
    let learner_id = registered.learner.unwrap().person.unwrap().learner_id;
    system
        .subtree
        .wait_for_entries(1, Duration::from_secs(20))
        .await;
    let get = || async {
        system
            .directory_client()
            .await
            .get_account(system.as_role(
                Role::Dosi,
                hosted_contracts::v1::GetAccountRequest {
                    key: Some(hosted_contracts::v1::get_account_request::Key::Login(
                        "paul.manquant".to_owned(),
                    )),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    };
    let mut account = get().await;
    for _ in 0..100 {
        if account.ldap_writes == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        account = get().await;
    }
    assert_eq!(account.learner_id, learner_id);
    assert_eq!(account.ldap_writes, 1);
    assert!(!account.entry_missing);
    assert!(account.differences.is_empty());

    // Act: the entry is deleted by hand.
    let mut ldap = system.subtree.server.connect().await;
    ldap.delete(&account.dn).await.unwrap().success().unwrap();

    // Assert: the entry is missing, and every attribute it should hold differs.
    let account = get().await;
    assert!(account.entry_missing);
    assert!(account.actual.is_empty());
    let names: Vec<&str> = account
        .differences
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert!(names.contains(&"uid"), "{names:?}");
    assert!(names.contains(&"supannRessourceEtatDate"), "{names:?}");
    assert_eq!(account.differences.len(), account.desired.len());
    assert!(account.differences.iter().all(|d| d.actual.is_empty()));
    assert_eq!(account.ldap_writes, 1);
    system.stop().await;
}

#[tokio::test]
async fn a_write_ldap_took_is_counted_even_when_its_publication_is_rolled_back() {
    // Arrange: directory reaches slapd through a proxy the test can freeze.
    let mut system = TestSystem::prepare(None).await;
    system.await_grants = Duration::from_millis(100);
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

    // Act: the write is held on its way to LDAP while the publisher's claim (its
    // transaction) is open; that transaction dies (as in a crash), then LDAP takes the
    // write. (pg_stat_activity keeps the start of the claim's statement only.)
    proxy.freeze();
    system
        .register(registration("Compte", "Rémi", "1991-01-01"))
        .await;
    let mut conn = system.directory_database.connect().await;
    let mut killed = false;
    for _ in 0..200 {
        killed = sqlx::query_scalar::<_, bool>(
            "SELECT COALESCE(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND state = 'idle in transaction' AND query LIKE 'SELECT a.learner_id, a.login, a.version%'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if killed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(killed, "the publisher's claim was never seen open");
    proxy.thaw();

    // Assert: the entry is there, written once, and that one write is counted, though
    // the publication that made it was rolled back and done again.
    system
        .subtree
        .wait_for_entries(1, Duration::from_secs(30))
        .await;
    let mut writes = 0;
    let mut published = false;
    for _ in 0..200 {
        (writes, published) = sqlx::query_as::<_, (i64, bool)>(
            "SELECT COALESCE((SELECT writes FROM ldap_writes w WHERE w.learner_id = a.learner_id), 0),
                    a.published_revision IS NOT NULL
             FROM accounts a",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if published {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(published);
    assert_eq!(writes, 1);
    system.stop().await;
}

/// Sets whether directory's database takes connections; when not, also ends those it
/// has: the database is away for directory (a failover), as the superuser sees to it.
async fn directory_database_reachable(system: &TestSystem, reachable: bool) {
    use sqlx::Connection;
    let name = &system.directory_database.name;
    let mut admin = sqlx::PgConnection::connect(&hosted_testkit::server_database_url())
        .await
        .unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {reachable}"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    if !reachable {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut admin)
        .await
        .unwrap();
    }
    let _ = admin.close().await;
}

#[tokio::test]
async fn a_write_ldap_took_is_counted_even_when_the_database_is_away_right_after() {
    // Arrange: directory reaches slapd through a proxy the test can freeze.
    let mut system = TestSystem::prepare(None).await;
    system.await_grants = Duration::from_millis(100);
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

    // Act: the write is held on its way to LDAP while the publisher's claim is open;
    // then directory's database goes away (its connections ended, new ones refused),
    // LDAP takes the write, and the database comes back a while later.
    proxy.freeze();
    system
        .register(registration("Compte", "Inès", "1992-02-02"))
        .await;
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
    assert!(claimed, "the publisher's claim was never seen open");
    drop(conn);
    directory_database_reachable(&system, false).await;
    proxy.thaw();
    system
        .subtree
        .wait_for_entries(1, Duration::from_secs(30))
        .await;
    // Long enough for the publisher to try to record the write, and fail.
    tokio::time::sleep(Duration::from_secs(2)).await;
    directory_database_reachable(&system, true).await;

    // Assert: once the database is back, the account is published and its one write
    // (the entry LDAP holds) is counted.
    let mut conn = system.directory_database.connect().await;
    let mut writes = 0;
    let mut published = false;
    for _ in 0..200 {
        (writes, published) = sqlx::query_as::<_, (i64, bool)>(
            "SELECT COALESCE((SELECT writes FROM ldap_writes w WHERE w.learner_id = a.learner_id), 0),
                    a.published_revision IS NOT NULL
             FROM accounts a",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if published && writes == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(published, "the account was never published");
    assert_eq!(
        writes, 1,
        "the LDAP writes counted for the one entry written"
    );
    system.stop().await;
}
