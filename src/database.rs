//! Resolving which PostgreSQL to use: `DATABASE_URL`, or the embedded private cluster.

use std::path::PathBuf;

use anyhow::Context;
use sqlx::PgPool;

use crate::embedded::Cluster;
use crate::registry::{self, Registry};

/// Options shared by every subcommand that needs the database and the register definitions.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseOpts {
    /// PostgreSQL URL. Without it, fordeler starts (or reuses) a private cluster in --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory of fordeler's local state (the embedded PostgreSQL cluster lives in <DIR>/pg).
    #[arg(long, env = "FORDELER_DATA_DIR", default_value = ".fordeler")]
    pub data_dir: PathBuf,
    /// Directory of the register definitions (*.toml).
    #[arg(long, env = "FORDELER_REGISTERS", default_value = "registers")]
    pub registers: PathBuf,
}

impl DatabaseOpts {
    /// The database URL: `DATABASE_URL`, or the embedded cluster's, started if needed.
    pub fn resolve_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        let cluster = Cluster::new(&self.data_dir.join("pg"))?;
        cluster
            .start()
            .context("cannot start the embedded PostgreSQL cluster")?;
        eprintln!(
            "fordeler: using the embedded PostgreSQL cluster in {}",
            cluster.data.display()
        );
        Ok(cluster.url())
    }

    /// Loads the register definitions.
    pub fn load_registry(&self) -> anyhow::Result<Registry> {
        Ok(registry::load_dir(&self.registers)?)
    }

    /// Connects, applies migrations and syncs the register storage: what every command needs.
    pub async fn open(&self, max_connections: u32) -> anyhow::Result<(PgPool, Registry, String)> {
        let registry = self.load_registry()?;
        let url = self.resolve_url()?;
        let pool = crate::store::connect(&url, max_connections).await?;
        crate::store::migrate(&pool).await?;
        crate::store::sync_registers(&pool, &registry).await?;
        Ok((pool, registry, url))
    }
}
