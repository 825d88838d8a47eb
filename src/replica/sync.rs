//! `fordeler replica sync`: catch up by paging events and fetching the rows they name, then
//! (with `--follow`) hold an SSE subscription and apply events as they arrive.
//!
//! Each batch of events becomes one [`Change`]: for every row the batch names, its last action
//! decides; deleted rows are deleted, the others fetched by `datafordelerRowId` and upserted
//! where newer. The change and the checkpoint (its last eventid) commit in one transaction, so
//! a crash at any moment resumes exactly after the last committed batch. Re-applying is
//! harmless anyway: upserts never make a row older, and deletes are idempotent.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::schema::{RemoteSchema, Row};
use super::source::{Event, StreamItem};
use super::target::{Change, EntityChange};
use super::{Backoff, ReplicaError, Source, Target};

/// Most row ids fetched in one query.
const ROWS_PER_QUERY: usize = 500;

/// What to sync and how.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Register code (`BBR`).
    pub register: String,
    /// Only these entities (all when empty); fixed when the replica is created.
    pub entities: Vec<String>,
    /// Events per page (the source allows at most 1000).
    pub page_size: usize,
    /// Row queries in flight at once.
    pub fetch_concurrency: usize,
    /// After catching up, subscribe and keep applying (until stopped).
    pub follow: bool,
    /// Attempts at a request that fails transiently, when not following (following retries
    /// for ever).
    pub attempts: u32,
}

impl SyncOptions {
    /// Defaults for `register`.
    pub fn new(register: &str) -> Self {
        Self {
            register: register.to_owned(),
            entities: Vec::new(),
            page_size: 1000,
            fetch_concurrency: 4,
            follow: false,
            attempts: 6,
        }
    }
}

/// Where a sync is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Paging events up to the source's head.
    CatchUp,
    /// Subscribed, applying events as they arrive.
    Follow,
    /// Waiting to retry after a transient failure.
    Retrying,
    /// Done (not following).
    Done,
}

/// Progress and, at the end, the summary of a sync.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// Register code.
    pub register: String,
    /// Where the sync is.
    pub phase: Phase,
    /// Last applied eventid.
    pub checkpoint: i64,
    /// The source's highest eventid, as last seen.
    pub head: i64,
    /// `head - checkpoint`.
    pub lag: i64,
    /// Events applied by this run.
    pub events: u64,
    /// Rows fetched and written (inserted or updated where newer).
    pub rows_written: u64,
    /// Rows deleted.
    pub rows_deleted: u64,
    /// Seconds since the run started.
    pub elapsed_seconds: f64,
    /// `events / elapsed_seconds`.
    pub events_per_second: f64,
}

/// Receives progress; the command line draws a bar or prints JSON lines.
pub trait Progress: Send + Sync {
    /// The sync moved on.
    fn update(&self, report: &SyncReport);
    /// Something worth a line: a retry, a reconnect.
    fn notice(&self, message: &str);
}

struct Run {
    report: SyncReport,
    started: Instant,
    progress: Arc<dyn Progress>,
}

impl Run {
    fn applied(&mut self, change: &Change) {
        self.report.checkpoint = change.checkpoint;
        self.report.head = self.report.head.max(change.checkpoint);
        self.report.events += change.events;
        for part in &change.entities {
            self.report.rows_written += part.upserts.len() as u64;
            self.report.rows_deleted += part.deletes.len() as u64;
        }
        self.publish();
    }

    fn phase(&mut self, phase: Phase) {
        self.report.phase = phase;
        self.publish();
    }

    fn publish(&mut self) {
        let elapsed = self.started.elapsed().as_secs_f64();
        self.report.elapsed_seconds = elapsed;
        self.report.lag = (self.report.head - self.report.checkpoint).max(0);
        self.report.events_per_second = if elapsed > 0.0 {
            self.report.events as f64 / elapsed
        } else {
            0.0
        };
        self.progress.update(&self.report);
    }
}

