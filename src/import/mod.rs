//! The atomic package importer.
//!
//! One package is one transaction: lock the register's row, check the sequence, COPY the
//! validated rows into a staging table while a blocking thread parses the file, then apply each
//! entity with one set-based statement that also writes the events, then commit. A failure at any
//! point (bad row, crash, kill) rolls everything back; rerunning completes the package.

mod apply;
pub use apply::IMPORT_APPLICATION_NAME;
mod error;
mod summary;

pub use apply::staging_columns;
pub use error::ImportError;
pub use summary::{Observer, Outcome, PackageSummary, Quiet};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::Utc;
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc;

use crate::package::{Header, Op, PackageError, PackageReader, RowEncoder};
use crate::registry::{Register, Registry};
use apply::{EntityApply, PackageRecord};

/// Bytes of COPY data sent per message to PostgreSQL.
const CHUNK: usize = 1024 * 1024;

/// Opens the importer's connection, with settings for large set-based statements.
pub async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    let options = crate::store::connect_options(url)?;
    let mut conn = PgConnection::connect_with(&options).await?;
    // temp_buffers must be set before the session first touches a temporary table.
    sqlx::raw_sql("SET temp_buffers = '256MB'; SET work_mem = '256MB'; SET client_connection_check_interval = '1s'")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// Imports `files` in (register, sequence) order, stopping at the first failure. Headers of all
