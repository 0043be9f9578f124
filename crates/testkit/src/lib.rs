//! Test harness for the hosted-learners services, used by every integration test.
//!
//! Tests share one PostgreSQL, one NATS and one slapd (`dev/deps` starts them) and stay
//! out of each other's way: each gets its own database, its own subject namespace
//! (hence its own streams) and its own LDAP subtree. What earlier runs left behind is
//! removed once it is an hour old, so the servers do not fill up.
//!
//! Where the servers are comes from `HOSTED_TEST_*` variables (`dev/deps env`), with
//! the local defaults. Every service under test connects to NATS as its own user
//! ([`nats_config`], [`as_service`]), with that user's permissions; a test that
//! looks into streams itself uses the admin user ([`jetstream`]).
#![allow(clippy::unwrap_used, clippy::print_stdout, unreachable_pub)]

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use hosted_contracts::subjects::{Namespace, Service};
use hosted_platform::{
    auth::{Role, hash_token},
    config::{
        AuthConfig, CallerConfig, CommonConfig, DatabaseConfig, GrpcConfig, NatsConfig,
        TelemetryConfig,
    },
};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use sqlx::{Connection, PgConnection};
use tokio::sync::OnceCell;

const STALE_AFTER: Duration = Duration::from_secs(3600);

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn server_database_url() -> String {
    env_or(
        "HOSTED_TEST_DATABASE_URL",
        "postgres://postgres:postgres@127.0.0.1:5432/postgres",
    )
}

/// `dev/deps`'s state directory, where its defaults put the certificates and the NATS
/// users' passwords.
fn state_dir() -> PathBuf {
    std::env::var_os("HOSTED_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".local/state/hosted-learners")
        })
}

/// The tests' NATS: `dev/deps`'s own nats-server, TLS only.
pub fn nats_url() -> String {
    env_or("HOSTED_TEST_NATS_URL", "tls://127.0.0.1:4223")
}

/// The tests' NATS server's address, for a [`TcpProxy`] in front of it.
pub fn nats_address() -> SocketAddr {
    let url = nats_url();
    let (_, address) = url.split_once("://").unwrap_or(("", &url));
    address.parse().unwrap_or_else(|error| {
        panic!("the tests' NATS url {url} is not scheme://ip:port ({error})")
    })
}

/// The tests' NATS URL with `address` (a proxy's) in place of the server's, the scheme
/// kept: TLS goes through the proxy, and the server's certificate names 127.0.0.1.
pub fn nats_url_via(address: SocketAddr) -> String {
    let url = nats_url();
    let scheme = url.split_once("://").map_or("nats", |(scheme, _)| scheme);
    format!("{scheme}://{address}")
}

/// The CA that signed the tests' NATS server certificate.
pub fn nats_ca_path() -> PathBuf {
    std::env::var_os("HOSTED_TEST_NATS_CA")
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir().join("tls/ca.pem"))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// A short unique token: creation time (for clean-up) and randomness.
fn unique_token() -> String {
    let random = uuid::Uuid::now_v7().simple().to_string();
    format!("{}{}", unix_now(), &random[24..])
}

/// When a name made by [`unique_token`] after `prefix` was made.
fn created_at(name: &str, prefix: &str) -> Option<u64> {
    let rest = name.strip_prefix(prefix)?;
    rest.get(..10)?.parse().ok()
}

fn is_stale(name: &str, prefix: &str) -> bool {
    created_at(name, prefix).is_some_and(|at| unix_now().saturating_sub(at) > STALE_AFTER.as_secs())
}

// ---------------------------------------------------------------- PostgreSQL

const DATABASE_PREFIX: &str = "hl_test_";

/// The service a test database belongs to: the service under test connects as that
/// service's own role (`hosted_test_<service>`), which owns the database and nothing
/// else, as in production (issue 14, point 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatabaseOwner {
    Intake,
    Entitlement,
    Cards,
    Directory,
}

impl DatabaseOwner {
    pub const ALL: [Self; 4] = [
        Self::Intake,
        Self::Entitlement,
        Self::Cards,
        Self::Directory,
    ];

    /// The PostgreSQL role the service connects as in tests. Not the `hosted_<service>`
    /// of `dev/up`, whose passwords are its own.
    pub fn role(self) -> &'static str {
        match self {
            Self::Intake => "hosted_test_intake",
            Self::Entitlement => "hosted_test_entitlement",
            Self::Cards => "hosted_test_cards",
            Self::Directory => "hosted_test_directory",
        }
    }

    /// Tests only: a fixed password, known to every test process.
    pub fn password(self) -> String {
        format!("{}-password", self.role())
    }

    fn index(self) -> usize {
        match self {
            Self::Intake => 0,
            Self::Entitlement => 1,
            Self::Cards => 2,
            Self::Directory => 3,
        }
    }
}

