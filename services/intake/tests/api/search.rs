use hosted_contracts::v1;
use hosted_platform::auth::Role;
use tonic_types::StatusExt;

use crate::helpers::{TestIntake, day, person, stay};

/// Four learners: (family name, given names, birth date, population, unit, start, end).
const LEARNERS: [(&str, &str, &str, &str, &str, i64, i64); 4] = [
    (
        "Lefèvre",
        "Élodie",
        "2001-02-03",
        "IFSI",
        "IFSI-NORD",
        -10,
        100,
    ),
    (
        "Le Fèvre",
        "Jean-Marc",
        "1980-05-06",
        "RECTORAT_PAF",
        "INSPE",
        -10,
        100,
    ),
    ("Martin", "Léa", "1999-09-09", "IFSI", "IFSI-SUD", 30, 100),
    ("Durand", "Paul", "1985-01-01", "VAE", "DFC", -100, 100),
];

async fn seed(intake: &TestIntake) {
    let mut client = intake.client().await;
    for (family_name, given_names, birth_date, population, unit, start, end) in LEARNERS {
        let mut stay = stay(population);
        stay.sponsor_unit = unit.to_owned();
        stay.start_date = day(start);
        stay.end_date = day(end);
        client
            .register_stay(intake.deve(v1::RegisterStayRequest {
                person: Some(person(family_name, given_names, birth_date)),
                stay: Some(stay),
                confirm_new_person: true,
            }))
            .await
            .unwrap();
    }
}

fn logins(response: &v1::SearchLearnersResponse) -> Vec<String> {
    let mut logins: Vec<String> = response
        .learners
        .iter()
        .map(|learner| learner.person.as_ref().unwrap().login.clone())
        .collect();
    logins.sort();
    logins
}

#[tokio::test]
async fn learners_are_found_by_folded_names_and_by_their_stays() {
    let intake = TestIntake::spawn().await;
    seed(&intake).await;
    let client = intake.client().await;
    let search = |request: v1::SearchLearnersRequest| {
        let request = intake.as_role(Role::Dosi, request);
        let mut client = client.clone();
        async move { client.search_learners(request).await.unwrap().into_inner() }
    };

    let by_name = search(v1::SearchLearnersRequest {
        name: "LEFEVRE".to_owned(),
        ..Default::default()
    })
    .await;
    assert_eq!(logins(&by_name), ["elodie.lefevre"]);
    let by_word = search(v1::SearchLearnersRequest {
        name: "fevre jean".to_owned(),
        ..Default::default()
    })
    .await;
    assert_eq!(logins(&by_word), ["jean-marc.le-fevre"]);
    let by_population = search(v1::SearchLearnersRequest {
        population: "IFSI".to_owned(),
        ..Default::default()
    })
    .await;
    assert_eq!(logins(&by_population), ["elodie.lefevre", "lea.martin"]);
    let active_today = search(v1::SearchLearnersRequest {
        population: "IFSI".to_owned(),
        active_on: day(0),
        ..Default::default()
    })
    .await;
    assert_eq!(logins(&active_today), ["elodie.lefevre"]);
    let by_unit = search(v1::SearchLearnersRequest {
        sponsor_unit: "INSPE".to_owned(),
        ..Default::default()
    })
    .await;
    assert_eq!(logins(&by_unit), ["jean-marc.le-fevre"]);
    let by_login = search(v1::SearchLearnersRequest {
        login: "Lea.Martin".to_owned(),
        ..Default::default()
    })
    .await;
    assert_eq!(logins(&by_login), ["lea.martin"]);

    // Pages of one, all four (hosted in 50 days) seen once.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = search(v1::SearchLearnersRequest {
            active_on: day(50),
            page_size: 1,
            page_token: page_token.clone(),
            ..Default::default()
        })
        .await;
        seen.extend(logins(&page));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    seen.sort();
    assert_eq!(seen.len(), 4);
    assert_eq!(
        seen,
        logins(
            &search(v1::SearchLearnersRequest {
                active_on: day(50),
                page_size: 10,
                ..Default::default()
            })
            .await
        )
    );
    intake.stop().await;
}

