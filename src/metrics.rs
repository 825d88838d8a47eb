//! Prometheus metrics: HTTP requests by route and status with latency, GraphQL root fields by
//! outcome, rows returned, subscriptions (subscribers, deliveries, lag, catch-ups, reader
//! queries) and database pool usage. Labels come from the schema and the routes,
//! never from user input, so their number is bounded.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use sqlx::PgPool;

/// The server's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests, by route and status.
    pub http_requests: IntCounterVec,
    /// HTTP latency in seconds, by route.
    pub http_duration: HistogramVec,
    /// GraphQL root fields resolved, by field and outcome (`ok` or an error code).
    pub graphql_fields: IntCounterVec,
    /// Rows and events returned, by root field.
    pub rows_returned: IntCounterVec,
    /// Events pages answered by the fast path.
    pub fast_path_pages: prometheus::IntCounter,
    /// Requests whose credential was refused (401).
    pub auth_refused: prometheus::IntCounter,
    /// Requests refused by the rate limit (429).
    pub rate_limited: prometheus::IntCounter,
    /// Audit records dropped because the writer fell behind.
    pub audit_dropped: prometheus::IntCounter,
    /// Open subscriptions, by register.
    pub subscribers: IntGaugeVec,
    /// Events sent to subscribers, by register.
    pub delivered: IntCounterVec,
    /// Events between a register's head and a subscriber's position after a delivery.
    pub lag: HistogramVec,
    /// Subscribers that started reading from the database, by register and reason (`resume`,
    /// `lagged`).
    pub catch_ups: IntCounterVec,
    /// Duration of catch-up reads, by register.
    pub catch_up_seconds: HistogramVec,
    /// Duration of the live readers' queries, by register (its count is the number of reads).
    pub reader_seconds: HistogramVec,
    /// The last eventid published to subscribers, by register.
    pub head: IntGaugeVec,
    /// Open event streams.
    pub streams_open: IntGauge,
    /// Streams refused, by reason.
    pub streams_refused: IntCounterVec,
    pool_size: IntGauge,
    pool_idle: IntGauge,
}

impl Metrics {
    /// A fresh set of metrics.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("fordeler".into()), None).unwrap_or_default();
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status."),
            &["route", "status"],
        );
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route"],
        );
        let graphql_fields = IntCounterVec::new(
            Opts::new(
                "graphql_fields_total",
                "GraphQL root fields resolved, by field and outcome.",
            ),
            &["field", "outcome"],
        );
        let rows_returned = IntCounterVec::new(
            Opts::new(
                "graphql_rows_returned_total",
                "Rows and events returned, by root field.",
            ),
            &["field"],
        );
        let audit_dropped = prometheus::IntCounter::new(
            "audit_dropped_total",
            "Audit records dropped because the audit log writer fell behind.",
        );
        let rate_limited = prometheus::IntCounter::new(
            "rate_limited_total",
            "Requests answered 429 by the per-client rate limit.",
        );
        let auth_refused = prometheus::IntCounter::new(
            "auth_refused_total",
            "Requests answered 401 because their credential was refused.",
        );
        let fast_path_pages = prometheus::IntCounter::new(
            "graphql_fast_path_pages_total",
            "Events pages written straight to JSON by the fast path.",
        );
        let seconds = || {
            vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]
        };
        let register = &["register"];
        let subscribers = IntGaugeVec::new(
            Opts::new("subscribers", "Open subscriptions, by register."),
            register,
        );
        let delivered = IntCounterVec::new(
            Opts::new(
                "subscription_events_delivered_total",
                "Events sent to subscribers, by register.",
            ),
            register,
        );
        let lag = HistogramVec::new(
            HistogramOpts::new(
                "subscription_lag_events",
                "Events between the register's head and a subscriber's position after a delivery.",
            )
            .buckets(vec![0.0, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7]),
            register,
        );
        let catch_ups = IntCounterVec::new(
            Opts::new(
                "subscription_catch_ups_total",
                "Subscribers that read from the database, by register and reason (resume, lagged).",
            ),
            &["register", "reason"],
        );
        let catch_up_seconds = HistogramVec::new(
            HistogramOpts::new(
                "subscription_catch_up_query_seconds",
                "Duration of subscribers' catch-up reads, by register.",
            )
            .buckets(seconds()),
            register,
        );
        let reader_seconds = HistogramVec::new(
            HistogramOpts::new(
                "subscription_reader_query_seconds",
                "Duration of the live readers' queries (one per register per interval).",
            )
            .buckets(seconds()),
            register,
        );
        let head = IntGaugeVec::new(
            Opts::new(
                "subscription_head_eventid",
                "The last eventid published to subscribers, by register.",
            ),
            register,
        );
        let streams_open = IntGauge::new("streams_open", "Open event streams.");
        let streams_refused = IntCounterVec::new(
            Opts::new("streams_refused_total", "Event streams refused, by reason."),
            &["reason"],
        );
        let pool_size = IntGauge::new("db_pool_connections", "Open database connections.");
        let pool_idle = IntGauge::new("db_pool_idle_connections", "Idle database connections.");
        let metrics = Self {
            registry,
            http_requests: http_requests.expect("valid metric"),
            http_duration: http_duration.expect("valid metric"),
            graphql_fields: graphql_fields.expect("valid metric"),
            rows_returned: rows_returned.expect("valid metric"),
            fast_path_pages: fast_path_pages.expect("valid metric"),
            auth_refused: auth_refused.expect("valid metric"),
            rate_limited: rate_limited.expect("valid metric"),
            audit_dropped: audit_dropped.expect("valid metric"),
            subscribers: subscribers.expect("valid metric"),
            delivered: delivered.expect("valid metric"),
            lag: lag.expect("valid metric"),
            catch_ups: catch_ups.expect("valid metric"),
            catch_up_seconds: catch_up_seconds.expect("valid metric"),
            reader_seconds: reader_seconds.expect("valid metric"),
            head: head.expect("valid metric"),
            streams_open: streams_open.expect("valid metric"),
            streams_refused: streams_refused.expect("valid metric"),
            pool_size: pool_size.expect("valid metric"),
            pool_idle: pool_idle.expect("valid metric"),
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 19] = [
            Box::new(self.subscribers.clone()),
            Box::new(self.delivered.clone()),
            Box::new(self.lag.clone()),
            Box::new(self.catch_ups.clone()),
            Box::new(self.catch_up_seconds.clone()),
            Box::new(self.reader_seconds.clone()),
            Box::new(self.head.clone()),
            Box::new(self.streams_open.clone()),
            Box::new(self.streams_refused.clone()),
            Box::new(self.fast_path_pages.clone()),
            Box::new(self.auth_refused.clone()),
            Box::new(self.rate_limited.clone()),
            Box::new(self.audit_dropped.clone()),
            Box::new(self.http_requests.clone()),
            Box::new(self.http_duration.clone()),
            Box::new(self.graphql_fields.clone()),
            Box::new(self.rows_returned.clone()),
            Box::new(self.pool_size.clone()),
            Box::new(self.pool_idle.clone()),
        ];
        for collector in collectors {
            // Names are fixed and distinct: registering cannot fail.
            let _ = self.registry.register(collector);
        }
    }

    /// The text exposition, with the pool gauges read now.
    pub fn render(&self, pool: &PgPool) -> String {
        self.pool_size.set(i64::from(pool.size()));
        self.pool_idle.set(pool.num_idle() as i64);
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
