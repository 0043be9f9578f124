//! LDAP's transport and identity (issue 14, point 7): directory publishes over
//! StartTLS, verifying slapd's certificate against its configured CA, and binds as
//! its own identity, which the slapd's ACLs let write under the managed base only,
//! and only over TLS. The root DN is the harness's, for set-up and assertions.

use std::time::Duration;

use hosted_directory::{
    config::LdapConfig,
    ldap::{LdapDirectory, LdapError},
};
use hosted_e2e::{TestSystem, registration};
use hosted_testkit::{LdapServer, TestSubtree};
use ldap3::{Mod, Scope, SearchEntry};

const INSUFFICIENT_ACCESS: u32 = 50;
const INVALID_CREDENTIALS: u32 = 49;
const STRONGER_AUTH_REQUIRED: u32 = 8;

fn person(uid: &str) -> Vec<(&str, std::collections::HashSet<&str>)> {
    vec![
        ("objectClass", ["inetOrgPerson"].into()),
        ("uid", [uid].into()),
        ("cn", [uid].into()),
        ("sn", [uid].into()),
    ]
}

#[tokio::test]
async fn directory_publishes_over_starttls_as_its_own_identity() {
    let system = TestSystem::start().await;
    let server = &system.subtree.server;
    assert!(
        server.starttls,
        "dev/deps env sets HOSTED_TEST_LDAP_STARTTLS"
    );
    assert_eq!(
        system.directory_config().ldap.bind_dn,
        server.directory_dn,
        "directory under test binds as its own identity, not the root DN"
    );

    system
        .register(registration("Sécurité", "Anne", "1990-01-01"))
        .await;

    let entries = system
        .subtree
        .wait_for_entries(1, Duration::from_secs(20))
        .await;
    let creator = entries[0].attrs.get("creatorsName").unwrap()[0].clone();
    assert!(
        creator.eq_ignore_ascii_case(&server.directory_dn),
        "written by {creator}"
    );
}

