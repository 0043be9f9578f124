//! Who may call what: bearer credentials, roles, and a deny-by-default check in
//! front of every RPC.
//!
//! A caller is configured with the SHA-256 of its token (never the token), or the
//! subject of its client certificate, or both, and its roles; each service declares,
//! for every RPC it serves, the roles it accepts. A method that has no declaration is
//! refused, and a service that forgets to declare one of its RPCs does not start
//! ([`AccessPolicy::covering`]).
//!
//! Who the caller of a request is:
//!
//! - a bearer token alone: the caller whose digest it has;
//! - a verified client certificate (mutual TLS) alone: the caller whose
//!   `certificate_subject` is exactly the certificate's subject, as RFC 4514 text
//!   (attributes compared whole, never a substring or a prefix); a subject that is no
//!   caller's is UNAUTHENTICATED;
//! - both: they must name the same caller, or the call is UNAUTHENTICATED; a token
//!   cannot lend a certificate's connection another caller's roles, nor the reverse.
//!   A certificate whose subject is no caller's (a service's certificate presented
//!   for the transport only) leaves the token to say who calls.
//!
//! Tokens are compared by their SHA-256 digest, with every configured digest and in
//! constant time ([`digests_equal`]): a lookup in a map would stop at the first byte
//! that differs, and although a digest's timing tells little about the token behind
//! it, nothing about the configured digests should leak through how long a refusal
//! takes.

use std::{
    collections::HashMap,
    fmt,
    str::FromStr,
    sync::Arc,
    task::{Context, Poll},
};

use sha2::{Digest, Sha256};
use tonic::{Status, body::Body};
use tower::{Layer, Service};

/// A directorate or an integrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Studies and student life: registers and changes stays.
    Deve,
    /// Legal directorate: agreements.
    Legal,
    /// Finance: payments.
    Finance,
    /// Estates' card office.
    CardOffice,
    /// IT directorate: operations, policy, directory.
    Dosi,
    /// Library, wifi, door access: read-only questions.
    Integrator,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Deve,
        Role::Legal,
        Role::Finance,
        Role::CardOffice,
        Role::Dosi,
        Role::Integrator,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Deve => "deve",
            Role::Legal => "legal",
            Role::Finance => "finance",
            Role::CardOffice => "card-office",
            Role::Dosi => "dosi",
            Role::Integrator => "integrator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<_> = Role::ALL.iter().map(|role| role.as_str()).collect();
                format!("unknown role {name:?} (known: {})", known.join(", "))
            })
    }
}