/// Brings the replica of `options.register` in `target` up to the source's head; with
/// `options.follow`, keeps it there until the future is dropped or an error that no retry can
/// fix. Dropping the future at any point loses nothing: an uncommitted batch rolls back.
pub async fn sync(
    source: &Source,
    target: &Target,
    options: &SyncOptions,
    progress: Arc<dyn Progress>,
) -> Result<SyncReport, ReplicaError> {
    let attempts = (!options.follow).then_some(options.attempts.max(1));
    let (schema, filter, checkpoint) = open(source, target, options, attempts, &progress).await?;
    let head = retry(attempts, &progress, || source.head()).await?;
    let mut run = Run {
        report: SyncReport {
            register: options.register.clone(),
            phase: Phase::CatchUp,
            checkpoint,
            head: head.last_event_id.max(checkpoint),
            lag: 0,
            events: 0,
            rows_written: 0,
            rows_deleted: 0,
            elapsed_seconds: 0.0,
            events_per_second: 0.0,
        },
        started: Instant::now(),
        progress: progress.clone(),
    };
    run.publish();
    let schema = Arc::new(schema);
    let filter = Arc::new(filter);
    catch_up(
        source, target, options, attempts, &schema, &filter, &mut run,
    )
    .await?;
    if options.follow {
        follow(source, target, options, &schema, &filter, &mut run).await?;
    }
    run.phase(Phase::Done);
    Ok(run.report)
}

/// Reads or creates the replica's state, checks it against the source, and returns the schema
/// it holds, the entity filter for events and the checkpoint.
async fn open(
    source: &Source,
    target: &Target,
    options: &SyncOptions,
    attempts: Option<u32>,
    progress: &Arc<dyn Progress>,
) -> Result<(RemoteSchema, Vec<String>, i64), ReplicaError> {
    let remote = retry(attempts, progress, || source.schema()).await?;
    let all = remote.entities.len();
    let (schema, checkpoint, row_id) = match target.state(&options.register).await? {
        None => {
            let schema = remote.select(&options.entities)?;
            target.create(&schema, source.endpoint()).await?;
            (schema, 0, None)
        }
        Some(state) => {
            let held: Vec<String> = state
                .schema
                .entities
                .iter()
                .map(|e| e.name.clone())
                .collect();
            let mut asked = options.entities.clone();
            let mut sorted_held = held.clone();
            asked.sort();
            sorted_held.sort();
            if !asked.is_empty() && asked != sorted_held {
                return Err(ReplicaError::Usage(format!(
                    "this replica holds {} of {}; --entities {} differs (sync into another \
                     target for other entities)",
                    held.join(","),
                    options.register,
                    options.entities.join(",")
                )));
            }
            if let Some(difference) = state.schema.difference(&remote) {
                return Err(ReplicaError::Schema(format!(
                    "{}: the source's {} schema no longer matches this replica's tables; build \
                     a new replica",
                    difference, options.register
                )));
            }
            (state.schema, state.checkpoint, state.checkpoint_row_id)
        }
    };
    if checkpoint > 0 {
        let head = retry(attempts, progress, || source.head()).await?;
        if checkpoint > head.last_event_id {
            return Err(ReplicaError::Reset(format!(
                "this replica has applied {} events up to eventid {checkpoint}, but the \
                 source's head is {}",
                options.register, head.last_event_id
            )));
        }
        let event = retry(attempts, progress, || source.event(checkpoint)).await?;
        match (event, row_id) {
            (None, _) => {
                return Err(ReplicaError::Reset(format!(
                    "event {checkpoint}, the last this replica applied, is gone from the source"
                )));
            }
            (Some(event), Some(row_id)) if event.row_id != row_id => {
                return Err(ReplicaError::Reset(format!(
                    "event {checkpoint} at the source names row {}, but this replica applied \
                     it for row {row_id}",
                    event.row_id
                )));
            }
            _ => {}
        }
    }
    let filter = if schema.entities.len() == all {
        Vec::new()
    } else {
        schema.entities.iter().map(|e| e.name.clone()).collect()
    };
    Ok((schema, filter, checkpoint))
}

