//! `fordeler audit`: who read protected data, newest first.

use chrono::Utc;

use super::serve::parse_lifetime;
use crate::auth::audit;
use crate::database::DatabaseOpts;

/// Options of `fordeler audit`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    #[command(flatten)]
    db: DatabaseOpts,
    /// How far back (`24h`, `30m`, `7d`).
    #[arg(long, default_value = "24h", value_parser = parse_lifetime)]
    since: std::time::Duration,
    /// Only this credential (`apikey:<uuid>`, `jwt:<iss>/<sub>`).
    #[arg(long)]
    credential: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Prints the records.
pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let (pool, _, _) = opts.db.open(2).await?;
    let since = Utc::now() - chrono::Duration::from_std(opts.since)?;
    let records = audit::query(&pool, since, opts.credential.as_deref(), opts.limit).await?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    println!(
        "{:<27}  {:<48}  {:<8} {:<16} {:<9} {:>8}",
        "at", "credential", "register", "entity", "operation", "rows"
    );
    for r in records {
        println!(
            "{:<27}  {:<48}  {:<8} {:<16} {:<9} {:>8}",
            r.at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
            r.credential,
            r.register,
            r.entity,
            r.operation,
            r.rows
        );
    }
    Ok(())
}
