//! Where a replica lives: an SQLite file (the default) or a PostgreSQL database. One table per
//! entity mirrors the source's fields (bitemporal columns plus attributes, typed), and the table
//! `fordeler_replica` holds each register's checkpoint, written in the same transaction as the
//! rows it covers.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::TryStreamExt;
use sqlx::query_builder::Separated;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Database, PgPool, QueryBuilder, Row as _, SqlitePool};
use uuid::Uuid;

use super::ReplicaError;
use super::schema::{
    Checksum, EntitySchema, ROW_ID, ROW_VERSION, RemoteSchema, Row, from_text, to_text,
};
use crate::query::Scalar;
use crate::registry::{AttrType, quote_ident};

/// A replica's database.
#[derive(Debug, Clone)]
pub enum Target {
    /// An SQLite file.
    Sqlite(SqlitePool),
    /// A PostgreSQL database.
    Postgres(PgPool),
}

/// What a replica holds of one register.
#[derive(Debug, Clone)]
pub struct State {
    /// The entities and fields it mirrors.
    pub schema: RemoteSchema,
    /// The last applied eventid (0: none).
    pub checkpoint: i64,
    /// The row the checkpoint event named, to recognise a source that was reset.
    pub checkpoint_row_id: Option<Uuid>,
    /// The source it was last synced from.
    pub source: String,
}

/// The changes of one batch of events, per entity in schema order, and the checkpoint after it.
#[derive(Debug, Default)]
pub struct Change {
    /// Per entity: rows to delete, rows to insert or update (when newer).
    pub entities: Vec<EntityChange>,
    /// The last eventid the change covers.
    pub checkpoint: i64,
    /// The row that event named.
    pub checkpoint_row_id: Option<Uuid>,
    /// How many events it covers.
    pub events: u64,
}

/// One entity's share of a [`Change`].
#[derive(Debug, Default)]
pub struct EntityChange {
    /// Row ids to delete.
    pub deletes: Vec<Uuid>,
    /// Rows to insert, or to update where the stored version is older.
    pub upserts: Vec<Row>,
}

const META: &str = "CREATE TABLE IF NOT EXISTS fordeler_replica (
    register TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    schema TEXT NOT NULL,
    checkpoint BIGINT NOT NULL,
    checkpoint_row_id TEXT,
    events_applied BIGINT NOT NULL,
    updated_at TEXT NOT NULL
)";

const CHECKPOINT_SQLITE: &str = "UPDATE fordeler_replica SET checkpoint = ?, \
    checkpoint_row_id = ?, events_applied = events_applied + ?, updated_at = ? WHERE register = ?";

const CHECKPOINT_POSTGRES: &str = "UPDATE fordeler_replica SET checkpoint = $1, \
    checkpoint_row_id = $2, events_applied = events_applied + $3, updated_at = $4 \
    WHERE register = $5";

/// Most parameter bytes per PostgreSQL statement: over TCP, sqlx 0.9 leaves Nagle's algorithm
/// on, and a message larger than the socket's send buffer (16 KB to begin with) waits 40 ms for
/// the server's delayed ACK (see ARCHITECTURE.md).
const PG_STATEMENT_BYTES: usize = 12_000;

/// Most bind parameters per statement (SQLite allows 32766, PostgreSQL 65535).
const MAX_BINDS: usize = 30_000;

/// The table mirroring `entity` of `register`: `bbr_bygning`.
pub fn table_name(register: &str, entity: &str) -> String {
    format!("{}_{}", register, entity).to_lowercase()
}

