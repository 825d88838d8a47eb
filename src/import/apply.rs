//! The set-based SQL of an import: a staging table filled by COPY, then one statement per entity
//! that computes inserts, updates and deletes and writes their events.

use sqlx::{AssertSqlSafe, PgConnection};

use crate::package::copy::staging_columns;
use crate::registry::{AttrType, Entity, EventValue, Register, quote_ident};

/// Per-entity result of [`apply_entity`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Applied {
    /// `i` events.
    pub inserted: i64,
    /// `u` events.
    pub updated: i64,
    /// `d` events.
    pub deleted: i64,
    /// Line of the first delete of a key that does not exist, if any.
    pub unknown_delete_line: Option<i64>,
}

impl Applied {
    /// Events written.
    pub fn events(&self) -> i64 {
        self.inserted + self.updated + self.deleted
    }
}

/// The register row, locked for the rest of the transaction.
pub struct RegisterState {
    /// Internal id.
    pub register_id: i16,
    /// Last imported package.
    pub last_sequence: i64,
    /// Last eventid.
    pub last_eventid: i64,
    /// The package's `datafordelerOpdateringstid`: taken once the lock is held, so it never runs
    /// backwards relative to eventid (the transaction's `now()` is taken before the lock wait).
    pub written_at: chrono::DateTime<chrono::Utc>,
}

