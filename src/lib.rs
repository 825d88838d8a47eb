//! fordeler: a register-event distribution service.
//!
//! Registers deliver numbered packages; `fordeler import` applies each atomically to bitemporal
//! PostgreSQL tables and records one event per changed row with a gap-free, commit-ordered
//! `eventid`.
//!
//! Layout (see ARCHITECTURE.md for the invariants):
//! - [`registry`]: register definitions (TOML) parsed into trusted domain types.
//! - [`package`]: the package format, a streaming reader and row validation into COPY text.
//! - [`store`]: PostgreSQL: migrations, tables derived from definitions, status queries.
//! - [`import`]: the atomic, set-based importer.
//! - [`live`]: one reader per register fanning new events out to subscribers, with catch-up.
//! - [`replica`]: the replica client, keeping a copy of a register through the GraphQL API.
//! - [`generate`]: deterministic synthetic packages for tests, benchmarks and the demo.
//! - [`embedded`] and [`database`]: the private PostgreSQL cluster used when no `DATABASE_URL`.
//! - [`auth`]: bearer tokens and API keys, and the grants they carry.
//! - [`cli`]: one module per subcommand; `main.rs` only parses and dispatches.

pub mod auth;
pub mod cli;
pub mod database;
pub mod embedded;
pub mod generate;
pub mod graphql;
pub mod http;
pub mod import;
pub mod live;
pub mod metrics;
pub mod package;
pub mod query;
pub mod registry;
pub mod replica;
pub mod store;