impl Target {
    /// Opens `url`: `sqlite://FILE` (created if missing) or `postgres://...`.
    pub async fn open(url: &str) -> Result<Self, ReplicaError> {
        let bad = |e: &dyn std::fmt::Display| ReplicaError::Target(format!("--target {url}: {e}"));
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| bad(&e))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // With WAL, NORMAL keeps every commit across a process crash; a power loss may
                // lose the last commits, never the consistency of rows and checkpoint.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                // `verify` reads whole tables: not a slow statement worth a warning.
                .disable_statement_logging();
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .map_err(|e| bad(&e))?;
            let target = Target::Sqlite(pool);
            target.execute(META).await?;
            Ok(target)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = crate::store::connect_options(url)
                .map_err(|e| bad(&e))?
                .disable_statement_logging();
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .map_err(|e| bad(&e))?;
            let target = Target::Postgres(pool);
            target.execute(META).await?;
            Ok(target)
        } else {
            Err(ReplicaError::Usage(format!(
                "--target {url}: give sqlite://FILE or postgres://..."
            )))
        }
    }

    async fn execute(&self, sql: &str) -> Result<(), ReplicaError> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Target::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            Target::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        }
        .map_err(target_error)
    }

    /// What the replica holds of `register`, if anything.
    pub async fn state(&self, register: &str) -> Result<Option<State>, ReplicaError> {
        let sql = "SELECT schema, checkpoint, checkpoint_row_id, source FROM fordeler_replica \
                   WHERE register = ";
        let row: Option<(String, i64, Option<String>, String)> = match self {
            Target::Sqlite(pool) => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!("{sql}?")))
                    .bind(register)
                    .fetch_optional(pool)
                    .await
            }
            Target::Postgres(pool) => {
                sqlx::query_as(sqlx::AssertSqlSafe(format!("{sql}$1")))
                    .bind(register)
                    .fetch_optional(pool)
                    .await
            }
        }
        .map_err(target_error)?;
        let Some((schema, checkpoint, row_id, source)) = row else {
            return Ok(None);
        };
        let schema = serde_json::from_str(&schema).map_err(|e| {
            ReplicaError::Target(format!(
                "the stored schema of {register} is unreadable: {e}"
            ))
        })?;
        Ok(Some(State {
            schema,
            checkpoint,
            checkpoint_row_id: row_id.and_then(|id| Uuid::try_parse(&id).ok()),
            source,
        }))
    }

    /// Creates the tables of `schema` and its checkpoint row (0), in one transaction.
    pub async fn create(&self, schema: &RemoteSchema, source: &str) -> Result<(), ReplicaError> {
        let mut statements = Vec::new();
        for entity in &schema.entities {
            let table = quote_ident(&table_name(&schema.register, &entity.name));
            let columns: Vec<String> = entity
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let ty = self.column_type(c.ty);
                    match i {
                        ROW_ID => format!("{} {ty} PRIMARY KEY", quote_ident(&c.name)),
                        ROW_VERSION => format!("{} {ty} NOT NULL", quote_ident(&c.name)),
                        _ => format!("{} {ty}", quote_ident(&c.name)),
                    }
                })
                .collect();
            let suffix = match self {
                Target::Sqlite(_) => " WITHOUT ROWID",
                Target::Postgres(_) => "",
            };
            statements.push(format!(
                "CREATE TABLE IF NOT EXISTS {table} ({}){suffix}",
                columns.join(", ")
            ));
        }
        let schema_json = serde_json::to_string(schema)
            .map_err(|e| ReplicaError::Target(format!("cannot store the schema: {e}")))?;
        let now = crate::graphql::scalars::timestamp(&Utc::now());
        let insert = "INSERT INTO fordeler_replica (register, source, schema, checkpoint, \
                      events_applied, updated_at) VALUES ";
        match self {
            Target::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(target_error)?;
                for sql in statements {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut *tx)
                        .await
                        .map_err(target_error)?;
                }
                sqlx::query(sqlx::AssertSqlSafe(format!("{insert}(?, ?, ?, 0, 0, ?)")))
                    .bind(&schema.register)
                    .bind(source)
                    .bind(&schema_json)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await
                    .map_err(target_error)?;
                tx.commit().await.map_err(target_error)
            }
            Target::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(target_error)?;
                for sql in statements {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut *tx)
                        .await
                        .map_err(target_error)?;
                }
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{insert}($1, $2, $3, 0, 0, $4)"
                )))
                .bind(&schema.register)
                .bind(source)
                .bind(&schema_json)
                .bind(&now)
                .execute(&mut *tx)
                .await
                .map_err(target_error)?;
                tx.commit().await.map_err(target_error)
            }
        }
    }

    fn column_type(&self, ty: AttrType) -> &'static str {
        match self {
            // Dates, times, UUIDs and decimals as their exact text: ISO dates and times sort
            // and compare correctly as text, and SQLite's date functions read them.
            Target::Sqlite(_) => match ty {
                AttrType::Integer => "INTEGER",
                AttrType::Boolean => "BOOLEAN",
                _ => "TEXT",
            },
            Target::Postgres(_) => pg_type(ty),
        }
    }

    /// Applies `change` and moves `register`'s checkpoint, in one transaction.
    pub async fn apply(&self, schema: &RemoteSchema, change: &Change) -> Result<(), ReplicaError> {
        let now = crate::graphql::scalars::timestamp(&Utc::now());
        let row_id = change.checkpoint_row_id.map(|id| id.to_string());
        let events = i64::try_from(change.events).unwrap_or(i64::MAX);
        match self {
            Target::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(target_error)?;
                for (entity, part) in schema.entities.iter().zip(&change.entities) {
                    let table = table_name(&schema.register, &entity.name);
                    for mut qb in deletes(&table, &part.deletes, |s, id| {
                        s.push_bind(id.to_string());
                    }) {
                        qb.build().execute(&mut *tx).await.map_err(target_error)?;
                    }
                    for mut qb in upserts(&table, entity, &part.upserts, push_sqlite) {
                        qb.build().execute(&mut *tx).await.map_err(target_error)?;
                    }
                }
                sqlx::query(CHECKPOINT_SQLITE)
                    .bind(change.checkpoint)
                    .bind(&row_id)
                    .bind(events)
                    .bind(&now)
                    .bind(&schema.register)
                    .execute(&mut *tx)
                    .await
                    .map_err(target_error)?;
                tx.commit().await.map_err(target_error)
            }
            Target::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(target_error)?;
                for (entity, part) in schema.entities.iter().zip(&change.entities) {
                    let table = table_name(&schema.register, &entity.name);
                    for mut qb in deletes(&table, &part.deletes, |s, id| {
                        s.push_bind(*id);
                    }) {
                        qb.build().execute(&mut *tx).await.map_err(target_error)?;
                    }
                    upsert_postgres(&mut tx, &table, entity, &part.upserts).await?;
                }
                sqlx::query(CHECKPOINT_POSTGRES)
                    .bind(change.checkpoint)
                    .bind(&row_id)
                    .bind(events)
                    .bind(&now)
                    .bind(&schema.register)
                    .execute(&mut *tx)
                    .await
                    .map_err(target_error)?;
                tx.commit().await.map_err(target_error)
            }
        }
    }

    /// Row count and checksum of the replica's rows of `entity`.
    pub async fn checksum(
        &self,
        register: &str,
        entity: &EntitySchema,
    ) -> Result<Checksum, ReplicaError> {
        let table = quote_ident(&table_name(register, &entity.name));
        let mut sum = Checksum::default();
        match self {
            Target::Sqlite(pool) => {
                let columns: Vec<String> = entity
                    .columns
                    .iter()
                    .map(|c| quote_ident(&c.name))
                    .collect();
                let sql = format!("SELECT {} FROM {table}", columns.join(", "));
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(pool);
                while let Some(row) = rows.try_next().await.map_err(target_error)? {
                    let values = entity
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            Ok(match c.ty {
                                AttrType::Integer => {
                                    row.try_get::<Option<i64>, _>(i)?.map(Scalar::Integer)
                                }
                                AttrType::Boolean => {
                                    row.try_get::<Option<bool>, _>(i)?.map(Scalar::Boolean)
                                }
                                ty => row
                                    .try_get::<Option<String>, _>(i)?
                                    .map(|text| from_text(ty, &text).unwrap_or(Scalar::Text(text))),
                            })
                        })
                        .collect::<sqlx::Result<Row>>()
                        .map_err(target_error)?;
                    sum.add(entity, &values);
                }
            }
            Target::Postgres(pool) => {
                let columns: Vec<String> = entity
                    .columns
                    .iter()
                    .map(|c| match c.ty {
                        AttrType::Decimal => format!("{}::text", quote_ident(&c.name)),
                        _ => quote_ident(&c.name),
                    })
                    .collect();
                let sql = format!("SELECT {} FROM {table}", columns.join(", "));
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(pool);
                while let Some(row) = rows.try_next().await.map_err(target_error)? {
                    let values = entity
                        .columns
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            Ok(match c.ty {
                                AttrType::Text => {
                                    row.try_get::<Option<String>, _>(i)?.map(Scalar::Text)
                                }
                                AttrType::Integer => {
                                    row.try_get::<Option<i64>, _>(i)?.map(Scalar::Integer)
                                }
                                AttrType::Decimal => {
                                    row.try_get::<Option<String>, _>(i)?.map(|text| {
                                        from_text(AttrType::Decimal, &text)
                                            .unwrap_or(Scalar::Text(text))
                                    })
                                }
                                AttrType::Boolean => {
                                    row.try_get::<Option<bool>, _>(i)?.map(Scalar::Boolean)
                                }
                                AttrType::Date => {
                                    row.try_get::<Option<NaiveDate>, _>(i)?.map(Scalar::Date)
                                }
                                AttrType::Timestamp => row
                                    .try_get::<Option<DateTime<Utc>>, _>(i)?
                                    .map(Scalar::Timestamp),
                                AttrType::Uuid => {
                                    row.try_get::<Option<Uuid>, _>(i)?.map(Scalar::Uuid)
                                }
                            })
                        })
                        .collect::<sqlx::Result<Row>>()
                        .map_err(target_error)?;
                    sum.add(entity, &values);
                }
            }
        }
        Ok(sum)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match self {
            Target::Sqlite(pool) => pool.close().await,
            Target::Postgres(pool) => pool.close().await,
        }
    }
}

