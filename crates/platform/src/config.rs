//! Layered configuration: defaults, then an optional TOML file, then environment
//! variables named `<PREFIX>__<SECTION>__<FIELD>` (Kubernetes injects those).
//!
//! Every section is read on its own, so one run reports every bad section and every
//! failed check at once instead of stopping at the first.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Format, Toml},
    value::{Dict, Map, Value},
};
use serde::{Deserialize, de::DeserializeOwned};

use crate::auth::{Caller, Role};

/// Exit code for a bad command line or a bad configuration (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// A configuration section: deserialised on its own, then checked.
pub trait Section: DeserializeOwned + Default {
    /// Pushes one message per problem; the messages name the field.
    fn check(&self, _section: &str, _problems: &mut Vec<String>) {}
}

/// Everything wrong with a configuration, reported at once.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads sections from the layered sources and collects every problem.
#[derive(Debug)]
pub struct Loader {
    figment: Figment,
    env_prefix: String,
    known: Vec<&'static str>,
    problems: Vec<String>,
}

impl Loader {
    /// `env_prefix` is the service's name in upper case, e.g. `INTAKE`.
    pub fn new(env_prefix: &str, file: Option<&Path>) -> Self {
        let mut figment = Figment::new();
        let mut problems = Vec::new();
        let mut secrets = SecretFiles::default();
        if let Some(file) = file {
            if file.is_file() {
                figment = figment.merge(secrets.read(Toml::file(file)));
            } else {
                problems.push(format!("config file {}: not found", file.display()));
            }
        }
        let env_prefix = format!("{}__", env_prefix.to_ascii_uppercase());
        // Named, never shown: the value may be a secret.
        for (name, value) in std::env::vars_os() {
            let lossy = name.to_string_lossy();
            if lossy.starts_with(&env_prefix)
                && (name.to_str().is_none() || value.to_str().is_none())
            {
                problems.push(format!("{lossy}: not UTF-8 text"));
            }
        }
        figment = figment.merge(secrets.read(RawEnv {
            prefix: env_prefix.clone(),
        }));
        problems.extend(secrets.problems());
        Self {
            figment,
            env_prefix,
            known: Vec::new(),
            problems,
        }
    }

    /// Reads one section; on error records it and returns the defaults so that the
    /// other sections are still read and checked.
    pub fn section<S: Section>(&mut self, key: &'static str) -> S {
        self.known.push(key);
        let section = if self.figment.contains(key) {
            // Lossy: environment values are text, read as numbers or booleans where the
            // field wants one.
            match self.figment.extract_inner_lossy::<S>(key) {
                Ok(section) => section,
                Err(errors) => {
                    for error in errors {
                        self.problems.push(self.describe(key, &error));
                    }
                    return S::default();
                }
            }
        } else {
            S::default()
        };
        section.check(key, &mut self.problems);
        section
    }

    fn describe(&self, key: &str, error: &figment::Error) -> String {
        // figment reports the section's own key among the path segments; put it first.
        let inner: Vec<&str> = error
            .path
            .iter()
            .map(String::as_str)
            .filter(|segment| *segment != key)
            .collect();
        let path = if inner.is_empty() {
            key.to_owned()
        } else {
            format!("{key}.{}", inner.join("."))
        };
        let source = error
            .metadata
            .as_ref()
            .map(|metadata| format!(" (from {})", metadata.name))
            .unwrap_or_default();
        format!("{path}: {}{source}", error.kind)
    }

    /// Adds a problem found by a check that spans sections.
    pub fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    /// Reports unknown top-level sections, then every problem found, at once.
    pub fn finish(mut self) -> Result<(), ConfigErrors> {
        if let Ok(figment::value::Value::Dict(_, top)) = self.figment.find_value("") {
            for key in top.keys() {
                if !self.known.contains(&key.as_str()) {
                    self.problems.push(format!(
                        "{key}: unknown section (known: {}; environment prefix {})",
                        self.known.join(", "),
                        self.env_prefix
                    ));
                }
            }
        }
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.problems))
        }
    }
}

/// The sections every service has: `[grpc]`, `[database]`, `[nats]`, `[telemetry]`,
/// `[auth]`, `[clock]` and `[metrics]`. A service's own configuration adds its sections
/// beside these.
#[derive(Debug, Clone, Default)]
pub struct CommonConfig {
    pub grpc: GrpcConfig,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub telemetry: TelemetryConfig,
    pub auth: AuthConfig,
    pub clock: ClockConfig,
    pub metrics: MetricsConfig,
}

impl CommonConfig {
    pub fn load(loader: &mut Loader) -> Self {
        let common = Self {
            grpc: loader.section("grpc"),
            database: loader.section("database"),
            nats: loader.section("nats"),
            telemetry: loader.section("telemetry"),
            auth: loader.section("auth"),
            clock: loader.section("clock"),
            metrics: loader.section("metrics"),
        };
        for problem in common.metrics.conflicts(&common.grpc) {
            loader.problem(problem);
        }
        common
    }
}

/// `[metrics]`: the Prometheus endpoint, `/metrics` over plain HTTP on a port of its
/// own, and how often the gauges that need the database or NATS are sampled.
///
/// ```toml
/// [metrics]
/// listen = "0.0.0.0:9464"     # absent: no endpoint
/// sample_interval_ms = 5000
/// sample_timeout_ms = 2000
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: Option<SocketAddr>,
    /// How often the outbox, consumers, dead letters and service gauges are read.
    #[serde(
        deserialize_with = "parse_duration_millis",
        rename = "sample_interval_ms"
    )]
    pub sample_interval: Duration,
    /// How long one sampling may take before it is given up (the gauges keep their
    /// last values).
    #[serde(
        deserialize_with = "parse_duration_millis",
        rename = "sample_timeout_ms"
    )]
    pub sample_timeout: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            sample_interval: Duration::from_secs(5),
            sample_timeout: Duration::from_secs(2),
        }
    }
}

impl MetricsConfig {
    /// Any free port on loopback (tests).
    pub fn ephemeral() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Self::default()
        }
    }

    /// The metrics port must be none of the gRPC ports.
    fn conflicts(&self, grpc: &GrpcConfig) -> Vec<String> {
        let Some(metrics) = self.listen.filter(|address| address.port() != 0) else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        if grpc.listen == Some(metrics) {
            problems.push(format!(
                "metrics.listen: {metrics} is also grpc.listen; give the metrics a port of their own"
            ));
        }
        if grpc.health_listen == Some(metrics) {
            problems.push(format!(
                "metrics.listen: {metrics} is also grpc.health_listen; give the metrics a port of their own"
            ));
        }
        problems
    }
}

impl Section for MetricsConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        if self.sample_interval < Duration::from_millis(100) {
            problems.push(format!(
                "{section}.sample_interval_ms: must be at least 100"
            ));
        }
        if self.sample_timeout.is_zero() {
            problems.push(format!("{section}.sample_timeout_ms: must be more than 0"));
        }
    }
}

/// The university's time zone when none is configured.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Paris";

