//! The audit log of access to protected entities: who (the credential's id), what (register,
//! entity, operation), when, and how many rows or events. Requests hand records to a writer task
//! that inserts them in batches, so a read never waits for its audit row.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::mpsc;

/// One audited access.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    /// When.
    pub at: DateTime<Utc>,
    /// The credential's id (`apikey:<uuid>`, `jwt:<iss>/<sub>`).
    pub credential: String,
    /// Register code.
    pub register: String,
    /// Entity name.
    pub entity: String,
    /// `rows`, `events` or `subscribe`.
    pub operation: String,
    /// Rows or events returned.
    pub rows: i64,
}

/// Records waiting for the writer at most; beyond, records are dropped and counted.
const QUEUE: usize = 65_536;
/// Most records per insert.
const BATCH: usize = 1000;

/// Hands audit records to the writer task (started on first use).
#[derive(Debug)]
pub struct Audit {
    pool: PgPool,
    sender: OnceLock<mpsc::Sender<AuditRecord>>,
    dropped: prometheus::IntCounter,
}

impl Audit {
    /// An audit log in `pool`; `dropped` counts records lost to a full queue.
    pub fn new(pool: PgPool, dropped: prometheus::IntCounter) -> Self {
        Self {
            pool,
            sender: OnceLock::new(),
            dropped,
        }
    }

    /// Queues one record.
    pub fn record(
        &self,
        credential: &str,
        register: &str,
        entity: &str,
        operation: &str,
        rows: usize,
    ) {
        let sender = self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE);
            tokio::spawn(write(self.pool.clone(), receiver));
            sender
        });
        let record = AuditRecord {
            at: Utc::now(),
            credential: credential.to_owned(),
            register: register.to_owned(),
            entity: entity.to_owned(),
            operation: operation.to_owned(),
            rows: i64::try_from(rows).unwrap_or(i64::MAX),
        };
        if sender.try_send(record).is_err() {
            self.dropped.inc();
            tracing::error!("the audit log queue is full: a record was dropped");
        }
    }
}

/// Inserts records in batches until every sender is gone.
async fn write(pool: PgPool, mut receiver: mpsc::Receiver<AuditRecord>) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let mut attempt = 0;
        while let Err(e) = insert(&pool, &batch).await {
            attempt += 1;
            tracing::error!(attempt, "cannot write the audit log: {e}");
            if attempt >= 5 {
                tracing::error!(records = batch.len(), "audit records lost");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        }
        batch.clear();
    }
}

async fn insert(pool: &PgPool, batch: &[AuditRecord]) -> sqlx::Result<()> {
    let column = |f: fn(&AuditRecord) -> String| batch.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO audit_log (at, credential, register, entity, operation, rows) \
         SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::bigint[])",
    )
    .bind(batch.iter().map(|r| r.at).collect::<Vec<_>>())
    .bind(column(|r| r.credential.clone()))
    .bind(column(|r| r.register.clone()))
    .bind(column(|r| r.entity.clone()))
    .bind(column(|r| r.operation.clone()))
    .bind(batch.iter().map(|r| r.rows).collect::<Vec<_>>())
    .execute(pool)
    .await
    .map(drop)
}

/// The newest records (at most `limit`) since `since`, of `credential` when given.
pub async fn query(
    pool: &PgPool,
    since: DateTime<Utc>,
    credential: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<AuditRecord>> {
    sqlx::query_as::<_, AuditRecord>(
        "SELECT at, credential, register, entity, operation, rows FROM audit_log \
         WHERE at >= $1 AND ($2::text IS NULL OR credential = $2) ORDER BY at DESC, id DESC \
         LIMIT $3",
    )
    .bind(since)
    .bind(credential)
    .bind(limit)
    .fetch_all(pool)
    .await
}