/// A database of the test's own, created by the harness as the superuser of
/// `HOSTED_TEST_DATABASE_URL`, owned by its service's role; `CONNECT` is the owner's
/// only. `url` connects as that role.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub name: String,
    pub owner: DatabaseOwner,
    pub url: String,
}

static DATABASE_SWEEP: OnceCell<()> = OnceCell::const_new();
static ROLES: [OnceCell<()>; 4] = [const { OnceCell::const_new() }; 4];

/// `url` (a superuser's) with another user, password and database; its host, port
/// and query (`sslmode`…) kept.
pub fn database_url_as(url: &str, user: &str, password: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let (host, path) = host_and_path.split_once('/').unwrap_or((host_and_path, ""));
    let query = path.split_once('?').map(|(_, query)| query);
    let mut built = format!("{scheme}://{user}:{password}@{host}/{database}");
    if let Some(query) = query {
        built.push('?');
        built.push_str(query);
    }
    built
}

/// A name for a database a test makes itself, swept as the harness's own are when a
/// test leaves it behind.
pub async fn unused_database_name() -> String {
    DATABASE_SWEEP.get_or_init(sweep_databases).await;
    format!("{DATABASE_PREFIX}{}", unique_token())
}

impl TestDatabase {
    /// A new database owned by `owner`'s role (made first, once, when missing).
    pub async fn new(owner: DatabaseOwner) -> Self {
        DATABASE_SWEEP.get_or_init(sweep_databases).await;
        ROLES[owner.index()]
            .get_or_init(|| ensure_role(owner))
            .await;
        let name = unused_database_name().await;
        create_database(&name, owner, false).await;
        Self {
            url: database_url_as(
                &server_database_url(),
                owner.role(),
                &owner.password(),
                &name,
            ),
            name,
            owner,
        }
    }

    /// Drops the database and makes an empty one of the same name and owner, as an
    /// administrator does after a database is lost (the service stopped first): the
    /// service, which may not create databases, then starts on an empty one.
    pub async fn recreate_empty(&self) {
        create_database(&self.name, self.owner, true).await;
    }

    /// The service's settings: its role's URL; the database exists already.
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: self.url.clone(),
            max_connections: 5,
            create_if_missing: false,
        }
    }

    /// A connection as the owning role.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }
}

/// Creates database `name` owned by `owner`'s role, `CONNECT` its owner's only, as the
/// superuser; drops an existing one of that name first when `replace`.
async fn create_database(name: &str, owner: DatabaseOwner, replace: bool) {
    let mut admin = PgConnection::connect(&server_database_url())
        .await
        .unwrap_or_else(|error| panic!("PostgreSQL ({error}); run dev/deps"));
    let mut statements = Vec::new();
    if replace {
        statements.push(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
    }
    statements.extend([
        format!("CREATE DATABASE \"{name}\" OWNER \"{}\"", owner.role()),
        format!("REVOKE ALL ON DATABASE \"{name}\" FROM PUBLIC"),
        format!(
            "GRANT CONNECT ON DATABASE \"{name}\" TO \"{}\"",
            owner.role()
        ),
    ]);
    for statement in statements {
        sqlx::query(&statement).execute(&mut admin).await.unwrap();
    }
    let _ = admin.close().await;
}

/// Creates `owner`'s role when missing: LOGIN, its password, and nothing more (not a
/// superuser, no database or role creation). Test processes running at once may race
/// to create it: the loser finds it made.
async fn ensure_role(owner: DatabaseOwner) {
    let mut admin = PgConnection::connect(&server_database_url())
        .await
        .unwrap_or_else(|error| panic!("PostgreSQL ({error}); run dev/deps"));
    let role = owner.role();
    let password = owner.password().replace('\'', "''");
    let statement = format!(
        "DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'
                    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$"
    );
    sqlx::query(&statement).execute(&mut admin).await.unwrap();
    let _ = admin.close().await;
}

async fn sweep_databases() {
    let Ok(mut admin) = PgConnection::connect(&server_database_url()).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'hl\\_test\\_%'")
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
    for name in names
        .into_iter()
        .filter(|name| is_stale(name, DATABASE_PREFIX))
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }
}