/// Pages events from the checkpoint to the head. Fetching (events, then rows) runs one batch
/// ahead of writing.
async fn catch_up(
    source: &Source,
    target: &Target,
    options: &SyncOptions,
    attempts: Option<u32>,
    schema: &Arc<RemoteSchema>,
    filter: &Arc<Vec<String>>,
    run: &mut Run,
) -> Result<(), ReplicaError> {
    let (tx, mut rx) = mpsc::channel::<Result<Change, ReplicaError>>(2);
    let producer = {
        let (source, schema, filter) = (source.clone(), schema.clone(), filter.clone());
        let (progress, options) = (run.progress.clone(), options.clone());
        let mut after = run.report.checkpoint;
        tokio::spawn(async move {
            loop {
                let page = retry(attempts, &progress, || {
                    source.events(after, options.page_size, &filter)
                })
                .await;
                let page = match page {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let Some(last) = page.events.last() else {
                    return;
                };
                after = last.eventid;
                let fetching = Instant::now();
                let change = prepare(
                    &source,
                    &schema,
                    &page.events,
                    &options,
                    attempts,
                    &progress,
                )
                .await;
                tracing::debug!(
                    after,
                    rows_ms = fetching.elapsed().as_millis(),
                    "page prepared"
                );
                let failed = change.is_err();
                if tx.send(change).await.is_err() || failed || !page.has_next {
                    return;
                }
            }
        })
    };
    let _abort = AbortOnDrop(producer);
    let mut head_checked = Instant::now();
    while let Some(change) = rx.recv().await {
        let change = change?;
        let writing = Instant::now();
        target.apply(schema, &change).await?;
        tracing::debug!(
            checkpoint = change.checkpoint,
            write_ms = writing.elapsed().as_millis(),
            "page applied"
        );
        if head_checked.elapsed() > Duration::from_secs(5) {
            head_checked = Instant::now();
            if let Ok(head) = source.head().await {
                run.report.head = head.last_event_id;
            }
        }
        run.applied(&change);
    }
    Ok(())
}

/// Holds a subscription from the checkpoint and applies what arrives, resubscribing (with
/// `Last-Event-ID`) whenever the stream ends or breaks.
async fn follow(
    source: &Source,
    target: &Target,
    options: &SyncOptions,
    schema: &Arc<RemoteSchema>,
    filter: &Arc<Vec<String>>,
    run: &mut Run,
) -> Result<(), ReplicaError> {
    let mut backoff = Backoff::default();
    loop {
        let checkpoint = run.report.checkpoint;
        let mut stream = match source.subscribe(checkpoint, filter).await {
            Ok(stream) => stream,
            Err(e) if e.is_transient() => {
                wait(&mut backoff, &e, run).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        run.phase(Phase::Follow);
        let mut broken = None;
        loop {
            let first = match stream.next().await {
                Ok(Some(StreamItem::Event(event))) => event,
                Ok(Some(StreamItem::KeepAlive)) => continue,
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            };
            backoff.reset();
            // Take what has already arrived with it: a publication comes as one burst.
            let mut batch = vec![first];
            let mut ended = false;
            while batch.len() < options.page_size * 10 {
                match tokio::time::timeout(Duration::from_millis(20), stream.next()).await {
                    Err(_) => break,
                    Ok(Ok(Some(StreamItem::Event(event)))) => batch.push(event),
                    Ok(Ok(Some(StreamItem::KeepAlive))) => {}
                    Ok(Ok(None)) => {
                        ended = true;
                        break;
                    }
                    Ok(Err(e)) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            let checkpoint = run.report.checkpoint;
            batch.retain(|e| e.eventid > checkpoint);
            if !batch.is_empty() {
                let change = prepare(source, schema, &batch, options, None, &run.progress).await?;
                target.apply(schema, &change).await?;
                run.applied(&change);
            }
            if ended || broken.is_some() {
                break;
            }
        }
        match broken {
            Some(e) if e.is_transient() => wait(&mut backoff, &e, run).await,
            Some(e) => return Err(e),
            // Completed (the stream limit, or the server going away): resume at once.
            None => {}
        }
    }
}

async fn wait(backoff: &mut Backoff, error: &ReplicaError, run: &mut Run) {
    let delay = backoff.next_delay(error);
    run.progress.notice(&format!(
        "{error}; retrying in {:.1}s (attempt {})",
        delay.as_secs_f64(),
        backoff.attempts()
    ));
    run.phase(Phase::Retrying);
    tokio::time::sleep(delay).await;
}

/// Turns a batch of events into a [`Change`]: the last action on each row decides; rows not
/// deleted are fetched from the source, every registration whatever its times.
async fn prepare(
    source: &Source,
    schema: &RemoteSchema,
    events: &[Event],
    options: &SyncOptions,
    attempts: Option<u32>,
    progress: &Arc<dyn Progress>,
) -> Result<Change, ReplicaError> {
    let mut last: HashMap<Uuid, (usize, char)> = HashMap::with_capacity(events.len());
    for event in events {
        let entity = schema
            .entities
            .iter()
            .position(|e| e.name == event.entity)
            .ok_or_else(|| {
                ReplicaError::Schema(format!(
                    "event {} is of entity {}, which this replica does not hold",
                    event.eventid, event.entity
                ))
            })?;
        last.insert(event.row_id, (entity, event.action));
    }
    let mut change = Change {
        entities: schema
            .entities
            .iter()
            .map(|_| EntityChange::default())
            .collect(),
        checkpoint: events.last().map_or(0, |e| e.eventid),
        checkpoint_row_id: events.last().map(|e| e.row_id),
        events: events.len() as u64,
    };
    let mut fetch: Vec<Vec<Uuid>> = vec![Vec::new(); schema.entities.len()];
    for (row_id, (entity, action)) in last {
        match action {
            'd' => change.entities[entity].deletes.push(row_id),
            _ => fetch[entity].push(row_id),
        }
    }
    // At most 500 ids per query: over TCP, sqlx 0.9 leaves Nagle's algorithm on, and a query
    // whose parameters pass ~32 KB (about 800 UUIDs) waits 40 ms for the server's delayed ACK.
    let chunk = options.page_size.clamp(1, ROWS_PER_QUERY);
    let jobs: Vec<_> = fetch
        .iter()
        .enumerate()
        .flat_map(|(entity, ids)| ids.chunks(chunk).map(move |ids| (entity, ids)))
        .map(|(entity, ids)| fetch_rows(source, schema, entity, ids, attempts, progress))
        .collect();
    let fetched: Vec<_> = stream::iter(jobs)
        .buffer_unordered(options.fetch_concurrency.max(1))
        .try_collect()
        .await?;
    for (entity, rows) in fetched {
        change.entities[entity].upserts.extend(rows);
    }
    Ok(change)
}

async fn fetch_rows(
    source: &Source,
    schema: &RemoteSchema,
    entity: usize,
    ids: &[Uuid],
    attempts: Option<u32>,
    progress: &Arc<dyn Progress>,
) -> Result<(usize, Vec<Row>), ReplicaError> {
    let rows = retry(attempts, progress, || {
        source.rows(&schema.entities[entity], ids)
    })
    .await?;
    Ok((entity, rows))
}

/// Runs `request` until it succeeds, fails for good, or (when `attempts` is given) has failed
/// transiently that many times.
async fn retry<T, F, Fut>(
    attempts: Option<u32>,
    progress: &Arc<dyn Progress>,
    mut request: F,
) -> Result<T, ReplicaError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ReplicaError>>,
{
    let mut backoff = Backoff::default();
    loop {
        match request().await {
            Err(e) if e.is_transient() && attempts.is_none_or(|n| backoff.attempts() + 1 < n) => {
                let delay = backoff.next_delay(&e);
                progress.notice(&format!(
                    "{e}; retrying in {:.1}s (attempt {})",
                    delay.as_secs_f64(),
                    backoff.attempts()
                ));
                tokio::time::sleep(delay).await;
            }
            result => return result,
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
