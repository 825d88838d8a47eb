//! Per-register state: last package, last event, row and event counts.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The state of one register, as `fordeler status` prints it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct RegisterStatus {
    /// Register code.
    pub register: String,
    /// Sequence number of the last imported package (0: none yet).
    pub last_sequence: i64,
    /// Highest eventid (0: none yet).
    pub last_eventid: i64,
    /// When the last package was imported.
    pub last_import_at: Option<DateTime<Utc>>,
    /// Live rows over all entities.
    pub rows: i64,
    /// Events recorded; equal to `last_eventid` because eventids start at 1 and have no holes.
    pub events: i64,
}

/// The state of every register in the store, by name.
pub async fn register_status(pool: &PgPool) -> anyhow::Result<Vec<RegisterStatus>> {
    let rows = sqlx::query_as(
        "SELECT name AS register, last_sequence, last_eventid, last_import_at,
                row_count AS rows, last_eventid AS events
         FROM registers ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows)
}
