//! `fordeler apikey create|list|revoke`: API keys for machine clients, stored hashed.

use chrono::Utc;
use clap::Subcommand;
use uuid::Uuid;

use super::serve::parse_lifetime;
use crate::auth::{Grants, apikey};
use crate::database::DatabaseOpts;

/// Options of `fordeler apikey`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    #[command(flatten)]
    db: DatabaseOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a key and print it (the only time it is shown; only its hash is stored).
    Create {
        /// Who the key is for (a system or team; shown by `list` and in the audit trail).
        #[arg(long)]
        owner: String,
        /// What it may read: `REGISTER:Entity`, `REGISTER:*` or `*`, separated by spaces or
        /// commas (`"CPR:Person BBR:*"`).
        #[arg(long)]
        grants: String,
        /// Make it stop working after this long (`90d`, `12h`, `30m`); default: never.
        #[arg(long, value_parser = parse_lifetime)]
        expires_in: Option<std::time::Duration>,
        /// Print `{"id": ..., "key": ...}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the keys (never their secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: refused from now on.
    Revoke {
        /// The key's id (as `list` shows it).
        id: Uuid,
    },
}

/// Runs the subcommand.
pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let (pool, registry, _) = opts.db.open(2).await?;
    match opts.command {
        Command::Create {
            owner,
            grants,
            expires_in,
            json,
        } => {
            let grants = Grants::parse(&grants).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(!grants.is_empty(), "--grants names nothing");
            for (register, entity) in grants.items() {
                if register == "*" {
                    continue;
                }
                let known = registry
                    .get(register)
                    .ok_or_else(|| anyhow::anyhow!("--grants: there is no register {register}"))?;
                if let Some(entity) = entity
                    && !known.entities.iter().any(|e| e.name == entity)
                {
                    anyhow::bail!("--grants: {register} has no entity {entity}");
                }
            }
            let expires_at = match expires_in {
                Some(d) => Some(Utc::now() + chrono::Duration::from_std(d)?),
                None => None,
            };
            let (key, id) = apikey::create(&pool, &owner, &grants, expires_at).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": id, "key": key, "expires_at": expires_at})
                );
            } else {
                println!("{key}");
                eprintln!(
                    "API key {id} for {owner}, grants {grants}{}. It is shown only now: store \
                     it in a secret store. Send it as `X-Api-Key: <key>`.",
                    expires_at.map_or(String::new(), |t| format!(", expires {t}"))
                );
            }
        }
        Command::List { json } => {
            let keys = apikey::list(&pool).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                println!(
                    "{:<36}  {:<20}  {:<24}  {:<20}  state",
                    "id", "owner", "grants", "created"
                );
                for k in keys {
                    let state = match (k.revoked_at, k.expires_at) {
                        (Some(t), _) => format!("revoked {}", t.format("%Y-%m-%d %H:%M")),
                        (None, Some(t)) if t <= Utc::now() => {
                            format!("expired {}", t.format("%Y-%m-%d %H:%M"))
                        }
                        (None, Some(t)) => format!("valid until {}", t.format("%Y-%m-%d %H:%M")),
                        (None, None) => "valid".to_owned(),
                    };
                    println!(
                        "{:<36}  {:<20}  {:<24}  {:<20}  {state}",
                        k.id,
                        k.owner,
                        k.grants,
                        k.created_at.format("%Y-%m-%d %H:%M")
                    );
                }
            }
        }
        Command::Revoke { id } => {
            anyhow::ensure!(
                apikey::revoke(&pool, id).await?,
                "there is no unrevoked API key {id}"
            );
            println!("revoked {id}");
        }
    }
    Ok(())
}
