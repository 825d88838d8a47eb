//! The GraphQL API, derived from the register definitions at start-up (async-graphql dynamic
//! schema). Knows nothing of HTTP: the `http` layer mounts [`Api::schema`] and calls `execute`.
//!
//! For each register `R`: `R_Events` and one `R_<Entity>` per entity (Relay connections with
//! keyset cursors), plus `RegisterImportStatus` for all; and `subscription { R_Events }`. Every `where` argument is parsed into
//! the one [`Filter`](crate::query::Filter) representation and compiled to parameterised SQL.

mod access;
mod connection;
mod entities;
pub mod errors;
mod events;
mod fast;
mod filters;
mod guard;
pub mod scalars;
mod status;
pub mod subscription;

use std::sync::Arc;

use async_graphql::dynamic::{Object, Schema, SchemaError};
use sqlx::PgPool;

pub use access::Access;
pub use errors::ApiError;
pub use fast::{RawData, StreamPlan};
pub use guard::Started;

use crate::live::{Hub, LiveConfig};
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Limits on what one request may ask for.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Page size when `first` is not given.
    pub default_page_size: usize,
    /// Largest `first`.
    pub max_page_size: usize,
    /// Most values in one `in`/`nin` list.
    pub max_in_list: usize,
    /// Most conditions in one `where`.
    pub max_filter_terms: usize,
    /// Deepest selection nesting.
    pub max_depth: usize,
    /// Highest query complexity (one per selected field).
    pub max_complexity: usize,
    /// Most aliased fields in one request.
    pub max_aliases: usize,
    /// Most root fields in one operation.
    pub max_root_fields: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            default_page_size: 100,
            max_page_size: 1000,
            max_in_list: 1000,
            max_filter_terms: 200,
            max_depth: 12,
            max_complexity: 500,
            max_aliases: 20,
            max_root_fields: 10,
        }
    }
}

/// What resolvers share: the store, the registers and the limits.
#[derive(Debug)]
pub struct Api {
    pool: PgPool,
    registry: Arc<Registry>,
    limits: Limits,
    metrics: Metrics,
    events: Vec<events::RegisterEvents>,
    fast_path: std::sync::atomic::AtomicBool,
    entities: Vec<entities::EntityApi>,
    live: Hub,
    audit: crate::auth::audit::Audit,
}

impl Api {
    /// The API over `pool` for the registers of `registry`.
    pub fn new(
        pool: PgPool,
        registry: Arc<Registry>,
        limits: Limits,
        metrics: Metrics,
    ) -> Arc<Self> {
        Self::with_live(pool, registry, limits, LiveConfig::default(), metrics)
    }

    /// The API with subscription settings `live`.
    pub fn with_live(
        pool: PgPool,
        registry: Arc<Registry>,
        limits: Limits,
        live: LiveConfig,
        metrics: Metrics,
    ) -> Arc<Self> {
        let live = Hub::new(pool.clone(), &registry, live, metrics.clone());
        let events = registry
            .registers()
            .iter()
            .map(events::RegisterEvents::new)
            .collect();
        let entities = entities::EntityApi::all(&registry);
        let audit = crate::auth::audit::Audit::new(pool.clone(), metrics.audit_dropped.clone());
        Arc::new(Self {
            audit,
            pool,
            registry,
            limits,
            metrics,
            events,
            entities,
            live,
            fast_path: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The live feeds subscriptions read.
    pub fn live(&self) -> &Hub {
        &self.live
    }

    /// The metrics resolvers record into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts one resolved root field and the rows it returned.
    fn observe<T>(&self, field: &str, result: &Result<connection::Page<T>, ApiError>) {
        let outcome = match result {
            Ok(page) => {
                self.metrics
                    .rows_returned
                    .with_label_values(&[field])
                    .inc_by(page.rows.len() as u64);
                "ok"
            }
            Err(e) => e.code(),
        };
        self.metrics
            .graphql_fields
            .with_label_values(&[field, outcome])
            .inc();
    }

    /// Turns the events fast path off for the schemas built from now on (tests compare the two
    /// paths with it).
    pub fn disable_fast_path(&self) {
        self.fast_path
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Builds the executable schema.
    pub fn schema(self: &Arc<Self>) -> Result<Schema, SchemaError> {
        let mut query = Object::new("Query").description(
            "Events and register data. Events: `<REGISTER>_Events`; rows valid at a bitemporal \
             point: `<REGISTER>_<Entity>`; import progress: `RegisterImportStatus`.",
        );
        let mut builder_types = Vec::new();
        for register_events in &self.events {
            let (field, types) = register_events.schema();
            query = query.field(field);
            builder_types.extend(types);
        }
        for entity in &self.entities {
            let (field, types) = entity.schema();
            query = query.field(field);
            builder_types.extend(types);
        }
        let (field, types) = status::schema();
        query = query.field(field);
        builder_types.extend(types);

        let mut builder = Schema::build("Query", None, Some("Subscription"))
            .register(query)
            .register(subscription::schema(self))
            .register(connection::page_info())
            .data(self.clone())
            .extension(guard::Guard::new(&self.limits))
            .limit_depth(self.limits.max_depth)
            .limit_complexity(self.limits.max_complexity)
            .limit_recursive_depth(32);
        if self.fast_path.load(std::sync::atomic::Ordering::Relaxed) {
            builder = builder.extension(fast::FastEvents::new(self.clone()));
        }
        for scalar in scalars::types() {
            builder = builder.register(scalar);
        }
        for input in filters::operator_types() {
            builder = builder.register(input);
        }
        for ty in builder_types {
            builder = builder.register(ty);
        }
        builder.finish()
    }
}

/// The SDL of the schema the registers of `registry` give, as `graphql/schema.graphql` holds it.
pub fn sdl(registry: Arc<Registry>) -> anyhow::Result<String> {
    // The schema needs a pool to execute, not to be printed: a lazy one never connects.
    let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://localhost/unused")?;
    let schema = Api::new(pool, registry, Limits::default(), Metrics::new()).schema()?;
    Ok(schema.sdl())
}
