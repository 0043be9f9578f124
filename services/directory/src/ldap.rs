//! The LDAP side: reading an entry, and writing the desired state of one as an add
//! or as a modify of exactly the attributes that differ.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use ldap3::{LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use tokio::sync::Mutex;

use crate::{
    config::LdapConfig,
    domain::{
        entry::{self, Entry, MANAGED_ATTRIBUTES},
        escape,
    },
};

const NO_SUCH_OBJECT: u32 = 32;
const ALREADY_EXISTS: u32 = 68;

#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    #[error("ldap connection: {0}")]
    Connection(#[source] ldap3::LdapError),
    /// TLS could not be set up: the CA file, or a server certificate that does not
    /// verify against it (or does not name the host of `ldap.url`).
    #[error("ldap tls: {0}")]
    Tls(String),
    #[error("ldap {operation} refused: {result}")]
    Refused {
        operation: &'static str,
        result: String,
    },
}

impl LdapError {
    fn refused(operation: &'static str, result: ldap3::LdapResult) -> Self {
        LdapError::Refused {
            operation,
            result: format!("rc={} {}", result.rc, result.text),
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Added,
    Modified { attributes: usize },
    Deleted,
    Unchanged,
}

/// One bound connection, re-opened after a failure.
#[derive(Debug)]
pub struct LdapDirectory {
    config: LdapConfig,
    connection: Mutex<Option<ldap3::Ldap>>,
}

impl LdapDirectory {
    pub fn new(config: LdapConfig) -> Self {
        Self {
            config,
            connection: Mutex::new(None),
        }
    }

    pub fn base_dn(&self) -> &str {
        &self.config.base_dn
    }

    async fn handle(&self) -> Result<ldap3::Ldap, LdapError> {
        let mut slot = self.connection.lock().await;
        if let Some(ldap) = slot.as_mut()
            && !ldap.is_closed()
        {
            return Ok(ldap.clone());
        }
        let mut settings = LdapConnSettings::new().set_conn_timeout(self.config.timeout);
        if self.config.tls() {
            settings = settings
                .set_starttls(self.config.starttls)
                .set_config(tls_config(&self.config.ca_path)?);
        }
        let (connection, mut ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(|error| self.connection_error(error))?;
        ldap3::drive!(connection);
        ldap.with_timeout(self.config.timeout);
        let bound = ldap
            .simple_bind(&self.config.bind_dn, &self.config.bind_password)
            .await
            .map_err(LdapError::Connection)?;
        if bound.rc != 0 {
            return Err(LdapError::refused("bind", bound));
        }
        *slot = Some(ldap.clone());
        Ok(ldap)
    }

    /// A failed TLS handshake says so, naming the CA it was checked against; any
    /// other failure stays a connection error (LDAP away).
    fn connection_error(&self, error: ldap3::LdapError) -> LdapError {
        if let ldap3::LdapError::Io { source } = &error
            && let Some(tls) = source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return LdapError::Tls(format!(
                "the server's certificate is refused ({tls}); it must be signed by the CA \
                 in ldap.ca_path ({}) and name the host of ldap.url",
                self.config.ca_path
            ));
        }
        LdapError::Connection(error)
    }

    /// Forgets the connection after an I/O failure, so the next call opens a new one.
    async fn reset(&self) {
        *self.connection.lock().await = None;
    }

    async fn with_connection<T, F, Fut>(&self, operation: F) -> Result<T, LdapError>
    where
        F: FnOnce(ldap3::Ldap) -> Fut,
        Fut: Future<Output = Result<T, LdapError>>,
    {
        let ldap = self.handle().await?;
        let outcome = operation(ldap).await;
        if matches!(outcome, Err(LdapError::Connection(_))) {
            self.reset().await;
        }
        outcome
    }

    /// The managed attributes and object classes of the entry at `dn`, if it exists.
    pub async fn read(&self, dn: &str) -> Result<Option<HashMap<String, Vec<String>>>, LdapError> {
        let timeout = self.config.timeout;
        self.with_connection(|mut ldap| async move {
            let mut attributes: Vec<&str> = MANAGED_ATTRIBUTES.to_vec();
            attributes.push("objectClass");
            let result = ldap
                .with_timeout(timeout)
                .search(dn, Scope::Base, "(objectClass=*)", attributes)
                .await
                .map_err(LdapError::Connection)?;
            if result.1.rc == NO_SUCH_OBJECT {
                return Ok(None);
            }
            let (entries, _) = result.success().map_err(LdapError::Connection)?;
            Ok(entries
                .into_iter()
                .next()
                .map(|entry| SearchEntry::construct(entry).attrs))
        })
        .await
    }

    /// Writes an entry that is most likely not there yet (its account was never
    /// published): an add straight away, and only if it exists after all, a read and
    /// a modify. One round trip instead of two for a new account.
    pub async fn write_new(&self, desired: &Entry) -> Result<Written, LdapError> {
        match self.add(desired).await {
            Err(LdapError::Refused { result, .. })
                if result.starts_with(&format!("rc={ALREADY_EXISTS} ")) =>
            {
                self.write(desired).await
            }
            outcome => outcome,
        }
    }

    /// Writes the desired entry: adds it when missing, else modifies exactly the
    /// managed attributes that differ (and adds missing object classes).
    pub async fn write(&self, desired: &Entry) -> Result<Written, LdapError> {
        match self.read(&desired.dn).await? {
            None => match self.add(desired).await {
                // Created meanwhile (a replica, a retry after a lost answer): modify instead.
                Err(LdapError::Refused { result, .. })
                    if result.starts_with(&format!("rc={ALREADY_EXISTS} ")) =>
                {
                    let actual = self.read(&desired.dn).await?.unwrap_or_default();
                    self.modify(desired, &actual).await
                }
                outcome => outcome,
            },
            Some(actual) => self.modify(desired, &actual).await,
        }
    }

    /// Every entry directly under the managed base, with its managed attributes and
    /// object classes, page by page. Nothing deeper and nothing outside is read.
    pub async fn entries_under_base(
        &self,
    ) -> Result<Vec<(String, HashMap<String, Vec<String>>)>, LdapError> {
        use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
        let base = self.config.base_dn.clone();
        let timeout = self.config.timeout;
        self.with_connection(|mut ldap| async move {
            let mut attributes: Vec<String> = MANAGED_ATTRIBUTES
                .iter()
                .map(|name| (*name).to_owned())
                .collect();
            attributes.push("objectClass".to_owned());
            let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
                Box::new(EntriesOnly::new()),
                Box::new(PagedResults::new(500)),
            ];
            let mut search = ldap
                .with_timeout(timeout)
                .streaming_search_with(
                    adapters,
                    &base,
                    Scope::OneLevel,
                    "(objectClass=*)",
                    attributes,
                )
                .await
                .map_err(LdapError::Connection)?;
            let mut entries = Vec::new();
            while let Some(entry) = search.next().await.map_err(LdapError::Connection)? {
                let entry = SearchEntry::construct(entry);
                entries.push((entry.dn, entry.attrs));
            }
            let result = search.finish().await;
            if result.rc != 0 {
                return Err(LdapError::refused("search", result));
            }
            Ok(entries)
        })
        .await
    }

    /// Which of `logins` have an entry named `uid=<login>` directly under `base`: one
    /// one-level search, its filter `(|(uid=a)(uid=b)…)` escaped, no attribute read.
    /// The answer is in lower case (uid matches without case).
    pub async fn existing_uids(
        &self,
        base: &str,
        logins: &[String],
    ) -> Result<BTreeSet<String>, LdapError> {
        if logins.is_empty() {
            return Ok(BTreeSet::new());
        }
        let filter = uid_filter(logins);
        let timeout = self.config.timeout;
        self.with_connection(|mut ldap| async move {
            let result = ldap
                .with_timeout(timeout)
                .search(base, Scope::OneLevel, &filter, vec!["1.1"])
                .await
                .map_err(LdapError::Connection)?;
            if result.1.rc != 0 {
                return Err(LdapError::refused("search", result.1));
            }
            Ok(result
                .0
                .into_iter()
                .filter_map(|entry| rdn_uid(&SearchEntry::construct(entry).dn))
                .collect())
        })
        .await
    }

    /// Removes the entry at `dn` if it is there.
    pub async fn delete(&self, dn: &str) -> Result<Written, LdapError> {
        let timeout = self.config.timeout;
        self.with_connection(|mut ldap| async move {
            let result = ldap
                .with_timeout(timeout)
                .delete(dn)
                .await
                .map_err(LdapError::Connection)?;
            match result.rc {
                0 => Ok(Written::Deleted),
                NO_SUCH_OBJECT => Ok(Written::Unchanged),
                _ => Err(LdapError::refused("delete", result)),
            }
        })
        .await
    }

    async fn add(&self, desired: &Entry) -> Result<Written, LdapError> {
        let mut attributes: Vec<(String, HashSet<String>)> = vec![(
            "objectClass".to_owned(),
            entry::OBJECT_CLASSES
                .iter()
                .map(|class| (*class).to_owned())
                .collect(),
        )];
        attributes.extend(
            desired
                .attributes
                .iter()
                .map(|(name, values)| ((*name).to_owned(), values.iter().cloned().collect())),
        );
        let timeout = self.config.timeout;
        self.with_connection(|mut ldap| async move {
            let result = ldap
                .with_timeout(timeout)
                .add(&desired.dn, attributes)
                .await
                .map_err(LdapError::Connection)?;
            if result.rc != 0 {
                return Err(LdapError::refused("add", result));
            }
            Ok(Written::Added)
        })
        .await
    }

    async fn modify(
        &self,
        desired: &Entry,
        actual: &HashMap<String, Vec<String>>,
    ) -> Result<Written, LdapError> {
        let mut modifications: Vec<Mod<String>> = Vec::new();
        let missing_classes = entry::missing_object_classes(actual);
        if !missing_classes.is_empty() {
            modifications.push(Mod::Add(
                "objectClass".to_owned(),
                missing_classes.into_iter().collect(),
            ));
        }
        let differences = entry::differences(desired, actual);
        for difference in &differences {
            let name = difference.name.to_owned();
            if difference.desired.is_empty() {
                modifications.push(Mod::Delete(name, HashSet::new()));
            } else {
                modifications.push(Mod::Replace(
                    name,
                    difference.desired.iter().cloned().collect(),
                ));
            }
        }
        if modifications.is_empty() {
            return Ok(Written::Unchanged);
        }
        let timeout = self.config.timeout;
        self.with_connection(|mut ldap| async move {
            let result = ldap
                .with_timeout(timeout)
                .modify(&desired.dn, modifications)
                .await
                .map_err(LdapError::Connection)?;
            if result.rc != 0 {
                return Err(LdapError::refused("modify", result));
            }
            Ok(Written::Modified {
                attributes: differences.len(),
            })
        })
        .await
    }
}

/// The certificates in the PEM file at `path`: at least one, or why not.
pub fn read_ca(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|error| format!("cannot read {path}: {error}"))?;
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|error| format!("{path} is not PEM: {error}"))?;
    if certificates.is_empty() {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(certificates)
}

