//! `fordeler demo`: the README's first command. Starts PostgreSQL (embedded unless
//! `DATABASE_URL`), imports the next few sample packages of every register, prints the status.

use std::path::PathBuf;

use crate::database::DatabaseOpts;
use crate::generate::{GenerateOptions, generate};
use crate::import::{self, Quiet};
use crate::store::register_status;

/// Options of `fordeler demo`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    #[command(flatten)]
    db: DatabaseOpts,
    /// Packages to add per register on each run.
    #[arg(long, default_value_t = 3)]
    packages: u64,
    /// Rows per package.
    #[arg(long, default_value_t = 2000)]
    rows: u64,
}

/// Rows per package of the history already imported for `register` (its package 1), if any:
/// the next packages must continue that history, or their corrections and deletes would name
/// rows that do not exist.
async fn history_rows(pool: &sqlx::PgPool, register: &str) -> anyhow::Result<Option<u64>> {
    let rows: Option<i64> = sqlx::query_scalar(
        "SELECT p.rows_read FROM import_packages p JOIN registers r USING (register_id)
         WHERE r.name = $1 AND p.sequence = 1",
    )
    .bind(register)
    .fetch_optional(pool)
    .await?;
    Ok(rows.map(|n| n as u64))
}

/// Generates the next packages of each register's sample history and imports them.
pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let (pool, registry, url) = opts.db.open(2).await?;
    let mut conn = import::connect(&url).await?;
    let out: PathBuf = opts.db.data_dir.join("demo-packages");
    let before = register_status(&pool).await?;
    for register in registry.registers() {
        let last = before
            .iter()
            .find(|s| s.register == register.name)
            .map_or(0, |s| s.last_sequence);
        let rows = history_rows(&pool, &register.name)
            .await?
            .unwrap_or(opts.rows);
        if rows != opts.rows {
            println!(
                "{}: continuing the imported history of {rows} rows per package (--rows {} would \
                 start another; use a new --data-dir or DATABASE_URL for that)",
                register.name, opts.rows
            );
        }
        let options = GenerateOptions {
            packages: opts.packages,
            rows,
            seed: 7,
            start_seq: last as u64 + 1,
            out: out.clone(),
            gzip: true,
        };
        let files = generate(register, &options)?;
        for file in files {
            let s = import::import_package(&mut conn, &registry, &file, &Quiet).await?;
            println!(
                "imported {} package {}: {} rows, {} events ({} i, {} u, {} d, {} unchanged) in {} ms",
                s.register,
                s.sequence,
                s.rows_read,
                s.events,
                s.inserted,
                s.updated,
                s.deleted,
                s.unchanged,
                s.duration_ms
            );
        }
    }
    println!();
    super::status::print_table(&register_status(&pool).await?);
    println!(
        "\npackages are in {}; run the demo again to import the next ones.",
        out.display()
    );
    Ok(())
}
