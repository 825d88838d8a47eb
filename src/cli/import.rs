//! `fordeler import`: atomic package import with a progress bar and a summary.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::database::DatabaseOpts;
use crate::import::{self, ImportError, Observer, Outcome, PackageSummary};
use crate::package::Header;

/// Options of `fordeler import`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 all packages imported (or already imported), 1 database or I/O \
error, 2 usage error, 3 invalid package, 4 sequence gap, 5 re-delivered package with other content."
)]
pub struct Opts {
    #[command(flatten)]
    db: DatabaseOpts,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Rows applied per batch: PostgreSQL applies one batch while the next is parsed; the
    /// parser holds about one batch of rows.
    #[arg(long, env = "FORDELER_IMPORT_BATCH_ROWS", default_value_t = import::ImportOptions::default().batch_rows,
          value_parser = clap::value_parser!(u64).range(1..))]
    batch_rows: u64,
    /// Package files (.ndjson or .ndjson.gz); imported in (register, sequence) order.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Imports the packages and returns the exit code.
pub async fn run(opts: Opts) -> i32 {
    let prepared = async {
        let (_, registry, url) = opts.db.open(1).await?;
        let conn = import::connect(&url).await?;
        anyhow::Ok((registry, conn))
    };
    let (registry, mut conn) = match prepared.await {
        Ok(ready) => ready,
        Err(e) => return report(opts.json, &[], Some(&ImportError::Internal(e))),
    };
    let observer = Bar::default();
    let options = import::ImportOptions {
        batch_rows: opts.batch_rows,
    };
    match import::import_files(&mut conn, &registry, &opts.files, &observer, &options).await {
        Ok(done) => report(opts.json, &done, None),
        Err((done, error)) => {
            observer.clear();
            report(opts.json, &done, Some(&error))
        }
    }
}

fn report(json: bool, done: &[PackageSummary], error: Option<&ImportError>) -> i32 {
    if json {
        let error = error.map(|e| serde_json::json!({"kind": e.kind(), "message": e.to_string()}));
        let totals = Totals::of(done);
        let doc = serde_json::json!({"packages": done, "totals": totals, "error": error});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for summary in done {
            print_summary(summary);
        }
        if done.len() > 1 {
            let t = Totals::of(done);
            println!(
                "total: {} packages, {} rows read, {} inserted, {} updated, {} deleted, {} unchanged, {} events",
                done.len(),
                t.rows_read,
                t.inserted,
                t.updated,
                t.deleted,
                t.unchanged,
                t.events
            );
        }
    }
    match error {
        Some(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
        None => 0,
    }
}

#[derive(Default, serde::Serialize)]
struct Totals {
    rows_read: u64,
    inserted: u64,
    updated: u64,
    deleted: u64,
    unchanged: u64,
    events: u64,
    duration_ms: u64,
}

impl Totals {
    fn of(done: &[PackageSummary]) -> Self {
        let mut t = Totals::default();
        for s in done {
            t.rows_read += s.rows_read;
            t.inserted += s.inserted;
            t.updated += s.updated;
            t.deleted += s.deleted;
            t.unchanged += s.unchanged;
            t.events += s.events;
            t.duration_ms += s.duration_ms;
        }
        t
    }
}

fn print_summary(s: &PackageSummary) {
    match s.outcome {
        Outcome::AlreadyImported => {
            println!(
                "{} package {}: already imported ({})",
                s.register, s.sequence, s.file
            );
        }
        Outcome::Imported => {
            let ids = match (s.first_eventid, s.last_eventid) {
                (Some(a), Some(b)) => format!(", eventids {a}..{b}"),
                _ => String::new(),
            };
            println!(
                "{} package {}: {} rows read, {} inserted, {} updated, {} deleted, {} unchanged, {} events{ids} in {:.1}s ({} rows/s)",
                s.register,
                s.sequence,
                s.rows_read,
                s.inserted,
                s.updated,
                s.deleted,
                s.unchanged,
                s.events,
                s.duration_ms as f64 / 1000.0,
                s.rows_per_second
            );
        }
    }
}

/// A progress bar on stderr (drawn only on a terminal): bytes of the file, rows/s, ETA.
#[derive(Default)]
struct Bar {
    current: Mutex<Option<(ProgressBar, tokio::task::JoinHandle<()>)>>,
}

impl Bar {
    fn clear(&self) {
        if let Some((bar, ticker)) = self.current.lock().ok().and_then(|mut c| c.take()) {
            ticker.abort();
            bar.finish_and_clear();
        }
    }
}

impl Observer for Bar {
    fn started(
        &self,
        _file: &str,
        header: &Header,
        size: u64,
        bytes: Arc<AtomicU64>,
        rows: Arc<AtomicU64>,
    ) {
        self.clear();
        let bar = ProgressBar::new(size);
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{} {}", header.register, header.sequence));
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let n = rows.load(Ordering::Relaxed);
                let rate = n as f64 / start.elapsed().as_secs_f64().max(0.001);
                ticking.set_position(bytes.load(Ordering::Relaxed));
                ticking.set_message(format!("{n} rows, {rate:.0} rows/s"));
            }
        });
        if let Ok(mut current) = self.current.lock() {
            *current = Some((bar, ticker));
        }
    }

    fn phase(&self, phase: &str) {
        if let Ok(mut current) = self.current.lock()
            && let Some((bar, ticker)) = current.as_mut()
        {
            // After staging there is no byte progress: show what runs and for how long.
            ticker.abort();
            let style = ProgressStyle::with_template("{prefix} {spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_message(phase.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
        }
    }

    fn finished(&self, _summary: &PackageSummary) {
        self.clear();
    }
}