/// `[clock]`: where the university is, for what "today" means.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockConfig {
    /// An IANA time zone, e.g. `Europe/Paris`, `Indian/Reunion`, `Pacific/Noumea`.
    pub time_zone: String,
    /// Soak runs only, never production: days that pass per real minute (0, the
    /// default: the real calendar). Needs `rehearsal_started_at`.
    pub rehearsal_days_per_minute: u32,
    /// Soak runs only: the real instant (RFC 3339) the rehearsal's calendar starts
    /// running faster from; every process of one rehearsal is given the same.
    pub rehearsal_started_at: String,
}

impl Default for ClockConfig {
    fn default() -> Self {
        Self {
            time_zone: DEFAULT_TIME_ZONE.to_owned(),
            rehearsal_days_per_minute: 0,
            rehearsal_started_at: String::new(),
        }
    }
}

impl Section for ClockConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        if let Err(reason) = crate::clock::Clock::new(&self.time_zone) {
            problems.push(format!("{section}.time_zone: {reason}"));
        }
        if let Err(reason) = self.rehearsal() {
            problems.push(format!("{section}.{reason}"));
        }
    }
}

impl ClockConfig {
    /// The configured clock: the system's, or a rehearsal's (said in a warning).
    pub fn clock(&self) -> crate::clock::Clock {
        if let Ok(Some((started_at, days_per_minute))) = self.rehearsal()
            && let Ok(clock) =
                crate::clock::Clock::rehearsal(&self.time_zone, started_at, days_per_minute)
        {
            tracing::warn!(
                days_per_minute,
                %started_at,
                shows = %clock.now(),
                "REHEARSAL CLOCK: days pass {days_per_minute} per minute; for soak runs only, \
                 never in production (unset clock.rehearsal_days_per_minute)"
            );
            return clock;
        }
        crate::clock::Clock::new(&self.time_zone).unwrap_or_default()
    }

    /// The rehearsal asked for, if any, or what is wrong with it (a field and why).
    fn rehearsal(&self) -> Result<Option<(jiff::Timestamp, u32)>, String> {
        let started_at = self.rehearsal_started_at.trim();
        match (self.rehearsal_days_per_minute, started_at.is_empty()) {
            (0, true) => Ok(None),
            (0, false) => Err(
                "rehearsal_started_at: set without rehearsal_days_per_minute (both, or neither)"
                    .to_owned(),
            ),
            (_, true) => Err(
                "rehearsal_days_per_minute: set without rehearsal_started_at (both, or neither)"
                    .to_owned(),
            ),
            (days, false) => {
                let started_at: jiff::Timestamp = started_at.parse().map_err(|error| {
                    format!("rehearsal_started_at: not an RFC 3339 instant ({error})")
                })?;
                crate::clock::Clock::rehearsal(&self.time_zone, started_at, days)
                    .map_err(|reason| format!("rehearsal_days_per_minute: {reason}"))?;
                Ok(Some((started_at, days)))
            }
        }
    }
}

/// A service's whole configuration.
pub trait ServiceConfig: Sized {
    /// The environment prefix, e.g. `INTAKE` for `INTAKE__DATABASE__URL`.
    const ENV_PREFIX: &'static str;

    /// Reads defaults, then `file`, then the environment; every problem at once.
    fn load(file: Option<&Path>) -> Result<Self, ConfigErrors>;

    fn common(&self) -> &CommonConfig;
}

/// Environment variables `<PREFIX>__<SECTION>__<FIELD>` as text, never guessed into
/// numbers (figment's own `Env` would read a password `0123` as the number 123).
#[derive(Debug)]
struct RawEnv {
    prefix: String,
}

impl Provider for RawEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("`{}` environment variable(s)", self.prefix))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        // `vars()` would panic on any variable that is not UTF-8, ours or not; ours
        // that are not are reported by `Loader::new`.
        for (name, value) in std::env::vars_os() {
            let (Some(name), Some(value)) = (name.to_str(), value.into_string().ok()) else {
                continue;
            };
            let Some(rest) = name.strip_prefix(&self.prefix) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.iter().any(String::is_empty) {
                continue;
            }
            insert(&mut dict, &path, Value::from(value));
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn insert(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// The suffix of a key whose value is the path of a file that holds the value of the
/// key without it: `password_file = "/run/secrets/db"` gives `password`.
pub const FILE_SUFFIX: &str = "_file";

/// Secrets from files: in every layer, any key `x_file` (TOML `x_file = "…"`, or the
/// variable `<PREFIX>__<SECTION>__X_FILE`) is replaced by `x`, the content of that
/// file without its trailing newline. Kubernetes and systemd hand secrets over as
/// mounted files; a secret read from a file is never in the process's environment,
/// where `ps e`, `/proc/<pid>/environ` and crash reports show it.
///
/// Setting both `x` and `x_file` (in the same layer or in two) is a problem that names
/// both, rather than a silent winner; a file that cannot be read is a problem that
/// names the key and the path, never what the file holds.
#[derive(Debug, Default)]
struct SecretFiles {
    /// Paths (`database.url`) given directly, in any layer.
    direct: std::collections::BTreeSet<String>,
    /// Paths (`database.url`) given as `…_file`, in any layer.
    from_files: std::collections::BTreeSet<String>,
    problems: Vec<String>,
}

impl SecretFiles {
    /// One layer, with its `x_file` keys read; a layer that does not parse is given as
    /// it is, so that figment reports it in its own words.
    fn read<P: Provider>(&mut self, layer: P) -> ResolvedLayer {
        let metadata = layer.metadata();
        let data = layer.data().map(|mut profiles| {
            for dict in profiles.values_mut() {
                self.resolve(dict, "");
            }
            profiles
        });
        ResolvedLayer { metadata, data }
    }

    fn resolve(&mut self, dict: &mut Dict, parent: &str) {
        let keys: Vec<String> = dict.keys().cloned().collect();
        for key in keys {
            let path = if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            };
            if let Some(Value::Dict(_, inner)) = dict.get_mut(&key) {
                self.resolve(inner, &path);
                continue;
            }
            let Some(target) = key
                .strip_suffix(FILE_SUFFIX)
                .filter(|target| !target.is_empty())
            else {
                self.direct.insert(path);
                continue;
            };
            let target_path = path.strip_suffix(FILE_SUFFIX).unwrap_or(&path).to_owned();
            let Some(Value::String(_, file)) = dict.remove(&key) else {
                self.problems
                    .push(format!("{path}: must be the path of a file"));
                continue;
            };
            self.from_files.insert(target_path);
            match read_secret(Path::new(&file)) {
                Ok(secret) => {
                    dict.insert(target.to_owned(), Value::from(secret));
                }
                Err(reason) => self.problems.push(format!("{path}: {file}: {reason}")),
            }
        }
    }

    fn problems(self) -> Vec<String> {
        let mut problems = self.problems;
        for path in self.direct.intersection(&self.from_files) {
            problems.push(format!(
                "{path} and {path}{FILE_SUFFIX}: both set; give the value or the file, not both"
            ));
        }
        problems
    }
}

/// A file's content without its trailing newline; the reason it cannot be read (an
/// I/O error or not UTF-8) never quotes the content.
fn read_secret(file: &Path) -> Result<String, String> {
    let bytes = std::fs::read(file).map_err(|error| format!("cannot read ({error})"))?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// A layer already read, with its secrets from files in place.
#[derive(Debug)]
struct ResolvedLayer {
    metadata: Metadata,
    data: Result<Map<Profile, Dict>, figment::Error>,
}

impl Provider for ResolvedLayer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.data.clone()
    }
}

