//! `fordeler generate`: deterministic synthetic packages.

use std::path::PathBuf;

use anyhow::Context;

use crate::generate::{GenerateOptions, generate};
use crate::registry;

/// Options of `fordeler generate`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Register to generate packages for (its definition is read from --registers).
    #[arg(long)]
    register: String,
    /// Number of packages to write.
    #[arg(long, default_value_t = 1)]
    packages: u64,
    /// Rows per package (at least 10).
    #[arg(long, default_value_t = 1000)]
    rows: u64,
    /// Seed of the history: the same register, seed and rows give the same packages.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Sequence number of the first package to write; earlier packages are not needed.
    #[arg(long, default_value_t = 1)]
    start_seq: u64,
    /// Output directory.
    #[arg(long, default_value = "packages")]
    out: PathBuf,
    /// Write plain NDJSON instead of gzip.
    #[arg(long)]
    no_gzip: bool,
    /// Directory of the register definitions (*.toml).
    #[arg(long, env = "FORDELER_REGISTERS", default_value = "registers")]
    registers: PathBuf,
}

/// Writes the packages and prints their paths.
pub fn run(opts: Opts) -> anyhow::Result<()> {
    let registry = registry::load_dir(&opts.registers)?;
    let register = registry.get(&opts.register).with_context(|| {
        format!(
            "unknown register \"{}\" (known: {})",
            opts.register,
            registry.names()
        )
    })?;
    let options = GenerateOptions {
        packages: opts.packages,
        rows: opts.rows,
        seed: opts.seed,
        start_seq: opts.start_seq,
        out: opts.out,
        gzip: !opts.no_gzip,
    };
    for path in generate(register, &options)? {
        println!("{}", path.display());
    }
    Ok(())
}
