//! Every service's `/metrics`, scraped over HTTP as Prometheus does: the exposition
//! parses, and the figures move when the system works (RPCs, the outbox, LDAP writes,
//! the publication lag, the Check cache), and the dashboard and the alerting rules of
//! `deploy/kubernetes/monitoring/` ask for no metric the services do not serve.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::Path,
    time::Duration,
};

use hosted_e2e::{TestSystem, name_for, registration};
use hosted_platform::{auth::Role, config::MetricsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One sample: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed.
#[derive(Debug)]
struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    /// The sum of the samples named `name` whose labels include `labels` (0 when none).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|sample| sample.value).sum()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
        })
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.matching(name, labels).next().is_some()
    }
}

/// Reads `/metrics` with a plain HTTP/1.1 GET, as a scraper does.
async fn scrape(address: SocketAddr) -> Scrape {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!(
                "GET /metrics HTTP/1.1\r\nHost: {address}\r\n\
                 Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).expect("UTF-8 exposition");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers and a body");
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"), "{head}");
    let content_type = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.trim().to_owned());
    assert_eq!(
        content_type.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    parse(body)
}

/// Parses OpenMetrics text strictly enough to catch a malformed exposition: every
/// line a `# HELP`, `# TYPE` or `# UNIT` comment or a sample of a declared family,
/// values numbers, and `# EOF` last.
fn parse(text: &str) -> Scrape {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no # EOF at the end");
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().unwrap());
            match kind {
                "TYPE" => {
                    let metric_type = parts.next().expect("a type");
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "info",
                            "summary",
                            "unknown"
                        ]
                        .contains(&metric_type),
                        "{line}"
                    );
                    families.insert(name.to_owned(), metric_type.to_owned());
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unexpected comment: {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a series and a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            number => number
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.strip_suffix('}').expect("labels closed")),
            None => (series, ""),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        let mut parsed = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").expect("key=\"value\"");
            let end = after.find('"').expect("a closing quote");
            parsed.insert(key.to_owned(), after[..end].to_owned());
            rest = after[end + 1..].trim_start_matches(',');
        }
        let family = ["_total", "_bucket", "_count", "_sum", "_created", "_info"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|family| families.contains_key(*family))
            })
            .unwrap_or(name);
        assert!(
            families.contains_key(family),
            "sample of an undeclared family: {line}"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels: parsed,
            value,
        });
    }
    Scrape { samples }
}