/// The configuration file named by `--config FILE` or by `<PREFIX>_CONFIG`.
///
/// Returns `Err` with a usage message for any other argument.
pub fn config_file_from_args(env_prefix: &str) -> Result<Option<PathBuf>, String> {
    let usage = format!(
        "usage: {} [--config FILE]\n\nSettings: defaults, then FILE (or ${}_CONFIG), then \
         environment variables {}__<SECTION>__<FIELD>.",
        env_prefix.to_ascii_lowercase(),
        env_prefix,
        env_prefix
    );
    // `args()` would panic on an argument that is not UTF-8 (a file name, say).
    let mut args = std::env::args_os().skip(1);
    let mut file = std::env::var_os(format!("{env_prefix}_CONFIG")).map(PathBuf::from);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--config" | "-c") => match args.next() {
                Some(path) => file = Some(PathBuf::from(path)),
                None => return Err(format!("--config needs a file\n\n{usage}")),
            },
            Some("--help" | "-h") => return Err(usage),
            _ => return Err(format!("unexpected argument {arg:?}\n\n{usage}")),
        }
    }
    Ok(file)
}

fn parse_duration_millis<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

/// A text setting that the environment may spell as a number (a password `12345`):
/// figment reads such values as numbers, so take either.
pub fn text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        String(String),
        Unsigned(u64),
        Signed(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Text::deserialize(deserializer)? {
        Text::String(text) => text,
        Text::Unsigned(number) => number.to_string(),
        Text::Signed(number) => number.to_string(),
        Text::Float(number) => number.to_string(),
        Text::Bool(flag) => flag.to_string(),
    })
}

/// `[grpc]`: where the service listens, how it stops, and its TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Where to listen; the service's own port on loopback when not set.
    pub listen: Option<SocketAddr>,
    /// How long in-flight calls and consumers get to finish after SIGTERM.
    #[serde(deserialize_with = "parse_duration_millis", rename = "grace_period_ms")]
    pub grace_period: Duration,
    /// `[grpc.tls]`: TLS on `listen`; plain text (with a warning) when not set.
    pub tls: TlsConfig,
    /// A second, plain-text listener that serves `grpc.health.v1.Health` and nothing
    /// else, for probes that do not speak TLS (Kubernetes' gRPC probes).
    pub health_listen: Option<SocketAddr>,
}

/// `[grpc.tls]`: the server's certificate and key (PEM files, read again when they
/// change) and, for mutual TLS, the CA that signs the clients' certificates.
///
/// ```toml
/// [grpc.tls]
/// cert_path = "/etc/hosted/tls/tls.crt"        # leaf first, then intermediates
/// key_path = "/etc/hosted/tls/tls.key"
/// client_ca_path = "/etc/hosted/tls/clients-ca.crt"   # optional
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
    /// When set, clients may present a certificate signed by it (mutual TLS); a
    /// caller whose `certificate_subject` is the certificate's is that caller.
    pub client_ca_path: Option<PathBuf>,
}

fn set(path: &Option<PathBuf>) -> Option<&Path> {
    path.as_deref().filter(|path| !path.as_os_str().is_empty())
}

impl TlsConfig {
    /// Whether TLS is asked for (both paths, as `check` makes sure).
    pub fn is_enabled(&self) -> bool {
        self.cert_path().is_some() && self.key_path().is_some()
    }

    pub fn cert_path(&self) -> Option<&Path> {
        set(&self.cert_path)
    }

    pub fn key_path(&self) -> Option<&Path> {
        set(&self.key_path)
    }

    pub fn client_ca_path(&self) -> Option<&Path> {
        set(&self.client_ca_path)
    }

    fn check(&self, section: &str, problems: &mut Vec<String>) {
        match (self.cert_path(), self.key_path()) {
            (Some(cert_path), Some(key_path)) => {
                if let Err(reason) = crate::tls::load_certified_key(cert_path, key_path) {
                    problems.push(format!("{section}.{reason}"));
                }
            }
            (Some(_), None) => problems.push(format!(
                "{section}.cert_path: set without key_path (both, or neither)"
            )),
            (None, Some(_)) => problems.push(format!(
                "{section}.key_path: set without cert_path (both, or neither)"
            )),
            (None, None) => {}
        }
        if let Some(ca_path) = self.client_ca_path() {
            if !self.is_enabled() {
                problems.push(format!(
                    "{section}.client_ca_path: needs cert_path and key_path (mutual TLS is TLS)"
                ));
            }
            if let Err(reason) = crate::tls::load_client_roots(ca_path) {
                problems.push(format!("{section}.client_ca_path: {reason}"));
            }
        }
    }
}

impl GrpcConfig {
    /// Any free port on loopback (tests).
    pub fn ephemeral() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Self::default()
        }
    }

    pub fn listen_or(&self, default_port: u16) -> SocketAddr {
        self.listen
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], default_port)))
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: None,
            grace_period: Duration::from_secs(20),
            tls: TlsConfig::default(),
            health_listen: None,
        }
    }
}

impl Section for GrpcConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        if self.grace_period.is_zero() {
            problems.push(format!("{section}.grace_period_ms: must be more than 0"));
        }
        if let (Some(listen), Some(health)) = (self.listen, self.health_listen)
            && listen == health
            && listen.port() != 0
        {
            problems.push(format!(
                "{section}.health_listen: {health} is also grpc.listen; give the probes a port of their own"
            ));
        }
        self.tls.check(&format!("{section}.tls"), problems);
    }
}

/// `[database]`: the service's own PostgreSQL database.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    pub max_connections: u32,
    /// Create the database when it does not exist (development and tests).
    pub create_if_missing: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 10,
            create_if_missing: false,
        }
    }
}

impl DatabaseConfig {
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("create_if_missing", &self.create_if_missing)
            .finish()
    }
}

impl Section for DatabaseConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        if self.url.is_empty() {
            problems.push(format!(
                "{section}.url: required (postgres://user:password@host:port/database)"
            ));
        } else if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            problems.push(format!(
                "{section}.url: must start with postgres:// or postgresql://"
            ));
        }
        if self.max_connections == 0 {
            problems.push(format!("{section}.max_connections: must be at least 1"));
        }
    }
}

/// A URL with its password replaced, for logs: the one in the credentials and the
/// `password` parameter, which PostgreSQL's URLs also take.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (address, query) = match rest.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (rest, None),
    };
    // The last `@` of the authority ends the credentials: a password may hold one.
    let authority_end = address.find('/').unwrap_or(address.len());
    let (authority, path) = address.split_at(authority_end);
    let mut redacted = match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => format!("{scheme}://{credentials}@{host}{path}"),
        },
        None => format!("{scheme}://{address}"),
    };
    if let Some(query) = query {
        let parameters: Vec<String> = query
            .split('&')
            .map(|parameter| match parameter.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
                _ => parameter.to_owned(),
            })
            .collect();
        redacted = format!("{redacted}?{}", parameters.join("&"));
    }
    redacted
}