/// Locks the register's row: imports of one register are serialised on it, so commit order
/// equals eventid order.
pub async fn lock_register(conn: &mut PgConnection, name: &str) -> sqlx::Result<RegisterState> {
    let (register_id, last_sequence, last_eventid, written_at) = sqlx::query_as(
        "SELECT register_id, last_sequence, last_eventid, clock_timestamp() FROM registers
         WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    Ok(RegisterState {
        register_id,
        last_sequence,
        last_eventid,
        written_at,
    })
}

/// Names the session `fordeler import <register> <sequence>` until the transaction ends, so that
/// `RegisterImportStatus` can tell an import is running (it dies with the session, crash or not).
pub async fn announce_import(
    conn: &mut PgConnection,
    register: &str,
    sequence: i64,
) -> sqlx::Result<()> {
    sqlx::query("SELECT set_config('application_name', $1, true)")
        .bind(format!("{IMPORT_APPLICATION_NAME}{register} {sequence}"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The prefix of an importing session's `application_name`.
pub const IMPORT_APPLICATION_NAME: &str = "fordeler import ";

/// The register's last imported sequence number, without locking (it only ever grows).
pub async fn last_sequence(conn: &mut PgConnection, name: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT last_sequence FROM registers WHERE name = $1")
        .bind(name)
        .fetch_one(&mut *conn)
        .await
}

/// Checksum of an imported package, if that sequence number was imported.
pub async fn imported_sha256(
    conn: &mut PgConnection,
    register: &str,
    sequence: i64,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT p.sha256 FROM import_packages p JOIN registers r USING (register_id)
         WHERE r.name = $1 AND p.sequence = $2",
    )
    .bind(register)
    .bind(sequence)
    .fetch_optional(&mut *conn)
    .await
}

/// Creates the staging tables of `register`'s packages, dropped at commit: per entity, the
/// rows of the batch being applied (`staging_<index>`) and the keys and lines of every batch
/// (`keys_<index>`), for the duplicate check.
pub async fn create_staging(conn: &mut PgConnection, register: &Register) -> sqlx::Result<()> {
    let sql: String = register
        .entities
        .iter()
        .enumerate()
        .map(|(index, entity)| {
            format!(
                "CREATE TEMP TABLE staging_{index} ({}) ON COMMIT DROP;
                 CREATE TEMP TABLE keys_{index} (key text, line bigint) ON COMMIT DROP;\n",
                staging_columns(entity).join(", ")
            )
        })
        .collect();
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Copies one whole binary COPY stream into entity `index`'s staging table.
pub async fn copy_chunk(conn: &mut PgConnection, index: usize, data: Vec<u8>) -> sqlx::Result<()> {
    let statement = format!("COPY staging_{index} FROM STDIN (FORMAT binary)");
    let mut copy = conn.copy_in_raw(&statement).await?;
    if let Err(e) = copy.send(data).await {
        copy.abort("import aborted").await.ok();
        return Err(e);
    }
    copy.finish().await?;
    Ok(())
}

/// Keeps the keys of entity `index`'s staged batch for the duplicate check.
pub async fn keep_keys(conn: &mut PgConnection, index: usize) -> sqlx::Result<()> {
    let sql = format!("INSERT INTO keys_{index} SELECT key, line FROM staging_{index}");
    sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
    Ok(())
}

/// Empties entity `index`'s staging table for the next batch.
pub async fn clear_staging(conn: &mut PgConnection, index: usize) -> sqlx::Result<()> {
    let sql = format!("TRUNCATE staging_{index}");
    sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
    Ok(())
}

/// A key that appears twice among the kept keys of the register's `entities`: (entity index,
/// key, first line, second line), the earliest such pair in the package.
pub async fn find_duplicate_key(
    conn: &mut PgConnection,
    entities: usize,
) -> sqlx::Result<Option<(i16, String, i64, i64)>> {
    let per_entity: Vec<String> = (0..entities)
        .map(|index| {
            format!(
                "SELECT {index}::smallint AS ent, key, min(line) AS first, max(line) AS second \
                 FROM keys_{index} GROUP BY key HAVING count(*) > 1"
            )
        })
        .collect();
    let sql = format!(
        "SELECT ent, key, first, second FROM ({}) d ORDER BY first LIMIT 1",
        per_entity.join(" UNION ALL ")
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .fetch_optional(&mut *conn)
        .await
}

/// Values bound to the per-entity statement.
pub struct EntityApply<'a> {
    /// The register.
    pub register: &'a Register,
    /// Its internal id.
    pub register_id: i16,
    /// Index of the entity in the register.
    pub index: usize,
    /// The package's sequence number.
    pub sequence: i64,
    /// The eventid before this entity's first event.
    pub base_eventid: i64,
    /// `datafordelerOpdateringstid` of rows and events.
    pub written_at: chrono::DateTime<chrono::Utc>,
}

/// Applies the staged rows of one entity and writes their events, numbered after `base_eventid`
/// in package line order.
pub async fn apply_entity(
    conn: &mut PgConnection,
    apply: &EntityApply<'_>,
) -> sqlx::Result<Applied> {
    let entity = &apply.register.entities[apply.index];
    let sql = entity_statement(apply.register, apply.index);
    tracing::trace!(entity = %entity.name, sql = %sql, "entity statement");
    let (inserted, updated, deleted, unknown_delete_line, rows_updated, rows_deleted): (
        i64,
        i64,
        i64,
        Option<i64>,
        i64,
        i64,
    ) = sqlx::query_as(AssertSqlSafe(sql))
        .bind(apply.sequence)
        .bind(apply.register_id)
        .bind(apply.base_eventid)
        .bind(&entity.name)
        .bind(apply.written_at)
        .fetch_one(&mut *conn)
        .await?;
    if (rows_updated, rows_deleted) != (updated, deleted) {
        // Only possible if something changed the table without the register lock.
        return Err(sqlx::Error::Protocol(format!(
            "{}: {rows_updated} of {updated} updates and {rows_deleted} of {deleted} deletes reached \
             their rows; the table was changed outside an import",
            entity.name
        )));
    }
    Ok(Applied {
        inserted,
        updated,
        deleted,
        unknown_delete_line,
    })
}

/// Records the package, moves the register's counters and notifies live readers, in the
/// import's transaction.
pub async fn finish_package(
    conn: &mut PgConnection,
    record: &PackageRecord<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE registers SET last_sequence = $2, last_eventid = $3, last_import_at = $5,
                row_count = row_count + $4
         WHERE register_id = $1",
    )
    .bind(record.register_id)
    .bind(record.sequence)
    .bind(record.last_eventid)
    .bind(record.row_delta)
    .bind(record.written_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO import_packages (register_id, sequence, sha256, file_name, created, started_at,
             finished_at, rows_read, inserted, updated, deleted, unchanged, first_eventid, last_eventid)
         VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp(), $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(record.register_id)
    .bind(record.sequence)
    .bind(record.sha256)
    .bind(record.file)
    .bind(record.created)
    .bind(record.started_at)
    .bind(record.counts[0])
    .bind(record.counts[1])
    .bind(record.counts[2])
    .bind(record.counts[3])
    .bind(record.counts[4])
    .bind(record.first_eventid)
    .bind(record.events_last)
    .execute(&mut *conn)
    .await?;
    if record.events_last.is_some() {
        // Delivered at commit, to wake the servers' live readers (crate::live).
        sqlx::query("SELECT pg_notify($1, name) FROM registers WHERE register_id = $2")
            .bind(crate::live::NOTIFY_CHANNEL)
            .bind(record.register_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// What [`finish_package`] records.
pub struct PackageRecord<'a> {
    /// Internal register id.
    pub register_id: i16,
    /// Sequence number.
    pub sequence: i64,
    /// The register's eventid counter after this package.
    pub last_eventid: i64,
    /// Inserted minus deleted rows.
    pub row_delta: i64,
    /// The package's write time.
    pub written_at: chrono::DateTime<chrono::Utc>,
    /// SHA-256 of the content.
    pub sha256: &'a str,
    /// File name.
    pub file: &'a str,
    /// Header creation time.
    pub created: chrono::DateTime<chrono::Utc>,
    /// When the import started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// rows_read, inserted, updated, deleted, unchanged.
    pub counts: [i64; 5],
    /// First eventid of the package, if any.
    pub first_eventid: Option<i64>,
    /// Last eventid of the package, if any.
    pub events_last: Option<i64>,
}

/// Records a refused or failed import (outside the failed transaction).
pub async fn record_failure(
    conn: &mut PgConnection,
    register: Option<&str>,
    sequence: Option<i64>,
    file: &str,
    kind: &str,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO import_failures (register, sequence, file_name, kind, error) VALUES ($1, $2, $3, $4, $5)")
        .bind(register)
        .bind(sequence)
        .bind(file)
        .bind(kind)
        .bind(error)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

const SYSTEM: [(&str, &str); 5] = [
    ("regfra", "\"registreringFra\""),
    ("regtil", "\"registreringTil\""),
    ("virkfra", "\"virkningFra\""),
    ("virktil", "\"virkningTil\""),
    ("status", "status"),
];

/// The statement applying one entity. Deletes and updates reach their rows by `ctid`, taken in
/// the same statement's snapshot, through `ctid = ANY(array)` (a TID scan: PostgreSQL 15 does not
/// drive a TID scan from a join, and would otherwise hash the whole table). No other writer can
/// move those rows meanwhile: imports of the register hold its lock. Staged rows find their
/// stored row through the `rowkey` index, one lookup each (`LATERAL ... OFFSET 0` keeps the
/// planner from joining otherwise): the cost follows the batch, never the table, whose
/// statistics do not even count the rows earlier batches of the package inserted. Binds:
/// $1 sequence, $2 register id, $3 base eventid, $4 entity name, $5 write time.
fn entity_statement(register: &Register, index: usize) -> String {
    let entity = &register.entities[index];
    let table = entity.table_name(register);
    let attrs: Vec<String> = entity
        .attributes
        .iter()
        .map(|a| quote_ident(&a.name))
        .collect();
    let staged: Vec<String> = (0..attrs.len())
        .map(|k| staged_attribute(entity, k))
        .collect();
    let src_attrs: Vec<String> = staged
        .iter()
        .enumerate()
        .map(|(k, s)| format!("{s} AS a{k}"))
        .collect();
    let target_cols: Vec<String> = SYSTEM
        .iter()
        .map(|(_, t)| format!("t.{t}"))
        .chain(attrs.iter().map(|a| format!("t.{a}")))
        .collect();
    let staged_cols: Vec<String> = SYSTEM
        .iter()
        .map(|(s, _)| format!("s.{s}"))
        .chain(staged.iter().cloned())
        .collect();
    let set: Vec<String> = SYSTEM
        .iter()
        .map(|(s, t)| format!("{t} = c.{s}"))
        .chain(
            attrs
                .iter()
                .enumerate()
                .map(|(k, a)| format!("{a} = c.a{k}")),
        )
        .collect();
    let insert_values: Vec<String> = SYSTEM
        .iter()
        .map(|(s, _)| format!("c.{s}"))
        .chain((0..attrs.len()).map(|k| format!("c.a{k}")))
        .collect();
    let (extra_src, extra_event) = extra_fields(register, entity, &table);
    let object = entity.object_id;
    format!(
        "WITH src AS (
    SELECT s.line, s.op, s.key, s.newid, s.regfra, s.regtil, s.virkfra, s.virktil, s.status, {src_attrs},
        t.tid AS t_ctid, t.\"datafordelerRowId\" AS t_rowid, t.\"datafordelerRowVersion\" AS t_version,
        t.\"registreringFra\" AS t_regfra, t.\"registreringTil\" AS t_regtil,
        t.\"virkningFra\" AS t_virkfra, t.\"virkningTil\" AS t_virktil, t.status AS t_status,
        t.{object_col}::text AS t_object_id{extra_src},
        CASE
            WHEN s.op = 'd' THEN CASE WHEN t.\"datafordelerRowId\" IS NULL THEN 'x' ELSE 'd' END
            WHEN t.\"datafordelerRowId\" IS NULL THEN 'i'
            WHEN ({target_cols}) IS DISTINCT FROM ({staged_cols}) THEN 'u'
        END AS action
    FROM staging_{index} s
    LEFT JOIN LATERAL (SELECT t.ctid AS tid, t.* FROM {table} t WHERE t.rowkey = s.key OFFSET 0) t ON true
),
chg AS MATERIALIZED (SELECT * FROM src WHERE action IS NOT NULL),
del AS (
    DELETE FROM {table} t WHERE t.ctid = ANY (ARRAY(SELECT t_ctid FROM chg WHERE action = 'd'))
    RETURNING 1
),
upd AS (
    UPDATE {table} t SET \"datafordelerRowVersion\" = c.t_version + 1,
        \"datafordelerOpdateringstid\" = $5, \"datafordelerRegisterImportSequenceNumber\" = $1,
        {set}
    FROM chg c
    WHERE t.ctid = ANY (ARRAY(SELECT t_ctid FROM chg WHERE action = 'u'))
        AND c.action = 'u' AND t.ctid = c.t_ctid
    RETURNING 1
),
ins AS (
    INSERT INTO {table} (\"datafordelerRowId\", rowkey, \"datafordelerRowVersion\",
        \"datafordelerOpdateringstid\", \"datafordelerRegisterImportSequenceNumber\",
        {system_cols}, {attr_cols})
    SELECT c.newid, c.key, 1, $5, $1, {insert_values}
    FROM chg c WHERE c.action = 'i'
),
ev AS (
    INSERT INTO {events} (register_id, eventid, entityname, eventaction,
        datafordeler_import_sequence, datafordeler_opdateringstid, object_id,
        object_datafordeler_rowid, object_datafordeler_rowversion,
        object_registreringfra, object_registreringtil, object_status,
        object_virkningfra, object_virkningtil, extra)
    SELECT $2, $3 + row_number() OVER (ORDER BY c.line), $4, c.action, $1, $5,
        CASE WHEN c.action = 'd' THEN c.t_object_id ELSE c.a{object}::text END,
        CASE WHEN c.action = 'i' THEN c.newid ELSE c.t_rowid END,
        CASE c.action WHEN 'i' THEN 1 WHEN 'u' THEN c.t_version + 1 ELSE c.t_version END,
        CASE WHEN c.action = 'd' THEN c.t_regfra ELSE c.regfra END,
        CASE WHEN c.action = 'd' THEN c.t_regtil ELSE c.regtil END,
        CASE WHEN c.action = 'd' THEN c.t_status ELSE c.status END,
        CASE WHEN c.action = 'd' THEN c.t_virkfra ELSE c.virkfra END,
        CASE WHEN c.action = 'd' THEN c.t_virktil ELSE c.virktil END,
        {extra_event}
    FROM chg c WHERE c.action <> 'x'
)
SELECT count(*) FILTER (WHERE action = 'i'), count(*) FILTER (WHERE action = 'u'),
    count(*) FILTER (WHERE action = 'd'), min(line) FILTER (WHERE action = 'x'),
    (SELECT count(*) FROM upd), (SELECT count(*) FROM del)
FROM chg",
        src_attrs = src_attrs.join(", "),
        object_col = quote_ident(&entity.object_id_attribute().name),
        target_cols = target_cols.join(", "),
        staged_cols = staged_cols.join(", "),
        set = set.join(", "),
        system_cols = SYSTEM.iter().map(|(_, t)| *t).collect::<Vec<_>>().join(", "),
        attr_cols = attrs.join(", "),
        insert_values = insert_values.join(", "),
        events = quote_ident(&register.events_table()),
    )
}

/// Attribute `k` of a staged row, typed as the entity table's column (decimals are staged as
/// text).
fn staged_attribute(entity: &Entity, k: usize) -> String {
    match entity.attributes[k].ty {
        AttrType::Decimal => format!("s.a{k}::numeric"),
        _ => format!("s.a{k}"),
    }
}

/// The extra event fields: columns to add to `src` (old values) and the `extra` expression.
///
/// An `old` value is the row's value before the change; for a new row (`i`) it is the value in
/// the object's latest registration before this package, so the replacement registrations of a
/// bitemporal correction tell the change (a CPR move: nuvaerende 0751, tidligere 0101).
fn extra_fields(register: &Register, entity: &Entity, table: &str) -> (String, String) {
    if register.event_fields.is_empty() {
        return (String::new(), "NULL::jsonb".to_owned());
    }
    let mut src = String::new();
    let mut pairs = Vec::new();
    for (n, field) in register.event_fields.iter().enumerate() {
        let value = match entity.attribute(&field.attribute) {
            None => "NULL".to_owned(),
            Some((k, attribute)) => {
                let column = quote_ident(&attribute.name);
                src.push_str(&format!(", t.{column} AS t_x{n}"));
                match field.value {
                    EventValue::New => {
                        format!("CASE WHEN c.action = 'd' THEN c.t_x{n} ELSE c.a{k} END")
                    }
                    EventValue::Old => {
                        let object = quote_ident(&entity.object_id_attribute().name);
                        src.push_str(&format!(
                            ", CASE WHEN t.\"datafordelerRowId\" IS NULL AND s.op = 'u' THEN
                                (SELECT o.{column} FROM {table} o WHERE o.{object} = {staged}
                                 ORDER BY o.\"registreringFra\" DESC, o.\"virkningFra\" DESC,
                                          o.\"datafordelerRowId\" DESC LIMIT 1)
                               END AS p_x{n}",
                            staged = staged_attribute(entity, entity.object_id)
                        ));
                        format!("CASE WHEN c.action = 'i' THEN c.p_x{n} ELSE c.t_x{n} END")
                    }
                }
            }
        };
        pairs.push(format!("'{}', {value}", field.name));
    }
    (src, format!("jsonb_build_object({})", pairs.join(", ")))
}
