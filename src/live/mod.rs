//! Live events for subscriptions, independent of GraphQL and HTTP.
//!
//! Each register has one [`Feed`](feed::Feed): a reader task that fetches the events committed
//! since its last read once per publication interval (or, with an interval of zero, as soon as
//! an import's `NOTIFY` arrives) and broadcasts them as one batch. Every subscriber is a
//! [`Source`]: it catches up from the database while it is behind the feed (a resume, or a
//! subscriber too slow for the broadcast buffer), then filters the broadcast batches in memory.
//! Database reads grow with the number of registers and catch-ups, never with the number of
//! subscribers.

mod feed;
mod source;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Semaphore, watch};

pub use feed::Batch;
pub use source::{Delivery, Source, SourceError};

use crate::metrics::Metrics;
use crate::query::Filter;
use crate::registry::Registry;

/// The channel imports notify on commit, with the register's name as payload.
pub const NOTIFY_CHANNEL: &str = "fordeler_events";

/// Settings of live subscriptions.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// At most how often each register's reader fetches new events: a commit after a quiet
    /// interval is read at once, later ones when the interval since the last read has passed;
    /// zero: as soon as an import commits.
    pub publish_interval: Duration,
    /// Longest a stream stays open; the server then completes it and the client reconnects.
    pub stream_limit: Duration,
    /// How often an idle stream gets a keep-alive comment.
    pub keep_alive: Duration,
    /// The reconnection delay streams advise (`retry:`).
    pub retry: Duration,
    /// Most events one read (reader or catch-up) fetches.
    pub read_page: usize,
    /// Batches a register's broadcast keeps for subscribers that are behind; one further
    /// behind catches up from the database.
    pub buffer_batches: usize,
    /// Most catch-up reads running at once in this process.
    pub catch_up_concurrency: usize,
    /// Most open streams in this process.
    pub max_streams: usize,
    /// Most open streams per client (per credential; per IP address for anonymous callers).
    pub max_streams_per_client: usize,
    /// While the import listener cannot connect, how often every reader is woken anyway (it
    /// still reads at most once per interval): no notification can tell it of new events.
    pub fallback_poll: Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            publish_interval: Duration::from_secs(30),
            stream_limit: Duration::from_secs(600),
            keep_alive: Duration::from_secs(15),
            retry: Duration::from_secs(2),
            read_page: 2000,
            buffer_batches: 256,
            catch_up_concurrency: 4,
            max_streams: 10_000,
            max_streams_per_client: 100,
            fallback_poll: Duration::from_secs(1),
        }
    }
}

/// The live feeds of all registers, and the accounting of open streams.
#[derive(Debug, Clone)]
pub struct Hub(Shared);

type Shared = Arc<Inner>;

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    config: LiveConfig,
    metrics: Metrics,
    feeds: HashMap<String, Arc<feed::Feed>>,
    closed: watch::Sender<bool>,
    catch_up_permits: Semaphore,
    streams: Mutex<Streams>,
    opened: AtomicU64,
    listener: std::sync::Once,
}

#[derive(Debug, Default)]
struct Streams {
    total: usize,
    per_client: HashMap<Client, usize>,
}

/// Who a stream is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    /// An authenticated caller, by credential id.
    Credential(std::sync::Arc<str>),
    /// An anonymous caller, by address.
    Address(IpAddr),
    /// A caller whose address is unknown.
    Unknown,
}

/// Why a subscription cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The process serves its maximum of streams.
    #[error("this server has {0} open streams, its limit; retry later or on another instance")]
    ServerFull(usize),
    /// The client has its maximum of streams open.
    #[error("you have {0} open streams, the limit per client; close one first")]
    ClientFull(usize),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Closed,
}

impl Refused {
    /// Why, as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::ServerFull(_) => "server_limit",
            Refused::ClientFull(_) => "client_limit",
            Refused::Closed => "shutting_down",
        }
    }
}

impl Hub {
    /// The feeds of `registry`'s registers over `pool`. Readers start with their first
    /// subscriber.
    pub fn new(pool: PgPool, registry: &Registry, config: LiveConfig, metrics: Metrics) -> Self {
        let feeds = registry
            .registers()
            .iter()
            .map(|r| {
                let feed = feed::Feed::new(r.clone(), config.buffer_batches);
                (r.name.clone(), Arc::new(feed))
            })
            .collect();
        Self(Arc::new(Inner {
            pool,
            catch_up_permits: Semaphore::new(config.catch_up_concurrency.max(1)),
            config,
            metrics,
            feeds,
            closed: watch::Sender::new(false),
            streams: Mutex::new(Streams::default()),
            opened: AtomicU64::new(0),
            listener: std::sync::Once::new(),
        }))
    }

    /// The settings.
    pub fn config(&self) -> &LiveConfig {
        &self.0.config
    }