/// `[nats]`: the event bus.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://host:port`, or `tls://host:port` to require TLS; the seeds of a
    /// cluster separated by commas (`tls://nats-0:4222,tls://nats-1:4222`): the client
    /// connects to one and reconnects to another when it goes.
    pub url: String,
    /// How many JetStream servers keep each of the service's streams (1, 3 or 5; at
    /// most the cluster's size). Consumers follow their stream.
    pub replicas: usize,
    /// The service's own NATS user, whose permissions let it publish only its own
    /// subjects (deploy/nats/permissions.conf.in); none when empty. Also names the
    /// client's inbox prefix, `_INBOX.<user>`, the one subject it may receive on.
    pub user: String,
    /// The user's password (a secret: never logged).
    #[serde(deserialize_with = "text")]
    pub password: String,
    /// The CA that signed the server's certificate (PEM). When set, the connection
    /// is TLS and the server must present a certificate this CA signed.
    pub ca_path: Option<PathBuf>,
    /// A client certificate (PEM) to present, with `key_path`; for a server that asks
    /// for one.
    pub cert_path: Option<PathBuf>,
    /// The client certificate's private key (PEM), with `cert_path`.
    pub key_path: Option<PathBuf>,
    /// First token of every subject and prefix of every stream (`hosted`).
    pub namespace: String,
    /// JetStream de-duplication window of the service's stream.
    #[serde(
        deserialize_with = "parse_duration_millis",
        rename = "duplicate_window_ms"
    )]
    pub duplicate_window: Duration,
    /// Deliveries of one event before it goes to the dead letters.
    pub max_deliver: i64,
    /// How long an event delivered to a consumer that neither acknowledges it nor says
    /// it is still working on it waits before it is delivered again: short, so that
    /// the events of a consumer that died come back soon; the inbox sends in-progress
    /// acknowledgements every third of it while it works on (or retries) a batch.
    #[serde(deserialize_with = "parse_duration_millis", rename = "ack_wait_ms")]
    pub ack_wait: Duration,
    /// How long the outbox relay waits for one batch's acknowledgements, all together,
    /// before it gives up on the batch and tries again.
    #[serde(
        deserialize_with = "parse_duration_millis",
        rename = "publish_timeout_ms"
    )]
    pub publish_timeout: Duration,
    /// Age of the oldest unpublished outbox event beyond which health reports the
    /// outbox (`hosted.<service>.outbox`) NOT_SERVING and a warning is logged.
    #[serde(
        deserialize_with = "parse_duration_millis",
        rename = "outbox_stale_after_ms"
    )]
    pub outbox_stale_after: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            replicas: 1,
            user: String::new(),
            password: String::new(),
            ca_path: None,
            cert_path: None,
            key_path: None,
            namespace: hosted_contracts::subjects::Namespace::DEFAULT.to_owned(),
            duplicate_window: Duration::from_secs(120),
            max_deliver: 5,
            ack_wait: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(5),
            outbox_stale_after: Duration::from_secs(60),
        }
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.password.is_empty() { "" } else { "***" };
        f.debug_struct("NatsConfig")
            .field("url", &self.url)
            .field("replicas", &self.replicas)
            .field("user", &self.user)
            .field("password", &password)
            .field("ca_path", &self.ca_path)
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("namespace", &self.namespace)
            .field("duplicate_window", &self.duplicate_window)
            .field("max_deliver", &self.max_deliver)
            .field("ack_wait", &self.ack_wait)
            .field("publish_timeout", &self.publish_timeout)
            .field("outbox_stale_after", &self.outbox_stale_after)
            .finish()
    }
}

impl Section for NatsConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        if self.url.is_empty() {
            problems.push(format!(
                "{section}.url: required (nats://host:port, or tls://host:port)"
            ));
        }
        for seed in self.seeds() {
            if let Err(error) = seed.parse::<async_nats::ServerAddr>() {
                problems.push(format!("{section}.url: {seed}: {error}"));
            }
        }
        if ![1, 3, 5].contains(&self.replicas) {
            problems.push(format!(
                "{section}.replicas: 1, 3 or 5 (JetStream keeps a majority of them)"
            ));
        }
        // The user name is also a subject token (the inbox prefix `_INBOX.<user>`).
        let token_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if !self.user.chars().all(token_char) {
            problems.push(format!(
                "{section}.user: letters, digits, '-' or '_' only (it names the inbox prefix _INBOX.<user>)"
            ));
        }
        match (self.user.is_empty(), self.password.is_empty()) {
            (true, false) => problems.push(format!(
                "{section}.password: set without {section}.user (both, or neither)"
            )),
            (false, true) => problems.push(format!(
                "{section}.password: required with {section}.user (or {section}.password_file)"
            )),
            _ => {}
        }
        match (&self.cert_path, &self.key_path) {
            (Some(_), None) => problems.push(format!(
                "{section}.key_path: required with {section}.cert_path"
            )),
            (None, Some(_)) => problems.push(format!(
                "{section}.cert_path: required with {section}.key_path"
            )),
            _ => {}
        }
        for (field, path) in [
            ("ca_path", &self.ca_path),
            ("cert_path", &self.cert_path),
            ("key_path", &self.key_path),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                problems.push(format!(
                    "{section}.{field}: {} is not a readable file",
                    path.display()
                ));
            }
        }
        if let Err(reason) = hosted_contracts::subjects::Namespace::new(self.namespace.clone()) {
            problems.push(format!("{section}.namespace: {reason}"));
        }
        if self.duplicate_window.is_zero() {
            problems.push(format!(
                "{section}.duplicate_window_ms: must be more than 0"
            ));
        }
        if self.max_deliver < 1 {
            problems.push(format!("{section}.max_deliver: must be at least 1"));
        }
        if self.ack_wait < Duration::from_secs(1) {
            problems.push(format!("{section}.ack_wait_ms: must be at least 1000"));
        }
        if self.publish_timeout < Duration::from_millis(100) {
            problems.push(format!(
                "{section}.publish_timeout_ms: must be at least 100"
            ));
        }
        if self.outbox_stale_after < Duration::from_millis(100) {
            problems.push(format!(
                "{section}.outbox_stale_after_ms: must be at least 100"
            ));
        }
    }
}

impl NatsConfig {
    /// Whether the connection must be TLS: asked for by the URL, or implied by a CA
    /// or a client certificate (never sent in clear to a server that does not ask).
    pub fn tls_required(&self) -> bool {
        self.seeds().any(|seed| seed.starts_with("tls://"))
            || self.ca_path.is_some()
            || self.cert_path.is_some()
    }

    /// The servers `url` names, one or more (separated by commas).
    pub fn seeds(&self) -> impl Iterator<Item = &str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|seed| !seed.is_empty())
    }

    pub fn namespace(&self) -> hosted_contracts::subjects::Namespace {
        hosted_contracts::subjects::Namespace::new(self.namespace.clone()).unwrap_or_default()
    }
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[telemetry]`: logs and traces.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// A `tracing` env-filter, e.g. `info,hosted_directory=debug`; `RUST_LOG` wins.
    pub filter: String,
    pub format: LogFormat,
    /// OTLP/gRPC endpoint of a collector, e.g. `http://127.0.0.1:4317`; no export when empty.
    pub otlp_endpoint: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
            format: LogFormat::Text,
            otlp_endpoint: String::new(),
        }
    }
}

