//! Who may call what: bearer credentials, roles, and a deny-by-default check in
//! front of every RPC.
//!
//! A caller is configured with the SHA-256 of its token (never the token) and its
//! roles; each service declares, for every RPC it serves, the roles it accepts. A
//! method that has no declaration is refused, and a service that forgets to declare
//! one of its RPCs does not start ([`AccessPolicy::covering`]).

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
    token_sha256: Vec<u8>,
    roles: Vec<Role>,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl Caller {
    pub fn new(name: String, token_sha256: Vec<u8>, roles: Vec<Role>) -> Self {
        Self {
            name,
            token_sha256,
            roles,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn roles(&self) -> &[Role] {
        &self.roles
    }
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
    callers: HashMap<[u8; 32], Caller>,
}

impl Authorizer {
    fn decide(&self, path: &str, authorization: Option<&[u8]>) -> Decision {
        if self.policy.is_open(path) {
            return Decision::Open;
        }
        let Some(authorization) = authorization else {
            return Decision::Unauthenticated("missing bearer credential");
        };
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
                return Decision::Unauthenticated(
                    "malformed authorization: expected \"Bearer <token>\"",
                );
            }
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let Some(caller) = self.callers.get(&digest) else {
            return Decision::Unauthenticated("unknown credential");
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
}

/// The tower layer that authenticates and authorises every gRPC request.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authorizer: Arc<Authorizer>,
}

impl AuthLayer {
    pub fn new(policy: AccessPolicy, callers: Vec<Caller>) -> Self {
        let callers = callers
            .into_iter()
            .filter_map(|caller| {
                let digest: [u8; 32] = caller.token_sha256.as_slice().try_into().ok()?;
                Some((digest, caller))
            })
            .collect();
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

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for AuthService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let decision = self.authorizer.decide(
            &path,
            request
                .headers()
                .get(hosted_contracts::headers::AUTHORIZATION)
                .map(|value| value.as_bytes()),
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
        let caller = Caller::new(
            "portal".to_owned(),
            hex::decode(hash_token("s3cret")).expect("hex"),
            vec![Role::Deve],
        );
        let bank = Caller::new(
            "bank".to_owned(),
            hex::decode(hash_token("finance-only")).expect("hex"),
            vec![Role::Finance],
        );
        let layer = AuthLayer::new(policy, vec![caller, bank]);
        Arc::try_unwrap(layer.authorizer).expect("single owner")
    }

    #[test]
    fn decisions() {
        let authorizer = authorizer();
        let register = "/hosted.v1.IntakeService/RegisterStay";
        assert_eq!(
            authorizer.decide("/grpc.health.v1.Health/Check", None),
            Decision::Open
        );
        assert!(matches!(
            authorizer.decide(register, None),
            Decision::Unauthenticated(_)
        ));
        assert!(matches!(
            authorizer.decide(register, Some(b"Basic abc")),
            Decision::Unauthenticated(_)
        ));
        assert!(matches!(
            authorizer.decide(register, Some(b"Bearer wrong")),
            Decision::Unauthenticated(_)
        ));
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            assert_eq!(
                authorizer.decide(register, Some(format!("{scheme} s3cret").as_bytes())),
                Decision::Allowed(Arc::from("portal")),
                "{scheme}"
            );
        }
        assert_eq!(
            authorizer.decide(register, Some(b"Bearer\ts3cret")),
            Decision::Allowed(Arc::from("portal"))
        );
        assert_eq!(
            authorizer.decide(register, Some(b"Bearer finance-only")),
            Decision::Denied(
                "the caller's roles do not allow this call: it needs one of: deve".to_owned()
            )
        );
        assert!(matches!(
            authorizer.decide(register, Some(b"Bearers3cret")),
            Decision::Unauthenticated(_)
        ));
        assert!(matches!(
            authorizer.decide(register, Some(b"Bearer ")),
            Decision::Unauthenticated(_)
        ));
        assert_eq!(
            authorizer.decide(
                "/hosted.v1.IntakeService/Undeclared",
                Some(b"Bearer s3cret")
            ),
            Decision::Denied("no role may call this method".to_owned())
        );
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
