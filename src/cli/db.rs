//! `fordeler db`: the embedded PostgreSQL cluster.

use std::path::PathBuf;

use crate::embedded::Cluster;

/// Options of `fordeler db`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    #[command(subcommand)]
    action: Action,
    /// Directory of fordeler's local state (the cluster lives in <DIR>/pg).
    #[arg(
        long,
        env = "FORDELER_DATA_DIR",
        default_value = ".fordeler",
        global = true
    )]
    data_dir: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create (if needed) and start the cluster, then print its URL.
    Start,
    /// Stop the cluster.
    Stop,
    /// Print the cluster's URL (for DATABASE_URL) without starting it.
    Url,
}

/// Runs the action.
pub fn run(opts: Opts) -> anyhow::Result<()> {
    let cluster = Cluster::new(&opts.data_dir.join("pg"))?;
    match opts.action {
        Action::Start => {
            cluster.start()?;
            println!("{}", cluster.url());
        }
        Action::Stop => cluster.stop()?,
        Action::Url => println!("{}", cluster.url()),
    }
    Ok(())
}
