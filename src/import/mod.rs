//! The atomic package importer.
//!
//! One package is one transaction: lock the register's row, check the sequence, COPY the
//! validated rows into a staging table while a blocking thread parses the file, then apply each
//! entity with one set-based statement that also writes the events, then commit. A failure at any
//! point (bad row, crash, kill) rolls everything back; rerunning completes the package.

mod apply;
pub use apply::IMPORT_APPLICATION_NAME;
mod error;
mod pipeline;
mod summary;

pub use error::ImportError;
pub use summary::{Observer, Outcome, PackageSummary, Quiet};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use chrono::Utc;
use sqlx::{Connection, PgConnection};

use crate::package::{Header, PackageReader};
use crate::registry::Registry;
use apply::PackageRecord;

/// Opens the importer's connection, with settings for large set-based statements.
pub async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    let options = crate::store::connect_options(url)?;
    let mut conn = PgConnection::connect_with(&options).await?;
    // temp_buffers must be set before the session first touches a temporary table.
    // jit: the statements run once per package; compiling them costs more than it saves.
    sqlx::raw_sql(
        "SET temp_buffers = '256MB'; SET work_mem = '256MB'; SET jit = off; \
         SET client_connection_check_interval = '1s'",
    )
    .execute(&mut conn)
    .await?;
    Ok(conn)
}

/// How packages are imported.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Rows applied per batch: while PostgreSQL applies one, the next is parsed. Larger batches
    /// hold more memory (the parser runs a batch ahead); registers with an `old` extra event
    /// field apply each package as one batch.
    pub batch_rows: u64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            batch_rows: pipeline::BATCH_ROWS,
        }
    }
}

/// Imports `files` in (register, sequence) order, stopping at the first failure. Headers of all
/// files are read first, so a file without a valid header stops the run before anything starts.
pub async fn import_files(
    conn: &mut PgConnection,
    registry: &Registry,
    files: &[PathBuf],
    observer: &dyn Observer,
    options: &ImportOptions,
) -> Result<Vec<PackageSummary>, (Vec<PackageSummary>, ImportError)> {
    let mut ordered = Vec::with_capacity(files.len());
    for file in files {
        match PackageReader::open(file).and_then(|mut r| r.read_header()) {
            Ok(header) => ordered.push((header.register.clone(), header.sequence, file.clone())),
            Err(e) => return Err((Vec::new(), e.into())),
        }
    }
    ordered.sort();
    let mut done = Vec::with_capacity(ordered.len());
    for (_, _, file) in ordered {
        match import_package_with(conn, registry, &file, observer, options).await {
            Ok(summary) => done.push(summary),
            Err(e) => return Err((done, e)),
        }
    }
    Ok(done)
}

/// Imports one package atomically. On failure nothing of it is applied, and the failure is
/// recorded in `import_failures`.
pub async fn import_package(
    conn: &mut PgConnection,
    registry: &Registry,
    path: &Path,
    observer: &dyn Observer,
) -> Result<PackageSummary, ImportError> {
    import_package_with(conn, registry, path, observer, &ImportOptions::default()).await
}

/// [`import_package`] with other options.
pub async fn import_package_with(
    conn: &mut PgConnection,
    registry: &Registry,
    path: &Path,
    observer: &dyn Observer,
    options: &ImportOptions,
) -> Result<PackageSummary, ImportError> {
    let mut header = None;
    let result = import_inner(conn, registry, path, observer, options, &mut header).await;
    if let Err(error) = &result {
        let (register, sequence) = header.map(|h: Header| (h.register, h.sequence)).unzip();
        let file = path.display().to_string();
        let recorded = apply::record_failure(
            conn,
            register.as_deref(),
            sequence,
            &file,
            error.kind(),
            &error.to_string(),
        )
        .await;
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "could not record the failed import");
        }
    }
    result
}

