//! Prometheus metrics: HTTP requests by route and status with latency, GraphQL root fields by
//! outcome, rows returned, and database pool usage. Labels come from the schema and the routes,
//! never from user input, so their number is bounded.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
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
        let fast_path_pages = prometheus::IntCounter::new(
            "graphql_fast_path_pages_total",
            "Events pages written straight to JSON by the fast path.",
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
            pool_size: pool_size.expect("valid metric"),
            pool_idle: pool_idle.expect("valid metric"),
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 7] = [
            Box::new(self.fast_path_pages.clone()),
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
