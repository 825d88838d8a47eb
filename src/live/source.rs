//! One subscriber's events: caught up from the database while behind the feed's head, then
//! taken from the feed's broadcasts, filtered in memory. The two meet at a position (the last
//! eventid the subscriber has seen, matching or not), so the hand-over neither skips nor
//! repeats an event.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast::{self, error::RecvError};

use super::Shared;
use super::feed::{Batch, Feed};
use crate::query::Filter;
use crate::query::events::{EventQuery, fetch_events};

/// Events for one subscriber, in batches.
pub struct Source {
    hub: Shared,
    feed: Arc<Feed>,
    receiver: broadcast::Receiver<Arc<Batch>>,
    filter: Filter,
    hidden: Vec<String>,
    /// Every event up to here has been delivered or did not match.
    position: i64,
    /// Why the next catch-up happens, until it is counted.
    catch_up_reason: Option<&'static str>,
    /// This register's delivery metrics, looked up once rather than per delivery.
    delivered: prometheus::IntCounter,
    lag: prometheus::Histogram,
    _gauge: SubscriberGauge,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("register", &self.feed.register.name)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

/// Events of a batch a subscriber receives.
#[derive(Debug)]
pub struct Delivery {
    /// The batch.
    pub batch: Arc<Batch>,
    /// Indices into `batch.events` of the events that match, ascending.
    pub matched: Vec<usize>,
}

impl Delivery {
    /// The events delivered, in order.
    pub fn events(&self) -> impl Iterator<Item = &crate::query::EventRow> {
        self.matched.iter().map(|&i| &self.batch.events[i])
    }
}

/// Why a stream of events ended.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Closed,
    /// A catch-up read failed.
    #[error("cannot read events: {0}")]
    Database(#[from] sqlx::Error),
}

impl Source {
    pub(super) fn new(
        hub: Shared,
        feed: Arc<Feed>,
        filter: Filter,
        hidden: Vec<String>,
        after: Option<i64>,
    ) -> Self {
        // Subscribe before reading the head: every batch past the head read here is received.
        let receiver = feed.subscribe();
        let position = after.unwrap_or_else(|| feed.head());
        let name = feed.register.name.as_str();
        hub.metrics.subscribers.with_label_values(&[name]).inc();
        let delivered = hub.metrics.delivered.with_label_values(&[name]);
        let lag = hub.metrics.lag.with_label_values(&[name]);
        let gauge = SubscriberGauge {
            hub: hub.clone(),
            register: feed.register.name.clone(),
        };
        Self {
            hub,
            feed,
            receiver,
            filter,
            hidden,
            position,
            catch_up_reason: after.map(|_| "resume"),
            delivered,
            lag,
            _gauge: gauge,
        }
    }

    /// The last eventid the subscriber has seen.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// The next events that match, waiting for them if there are none yet.
    pub async fn next(&mut self) -> Result<Delivery, SourceError> {
        loop {
            let head = self.feed.head();
            if self.position < head {
                if let Some(delivery) = self.catch_up(head).await? {
                    return Ok(delivery);
                }
                continue;
            }
            match self.receiver.recv().await {
                Ok(batch) => {
                    if batch.to <= self.position || batch.from > self.position {
                        // Seen already, or past a gap the head check above fills from the
                        // database.
                        continue;
                    }
                    let matched = self.matching(&batch);
                    self.position = batch.to;
                    if !matched.is_empty() {
                        return Ok(self.delivered(Delivery { batch, matched }));
                    }
                }
                Err(RecvError::Lagged(_)) => self.catch_up_reason = Some("lagged"),
                Err(RecvError::Closed) => return Err(SourceError::Closed),
            }
        }
    }

    /// One page of the events after the position and up to `head`, from the database.
    async fn catch_up(&mut self, head: i64) -> Result<Option<Delivery>, SourceError> {
        let name = self.feed.register.name.as_str();
        if let Some(reason) = self.catch_up_reason.take() {
            self.hub
                .metrics
                .catch_ups
                .with_label_values(&[name, reason])
                .inc();
        }
        let page = {
            let _permit = self.hub.catch_up_permits.acquire().await;
            let query = EventQuery {
                filter: &self.filter,
                after: Some(self.position),
                until: Some(head),
                first: self.hub.config.read_page,
                hidden_entities: &self.hidden,
            };
            let started = Instant::now();
            let page = fetch_events(&self.hub.pool, &self.feed.register, &query).await?;
            self.hub
                .metrics
                .catch_up_seconds
                .with_label_values(&[name])
                .observe(started.elapsed().as_secs_f64());
            page
        };
        let from = self.position;
        self.position = match (page.has_next, page.rows.last()) {
            (true, Some(last)) => last.eventid,
            _ => head,
        };
        if page.rows.is_empty() {
            return Ok(None);
        }
        let matched = (0..page.rows.len()).collect();
        let batch = Arc::new(Batch::new(from, self.position, page.rows));
        Ok(Some(self.delivered(Delivery { batch, matched })))
    }

    fn matching(&self, batch: &Batch) -> Vec<usize> {
        let records = batch.records(&self.feed.register);
        batch
            .events
            .iter()
            .zip(records)
            .enumerate()
            .filter(|(_, (event, record))| {
                event.eventid > self.position
                    && !self.hidden.contains(&event.entityname)
                    && self.filter.matches(record.as_slice())
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn delivered(&self, delivery: Delivery) -> Delivery {
        self.delivered.inc_by(delivery.matched.len() as u64);
        let lag = self.feed.head().saturating_sub(self.position);
        self.lag.observe(lag as f64);
        delivery
    }
}

/// Counts the subscriber in the register's gauge while it lives.
struct SubscriberGauge {
    hub: Shared,
    register: String,
}

impl Drop for SubscriberGauge {
    fn drop(&mut self) {
        self.hub
            .metrics
            .subscribers
            .with_label_values(&[&self.register])
            .dec();
    }
}
