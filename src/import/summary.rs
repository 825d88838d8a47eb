//! What an import did, for humans and for `--json`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::package::Header;

/// The result of one package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Applied now.
    Imported,
    /// Imported before with the same content: nothing done.
    AlreadyImported,
}

/// Counts and timings of one package.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PackageSummary {
    /// The package file.
    pub file: String,
    /// Register code.
    pub register: String,
    /// Sequence number.
    pub sequence: i64,
    /// Imported now or before.
    pub outcome: Outcome,
    /// Row lines read.
    pub rows_read: u64,
    /// New rows (`i` events).
    pub inserted: u64,
    /// Changed rows (`u` events).
    pub updated: u64,
    /// Deleted rows (`d` events).
    pub deleted: u64,
    /// Re-delivered identical rows (no event).
    pub unchanged: u64,
    /// Events recorded.
    pub events: u64,
    /// First eventid of the package, if it made events.
    pub first_eventid: Option<i64>,
    /// Last eventid of the package, if it made events.
    pub last_eventid: Option<i64>,
    /// Wall time of the import.
    pub duration_ms: u64,
    /// Row lines read per second.
    pub rows_per_second: u64,
    /// SHA-256 of the decompressed package.
    pub sha256: String,
}

/// Receives progress of an import, for a progress bar. Every method has a no-op default.
pub trait Observer: Send + Sync {
    /// A package starts: `bytes` counts bytes of the file read so far (of `size`), `rows` rows.
    fn started(
        &self,
        _file: &str,
        _header: &Header,
        _size: u64,
        _bytes: Arc<AtomicU64>,
        _rows: Arc<AtomicU64>,
    ) {
    }
    /// The package moved to another phase (`applying`, `committing`).
    fn phase(&self, _phase: &str) {}
    /// The package is done (imported or already imported).
    fn finished(&self, _summary: &PackageSummary) {}
}

/// An observer that ignores everything.
pub struct Quiet;

impl Observer for Quiet {}