impl Section for TelemetryConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        if let Err(error) = crate::telemetry::log_filter(&self.filter) {
            problems.push(format!("{section}.filter: {error}"));
        }
        let http =
            self.otlp_endpoint.starts_with("http://") || self.otlp_endpoint.starts_with("https://");
        if !self.otlp_endpoint.is_empty() && !http {
            problems.push(format!(
                "{section}.otlp_endpoint: must start with http:// or https://"
            ));
        }
    }
}

/// `[auth]`: who may call, with which roles.
///
/// ```toml
/// [auth.callers.deve-portal]
/// token_sha256 = "…"          # hlctl hash-token prints it
/// roles = ["deve"]
///
/// [auth.callers.library]      # mutual TLS: a client certificate instead of a token
/// certificate_subject = "CN=integrator-library,O=Université Exemple"
/// roles = ["integrator"]
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub callers: BTreeMap<String, CallerConfig>,
}

#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallerConfig {
    /// Hex SHA-256 of the caller's bearer token; the token itself is never stored.
    /// May be left out when `certificate_subject` is given.
    #[serde(deserialize_with = "text")]
    pub token_sha256: String,
    #[serde(deserialize_with = "roles_from_list_or_string")]
    pub roles: Vec<String>,
    /// The subject of the caller's client certificate, RFC 4514 text as
    /// `openssl x509 -noout -subject -nameopt RFC2253` prints it (most specific first:
    /// `CN=integrator-library,O=Université Exemple`). A connection whose verified
    /// client certificate has exactly this subject is this caller (see
    /// [`crate::auth`]); it needs `grpc.tls.client_ca_path`.
    pub certificate_subject: String,
}

impl fmt::Debug for CallerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerConfig")
            .field("token_sha256", &"***")
            .field("roles", &self.roles)
            .field("certificate_subject", &self.certificate_subject)
            .finish()
    }
}

/// Roles come as a TOML list or, from the environment, as `deve,dosi`.
fn roles_from_list_or_string<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }
    Ok(match ListOrString::deserialize(deserializer)? {
        ListOrString::List(roles) => roles,
        ListOrString::String(roles) => roles
            .split(',')
            .map(|role| role.trim().to_owned())
            .filter(|role| !role.is_empty())
            .collect(),
    })
}

impl Section for AuthConfig {
    fn check(&self, section: &str, problems: &mut Vec<String>) {
        let _ = self.callers(section, problems);
    }
}

impl AuthConfig {
    /// The configured callers, checked.
    pub fn callers(&self, section: &str, problems: &mut Vec<String>) -> Vec<Caller> {
        let mut callers = Vec::new();
        for (name, caller) in &self.callers {
            let field = format!("{section}.callers.{name}");
            let mut ok = true;
            if name == crate::auth::SYSTEM {
                problems.push(format!(
                    "{field}: {:?} is the actor of what the calendar does, not a caller's name",
                    crate::auth::SYSTEM
                ));
                ok = false;
            }
            let subject = caller.certificate_subject.trim();
            let subject = if subject.is_empty() {
                None
            } else {
                match crate::auth::canonical_subject(subject) {
                    Ok(canonical) => Some(canonical),
                    Err(reason) => {
                        problems.push(format!("{field}.certificate_subject: {reason}"));
                        ok = false;
                        None
                    }
                }
            };
            let hash = match hex::decode(&caller.token_sha256) {
                Ok(hash) if hash.len() == 32 => hash.try_into().ok(),
                _ if caller.token_sha256.is_empty() && !caller.certificate_subject.is_empty() => {
                    None
                }
                _ => {
                    problems.push(format!(
                        "{field}.token_sha256: must be 64 hexadecimal digits{}",
                        if caller.token_sha256.is_empty() {
                            " (or give certificate_subject)"
                        } else {
                            ""
                        }
                    ));
                    ok = false;
                    None
                }
            };
            if caller.roles.is_empty() {
                problems.push(format!("{field}.roles: at least one role is required"));
                ok = false;
            }
            let mut roles = Vec::new();
            for role in &caller.roles {
                match role.parse::<Role>() {
                    Ok(role) => roles.push(role),
                    Err(reason) => {
                        problems.push(format!("{field}.roles: {reason}"));
                        ok = false;
                    }
                }
            }
            if ok {
                callers.push(Caller::new(name.clone(), hash, subject, roles));
            }
        }
        let mut by_subject: BTreeMap<&str, &str> = BTreeMap::new();
        for caller in &callers {
            if let Some(subject) = caller.certificate_subject()
                && let Some(first) = by_subject.insert(subject, caller.name())
            {
                problems.push(format!(
                    "{section}.callers.{}.certificate_subject: {subject:?} is already caller {first}'s",
                    caller.name()
                ));
            }
        }
        callers
    }
}

