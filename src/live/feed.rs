//! One register's live feed: a reader task that fetches the events committed since the last
//! read, at most once per publication interval, and broadcasts them as one [`Batch`] to every
//! subscriber of the register. An import's commit (its `NOTIFY`) wakes the reader: it reads at
//! once if its last read is an interval ago, else when it is. The database sees at most one
//! query per interval, whatever the number of subscribers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sqlx::PgPool;
use tokio::sync::{Notify, broadcast, watch};

use super::LiveConfig;
use crate::metrics::Metrics;
use crate::query::events::{EventQuery, fetch_events};
use crate::query::{EventRow, Filter, Scalar};
use crate::registry::Register;

/// Events `from < eventid <= to` of one register: all of them when the reader read them, or
/// those matching one subscriber's filter when a catch-up read them.
#[derive(Debug)]
pub struct Batch {
    /// The position before the batch.
    pub from: i64,
    /// The position after the batch.
    pub to: i64,
    /// The events, ascending eventid.
    pub events: Vec<EventRow>,
    records: OnceLock<Vec<Vec<Option<Scalar>>>>,
    renders: Mutex<Vec<(Arc<str>, Messages)>>,
}

/// One rendering of a batch's events, each message made on first use.
#[derive(Debug)]
pub struct Rendering {
    /// Each event's message.
    pub events: Box<[OnceLock<Bytes>]>,
    /// Every event's message, one after the other: what a subscriber that matches the whole
    /// batch receives, made once for all of them.
    pub all: OnceLock<Bytes>,
}

/// A rendering shared by the subscribers that use it.
pub type Messages = Arc<Rendering>;

impl Batch {
    /// A batch of `events`, covering `(from, to]`.
    pub fn new(from: i64, to: i64, events: Vec<EventRow>) -> Self {
        Self {
            from,
            to,
            events,
            records: OnceLock::new(),
            renders: Mutex::new(Vec::new()),
        }
    }

    /// The events' values for evaluating filters in memory, computed once per batch.
    pub fn records(&self, register: &Register) -> &[Vec<Option<Scalar>>] {
        self.records
            .get_or_init(|| self.events.iter().map(|e| e.to_record(register)).collect())
    }

    /// The messages of this batch's events for subscribers sharing the rendering `key`, each
    /// made on first use: a distinct rendering of an event is made once per batch, not once
    /// per subscriber.
    pub fn messages(&self, key: &Arc<str>) -> Messages {
        let mut renders = self.renders.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, slots)) = renders
            .iter()
            .find(|(k, _)| Arc::ptr_eq(k, key) || k == key)
        {
            return slots.clone();
        }
        let slots = Arc::new(Rendering {
            events: (0..self.events.len()).map(|_| OnceLock::new()).collect(),
            all: OnceLock::new(),
        });
        renders.push((key.clone(), slots.clone()));
        slots
    }
}

/// The live feed of one register.
#[derive(Debug)]
pub struct Feed {
    /// The register.
    pub register: Register,
    /// The last eventid published (events up to it have been broadcast).
    head: AtomicI64,
    ready: watch::Sender<bool>,
    sender: broadcast::Sender<Arc<Batch>>,
    wake: Notify,
    started: std::sync::Once,
}

impl Feed {
    pub(super) fn new(register: Register, capacity: usize) -> Self {
        Self {
            register,
            head: AtomicI64::new(0),
            ready: watch::Sender::new(false),
            sender: broadcast::Sender::new(capacity.max(1)),
            wake: Notify::new(),
            started: std::sync::Once::new(),
        }
    }

    /// The last eventid published.
    pub fn head(&self) -> i64 {
        self.head.load(Ordering::Acquire)
    }

    /// Receives the batches published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.sender.subscribe()
    }

    /// Wakes the reader (an import committed events).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts the reader once, and waits until it knows the head.
    pub(super) async fn start(self: &Arc<Self>, hub: &super::Shared) {
        self.started.call_once(|| {
            let feed = self.clone();
            let hub = hub.clone();
            tokio::spawn(async move { feed.run(hub).await });
        });
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|ready| *ready).await;
    }

    async fn run(self: Arc<Self>, hub: super::Shared) {
        let mut closed = hub.closed.subscribe();
        let name = self.register.name.clone();
        loop {
            match last_eventid(&hub.pool, &name).await {
                Ok(head) => break self.head.store(head, Ordering::Release),
                Err(e) => {
                    tracing::warn!(register = %name, error = %e, "live feed cannot read the head; retrying");
                    tokio::select! {
                        _ = closed.wait_for(|c| *c) => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        self.ready.send_replace(true);
        tracing::debug!(register = %name, head = self.head(), "live feed started");
        let interval = hub.config.publish_interval;
        let mut last_read = tokio::time::Instant::now() - interval;
        loop {
            // Woken by an import's commit, or by the listener when notifications may have been
            // lost (it reconnected, or cannot connect).
            let wait = async {
                self.wake.notified().await;
                // At most one read per interval: a commit after a quiet interval is published
                // at once, later ones when the interval since the last read has passed.
                tokio::time::sleep_until(last_read + interval).await;
            };
            tokio::select! {
                _ = closed.wait_for(|c| *c) => return,
                () = wait => {}
            }
            last_read = tokio::time::Instant::now();
            if let Err(e) = self.publish(&hub.pool, &hub.config, &hub.metrics).await {
                tracing::warn!(register = %name, error = %e, "live feed cannot read new events");
            }
        }
    }

    /// Reads the events after the head, in pages, and broadcasts each page.
    async fn publish(
        &self,
        pool: &PgPool,
        config: &LiveConfig,
        metrics: &Metrics,
    ) -> sqlx::Result<()> {
        let name = self.register.name.as_str();
        let everything = Filter::all();
        loop {
            let head = self.head();
            let query = EventQuery {
                filter: &everything,
                after: Some(head),
                until: None,
                first: config.read_page,
                hidden_entities: &[],
            };
            let started = Instant::now();
            let page = fetch_events(pool, &self.register, &query).await?;
            metrics
                .reader_seconds
                .with_label_values(&[name])
                .observe(started.elapsed().as_secs_f64());
            let Some(last) = page.rows.last().map(|e| e.eventid) else {
                return Ok(());
            };
            let batch = Arc::new(Batch::new(head, last, page.rows));
            // The head moves before the batch is sent: a subscriber that reads the head after
            // subscribing either receives the batch or finds it under the head (and reads it
            // from the database), never neither.
            self.head.store(last, Ordering::Release);
            metrics.head.with_label_values(&[name]).set(last);
            let _ = self.sender.send(batch);
            if !page.has_next {
                return Ok(());
            }
        }
    }
}

async fn last_eventid(pool: &PgPool, register: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT last_eventid FROM registers WHERE name = $1")
        .bind(register)
        .fetch_optional(pool)
        .await
        .map(|head| head.unwrap_or(0))
}
