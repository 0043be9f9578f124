//! Calling the services: the caller's token on every call, and failures told the way
//! an operator (or a script reading the exit code) can act on them.
//!
//! A refusal by the server is a [`ServerError`] (exit code 1, its gRPC code and
//! message, one line per bad field); a mistake on the command line found after clap
//! is a [`Usage`] error (exit code 64, as clap's own).

use std::fmt;

use anyhow::{Context, bail};
use hosted_contracts::v1;
use tonic::{
    Code, Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

/// Exit code of a command line that is wrong (EX_USAGE, as the services use).
pub const EXIT_USAGE: u8 = 64;
/// Exit code of anything else that failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of `hlctl check` when entitlement answers no. Not 1, which says the
/// question could not be asked, nor 2, which says a command did part of its work.
pub const EXIT_DENIED: u8 = 3;

/// Intake's client, every call carrying the caller's token.
pub type IntakeClient =
    v1::intake_service_client::IntakeServiceClient<InterceptedService<Channel, Bearer>>;

/// Entitlement's client, every call carrying the caller's token.
pub type EntitlementClient =
    v1::entitlement_service_client::EntitlementServiceClient<InterceptedService<Channel, Bearer>>;

/// Cards's client, every call carrying the caller's token.
pub type CardsClient =
    v1::cards_service_client::CardsServiceClient<InterceptedService<Channel, Bearer>>;

/// A generated client that sends the caller's token with every call.
pub trait ServiceClient: Sized {
    fn with_bearer(channel: Channel, bearer: Bearer) -> Self;
}

impl ServiceClient for IntakeClient {
    fn with_bearer(channel: Channel, bearer: Bearer) -> Self {
        v1::intake_service_client::IntakeServiceClient::with_interceptor(channel, bearer)
    }
}

impl ServiceClient for EntitlementClient {
    fn with_bearer(channel: Channel, bearer: Bearer) -> Self {
        v1::entitlement_service_client::EntitlementServiceClient::with_interceptor(channel, bearer)
    }
}

impl ServiceClient for CardsClient {
    fn with_bearer(channel: Channel, bearer: Bearer) -> Self {
        v1::cards_service_client::CardsServiceClient::with_interceptor(channel, bearer)
    }
}

/// The caller's token, as an `authorization` header; none when hlctl presents a
/// client certificate instead (mutual TLS: the certificate says who calls).
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: Option<&str>) -> anyhow::Result<Self> {
        // An empty HLCTL_TOKEN is a missing one, not a credential to send.
        let Some(token) = token.filter(|token| !token.is_empty()) else {
            if CLIENT_TLS.get().is_some_and(|tls| tls.cert_path.is_some()) {
                return Ok(Self(None));
            }
            bail!(
                "a caller token is required: --token or HLCTL_TOKEN (or a client certificate: --cert-path)"
            );
        };
        Ok(Self(Some(
            format!("Bearer {token}")
                .parse()
                .context("the token is not printable ASCII")?,
        )))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert(hosted_contracts::headers::AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}

/// A request with the caller's token.
pub fn authorized<T>(token: Option<&str>, message: T) -> anyhow::Result<Request<T>> {
    let Bearer(value) = Bearer::new(token)?;
    let mut request = Request::new(message);
    if let Some(value) = value {
        request
            .metadata_mut()
            .insert(hosted_contracts::headers::AUTHORIZATION, value);
    }
    Ok(request)
}

/// How hlctl speaks TLS to `https://` addresses: the CA that signed the services'
/// certificates and, for mutual TLS, hlctl's own certificate and key.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub ca_path: Option<std::path::PathBuf>,
    pub cert_path: Option<std::path::PathBuf>,
    pub key_path: Option<std::path::PathBuf>,
}

/// Set once from the command line: every command reaches the services through
/// [`connect`] and [`lazy`], as it does with the addresses, so the TLS settings are
/// global options too rather than a parameter of every command.
static CLIENT_TLS: std::sync::OnceLock<ClientTls> = std::sync::OnceLock::new();

/// Uses `tls` for every `https://` address from now on (the first call wins).
pub fn use_tls(tls: ClientTls) {
    let _ = CLIENT_TLS.set(tls);
}

fn read(path: &std::path::Path, option: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{option} {}: cannot read", path.display()))
}