fn target_error(e: sqlx::Error) -> ReplicaError {
    ReplicaError::Target(e.to_string())
}

/// `DELETE ... WHERE "datafordelerRowId" IN (...)` statements covering `ids`.
fn deletes<DB: Database>(
    table: &str,
    ids: &[Uuid],
    mut push: impl FnMut(&mut Separated<'_, DB, &'static str>, &Uuid),
) -> Vec<QueryBuilder<DB>>
where
    DB::Arguments: Default,
{
    // 20 bytes a UUID on the wire: under PG_STATEMENT_BYTES for either database.
    ids.chunks(PG_STATEMENT_BYTES / 20)
        .map(|chunk| {
            let mut qb = QueryBuilder::new(format!(
                "DELETE FROM {} WHERE \"datafordelerRowId\" IN (",
                quote_ident(table)
            ));
            let mut separated = qb.separated(", ");
            for id in chunk {
                push(&mut separated, id);
            }
            qb.push(")");
            qb
        })
        .collect()
}

/// Multi-row upserts of `rows`: a row is inserted, or updated where the stored
/// `datafordelerRowVersion` is older; never made older.
fn upserts<DB: Database>(
    table: &str,
    entity: &EntitySchema,
    rows: &[Row],
    push: fn(&mut Separated<'_, DB, &'static str>, Option<&Scalar>, AttrType),
) -> Vec<QueryBuilder<DB>>
where
    DB::Arguments: Default,
{
    let names: Vec<String> = entity
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect();
    let updates: Vec<String> = names[1..]
        .iter()
        .map(|n| format!("{n} = excluded.{n}"))
        .collect();
    let per_statement = (MAX_BINDS / names.len()).clamp(1, 1000);
    rows.chunks(per_statement)
        .map(|chunk| {
            let mut qb = QueryBuilder::new(format!(
                "INSERT INTO {} AS cur ({}) ",
                quote_ident(table),
                names.join(", ")
            ));
            qb.push_values(chunk, |mut separated, row| {
                for (column, value) in entity.columns.iter().zip(row) {
                    push(&mut separated, value.as_ref(), column.ty);
                }
            });
            qb.push(format!(
                " ON CONFLICT (\"datafordelerRowId\") DO UPDATE SET {} \
                 WHERE excluded.\"datafordelerRowVersion\" > cur.\"datafordelerRowVersion\"",
                updates.join(", ")
            ));
            qb
        })
        .collect()
}