#[tokio::test]
async fn directory_s_identity_writes_only_under_the_managed_base() {
    // Arrange: a managed base and a sponsors' base of the test's own, a sponsor with
    // a password, set up as the root DN.
    let managed = TestSubtree::new().await;
    let server = managed.server.clone();
    let staff = TestSubtree::staff(server.clone()).await;
    let sponsor = format!("uid=sponsor,{}", staff.base_dn);
    let mut admin = server.connect().await;
    let mut sponsor_entry = person("sponsor");
    sponsor_entry.push(("userPassword", ["sponsor's own secret"].into()));
    admin
        .add(&sponsor, sponsor_entry)
        .await
        .unwrap()
        .success()
        .unwrap();
    let mut directory = server.connect_as_directory().await;

    // Under the managed base: add, modify, delete.
    let learner = format!("uid=learner,{}", managed.base_dn);
    directory
        .add(&learner, person("learner"))
        .await
        .unwrap()
        .success()
        .unwrap();
    directory
        .modify(&learner, vec![Mod::Replace("sn", ["changed"].into())])
        .await
        .unwrap()
        .success()
        .unwrap();

    // Outside it: the sponsors' base, the suffix entry, a new ou beside ou=people,
    // the managed parent itself.
    let outside = [
        directory
            .add(
                &format!("uid=intruder,{}", staff.base_dn),
                person("intruder"),
            )
            .await
            .unwrap(),
        directory
            .modify(&sponsor, vec![Mod::Replace("sn", ["changed"].into())])
            .await
            .unwrap(),
        directory
            .modify(
                &server.suffix,
                vec![Mod::Replace("o", ["taken over"].into())],
            )
            .await
            .unwrap(),
        directory
            .add(
                &format!("ou=elsewhere,{}", server.suffix),
                vec![
                    ("objectClass", ["organizationalUnit"].into()),
                    ("ou", ["elsewhere"].into()),
                ],
            )
            .await
            .unwrap(),
        directory
            .modify(
                &format!("ou=people,{}", server.suffix),
                vec![Mod::Replace("description", ["taken over"].into())],
            )
            .await
            .unwrap(),
        directory
            .modify(
                &server.directory_dn,
                vec![Mod::Replace("userPassword", ["chosen by itself"].into())],
            )
            .await
            .unwrap(),
    ];
    for result in outside {
        assert_eq!(result.rc, INSUFFICIENT_ACCESS, "{result:?}");
    }

    // It reads the sponsor (to name them), never a password.
    let (found, _) = directory
        .search(
            &sponsor,
            Scope::Base,
            "(objectClass=*)",
            vec!["uid", "userPassword"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let found = SearchEntry::construct(found.into_iter().next().unwrap());
    assert_eq!(found.attrs["uid"], ["sponsor"]);
    assert!(!found.attrs.contains_key("userPassword"), "{found:?}");
    assert!(!found.bin_attrs.contains_key("userPassword"), "{found:?}");

    directory.delete(&learner).await.unwrap().success().unwrap();
    let _ = directory.unbind().await;
    let _ = admin.unbind().await;
}

#[tokio::test]
async fn a_plain_text_bind_of_directory_s_identity_is_refused() {
    let server = LdapServer::from_env();
    let managed = TestSubtree::new().await;
    let mut plain = server.open(false).await.unwrap();

    let bind = plain
        .simple_bind(&server.directory_dn, &server.directory_password)
        .await
        .unwrap();
    // Anonymous, as the bind left it: no write either.
    let write = plain
        .add(&format!("uid=plain,{}", managed.base_dn), person("plain"))
        .await
        .unwrap();

    assert_eq!(bind.rc, INVALID_CREDENTIALS, "{bind:?}");
    // strongerAuthRequired (anonymous) or insufficientAccess, as slapd words it.
    assert!(
        matches!(write.rc, STRONGER_AUTH_REQUIRED | INSUFFICIENT_ACCESS),
        "{write:?}"
    );
    let _ = plain.unbind().await;
    // The same identity over StartTLS binds (the password was right).
    let _ = server.connect_as_directory().await.unbind().await;
}

fn directory_ldap(server: &LdapServer, base_dn: &str, ca_path: &str) -> LdapDirectory {
    LdapDirectory::new(LdapConfig {
        url: server.url.clone(),
        starttls: true,
        ca_path: ca_path.to_owned(),
        bind_dn: server.directory_dn.clone(),
        bind_password: server.directory_password.clone(),
        base_dn: base_dn.to_owned(),
        timeout: Duration::from_secs(10),
        ..LdapConfig::default()
    })
}

/// A certificate authority of the test's own, which signed nothing slapd holds.
fn another_ca() -> (tempdir::Dir, String) {
    let dir = tempdir::Dir::new();
    let ca = dir.path.join("other-ca.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=not the tests' CA"])
        .arg("-keyout")
        .arg(dir.path.join("other-ca.key"))
        .arg("-out")
        .arg(&ca)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (dev/deps installs it)");
    assert!(status.success());
    let ca = ca.display().to_string();
    (dir, ca)
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir {
        pub path: std::path::PathBuf,
    }

    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("hosted-e2e-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&path).unwrap();
            Self { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[tokio::test]
async fn slapd_s_certificate_is_verified_against_the_configured_ca() {
    let server = LdapServer::from_env();
    let managed = TestSubtree::new().await;
    let (_dir, other_ca) = another_ca();

    let trusting = directory_ldap(&server, &managed.base_dn, &server.ca_path);
    let refusing = directory_ldap(&server, &managed.base_dn, &other_ca);

    assert!(
        trusting.entries_under_base().await.unwrap().is_empty(),
        "the CA that signed slapd's certificate is trusted"
    );
    let refused = refusing.entries_under_base().await.unwrap_err();
    let LdapError::Tls(reason) = &refused else {
        panic!("not a TLS refusal: {refused:?}");
    };
    assert!(
        reason.contains("certificate is refused") && reason.contains(&other_ca),
        "{reason}"
    );
}