/// The endpoint of `address`: TLS for `https://`, with the configured CA (and client
/// certificate); plain text for `http://`.
fn endpoint(address: &str) -> anyhow::Result<tonic::transport::Endpoint> {
    let endpoint = Channel::from_shared(address.to_owned()).context("address")?;
    if !address.starts_with("https://") {
        return Ok(endpoint);
    }
    let settings = CLIENT_TLS.get().cloned().unwrap_or_default();
    let Some(ca_path) = settings.ca_path else {
        bail!(Usage(format!(
            "{address}: https:// needs the CA that signed the services' certificates: \
             --ca-path or HLCTL_CA_PATH"
        )));
    };
    let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
        tonic::transport::Certificate::from_pem(read(&ca_path, "--ca-path")?),
    );
    match (settings.cert_path, settings.key_path) {
        (Some(cert_path), Some(key_path)) => {
            tls = tls.identity(tonic::transport::Identity::from_pem(
                read(&cert_path, "--cert-path")?,
                read(&key_path, "--key-path")?,
            ));
        }
        (None, None) => {}
        _ => bail!(Usage(
            "--cert-path and --key-path go together (mutual TLS), or neither".to_owned()
        )),
    }
    endpoint
        .tls_config(tls)
        .with_context(|| format!("TLS settings for {address}"))
}

pub async fn connect(address: &str) -> anyhow::Result<Channel> {
    endpoint(address)?
        .connect()
        .await
        .with_context(|| format!("connecting to {address}"))
}

/// A channel to `address` that connects at its first call: a command that may not
/// need every service it is given does not fail on one that is away.
pub fn lazy(address: &str) -> anyhow::Result<Channel> {
    Ok(endpoint(address)?.connect_lazy())
}

/// A service at an address, for a caller. Nothing is checked or connected until the
/// first call: a command line that turns out wrong after clap (nothing to amend…)
/// is said before a missing token or a service that is away.
#[derive(Debug)]
pub struct Remote<C> {
    address: String,
    token: Option<String>,
    client: Option<C>,
}

/// Intake at an address, for a caller.
pub type Intake = Remote<IntakeClient>;

/// Entitlement at an address, for a caller.
pub type Entitlement = Remote<EntitlementClient>;

/// Cards at an address, for a caller.
pub type Cards = Remote<CardsClient>;

impl<C: ServiceClient> Remote<C> {
    pub fn new(address: &str, token: Option<&str>) -> Self {
        Self {
            address: address.to_owned(),
            token: token.map(str::to_owned),
            client: None,
        }
    }

    /// The client, connected on first use.
    pub async fn client(&mut self) -> anyhow::Result<&mut C> {
        if self.client.is_none() {
            let bearer = Bearer::new(self.token.as_deref())?;
            let channel = connect(&self.address).await?;
            self.client = Some(C::with_bearer(channel, bearer));
        }
        self.client.as_mut().context("the service's client")
    }
}

/// The server refused or failed a call.
#[derive(Debug)]
pub struct ServerError(pub Status);

impl ServerError {
    /// The gRPC code as the protocol (and intake's documentation) names it.
    pub fn code(&self) -> &'static str {
        code_name(self.0.code())
    }

    /// The bad fields of an INVALID_ARGUMENT, as `(field, reason)`.
    pub fn violations(&self) -> Vec<(String, String)> {
        if self.0.code() == Code::InvalidArgument {
            violations(self.0.message())
        } else {
            Vec::new()
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.0.message())
    }
}

impl std::error::Error for ServerError {}

/// For `.map_err(server_error)` on a call.
pub fn server_error(status: Status) -> anyhow::Error {
    ServerError(status).into()
}

/// The command line is wrong in a way clap cannot see (exit code 64).
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Fails with a [`Usage`] error.
pub fn usage<T>(message: impl Into<String>) -> anyhow::Result<T> {
    Err(Usage(message.into()).into())
}

pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A service's INVALID_ARGUMENT message is `invalid request: field: reason; field:
/// reason` (the same pairs as its google.rpc.BadRequest details, which would take
/// one more dependency to decode). A message of another shape has no pairs.
pub fn violations(message: &str) -> Vec<(String, String)> {
    let Some(list) = message.strip_prefix("invalid request: ") else {
        return Vec::new();
    };
    list.split("; ")
        .map(|pair| match pair.split_once(": ") {
            Some((field, reason)) => (field.to_owned(), reason.to_owned()),
            None => (String::new(), pair.to_owned()),
        })
        .collect()
}