/// The common sections of a service under test: an ephemeral port, the test's
/// database, NATS settings and callers.
pub fn common_config(
    database: &TestDatabase,
    nats: NatsConfig,
    callers: &TestCallers,
) -> CommonConfig {
    CommonConfig {
        grpc: GrpcConfig::ephemeral(),
        database: database.config(),
        nats,
        telemetry: TelemetryConfig::default(),
        auth: callers.auth.clone(),
        clock: hosted_platform::config::ClockConfig::default(),
        metrics: hosted_platform::config::MetricsConfig::default(),
    }
}

// ---------------------------------------------------------------------- NATS

const NAMESPACE_PREFIX: &str = "t";

/// A subject namespace of the test's own: its streams are `T<…>_INTAKE` and so on.
pub async fn namespace() -> Namespace {
    NATS_SWEEP.get_or_init(sweep_streams).await;
    Namespace::new(format!("{NAMESPACE_PREFIX}{}", unique_token())).unwrap()
}

static NATS_SWEEP: OnceCell<()> = OnceCell::const_new();

async fn sweep_streams() {
    use futures::TryStreamExt;
    let Ok(client) = connect_nats(&nats_admin_config(&Namespace::default())).await else {
        return;
    };
    let jetstream = async_nats::jetstream::new(client);
    let names: Vec<String> = jetstream
        .stream_names()
        .try_collect()
        .await
        .unwrap_or_default();
    for name in names {
        if is_stale(&name.to_ascii_lowercase(), NAMESPACE_PREFIX) {
            let _ = jetstream.delete_stream(&name).await;
        }
    }
}

/// The NATS user for tests and operators, allowed everything: for a test that
/// inspects or changes streams itself, never for a service under test.
pub const NATS_ADMIN: &str = "admin";

/// The password `dev/deps` generated for NATS user `user` (`<user>.password` in
/// `$HOSTED_TEST_NATS_USERS`).
pub fn nats_password(user: &str) -> String {
    let dir = std::env::var_os("HOSTED_TEST_NATS_USERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir().join("nats-server/users"));
    let file = dir.join(format!("{user}.password"));
    std::fs::read_to_string(&file)
        .unwrap_or_else(|error| {
            panic!(
                "NATS password of {user} in {} ({error}); run dev/deps and eval \"$(dev/deps env)\"",
                file.display()
            )
        })
        .trim_end()
        .to_owned()
}

/// `config` connecting as NATS user `user`, over TLS to the tests' server.
pub fn as_nats_user(user: &str, config: NatsConfig) -> NatsConfig {
    NatsConfig {
        url: nats_url(),
        user: user.to_owned(),
        password: nats_password(user),
        ca_path: Some(nats_ca_path()),
        ..config
    }
}

/// `config` connecting as `service`'s own NATS user, with that service's permissions:
/// what a service under test is given.
pub fn as_service(service: Service, config: NatsConfig) -> NatsConfig {
    as_nats_user(service.as_str(), config)
}

/// NATS settings of `service` under test in a test namespace: its own user, TLS, and
/// short timings so retries show quickly.
pub fn nats_config(service: Service, namespace: &Namespace) -> NatsConfig {
    as_service(service, nats_settings(namespace))
}

/// The environment that makes a service's process connect as [`nats_config`] says:
/// `<SERVICE>__NATS__URL`, `__USER`, `__PASSWORD`, `__CA_PATH` and `__NAMESPACE`.
pub fn nats_env(service: Service, namespace: &Namespace) -> Vec<(String, String)> {
    let config = nats_config(service, namespace);
    let prefix = format!("{}__NATS__", service.as_str().to_ascii_uppercase());
    let ca_path = config
        .ca_path
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    [
        ("URL", config.url),
        ("USER", config.user),
        ("PASSWORD", config.password),
        ("CA_PATH", ca_path),
        ("NAMESPACE", config.namespace),
    ]
    .into_iter()
    .map(|(field, value)| (format!("{prefix}{field}"), value))
    .collect()
}

/// NATS settings as the admin user, allowed everything (tests that inspect streams).
pub fn nats_admin_config(namespace: &Namespace) -> NatsConfig {
    as_nats_user(NATS_ADMIN, nats_settings(namespace))
}

fn nats_settings(namespace: &Namespace) -> NatsConfig {
    NatsConfig {
        namespace: namespace.as_str().to_owned(),
        ack_wait: Duration::from_secs(2),
        ..NatsConfig::default()
    }
}

/// Connects as `config` says, once: a refusal is an error, not a retry.
pub async fn connect_nats(
    config: &NatsConfig,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    hosted_platform::nats::connect_options(config, "hosted-tests")
        .connect(config.url.as_str())
        .await
}

/// A JetStream context as the admin user.
pub async fn jetstream() -> async_nats::jetstream::Context {
    let client = connect_nats(&nats_admin_config(&Namespace::default()))
        .await
        .unwrap_or_else(|error| {
            panic!(
                "NATS at {} as {NATS_ADMIN} ({error}); run dev/deps",
                nats_url()
            )
        });
    async_nats::jetstream::new(client)
}

/// Every message now in a stream, in order.
pub async fn stream_messages(stream: &str) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let jetstream = jetstream().await;
    let mut stream = jetstream.get_stream(stream).await.unwrap();
    let info = stream.info().await.unwrap().clone();
    let mut messages = Vec::new();
    for sequence in info.state.first_sequence..=info.state.last_sequence {
        if info.state.messages == 0 {
            break;
        }
        if let Ok(message) = stream.get_raw_message(sequence).await {
            messages.push(message);
        }
    }
    messages
}