/// Upserts `rows` into `table` with `INSERT ... SELECT * FROM UNNEST(one array per column)`:
/// one statement text (prepared once), in chunks of at most [`PG_STATEMENT_BYTES`].
async fn upsert_postgres(
    conn: &mut sqlx::PgConnection,
    table: &str,
    entity: &EntitySchema,
    rows: &[Row],
) -> Result<(), ReplicaError> {
    if rows.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = entity
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect();
    let arrays: Vec<String> = entity
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| match c.ty {
            AttrType::Decimal => format!("${}::text[]::numeric[]", i + 1),
            ty => format!("${}::{}[]", i + 1, pg_type(ty)),
        })
        .collect();
    let updates: Vec<String> = names[1..]
        .iter()
        .map(|n| format!("{n} = excluded.{n}"))
        .collect();
    let sql = format!(
        "INSERT INTO {} AS cur ({}) SELECT * FROM UNNEST({}) ON CONFLICT (\"datafordelerRowId\") \
         DO UPDATE SET {} WHERE excluded.\"datafordelerRowVersion\" > cur.\"datafordelerRowVersion\"",
        quote_ident(table),
        names.join(", "),
        arrays.join(", "),
        updates.join(", ")
    );
    let mut start = 0;
    while start < rows.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < rows.len() {
            let size = row_bytes(&rows[end]);
            if end > start && bytes + size > PG_STATEMENT_BYTES {
                break;
            }
            bytes += size;
            end += 1;
        }
        let chunk = &rows[start..end];
        start = end;
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
        for (i, column) in entity.columns.iter().enumerate() {
            let values = chunk.iter().map(|row| row[i].as_ref());
            query = match column.ty {
                AttrType::Text | AttrType::Decimal => {
                    query.bind(values.map(|v| v.map(to_text)).collect::<Vec<_>>())
                }
                AttrType::Integer => query.bind(pick(values, |v| match v {
                    Scalar::Integer(n) => Some(*n),
                    _ => None,
                })),
                AttrType::Boolean => query.bind(pick(values, |v| match v {
                    Scalar::Boolean(b) => Some(*b),
                    _ => None,
                })),
                AttrType::Date => query.bind(pick(values, |v| match v {
                    Scalar::Date(d) => Some(*d),
                    _ => None,
                })),
                AttrType::Timestamp => query.bind(pick(values, |v| match v {
                    Scalar::Timestamp(t) => Some(*t),
                    _ => None,
                })),
                AttrType::Uuid => query.bind(pick(values, |v| match v {
                    Scalar::Uuid(u) => Some(*u),
                    _ => None,
                })),
            };
        }
        query.execute(&mut *conn).await.map_err(target_error)?;
    }
    Ok(())
}

