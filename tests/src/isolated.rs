//! An isolated copy of the whole system, as processes: its own PostgreSQL cluster,
//! NATS server and slapd on free loopback ports, the four services and hlctl run
//! from the workspace's build. For what only real processes show: a `kill -9`, a
//! server stopped or frozen under running services (the fault suite, the crash
//! tests, the soak).
//!
//! The binaries are the ones `cargo build --bins` made (dev/test and dev/faults
//! build them first). Everything lives in one directory under the system's
//! temporary directory, removed when the [`Isolated`] is dropped, unless
//! `HOSTED_FAULTS_KEEP=1` asks to keep it for a post-mortem (its path is printed).
//!
//! A service may run as several processes on the same database and NATS
//! ([`Isolated::start_replica`]: `intake-2` beside `intake`), as replicas of a
//! Deployment do; hlctl then talks to the first of them still running.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use sqlx::{Connection, PgConnection, Row};

/// The four services, in the order they start.
pub const SERVICES: [&str; 4] = ["intake", "entitlement", "cards", "directory"];

/// The caller every service knows, with every role (this isolated copy only).
pub const TOKEN: &str = "isolated-token";
const ROLES: &str = "deve,legal,finance,card-office,dosi,integrator";

pub const SUFFIX: &str = "dc=univ-example,dc=fr";
pub const ROOT_DN: &str = "cn=admin,dc=univ-example,dc=fr";
pub const ROOT_PASSWORD: &str = "secret";
/// Where directory publishes the accounts.
pub const PEOPLE: &str = "ou=people,dc=univ-example,dc=fr";
const STAFF: &str = "ou=staff,dc=univ-example,dc=fr";
/// Directory's own identity in this slapd, which its ACLs let write under ou=people
/// only, over StartTLS only (the certificates are dev/deps's).
const DIRECTORY_DN: &str = "cn=hosted-directory,ou=services,dc=univ-example,dc=fr";
/// This throw-away slapd's only: stored as is.
const DIRECTORY_PASSWORD: &str = "isolated-directory-password";