// ---------------------------------------------------------------------- LDAP

/// Where `dev/deps` keeps its state when `HOSTED_STATE_DIR` is not set.
fn default_state_dir() -> String {
    format!(
        "{}/.local/state/hosted-learners",
        std::env::var("HOME").unwrap_or_default()
    )
}

/// Where the test slapd is and how to bind to it: as the root DN for the tests' own
/// set-up, assertions and clean-up, and as the directory service's own identity,
/// which the slapd's ACLs let write under `ou=people` only, over TLS only.
#[derive(Debug, Clone)]
pub struct LdapServer {
    pub url: String,
    /// Whether connections are upgraded with StartTLS (every one the tests make).
    pub starttls: bool,
    /// The CA that signed slapd's certificate.
    pub ca_path: String,
    /// The root DN, for the harness only.
    pub bind_dn: String,
    pub bind_password: String,
    /// The directory service's identity, for directory under test.
    pub directory_dn: String,
    pub directory_password: String,
    pub suffix: String,
}

impl LdapServer {
    /// The tests' slapd, from `dev/deps env`'s variables.
    pub fn from_env() -> Self {
        let state_dir = std::env::var("HOSTED_STATE_DIR").unwrap_or_else(|_| default_state_dir());
        let tls_dir = env_or("HOSTED_TEST_TLS_DIR", &format!("{state_dir}/tls"));
        let suffix = env_or("HOSTED_TEST_LDAP_SUFFIX", "dc=univ-example,dc=fr");
        let password_path = env_or(
            "HOSTED_TEST_LDAP_DIRECTORY_PASSWORD_PATH",
            &format!("{state_dir}/secrets/ldap-directory.password"),
        );
        Self {
            url: env_or("HOSTED_TEST_LDAP_URL", "ldap://127.0.0.1:3389"),
            starttls: env_or("HOSTED_TEST_LDAP_STARTTLS", "true") == "true",
            ca_path: env_or("HOSTED_TEST_LDAP_CA_PATH", &format!("{tls_dir}/ca.pem")),
            bind_dn: env_or("HOSTED_TEST_LDAP_BIND_DN", &format!("cn=admin,{suffix}")),
            bind_password: env_or("HOSTED_TEST_LDAP_BIND_PASSWORD", "secret"),
            directory_dn: env_or(
                "HOSTED_TEST_LDAP_DIRECTORY_DN",
                &format!("cn=hosted-directory,ou=services,{suffix}"),
            ),
            directory_password: read_secret(&password_path),
            suffix,
        }
    }

    /// A slapd that `dev/deps start` runs with `HOSTED_STATE_DIR=state_dir` and
    /// `HOSTED_LDAP_PORT=port` (a benchmark's second instance): its own CA and its
    /// own password for the directory service, the tests' suffix and root DN.
    pub fn local(port: u16, state_dir: &str) -> Self {
        Self {
            url: format!("ldap://127.0.0.1:{port}"),
            ca_path: format!("{state_dir}/tls/ca.pem"),
            directory_password: read_secret(&format!(
                "{state_dir}/secrets/ldap-directory.password"
            )),
            ..Self::from_env()
        }
    }

    /// A connection, over StartTLS when the server is so configured, not bound.
    pub async fn open(&self, starttls: bool) -> Result<ldap3::Ldap, ldap3::LdapError> {
        let mut settings = LdapConnSettings::new();
        if starttls {
            settings = settings
                .set_starttls(true)
                .set_config(ldap_tls_config(&self.ca_path));
        }
        let (connection, ldap) = LdapConnAsync::with_settings(settings, &self.url).await?;
        ldap3::drive!(connection);
        Ok(ldap)
    }

