//! `fordeler status`: per-register state.

use crate::database::DatabaseOpts;
use crate::store::{RegisterStatus, register_status};

/// Options of `fordeler status`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    #[command(flatten)]
    db: DatabaseOpts,
    /// Print a JSON array with one object per register.
    #[arg(long)]
    json: bool,
}

/// Prints each register's last package, last eventid, last import, rows and events.
pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let (pool, _, _) = opts.db.open(2).await?;
    let status = register_status(&pool).await?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_table(&status);
    }
    Ok(())
}

/// Prints the status as an aligned table.
pub fn print_table(status: &[RegisterStatus]) {
    println!(
        "{:<10} {:>13} {:>13} {:>12} {:>12}  last import",
        "register", "last package", "last eventid", "rows", "events"
    );
    for s in status {
        let last = s
            .last_import_at
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "never".into());
        println!(
            "{:<10} {:>13} {:>13} {:>12} {:>12}  {last}",
            s.register, s.last_sequence, s.last_eventid, s.rows, s.events
        );
    }
}
