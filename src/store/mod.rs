//! Storage: PostgreSQL connection, migrations, the tables derived from register definitions,
//! and the queries that read register state. Knows nothing of GraphQL or HTTP.

mod schema;
mod status;

pub use schema::sync_registers;
pub use status::{RegisterStatus, register_status};

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// The embedded migrations of `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connection options for `url`, with the application name set for `pg_stat_activity`.
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options: PgConnectOptions = url
        .parse()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    // Statements are logged by fordeler at its boundaries, with fields; sqlx's own statement
    // log would print whole generated statements at WARN.
    Ok(options
        .application_name("fordeler")
        .disable_statement_logging())
}

/// Opens a connection pool of at most `max` connections.
pub async fn connect(url: &str, max: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(connect_options(url)?)
        .await
        .context("cannot connect to PostgreSQL")
}

/// Applies pending migrations (idempotent; concurrent callers are serialised by sqlx's lock).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("cannot apply database migrations")
}
