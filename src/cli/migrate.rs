//! `fordeler migrate`: apply migrations and derive the register storage.

use crate::database::DatabaseOpts;

/// Options of `fordeler migrate`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    #[command(flatten)]
    db: DatabaseOpts,
}

/// Applies migrations and syncs every register's tables with its definition.
pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let (_pool, registry, _) = opts.db.open(2).await?;
    println!("database migrated; registers ready: {}", registry.names());
    Ok(())
}