/// Prints a failure on standard error and gives the exit code for it.
pub fn report(error: &anyhow::Error) -> u8 {
    if let Some(Usage(message)) = error.downcast_ref::<Usage>() {
        eprintln!("error: {message}\n\nFor more information, try '--help'.");
        return EXIT_USAGE;
    }
    let Some(server) = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<ServerError>())
    else {
        eprintln!("{}", describe(error));
        return EXIT_FAILURE;
    };
    // What hlctl was doing, then what the server said.
    let doing: Vec<String> = error
        .chain()
        .take_while(|cause| cause.downcast_ref::<ServerError>().is_none())
        .map(ToString::to_string)
        .collect();
    let prefix: String = doing.iter().map(|context| format!("{context}: ")).collect();
    let violations = server.violations();
    if violations.is_empty() {
        eprintln!("Error: {prefix}{server}");
    } else {
        eprintln!("Error: {prefix}{}: invalid request", server.code());
        for (field, reason) in violations {
            eprintln!("{}", violation_lines(&field, &reason));
        }
    }
    EXIT_FAILURE
}

/// One bad field, indented under the error. A reason of several lines (a TOML
/// parser's "expected …" under its message) keeps its lines under the field.
fn violation_lines(field: &str, reason: &str) -> String {
    let reason = reason.trim_end().replace('\n', "\n    ");
    if field.is_empty() {
        format!("  {reason}")
    } else {
        format!("  {field}: {reason}")
    }
}

/// An error as anyhow's `{:?}` shows it, without the backtrace it adds when
/// RUST_BACKTRACE is set: an operator's shell may have it set for other reasons.
fn describe(error: &anyhow::Error) -> String {
    let mut text = format!("Error: {error}");
    let causes: Vec<String> = error.chain().skip(1).map(ToString::to_string).collect();
    match causes.as_slice() {
        [] => {}
        [cause] => text.push_str(&format!("\n\nCaused by:\n    {cause}")),
        causes => {
            text.push_str("\n\nCaused by:");
            for (number, cause) in causes.iter().enumerate() {
                text.push_str(&format!("\n    {number}: {cause}"));
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_come_one_per_field() {
        assert_eq!(
            violations(
                "invalid request: stay.end_date: \"2027-02-30\" is not a date YYYY-MM-DD; reason: required: say why"
            ),
            vec![
                (
                    "stay.end_date".to_owned(),
                    "\"2027-02-30\" is not a date YYYY-MM-DD".to_owned()
                ),
                ("reason".to_owned(), "required: say why".to_owned()),
            ]
        );
        assert!(violations("learner not found").is_empty());
    }

    #[test]
    fn a_reason_of_several_lines_stays_under_its_field() {
        assert_eq!(
            violation_lines(
                "policy",
                "line 63: invalid table header\nexpected `.`, `]`\n"
            ),
            "  policy: line 63: invalid table header\n    expected `.`, `]`"
        );
        assert_eq!(violation_lines("", "required"), "  required");
    }

    #[test]
    fn server_errors_name_the_grpc_code() {
        let error = ServerError(Status::aborted("the learner is at version 3, not 2"));
        assert_eq!(
            error.to_string(),
            "ABORTED: the learner is at version 3, not 2"
        );
        assert!(error.violations().is_empty());
        let error = server_error(Status::invalid_argument("invalid request: a: b"));
        assert_eq!(
            error
                .downcast_ref::<ServerError>()
                .map(ServerError::violations),
            Some(vec![("a".to_owned(), "b".to_owned())])
        );
    }

    #[test]
    fn usage_and_server_errors_have_their_exit_codes() {
        assert_eq!(report(&Usage("nothing to amend".to_owned()).into()), 64);
        let refused =
            server_error(Status::not_found("agreement not found")).context("reading the agreement");
        assert_eq!(report(&refused), 1);
        assert_eq!(report(&anyhow::anyhow!("connecting")), 1);
    }

    #[test]
    fn other_errors_read_as_anyhow_shows_them() {
        assert_eq!(describe(&anyhow::anyhow!("a")), "Error: a");
        let error = anyhow::anyhow!("refused").context("connecting to x");
        assert_eq!(
            describe(&error),
            "Error: connecting to x\n\nCaused by:\n    refused"
        );
        let error = error.context("reading");
        assert_eq!(
            describe(&error),
            "Error: reading\n\nCaused by:\n    0: connecting to x\n    1: refused"
        );
    }

    #[test]
    fn a_token_is_required() {
        assert!(Bearer::new(None).is_err());
        assert!(Bearer::new(Some("")).is_err());
        assert!(Bearer::new(Some("demo-token")).is_ok());
        assert!(Bearer::new(Some("bad\ntoken")).is_err());
    }
}
