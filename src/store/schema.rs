//! Tables derived from register definitions: one schema per register (`reg_bbr`), one table per
//! entity, one events partition per register. Synced at start-up: missing tables and columns are
//! created; nothing is ever dropped; a changed attribute type is refused.

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::registry::{Entity, Register, Registry, quote_ident};

/// Advisory lock key that serialises concurrent syncs ("fordeler" in ASCII, truncated).
const SYNC_LOCK: i64 = 0x666f_7264_656c_6572;
/// The version of the derived storage layout, part of each register's stored checksum: raising
/// it makes the next start sync every register once, so existing tables get a changed layout
/// (2: the `rowkey` index is a btree, no longer a hash index).
const LAYOUT: u32 = 2;

/// Creates or extends the storage of every register so that it matches its definition.
pub async fn sync_registers(pool: &PgPool, registry: &Registry) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SYNC_LOCK)
        .execute(&mut *tx)
        .await?;
    for register in registry.registers() {
        sync_register(&mut tx, register)
            .await
            .with_context(|| format!("cannot set up the storage of register {}", register.name))?;
    }
    tx.commit().await?;
    Ok(())
}

async fn sync_register(conn: &mut PgConnection, register: &Register) -> anyhow::Result<()> {
    let definition = serde_json::to_value(register)?;
    let sha = hex::encode(Sha256::digest(format!("{LAYOUT}:{definition}").as_bytes()));
    let existing: Option<(i16, String)> =
        // FOR UPDATE first: imports take this row before the entity tables, so a sync that
        // alters a table takes its locks in the same order.
        sqlx::query_as("SELECT register_id, definition_sha256 FROM registers WHERE name = $1 FOR UPDATE")
            .bind(&register.name)
            .fetch_optional(&mut *conn)
            .await?;
    let register_id = match existing {
        Some((_, stored)) if stored == sha => return Ok(()),
        Some((id, _)) => id,
        None => insert_register(conn, register, &definition, &sha).await?,
    };
    create_events_partition(conn, register, register_id).await?;
    execute(
        conn,
        &format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(&register.schema_name())
        ),
    )
    .await?;
    for entity in &register.entities {
        sync_entity_table(conn, register, entity).await?;
    }
    sqlx::query(
        "UPDATE registers SET definition = $2, definition_sha256 = $3 WHERE register_id = $1",
    )
    .bind(register_id)
    .bind(&definition)
    .bind(&sha)
    .execute(&mut *conn)
    .await?;
    tracing::info!(register = %register.name, "register storage synced with its definition");
    Ok(())
}

async fn insert_register(
    conn: &mut PgConnection,
    register: &Register,
    definition: &serde_json::Value,
    sha: &str,
) -> anyhow::Result<i16> {
    let id: i16 = sqlx::query_scalar(
        "INSERT INTO registers (register_id, name, definition, definition_sha256)
         SELECT coalesce(max(register_id), 0) + 1, $1, $2, $3 FROM registers
         RETURNING register_id",
    )
    .bind(&register.name)
    .bind(definition)
    .bind(sha)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

async fn create_events_partition(
    conn: &mut PgConnection,
    register: &Register,
    register_id: i16,
) -> anyhow::Result<()> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF events FOR VALUES IN ({register_id})",
        quote_ident(&register.events_table())
    );
    execute(conn, &sql).await
}

async fn sync_entity_table(
    conn: &mut PgConnection,
    register: &Register,
    entity: &Entity,
) -> anyhow::Result<()> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = $1 AND table_name = $2",
    )
    .bind(register.schema_name())
    .bind(entity.name.to_ascii_lowercase())
    .fetch_all(&mut *conn)
    .await?;
    if columns.is_empty() {
        return create_entity_table(conn, register, entity).await;
    }
    rowkey_btree(conn, register, entity).await?;
    for attribute in &entity.attributes {
        match columns.iter().find(|(name, _)| *name == attribute.name) {
            Some((_, ty)) if ty == attribute.ty.sql_type() => {}
            Some((_, ty)) => bail!(
                "entity {}: attribute {} is stored as {ty} but now defined as {}; \
                 changing a type needs a data migration",
                entity.name,
                attribute.name,
                attribute.ty
            ),
            None => {
                let sql = format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    entity.table_name(register),
                    quote_ident(&attribute.name),
                    attribute.ty.sql_type()
                );
                execute(conn, &sql).await?;
            }
        }
    }
    Ok(())
}

