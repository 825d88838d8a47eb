//! Staging and applying a package's rows, in batches, while the next batch is parsed.
//!
//! Two threads read and validate the package (`read_lines`, `encode_rows`) and hand this task
//! binary COPY chunks of each entity's rows, with an `Apply` after every batch of rows.
//! This task copies the chunks into the entity's staging table and, at each `Apply`, applies
//! the staged rows with the set-based statement of each entity. So PostgreSQL applies batch `n`
//! while the client parses batch `n + 1`, on the other core. Everything runs in the import's
//! one transaction: a failure anywhere rolls all of it back.
//!
//! Each batch's keys are kept (`keys_<entity>`): a key twice in the package is refused once
//! every batch has been applied (the transaction is then rolled back), whichever batches the
//! two rows were in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sqlx::PgConnection;
use tokio::sync::mpsc;

use super::apply::{self, Applied, EntityApply, RegisterState};
use super::{ImportError, Observer};
use crate::package::{Header, Op, PackageError, PackageReader, RowParser, copy};
use crate::registry::{EventValue, Register};

/// Rows per batch: large enough that per-statement costs vanish, small enough that the first
/// batch is parsed quickly and the parser can run a whole batch ahead in bounded memory.
pub(super) const BATCH_ROWS: u64 = 50_000;
/// Bytes of binary COPY data per chunk: one `COPY` statement each.
const CHUNK: usize = 2 * 1024 * 1024;
/// Chunks waiting for this task: about a batch, so parsing runs a batch ahead (at most
/// `CHANNEL * CHUNK` bytes).
const CHANNEL: usize = 16;
/// Bytes of line text per batch handed from the reader thread to the parse thread.
const LINES: usize = 256 * 1024;

/// What the reading and applying of a package's rows came to.
pub(super) struct Staged {
    /// Row lines read.
    pub rows: u64,
    /// Upserts among them.
    pub upserts: i64,
    /// SHA-256 of the decompressed content.
    pub sha256: String,
    /// What the statements did.
    pub totals: Applied,
}

/// The package being imported, and where its events are numbered from.
pub(super) struct Package<'a> {
    pub register: &'a Register,
    pub state: &'a RegisterState,
    pub header: &'a Header,
    pub file: &'a str,
    /// Rows per batch.
    pub batch_rows: u64,
}

/// Stages and applies every row of `reader` in the connection's transaction, refusing the
/// package on a bad row, a delete of an unknown key or a key given twice.
pub(super) async fn stage_and_apply(
    conn: &mut PgConnection,
    package: &Package<'_>,
    reader: PackageReader,
    rows_counter: std::sync::Arc<AtomicU64>,
    observer: &dyn Observer,
) -> Result<Staged, ImportError> {
    apply::create_staging(conn, package.register).await?;
    let (sender, mut receiver) = mpsc::channel::<Message>(CHANNEL);
    let register = package.register.clone();
    let (expected_rows, batch_rows) = (package.header.rows, package.batch_rows);
    let parser = tokio::task::spawn_blocking(move || {
        parse(
            &register,
            reader,
            expected_rows,
            batch_rows,
            &sender,
            &rows_counter,
        )
    });
    let mut batches = Batches::new(package, observer);
    let mut failed = None;
    while let Some(message) = receiver.recv().await {
        let step = match message {
            Message::Chunk { entity, rows, data } => batches.copy(conn, entity, rows, data).await,
            Message::Apply => batches.apply(conn).await,
        };
        if let Err(e) = step {
            failed = Some(e);
            break;
        }
    }
    drop(receiver);
    let parsed = parser.await.map_err(anyhow::Error::from)?;
    if let Some(e) = failed {
        return Err(batches.explain(conn, e).await);
    }
    let parsed = parsed?;
    if let Some(duplicate) = duplicate_key(conn, package).await? {
        return Err(duplicate.into());
    }
    Ok(Staged {
        rows: parsed.rows,
        upserts: parsed.upserts,
        sha256: parsed.sha256,
        totals: batches.totals,
    })
}

/// The staged rows not applied yet, and what the applied ones did.
struct Batches<'a> {
    package: &'a Package<'a>,
    observer: &'a dyn Observer,
    /// Per entity: rows staged since the last batch was applied.
    pending: Vec<u64>,
    totals: Applied,
    applied_batches: u64,
}

