//! `fordeler demo`: the README's first command. Starts PostgreSQL (embedded unless
//! `DATABASE_URL`), imports the next few sample packages of every register, prints the status,
//! then serves the GraphQL API and keeps importing a generated package every few seconds, so
//! the data changes while a user explores it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgConnection;

use crate::database::DatabaseOpts;
use crate::generate::{GenerateOptions, generate};
use crate::graphql::{Api, Limits};
use crate::http::{self, AppState, HttpConfig};
use crate::import::{self, Quiet};
use crate::live::LiveConfig;
use crate::metrics::Metrics;
use crate::registry::{Register, Registry};
use crate::store::register_status;

/// Options of `fordeler demo`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    #[command(flatten)]
    db: DatabaseOpts,
    /// Packages to add per register before serving.
    #[arg(long, default_value_t = 3)]
    packages: u64,
    /// Rows per package.
    #[arg(long, default_value_t = 2000)]
    rows: u64,
    /// Only import, then exit: no server, no further imports.
    #[arg(long)]
    no_serve: bool,
    /// Address the GraphQL API listens on.
    #[arg(long, env = "FORDELER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// While serving, import the next package of one register (in turn) this often.
    #[arg(long, default_value = "5s", value_parser = super::serve::parse_duration)]
    import_every: Duration,
}

/// Imports the next packages, then serves and keeps importing until Ctrl-C or SIGTERM.
pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let (pool, registry, url) = opts.db.open(8).await?;
    let mut conn = import::connect(&url).await?;
    let out: PathBuf = opts.db.data_dir.join("demo-packages");
    for register in registry.registers() {
        import_next(
            &pool,
            &mut conn,
            &registry,
            register,
            &opts,
            opts.packages,
            &out,
        )
        .await?;
    }
    println!();
    super::status::print_table(&register_status(&pool).await?);
    println!("\npackages are in {}", out.display());
    if opts.no_serve {
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (choose another with --listen)",
                opts.listen
            )
        })?;
    let addr = listener.local_addr()?;
    // Publish each import to subscribers within a second: the demo imports every few seconds.
    let live = LiveConfig {
        publish_interval: Duration::from_secs(1),
        ..LiveConfig::default()
    };
    let api = Api::with_live(
        pool.clone(),
        Arc::new(registry.clone()),
        Limits::default(),
        live,
        Metrics::new(),
    );
    let router = http::router(AppState::new(&api, HttpConfig::default())?);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        super::serve::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut server_stop = stop.clone();
    let hub = api.live().clone();
    let server = tokio::spawn(http::serve(listener, router, async move {
        let _ = server_stop.wait_for(|stopped| *stopped).await;
        hub.close();
    }));
    print_welcome(addr, opts.import_every);
    let mut stop = stop;
    let mut tick = tokio::time::interval(opts.import_every);
    tick.tick().await;
    for register in registry.registers().iter().cycle() {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            _ = tick.tick() => {
                import_next(&pool, &mut conn, &registry, register, &opts, 0, &out).await?;
            }
        }
    }
    server.await??;
    println!("stopped");
    Ok(())
}

fn print_welcome(addr: SocketAddr, every: Duration) {
    println!(
        "\nGraphQL API: http://{addr}/graphql (open it in a browser for GraphiQL)\n\
         A new package is imported every {} s; press Ctrl-C to stop.\n\n\
         Try:\n  curl -s http://{addr}/graphql -H 'content-type: application/json' \\\n    \
         -d '{{\"query\": \"{{ BBR_Events(first: 3, where: {{eventaction: {{in: [\\\"u\\\", \\\"d\\\"]}}}}) \
         {{ nodes {{ eventid entityname eventaction object_id object_datafordelerRowId }} }} }}\"}}'\n\n\
         Keep a copy of BBR in SQLite, following every import (in another terminal):\n  \
         fordeler replica sync --source http://{addr} --register BBR --target sqlite://bbr.db --follow\n",
        every.as_secs_f64()
    );
}

/// Generates the next `packages` packages of `register`'s sample history (one when 0, the
/// serving phase) and imports them.
async fn import_next(
    pool: &PgPool,
    conn: &mut PgConnection,
    registry: &Registry,
    register: &Register,
    opts: &Opts,
    packages: u64,
    out: &Path,
) -> anyhow::Result<()> {
    let last = register_status(pool)
        .await?
        .into_iter()
        .find(|s| s.register == register.name)
        .map_or(0, |s| s.last_sequence);
    let rows = history_rows(pool, &register.name)
        .await?
        .unwrap_or(opts.rows);
    if rows != opts.rows && packages == opts.packages {
        println!(
            "{}: continuing the imported history of {rows} rows per package (--rows {} would \
             start another; use a new --data-dir or DATABASE_URL for that)",
            register.name, opts.rows
        );
    }
    let options = GenerateOptions {
        packages: packages.max(1),
        rows,
        seed: 7,
        start_seq: last as u64 + 1,
        out: out.to_path_buf(),
        gzip: true,
    };
    for file in generate(register, &options)? {
        let s = import::import_package(conn, registry, &file, &Quiet).await?;
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
    Ok(())
}

/// Rows per package of the history already imported for `register` (its package 1), if any:
/// the next packages must continue that history, or their corrections and deletes would name
/// rows that do not exist.
async fn history_rows(pool: &PgPool, register: &str) -> anyhow::Result<Option<u64>> {
    let rows: Option<i64> = sqlx::query_scalar(
        "SELECT p.rows_read FROM import_packages p JOIN registers r USING (register_id)
         WHERE r.name = $1 AND p.sequence = 1",
    )
    .bind(register)
    .fetch_optional(pool)
    .await?;
    Ok(rows.map(|n| n as u64))
}