/// Where dev/deps's CA and slapd's certificate are (`HOSTED_TEST_TLS_DIR`).
fn tls_dir() -> PathBuf {
    let ca = hosted_testkit::LdapServer::from_env().ca_path;
    Path::new(&ca)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The workspace's root.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// A binary of the workspace, from the profile directory this test runs from.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>-<hash>
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in target/<profile>/deps");
    let path = profile.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first (cargo build --bins; dev/test and dev/faults do)",
        path.display()
    );
    path
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`, `QUIT`) to a process.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill(1)");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn log_file(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Waits until `ready` holds, at most `limit`; false when it never did.
fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ready()
}

/// A PostgreSQL cluster of its own (initdb), on a free port, its socket in its own
/// directory. Run as the `postgres` user when we are root (PostgreSQL refuses root).
#[derive(Debug)]
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
}

impl Postgres {
    fn bin_dir() -> PathBuf {
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| {
                        let version = entry.file_name().to_str()?.parse().ok()?;
                        let bin = entry.path().join("bin");
                        bin.join("initdb").is_file().then_some((version, bin))
                    })
                    .collect()
            })
            .unwrap_or_default();
        versions.sort();
        versions
            .pop()
            .map(|(_, bin)| bin)
            .expect("PostgreSQL's server binaries (/usr/lib/postgresql/<version>/bin): dev/deps installs them")
    }

    fn init(root: &Path) -> Self {
        let as_postgres = is_root();
        let dir = root.join("postgres");
        fs::create_dir_all(&dir).unwrap();
        if as_postgres {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir));
        }
        let postgres = Self {
            port: free_port(),
            bin: Self::bin_dir(),
            dir,
            as_postgres,
        };
        run(postgres
            .command("initdb")
            .arg("-D")
            .arg(postgres.dir.join("data"))
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .arg("--locale=C.UTF-8"));
        postgres
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// Starts the cluster and waits until it accepts connections.
    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off \
             -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .stdout(Stdio::null()));
    }

    /// Stops it in immediate mode: every server process quits at once, without a
    /// checkpoint, as in a crash (the next start recovers from the WAL).
    pub fn stop_immediately(&self) {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null()));
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The log (checked for a PANIC).
    pub fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn running(&self) -> bool {
        self.dir.join("data/postmaster.pid").exists()
    }
}

impl Postgres {
    /// Stops it in immediate mode if it runs, waiting until it has, ignoring failures
    /// (clean-up).
    fn stop_quietly(&self) {
        if self.running() {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_quietly();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// A NATS server with JetStream, its store in its own directory; alone, or one node
/// of a cluster.
#[derive(Debug)]
pub struct Nats {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    cluster: Option<ClusterNode>,
}

/// What makes a NATS server a node of a local JetStream cluster: its name, its route
/// port, and the route ports of every node (its own included).
#[derive(Debug, Clone)]
struct ClusterNode {
    name: String,
    port: u16,
    routes: Vec<u16>,
}

/// The name of the isolated JetStream cluster.
const CLUSTER_NAME: &str = "hosted-isolated";

impl Nats {
    fn new(root: &Path) -> Self {
        Self::node(root, "nats", None)
    }

    fn node(root: &Path, name: &str, cluster: Option<ClusterNode>) -> Self {
        let dir = root.join(name);
        fs::create_dir_all(&dir).unwrap();
        Self {
            port: free_port(),
            dir,
            child: None,
            cluster,
        }
    }

    /// `size` nodes of one JetStream cluster (not started).
    fn cluster(root: &Path, size: usize) -> Vec<Self> {
        let routes: Vec<u16> = (0..size).map(|_| free_port()).collect();
        (0..size)
            .map(|index| {
                let name = format!("nats-{index}");
                let node = ClusterNode {
                    name: name.clone(),
                    port: routes[index],
                    routes: routes.clone(),
                };
                Self::node(root, &name, Some(node))
            })
            .collect()
    }

    /// The node's name in its cluster (`nats` alone).
    pub fn name(&self) -> &str {
        self.cluster
            .as_ref()
            .map_or("nats", |node| node.name.as_str())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (on the same port and store as before) and waits until it answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "NATS is already running");
        let program = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|path| Path::new(path).is_file())
            .unwrap_or("nats-server");
        let mut command = Command::new(program);
        command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.join("store"));
        if let Some(node) = &self.cluster {
            let routes: Vec<String> = node
                .routes
                .iter()
                .map(|port| format!("nats://127.0.0.1:{port}"))
                .collect();
            command
                .args(["-n", &node.name, "--cluster_name", CLUSTER_NAME])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", node.port)])
                .args(["--routes", &routes.join(",")]);
        }
        let child = command
            .stdout(log_file(&self.dir.join("nats.log")))
            .stderr(log_file(&self.dir.join("nats.log")))
            .spawn()
            .unwrap_or_else(|error| panic!("{program}: {error} (dev/deps installs it)"));
        let name = self.name().to_owned();
        record_pid(self.dir.parent().unwrap_or(&self.dir), &name, child.id());
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(30), || nats_answers(port)),
            "NATS did not answer on port {port}"
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("NATS is running").id()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server stays connected and answers nothing.
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

fn nats_answers(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = [0_u8; 4];
    stream.read_exact(&mut line).is_ok() && &line == b"INFO"
}

/// Our own slapd, configured from deploy/ldap as dev/deps configures the development
/// one (without sync to disk at each commit), with the suffix, ou=people and ou=staff.
#[derive(Debug)]
pub struct Slapd {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    populated: bool,
}

impl Slapd {
    fn new(root: &Path) -> Self {
        let dir = root.join("slapd");
        fs::create_dir_all(dir.join("data")).unwrap();
        let source = repository().join("deploy/ldap");
        let template = fs::read_to_string(source.join("slapd.conf.in")).unwrap();
        let config = template
            .replace("@STATE_DIR@", &dir.display().to_string())
            .replace("@SCHEMA_DIR@", &source.join("schema").display().to_string())
            .replace("@SUFFIX@", SUFFIX)
            .replace("@ROOTDN@", ROOT_DN)
            .replace("@ROOTPW@", ROOT_PASSWORD)
            .replace("@DBNOSYNC@", "dbnosync")
            .replace("@TLS@", "")
            .replace("@TLS_DIR@", &tls_dir().display().to_string())
            .replace("@DIRECTORY_DN@", DIRECTORY_DN);
        fs::write(dir.join("slapd.conf"), config).unwrap();
        Self {
            port: free_port(),
            dir,
            child: None,
            populated: false,
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "slapd is already running");
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(self.dir.join("slapd.conf"))
            .arg("-h")
            .arg(format!("{}/", self.url()))
            .args(["-n", "hosted-faults-slapd", "-d", "none"])
            .stdin(Stdio::null())
            .stdout(log_file(&self.dir.join("slapd.log")))
            .stderr(log_file(&self.dir.join("slapd.log")))
            .spawn()
            .unwrap_or_else(|error| panic!("/usr/sbin/slapd: {error} (dev/deps installs it)"));
        record_pid(self.dir.parent().unwrap_or(&self.dir), "slapd", child.id());
        self.child = Some(child);
        let url = self.url();
        assert!(
            wait_until(Duration::from_secs(30), || ldap_answers(&url)),
            "slapd did not answer on {url}"
        );
        if !self.populated {
            let base = format!(
                "dn: {SUFFIX}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\n\
                 dc: univ-example\no: Univ-example\n\n\
                 dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
                 dn: {STAFF}\nobjectClass: organizationalUnit\nou: staff\n\n\
                 dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
                 dn: {DIRECTORY_DN}\nobjectClass: applicationProcess\n\
                 objectClass: simpleSecurityObject\ncn: hosted-directory\n\
                 userPassword: {DIRECTORY_PASSWORD}\n"
            );
            let mut add = Command::new("ldapadd");
            add.args(["-x", "-H", &url, "-D", ROOT_DN, "-w", ROOT_PASSWORD])
                .stdin(Stdio::piped())
                .stdout(Stdio::null());
            let mut child = add.spawn().expect("ldapadd (ldap-utils)");
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), base.as_bytes()).unwrap();
            drop(child.stdin.take());
            assert!(
                child.wait().unwrap().success(),
                "ldapadd of the base entries"
            );
            self.populated = true;
        }
    }

    /// Stops it the way an operator does (SIGTERM: it finishes what it writes).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            let _ = child.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn ldap_answers(url: &str) -> bool {
    Command::new("ldapsearch")
        .args([
            "-x",
            "-H",
            url,
            "-o",
            "nettimeout=2",
            "-b",
            "",
            "-s",
            "base",
            "-LLL",
            "1.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// One service's process and where it logs: the service itself (`intake`) or another
/// replica of it (`intake-2`) on the same database and NATS.
#[derive(Debug)]
struct ServiceProcess {
    /// Which of [`SERVICES`] it runs.
    service: &'static str,
    port: u16,
    child: Option<Child>,
    /// Settings added to the ones [`Isolated`] gives every start (`NATS__ACK_WAIT_MS`…,
    /// without the service's prefix).
    settings: BTreeMap<String, String>,
}

/// The whole system, isolated. Dropping it kills every process and removes its
/// directory.
#[derive(Debug)]
pub struct Isolated {
    pub root: PathBuf,
    pub postgres: Postgres,
    pub nats: Nats,
    /// The other nodes of the JetStream cluster, when the system has one
    /// ([`Isolated::start_clustered`]); `nats` is then its first node.
    pub nats_peers: Vec<Nats>,
    pub slapd: Slapd,
    /// Every service process by its name: the four services by theirs, the replicas
    /// started beside them by `<service>-<n>` ([`Isolated::start_replica`]).
    services: BTreeMap<String, ServiceProcess>,
}

static INSTANCES: AtomicUsize = AtomicUsize::new(0);

/// The isolated systems' directories: `<prefix><test process id>-<n>`.
const ROOT_PREFIX: &str = "hosted-isolated-";

/// Notes a process started for the system in `root`, for [`sweep_abandoned`].
fn record_pid(root: &Path, name: &str, pid: u32) {
    let dir = root.join("pids");
    let _ = fs::create_dir_all(&dir);
    let _ = fs::write(dir.join(name), pid.to_string());
}

/// Stops what an interrupted run left behind (a test killed before its `Drop`): the
/// processes of every isolated system whose test process is gone, its PostgreSQL
/// cluster, and its directory.
fn sweep_abandoned() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name
            .strip_prefix(ROOT_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let root = entry.path();
        for pid in fs::read_dir(root.join("pids"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|file| fs::read_to_string(file.path()).ok())
            .filter_map(|pid| pid.trim().parse::<u32>().ok())
        {
            // Only a process that still runs one of our programs from that system.
            let environment = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let command = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours = [environment, command]
                .iter()
                .any(|text| String::from_utf8_lossy(text).contains(&name));
            if ours {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        let postgres = Postgres {
            port: 0,
            bin: Postgres::bin_dir(),
            dir: root.join("postgres"),
            as_postgres: is_root(),
        };
        drop(postgres);
        let _ = fs::remove_dir_all(&root);
    }
}

impl Isolated {
    /// Starts the three servers and the four services, and waits until every service
    /// is SERVING.
    pub fn start() -> Self {
        let mut system = Self::servers();
        system.start_services();
        system
    }

    /// Starts the four services (one process each) and waits until every one is
    /// SERVING.
    pub fn start_services(&mut self) {
        for service in SERVICES {
            self.start_service(service);
        }
        for service in SERVICES {
            self.wait_serving(service);
        }
    }

    /// As [`Isolated::start`], NATS being a JetStream cluster of three nodes on which
    /// every stream keeps three replicas; the services know the three as seeds.
    pub fn start_clustered() -> Self {
        let mut system = Self::servers_with(3);
        system.wait_for_jetstream_cluster();
        for service in SERVICES {
            system.set(service, "NATS__REPLICAS", "3");
        }
        system.start_services();
        system
    }

    /// Waits until the cluster's JetStream makes a stream of three replicas (its nodes
    /// have routed and chosen a meta leader), so that the services' streams can be
    /// made at once.
    fn wait_for_jetstream_cluster(&self) {
        let url = self.nats_url();
        let ready = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let seeds: Vec<async_nats::ServerAddr> =
                    url.split(',').map(|seed| seed.parse().unwrap()).collect();
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                let mut last = String::new();
                while std::time::Instant::now() < deadline {
                    match async_nats::connect(seeds.clone()).await {
                        Ok(client) => {
                            // A stream of three replicas can be made: the cluster has
                            // its meta leader and every node.
                            let jetstream = async_nats::jetstream::new(client);
                            let probe = async_nats::jetstream::stream::Config {
                                name: "CLUSTER_PROBE".to_owned(),
                                subjects: vec!["cluster.probe".to_owned()],
                                num_replicas: 3,
                                ..Default::default()
                            };
                            match jetstream.create_stream(probe).await {
                                Ok(_) => {
                                    let _ = jetstream.delete_stream("CLUSTER_PROBE").await;
                                    return Ok(());
                                }
                                Err(error) => last = format!("JetStream: {error}"),
                            }
                        }
                        Err(error) => last = format!("NATS: {error}"),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(last)
            })
        })
        .join()
        .unwrap();
        if let Err(error) = ready {
            panic!("the JetStream cluster did not answer within a minute: {error}");
        }
    }

    /// The node of the cluster named `name` (`nats-0`…).
    pub fn nats_node(&mut self, name: &str) -> &mut Nats {
        if self.nats.name() == name {
            return &mut self.nats;
        }
        self.nats_peers
            .iter_mut()
            .find(|node| node.name() == name)
            .unwrap_or_else(|| panic!("no NATS node {name}"))
    }

    /// Every NATS node, the first one first.
    pub fn nats_nodes(&self) -> impl Iterator<Item = &Nats> {
        std::iter::once(&self.nats).chain(&self.nats_peers)
    }

    /// The NATS seeds, as the services' `nats.url` lists them.
    pub fn nats_url(&self) -> String {
        self.nats_nodes()
            .map(Nats::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The servers only; the services are configured but not started.
    pub fn servers() -> Self {
        Self::servers_with(1)
    }

    /// The servers, NATS as one server or a cluster of `nats_nodes`.
    fn servers_with(nats_nodes: usize) -> Self {
        sweep_abandoned();
        let root = std::env::temp_dir().join(format!(
            "{ROOT_PREFIX}{}-{}",
            std::process::id(),
            INSTANCES.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("logs")).unwrap();
        let postgres = Postgres::init(&root);
        postgres.start();
        let (mut nats, mut nats_peers) = if nats_nodes > 1 {
            let mut nodes = Nats::cluster(&root, nats_nodes);
            let first = nodes.remove(0);
            (first, nodes)
        } else {
            (Nats::new(&root), Vec::new())
        };
        // A node answers once it is up, whether its routes are or not.
        nats.start();
        for peer in &mut nats_peers {
            peer.start();
        }
        let mut slapd = Slapd::new(&root);
        slapd.start();
        let services = SERVICES
            .into_iter()
            .map(|name| {
                (
                    name.to_owned(),
                    ServiceProcess {
                        service: name,
                        port: free_port(),
                        child: None,
                        settings: BTreeMap::new(),
                    },
                )
            })
            .collect();
        Self {
            root,
            postgres,
            nats,
            nats_peers,
            slapd,
            services,
        }
    }

    /// A setting for a service's next starts, as its configuration's environment
    /// variable without the prefix (`NATS__ACK_WAIT_MS`). Set on a service (`intake`),
    /// it holds for its replicas too; set on a replica (`intake-2`), for that one only.
    pub fn set(&mut self, service: &str, key: &str, value: &str) {
        self.process(service)
            .settings
            .insert(key.to_owned(), value.to_owned());
    }

    /// Runs every service's calendar on a rehearsal clock from `started_at`, at
    /// `days_per_minute` (`[clock] rehearsal_*`); set before the services start.
    pub fn rehearse(&mut self, started_at: jiff::Timestamp, days_per_minute: u32) {
        for service in SERVICES {
            self.set(
                service,
                "CLOCK__REHEARSAL_STARTED_AT",
                &started_at.to_string(),
            );
            self.set(
                service,
                "CLOCK__REHEARSAL_DAYS_PER_MINUTE",
                &days_per_minute.to_string(),
            );
        }
    }

    fn process(&mut self, service: &str) -> &mut ServiceProcess {
        self.services
            .get_mut(service)
            .unwrap_or_else(|| panic!("no service {service}"))
    }

    fn process_of(&self, service: &str) -> &ServiceProcess {
        self.services
            .get(service)
            .unwrap_or_else(|| panic!("no service {service}"))
    }

    /// Starts another process of `service` on the same database and NATS, with a gRPC
    /// port and a log of its own, and waits until it is SERVING; returns its name
    /// (`intake-2`, `intake-3`…), which `kill`, `pid`, `endpoint`, `log_tail`… take as
    /// they take a service's. Its consumers share the service's durable consumers and
    /// its jobs the service's database, as a second pod of a Deployment does.
    pub fn start_replica(&mut self, service: &str) -> String {
        let service = SERVICES
            .into_iter()
            .find(|known| *known == service)
            .unwrap_or_else(|| panic!("no service {service}"));
        let replicas = self
            .services
            .values()
            .filter(|process| process.service == service)
            .count();
        let name = format!("{service}-{}", replicas + 1);
        self.services.insert(
            name.clone(),
            ServiceProcess {
                service,
                port: free_port(),
                child: None,
                settings: BTreeMap::new(),
            },
        );
        self.start_service(&name);
        self.wait_serving(&name);
        name
    }

    /// The names of the processes of `service` (itself first, then its replicas).
    pub fn replicas(&self, service: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .services
            .iter()
            .filter(|(_, process)| process.service == service)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort_by_key(|name| (name.len(), name.clone()));
        names
    }

    pub fn port(&self, service: &str) -> u16 {
        self.process_of(service).port
    }

    pub fn address(&self, service: &str) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port(service)))
    }

    pub fn endpoint(&self, service: &str) -> String {
        format!("http://127.0.0.1:{}", self.port(service))
    }

    /// A service's database (a replica's is its service's).
    pub fn database_url(&self, service: &str) -> String {
        let service = self
            .services
            .get(service)
            .map_or(service, |process| process.service);
        self.postgres.url(&format!("hosted_{service}"))
    }

    pub fn log(&self, service: &str) -> PathBuf {
        self.root.join("logs").join(format!("{service}.log"))
    }

    /// Starts a service's process, or a replica's (not waiting for it to serve).
    pub fn start_service(&mut self, name: &str) {
        let service = self.process_of(name).service;
        let upper = service.to_uppercase();
        let database = self.database_url(service);
        let nats = self.nats_url();
        let ldap = self.slapd.url();
        let log = self.log(name);
        let hash = token_hash();
        let root = self.root.clone();
        // The service's settings, then the replica's own.
        let mut settings = self.process_of(service).settings.clone();
        settings.extend(self.process_of(name).settings.clone());
        let process = self.process(name);
        assert!(process.child.is_none(), "{name} is already running");
        let mut command = Command::new(binary(service));
        command
            .current_dir(repository())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // Not read by the service: names its system, for [`sweep_abandoned`].
            .env("HOSTED_ISOLATED_ROOT", &root)
            .env(
                format!("{upper}__GRPC__LISTEN"),
                format!("127.0.0.1:{}", process.port),
            )
            .env(format!("{upper}__DATABASE__URL"), database)
            .env(format!("{upper}__DATABASE__CREATE_IF_MISSING"), "true")
            .env(format!("{upper}__NATS__URL"), nats)
            .env(
                format!("{upper}__AUTH__CALLERS__FAULTS__TOKEN_SHA256"),
                hash,
            )
            .env(format!("{upper}__AUTH__CALLERS__FAULTS__ROLES"), ROLES)
            .env(format!("{upper}__TELEMETRY__FILTER"), "info");
        if service == "intake" {
            // Required: the key of erased logins' digests (docs/privacy.md).
            command.env(
                "INTAKE__RETENTION__LOGIN_KEY",
                "isolated-systems-login-key-for-tests-only",
            );
        }
        if service == "directory" {
            command
                .env("DIRECTORY__LDAP__URL", ldap)
                .env("DIRECTORY__LDAP__STARTTLS", "true")
                .env(
                    "DIRECTORY__LDAP__CA_PATH",
                    tls_dir().join("ca.pem").display().to_string(),
                )
                .env("DIRECTORY__LDAP__BIND_DN", DIRECTORY_DN)
                .env("DIRECTORY__LDAP__BIND_PASSWORD", DIRECTORY_PASSWORD)
                .env("DIRECTORY__LDAP__BASE_DN", PEOPLE)
                .env("DIRECTORY__LDAP__EPPN_SCOPE", "univ-example.fr")
                .env("DIRECTORY__ENTRIES__SPONSOR_BASE_DN", STAFF);
        }
        for (key, value) in &settings {
            command.env(format!("{upper}__{key}"), value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .spawn()
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        record_pid(&self.root, name, child.id());
        self.process(name).child = Some(child);
    }

    /// Waits until a service answers SERVING (60 s at most).
    pub fn wait_serving(&self, service: &str) {
        let output = self
            .hlctl()
            .args(["health", "--wait", "60"])
            .arg(self.endpoint(service))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{service} did not become SERVING; the end of its log:\n{}",
            self.log_tail(service, 30)
        );
    }

    pub fn pid(&self, service: &str) -> u32 {
        self.process_of(service)
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{service} is not running"))
            .id()
    }

    /// `kill -9` of a service.
    pub fn kill(&mut self, service: &str) {
        if let Some(mut child) = self.process(service).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits until it has exited (it drains its work first).
    pub fn stop(&mut self, service: &str) {
        if let Some(mut child) = self.process(service).child.take() {
            signal(child.id(), "TERM");
            let _ = child.wait();
        }
    }

    pub fn is_running(&mut self, service: &str) -> bool {
        self.process(service)
            .child
            .as_mut()
            .is_some_and(|child| child.try_wait().is_ok_and(|status| status.is_none()))
    }

    /// hlctl, pointed at this system's services with the caller's token: at each
    /// service's first process that was not killed or stopped (the service itself
    /// unless only a replica of it runs), as a load balancer would.
    pub fn hlctl(&self) -> Command {
        let mut command = Command::new(binary("hlctl"));
        command
            .current_dir(&self.root)
            .env("HLCTL_TOKEN", TOKEN)
            .env("HLCTL_INTAKE", self.live_endpoint("intake"))
            .env("HLCTL_ENTITLEMENT", self.live_endpoint("entitlement"))
            .env("HLCTL_CARDS", self.live_endpoint("cards"))
            .env("HLCTL_DIRECTORY", self.live_endpoint("directory"))
            .stdin(Stdio::null());
        command
    }

    /// The endpoint of the first process of `service` that was started and not
    /// killed or stopped since; the service's own when none is.
    pub fn live_endpoint(&self, service: &str) -> String {
        self.replicas(service)
            .into_iter()
            .find(|name| self.process_of(name).child.is_some())
            .map_or_else(|| self.endpoint(service), |name| self.endpoint(&name))
    }

    /// The last `lines` lines of a service's log.
    pub fn log_tail(&self, service: &str, lines: usize) -> String {
        let text = fs::read_to_string(self.log(service)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Lines of the services' logs (replicas' included) that tell of a panic, and
    /// PostgreSQL's PANICs.
    pub fn panics(&self) -> Vec<String> {
        let mut found = Vec::new();
        for service in self.services.keys() {
            let text = fs::read_to_string(self.log(service)).unwrap_or_default();
            found.extend(
                text.lines()
                    .filter(|line| line.contains("panicked at") || line.contains("RUST_BACKTRACE"))
                    .map(|line| format!("{service}: {line}")),
            );
        }
        let text = fs::read_to_string(self.postgres.log()).unwrap_or_default();
        found.extend(
            text.lines()
                .filter(|line| line.contains("PANIC:"))
                .map(|line| format!("postgres: {line}")),
        );
        found
    }

    /// Writes a generated cohort (`hlctl import generate`) into this system's
    /// directory and returns its path.
    pub fn generate_cohort(&self, name: &str, rows: usize, bad: usize, seed: u64) -> PathBuf {
        let path = self.root.join(format!("{name}.csv"));
        run(self
            .hlctl()
            .args(["import", "generate"])
            .arg(&path)
            .args(["--rows", &rows.to_string(), "--bad", &bad.to_string()])
            .args(["--seed", &seed.to_string()])
            .stdout(Stdio::null()));
        path
    }

    /// Starts `hlctl import stays FILE` in the background (its output in
    /// `<FILE>.import.log`, its results beside the file).
    pub fn start_import(&self, file: &Path) -> Child {
        let log = file.with_extension("import.log");
        self.hlctl()
            .args(["import", "stays"])
            .arg(file)
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .spawn()
            .unwrap()
    }

    /// Runs the import of `file` until it completes (an operator runs it again after
    /// a failure, as docs/cohort-import.md says), at most `attempts` times, and
    /// returns what the results file says was accepted.
    pub fn import_until_done(&self, file: &Path, mut first: Option<Child>) -> Accepted {
        for attempt in 1..=10 {
            let mut child = first.take().unwrap_or_else(|| self.start_import(file));
            let status = child.wait().unwrap();
            // 0: every row accepted; 2: some rows refused (the generated bad ones).
            if matches!(status.code(), Some(0 | 2)) {
                let accepted = Accepted::read(&file.with_extension("results.csv"));
                if accepted.no_result == 0 {
                    return accepted;
                }
            }
            eprintln!(
                "import of {} stopped ({status}), attempt {attempt}: running it again",
                file.display()
            );
            std::thread::sleep(Duration::from_secs(2));
        }
        panic!(
            "the import of {} never completed; its log:\n{}",
            file.display(),
            fs::read_to_string(file.with_extension("import.log")).unwrap_or_default()
        );
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            self.kill(&name);
        }
        self.slapd.stop();
        self.nats.kill();
        for peer in &mut self.nats_peers {
            peer.kill();
        }
        if std::env::var("HOSTED_FAULTS_KEEP").is_ok_and(|keep| keep == "1") {
            eprintln!("isolated system kept in {}", self.root.display());
        } else {
            // Stopped before its files go (its own Drop then finds it stopped).
            self.postgres.stop_quietly();
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

fn token_hash() -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(TOKEN.as_bytes())
        .iter()
        .fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// What an import's results file says was accepted.
#[derive(Debug, Default, Clone)]
pub struct Accepted {
    pub learners: BTreeSet<String>,
    pub stays: BTreeSet<String>,
    pub rejected: usize,
    pub no_result: usize,
}

impl Accepted {
    pub fn read(path: &Path) -> Self {
        let text =
            fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let mut accepted = Self::default();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let column = |name: &str| {
            header
                .iter()
                .position(|field| *field == name)
                .unwrap_or_else(|| panic!("{}: no column {name}", path.display()))
        };
        let (outcome, learner, stay) = (column("outcome"), column("learner_id"), column("stay_id"));
        for line in lines {
            // The ids and the outcome come before any free text that could hold a comma.
            let fields: Vec<&str> = line.split(',').collect();
            match fields.get(outcome).copied() {
                Some("created" | "stay_added" | "unchanged" | "duplicate_row") => {
                    accepted.learners.insert(fields[learner].to_owned());
                    accepted.stays.insert(fields[stay].to_owned());
                }
                Some("no_result") => accepted.no_result += 1,
                _ => accepted.rejected += 1,
            }
        }
        accepted
    }

    pub fn add(&mut self, other: &Self) {
        self.learners.extend(other.learners.iter().cloned());
        self.stays.extend(other.stays.iter().cloned());
    }
}

/// What differs from a converged system, empty when nothing does.
pub type Gaps = Vec<String>;

impl Isolated {
    async fn connect(&self, service: &str) -> Result<PgConnection, String> {
        PgConnection::connect(&self.database_url(service))
            .await
            .map_err(|error| format!("{service}'s database: {error}"))
    }

    /// Everything that must hold once the system has converged on `expected`: each
    /// accepted row one person and one stay in intake and nothing else, one learner in
    /// entitlement, one account in directory holding the grants entitlement computed
    /// last and published, no outbox row left, no dead letter, every consumer caught
    /// up. What does not hold yet is returned; reconciliation with LDAP is
    /// [`Isolated::drift`], asked for once this holds.
    pub async fn gaps(&self, expected: &Accepted) -> Gaps {
        let mut gaps = Gaps::new();
        if let Err(error) = self.database_gaps(expected, &mut gaps).await {
            gaps.push(error);
        }
        if let Err(error) = self.stream_gaps(&mut gaps).await {
            gaps.push(error);
        }
        gaps
    }

    async fn database_gaps(&self, expected: &Accepted, gaps: &mut Gaps) -> Result<(), String> {
        let mut intake = self.connect("intake").await?;
        let persons: Vec<String> = ids(&mut intake, "SELECT learner_id::text FROM persons").await?;
        let stays: Vec<String> = ids(&mut intake, "SELECT stay_id::text FROM stays").await?;
        let persons: BTreeSet<String> = persons.into_iter().collect();
        let stays: BTreeSet<String> = stays.into_iter().collect();
        if persons != expected.learners {
            gaps.push(format!(
                "intake holds {} persons, the imports accepted {} ({} not in intake, {} not accepted)",
                persons.len(),
                expected.learners.len(),
                expected.learners.difference(&persons).count(),
                persons.difference(&expected.learners).count()
            ));
        }
        if stays != expected.stays {
            gaps.push(format!(
                "intake holds {} stays, the imports accepted {}",
                stays.len(),
                expected.stays.len()
            ));
        }

        let mut entitlement = self.connect("entitlement").await?;
        let grants: BTreeMap<String, i64> = pairs(
            &mut entitlement,
            "SELECT learner_id::text, grants_version FROM learners",
        )
        .await?;
        if grants.keys().cloned().collect::<BTreeSet<_>>() != persons {
            gaps.push(format!(
                "entitlement knows {} learners, intake {}",
                grants.len(),
                persons.len()
            ));
        }

        let mut directory = self.connect("directory").await?;
        let accounts: BTreeMap<String, i64> = pairs(
            &mut directory,
            "SELECT a.learner_id::text, coalesce(g.grants_version, -1) FROM accounts a \
             LEFT JOIN grants g USING (learner_id)",
        )
        .await?;
        if accounts.keys().cloned().collect::<BTreeSet<_>>() != persons {
            gaps.push(format!(
                "directory has {} accounts, intake {} persons",
                accounts.len(),
                persons.len()
            ));
        }
        let behind = grants
            .iter()
            .filter(|(learner, version)| accounts.get(*learner) != Some(version))
            .count();
        if behind > 0 {
            gaps.push(format!(
                "{behind} accounts do not hold the grants entitlement computed last"
            ));
        }
        let unpublished: i64 = scalar(
            &mut directory,
            "SELECT count(*) FROM accounts WHERE published_revision IS DISTINCT FROM revision",
        )
        .await?;
        if unpublished > 0 {
            gaps.push(format!("{unpublished} accounts not yet written to LDAP"));
        }

        for (service, connection) in [
            ("intake", &mut intake),
            ("entitlement", &mut entitlement),
            ("directory", &mut directory),
            ("cards", &mut self.connect("cards").await?),
        ] {
            let waiting: i64 = scalar(
                connection,
                "SELECT count(*) FROM platform_outbox WHERE published_at IS NULL",
            )
            .await?;
            if waiting > 0 {
                gaps.push(format!("{waiting} events in {service}'s outbox"));
            }
        }
        Ok(())
    }

    async fn stream_gaps(&self, gaps: &mut Gaps) -> Result<(), String> {
        use futures::TryStreamExt as _;
        let seeds: Vec<async_nats::ServerAddr> = self
            .nats_nodes()
            .filter(|node| node.child.is_some())
            .map(|node| node.url().parse().unwrap())
            .collect();
        let client = async_nats::connect(seeds)
            .await
            .map_err(|error| format!("NATS: {error}"))?;
        let jetstream = async_nats::jetstream::new(client);
        let names: Vec<String> = jetstream
            .stream_names()
            .try_collect()
            .await
            .map_err(|error| format!("NATS streams: {error}"))?;
        for name in names {
            let stream = jetstream
                .get_stream(&name)
                .await
                .map_err(|error| format!("stream {name}: {error}"))?;
            let subjects: Vec<(String, usize)> = stream
                .info_with_subjects("*.deadletter.>")
                .await
                .map_err(|error| format!("stream {name}: {error}"))?
                .try_collect()
                .await
                .map_err(|error| format!("stream {name}: {error}"))?;
            let dead: usize = subjects.iter().map(|(_, count)| count).sum();
            if dead > 0 {
                gaps.push(format!("{dead} dead letters in {name}"));
            }
            let consumers: Vec<String> = stream
                .consumer_names()
                .try_collect()
                .await
                .map_err(|error| format!("consumers of {name}: {error}"))?;
            for consumer in consumers {
                let info = stream
                    .consumer_info(&consumer)
                    .await
                    .map_err(|error| format!("consumer {consumer}: {error}"))?;
                if info.num_pending > 0 || info.num_ack_pending > 0 {
                    gaps.push(format!(
                        "consumer {consumer} of {name}: {} pending, {} unacknowledged",
                        info.num_pending, info.num_ack_pending
                    ));
                }
            }
        }
        Ok(())
    }

    /// Directory's reconciliation (`hlctl reconcile`, a dry run): the drifts between
    /// its projection and LDAP, empty when there is none.
    pub fn drift(&self) -> Vec<String> {
        let output = self.hlctl().args(["--json", "reconcile"]).output().unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
                panic!(
                    "hlctl reconcile answered no report:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        report["drifts"]
            .as_array()
            .map(|drifts| {
                drifts
                    .iter()
                    .map(|drift| format!("{} {}", drift["kind"], drift["dn"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The number of entries under the managed base (by `uid`).
    pub fn ldap_entries(&self) -> usize {
        let output = run(self
            .ldap_tool("ldapsearch")
            .arg("-LLL")
            .args(["-b", PEOPLE, "-s", "one", "(uid=*)", "1.1"]));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.starts_with("dn:"))
            .count()
    }

    /// Waits until the system has converged on `expected` (see [`Isolated::gaps`]),
    /// LDAP included (no drift, one entry per account), and returns how long it took;
    /// panics with what still differs after `limit`, or at once on a panic in a log.
    pub async fn converge(&self, expected: &Accepted, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let panics = self.panics();
            assert!(
                panics.is_empty(),
                "panics in the logs:\n{}",
                panics.join("\n")
            );
            let mut gaps = self.gaps(expected).await;
            if gaps.is_empty() {
                let drift = self.drift();
                let entries = self.ldap_entries();
                if drift.is_empty() && entries == expected.learners.len() {
                    return start.elapsed();
                }
                gaps.push(format!(
                    "{entries} entries in LDAP for {} learners; {} drifts: {}",
                    expected.learners.len(),
                    drift.len(),
                    drift.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            if start.elapsed() > limit {
                panic!(
                    "not converged {:.0?} after the last recovery:\n  {}\n(logs in {})",
                    start.elapsed(),
                    gaps.join("\n  "),
                    self.root.join("logs").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn ids(connection: &mut PgConnection, query: &str) -> Result<Vec<String>, String> {
    sqlx::query_scalar(query)
        .fetch_all(connection)
        .await
        .map_err(|error| format!("{query}: {error}"))
}

async fn scalar(connection: &mut PgConnection, query: &str) -> Result<i64, String> {
    sqlx::query_scalar(query)
        .fetch_one(connection)
        .await
        .map_err(|error| format!("{query}: {error}"))
}

async fn pairs(
    connection: &mut PgConnection,
    query: &str,
) -> Result<BTreeMap<String, i64>, String> {
    let rows = sqlx::query(query)
        .fetch_all(connection)
        .await
        .map_err(|error| format!("{query}: {error}"))?;
    Ok(rows
        .iter()
        .map(|row| (row.get::<String, _>(0), row.get::<i64, _>(1)))
        .collect())
}

/// Looking inside the stores while an operation runs: for the crash tests, which
/// strike when the stores show an operation under way rather than after a sleep.
impl Isolated {
    /// A connection to a service's database.
    pub async fn database(&self, service: &str) -> PgConnection {
        self.connect(service)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// One number a query of a service's database gives (a `count(*)`…).
    pub async fn number(&self, service: &str, query: &str) -> i64 {
        scalar(&mut self.database(service).await, query)
            .await
            .unwrap_or_else(|error| panic!("{service}: {error}"))
    }

    /// The last identity the service's outbox gave out. It moves with every event
    /// enqueued, committed or not (a sequence is outside transactions), so it shows
    /// the progress of a transaction that other sessions cannot see into.
    pub async fn outbox_sequence(&self, service: &str) -> i64 {
        self.number(
            service,
            "SELECT coalesce(last_value, 0) FROM pg_sequences \
             WHERE sequencename = 'platform_outbox_id_seq'",
        )
        .await
    }

    /// How long the oldest transaction on a service's database that has written
    /// something has been open, when one is (another session's: not the caller's);
    /// only those whose current (or last) statement contains `statement`, unless it
    /// is empty.
    pub async fn writing_transaction(&self, service: &str, statement: &str) -> Option<Duration> {
        let seconds: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM now() - min(xact_start))::float8 FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND backend_xid IS NOT NULL AND strpos(query, $1) > 0",
        )
        .bind(statement)
        .fetch_one(&mut self.database(service).await)
        .await
        .unwrap_or_else(|error| panic!("{service}'s open transactions: {error}"));
        seconds.map(|seconds| Duration::from_secs_f64(seconds.max(0.0)))
    }

    /// An OpenLDAP client tool (`ldapadd`, `ldapmodify`, `ldapdelete`, `ldapsearch`)
    /// pointed at this system's slapd, bound as its administrator.
    pub fn ldap_tool(&self, tool: &str) -> Command {
        let mut command = Command::new(tool);
        command.args([
            "-x",
            "-H",
            &self.slapd.url(),
            "-D",
            ROOT_DN,
            "-w",
            ROOT_PASSWORD,
        ]);
        command
    }

    /// Runs an OpenLDAP client tool with `input` (LDIF, or DNs one a line) on its
    /// standard input; panics when it fails.
    pub fn ldap_input(&self, tool: &str, extra: &[&str], input: &str) {
        let mut child = self
            .ldap_tool(tool)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("{tool}: {error} (ldap-utils)"));
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
        drop(child.stdin.take());
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The entries under the managed base (by `uid`), each with the values of
    /// `attributes` (LDIF as ldapsearch gives it, lines unwrapped), by DN in lower case.
    pub fn ldap_values(&self, attributes: &[&str]) -> BTreeMap<String, Vec<String>> {
        let output = run(self
            .ldap_tool("ldapsearch")
            .args([
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-b",
                PEOPLE,
                "-s",
                "one",
                "(uid=*)",
            ])
            .args(attributes));
        let mut entries = BTreeMap::new();
        for block in String::from_utf8_lossy(&output.stdout).split("\n\n") {
            let mut lines = block.lines().filter(|line| !line.is_empty());
            let Some(dn) = lines.next().and_then(|line| line.strip_prefix("dn: ")) else {
                continue;
            };
            let mut values: Vec<String> = lines.map(str::to_owned).collect();
            values.sort();
            entries.insert(dn.to_ascii_lowercase(), values);
        }
        entries
    }
}

/// A process's resident memory (VmRSS in `/proc/<pid>/status`), in KiB; None when
/// the process is gone.
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

impl Isolated {
    /// A service's resident memory in KiB (see [`resident_kib`]).
    pub fn resident_kib(&self, service: &str) -> Option<u64> {
        resident_kib(self.pid(service))
    }

    /// The account state of each entry under the managed base: the sub-state of its
    /// `supannRessourceEtatDate` (`SupannActif`, `SupannSursis`, `SupannExpire`…).
    pub fn account_states(&self) -> Vec<String> {
        let output = run(self
            .ldap_tool("ldapsearch")
            .args(["-LLL", "-o", "ldif-wrap=no"])
            .args([
                "-b",
                PEOPLE,
                "-s",
                "one",
                "(uid=*)",
                "supannRessourceEtatDate",
            ]));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.strip_prefix("supannRessourceEtatDate: {COMPTE}"))
            .filter_map(|value| value.split(':').nth(1))
            .map(str::to_owned)
            .collect()
    }
}
