//! Harness for end-to-end tests: intake and directory running in this process on
//! ephemeral ports, sharing one NATS namespace, each with its own database, the
//! directory publishing under an LDAP subtree of the test's own.
#![allow(clippy::unwrap_used, unreachable_pub)]

pub mod isolated;

use std::{future::Future, net::SocketAddr, time::Duration};

use hosted_contracts::{
    subjects::{Namespace, Service},
    v1,
};
use hosted_directory::{DirectoryConfig, config::LdapConfig};
use hosted_intake::{IntakeConfig, config::RegistryConfig};
use hosted_platform::{
    auth::Role,
    config::{NatsConfig, TelemetryConfig},
};
use hosted_testkit::{DatabaseOwner, TestCallers, TestDatabase, TestSubtree};
use tokio::{sync::oneshot, task::JoinHandle};

/// A service running in this process until stopped.
#[derive(Debug)]
pub struct Running {
    pub address: SocketAddr,
    /// The `/metrics` endpoint, when [`TestSystem::metrics`] asks for one.
    pub metrics: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    fn start<F, Fut>(address: SocketAddr, run: F) -> Self
    where
        F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(Box::pin(async {
            let _ = stopped.await;
        })));
        Self {
            address,
            metrics: None,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn with_metrics(mut self, metrics: Option<SocketAddr>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Stops gracefully and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// Everything one end-to-end test runs against.
#[derive(Debug)]
pub struct TestSystem {
    pub namespace: Namespace,
    pub callers: TestCallers,
    pub subtree: TestSubtree,
    /// Where the university's people (sponsors) are: a subtree of its own beside the
    /// managed one, which holds accounts only. Empty until a test adds someone
    /// ([`TestSystem::add_staff`]).
    pub staff: TestSubtree,
    pub intake_database: TestDatabase,
    pub directory_database: TestDatabase,
    /// The NATS settings the services share (namespace, timings), as the admin user;
    /// each service connects as its own user ([`hosted_testkit::as_service`]).
    pub nats: NatsConfig,
    pub intake: Option<Running>,
    pub directory: Option<Running>,
    pub entitlement: Option<Running>,
    pub entitlement_database: TestDatabase,
    pub cards: Option<Running>,
    pub cards_database: TestDatabase,
    /// How long directory waits for an account's grants ([`Duration::ZERO`] unless a
    /// test runs entitlement and sets it before starting directory).
    pub await_grants: Duration,
    /// Where directory reaches LDAP, when not slapd itself (a proxy the test stops).
    pub ldap_url: Option<String>,
    /// The services' `[metrics]` (no endpoint unless a test sets one).
    pub metrics: hosted_platform::config::MetricsConfig,
}

impl TestSystem {
    /// Intake and directory, both started.
    pub async fn start() -> Self {
        let mut system = Self::prepare(None).await;
        system.start_intake().await;
        system.start_directory().await;
        system
    }

    /// Nothing started yet; `duplicate_window` shortens JetStream's de-duplication.
    pub async fn prepare(duplicate_window: Option<Duration>) -> Self {
        Self::prepare_on(duplicate_window, TestSubtree::new().await).await
    }

    /// As [`TestSystem::prepare`], directory publishing under `subtree` (on another
    /// slapd, for a benchmark).
    pub async fn prepare_on(duplicate_window: Option<Duration>, subtree: TestSubtree) -> Self {
        init_telemetry();
        let namespace = hosted_testkit::namespace().await;
        let mut nats = hosted_testkit::nats_admin_config(&namespace);
        if let Some(window) = duplicate_window {
            nats.duplicate_window = window;
        }
        let staff = TestSubtree::staff(subtree.server.clone()).await;
        Self {
            namespace,
            callers: TestCallers::new(),
            subtree,
            staff,
            intake_database: TestDatabase::new(DatabaseOwner::Intake).await,
            directory_database: TestDatabase::new(DatabaseOwner::Directory).await,
            nats,
            intake: None,
            directory: None,
            entitlement: None,
            entitlement_database: TestDatabase::new(DatabaseOwner::Entitlement).await,
            cards: None,
            cards_database: TestDatabase::new(DatabaseOwner::Cards).await,
            await_grants: Duration::ZERO,
            ldap_url: None,
            metrics: Default::default(),
        }
    }

    pub fn intake_config(&self) -> IntakeConfig {
        IntakeConfig {
            common: hosted_platform::config::CommonConfig {
                metrics: self.metrics.clone(),
                ..hosted_testkit::common_config(
                    &self.intake_database,
                    hosted_testkit::as_service(Service::Intake, self.nats.clone()),
                    &self.callers,
                )
            },
            registry: RegistryConfig::default(),
            retention: Default::default(),
        }
    }

    pub fn directory_config(&self) -> DirectoryConfig {
        let server = &self.subtree.server;
        DirectoryConfig {
            common: hosted_platform::config::CommonConfig {
                metrics: self.metrics.clone(),
                ..hosted_testkit::common_config(
                    &self.directory_database,
                    hosted_testkit::as_service(Service::Directory, self.nats.clone()),
                    &self.callers,
                )
            },
            ldap: LdapConfig {
                url: self.ldap_url.clone().unwrap_or_else(|| server.url.clone()),
                starttls: server.starttls,
                ca_path: server.ca_path.clone(),
                bind_dn: server.directory_dn.clone(),
                bind_password: server.directory_password.clone(),
                base_dn: self.subtree.base_dn.clone(),
                eppn_scope: "univ-example.fr".to_owned(),
                ..LdapConfig::default()
            },
            entries: hosted_directory::config::EntriesConfig {
                sponsor_base_dn: self.staff.base_dn.clone(),
                ..Default::default()
            },
            publication: hosted_directory::config::PublicationConfig {
                await_grants: self.await_grants,
            },
            accounts: Default::default(),
        }
    }

    /// Adds a person of the university, who can sponsor stays: `uid=<login>` under
    /// [`TestSystem::staff`]. Returns the entry's DN.
    pub async fn add_staff(&self, login: &str) -> String {
        let dn = format!("uid={login},{}", self.staff.base_dn);
        let mut ldap = self.staff.server.connect().await;
        ldap.add(
            &dn,
            vec![
                ("objectClass", ["inetOrgPerson"].into()),
                ("uid", [login].into()),
                ("cn", [login].into()),
                ("sn", [login].into()),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        let _ = ldap.unbind().await;
        dn
    }

    pub async fn start_intake(&mut self) {
        let app = hosted_intake::Application::build(&self.intake_config())
            .await
            .unwrap();
        let metrics = app.metrics_addr();
        self.intake = Some(
            Running::start(app.local_addr(), |stop| app.run_until_stopped(stop))
                .with_metrics(metrics),
        );
    }

    pub async fn start_directory(&mut self) {
        let address = self.start_directory_unready().await;
        wait_until_serving(address).await;
    }

    /// Starts directory on `clock` and waits until it is ready.
    pub async fn start_directory_with_clock(&mut self, clock: hosted_platform::clock::Clock) {
        let app = hosted_directory::Application::build_with_clock(&self.directory_config(), clock)
            .await
            .unwrap();
        let address = app.local_addr();
        let metrics = app.metrics_addr();
        self.directory =
            Some(Running::start(address, |stop| app.run_until_stopped(stop)).with_metrics(metrics));
        wait_until_serving(address).await;
    }

    /// Starts directory without waiting for it to be ready.
    pub async fn start_directory_unready(&mut self) -> SocketAddr {
        let app = hosted_directory::Application::build(&self.directory_config())
            .await
            .unwrap();
        let address = app.local_addr();
        let metrics = app.metrics_addr();
        self.directory =
            Some(Running::start(address, |stop| app.run_until_stopped(stop)).with_metrics(metrics));
        address
    }

    /// Starts entitlement with the default policy and waits until it is ready.
    pub async fn start_entitlement(&mut self) {
        self.start_entitlement_with(default_policy(), hosted_platform::clock::Clock::default())
            .await;
    }

    /// Starts entitlement with `policy` on `clock` (a manual clock shows what happens
    /// on a later date) and waits until it is ready.
    pub async fn start_entitlement_with(
        &mut self,
        policy: hosted_entitlement::config::PolicyConfig,
        clock: hosted_platform::clock::Clock,
    ) {
        let app = hosted_entitlement::Application::build_with_clock(
            &self.entitlement_config(policy),
            clock,
        )
        .await
        .unwrap();
        let address = app.local_addr();
        let metrics = app.metrics_addr();
        self.entitlement =
            Some(Running::start(address, |stop| app.run_until_stopped(stop)).with_metrics(metrics));
        wait_until_serving(address).await;
    }

    pub fn entitlement_config(
        &self,
        policy: hosted_entitlement::config::PolicyConfig,
    ) -> hosted_entitlement::EntitlementConfig {
        hosted_entitlement::EntitlementConfig {
            common: hosted_platform::config::CommonConfig {
                metrics: self.metrics.clone(),
                ..hosted_testkit::common_config(
                    &self.entitlement_database,
                    hosted_testkit::as_service(Service::Entitlement, self.nats.clone()),
                    &self.callers,
                )
            },
            policy,
            check: Default::default(),
        }
    }

    pub async fn stop_entitlement(&mut self) {
        if let Some(entitlement) = self.entitlement.take() {
            entitlement.stop().await;
        }
    }

    pub async fn entitlement_client(
        &self,
    ) -> v1::entitlement_service_client::EntitlementServiceClient<tonic::transport::Channel> {
        let address = self.entitlement.as_ref().unwrap().address;
        v1::entitlement_service_client::EntitlementServiceClient::new(
            hosted_testkit::channel(address).await,
        )
    }

    /// Cards's settings for this test: an Erasmus PIC configured, so that cards get an
    /// ESCN.
    pub fn cards_config(&self) -> hosted_cards::CardsConfig {
        hosted_cards::CardsConfig {
            common: hosted_platform::config::CommonConfig {
                metrics: self.metrics.clone(),
                ..hosted_testkit::common_config(
                    &self.cards_database,
                    hosted_testkit::as_service(Service::Cards, self.nats.clone()),
                    &self.callers,
                )
            },
            cards: Default::default(),
            escn: hosted_cards::config::EscnConfig {
                pic: "999123456".to_owned(),
                generator: "001".to_owned(),
            },
        }
    }

    /// Starts cards with `config` on `clock` and waits until it is ready (its
    /// consumers attach to intake's and entitlement's streams, which must exist).
    pub async fn start_cards_with(
        &mut self,
        config: hosted_cards::CardsConfig,
        clock: hosted_platform::clock::Clock,
    ) {
        let app = hosted_cards::Application::build_with_clock(&config, clock)
            .await
            .unwrap();
        let address = app.local_addr();
        let metrics = app.metrics_addr();
        self.cards =
            Some(Running::start(address, |stop| app.run_until_stopped(stop)).with_metrics(metrics));
        wait_until_serving(address).await;
    }

    pub async fn start_cards(&mut self) {
        self.start_cards_with(
            self.cards_config(),
            hosted_platform::clock::Clock::default(),
        )
        .await;
    }

    pub async fn stop_cards(&mut self) {
        if let Some(cards) = self.cards.take() {
            cards.stop().await;
        }
    }

    pub async fn cards_client(
        &self,
    ) -> v1::cards_service_client::CardsServiceClient<tonic::transport::Channel> {
        let address = self.cards.as_ref().unwrap().address;
        v1::cards_service_client::CardsServiceClient::new(hosted_testkit::channel(address).await)
    }

    pub async fn stop_directory(&mut self) {
        if let Some(directory) = self.directory.take() {
            directory.stop().await;
        }
    }

    pub async fn stop(mut self) {
        self.stop_cards().await;
        self.stop_directory().await;
        self.stop_entitlement().await;
        if let Some(intake) = self.intake.take() {
            intake.stop().await;
        }
    }

    pub async fn intake_client(
        &self,
    ) -> v1::intake_service_client::IntakeServiceClient<tonic::transport::Channel> {
        let address = self.intake.as_ref().unwrap().address;
        v1::intake_service_client::IntakeServiceClient::new(hosted_testkit::channel(address).await)
    }

    pub async fn directory_client(
        &self,
    ) -> v1::directory_service_client::DirectoryServiceClient<tonic::transport::Channel> {
        let address = self.directory.as_ref().unwrap().address;
        v1::directory_service_client::DirectoryServiceClient::new(
            hosted_testkit::channel(address).await,
        )
    }

    pub fn as_role<T>(&self, role: Role, message: T) -> tonic::Request<T> {
        hosted_testkit::authorized(message, self.callers.token(role))
    }

    /// Creates an agreement through intake's API, as the legal directorate would.
    pub async fn create_agreement(&self, agreement: v1::AgreementInput) -> v1::Agreement {
        self.intake_client()
            .await
            .create_agreement(self.as_role(
                Role::Legal,
                v1::CreateAgreementRequest {
                    agreement: Some(agreement),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .agreement
            .unwrap()
    }

    /// Imports a cohort through intake's API, as DEVE would; one result per row.
    pub async fn import(&self, rows: Vec<v1::ImportRow>) -> Vec<v1::ImportResult> {
        self.intake_client()
            .await
            .import_stays(self.as_role(
                Role::Deve,
                v1::ImportStaysRequest {
                    rows,
                    dry_run: false,
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .results
    }

    /// Registers a learner through intake's API, as DEVE would.
    pub async fn register(&self, request: v1::RegisterStayRequest) -> v1::RegisterStayResponse {
        self.intake_client()
            .await
            .register_stay(self.as_role(Role::Deve, request))
            .await
            .unwrap()
            .into_inner()
    }
}

/// The repository's default policy.
pub fn default_policy() -> hosted_entitlement::config::PolicyConfig {
    hosted_entitlement::config::PolicyConfig {
        file: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policy/default.toml"),
    }
}

/// Where the end-to-end tests write every log line and span, when set: a directory in
/// which each test binary writes `<binary>-<pid>.jsonl`. The privacy test reads them.
pub const LOG_DIR_ENV: &str = "HOSTED_TEST_LOG_DIR";

/// Telemetry as the services run it (OpenTelemetry span contexts, W3C propagation),
/// once for the whole test binary: warnings only on the standard output, or, when
/// [`LOG_DIR_ENV`] names a directory, every log line to a file there.
fn init_telemetry() {
    static TELEMETRY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let guard = match std::env::var_os(LOG_DIR_ENV) {
            Some(dir) => Some(log_to_file(std::path::Path::new(&dir))),
            None => {
                let config = TelemetryConfig {
                    filter: "warn".to_owned(),
                    ..TelemetryConfig::default()
                };
                hosted_platform::telemetry::init("e2e", &config).ok()
            }
        };
        // Lives as long as the test binary.
        std::mem::forget(guard);
    });
}

/// Installs the services' tracing with a log layer that writes JSON lines to
/// `dir/<binary>-<pid>.jsonl`: at `RUST_LOG`'s level (`debug` when unset, every crate),
/// each line with its current span and the list of spans it is in, and a line for
/// each span when it opens and when it closes, so that every span's fields are
/// written even when nothing is logged inside it.
fn log_to_file(dir: &std::path::Path) -> hosted_platform::telemetry::TelemetryGuard {
    use tracing_subscriber::{
        Layer as _, fmt::format::FmtSpan, layer::SubscriberExt as _, util::SubscriberInitExt as _,
    };

    let config = TelemetryConfig {
        filter: "debug".to_owned(),
        format: hosted_platform::config::LogFormat::Json,
        ..TelemetryConfig::default()
    };
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "e2e".to_owned());
    let path = dir.join(format!("{binary}-{}.jsonl", std::process::id()));
    let file = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::File::create(&path))
        .unwrap_or_else(|error| panic!("{LOG_DIR_ENV}: cannot write {}: {error}", path.display()));
    let filter = hosted_platform::telemetry::configured_log_filter(&config)
        .unwrap_or_else(|error| panic!("RUST_LOG: {error}"));
    let (traces, guard) = hosted_platform::telemetry::trace_layer("e2e", &config).unwrap();
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
        // One write per line, unbuffered: nothing is lost when the binary exits.
        .with_writer(std::sync::Mutex::new(file))
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(traces)
        .with(logs)
        .try_init()
        .unwrap();
    guard
}

/// The server's overall health.
/// The health of one named part of a service (e.g. `hosted.directory.publisher`).
pub async fn component_health(
    address: SocketAddr,
    component: &str,
) -> tonic_health::pb::health_check_response::ServingStatus {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    HealthClient::new(hosted_testkit::channel(address).await)
        .check(HealthCheckRequest {
            service: component.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

pub async fn health(address: SocketAddr) -> tonic_health::pb::health_check_response::ServingStatus {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    HealthClient::new(hosted_testkit::channel(address).await)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// Waits until the server's overall health is SERVING.
pub async fn wait_until_serving(address: SocketAddr) {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let mut client = HealthClient::new(hosted_testkit::channel(address).await);
    for _ in 0..200 {
        let status = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|response| response.into_inner().status());
        if status
            .as_ref()
            .is_ok_and(|status| *status == ServingStatus::Serving)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{address} never became SERVING");
}

pub fn today_plus(days: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    (hosted_platform::clock::Clock::default().today() + time::Duration::days(days))
        .format(format)
        .unwrap()
}

/// An agreement for co-accredited students, from 30 days ago to 300 days ahead.
pub fn co_accredited_agreement(options: &[&str]) -> v1::AgreementInput {
    v1::AgreementInput {
        partner_name: "Université partenaire".to_owned(),
        populations: vec!["CO_ACCREDITED".to_owned()],
        start_date: today_plus(-30),
        end_date: today_plus(300),
        options: options.iter().map(|option| (*option).to_owned()).collect(),
        payer: v1::Payer::Nobody.into(),
        ..Default::default()
    }
}

/// A registration of a co-accredited student under `agreement_id`.
pub fn co_accredited(
    family_name: &str,
    given_names: &str,
    birth_date: &str,
    agreement_id: &str,
) -> v1::RegisterStayRequest {
    let mut request = registration(family_name, given_names, birth_date);
    let stay = request.stay.as_mut().unwrap();
    stay.population = "CO_ACCREDITED".to_owned();
    stay.agreement_id = agreement_id.to_owned();
    request
}

/// Distinct letter-only names, for many learners that must not look alike: 0 → "a",
/// 26 → "ba"…
pub fn name_for(mut n: usize) -> String {
    let mut name = Vec::new();
    loop {
        name.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    name.reverse();
    String::from_utf8(name).unwrap()
}

/// A cohort of `count` learners as import rows: IFSI stays as [`registration`] gives
/// them, names `<family><a, b, …>` and birth days from `first_year` on, so that no two
/// look alike; `each` adjusts a row's registration.
pub fn cohort(
    count: usize,
    family: &str,
    given: &str,
    first_year: usize,
    each: impl Fn(usize, &mut v1::RegisterStayRequest),
) -> Vec<v1::ImportRow> {
    (0..count)
        .map(|index| {
            let birth = format!(
                "{}-{:02}-{:02}",
                first_year + index / 336,
                index / 28 % 12 + 1,
                index % 28 + 1
            );
            let mut request = registration(&format!("{family}{}", name_for(index)), given, &birth);
            each(index, &mut request);
            v1::ImportRow {
                row_number: index as i64 + 1,
                person: request.person,
                stay: request.stay,
                confirm_new_person: false,
            }
        })
        .collect()
}

/// A registration for an IFSI stay that started ten days ago.
pub fn registration(
    family_name: &str,
    given_names: &str,
    birth_date: &str,
) -> v1::RegisterStayRequest {
    v1::RegisterStayRequest {
        person: Some(v1::PersonInput {
            family_name: family_name.to_owned(),
            given_names: given_names.to_owned(),
            birth_date: birth_date.to_owned(),
            email: "learner@example.org".to_owned(),
            ..Default::default()
        }),
        stay: Some(v1::StayInput {
            population: "IFSI".to_owned(),
            sponsor_unit: "IFSI-NORD".to_owned(),
            start_date: today_plus(-10),
            end_date: today_plus(200),
            ..Default::default()
        }),
        confirm_new_person: false,
    }
}