/// A configured caller. Its name is what audit trails and events record as the actor.
#[derive(Clone)]
pub struct Caller {
    name: String,
    token_sha256: Option<[u8; 32]>,
    /// Canonical RFC 4514 text ([`canonical_subject`]).
    certificate_subject: Option<String>,
    roles: Vec<Role>,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("name", &self.name)
            .field("certificate_subject", &self.certificate_subject)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// `certificate_subject` as [`canonical_subject`] gives it.
    pub fn new(
        name: String,
        token_sha256: Option<[u8; 32]>,
        certificate_subject: Option<String>,
        roles: Vec<Role>,
    ) -> Self {
        Self {
            name,
            token_sha256,
            certificate_subject,
            roles,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    pub fn certificate_subject(&self) -> Option<&str> {
        self.certificate_subject.as_deref()
    }
}

/// A subject as configured (`CN=integrator-library,O=Université Exemple`), in the
/// one spelling that [`certificate_subject`] gives a certificate's: RFC 4514 text with
/// upper-case attribute names and no spaces around the separators.
pub fn canonical_subject(subject: &str) -> Result<String, String> {
    use std::str::FromStr;
    let compact: Vec<&str> = subject.split(',').map(str::trim).collect();
    let name = x509_cert::name::RdnSequence::from_str(&compact.join(",")).map_err(|error| {
        format!("{subject:?} is not a distinguished name as RFC 4514 writes it ({error})")
    })?;
    Ok(name.to_string())
}

/// The subject of a DER certificate as RFC 4514 text (most specific first), or `None`
/// when it does not parse (rustls has verified it; this cannot be expected).
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    use x509_cert::der::Decode;
    let certificate = x509_cert::Certificate::from_der(der).ok()?;
    Some(certificate.tbs_certificate.subject.to_string())
}

/// Whether two digests are equal, in a time that does not depend on where they differ.
pub fn digests_equal(left: &[u8; 32], right: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    left.ct_eq(right).into()
}

/// The hex SHA-256 of a token, as configured in `token_sha256`.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The actor of what the calendar does (a stay starts, a grant lapses): no caller
/// asked for it. No caller may be configured under this name.
pub const SYSTEM: &str = "system";

/// The authenticated caller of the current request, in the request's extensions.
#[derive(Debug, Clone)]
pub struct Actor(pub Arc<str>);

impl Actor {
    /// The actor of a tonic request; `unknown` cannot happen behind [`AuthLayer`].
    pub fn of<T>(request: &tonic::Request<T>) -> Actor {
        request
            .extensions()
            .get::<Actor>()
            .cloned()
            .unwrap_or_else(|| Actor(Arc::from("unknown")))
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

/// The roles each RPC accepts, by full method path (`/hosted.v1.IntakeService/RegisterStay`).
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    methods: HashMap<String, Vec<Role>>,
    open_prefixes: Vec<String>,
}

impl AccessPolicy {
    /// Builds the policy of one gRPC service from `(method, roles)` pairs, and checks it
    /// against the service's descriptor: every RPC declared, nothing unknown declared.
    pub fn covering(
        service_full_name: &str,
        rules: &[(&str, &[Role])],
        descriptor_set: &[u8],
    ) -> Result<Self, String> {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(descriptor_set)
            .map_err(|error| format!("descriptor set: {error}"))?;
        let (package, service_name) = service_full_name
            .rsplit_once('.')
            .ok_or_else(|| format!("{service_full_name}: not a full service name"))?;
        let methods: Vec<String> = set
            .file
            .iter()
            .filter(|file| file.package() == package)
            .flat_map(|file| file.service.iter())
            .filter(|service| service.name() == service_name)
            .flat_map(|service| service.method.iter().map(|method| method.name().to_owned()))
            .collect();
        if methods.is_empty() {
            return Err(format!(
                "{service_full_name}: no such service in the contracts"
            ));
        }
        let mut problems = Vec::new();
        for method in &methods {
            if !rules.iter().any(|(name, _)| name == method) {
                problems.push(format!("{service_full_name}/{method}: no roles declared"));
            }
        }
        for (name, roles) in rules {
            if !methods.iter().any(|method| method == name) {
                problems.push(format!(
                    "{service_full_name}/{name}: not an RPC of the service"
                ));
            }
            if roles.is_empty() {
                problems.push(format!("{service_full_name}/{name}: accepts no role"));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let methods = rules
            .iter()
            .map(|(name, roles)| (format!("/{service_full_name}/{name}"), roles.to_vec()))
            .collect();
        Ok(Self {
            methods,
            open_prefixes: Vec::new(),
        })
    }

    /// Merges the policies of several services served by one server.
    pub fn merge(mut self, other: AccessPolicy) -> Self {
        self.methods.extend(other.methods);
        self.open_prefixes.extend(other.open_prefixes);
        self
    }

    /// Paths under this prefix need no credential (health, reflection).
    pub fn open(mut self, prefix: &str) -> Self {
        self.open_prefixes.push(prefix.to_owned());
        self
    }

    /// The full paths of the methods the policy declares.
    pub fn methods(&self) -> Vec<String> {
        self.methods.keys().cloned().collect()
    }

    fn roles_for(&self, path: &str) -> Option<&[Role]> {
        self.methods.get(path).map(Vec::as_slice)
    }

    fn is_open(&self, path: &str) -> bool {
        self.open_prefixes
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
    }
}

/// The decision for one request.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Open,
    Allowed(Arc<str>),
    Unauthenticated(&'static str),
    /// Refused, with what the method needs (the roles it accepts).
    Denied(String),
}

#[derive(Debug)]
struct Authorizer {
    policy: AccessPolicy,
    callers: Vec<Caller>,
}

impl Authorizer {
    /// `certificate_subject`: the subject of the client certificate that TLS verified
    /// on this connection, if any.
    fn decide(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
        certificate_subject: Option<&str>,
    ) -> Decision {
        if self.policy.is_open(path) {
            return Decision::Open;
        }
        let by_certificate = certificate_subject.and_then(|subject| {
            self.callers
                .iter()
                .find(|caller| caller.certificate_subject.as_deref() == Some(subject))
        });
        let by_token = match authorization {
            None => None,
            Some(authorization) => match self.by_token(authorization) {
                Ok(caller) => Some(caller),
                Err(refusal) => return refusal,
            },
        };
        let caller = match (by_certificate, by_token) {
            (Some(certified), Some(bearer)) if certified.name != bearer.name => {
                return Decision::Unauthenticated(
                    "the bearer token and the client certificate name different callers",
                );
            }
            (Some(caller), _) | (None, Some(caller)) => caller,
            (None, None) if certificate_subject.is_some() => {
                return Decision::Unauthenticated(
                    "the client certificate's subject is no caller's, and no bearer credential",
                );
            }
            (None, None) => return Decision::Unauthenticated("missing bearer credential"),
        };
        match self.policy.roles_for(path) {
            Some(accepted) if caller.roles.iter().any(|role| accepted.contains(role)) => {
                Decision::Allowed(Arc::from(caller.name.as_str()))
            }
            Some(accepted) => Decision::Denied(format!(
                "the caller's roles do not allow this call: it needs one of: {}",
                accepted
                    .iter()
                    .map(|role| role.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => Decision::Denied("no role may call this method".to_owned()),
        }
    }

    /// The caller a bearer token names, or why the request is refused.
    fn by_token(&self, authorization: &[u8]) -> Result<&Caller, Decision> {
        // The scheme is case-insensitive (RFC 7235): `BEARER x` is `Bearer x`.
        let token = match std::str::from_utf8(authorization).ok().and_then(|value| {
            value
                .trim_start()
                .split_once(char::is_whitespace)
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token)
        }) {
            Some(token) if !token.trim().is_empty() => token.trim(),
            _ => {
                return Err(Decision::Unauthenticated(
                    "malformed authorization: expected \"Bearer <token>\"",
                ));
            }
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every configured digest is compared, in constant time, without stopping at
        // the match (see the module's documentation).
        let mut found = None;
        for caller in &self.callers {
            if let Some(configured) = &caller.token_sha256
                && digests_equal(configured, &digest)
            {
                found = Some(caller);
            }
        }
        found.ok_or(Decision::Unauthenticated("unknown credential"))
    }
}

/// The tower layer that authenticates and authorises every gRPC request.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authorizer: Arc<Authorizer>,
}

impl AuthLayer {
    pub fn new(policy: AccessPolicy, callers: Vec<Caller>) -> Self {
        Self {
            authorizer: Arc::new(Authorizer { policy, callers }),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            authorizer: self.authorizer.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    authorizer: Arc<Authorizer>,
}

impl<S> Service<http::Request<Body>> for AuthService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        // Present only when the server asked for client certificates and rustls
        // verified this one against `grpc.tls.client_ca_path`.
        let certificate_subject = request
            .extensions()
            .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
            .and_then(|info| info.peer_certs())
            .and_then(|certificates| certificates.first().and_then(|leaf| certificate_subject(leaf)));
        let decision = self.authorizer.decide(
            &path,
            request
                .headers()
                .get(hosted_contracts::headers::AUTHORIZATION)
                .map(|value| value.as_bytes()),
            certificate_subject.as_deref(),
        );
        let refusal = match decision {
            Decision::Open => None,
            Decision::Allowed(actor) => {
                request.extensions_mut().insert(Actor(actor));
                None
            }
            Decision::Unauthenticated(reason) => {
                tracing::info!(method = %path, reason, "call refused: unauthenticated");
                Some(Status::unauthenticated(reason))
            }
            Decision::Denied(reason) => {
                tracing::info!(method = %path, "call refused: permission denied");
                Some(Status::permission_denied(reason))
            }
        };
        if let Some(status) = refusal {
            return Box::pin(async move { Ok(status.into_http()) });
        }
        // The clone is ready only after poll_ready; take the ready one and leave the clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { inner.call(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorizer() -> Authorizer {
        let mut methods = HashMap::new();
        methods.insert(
            "/hosted.v1.IntakeService/RegisterStay".to_owned(),
            vec![Role::Deve],
        );
        let policy = AccessPolicy {
            methods,
            open_prefixes: vec!["/grpc.health.v1.Health/".to_owned()],
        };
        let digest = |token: &str| Some(Sha256::digest(token.as_bytes()).into());
        let caller = Caller::new(
            "portal".to_owned(),
            digest("s3cret"),
            Some("CN=portal,O=Univ".to_owned()),
            vec![Role::Deve],
        );
        let bank = Caller::new(
            "bank".to_owned(),
            digest("finance-only"),
            None,
            vec![Role::Finance],
        );
        let library = Caller::new(
            "library".to_owned(),
            None,
            Some("CN=library".to_owned()),
            vec![Role::Deve],
        );
        let layer = AuthLayer::new(policy, vec![caller, bank, library]);
        Arc::try_unwrap(layer.authorizer).expect("single owner")
    }

    #[test]
    fn decisions() {
        let authorizer = authorizer();
        let register = "/hosted.v1.IntakeService/RegisterStay";
        assert_eq!(
            authorizer.decide("/grpc.health.v1.Health/Check", None, None),
            Decision::Open
        );
        assert!(matches!(
            authorizer.decide(register, None, None),
            Decision::Unauthenticated(_)
        ));
        assert!(matches!(
            authorizer.decide(register, Some(b"Basic abc"), None),
            Decision::Unauthenticated(_)
        ));
        assert!(matches!(
            authorizer.decide(register, Some(b"Bearer wrong"), None),
            Decision::Unauthenticated(_)
        ));
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            assert_eq!(
                authorizer.decide(register, Some(format!("{scheme} s3cret").as_bytes()), None),
                Decision::Allowed(Arc::from("portal")),
                "{scheme}"
            );
        }
        assert_eq!(
            authorizer.decide(register, Some(b"Bearer\ts3cret"), None),
            Decision::Allowed(Arc::from("portal"))
        );
        assert_eq!(
            authorizer.decide(register, Some(b"Bearer finance-only"), None),
            Decision::Denied(
                "the caller's roles do not allow this call: it needs one of: deve".to_owned()
            )
        );
        assert!(matches!(
            authorizer.decide(register, Some(b"Bearers3cret"), None),
            Decision::Unauthenticated(_)
        ));
        assert!(matches!(
            authorizer.decide(register, Some(b"Bearer "), None),
            Decision::Unauthenticated(_)
        ));
        assert_eq!(
            authorizer.decide(
                "/hosted.v1.IntakeService/Undeclared",
                Some(b"Bearer s3cret"),
                None
            ),
            Decision::Denied("no role may call this method".to_owned())
        );
    }

    #[test]
    fn certificate_decisions() {
        let authorizer = authorizer();
        let register = "/hosted.v1.IntakeService/RegisterStay";
        // A certificate alone is its caller; with that caller's token too.
        assert_eq!(
            authorizer.decide(register, None, Some("CN=library")),
            Decision::Allowed(Arc::from("library"))
        );
        assert_eq!(
            authorizer.decide(register, Some(b"Bearer s3cret"), Some("CN=portal,O=Univ")),
            Decision::Allowed(Arc::from("portal"))
        );
        // A token of another caller, or an unknown one, beside a known certificate.
        assert!(matches!(
            authorizer.decide(register, Some(b"Bearer finance-only"), Some("CN=library")),
            Decision::Unauthenticated(
                "the bearer token and the client certificate name different callers"
            )
        ));
        assert!(matches!(
            authorizer.decide(register, Some(b"Bearer wrong"), Some("CN=library")),
            Decision::Unauthenticated("unknown credential")
        ));
        // An unknown subject: nobody, unless a token says who calls. Exact match only.
        for subject in [
            "CN=intruder",
            "CN=library,O=Other",
            "CN=librar",
            "CN=portal",
        ] {
            assert!(
                matches!(
                    authorizer.decide(register, None, Some(subject)),
                    Decision::Unauthenticated(_)
                ),
                "{subject}"
            );
        }
        assert_eq!(
            authorizer.decide(register, Some(b"Bearer s3cret"), Some("CN=intake")),
            Decision::Allowed(Arc::from("portal"))
        );
        // The certificate's caller's roles count, not more.
        assert!(matches!(
            authorizer.decide(register, Some(b"Bearer finance-only"), Some("CN=bank")),
            Decision::Denied(_)
        ));
    }

    #[test]
    fn digests_compare_whole() {
        let digest = [7u8; 32];
        assert!(digests_equal(&digest, &[7u8; 32]));
        for position in [0, 15, 31] {
            let mut other = digest;
            other[position] ^= 1;
            assert!(!digests_equal(&digest, &other), "differs at {position}");
        }
    }

    #[test]
    fn subjects_in_one_spelling() {
        assert_eq!(
            canonical_subject("cn=integrator-library, O=Université Exemple").as_deref(),
            Ok("CN=integrator-library,O=Université Exemple")
        );
        assert!(canonical_subject("integrator").is_err());
    }

    #[test]
    fn a_policy_must_cover_every_rpc() {
        let descriptors = hosted_contracts::FILE_DESCRIPTOR_SET;
        let partial = AccessPolicy::covering(
            "hosted.v1.CardsService",
            &[("GetCard", &[Role::CardOffice])],
            descriptors,
        );
        let error = partial.expect_err("incomplete policy");
        assert!(
            error.contains("ListPrintQueue: no roles declared"),
            "{error}"
        );
        let unknown = AccessPolicy::covering(
            "hosted.v1.CardsService",
            &[
                ("GetCard", &[Role::CardOffice]),
                ("ListPrintQueue", &[Role::CardOffice]),
                ("TransitionCard", &[Role::CardOffice]),
                ("Fly", &[Role::Dosi]),
            ],
            descriptors,
        );
        assert!(
            unknown
                .expect_err("unknown rpc")
                .contains("Fly: not an RPC")
        );
    }

    #[test]
    fn roles_parse_by_name() {
        assert_eq!("card-office".parse::<Role>(), Ok(Role::CardOffice));
        assert!("dean".parse::<Role>().is_err());
    }
}
