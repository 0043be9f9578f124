//! TLS of the gRPC servers, with rustls (ring): the certificate and key come from PEM
//! files and are read again when the files change, so that a certificate renewed in
//! place (cert-manager, the university's PKI, a mounted Kubernetes secret) is served
//! to new connections without a restart; with a client CA, clients may present a
//! certificate (mutual TLS), which [`crate::auth`] maps to a caller.
//!
//! The handshake is done here, ahead of tonic, because tonic's own TLS takes one
//! certificate at start and keeps it; the TLS streams handed to tonic still carry the
//! peer's certificates into every request ([`tonic::Request::peer_certs`]).

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};

use crate::config::TlsConfig;

/// How often, at most, the certificate and key files are looked at (their
/// modification times) for a renewal: a handshake never waits on more than that.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a certificate chain (PEM, leaf first) and its private key (PEM: PKCS#8,
/// PKCS#1 or SEC1), and checks that they belong together. The error names the field
/// (`cert_path` or `key_path`) and the file, never the key's content.
pub fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, String> {
    let certificates =
        load_certificates(cert_path).map_err(|reason| format!("cert_path: {reason}"))?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| {
        format!(
            "key_path: {}: no PEM private key could be read ({error})",
            key_path.display()
        )
    })?;
    CertifiedKey::from_der(certificates, key, &provider()).map_err(|error| {
        format!(
            "key_path: {}: not the key of the certificate in cert_path, or not a key rustls \
             can use ({error})",
            key_path.display()
        )
    })
}

fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("{}: cannot read PEM certificates ({error})", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certificates)
}

/// The certificate authorities that sign the clients' certificates.
pub fn load_client_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for certificate in load_certificates(path)? {
        roots
            .add(certificate)
            .map_err(|error| format!("{}: not a CA certificate ({error})", path.display()))?;
    }
    Ok(roots)
}

/// The rustls configuration of a server: the reloading certificate, and client
/// certificates asked for (never required: a caller may still come with a token only)
/// and verified against `client_ca_path` when it is set.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
    let (Some(cert_path), Some(key_path)) = (tls.cert_path(), tls.key_path()) else {
        return Err("cert_path and key_path: both are needed".to_owned());
    };
    let resolver = ReloadingCertificate::new(cert_path.to_owned(), key_path.to_owned())?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS versions: {error}"))?;
    let builder = match tls.client_ca_path() {
        Some(ca_path) => {
            let roots =
                load_client_roots(ca_path).map_err(|reason| format!("client_ca_path: {reason}"))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|error| format!("client_ca_path: {error}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The served certificate, read again from its files when they change.
///
/// A pair that does not load (a half-written renewal, a key that is not the
/// certificate's) is said in a warning and the last good pair stays: a renewal gone
/// wrong must not take the service down. The files' modification times are looked at
/// no more often than [`RELOAD_CHECK_INTERVAL`].
pub struct ReloadingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    state: Mutex<Served>,
}

struct Served {
    key: Arc<CertifiedKey>,
    /// The modification times of the files when they were last read (well or not).
    read_at: Option<(SystemTime, SystemTime)>,
    checked_at: Instant,
}

impl fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertificate")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCertificate {
    pub fn new(cert_path: PathBuf, key_path: PathBuf) -> Result<Self, String> {
        let read_at = modified(&cert_path, &key_path);
        let key = load_certified_key(&cert_path, &key_path)?;
        Ok(Self {
            cert_path,
            key_path,
            state: Mutex::new(Served {
                key: Arc::new(key),
                read_at,
                checked_at: Instant::now(),
            }),
        })
    }

    /// The pair to serve now, read again first if the files changed.
    fn current(&self) -> Arc<CertifiedKey> {
        let Ok(mut served) = self.state.lock() else {
            // Poisoned only by a panic while reading files: nothing sensible to serve.
            return self.fallback();
        };
        if served.checked_at.elapsed() < RELOAD_CHECK_INTERVAL {
            return served.key.clone();
        }
        served.checked_at = Instant::now();
        let now = modified(&self.cert_path, &self.key_path);
        if now.is_none() || now == served.read_at {
            return served.key.clone();
        }
        served.read_at = now;
        match load_certified_key(&self.cert_path, &self.key_path) {
            Ok(key) => {
                tracing::info!(
                    cert_path = %self.cert_path.display(),
                    "TLS certificate read again: new connections get the renewed one"
                );
                served.key = Arc::new(key);
            }
            Err(reason) => tracing::warn!(
                %reason,
                "TLS certificate files changed but do not load: still serving the last good pair"
            ),
        }
        served.key.clone()
    }

    fn fallback(&self) -> Arc<CertifiedKey> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .key
            .clone()
    }
}

fn modified(cert_path: &Path, key_path: &Path) -> Option<(SystemTime, SystemTime)> {
    let time = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|metadata| metadata.modified())
            .ok()
    };
    Some((time(cert_path)?, time(key_path)?))
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