/// One column's values as the array PostgreSQL binds (`None`: null).
fn pick<'a, T>(
    values: impl Iterator<Item = Option<&'a Scalar>>,
    typed: impl Fn(&Scalar) -> Option<T>,
) -> Vec<Option<T>> {
    values.map(|v| v.and_then(&typed)).collect()
}

fn pg_type(ty: AttrType) -> &'static str {
    match ty {
        AttrType::Text => "text",
        AttrType::Integer => "bigint",
        AttrType::Decimal => "numeric",
        AttrType::Boolean => "boolean",
        AttrType::Date => "date",
        AttrType::Timestamp => "timestamptz",
        AttrType::Uuid => "uuid",
    }
}

/// About what a row's parameters weigh on the wire.
fn row_bytes(row: &Row) -> usize {
    row.iter()
        .map(|value| {
            4 + match value {
                None => 0,
                Some(Scalar::Text(t)) => t.len(),
                Some(Scalar::Decimal(_)) => 24,
                Some(Scalar::Uuid(_)) => 16,
                Some(_) => 8,
            }
        })
        .sum()
}

fn push_sqlite(
    s: &mut Separated<'_, sqlx::Sqlite, &'static str>,
    value: Option<&Scalar>,
    _: AttrType,
) {
    match value {
        None => s.push_bind(None::<String>),
        Some(Scalar::Integer(n)) => s.push_bind(*n),
        Some(Scalar::Boolean(b)) => s.push_bind(*b),
        Some(Scalar::Text(t)) => s.push_bind(t.clone()),
        Some(other) => s.push_bind(to_text(other)),
    };
}