#[tokio::test]
async fn a_search_without_a_letter_or_digit_is_refused_for_every_role_never_everyone() {
    // Arrange
    let intake = TestIntake::spawn().await;
    seed(&intake).await;
    let client = intake.client().await;
    let search = |role: Role, name: &str| {
        let request = intake.as_role(
            role,
            v1::SearchLearnersRequest {
                name: name.to_owned(),
                ..Default::default()
            },
        );
        let mut client = client.clone();
        async move { client.search_learners(request).await }
    };

    for role in [Role::Deve, Role::Dosi] {
        for name in ["", "   ", "*", "%", "'", "\\", "_", "%_%", " - , ' "] {
            // Act
            let refused = search(role, name).await.unwrap_err();

            // Assert
            assert_eq!(
                refused.code(),
                tonic::Code::InvalidArgument,
                "{role} {name:?}"
            );
            let violations = refused
                .get_error_details()
                .bad_request()
                .map(|bad| bad.field_violations.clone())
                .unwrap_or_default();
            assert_eq!(violations.len(), 1, "{role} {name:?}: {violations:?}");
            assert_eq!(violations[0].field, "name");
            assert!(
                violations[0]
                    .description
                    .starts_with("needs at least one letter or digit"),
                "{role} {name:?}: {}",
                violations[0].description
            );
        }
    }
    // LIKE's wildcards are never wildcards: "d_rand" and "dur%nd" find nobody,
    // "durand" finds Paul Durand.
    for name in ["d_rand", "dur%nd", "%urand", "_urand"] {
        let found = search(Role::Deve, name).await.unwrap().into_inner();
        assert_eq!(logins(&found), Vec::<String>::new(), "{name:?}");
    }
    let found = search(Role::Deve, "durand").await.unwrap().into_inner();
    assert_eq!(logins(&found), ["paul.durand"]);
    intake.stop().await;
}

#[tokio::test]
async fn stats_count_hosted_learners_on_a_day() {
    let intake = TestIntake::spawn().await;
    seed(&intake).await;
    let mut client = intake.client().await;
    let stats = |on: String| intake.as_role(Role::Dosi, v1::GetStatsRequest { on });

    let today = client
        .get_stats(stats(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(today.on, day(0));
    assert_eq!(today.total_learners, 3);
    let populations: Vec<(String, i64)> = today
        .by_population
        .iter()
        .map(|c| (c.key.clone(), c.learners))
        .collect();
    assert_eq!(
        populations,
        [
            ("IFSI".to_owned(), 1),
            ("RECTORAT_PAF".to_owned(), 1),
            ("VAE".to_owned(), 1)
        ]
    );
    assert_eq!(today.by_agreement.len(), 1, "no agreement: one empty key");
    assert_eq!(today.by_agreement[0].key, "");

    let later = client.get_stats(stats(day(50))).await.unwrap().into_inner();
    assert_eq!(later.total_learners, 4);
    let earlier = client
        .get_stats(stats(day(-50)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(earlier.total_learners, 1, "only the VAE candidate then");
    intake.stop().await;
}

#[tokio::test]
async fn persons_registered_before_name_search_are_found_after_a_restart() {
    let intake = TestIntake::spawn().await;
    seed(&intake).await;
    let mut conn = intake.database.connect().await;
    sqlx::query("UPDATE persons SET folded_names = ''")
        .execute(&mut conn)
        .await
        .unwrap();
    let (database, namespace, callers) = intake.stop().await;
    let config = crate::helpers::config(
        &database,
        hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace),
        &callers,
    );
    let intake = TestIntake::spawn_with(config, database, namespace, callers).await;

    let found = intake
        .client()
        .await
        .search_learners(intake.as_role(
            Role::Dosi,
            v1::SearchLearnersRequest {
                name: "martin".to_owned(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(logins(&found), ["lea.martin"]);
    intake.stop().await;
}
