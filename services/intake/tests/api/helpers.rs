use std::net::SocketAddr;

use hosted_contracts::{subjects::Namespace, v1};
use hosted_intake::{Application, IntakeConfig, config::RegistryConfig};
use hosted_platform::config::NatsConfig;
use hosted_testkit::{TestCallers, TestDatabase};
use tokio::{sync::oneshot, task::JoinHandle};

/// A running intake on an ephemeral port with its own database and namespace.
pub struct TestIntake {
    pub address: SocketAddr,
    pub database: TestDatabase,
    pub namespace: Namespace,
    pub callers: TestCallers,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub fn config(database: &TestDatabase, nats: NatsConfig, callers: &TestCallers) -> IntakeConfig {
    IntakeConfig {
        common: hosted_testkit::common_config(database, nats, callers),
        registry: RegistryConfig::default(),
        retention: Default::default(),
    }
}

impl TestIntake {
    pub async fn spawn() -> Self {
        let database = TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
        let namespace = hosted_testkit::namespace().await;
        let callers = TestCallers::new();
        let config = config(
            &database,
            hosted_testkit::nats_config(hosted_contracts::subjects::Service::Intake, &namespace),
            &callers,
        );
        Self::spawn_with(config, database, namespace, callers).await
    }

    pub async fn spawn_with(
        config: IntakeConfig,
        database: TestDatabase,
        namespace: Namespace,
        callers: TestCallers,
    ) -> Self {
        let app = Application::build(&config).await.unwrap();
        let address = app.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            address,
            database,
            namespace,
            callers,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn client(
        &self,
    ) -> v1::intake_service_client::IntakeServiceClient<tonic::transport::Channel> {
        v1::intake_service_client::IntakeServiceClient::new(
            hosted_testkit::channel(self.address).await,
        )
    }

    pub fn deve<T>(&self, message: T) -> tonic::Request<T> {
        hosted_testkit::authorized(
            message,
            self.callers.token(hosted_platform::auth::Role::Deve),
        )
    }

    /// Stops gracefully and waits until it has.
    pub async fn stop(mut self) -> (TestDatabase, Namespace, TestCallers) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        (
            self.database.clone(),
            self.namespace.clone(),
            self.callers.clone(),
        )
    }

    pub fn as_role<T>(&self, role: hosted_platform::auth::Role, message: T) -> tonic::Request<T> {
        hosted_testkit::authorized(message, self.callers.token(role))
    }

    /// The subjects of intake's stream so far, waiting for at least `count`.
    pub async fn subjects(&self, count: usize) -> Vec<String> {
        let stream = self
            .namespace
            .stream(hosted_contracts::subjects::Service::Intake);
        crate::register::wait_for_messages(&stream, count)
            .await
            .into_iter()
            .map(|message| message.subject.to_string())
            .collect()
    }

    pub fn subject(&self, fact: hosted_contracts::subjects::Fact) -> String {
        self.namespace.subject(fact)
    }
}

pub fn day(offset: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    (hosted_platform::clock::Clock::default().today() + time::Duration::days(offset))
        .format(format)
        .unwrap()
}

pub fn person(family_name: &str, given_names: &str, birth_date: &str) -> v1::PersonInput {
    v1::PersonInput {
        family_name: family_name.to_owned(),
        given_names: given_names.to_owned(),
        birth_date: birth_date.to_owned(),
        email: "learner@example.org".to_owned(),
        ..Default::default()
    }
}

pub fn stay(population: &str) -> v1::StayInput {
    let today = hosted_platform::clock::Clock::default().today();
    let format = time::macros::format_description!("[year]-[month]-[day]");
    v1::StayInput {
        population: population.to_owned(),
        sponsor_unit: "IFSI-NORD".to_owned(),
        start_date: (today - time::Duration::days(10)).format(format).unwrap(),
        end_date: (today + time::Duration::days(200)).format(format).unwrap(),
        ..Default::default()
    }
}

pub fn registration(family_name: &str, given_names: &str) -> v1::RegisterStayRequest {
    v1::RegisterStayRequest {
        person: Some(person(family_name, given_names, "2001-02-03")),
        stay: Some(stay("IFSI")),
        confirm_new_person: false,
    }
}

/// The fields an INVALID_ARGUMENT names in its details, in order.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|bad_request| {
            bad_request
                .field_violations
                .iter()
                .map(|violation| violation.field.clone())
                .collect()
        })
        .unwrap_or_default()
}