/// TLS that trusts only the CA at `ca_path` (not the system's roots: the
/// university's directory has its own PKI), with ring as the crypto provider.
fn tls_config(ca_path: &str) -> Result<Arc<rustls::ClientConfig>, LdapError> {
    let tls = |reason: String| LdapError::Tls(format!("ldap.ca_path: {reason}"));
    let mut roots = rustls::RootCertStore::empty();
    for certificate in read_ca(ca_path).map_err(tls)? {
        roots
            .add(certificate)
            .map_err(|error| tls(format!("{ca_path}: {error}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| tls(error.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The filter that finds the entries of `logins` by uid: `(uid=a)`, or
/// `(|(uid=a)(uid=b)…)`, each value escaped (RFC 4515).
pub fn uid_filter(logins: &[String]) -> String {
    let terms: String = logins
        .iter()
        .map(|login| format!("(uid={})", escape::filter_value(login)))
        .collect();
    if logins.len() == 1 {
        terms
    } else {
        format!("(|{terms})")
    }
}

/// The uid an entry is named by (`uid=marie.curie,ou=…`), in lower case; `None` for
/// an entry named otherwise, or by an escaped value (no valid login needs one).
fn rdn_uid(dn: &str) -> Option<String> {
    let (attribute, rest) = dn.split_once('=')?;
    if !attribute.trim().eq_ignore_ascii_case("uid") {
        return None;
    }
    let value = rest.split(',').next()?.trim();
    if value.is_empty() || value.contains(['\\', '+']) {
        return None;
    }
    Some(value.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uid_filter_escapes_each_login() {
        assert_eq!(uid_filter(&["marie.curie".to_owned()]), "(uid=marie.curie)");
        assert_eq!(
            uid_filter(&["a.b".to_owned(), "x*)(uid=*".to_owned()]),
            "(|(uid=a.b)(uid=x\\2a\\29\\28uid=\\2a))"
        );
    }

    #[test]
    fn an_entry_is_a_sponsor_s_only_when_named_by_uid() {
        assert_eq!(
            rdn_uid("uid=Marie.Curie,ou=people,dc=univ-example,dc=fr").as_deref(),
            Some("marie.curie")
        );
        assert_eq!(rdn_uid("UID = jean , ou=x").as_deref(), Some("jean"));
        assert_eq!(rdn_uid("cn=Marie Curie,ou=people"), None);
        assert_eq!(rdn_uid("uid=a+cn=b,ou=people"), None);
        assert_eq!(rdn_uid("uid=a\\,b,ou=people"), None);
    }
}
