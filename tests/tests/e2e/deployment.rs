//! The configuration files of the Kubernetes manifests (deploy/kubernetes/base/
//! config) load as each service reads them at start: every key known, every value
//! valid, every secret a file. The paths the manifests mount are moved under a
//! directory of the test's own, where the test writes stand-ins for the Secrets.

use std::path::{Path, PathBuf};

use hosted_platform::config::ServiceConfig;

const MOUNTS: [&str; 2] = ["/var/run/secrets/hosted-learners/", "/etc/hosted-learners/"];

/// The service's configuration file with its mounts under `root`, each file it names
/// there written first (certificates from `pki`); the path of the copy.
fn staged(service: &str, root: &Path, pki: &hosted_testkit::TestPki) -> PathBuf {
    let (certificate, key) = pki.server_pem(service);
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes/base/config")
        .join(format!("{service}.toml"));
    let mut text = std::fs::read_to_string(&source).unwrap();
    for (index, mount) in MOUNTS.iter().enumerate() {
        text = text.replace(mount, &format!("{}/{index}/", root.display()));
    }
    for line in text.lines() {
        let Some((_, value)) = line.split_once(" = \"") else {
            continue;
        };
        let value = value.trim_end_matches('"');
        if let Some(path) = value
            .starts_with(&root.display().to_string())
            .then(|| Path::new(value))
        {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let content = match path.file_name().and_then(|name| name.to_str()) {
                Some("url") => {
                    format!("postgres://hosted_{service}:secret@hosted-pg-rw:5432/hosted_{service}")
                }
                Some("login-key") => "a-login-key-of-at-least-thirty-two-characters".to_owned(),
                Some("tls.crt") => certificate.clone(),
                Some("tls.key") => key.clone(),
                Some("ca.crt") => pki.ca_pem().to_owned(),
                _ => "stand-in".to_owned(),
            };
            std::fs::write(path, content).unwrap();
        }
    }
    // The policy of the first start is the repository's (dev/kubernetes checks the copy).
    let policy = root.join("1/policy/policy.toml");
    std::fs::create_dir_all(policy.parent().unwrap()).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/default.toml"),
        &policy,
    )
    .unwrap();
    let staged = root.join(format!("{service}.toml"));
    std::fs::write(&staged, text).unwrap();
    staged
}

fn root(service: &str) -> PathBuf {
    let root =
        std::env::temp_dir().join(format!("hosted-deploy-{service}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&root).unwrap();
    root
}

fn loads<C: ServiceConfig>(service: &str) -> C {
    let root = root(service);
    let pki = hosted_testkit::TestPki::new();
    let loaded = C::load(Some(&staged(service, &root, &pki)));
    std::fs::remove_dir_all(&root).unwrap();
    loaded.unwrap_or_else(|errors| panic!("deploy/kubernetes/base/config/{service}.toml: {errors}"))
}

#[test]
fn the_manifests_configuration_files_load_as_the_services_read_them() {
    let intake: hosted_intake::IntakeConfig = loads("intake");
    assert_eq!(intake.common().nats.user, "intake");
    assert!(
        intake
            .common()
            .database
            .url
            .starts_with("postgres://hosted_intake:")
    );
    let _: hosted_entitlement::config::EntitlementConfig = loads("entitlement");
    let _: hosted_cards::config::CardsConfig = loads("cards");
    let directory: hosted_directory::config::DirectoryConfig = loads("directory");
    assert!(directory.ldap.starttls, "production binds over StartTLS");
    assert_eq!(directory.ldap.bind_password, "stand-in");
}
