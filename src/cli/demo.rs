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
        let options = GenerateOptions {
            packages: opts.packages,
            rows: opts.rows,
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
