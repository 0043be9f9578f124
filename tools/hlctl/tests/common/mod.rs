//! The services hlctl's tests run against: intake (and entitlement and cards when
//! asked) in this
//! process, each with a database of its own, on a NATS namespace of the test's own.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use hosted_entitlement::{EntitlementConfig, config::PolicyConfig};
use hosted_intake::{Application, IntakeConfig, config::RegistryConfig};
use hosted_platform::auth::Role;
use hosted_testkit::{TestCallers, TestDatabase};
use tokio::{sync::oneshot, task::JoinHandle};

/// Running services, stopped (last started first) by [`Services::stop`].
pub struct Services {
    pub namespace: hosted_contracts::subjects::Namespace,
    pub callers: TestCallers,
    pub intake_database: TestDatabase,
    /// `http://…` addresses, as hlctl takes them.
    pub intake: String,
    pub entitlement: Option<String>,
    pub cards: Option<String>,
    pub directory: Option<String>,
    /// Where directory publishes, when it runs.
    pub subtree: Option<hosted_testkit::TestSubtree>,
    running: Vec<(oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>)>,
}

fn serve<F>(
    run: impl FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
) -> (oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>)
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(Box::pin(async {
        let _ = stopped.await;
    })));
    (stop, task)
}

impl Services {
    /// Intake alone.
    pub async fn intake() -> Self {
        Self::start(false, false, false).await
    }

    /// Intake, and entitlement with the repository's default policy.
    pub async fn intake_and_entitlement() -> Self {
        Self::start(true, false, false).await
    }

    /// Intake, entitlement and cards.
    pub async fn all_but_directory() -> Self {
        Self::start(true, true, false).await
    }

    /// Intake, and directory publishing under an LDAP subtree of the test's own
    /// (accounts are written without waiting for grants).
    pub async fn intake_and_directory() -> Self {
        Self::start(false, false, true).await
    }

    async fn start(with_entitlement: bool, with_cards: bool, with_directory: bool) -> Self {
        let namespace = hosted_testkit::namespace().await;
        let callers = TestCallers::new();
        let intake_database = TestDatabase::new(hosted_testkit::DatabaseOwner::Intake).await;
        let app = Application::build(&IntakeConfig {
            common: hosted_testkit::common_config(
                &intake_database,
                hosted_testkit::nats_config(
                    hosted_contracts::subjects::Service::Intake,
                    &namespace,
                ),
                &callers,
            ),
            registry: RegistryConfig::default(),
            retention: Default::default(),
        })
        .await
        .unwrap();
        let intake = format!("http://{}", app.local_addr());
        let mut running = vec![serve(|stop| app.run_until_stopped(stop))];
        let mut entitlement = None;
        if with_entitlement {
            let app = hosted_entitlement::Application::build(&EntitlementConfig {
                common: hosted_testkit::common_config(
                    &TestDatabase::new(hosted_testkit::DatabaseOwner::Entitlement).await,
                    hosted_testkit::nats_config(
                        hosted_contracts::subjects::Service::Entitlement,
                        &namespace,
                    ),
                    &callers,
                ),
                policy: PolicyConfig {
                    file: default_policy(),
                },
                check: Default::default(),
            })
            .await
            .unwrap();
            entitlement = Some(format!("http://{}", app.local_addr()));
            running.push(serve(|stop| app.run_until_stopped(stop)));
        }
        let mut cards = None;
        if with_cards {
            let app = hosted_cards::Application::build(&hosted_cards::CardsConfig {
                common: hosted_testkit::common_config(
                    &TestDatabase::new(hosted_testkit::DatabaseOwner::Cards).await,
                    hosted_testkit::nats_config(
                        hosted_contracts::subjects::Service::Cards,
                        &namespace,
                    ),
                    &callers,
                ),
                cards: Default::default(),
                escn: hosted_cards::config::EscnConfig {
                    pic: "999123456".to_owned(),
                    generator: "001".to_owned(),
                },
            })
            .await
            .unwrap();
            cards = Some(format!("http://{}", app.local_addr()));
            running.push(serve(|stop| app.run_until_stopped(stop)));
        }
        let mut directory = None;
        let mut subtree = None;
        if with_directory {
            let tree = hosted_testkit::TestSubtree::new().await;
            let server = &tree.server;
            let app = hosted_directory::Application::build(&hosted_directory::DirectoryConfig {
                common: hosted_testkit::common_config(
                    &TestDatabase::new(hosted_testkit::DatabaseOwner::Directory).await,
                    hosted_testkit::nats_config(
                        hosted_contracts::subjects::Service::Directory,
                        &namespace,
                    ),
                    &callers,
                ),
                ldap: hosted_directory::config::LdapConfig {
                    url: server.url.clone(),
                    starttls: server.starttls,
                    ca_path: server.ca_path.clone(),
                    bind_dn: server.directory_dn.clone(),
                    bind_password: server.directory_password.clone(),
                    base_dn: tree.base_dn.clone(),
                    eppn_scope: "univ-example.fr".to_owned(),
                    ..Default::default()
                },
                entries: Default::default(),
                publication: hosted_directory::config::PublicationConfig {
                    await_grants: std::time::Duration::ZERO,
                },
                accounts: Default::default(),
            })
            .await
            .unwrap();
            directory = Some(format!("http://{}", app.local_addr()));
            running.push(serve(|stop| app.run_until_stopped(stop)));
            subtree = Some(tree);
        }
        Self {
            namespace,
            callers,
            intake_database,
            intake,
            entitlement,
            cards,
            directory,
            subtree,
            running,
        }
    }

    /// The token of the test caller with `role`.
    pub fn token(&self, role: Role) -> String {
        self.callers.token(role).to_owned()
    }

    /// Stops every service gracefully, the last started first.
    pub async fn stop(mut self) {
        while let Some((stop, task)) = self.running.pop() {
            let _ = stop.send(());
            task.await.unwrap().unwrap();
        }
    }
}

/// The repository's default policy.
pub fn default_policy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policy/default.toml")
}

/// Today plus `offset` days, where the university is.
pub fn day(offset: i64) -> String {
    (hosted_platform::clock::Clock::default().today() + time::Duration::days(offset)).to_string()
}