    /// A connection bound as the root DN (the harness's own work).
    pub async fn connect(&self) -> ldap3::Ldap {
        let mut ldap = self
            .open(self.starttls)
            .await
            .unwrap_or_else(|error| panic!("slapd at {} ({error}); run dev/deps", self.url));
        ldap.simple_bind(&self.bind_dn, &self.bind_password)
            .await
            .unwrap()
            .success()
            .unwrap();
        ldap
    }

    /// A connection bound as the directory service's identity, over StartTLS.
    pub async fn connect_as_directory(&self) -> ldap3::Ldap {
        let mut ldap = self
            .open(true)
            .await
            .unwrap_or_else(|error| panic!("slapd at {} ({error}); run dev/deps", self.url));
        ldap.simple_bind(&self.directory_dn, &self.directory_password)
            .await
            .unwrap()
            .success()
            .unwrap_or_else(|error| {
                panic!(
                    "binding as {} ({error}); dev/deps start makes its password file",
                    self.directory_dn
                )
            });
        ldap
    }
}

/// A secret file's content, its trailing newline trimmed; empty when unreadable
/// (the bind that needs it then fails, naming the identity).
fn read_secret(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|secret| secret.trim_end_matches(['\r', '\n']).to_owned())
        .unwrap_or_default()
}

/// TLS trusting only the CA at `ca_path`, as directory's own.
pub fn ldap_tls_config(ca_path: &str) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_path)
        .unwrap_or_else(|error| panic!("{ca_path} ({error}); run dev/deps"))
    {
        roots.add(certificate.unwrap()).unwrap();
    }
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

const SUBTREE_PREFIX: &str = "t";

/// Where the directory service's ACLs let it write: tests' managed bases live here.
pub const MANAGED_PARENT: &str = "ou=people";
/// Where the university's people are, which the directory service only reads:
/// tests' sponsor bases live here.
pub const STAFF_PARENT: &str = "ou=staff";

/// An `ou` of the test's own, to use as the managed base (under `ou=people`) or as
/// the sponsors' base (under `ou=staff`).
#[derive(Debug, Clone)]
pub struct TestSubtree {
    pub server: LdapServer,
    pub base_dn: String,
}

static LDAP_SWEEP: OnceCell<()> = OnceCell::const_new();

impl TestSubtree {
    /// A managed base of the test's own, under `ou=people`.
    pub async fn new() -> Self {
        let server = LdapServer::from_env();
        LDAP_SWEEP
            .get_or_init(|| sweep_subtrees(server.clone()))
            .await;
        Self::on(server).await
    }

    /// A managed base on another slapd than the tests' (a benchmark's).
    pub async fn on(server: LdapServer) -> Self {
        Self::under(server, MANAGED_PARENT).await
    }

    /// A sponsors' base of the test's own, under `ou=staff`.
    pub async fn staff(server: LdapServer) -> Self {
        Self::under(server, STAFF_PARENT).await
    }

