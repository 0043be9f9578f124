//! Test harness for the hosted-learners services, used by every integration test.
//!
//! Tests share one PostgreSQL, one NATS and one slapd (`dev/deps` starts them) and stay
//! out of each other's way: each gets its own database, its own subject namespace
//! (hence its own streams) and its own LDAP subtree. What earlier runs left behind is
//! removed once it is an hour old, so the servers do not fill up.
//!
//! Where the servers are comes from `HOSTED_TEST_*` variables (`dev/deps env`), with
//! the local defaults.
#![allow(clippy::unwrap_used, clippy::print_stdout, unreachable_pub)]

use std::{net::SocketAddr, time::Duration};

use hosted_contracts::subjects::Namespace;
use hosted_platform::{
    auth::{Role, hash_token},
    config::{
        AuthConfig, CallerConfig, CommonConfig, DatabaseConfig, GrpcConfig, NatsConfig,
        TelemetryConfig,
    },
};
use ldap3::{LdapConnAsync, Scope, SearchEntry};
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

pub fn nats_url() -> String {
    env_or("HOSTED_TEST_NATS_URL", "nats://127.0.0.1:4222")
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

/// A database of the test's own (created on first connection by the service).
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

static DATABASE_SWEEP: OnceCell<()> = OnceCell::const_new();

impl TestDatabase {
    pub async fn new() -> Self {
        DATABASE_SWEEP.get_or_init(sweep_databases).await;
        let name = format!("{DATABASE_PREFIX}{}", unique_token());
        let server = server_database_url();
        let base = server
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&server);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }

    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: self.url.clone(),
            max_connections: 5,
            create_if_missing: true,
        }
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }
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
    let Ok(client) = async_nats::connect(nats_url()).await else {
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

/// NATS settings for a test namespace, with short timings so retries show quickly.
pub fn nats_config(namespace: &Namespace) -> NatsConfig {
    NatsConfig {
        url: nats_url(),
        namespace: namespace.as_str().to_owned(),
        ack_wait: Duration::from_secs(2),
        ..NatsConfig::default()
    }
}

pub async fn jetstream() -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap())
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

/// Where the test slapd is and how to bind to it.
#[derive(Debug, Clone)]
pub struct LdapServer {
    pub url: String,
    pub bind_dn: String,
    pub bind_password: String,
    pub suffix: String,
}

impl LdapServer {
    pub fn from_env() -> Self {
        Self {
            url: env_or("HOSTED_TEST_LDAP_URL", "ldap://127.0.0.1:3389"),
            bind_dn: env_or("HOSTED_TEST_LDAP_BIND_DN", "cn=admin,dc=univ-example,dc=fr"),
            bind_password: env_or("HOSTED_TEST_LDAP_BIND_PASSWORD", "secret"),
            suffix: env_or("HOSTED_TEST_LDAP_SUFFIX", "dc=univ-example,dc=fr"),
        }
    }

    pub async fn connect(&self) -> ldap3::Ldap {
        let (connection, mut ldap) = LdapConnAsync::new(&self.url)
            .await
            .unwrap_or_else(|error| panic!("slapd at {} ({error}); run dev/deps", self.url));
        ldap3::drive!(connection);
        ldap.simple_bind(&self.bind_dn, &self.bind_password)
            .await
            .unwrap()
            .success()
            .unwrap();
        ldap
    }
}

const SUBTREE_PREFIX: &str = "t";

/// An `ou` of the test's own under the suffix, to use as the managed base.
#[derive(Debug, Clone)]
pub struct TestSubtree {
    pub server: LdapServer,
    pub base_dn: String,
}

static LDAP_SWEEP: OnceCell<()> = OnceCell::const_new();

impl TestSubtree {
    pub async fn new() -> Self {
        let server = LdapServer::from_env();
        LDAP_SWEEP
            .get_or_init(|| sweep_subtrees(server.clone()))
            .await;
        Self::on(server).await
    }

    /// A subtree on another slapd than the tests' (a benchmark's).
    pub async fn on(server: LdapServer) -> Self {
        let ou = format!("{SUBTREE_PREFIX}{}", unique_token());
        let base_dn = format!("ou={ou},{}", server.suffix);
        let mut ldap = server.connect().await;
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
    let (connection, mut ldap) = match LdapConnAsync::new(&server.url).await {
        Ok(pair) => pair,
        Err(_) => return,
    };
    ldap3::drive!(connection);
    if ldap
        .simple_bind(&server.bind_dn, &server.bind_password)
        .await
        .is_err()
    {
        return;
    }
    let Ok(result) = ldap
        .search(
            &server.suffix,
            Scope::OneLevel,
            "(objectClass=organizationalUnit)",
            vec!["ou"],
        )
        .await
    else {
        return;
    };
    let Ok((entries, _)) = result.success() else {
        return;
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