#[cfg(test)]
// figment's Jail returns its own (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        port: u16,
    }
    impl Section for Sample {}

    #[test]
    fn the_metrics_port_is_none_of_the_grpc_ports() {
        let address = |port: u16| Some(SocketAddr::from(([0, 0, 0, 0], port)));
        let grpc = GrpcConfig {
            listen: address(50051),
            health_listen: address(8081),
            ..GrpcConfig::default()
        };
        let metrics = |port: u16| MetricsConfig {
            listen: address(port),
            ..MetricsConfig::default()
        };
        assert!(metrics(9464).conflicts(&grpc).is_empty());
        assert!(MetricsConfig::ephemeral().conflicts(&grpc).is_empty());
        let on_grpc = metrics(50051).conflicts(&grpc);
        assert_eq!(on_grpc.len(), 1, "{on_grpc:?}");
        assert!(on_grpc[0].contains("is also grpc.listen"), "{on_grpc:?}");
        let on_health = metrics(8081).conflicts(&grpc);
        assert_eq!(on_health.len(), 1, "{on_health:?}");
        assert!(
            on_health[0].contains("is also grpc.health_listen"),
            "{on_health:?}"
        );

        let mut problems = Vec::new();
        MetricsConfig {
            sample_interval: Duration::from_millis(10),
            sample_timeout: Duration::ZERO,
            ..MetricsConfig::default()
        }
        .check("metrics", &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn a_cluster_is_named_by_its_seeds_and_streams_keep_an_odd_number_of_replicas() {
        let mut nats = NatsConfig {
            url: "tls://nats-0:4222, tls://nats-1:4222,".to_owned(),
            replicas: 3,
            ..NatsConfig::default()
        };
        let mut problems = Vec::new();
        nats.check("nats", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            nats.seeds().collect::<Vec<_>>(),
            ["tls://nats-0:4222", "tls://nats-1:4222"]
        );
        assert!(nats.tls_required());

        nats.replicas = 2;
        nats.url = "nats://nats-0:4222,nats://:::".to_owned();
        nats.check("nats", &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("nats.url: nats://:::"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("nats.replicas: 1, 3 or 5"),
            "{problems:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SVC__GRPC__LISTEN", "not-an-address");
            jail.set_env("SVC__DATABASE__URL", "mysql://x");
            jail.set_env("SVC__NATS__NAMESPACE", "Bad.Name");
            jail.set_env("SVC__SAMPLE__PORT", "70000");
            jail.set_env("SVC__NOPE__X", "1");
            let mut loader = Loader::new("SVC", None);
            let _: GrpcConfig = loader.section("grpc");
            let _: DatabaseConfig = loader.section("database");
            let _: NatsConfig = loader.section("nats");
            let _: Sample = loader.section("sample");
            let problems = loader.finish().expect_err("invalid").0;
            let joined = problems.join("\n");
            assert_eq!(problems.len(), 5, "{joined}");
            for field in [
                "grpc.listen",
                "database.url",
                "nats.namespace",
                "sample.port",
                "nope",
            ] {
                assert!(joined.contains(field), "{field} missing from {joined}");
            }
            Ok(())
        });
    }

    #[test]
    fn nats_identity_and_tls_are_checked_field_by_field() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SVC__NATS__USER", "in.take");
            jail.set_env("SVC__NATS__CA_PATH", "no-such-ca.pem");
            jail.set_env("SVC__NATS__CERT_PATH", "no-such-cert.pem");
            let mut loader = Loader::new("SVC", None);
            let nats: NatsConfig = loader.section("nats");
            let problems = loader.finish().expect_err("invalid").0;
            let joined = problems.join("\n");
            for field in [
                "nats.user: letters",
                "nats.password: required with nats.user",
                "nats.key_path: required with nats.cert_path",
                "nats.ca_path: no-such-ca.pem is not a readable file",
                "nats.cert_path: no-such-cert.pem is not a readable file",
            ] {
                assert!(joined.contains(field), "{field} missing from {joined}");
            }
            assert!(nats.tls_required(), "a CA asks for TLS");
            Ok(())
        });
    }

    #[test]
    fn nats_password_is_read_as_text_and_never_shown() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SVC__NATS__USER", "intake");
            jail.set_env("SVC__NATS__PASSWORD", "0123");
            let mut loader = Loader::new("SVC", None);
            let nats: NatsConfig = loader.section("nats");
            loader.finish().map_err(|e| e.to_string())?;
            assert_eq!(nats.password, "0123");
            assert!(!nats.tls_required(), "nats:// without a CA is plain");
            let shown = format!("{nats:?}");
            assert!(!shown.contains("0123"), "{shown}");
            assert!(shown.contains("intake"), "{shown}");
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "svc.toml",
                "[database]\nurl = \"postgres://a@h/db\"\nmax_connections = 3\n",
            )?;
            jail.set_env("SVC__DATABASE__MAX_CONNECTIONS", "7");
            let mut loader = Loader::new("SVC", Some(Path::new("svc.toml")));
            let database: DatabaseConfig = loader.section("database");
            loader.finish().map_err(|e| e.to_string())?;
            assert_eq!(database.url, "postgres://a@h/db");
            assert_eq!(database.max_connections, 7);
            Ok(())
        });
    }

    #[test]
    fn callers_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SVC__AUTH__CALLERS__PORTAL__TOKEN_SHA256", "ab".repeat(32));
            jail.set_env("SVC__AUTH__CALLERS__PORTAL__ROLES", "deve,dosi");
            jail.set_env("SVC__AUTH__CALLERS__BROKEN__TOKEN_SHA256", "xyz");
            jail.set_env("SVC__AUTH__CALLERS__BROKEN__ROLES", "dean");
            let mut loader = Loader::new("SVC", None);
            let auth: AuthConfig = loader.section("auth");
            let problems = loader.finish().expect_err("broken caller").0;
            assert_eq!(problems.len(), 2, "{problems:?}");
            assert!(problems.iter().any(|p| p.contains("broken.token_sha256")));
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains("broken.roles") && p.contains("dean"))
            );
            let mut more = Vec::new();
            let callers = auth.callers("auth", &mut more);
            assert_eq!(callers.len(), 1);
            assert_eq!(callers[0].roles(), &[Role::Deve, Role::Dosi]);
            Ok(())
        });
    }

    #[test]
    fn no_caller_may_take_the_calendars_name() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SVC__AUTH__CALLERS__SYSTEM__TOKEN_SHA256", "ab".repeat(32));
            jail.set_env("SVC__AUTH__CALLERS__SYSTEM__ROLES", "dosi");
            let mut loader = Loader::new("SVC", None);
            let auth: AuthConfig = loader.section("auth");
            let problems = loader.finish().expect_err("a caller named system").0;
            assert!(
                problems.iter().any(|p| p.contains("callers.system")),
                "{problems:?}"
            );
            assert!(auth.callers("auth", &mut Vec::new()).is_empty());
            Ok(())
        });
    }

    #[test]
    fn numeric_looking_text_stays_text() {
        #[derive(Debug, Default, Deserialize)]
        #[serde(default)]
        struct Secret {
            #[serde(deserialize_with = "text")]
            password: String,
        }
        impl Section for Secret {}
        figment::Jail::expect_with(|jail| {
            jail.set_env("SVC__SECRET__PASSWORD", "0123456789");
            let mut loader = Loader::new("SVC", None);
            let secret: Secret = loader.section("secret");
            loader.finish().map_err(|e| e.to_string())?;
            assert_eq!(secret.password, "0123456789");
            Ok(())
        });
    }

    #[test]
    fn a_rehearsal_clock_takes_both_settings_and_nothing_else() {
        let load = |env: &[(&str, &str)]| {
            let mut outcome = None;
            figment::Jail::expect_with(|jail| {
                for (name, value) in env {
                    jail.set_env(name, value);
                }
                let mut loader = Loader::new("SVC", None);
                let clock: ClockConfig = loader.section("clock");
                outcome = Some(loader.finish().map(|()| clock).map_err(|e| e.0));
                Ok(())
            });
            outcome.expect("loaded")
        };
        let off = load(&[]).expect("the default");
        assert!(!off.clock().is_rehearsal());
        let on = load(&[
            ("SVC__CLOCK__REHEARSAL_DAYS_PER_MINUTE", "10"),
            ("SVC__CLOCK__REHEARSAL_STARTED_AT", "2026-12-01T09:00:00Z"),
        ])
        .expect("both settings");
        assert!(on.clock().is_rehearsal());
        for (env, field) in [
            (
                &[("SVC__CLOCK__REHEARSAL_DAYS_PER_MINUTE", "10")][..],
                "clock.rehearsal_days_per_minute: set without rehearsal_started_at",
            ),
            (
                &[("SVC__CLOCK__REHEARSAL_STARTED_AT", "2026-12-01T09:00:00Z")][..],
                "clock.rehearsal_started_at: set without rehearsal_days_per_minute",
            ),
            (
                &[
                    ("SVC__CLOCK__REHEARSAL_DAYS_PER_MINUTE", "10"),
                    ("SVC__CLOCK__REHEARSAL_STARTED_AT", "yesterday"),
                ][..],
                "clock.rehearsal_started_at: not an RFC 3339 instant",
            ),
            (
                &[
                    ("SVC__CLOCK__REHEARSAL_DAYS_PER_MINUTE", "1000"),
                    ("SVC__CLOCK__REHEARSAL_STARTED_AT", "2026-12-01T09:00:00Z"),
                ][..],
                "clock.rehearsal_days_per_minute: 1000 days per minute: from 1 to 60",
            ),
        ] {
            let problems = load(env).expect_err(field);
            assert!(
                problems.iter().any(|problem| problem.starts_with(field)),
                "{field}: {problems:?}"
            );
        }
    }

    #[test]
    fn secrets_come_from_files_in_the_file_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            // Arrange: the URL from a file named in the TOML file, a caller's digest from
            // a file named by the environment, both with the trailing newline editors add.
            jail.create_file("database-url", "postgres://svc:pw0123@h/db\n")?;
            jail.create_file("portal-digest", &format!("{}\r\n", "ab".repeat(32)))?;
            jail.create_file(
                "svc.toml",
                "[database]\nurl_file = \"database-url\"\n[auth.callers.portal]\nroles = [\"deve\"]\n",
            )?;
            jail.set_env(
                "SVC__AUTH__CALLERS__PORTAL__TOKEN_SHA256_FILE",
                "portal-digest",
            );
            // Act
            let mut loader = Loader::new("SVC", Some(Path::new("svc.toml")));
            let database: DatabaseConfig = loader.section("database");
            let auth: AuthConfig = loader.section("auth");
            loader.finish().map_err(|e| e.to_string())?;
            // Assert
            assert_eq!(database.url, "postgres://svc:pw0123@h/db");
            assert_eq!(auth.callers["portal"].token_sha256, "ab".repeat(32));
            assert_eq!(auth.callers("auth", &mut Vec::new()).len(), 1);
            Ok(())
        });
    }

    #[test]
    fn a_secret_given_twice_or_from_a_missing_file_is_a_problem_that_never_shows_it() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("database-url", "postgres://svc:hunter2@h/db")?;
            jail.create_file(
                "svc.toml",
                "[database]\nurl = \"postgres://svc:swordfish@h/db\"\n",
            )?;
            jail.set_env("SVC__DATABASE__URL_FILE", "database-url");
            jail.set_env(
                "SVC__AUTH__CALLERS__PORTAL__TOKEN_SHA256_FILE",
                "no-such-file",
            );
            jail.set_env("SVC__AUTH__CALLERS__PORTAL__ROLES", "deve");
            let mut loader = Loader::new("SVC", Some(Path::new("svc.toml")));
            let _: DatabaseConfig = loader.section("database");
            let _: AuthConfig = loader.section("auth");
            let problems = loader.finish().expect_err("two problems").0;
            let joined = problems.join("\n");
            assert!(
                joined.contains("database.url and database.url_file: both set"),
                "{joined}"
            );
            assert!(
                joined.contains("auth.callers.portal.token_sha256_file: no-such-file: cannot read"),
                "{joined}"
            );
            for secret in ["hunter2", "swordfish"] {
                assert!(!joined.contains(secret), "{joined}");
            }
            Ok(())
        });
    }

    #[test]
    fn tls_takes_both_paths_readable_and_of_one_pair() {
        let pem = |name: &str| {
            let key = rcgen::KeyPair::generate().expect("key");
            let certificate = rcgen::CertificateParams::new(vec![name.to_owned()])
                .expect("params")
                .self_signed(&key)
                .expect("certificate");
            (certificate.pem(), key.serialize_pem())
        };
        let load = |files: &[(&str, &str)], env: &[(&str, &str)]| {
            let mut problems = Vec::new();
            figment::Jail::expect_with(|jail| {
                for (name, content) in files {
                    jail.create_file(name, content)?;
                }
                for (name, value) in env {
                    jail.set_env(name, value);
                }
                let mut loader = Loader::new("SVC", None);
                let _: GrpcConfig = loader.section("grpc");
                problems = loader.finish().err().map(|e| e.0).unwrap_or_default();
                Ok(())
            });
            problems
        };
        let (cert_a, key_a) = pem("a.example");
        let (_, key_b) = pem("b.example");
        let files = [
            ("a.pem", cert_a.as_str()),
            ("a.key", key_a.as_str()),
            ("b.key", key_b.as_str()),
            ("garbage.pem", "not PEM"),
        ];
        let good = [
            ("SVC__GRPC__TLS__CERT_PATH", "a.pem"),
            ("SVC__GRPC__TLS__KEY_PATH", "a.key"),
            ("SVC__GRPC__TLS__CLIENT_CA_PATH", "a.pem"),
        ];
        assert_eq!(load(&files, &good), Vec::<String>::new());
        for (env, expected) in [
            (
                &[("SVC__GRPC__TLS__CERT_PATH", "a.pem")][..],
                "grpc.tls.cert_path: set without key_path",
            ),
            (
                &[("SVC__GRPC__TLS__KEY_PATH", "a.key")][..],
                "grpc.tls.key_path: set without cert_path",
            ),
            (
                &[
                    ("SVC__GRPC__TLS__CERT_PATH", "a.pem"),
                    ("SVC__GRPC__TLS__KEY_PATH", "b.key"),
                ][..],
                "grpc.tls.key_path: b.key: not the key of the certificate",
            ),
            (
                &[
                    ("SVC__GRPC__TLS__CERT_PATH", "missing.pem"),
                    ("SVC__GRPC__TLS__KEY_PATH", "a.key"),
                ][..],
                "grpc.tls.cert_path: missing.pem: cannot read",
            ),
            (
                &[
                    ("SVC__GRPC__TLS__CERT_PATH", "garbage.pem"),
                    ("SVC__GRPC__TLS__KEY_PATH", "a.key"),
                ][..],
                "grpc.tls.cert_path: garbage.pem: no PEM certificate",
            ),
            (
                &[("SVC__GRPC__TLS__CLIENT_CA_PATH", "a.pem")][..],
                "grpc.tls.client_ca_path: needs cert_path and key_path",
            ),
        ] {
            let problems = load(&files, env);
            assert!(
                problems.iter().any(|problem| problem.starts_with(expected)),
                "{expected}: {problems:?}"
            );
            assert!(
                !problems
                    .iter()
                    .any(|problem| problem.contains("PRIVATE KEY")),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let database = DatabaseConfig::with_url("postgres://svc:hunter2@h/db?password=swordfish");
        let caller = CallerConfig {
            token_sha256: "ab".repeat(32),
            roles: vec!["deve".to_owned()],
            certificate_subject: String::new(),
        };
        let shown = format!("{database:?} {caller:?}");
        for secret in ["hunter2", "swordfish", &"ab".repeat(32)] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        // An `@` in the password (unescaped) and the password as a parameter.
        assert_eq!(
            redact_url("postgres://u:p@ss@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=pw&x=1"),
            "postgres://u@h/db?sslmode=require&password=***&x=1"
        );
    }
}

/// Property tests: whatever an operator puts in the configuration file and the
/// environment, loading gives a configuration whose checks hold or every problem,
/// never a panic. Cases: proptest's (256, or `PROPTEST_CASES`).
#[cfg(test)]
#[allow(clippy::result_large_err)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// The fields of the common sections, as environment variables name them.
    const FIELDS: [&str; 23] = [
        "GRPC__LISTEN",
        "GRPC__GRACE_PERIOD_MS",
        "GRPC__HEALTH_LISTEN",
        "GRPC__TLS__CERT_PATH",
        "GRPC__TLS__KEY_PATH",
        "DATABASE__URL",
        "DATABASE__URL_FILE",
        "DATABASE__MAX_CONNECTIONS",
        "DATABASE__CREATE_IF_MISSING",
        "NATS__URL",
        "NATS__USER",
        "NATS__PASSWORD",
        "NATS__NAMESPACE",
        "NATS__DUPLICATE_WINDOW_MS",
        "NATS__MAX_DELIVER",
        "NATS__ACK_WAIT_MS",
        "TELEMETRY__FILTER",
        "TELEMETRY__FORMAT",
        "TELEMETRY__OTLP_ENDPOINT",
        "AUTH__CALLERS__PORTAL__ROLES",
        "CLOCK__TIME_ZONE",
        "CLOCK__REHEARSAL_DAYS_PER_MINUTE",
        "CLOCK__REHEARSAL_STARTED_AT",
    ];

    /// A value as the environment holds it: text without NUL.
    fn env_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "-?[0-9]{1,25}",
            prop::sample::select(vec![
                "",
                "0",
                "true",
                "yes",
                "127.0.0.1:0",
                "[::1]:50051",
                "postgres://u:p@h/db",
                "json",
                "Europe/Paris",
                "Mars/Olympus",
                "deve,legal",
                "hosted",
                "debug,x=",
                "1e3",
                "NaN",
                "2026-12-01T09:00:00Z",
                "-0",
            ])
            .prop_map(str::to_owned),
            "[^\\x00]{0,20}",
        ]
    }

    fn env_name() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
            1 => "[A-Z_]{0,12}(__[A-Z_]{0,8}){0,3}",
        ]
    }

    /// A TOML basic string (JSON's escapes are TOML's, but for DEL, which makes the
    /// file invalid: also worth a case).
    fn quoted(text: &str) -> String {
        serde_json::to_string(text).unwrap_or_default()
    }

    /// A configuration file: sections and fields right or wrong, values of any type,
    /// or any text.
    fn file_text() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            "\\PC{0,12}".prop_map(|text| quoted(&text)),
            Just("[1, \"a\"]".to_owned()),
            Just("{ x = 1 }".to_owned()),
            Just("1.5".to_owned()),
        ];
        prop_oneof![
            4 => prop::collection::vec((env_name(), value), 0..6).prop_map(|fields| {
                fields
                    .into_iter()
                    .map(|(name, value)| {
                        let path: Vec<String> =
                            name.split("__").map(|part| quoted(&part.to_lowercase())).collect();
                        let (key, table) = path.split_last().map(|(key, table)| (key.clone(), table.join("."))).unwrap_or_default();
                        if table.is_empty() {
                            format!("{key} = {value}\n")
                        } else {
                            format!("[{table}]\n{key} = {value}\n")
                        }
                    })
                    .collect::<String>()
            }),
            1 => "\\PC{0,100}",
        ]
    }

    /// What a loaded configuration promises when no problem was found.
    fn checks_hold(config: &CommonConfig) -> bool {
        !config.grpc.grace_period.is_zero()
            && (config.grpc.tls.cert_path().is_some() == config.grpc.tls.key_path().is_some())
            && (config.database.url.starts_with("postgres://")
                || config.database.url.starts_with("postgresql://"))
            && config.database.max_connections >= 1
            && config.nats.max_deliver >= 1
            && config.nats.ack_wait >= Duration::from_secs(1)
            && crate::clock::Clock::new(&config.clock.time_zone).is_ok()
            && config.clock.rehearsal().is_ok()
    }

    /// Set for the child process of the test below.
    const CHILD: &str = "HOSTED_CONFIG_TEST_CHILD";

    /// Found by looking for what the properties cannot generate: `std::env::vars()`
    /// panics on any variable that is not UTF-8, ours or another program's. Setting
    /// one here would take `unsafe`: a child process of this test binary loads with
    /// two such variables.
    #[cfg(unix)]
    #[test]
    fn a_variable_that_is_not_utf8_is_a_problem_not_a_panic() {
        use std::os::unix::ffi::OsStringExt;

        let exe = std::env::current_exe().expect("the test binary");
        let output = std::process::Command::new(exe)
            .args([
                "--exact",
                "config::properties::loading_with_variables_that_are_not_utf8",
                "--ignored",
            ])
            .env(CHILD, "1")
            .env(
                "PROPTEST__CLOCK__TIME_ZONE",
                std::ffi::OsString::from_vec(b"Europe/Par\xC9s".to_vec()),
            )
            .env(
                "SOME_OTHER_PROGRAM",
                std::ffi::OsString::from_vec(b"caf\xE9".to_vec()),
            )
            .output()
            .expect("the child runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("1 passed"));
    }

    #[test]
    #[ignore = "run as a child process by a_variable_that_is_not_utf8_is_a_problem_not_a_panic"]
    fn loading_with_variables_that_are_not_utf8() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let mut loader = Loader::new("PROPTEST", None);
        let config = CommonConfig::load(&mut loader);
        let problems = loader.finish().expect_err("a problem").0;
        assert!(
            problems
                .iter()
                .any(|problem| problem == "PROPTEST__CLOCK__TIME_ZONE: not UTF-8 text"),
            "{problems:?}"
        );
        assert_eq!(config.clock.time_zone, DEFAULT_TIME_ZONE);
    }

    proptest! {
        #[test]
        fn any_log_filter_is_read_or_refused(
            text in prop_oneof![
                "[ \t,=a-zé¡_:\\[\\]{}.0-9\"]{0,24}",
                "\\PC{0,24}",
                any::<String>(),
            ],
        ) {
            // A filter read is the filter of the same directives without spaces.
            if let Ok(filter) = crate::telemetry::log_filter(&text) {
                let compact: String = text.split(',').map(str::trim).collect::<Vec<_>>().join(",");
                let again = crate::telemetry::log_filter(&compact).map(|filter| filter.to_string());
                prop_assert_eq!(again.ok(), Some(filter.to_string()));
            }
        }

        #[test]
        fn any_file_and_environment_load_or_say_why(
            file in proptest::option::of(file_text()),
            env in prop::collection::vec((env_name(), env_value()), 0..6),
        ) {
            let mut outcome = Ok(());
            figment::Jail::expect_with(|jail| {
                // The URL is required: most configurations give it, as services do.
                jail.set_env("PROPTEST__DATABASE__URL", "postgres://u:p@h/db");
                for (name, value) in &env {
                    jail.set_env(format!("PROPTEST__{name}"), value);
                }
                if let Some(text) = &file {
                    jail.create_file("service.toml", text)?;
                }
                let mut loader = Loader::new(
                    "PROPTEST",
                    file.as_ref().map(|_| Path::new("service.toml")),
                );
                let config = CommonConfig::load(&mut loader);
                let callers = config.auth.callers("auth", &mut Vec::new());
                if loader.finish().is_ok() && !checks_hold(&config) {
                    outcome = Err(TestCaseError::fail(format!("accepted: {config:?}")));
                }
                if callers.len() > config.auth.callers.len() {
                    outcome = Err(TestCaseError::fail("more callers than configured"));
                }
                Ok(())
            });
            outcome?;
        }
    }
}
