//! The service's own PostgreSQL database: pool, creation for development, and
//! migrations applied at start-up.
//!
//! Each service connects as its own role, which owns its database and nothing else
//! (not a superuser, no `CREATEDB`, no `CREATEROLE`): an administrator creates the
//! role and the database (`dev/deps` locally, the test harness for tests,
//! docs/postgresql.md's SQL in production). The migrations run as that owner and
//! need no extension. `create_if_missing` is for a throw-away set-up whose role may
//! create databases (the docker-compose demo).
//!
//! The platform's tables (outbox, inbox) are migrations 1–99; a service's own start at
//! 100 and live in the service's `migrations/`. Both sets run as one sqlx migrator,
//! which holds a PostgreSQL advisory lock while it works, so that replicas starting
//! together apply each migration once.

use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::{
    Connection, PgConnection, PgPool,
    error::BoxDynError,
    migrate::{Migration, MigrationSource, Migrator},
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::DatabaseConfig;

static PLATFORM_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// First version a service's own migrations may use.
pub const FIRST_SERVICE_MIGRATION: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("database url: {0}")]
    Url(#[source] sqlx::Error),
    #[error("connecting to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("creating database {name}: {source}")]
    Create { name: String, source: sqlx::Error },
    #[error(
        "database.create_if_missing: the role may not create database {name}; an administrator \
         creates it, owned by the service's role (docs/postgresql.md), and create_if_missing stays false"
    )]
    CreateRefused { name: String },
    #[error(
        "migration {version} of the service overlaps the platform's (service migrations start at {FIRST_SERVICE_MIGRATION})"
    )]
    Overlap { version: i64 },
    #[error("migrating the database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Opens the pool, creating the database first when configured to.
pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, DatabaseError> {
    let options: PgConnectOptions = config.url.parse().map_err(DatabaseError::Url)?;
    if config.create_if_missing {
        create_database_if_missing(&options).await?;
    }
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(DatabaseError::Connect)
}

/// Creates the database that `options` names, connecting to `postgres` to do so.
pub async fn create_database_if_missing(options: &PgConnectOptions) -> Result<(), DatabaseError> {
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .map_err(DatabaseError::Connect)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .map_err(DatabaseError::Connect)?;
    if !exists {
        let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&statement).execute(&mut admin).await {
            Ok(_) => tracing::info!(database = %name, "database created"),
            // Another replica created it first: duplicate_database when its creation
            // had committed before this one looked, unique_violation (on
            // pg_database's name) when both were under way at once.
            Err(sqlx::Error::Database(error))
                if matches!(error.code().as_deref(), Some("42P04" | "23505")) =>
            {
                tracing::info!(database = %name, "database created by another replica");
            }
            // insufficient_privilege: a service's own role, as it should be, lacks CREATEDB.
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42501") => {
                return Err(DatabaseError::CreateRefused { name });
            }
            Err(source) => return Err(DatabaseError::Create { name, source }),
        }
    }
    let _ = admin.close().await;
    Ok(())
}

#[derive(Debug)]
struct Combined(Vec<Migration>);

impl<'s> MigrationSource<'s> for Combined {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { Ok(self.0) })
    }
}

/// Applies the platform's migrations and then the service's, behind an advisory lock.
pub async fn migrate(pool: &PgPool, service: &Migrator) -> Result<(), DatabaseError> {
    if let Some(migration) = service.iter().find(|m| m.version < FIRST_SERVICE_MIGRATION) {
        return Err(DatabaseError::Overlap {
            version: migration.version,
        });
    }
    let all: Vec<Migration> = PLATFORM_MIGRATIONS
        .iter()
        .chain(service.iter())
        .cloned()
        .collect();
    let migrator = Migrator::new(Combined(all))
        .await
        .map_err(DatabaseError::Migrate)?;
    migrator.run(pool).await.map_err(DatabaseError::Migrate)
}