    async fn under(server: LdapServer, parent_rdn: &str) -> Self {
        let ou = format!("{SUBTREE_PREFIX}{}", unique_token());
        let parent = format!("{parent_rdn},{}", server.suffix);
        let base_dn = format!("ou={ou},{parent}");
        let mut ldap = server.connect().await;
        // dev/deps adds the parents; a directory older than them lacks them.
        let parent_ou = parent_rdn.trim_start_matches("ou=");
        let _ = ldap
            .add(
                &parent,
                vec![
                    ("objectClass", ["organizationalUnit"].into()),
                    ("ou", [parent_ou].into()),
                ],
            )
            .await;
        ldap.add(
            &base_dn,
            vec![
                ("objectClass", ["organizationalUnit"].into()),
                ("ou", [ou.as_str()].into()),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        let _ = ldap.unbind().await;
        Self { server, base_dn }
    }

    /// Every entry directly under the base, as (dn, attributes).
    pub async fn entries(&self) -> Vec<SearchEntry> {
        let mut ldap = self.server.connect().await;
        let (entries, _) = ldap
            .search(
                &self.base_dn,
                Scope::OneLevel,
                "(objectClass=*)",
                vec!["*", "+"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        let _ = ldap.unbind().await;
        entries.into_iter().map(SearchEntry::construct).collect()
    }

    /// Searches the subtree with `filter`.
    pub async fn search(&self, filter: &str) -> Vec<SearchEntry> {
        let mut ldap = self.server.connect().await;
        let (entries, _) = ldap
            .search(&self.base_dn, Scope::Subtree, filter, vec!["*", "+"])
            .await
            .unwrap()
            .success()
            .unwrap();
        let _ = ldap.unbind().await;
        entries.into_iter().map(SearchEntry::construct).collect()
    }

    /// Waits until the subtree holds `count` entries, or panics after `limit`.
    pub async fn wait_for_entries(&self, count: usize, limit: Duration) -> Vec<SearchEntry> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let entries = self.entries().await;
            if entries.len() >= count || tokio::time::Instant::now() > deadline {
                assert_eq!(entries.len(), count, "entries under {}", self.base_dn);
                return entries;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn sweep_subtrees(server: LdapServer) {
    let Ok(mut ldap) = server.open(server.starttls).await else {
        return;
    };
    if ldap
        .simple_bind(&server.bind_dn, &server.bind_password)
        .await
        .is_err()
    {
        return;
    }
    for parent in [
        format!("{MANAGED_PARENT},{}", server.suffix),
        format!("{STAFF_PARENT},{}", server.suffix),
    ] {
        let Ok(result) = ldap
            .search(
                &parent,
                Scope::OneLevel,
                "(objectClass=organizationalUnit)",
                vec!["ou"],
            )
            .await
        else {
            continue;
        };
        let Ok((entries, _)) = result.success() else {
            continue;
        };
        for entry in entries.into_iter().map(SearchEntry::construct) {
            let ou = entry
                .attrs
                .get("ou")
                .and_then(|values| values.first())
                .cloned()
                .unwrap_or_default();
            if is_stale(&ou, SUBTREE_PREFIX) {
                delete_subtree(&mut ldap, &entry.dn).await;
            }
        }
    }
    let _ = ldap.unbind().await;
}

async fn delete_subtree(ldap: &mut ldap3::Ldap, dn: &str) {
    let Ok(result) = ldap
        .search(dn, Scope::Subtree, "(objectClass=*)", vec!["1.1"])
        .await
    else {
        return;
    };
    let Ok((entries, _)) = result.success() else {
        return;
    };
    let mut dns: Vec<String> = entries
        .into_iter()
        .map(|entry| SearchEntry::construct(entry).dn)
        .collect();
    // Children before parents.
    dns.sort_by_key(|dn| std::cmp::Reverse(dn.len()));
    for dn in dns {
        let _ = ldap.delete(&dn).await;
    }
}

// ---------------------------------------------------------------------- auth

/// A caller with the given roles; returns its settings and its bearer token.
pub fn caller(name: &str, roles: &[Role]) -> (String, CallerConfig, String) {
    let token = format!("{name}-{}", uuid::Uuid::now_v7());
    let config = CallerConfig {
        token_sha256: hash_token(&token),
        roles: roles.iter().map(|role| role.as_str().to_owned()).collect(),
        certificate_subject: String::new(),
    };
    (name.to_owned(), config, token)
}

/// Callers for tests: `all` has every role; one caller per role otherwise.
#[derive(Debug, Clone)]
pub struct TestCallers {
    pub auth: AuthConfig,
    pub all_roles_token: String,
    pub tokens: Vec<(Role, String)>,
}

impl TestCallers {
    pub fn new() -> Self {
        let mut auth = AuthConfig::default();
        let (name, config, all_roles_token) = caller("all", &Role::ALL);
        auth.callers.insert(name, config);
        let mut tokens = Vec::new();
        for role in Role::ALL {
            let (name, config, token) = caller(role.as_str(), &[role]);
            auth.callers.insert(name, config);
            tokens.push((role, token));
        }
        Self {
            auth,
            all_roles_token,
            tokens,
        }
    }

    pub fn token(&self, role: Role) -> &str {
        self.tokens
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, token)| token.as_str())
            .unwrap()
    }
}

impl Default for TestCallers {
    fn default() -> Self {
        Self::new()
    }
}

/// A request with a bearer credential.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        hosted_contracts::headers::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    request
}

// ----------------------------------------------------------------------- TLS

/// A certificate authority of the test's own, made by the harness, and the
/// certificates it signs: a server certificate for `127.0.0.1` and `localhost`, and
/// client certificates whose subject is `CN=<name>`. Files go to a directory of the
/// authority's own under the system's temporary directory.
#[derive(Debug)]
pub struct TestPki {
    pub dir: std::path::PathBuf,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
    ca_pem: String,
}

const PKI_PREFIX: &str = "hosted-test-pki-";

impl TestPki {
    pub fn new() -> Self {
        sweep_pki_directories();
        let dir = std::env::temp_dir().join(format!("{PKI_PREFIX}{}", unique_token()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name = rcgen::DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hosted test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_pem = ca_params.clone().self_signed(&ca_key).unwrap().pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        Self {
            dir,
            ca_params,
            ca_key,
            ca_pem,
        }
    }

    pub fn ca_path(&self) -> std::path::PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    fn sign(&self, params: rcgen::CertificateParams) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = self.ca_params.clone().self_signed(&self.ca_key).unwrap();
        let certificate = params.signed_by(&key, &issuer, &self.ca_key).unwrap();
        (certificate.pem(), key.serialize_pem())
    }

    /// A server certificate for `127.0.0.1` and `localhost` with subject
    /// `CN=<common_name>`, as (certificate PEM, key PEM).
    pub fn server_pem(&self, common_name: &str) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// Writes a server certificate and its key under the authority's directory, as
    /// (certificate path, key path).
    pub fn server_files(&self, common_name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let (certificate, key) = self.server_pem(common_name);
        let cert_path = self.dir.join(format!("{common_name}.pem"));
        let key_path = self.dir.join(format!("{common_name}.key"));
        std::fs::write(&cert_path, certificate).unwrap();
        std::fs::write(&key_path, key).unwrap();
        (cert_path, key_path)
    }

    /// A client certificate with subject `CN=<common_name>` (and `O=<organization>`
    /// when given), as a tonic identity.
    pub fn client_identity(
        &self,
        common_name: &str,
        organization: Option<&str>,
    ) -> tonic::transport::Identity {
        let (certificate, key) = self.client_pem(common_name, organization);
        tonic::transport::Identity::from_pem(certificate, key)
    }

    /// As [`TestPki::client_identity`], written under the authority's directory, as
    /// (certificate path, key path).
    pub fn client_files(
        &self,
        common_name: &str,
        organization: Option<&str>,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let (certificate, key) = self.client_pem(common_name, organization);
        let cert_path = self.dir.join(format!("client-{common_name}.pem"));
        let key_path = self.dir.join(format!("client-{common_name}.key"));
        std::fs::write(&cert_path, certificate).unwrap();
        std::fs::write(&key_path, key).unwrap();
        (cert_path, key_path)
    }

    fn client_pem(&self, common_name: &str, organization: Option<&str>) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(organization) = organization {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, organization);
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// `[grpc.tls]` with a fresh server certificate; mutual TLS with this authority
    /// as the clients' CA.
    pub fn tls_config(&self) -> hosted_platform::config::TlsConfig {
        let (cert_path, key_path) = self.server_files("server");
        hosted_platform::config::TlsConfig {
            cert_path: Some(cert_path),
            key_path: Some(key_path),
            client_ca_path: Some(self.ca_path()),
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

fn sweep_pki_directories() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_stale(&name, PKI_PREFIX) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A TLS channel to a server that `pki` signed the certificate of, with a client
/// certificate when `identity` is given.
pub async fn tls_channel(
    address: SocketAddr,
    pki: &TestPki,
    identity: Option<tonic::transport::Identity>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pki.ca_pem()))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    tonic::transport::Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

pub async fn channel(address: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Calls `/<service>/<method>` with an empty message, as any client could.
pub async fn raw_call(
    channel: tonic::transport::Channel,
    service: &str,
    method: &str,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    raw_call_with(
        channel,
        service,
        method,
        token.map(|token| format!("Bearer {token}")),
    )
    .await
}

/// As [`raw_call`], with the `authorization` header's whole value.
pub async fn raw_call_with(
    channel: tonic::transport::Channel,
    service: &str,
    method: &str,
    authorization: Option<String>,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unknown(error.to_string()))?;
    let path: tonic::codegen::http::uri::PathAndQuery =
        format!("/{service}/{method}").parse().unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let mut request = tonic::Request::new(());
    if let Some(authorization) = authorization {
        request.metadata_mut().insert(
            hosted_contracts::headers::AUTHORIZATION,
            authorization.parse().unwrap(),
        );
    }
    grpc.unary(request, path, codec).await.map(|_| ())
}

/// Checks that every RPC of `access` refuses a call without a credential
/// (UNAUTHENTICATED) and a call from a caller whose roles it does not accept
/// (PERMISSION_DENIED, saying which roles it accepts), and lets an accepted role
/// through the access check, whatever the case of the `Bearer` scheme.
pub async fn assert_every_rpc_guarded(
    address: SocketAddr,
    service: &str,
    access: &[(&str, &[Role])],
    callers: &TestCallers,
) {
    let channel = channel(address).await;
    for (method, accepted) in access {
        let refused = raw_call(channel.clone(), service, method, None)
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::Unauthenticated,
            "{method} without credential"
        );
        let bogus = raw_call(channel.clone(), service, method, Some("not-a-token"))
            .await
            .unwrap_err();
        assert_eq!(
            bogus.code(),
            tonic::Code::Unauthenticated,
            "{method} with unknown credential"
        );
        for role in Role::ALL.iter().filter(|role| !accepted.contains(role)) {
            let denied = raw_call(channel.clone(), service, method, Some(callers.token(*role)))
                .await
                .unwrap_err();
            assert_eq!(
                denied.code(),
                tonic::Code::PermissionDenied,
                "{method} as {role}"
            );
            let needs = accepted
                .iter()
                .map(|role| role.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            assert!(
                denied
                    .message()
                    .ends_with(&format!("needs one of: {needs}")),
                "{method} as {role}: {}",
                denied.message()
            );
        }
        for (index, role) in accepted.iter().enumerate() {
            // Past the access check the call fails (or not) on its merits, never on
            // access; the scheme's case does not count (RFC 7235).
            let scheme = ["BEARER", "bearer", "Bearer"][index % 3];
            let authorization = format!("{scheme} {}", callers.token(*role));
            let outcome =
                raw_call_with(channel.clone(), service, method, Some(authorization)).await;
            if let Err(status) = outcome {
                assert!(
                    !matches!(
                        status.code(),
                        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                    ),
                    "{method} as {role}: {status:?}"
                );
            }
        }
    }
}

/// A TCP proxy on a loopback port of its own in front of a server: a test stops it
/// (every connection through it drops, new ones are refused) and resumes it on the
/// same port, to show what happens while the server is away, without touching the
/// server that other tests share.
#[derive(Debug)]
pub struct TcpProxy {
    address: std::net::SocketAddr,
    target: std::net::SocketAddr,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// While true, connections stay open but nothing goes through (a frozen server).
    frozen: tokio::sync::watch::Sender<bool>,
    /// When not 0, the next connection is cut once this many bytes have gone to the
    /// server (a server that dies in the middle of a call).
    cut_after: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TcpProxy {
    pub async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let proxy = Self {
            address,
            target,
            task: std::sync::Mutex::new(None),
            frozen: tokio::sync::watch::channel(false).0,
            cut_after: std::sync::Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    /// Where clients connect.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let target = self.target;
        let frozen = self.frozen.subscribe();
        let cut_after = self.cut_after.clone();
        let task = tokio::spawn(async move {
            // Dropped with the task when the proxy stops: every connection goes too.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let frozen = frozen.clone();
                let limit = cut_after.swap(0, std::sync::atomic::Ordering::SeqCst);
                let limit = (limit > 0).then_some(limit);
                connections.spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(target).await {
                        let (inbound_read, inbound_write) = inbound.into_split();
                        let (outbound_read, outbound_write) = outbound.into_split();
                        tokio::select! {
                            () = pump(inbound_read, outbound_write, frozen.clone(), limit) => {}
                            () = pump(outbound_read, inbound_write, frozen, None) => {}
                        }
                    }
                });
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    /// Drops every connection and refuses new ones.
    pub async fn stop(&self) {
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Accepts connections again, on the same port.
    pub async fn resume(&self) {
        self.frozen.send_replace(false);
        let listener = tokio::net::TcpListener::bind(self.address).await.unwrap();
        self.serve(listener);
    }

    /// Keeps every connection open but lets nothing through, either way, as a server
    /// stopped with SIGSTOP: what is sent is held until [`TcpProxy::thaw`], or lost
    /// with the connections on [`TcpProxy::stop`].
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Lets what was held, and what follows, through again.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Cuts the next connection once `bytes` have gone through it to the server, as a
    /// server that dies in the middle of a call; the connections after it are whole.
    pub fn cut_next_after(&self, bytes: usize) {
        self.cut_after
            .store(bytes.max(1), std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies one direction of a connection, holding each chunk while frozen; with
/// `cut_after`, ends once that many bytes have gone through.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
    cut_after: Option<usize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    let mut forwarded = 0;
    loop {
        let room = cut_after.map_or(buffer.len(), |limit| (limit - forwarded).min(buffer.len()));
        if room == 0 {
            return;
        }
        let read = match from.read(&mut buffer[..room]).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        forwarded += read;
        if frozen.wait_for(|frozen| !*frozen).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

// ------------------------------------------------------------- residue

pub mod residue;

pub use residue::{find_in_database, find_in_stream};
