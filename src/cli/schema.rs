//! `fordeler schema`: prints the GraphQL SDL the register definitions give (what
//! `graphql/schema.graphql` holds), without a database.

use std::path::PathBuf;
use std::sync::Arc;

use crate::registry;

/// Options of `fordeler schema`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Directory of the register definitions (*.toml).
    #[arg(long, env = "FORDELER_REGISTERS", default_value = "registers")]
    registers: PathBuf,
}

/// Prints the SDL.
pub fn run(opts: Opts) -> anyhow::Result<()> {
    let registry = registry::load_dir(&opts.registers)?;
    print!("{}", crate::graphql::sdl(Arc::new(registry))?);
    Ok(())
}