async fn create_entity_table(
    conn: &mut PgConnection,
    register: &Register,
    entity: &Entity,
) -> anyhow::Result<()> {
    let table = entity.table_name(register);
    let attributes: Vec<String> = entity
        .attributes
        .iter()
        .map(|a| format!(",\n    {} {}", quote_ident(&a.name), a.ty.sql_type()))
        .collect();
    let create = format!(
        "CREATE TABLE {table} (
    \"datafordelerRowId\" uuid PRIMARY KEY,
    rowkey text NOT NULL,
    \"datafordelerRowVersion\" integer NOT NULL,
    \"datafordelerOpdateringstid\" timestamptz NOT NULL,
    \"datafordelerRegisterImportSequenceNumber\" bigint NOT NULL,
    \"registreringFra\" timestamptz NOT NULL,
    \"registreringTil\" timestamptz,
    \"virkningFra\" timestamptz NOT NULL,
    \"virkningTil\" timestamptz,
    status text{}\n)",
        attributes.concat()
    );
    execute(conn, &create).await?;
    let comment = format!(
        "COMMENT ON TABLE {table} IS {}",
        quote_literal(&format!(
            "{} {}: bitemporal rows, one per registration; rowkey is the register's row identity, \
             datafordelerRowId ours. Derived from registers/{}.toml.",
            register.name, entity.name, register.name
        ))
    );
    execute(conn, &comment).await?;
    execute(conn, &rowkey_index(register, entity)).await?;
    let name = entity.name.to_ascii_lowercase();
    // Serves lookups by object id (an object's registrations are few; bitemporal filters on
    // them need no index of their own).
    let object = format!(
        "CREATE INDEX {} ON {table} ({})",
        quote_ident(&format!("{name}__object")),
        quote_ident(&entity.object_id_attribute().name)
    );
    execute(conn, &object).await?;
    // Serves the bitemporal "now" view (registrations not closed in transaction time) in
    // datafordelerRowId order, for keyset paging. Its keys are UUID v7, so inserts append.
    let current = format!(
        "CREATE INDEX {} ON {table} (\"datafordelerRowId\") WHERE \"registreringTil\" IS NULL",
        quote_ident(&format!("{name}__current"))
    );
    execute(conn, &current).await
}

/// The index imports find stored rows by, one lookup per staged row. A btree, not a hash index:
/// a hash index cannot split a bucket while a scan of the same statement still holds a pin on
/// it, so its buckets grew ever longer overflow chains when a statement both looked keys up and
/// inserted them (measured: 193 buffer reads per inserted row). Not unique: uniqueness holds by
/// construction (imports of a register are serialised, a key twice in one package is refused,
/// an existing key is always matched and updated), and a duplicate is reported with its lines.
fn rowkey_index(register: &Register, entity: &Entity) -> String {
    format!(
        "CREATE INDEX {} ON {} (rowkey)",
        quote_ident(&format!("{}__rowkey", entity.name.to_ascii_lowercase())),
        entity.table_name(register)
    )
}

/// Replaces a `rowkey` hash index of an earlier layout with the btree.
async fn rowkey_btree(
    conn: &mut PgConnection,
    register: &Register,
    entity: &Entity,
) -> anyhow::Result<()> {
    let name = format!("{}__rowkey", entity.name.to_ascii_lowercase());
    let method: Option<String> = sqlx::query_scalar(
        "SELECT am.amname::text FROM pg_class i JOIN pg_am am ON am.oid = i.relam
         JOIN pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname = $1 AND i.relname = $2",
    )
    .bind(register.schema_name())
    .bind(&name)
    .fetch_optional(&mut *conn)
    .await?;
    if method.as_deref() == Some("btree") {
        return Ok(());
    }
    if method.is_some() {
        let index = format!(
            "{}.{}",
            quote_ident(&register.schema_name()),
            quote_ident(&name)
        );
        execute(conn, &format!("DROP INDEX {index}")).await?;
    }
    execute(conn, &rowkey_index(register, entity)).await
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn execute(conn: &mut PgConnection, sql: &str) -> anyhow::Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *conn)
        .await
        .with_context(|| format!("while running: {sql}"))?;
    Ok(())
}