impl<'a> Batches<'a> {
    fn new(package: &'a Package<'a>, observer: &'a dyn Observer) -> Self {
        Self {
            package,
            observer,
            pending: vec![0; package.register.entities.len()],
            totals: Applied::default(),
            applied_batches: 0,
        }
    }

    async fn copy(
        &mut self,
        conn: &mut PgConnection,
        entity: usize,
        rows: u64,
        data: Vec<u8>,
    ) -> Result<(), ImportError> {
        apply::copy_chunk(conn, entity, data).await?;
        self.pending[entity] += rows;
        Ok(())
    }

    /// Applies the staged rows, entity by entity, numbering their events after the ones
    /// before.
    async fn apply(&mut self, conn: &mut PgConnection) -> Result<(), ImportError> {
        let Package {
            register,
            state,
            header,
            file,
            ..
        } = *self.package;
        if self.applied_batches == 0 {
            tracing::debug!(register = %register.name, package.seq = header.sequence,
                phase = "applying", "import phase");
            self.observer.phase("applying");
        }
        let timer = Instant::now();
        let events_before = self.totals.events();
        for (index, entity) in register.entities.iter().enumerate() {
            if self.pending[index] == 0 {
                continue;
            }
            let entity_apply = EntityApply {
                register,
                register_id: state.register_id,
                index,
                sequence: header.sequence,
                base_eventid: state.last_eventid + self.totals.events(),
                written_at: state.written_at,
            };
            apply::keep_keys(conn, index).await?;
            let applied = apply::apply_entity(conn, &entity_apply).await?;
            if let Some(line) = applied.unknown_delete_line {
                return Err(PackageError {
                    file: file.to_owned(),
                    line: line as u64,
                    field: Some("key".into()),
                    message: format!("delete of a {} row that does not exist", entity.name),
                }
                .into());
            }
            self.totals.inserted += applied.inserted;
            self.totals.updated += applied.updated;
            self.totals.deleted += applied.deleted;
            apply::clear_staging(conn, index).await?;
            self.pending[index] = 0;
        }
        self.applied_batches += 1;
        tracing::debug!(register = %register.name, package.seq = header.sequence,
            batch = self.applied_batches, events = self.totals.events() - events_before,
            duration_ms = timer.elapsed().as_millis() as u64, "batch applied");
        Ok(())
    }

    /// The error to report for a failed step: a key given twice explains a failure better
    /// (its second row may be what a statement refused), when the transaction can still tell
    /// (after an SQL error it cannot, and the error stands).
    async fn explain(&self, conn: &mut PgConnection, error: ImportError) -> ImportError {
        match duplicate_key(conn, self.package).await {
            Ok(Some(duplicate)) => duplicate.into(),
            _ => error,
        }
    }
}

/// A key that appears twice among the staged rows, as the package error to report.
async fn duplicate_key(
    conn: &mut PgConnection,
    package: &Package<'_>,
) -> Result<Option<PackageError>, ImportError> {
    let entities = package.register.entities.len();
    let Some((ent, key, first, second)) = apply::find_duplicate_key(conn, entities).await? else {
        return Ok(None);
    };
    let entity = &package.register.entities[ent as usize].name;
    Ok(Some(PackageError {
        file: package.file.to_owned(),
        line: second as u64,
        field: Some("key".into()),
        message: format!(
            "{entity} row \"{key}\" appears twice in the package (lines {first} and {second})"
        ),
    }))
}

/// From the parse thread to the applying task.
enum Message {
    /// A whole binary COPY stream (header, `rows` rows, trailer) of one entity's staging table.
    Chunk {
        entity: usize,
        rows: u64,
        data: Vec<u8>,
    },
    /// The rows sent so far make a batch: apply them.
    Apply,
}

/// What the parse thread saw.
struct Parsed {
    rows: u64,
    upserts: i64,
    sha256: String,
}

/// Lines read by the reader thread, handed to the parse thread in batches.
#[derive(Default)]
struct LineBatch {
    text: String,
    /// (line number, start, end) of each line in `text`.
    lines: Vec<(u64, usize, usize)>,
}