    /// Counts a new stream of `client`, or refuses it over a limit. The stream is counted
    /// until the permit drops.
    pub fn admit(&self, client: Client) -> Result<StreamPermit, Refused> {
        let refused = |r: Refused| {
            self.0
                .metrics
                .streams_refused
                .with_label_values(&[r.reason()])
                .inc();
            Err(r)
        };
        if *self.0.closed.borrow() {
            return refused(Refused::Closed);
        }
        let mut streams = self.0.streams.lock().unwrap_or_else(|p| p.into_inner());
        if streams.total >= self.0.config.max_streams {
            return refused(Refused::ServerFull(streams.total));
        }
        let open = streams.per_client.entry(client.clone()).or_default();
        if *open >= self.0.config.max_streams_per_client {
            let open = *open;
            return refused(Refused::ClientFull(open));
        }
        *open += 1;
        streams.total += 1;
        self.0.metrics.streams_open.set(streams.total as i64);
        let serial = self.0.opened.fetch_add(1, Ordering::Relaxed);
        Ok(StreamPermit {
            hub: self.0.clone(),
            client,
            serial,
        })
    }

    /// A subscriber to `register`'s events matching `filter`, leaving out `hidden` entities,
    /// from the event after `after` (or from now).
    pub async fn subscribe(
        &self,
        register: &str,
        filter: Filter,
        hidden: Vec<String>,
        after: Option<i64>,
    ) -> Result<Source, SourceError> {
        let feed = self
            .0
            .feeds
            .get(register)
            .ok_or(SourceError::Closed)?
            .clone();
        self.start_listener();
        let mut closed = self.0.closed.subscribe();
        tokio::select! {
            _ = closed.wait_for(|c| *c) => return Err(SourceError::Closed),
            () = feed.start(&self.0) => {}
        }
        Ok(Source::new(self.0.clone(), feed, filter, hidden, after))
    }

    /// Ends every stream (they complete) and stops the readers.
    pub fn close(&self) {
        self.0.closed.send_replace(true);
    }

    /// Completes when [`close`](Self::close) is called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closed = self.0.closed.subscribe();
        async move {
            let _ = closed.wait_for(|c| *c).await;
        }
    }

    fn start_listener(&self) {
        self.0.listener.call_once(|| {
            let inner = self.0.clone();
            tokio::spawn(listen(inner));
        });
    }
}

/// Wakes a register's reader whenever an import of it commits, and every reader when
/// notifications may have been lost: at each (re)connection, and periodically while it cannot
/// connect.
async fn listen(inner: Shared) {
    let mut closed = inner.closed.subscribe();
    let wake_all = || inner.feeds.values().for_each(|f| f.wake());
    let mut listener: Option<PgListener> = None;
    loop {
        let Some(active) = listener.as_mut() else {
            let connected = async {
                let mut l = PgListener::connect_with(&inner.pool).await?;
                l.listen(NOTIFY_CHANNEL).await?;
                Ok::<_, sqlx::Error>(l)
            };
            match connected.await {
                Ok(l) => {
                    listener = Some(l);
                    wake_all();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for imports; retrying");
                    // Without notifications, the readers poll.
                    wake_all();
                    tokio::select! {
                        _ = closed.wait_for(|c| *c) => return,
                        () = tokio::time::sleep(inner.config.fallback_poll) => {}
                    }
                }
            }
            continue;
        };
        let received = tokio::select! {
            _ = closed.wait_for(|c| *c) => return,
            received = active.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => {
                if let Some(feed) = inner.feeds.get(notification.payload()) {
                    feed.wake();
                }
            }
            // The connection dropped; the next call reconnects. Notifications in between are
            // lost: read anyway.
            Ok(None) => wake_all(),
            Err(e) => {
                tracing::warn!(error = %e, "lost the import listener; reconnecting");
                listener = None;
                wake_all();
            }
        }
    }
}

/// An open stream, counted against its client and the process until dropped.
#[derive(Debug)]
pub struct StreamPermit {
    hub: Shared,
    client: Client,
    serial: u64,
}

impl StreamPermit {
    /// This stream's time limit: the configured limit less up to 5%, spread over streams so
    /// that clients which connected together do not all reconnect together.
    pub fn limit(&self) -> Duration {
        let limit = self.hub.config.stream_limit;
        let spread = (self.serial.wrapping_mul(7919) % 1000) as u32;
        limit - limit / 20 * spread / 1000
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut streams = self.hub.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.total = streams.total.saturating_sub(1);
        if let Some(open) = streams.per_client.get_mut(&self.client) {
            *open -= 1;
            if *open == 0 {
                streams.per_client.remove(&self.client);
            }
        }
        self.hub.metrics.streams_open.set(streams.total as i64);
    }
}
