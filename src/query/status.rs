//! `RegisterImportStatus`: how far each register's import has come, and what it is doing now.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::import::IMPORT_APPLICATION_NAME;

/// The import state of one register.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImportStatus {
    /// Register code.
    pub register: String,
    /// Sequence number of the last imported package (0: none yet).
    pub last_sequence: i64,
    /// Highest eventid (0: none yet); every event up to it is readable.
    pub last_eventid: i64,
    /// When the last package was imported.
    pub last_import_at: Option<DateTime<Utc>>,
    /// Sequence number of the package being imported right now, if any.
    pub importing_sequence: Option<i64>,
    /// When that import started.
    pub importing_since: Option<DateTime<Utc>>,
    /// When the last refused or failed import attempt after the last success happened.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Its kind (`invalid`, `gap`, `conflict`...; the message itself stays with the operator).
    pub last_failure: Option<String>,
}

/// The import state of every register, by name. The running import is read from the importing
/// session's `application_name`, which it sets while it holds the register's lock.
pub async fn import_status(pool: &PgPool) -> sqlx::Result<Vec<ImportStatus>> {
    sqlx::query_as(
        "SELECT r.name AS register, r.last_sequence, r.last_eventid, r.last_import_at,
                -- Between the import's commit and its session name's reset, the package is
                -- already the last one: it is not running any more.
                CASE WHEN a.sequence > r.last_sequence THEN a.sequence END AS importing_sequence,
                CASE WHEN a.sequence > r.last_sequence THEN a.xact_start END AS importing_since,
                f.failed_at AS last_failure_at, f.kind AS last_failure
         FROM registers r
         LEFT JOIN LATERAL (
             SELECT split_part(application_name, ' ', 4)::bigint AS sequence, xact_start
             FROM pg_stat_activity
             WHERE application_name = $1 || r.name || ' ' || split_part(application_name, ' ', 4)
             ORDER BY xact_start LIMIT 1) a ON true
         LEFT JOIN LATERAL (
             SELECT failed_at, kind FROM import_failures
             WHERE register = r.name AND failed_at > coalesce(r.last_import_at, '-infinity')
             ORDER BY failed_at DESC LIMIT 1) f ON true
         ORDER BY r.name",
    )
    .bind(IMPORT_APPLICATION_NAME)
    .fetch_all(pool)
    .await
}