/// Polls `condition` on fresh scrapes of `address` until it holds (at most 30 s).
async fn eventually(address: SocketAddr, what: &str, condition: impl Fn(&Scrape) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let scrape = scrape(address).await;
        if condition(&scrape) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never seen: {what}; last scrape: {:#?}",
            scrape.samples
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const INTAKE: &str = "hosted.v1.IntakeService";
const ENTITLEMENT: &str = "hosted.v1.EntitlementService";

#[tokio::test]
async fn every_service_serves_metrics_that_move_with_the_work() {
    // Arrange: the four services, each with a metrics endpoint sampled often.
    let mut system = TestSystem::prepare(None).await;
    system.metrics = MetricsConfig {
        sample_interval: Duration::from_millis(200),
        ..MetricsConfig::ephemeral()
    };
    system.start_intake().await;
    system.start_entitlement().await;
    system.start_directory().await;
    system.start_cards().await;
    let endpoint = |running: &Option<hosted_e2e::Running>| {
        running
            .as_ref()
            .and_then(|running| running.metrics)
            .expect("a metrics endpoint")
    };
    let intake = endpoint(&system.intake);
    let entitlement = endpoint(&system.entitlement);
    let directory = endpoint(&system.directory);
    let cards = endpoint(&system.cards);
    let mut before = BTreeMap::new();
    for (service, address) in [
        ("intake", intake),
        ("entitlement", entitlement),
        ("directory", directory),
        ("cards", cards),
    ] {
        let scrape = scrape(address).await;
        assert_eq!(
            scrape.sum("hosted_build_info", &[("service", service)]),
            1.0,
            "{service}"
        );
        assert!(scrape.sum("process_resident_memory_bytes", &[]) > 0.0);
        assert!(scrape.has("process_cpu_seconds_total", &[]));
        assert!(scrape.sum("process_start_time_seconds", &[]) > 1.0e9);
        assert!(scrape.has("hosted_outbox_backlog_events", &[]));
        before.insert(service, scrape);
    }
    for consumer in [
        "directory-intake",
        "directory-entitlement",
        "directory-cards",
    ] {
        assert!(
            before["directory"].has("hosted_dead_letters", &[("consumer", consumer)]),
            "{consumer}"
        );
    }
    let register_ok = [
        ("grpc_service", INTAKE),
        ("grpc_method", "RegisterStay"),
        ("grpc_code", "OK"),
    ];
    let register_denied = [
        ("grpc_service", INTAKE),
        ("grpc_method", "RegisterStay"),
        ("grpc_code", "PermissionDenied"),
    ];
    let check_ok = [
        ("grpc_service", ENTITLEMENT),
        ("grpc_method", "Check"),
        ("grpc_code", "OK"),
    ];

    // Act: three learners registered, one call the access check refuses, Check asked
    // until each is allowed and once more, and the entries in LDAP.
    let mut logins = Vec::new();
    for index in 0..3 {
        let response = system
            .register(registration(
                &format!("Mesure{}", name_for(index)),
                "Anaïs",
                // Birth days apart: names one letter apart would be possible twins.
                &format!("2001-05-{:02}", index + 1),
            ))
            .await;
        logins.push(response.learner.unwrap().person.unwrap().login);
    }
    let refused = system
        .intake_client()
        .await
        .register_stay(system.as_role(
            Role::Integrator,
            registration("Refusee", "Jeanne", "2000-01-01"),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    for login in &logins {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !crate::entitlement::check(&system, login, "library")
            .await
            .allowed
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{login} never allowed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    system
        .subtree
        .wait_for_entries(3, Duration::from_secs(30))
        .await;

    // Assert: the exposition parses and the figures moved.
    let after = scrape(intake).await;
    assert_eq!(
        after.sum("grpc_server_handled_total", &register_ok)
            - before["intake"].sum("grpc_server_handled_total", &register_ok),
        3.0
    );
    assert_eq!(
        after.sum("grpc_server_handled_total", &register_denied)
            - before["intake"].sum("grpc_server_handled_total", &register_denied),
        1.0
    );
    let register_method = [("grpc_service", INTAKE), ("grpc_method", "RegisterStay")];
    assert_eq!(
        after.sum("grpc_server_handling_seconds_count", &register_method),
        4.0
    );
    assert_eq!(
        after.sum(
            "grpc_server_handling_seconds_bucket",
            &[
                ("grpc_service", INTAKE),
                ("grpc_method", "RegisterStay"),
                ("le", "+Inf")
            ]
        ),
        4.0
    );
    eventually(intake, "intake's outbox published and drained", |scrape| {
        scrape.sum("hosted_outbox_published_total", &[])
            >= before["intake"].sum("hosted_outbox_published_total", &[]) + 3.0
            && scrape.sum("hosted_outbox_backlog_events", &[]) == 0.0
            && scrape.sum("hosted_outbox_oldest_age_seconds", &[]) == 0.0
    })
    .await;

    // Asked again, a learner the cache holds by now is answered from memory.
    let hits_before =
        before["entitlement"].sum("hosted_check_cache_lookups_total", &[("result", "hit")]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            crate::entitlement::check(&system, &logins[0], "library")
                .await
                .allowed
        );
        let scrape = scrape(entitlement).await;
        if scrape.sum("hosted_check_cache_lookups_total", &[("result", "hit")]) > hits_before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Check answered from the cache"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually(entitlement, "Check counted, the cache used", |scrape| {
        scrape.sum("grpc_server_handled_total", &check_ok)
            - before["entitlement"].sum("grpc_server_handled_total", &check_ok)
            >= 4.0
            && scrape.sum("hosted_check_cache_lookups_total", &[("result", "miss")])
                > before["entitlement"]
                    .sum("hosted_check_cache_lookups_total", &[("result", "miss")])
            && scrape.sum("hosted_check_cache_lookups_total", &[("result", "hit")]) > hits_before
            && scrape.sum("hosted_check_cache_learners", &[]) >= 1.0
            && scrape.sum(
                "hosted_consumer_pending_messages",
                &[("consumer", "entitlement-intake")],
            ) == 0.0
    })
    .await;

    eventually(
        directory,
        "LDAP writes, their lag and the backlog",
        |scrape| {
            scrape.sum(
                "hosted_ldap_writes_total",
                &[("operation", "add"), ("outcome", "ok")],
            ) >= 3.0
                && scrape.sum("hosted_ldap_writes_total", &[("outcome", "error")]) == 0.0
                && scrape.sum("hosted_ldap_write_seconds_count", &[("operation", "add")]) >= 3.0
                && scrape.sum("hosted_publication_lag_seconds_count", &[]) >= 3.0
                && scrape.sum("hosted_publication_lag_seconds_sum", &[]) > 0.0
                && scrape.sum("hosted_ldap_up", &[]) == 1.0
                && scrape.sum("hosted_publication_backlog_accounts", &[]) == 0.0
                && scrape.sum(
                    "hosted_consumer_pending_messages",
                    &[("consumer", "directory-intake")],
                ) == 0.0
                && scrape.sum(
                    "hosted_consumer_ack_pending_messages",
                    &[("consumer", "directory-intake")],
                ) == 0.0
                && scrape.sum("hosted_dead_letters", &[("consumer", "directory-intake")]) == 0.0
                && scrape.sum("hosted_outbox_published_total", &[])
                    > before["directory"].sum("hosted_outbox_published_total", &[])
        },
    )
    .await;
    // Cards requested no card (IFSI grants none), but reads both streams.
    eventually(cards, "cards' consumers sampled", |scrape| {
        scrape.sum(
            "hosted_consumer_pending_messages",
            &[("consumer", "cards-intake")],
        ) == 0.0
            && scrape.has(
                "hosted_consumer_redelivered_messages",
                &[("consumer", "cards-entitlement")],
            )
    })
    .await;

    // The dashboard and the alerts ask only for what the services serve.
    let mut served = BTreeSet::new();
    for address in [intake, entitlement, directory, cards] {
        served.extend(
            scrape(address)
                .await
                .samples
                .into_iter()
                .map(|sample| sample.name),
        );
    }
    let monitoring = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/monitoring");
    for file in ["dashboards/hosted-learners.json", "alerts.yaml"] {
        let text = std::fs::read_to_string(monitoring.join(file)).unwrap();
        let asked = metric_names(&text);
        assert!(asked.len() >= 5, "{file}: too few metrics found: {asked:?}");
        let unknown: Vec<&String> = asked.difference(&served).collect();
        assert!(
            unknown.is_empty(),
            "{file} asks for metrics no service serves: {unknown:?}"
        );
    }

    system.stop().await;
}

/// The names of our metrics (`hosted_…`, `grpc_server_…`, `process_…`) a text
/// (a query, a dashboard, rules) mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| {
            ["hosted_", "grpc_server_", "process_"]
                .iter()
                .any(|prefix| word.starts_with(prefix))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn metric_names_are_found_in_queries() {
    let names = metric_names(
        r#"sum by (le) (rate(hosted_publication_lag_seconds_bucket{service="directory"}[5m])) / up"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["hosted_publication_lag_seconds_bucket".to_owned()])
    );
}

#[test]
fn a_malformed_exposition_is_refused() {
    let good = "# TYPE up gauge\nup 1\n# EOF\n";
    assert_eq!(parse(good).sum("up", &[]), 1.0);
    for bad in [
        "# TYPE up gauge\nup 1\n",
        "up 1\n# EOF\n",
        "# TYPE up gauge\nup one\n# EOF\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "{bad:?} accepted"
        );
    }
}