/// files are read first, so a file without a valid header stops the run before anything starts.
pub async fn import_files(
    conn: &mut PgConnection,
    registry: &Registry,
    files: &[PathBuf],
    observer: &dyn Observer,
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
        match import_package(conn, registry, &file, observer).await {
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
    let mut header = None;
    let result = import_inner(conn, registry, path, observer, &mut header).await;
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
    let parsed = stage(&mut tx, register, reader, &header, rows_counter, &timer).await?;
    observer.phase("applying");
    let totals =
        apply_entities(&mut tx, register, &state, &header, &file, &parsed, observer).await?;
    log_phase(&header, "committing", &timer);
    observer.phase("committing");
    let record = PackageRecord {
        register_id: state.register_id,
        sequence: header.sequence,
        last_eventid: state.last_eventid + totals.events(),
        row_delta: totals.inserted - totals.deleted,
        written_at: state.written_at,
        sha256: &parsed.sha256,
        file: &file,
        created: header.created,
        started_at,
        counts: [
            parsed.rows as i64,
            totals.inserted,
            totals.updated,
            totals.deleted,
            parsed.upserts - totals.inserted - totals.updated,
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

/// Creates and fills the staging table, refuses duplicate keys, and analyzes it.
async fn stage(
    conn: &mut PgConnection,
    register: &Register,
    reader: PackageReader,
    header: &Header,
    rows_counter: Arc<AtomicU64>,
    timer: &Instant,
) -> Result<Parsed, ImportError> {
    let file = reader.file().to_owned();
    log_phase(header, "staging", timer);
    apply::create_staging(conn, register).await?;
    let parsed = stage_rows(conn, register, reader, header, rows_counter).await?;
    log_phase(header, "applying", timer);
    if let Some((ent, key, first, second)) = apply::find_duplicate_key(conn).await? {
        let entity = &register.entities[ent as usize].name;
        let message = format!(
            "{entity} row \"{key}\" appears twice in the package (lines {first} and {second})"
        );
        return Err(PackageError {
            file,
            line: second as u64,
            field: Some("key".into()),
            message,
        }
        .into());
    }
    apply::analyze_staging(conn).await?;
    log_phase(header, "analyzed", timer);
    Ok(parsed)
}

/// Applies every entity that has staged rows, numbering events from the register's counter.
async fn apply_entities(
    conn: &mut PgConnection,
    register: &Register,
    state: &apply::RegisterState,
    header: &Header,
    file: &str,
    parsed: &Parsed,
    observer: &dyn Observer,
) -> Result<apply::Applied, ImportError> {
    let mut totals = apply::Applied::default();
    for (index, entity) in register.entities.iter().enumerate() {
        if parsed.per_entity[index] == 0 {
            continue;
        }
        let entity_apply = EntityApply {
            register,
            register_id: state.register_id,
            index,
            sequence: header.sequence,
            base_eventid: state.last_eventid + totals.events(),
            written_at: state.written_at,
        };
        observer.phase(&format!("applying {}", entity.name));
        let entity_timer = Instant::now();
        let applied = apply::apply_entity(conn, &entity_apply).await?;
        tracing::debug!(register = %register.name, package.seq = header.sequence, entity = %entity.name,
            events = applied.events(), duration_ms = entity_timer.elapsed().as_millis() as u64, "entity applied");
        if let Some(line) = applied.unknown_delete_line {
            let message = format!("delete of a {} row that does not exist", entity.name);
            return Err(PackageError {
                file: file.to_owned(),
                line: line as u64,
                field: Some("key".into()),
                message,
            }
            .into());
        }
        totals.inserted += applied.inserted;
        totals.updated += applied.updated;
        totals.deleted += applied.deleted;
    }
    Ok(totals)
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

/// What the parse thread saw.
struct Parsed {
    rows: u64,
    upserts: i64,
    per_entity: Vec<u64>,
    sha256: String,
}

/// Streams the package's rows into the staging table: a blocking thread parses and validates,
/// this task forwards COPY chunks. Memory is bounded by the channel (a few chunks).
async fn stage_rows(
    conn: &mut PgConnection,
    register: &Register,
    reader: PackageReader,
    header: &Header,
    rows_counter: Arc<AtomicU64>,
) -> Result<Parsed, ImportError> {
    let (sender, mut receiver) = mpsc::channel::<Vec<u8>>(4);
    let register_owned = register.clone();
    let expected_rows = header.rows;
    let parser = tokio::task::spawn_blocking(move || {
        parse_rows(
            &register_owned,
            reader,
            expected_rows,
            &sender,
            &rows_counter,
        )
    });
    let mut copy = conn.copy_in_raw(apply::COPY_STAGING).await?;
    let mut send_error = None;
    while let Some(chunk) = receiver.recv().await {
        if let Err(e) = copy.send(chunk).await {
            send_error = Some(e);
            break;
        }
    }
    drop(receiver);
    let parsed = parser.await.map_err(anyhow::Error::from)?;
    if let Some(e) = send_error {
        return Err(e.into());
    }
    match parsed {
        Ok(parsed) => {
            copy.finish().await?;
            Ok(parsed)
        }
        Err(e) => {
            copy.abort("package refused").await.ok();
            Err(e.into())
        }
    }
}

/// Lines read by the reader thread, handed to the parse thread in batches.
#[derive(Default)]
struct LineBatch {
    text: String,
    /// (line number, start, end) of each line in `text`.
    lines: Vec<(u64, usize, usize)>,
}

/// Bytes of line text per batch.
const BATCH: usize = 256 * 1024;

/// The reader thread: decompresses, hashes and splits lines, so that JSON parsing runs on
/// another core. Returns the SHA-256 of the whole content.
fn read_lines(
    mut reader: PackageReader,
    sender: std::sync::mpsc::SyncSender<LineBatch>,
) -> Result<String, PackageError> {
    let mut batch = LineBatch::default();
    while let Some((line_no, line)) = reader.next_line()? {
        let start = batch.text.len();
        batch.text.push_str(line);
        batch.lines.push((line_no, start, batch.text.len()));
        if batch.text.len() >= BATCH && sender.send(std::mem::take(&mut batch)).is_err() {
            return Err(reader.error(None, "import aborted"));
        }
    }
    if !batch.lines.is_empty() && sender.send(batch).is_err() {
        return Err(reader.error(None, "import aborted"));
    }
    reader.finish()
}

/// What the parse thread counted.
#[derive(Default)]
struct Counts {
    rows: u64,
    upserts: i64,
    per_entity: Vec<u64>,
}

fn parse_rows(
    register: &Register,
    reader: PackageReader,
    expected_rows: Option<u64>,
    sender: &mpsc::Sender<Vec<u8>>,
    rows_counter: &AtomicU64,
) -> Result<Parsed, PackageError> {
    let file = reader.file().to_owned();
    let (batches, receiver) = std::sync::mpsc::sync_channel(4);
    let reading = std::thread::spawn(move || read_lines(reader, batches));
    let parsed = parse_batches(register, &file, &receiver, sender, rows_counter);
    drop(receiver);
    let read = reading.join().unwrap_or_else(|_| {
        Err(PackageError {
            file: file.clone(),
            line: 0,
            field: None,
            message: "the reader thread failed".into(),
        })
    });
    let counts = parsed?;
    let sha256 = read?;
    if let Some(expected) = expected_rows
        && expected != counts.rows
    {
        return Err(PackageError::row_count(&file, expected, counts.rows));
    }
    Ok(Parsed {
        rows: counts.rows,
        upserts: counts.upserts,
        per_entity: counts.per_entity,
        sha256,
    })
}

fn parse_batches(
    register: &Register,
    file: &str,
    receiver: &std::sync::mpsc::Receiver<LineBatch>,
    sender: &mpsc::Sender<Vec<u8>>,
    rows_counter: &AtomicU64,
) -> Result<Counts, PackageError> {
    let encoder = RowEncoder::new(register);
    let mut counts = Counts {
        per_entity: vec![0; register.entities.len()],
        ..Counts::default()
    };
    let mut buf = Vec::with_capacity(CHUNK + 64 * 1024);
    let aborted = || PackageError {
        file: file.to_owned(),
        line: 0,
        field: None,
        message: "import aborted".into(),
    };
    for batch in receiver.iter() {
        for &(line_no, start, end) in &batch.lines {
            let (entity, op) = encoder.encode(file, line_no, &batch.text[start..end], &mut buf)?;
            counts.per_entity[entity] += 1;
            counts.upserts += i64::from(op == Op::Upsert);
            counts.rows += 1;
        }
        if buf.len() >= CHUNK {
            rows_counter.store(counts.rows, Ordering::Relaxed);
            let full = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK + 64 * 1024));
            // A closed channel means the COPY side stopped on a database error; it reports it.
            sender.blocking_send(full).map_err(|_| aborted())?;
        }
    }
    if !buf.is_empty() {
        sender.blocking_send(buf).map_err(|_| aborted())?;
    }
    rows_counter.store(counts.rows, Ordering::Relaxed);
    Ok(counts)
}
