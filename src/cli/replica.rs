//! `fordeler replica sync|verify`: keep and check a copy of a register, through the source's
//! public GraphQL API only.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use crate::replica::{
    self, Credentials, Phase, Progress, ReplicaError, Source, SyncOptions, SyncReport, Target,
};

const EXIT_CODES: &str = "Exit codes: 0 done (verify: identical), 1 source or replica database \
error, 2 usage error, 3 source unreachable or busy after retries, 4 access refused, 5 source was \
reset (the replica's checkpoint is not in its history), 6 schema mismatch, 7 (verify) replica \
differs from the source.";

/// Options of `fordeler replica`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy a register's rows (or some entities') and keep them in sync: events, then the rows
    /// they name, checkpointed in the same transaction. `--follow` keeps going over SSE.
    #[command(after_help = EXIT_CODES)]
    Sync(SyncOpts),
    /// Compare the replica with the source: row count and checksum per entity.
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyOpts),
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The source: a fordeler server's base URL or its /graphql endpoint.
    #[arg(long, env = "FORDELER_SOURCE")]
    source: String,
    /// The register to copy (BBR, CVR, CPR...).
    #[arg(long)]
    register: String,
    /// The replica: sqlite://FILE (created if missing) or postgres://...
    #[arg(long, env = "FORDELER_REPLICA", default_value = "sqlite://replica.db")]
    target: String,
    /// Read a bearer token from this file (else FORDELER_TOKEN).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Read an API key from this file (else FORDELER_API_KEY).
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// JSON lines on stdout even on a terminal.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct SyncOpts {
    #[command(flatten)]
    common: Common,
    /// Only these entities (comma-separated); fixed when the replica is created.
    #[arg(long, value_delimiter = ',')]
    entities: Vec<String>,
    /// After catching up, subscribe and apply events as they are published, until stopped.
    #[arg(long)]
    follow: bool,
    /// Events per page (the server allows at most 1000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=1000))]
    page_size: u16,
    /// Row queries in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=32))]
    fetch_concurrency: u8,
}

#[derive(Debug, clap::Args)]
struct VerifyOpts {
    #[command(flatten)]
    common: Common,
}

/// Runs the subcommand and returns the exit code.
pub async fn run(opts: Opts) -> i32 {
    match opts.command {
        Command::Sync(opts) => sync(opts).await,
        Command::Verify(opts) => verify(opts).await,
    }
}

async fn connect(common: &Common) -> Result<(Source, Target), ReplicaError> {
    let credentials =
        Credentials::load(common.token_file.as_deref(), common.api_key_file.as_deref())?;
    let source = Source::new(&common.source, &common.register, &credentials)?;
    let target = Target::open(&common.target).await?;
    Ok((source, target))
}

async fn sync(opts: SyncOpts) -> i32 {
    let json = opts.common.json || !std::io::stderr().is_terminal();
    let display = Arc::new(Display::new(json));
    let (source, target) = match connect(&opts.common).await {
        Ok(both) => both,
        Err(e) => return fail(json, &e),
    };
    let options = SyncOptions {
        register: opts.common.register.clone(),
        entities: opts.entities,
        page_size: opts.page_size.into(),
        fetch_concurrency: opts.fetch_concurrency.into(),
        follow: opts.follow,
        ..SyncOptions::new(&opts.common.register)
    };
    let result = tokio::select! {
        result = replica::sync(&source, &target, &options, display.clone()) => result,
        () = super::serve::shutdown_signal() => {
            // Dropping the sync rolled back any uncommitted batch; the checkpoint is the last
            // committed one.
            Ok(display.last())
        }
    };
    target.close().await;
    display.finish();
    match result {
        Ok(report) => {
            if json {
                println!("{}", serde_json::json!({"summary": report}));
            } else {
                println!(
                    "{}: {} events applied in {:.1} s ({:.0} events/s): {} rows written, {} \
                     deleted; checkpoint {}, source head {}",
                    report.register,
                    report.events,
                    report.elapsed_seconds,
                    report.events_per_second,
                    report.rows_written,
                    report.rows_deleted,
                    report.checkpoint,
                    report.head
                );
            }
            0
        }
        Err(e) => fail(json, &e),
    }
}

async fn verify(opts: VerifyOpts) -> i32 {
    let json = opts.common.json || !std::io::stdout().is_terminal();
    let (source, target) = match connect(&opts.common).await {
        Ok(both) => both,
        Err(e) => return fail(json, &e),
    };
    let result = replica::verify(&source, &target, &opts.common.register, 1000).await;
    target.close().await;
    let report = match result {
        Ok(report) => report,
        Err(e) => return fail(json, &e),
    };
    if json {
        println!("{}", serde_json::json!({"verify": report}));
    } else {
        println!(
            "{}: replica checkpoint {}, source head {}",
            report.register, report.checkpoint, report.head
        );
        for e in &report.entities {
            println!(
                "  {:<28} source {:>10} rows {:016x}  replica {:>10} rows {:016x}  {}",
                e.entity,
                e.source.rows,
                e.source.sum,
                e.replica.rows,
                e.replica.sum,
                if e.identical {
                    "identical"
                } else {
                    "DIFFERENT"
                }
            );
        }
        if report.identical {
            println!("identical");
        } else {
            println!("the replica differs from the source");
        }
    }
    if report.head != report.head_after {
        eprintln!(
            "note: the source imported events during the check (head {} -> {}); rerun when \
             it is quiet if the replica differs",
            report.head, report.head_after
        );
    }
    if report.identical { 0 } else { 7 }
}

fn fail(json: bool, error: &ReplicaError) -> i32 {
    if json {
        println!(
            "{}",
            serde_json::json!({"error": {"kind": error.kind(), "message": error.to_string()}})
        );
    }
    eprintln!("error: {error}");
    error.exit_code()
}

/// Progress on a terminal (a spinner line) or as JSON lines, at most one per second.
struct Display {
    bar: Option<ProgressBar>,
    state: Mutex<(Option<SyncReport>, Option<Instant>, Option<Phase>)>,
}

impl Display {
    fn new(json: bool) -> Self {
        let bar = (!json).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            state: Mutex::new((None, None, None)),
        }
    }

    fn last(&self) -> SyncReport {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0.clone().unwrap_or_else(|| SyncReport {
            register: String::new(),
            phase: Phase::Done,
            checkpoint: 0,
            head: 0,
            lag: 0,
            events: 0,
            rows_written: 0,
            rows_deleted: 0,
            elapsed_seconds: 0.0,
            events_per_second: 0.0,
        })
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Display {
    fn update(&self, report: &SyncReport) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 = Some(report.clone());
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{} {:?}: checkpoint {} of {} (lag {}), {} events, {:.0} events/s",
                report.register,
                report.phase,
                report.checkpoint,
                report.head,
                report.lag,
                report.events,
                report.events_per_second
            ));
            return;
        }
        let due = state
            .1
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due || state.2 != Some(report.phase) {
            state.1 = Some(Instant::now());
            state.2 = Some(report.phase);
            println!("{}", serde_json::json!({"progress": report}));
        }
    }

    fn notice(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("note: {message}")),
            None => println!("{}", serde_json::json!({"notice": message})),
        }
    }
}
