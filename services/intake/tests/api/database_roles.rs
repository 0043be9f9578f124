//! Intake connects to PostgreSQL as its own role, which owns intake's database and
//! nothing else (issue 14, point 9): it cannot open another service's database,
//! create a database or a role, and is no superuser.

use hosted_testkit::{DatabaseOwner, TestDatabase, database_url_as, server_database_url};
use sqlx::{Connection, PgConnection};

/// SQLSTATE insufficient_privilege.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

fn sqlstate(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|error| error.code().map(|code| code.into_owned()))
}

#[tokio::test]
async fn intake_s_role_owns_its_database_and_nothing_else() {
    // Arrange: intake's database and entitlement's, as the harness makes them.
    let intake = TestDatabase::new(DatabaseOwner::Intake).await;
    let entitlement = TestDatabase::new(DatabaseOwner::Entitlement).await;
    let role = DatabaseOwner::Intake.role();

    // Its own database: it connects, as itself, and owns it.
    let mut own = intake.connect().await;
    let (user, owner): (String, String) = sqlx::query_as(
        "SELECT current_user::text, pg_get_userbyid(datdba)::text \
         FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(&mut own)
    .await
    .unwrap();
    assert_eq!((user.as_str(), owner.as_str()), (role, role));
    let (superuser, create_db, create_role): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut own)
    .await
    .unwrap();
    assert_eq!((superuser, create_db, create_role), (false, false, false));

    // Entitlement's database: CONNECT is its owner's only.
    let as_intake = database_url_as(
        &server_database_url(),
        role,
        &DatabaseOwner::Intake.password(),
        &entitlement.name,
    );
    let refused = PgConnection::connect(&as_intake).await.unwrap_err();
    assert_eq!(
        sqlstate(&refused).as_deref(),
        Some(INSUFFICIENT_PRIVILEGE),
        "{refused}"
    );

    // No database, no role.
    let database = sqlx::query("CREATE DATABASE hl_test_intake_may_not")
        .execute(&mut own)
        .await
        .unwrap_err();
    assert_eq!(
        sqlstate(&database).as_deref(),
        Some(INSUFFICIENT_PRIVILEGE),
        "{database}"
    );
    let new_role = sqlx::query("CREATE ROLE hl_test_intake_may_not")
        .execute(&mut own)
        .await
        .unwrap_err();
    assert_eq!(
        sqlstate(&new_role).as_deref(),
        Some(INSUFFICIENT_PRIVILEGE),
        "{new_role}"
    );
    let _ = own.close().await;
}

#[tokio::test]
async fn a_role_that_may_not_create_databases_is_told_so() {
    // Arrange: intake's role, and a database that does not exist.
    let intake = TestDatabase::new(DatabaseOwner::Intake).await;
    let missing = database_url_as(
        &server_database_url(),
        DatabaseOwner::Intake.role(),
        &DatabaseOwner::Intake.password(),
        &format!("{}_missing", intake.name),
    );
    let config = hosted_platform::config::DatabaseConfig {
        url: missing,
        max_connections: 1,
        create_if_missing: true,
    };

    let error = hosted_platform::db::connect(&config).await.unwrap_err();

    assert!(
        error
            .to_string()
            .starts_with("database.create_if_missing: the role may not create database"),
        "{error}"
    );
}