async fn import_inner(
    conn: &mut PgConnection,
    registry: &Registry,
    path: &Path,
    observer: &dyn Observer,
    options: &ImportOptions,
    header_out: &mut Option<Header>,
) -> Result<PackageSummary, ImportError> {
    let timer = Instant::now();
    let started_at = Utc::now();
    let (reader, header, register) = crate::package::open(registry, path)?;
    *header_out = Some(header.clone());
    let rows_counter = Arc::new(AtomicU64::new(0));
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    observer.started(
        reader.file(),
        &header,
        size,
        reader.consumed(),
        rows_counter.clone(),
    );

    // A re-delivery is hashed before taking the lock, not to hold up the register's imports
    // (last_sequence only grows, so the unlocked read cannot mislead).
    if header.sequence <= apply::last_sequence(conn, &register.name).await? {
        let summary = redelivery(conn, reader, &header, timer).await?;
        observer.finished(&summary);
        return Ok(summary);
    }
    let mut tx = conn.begin().await?;
    let state = apply::lock_register(&mut tx, &register.name).await?;
    if header.sequence > state.last_sequence + 1 {
        let (file, register, expected, got) = (
            reader.file().to_owned(),
            header.register.clone(),
            state.last_sequence + 1,
            header.sequence,
        );
        return Err(ImportError::Gap {
            file,
            register,
            expected,
            got,
        });
    }
    if header.sequence <= state.last_sequence {
        // Another importer committed this package while we waited for the lock.
        tx.rollback().await?;
        let summary = redelivery(conn, reader, &header, timer).await?;
        observer.finished(&summary);
        return Ok(summary);
    }
    apply::announce_import(&mut tx, &register.name, header.sequence).await?;
    let file = reader.file().to_owned();
    log_phase(&header, "staging", &timer);
    let package = pipeline::Package {
        register,
        state: &state,
        header: &header,
        file: &file,
        batch_rows: options.batch_rows.max(1),
    };
    let staged =
        pipeline::stage_and_apply(&mut tx, &package, reader, rows_counter, observer).await?;
    let totals = staged.totals;
    log_phase(&header, "committing", &timer);
    observer.phase("committing");
    let record = PackageRecord {
        register_id: state.register_id,
        sequence: header.sequence,
        last_eventid: state.last_eventid + totals.events(),
        row_delta: totals.inserted - totals.deleted,
        written_at: state.written_at,
        sha256: &staged.sha256,
        file: &file,
        created: header.created,
        started_at,
        counts: [
            staged.rows as i64,
            totals.inserted,
            totals.updated,
            totals.deleted,
            staged.upserts - totals.inserted - totals.updated,
        ],
        first_eventid: (totals.events() > 0).then_some(state.last_eventid + 1),
        events_last: (totals.events() > 0).then_some(state.last_eventid + totals.events()),
    };
    apply::finish_package(&mut tx, &record).await?;
    tx.commit().await?;
    let summary = imported(&record, &header, timer);
    tracing::info!(register = %summary.register, package.seq = summary.sequence, rows = summary.rows_read,
        events = summary.events, duration_ms = summary.duration_ms, "package imported");
    observer.finished(&summary);
    Ok(summary)
}

/// A package whose sequence number was imported: identical content is a no-op, other content
/// is refused.
async fn redelivery(
    conn: &mut PgConnection,
    reader: PackageReader,
    header: &Header,
    timer: Instant,
) -> Result<PackageSummary, ImportError> {
    let file = reader.file().to_owned();
    let found = tokio::task::spawn_blocking(move || reader.finish())
        .await
        .map_err(anyhow::Error::from)??;
    let stored = apply::imported_sha256(conn, &header.register, header.sequence).await?;
    match stored {
        Some(stored) if stored == found => Ok(already_imported(file, header, found, timer)),
        stored => Err(ImportError::Conflict {
            file,
            register: header.register.clone(),
            sequence: header.sequence,
            stored: stored.unwrap_or_else(|| "unknown".into()),
            found,
        }),
    }
}

fn imported(record: &PackageRecord<'_>, header: &Header, timer: Instant) -> PackageSummary {
    let duration = timer.elapsed();
    let [rows, inserted, updated, deleted, unchanged] = record.counts.map(|n| n as u64);
    PackageSummary {
        file: record.file.to_owned(),
        register: header.register.clone(),
        sequence: header.sequence,
        outcome: Outcome::Imported,
        rows_read: rows,
        inserted,
        updated,
        deleted,
        unchanged,
        events: inserted + updated + deleted,
        first_eventid: record.first_eventid,
        last_eventid: record.events_last,
        duration_ms: duration.as_millis() as u64,
        rows_per_second: (rows as f64 / duration.as_secs_f64().max(1e-9)) as u64,
        sha256: record.sha256.to_owned(),
    }
}

fn log_phase(header: &Header, phase: &'static str, timer: &Instant) {
    let elapsed_ms = timer.elapsed().as_millis() as u64;
    tracing::debug!(register = %header.register, package.seq = header.sequence, phase, elapsed_ms, "import phase");
}

fn already_imported(
    file: String,
    header: &Header,
    sha256: String,
    timer: Instant,
) -> PackageSummary {
    PackageSummary {
        file,
        register: header.register.clone(),
        sequence: header.sequence,
        outcome: Outcome::AlreadyImported,
        rows_read: 0,
        inserted: 0,
        updated: 0,
        deleted: 0,
        unchanged: 0,
        events: 0,
        first_eventid: None,
        last_eventid: None,
        duration_ms: timer.elapsed().as_millis() as u64,
        rows_per_second: 0,
        sha256,
    }
}
