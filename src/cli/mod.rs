//! The command line: one module per subcommand, each with its options and `run`.

mod apikey;
mod audit;
mod check;
mod db;
mod demo;
mod generate;
mod import;
mod migrate;
mod replica;
mod schema;
pub mod serve;
mod status;

use clap::{Parser, Subcommand};

/// fordeler: atomic register package import with gap-free events.
#[derive(Debug, Parser)]
#[command(name = "fordeler", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import packages atomically, in sequence order.
    Import(import::Opts),
    /// Validate packages against the register definitions, without a database.
    Check(check::Opts),
    /// Write deterministic synthetic packages for a register.
    Generate(generate::Opts),
    /// Apply database migrations and create the storage of every register definition.
    Migrate(migrate::Opts),
    /// Serve the GraphQL API (queries, GraphiQL, health, metrics) over HTTP.
    Serve(Box<serve::Opts>),
    /// Print the GraphQL schema (SDL) the register definitions give.
    Schema(schema::Opts),
    /// Show each register's last package, last eventid, rows and events.
    Status(status::Opts),
    /// Run the demo: start PostgreSQL, import sample packages of every register, show status.
    Demo(demo::Opts),
    /// Manage the embedded PostgreSQL cluster.
    Db(db::Opts),
    /// Keep a copy of a register in SQLite or PostgreSQL through a server's GraphQL API.
    Replica(replica::Opts),
    /// Create, list and revoke API keys (stored hashed) for machine clients.
    Apikey(apikey::Opts),
    /// Show the audit log: who read protected entities, when, and how much.
    Audit(audit::Opts),
}

impl Cli {
    /// Runs the subcommand and returns the process exit code.
    pub async fn run(self) -> i32 {
        let result = match self.command {
            Command::Import(opts) => return import::run(opts).await,
            Command::Replica(opts) => return replica::run(opts).await,
            Command::Check(opts) => return check::run(opts),
            Command::Generate(opts) => generate::run(opts),
            Command::Migrate(opts) => migrate::run(opts).await,
            Command::Status(opts) => status::run(opts).await,
            Command::Serve(opts) => serve::run(*opts).await,
            Command::Schema(opts) => schema::run(opts),
            Command::Demo(opts) => demo::run(opts).await,
            Command::Db(opts) => db::run(opts),
            Command::Apikey(opts) => apikey::run(opts).await,
            Command::Audit(opts) => audit::run(opts).await,
        };
        match result {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