fn parse(
    register: &Register,
    reader: PackageReader,
    expected_rows: Option<u64>,
    batch_rows: u64,
    sender: &mpsc::Sender<Message>,
    rows_counter: &AtomicU64,
) -> Result<Parsed, PackageError> {
    let file = reader.file().to_owned();
    let (lines, receiver) = std::sync::mpsc::sync_channel(4);
    let reading = std::thread::spawn(move || read_lines(reader, lines));
    let encoded = encode_rows(register, &file, batch_rows, &receiver, sender, rows_counter);
    drop(receiver);
    let read = reading.join().unwrap_or_else(|_| {
        Err(PackageError {
            file: file.clone(),
            line: 0,
            field: None,
            message: "the reader thread failed".into(),
        })
    });
    let (rows, upserts) = encoded?;
    let sha256 = read?;
    if let Some(expected) = expected_rows
        && expected != rows
    {
        return Err(PackageError::row_count(&file, expected, rows));
    }
    Ok(Parsed {
        rows,
        upserts,
        sha256,
    })
}

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
        if batch.text.len() >= LINES && sender.send(std::mem::take(&mut batch)).is_err() {
            return Err(reader.error(None, "import aborted"));
        }
    }
    if !batch.lines.is_empty() && sender.send(batch).is_err() {
        return Err(reader.error(None, "import aborted"));
    }
    reader.finish()
}

/// Per entity, the binary COPY chunk being filled and its row count.
struct Chunks {
    data: Vec<Vec<u8>>,
    rows: Vec<u64>,
}

impl Chunks {
    fn new(entities: usize) -> Self {
        Self {
            data: (0..entities).map(|_| Self::fresh()).collect(),
            rows: vec![0; entities],
        }
    }

    fn fresh() -> Vec<u8> {
        let mut data = Vec::with_capacity(CHUNK + 64 * 1024);
        data.extend_from_slice(copy::BINARY_HEADER);
        data
    }

    /// The chunk of `entity`, ended, as a message; a fresh one takes its place.
    fn take(&mut self, entity: usize) -> Message {
        let mut data = std::mem::replace(&mut self.data[entity], Self::fresh());
        data.extend_from_slice(copy::BINARY_TRAILER);
        let rows = std::mem::take(&mut self.rows[entity]);
        Message::Chunk { entity, rows, data }
    }
}

/// The parse thread: validates each row and encodes it into its entity's chunk; sends full
/// chunks, and every `batch_rows` rows all of them and an `Apply`. Returns the rows read and
/// the upserts among them.
fn encode_rows(
    register: &Register,
    file: &str,
    batch_rows: u64,
    receiver: &std::sync::mpsc::Receiver<LineBatch>,
    sender: &mpsc::Sender<Message>,
    rows_counter: &AtomicU64,
) -> Result<(u64, i64), PackageError> {
    let parser = RowParser::new(register);
    // An `old` extra event field is the value before the package: later batches would see the
    // earlier ones' changes, so such registers apply the package as one batch.
    let batch_rows = if register
        .event_fields
        .iter()
        .any(|f| f.value == EventValue::Old)
    {
        u64::MAX
    } else {
        batch_rows
    };
    let mut chunks = Chunks::new(register.entities.len());
    // A closed channel means the applying side stopped on an error; it reports it.
    let send = |message: Message| {
        sender.blocking_send(message).map_err(|_| PackageError {
            file: file.to_owned(),
            line: 0,
            field: None,
            message: "import aborted".into(),
        })
    };
    let flush_all = |chunks: &mut Chunks| -> Result<(), PackageError> {
        for entity in 0..chunks.rows.len() {
            if chunks.rows[entity] > 0 {
                send(chunks.take(entity))?;
            }
        }
        send(Message::Apply)
    };
    let (mut rows, mut upserts, mut in_batch) = (0u64, 0i64, 0u64);
    for lines in receiver.iter() {
        for &(line_no, start, end) in &lines.lines {
            let row = parser.parse(file, line_no, &lines.text[start..end])?;
            let newid = match row.op() {
                Op::Upsert => uuid::Uuid::now_v7(),
                Op::Delete => uuid::Uuid::nil(),
            };
            let entity = &register.entities[row.entity];
            copy::write_staging(entity, line_no, &row, newid, &mut chunks.data[row.entity]);
            chunks.rows[row.entity] += 1;
            if chunks.data[row.entity].len() >= CHUNK {
                send(chunks.take(row.entity))?;
            }
            rows += 1;
            upserts += i64::from(row.op() == Op::Upsert);
            in_batch += 1;
            if in_batch == batch_rows {
                flush_all(&mut chunks)?;
                in_batch = 0;
            }
        }
        rows_counter.store(rows, Ordering::Relaxed);
    }
    if in_batch > 0 {
        flush_all(&mut chunks)?;
    }
    Ok((rows, upserts))
}
