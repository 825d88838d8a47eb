//! COPY encodings of validated rows.
//!
//! The importer stages each entity's rows in a table of its own with binary COPY
//! ([`StagingEncoder`]): PostgreSQL parses no text, and no row carries the columns of other
//! entities. `fordeler check --copy-out` writes the import benchmark's reference instead
//! ([`ReferenceEncoder`]): COPY text of every entity's rows into one plain table.

use std::io::Write;

use chrono::NaiveDate;

use super::rows::{Period, Row, Value};
use crate::registry::{AttrType, Entity, Register};

/// The signature, flags and header extension length that open a binary COPY stream.
pub const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The field count -1 that ends a binary COPY stream.
pub const BINARY_TRAILER: &[u8] = &[0xff, 0xff];

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 0001-01-01 (CE day 1) to 2000-01-01.
const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120;

/// Staging columns before the attributes: line, op, key, newid, the bitemporal fields, status.
const FIXED: [(&str, &str); 9] = [
    ("line", "bigint"),
    ("op", "text"),
    ("key", "text"),
    ("newid", "uuid"),
    ("regfra", "timestamptz"),
    ("regtil", "timestamptz"),
    ("virkfra", "timestamptz"),
    ("virktil", "timestamptz"),
    ("status", "text"),
];

/// Column definitions of an entity's staging table: the fixed columns, then `a0`, `a1`... one
/// per attribute. Decimals are staged as their validated text (binary `numeric` is PostgreSQL's
/// own digit format) and cast when applied.
pub fn staging_columns(entity: &Entity) -> Vec<String> {
    let fixed = FIXED.iter().map(|(name, ty)| format!("{name} {ty}"));
    let attributes = entity.attributes.iter().enumerate().map(|(k, a)| {
        let ty = match a.ty {
            AttrType::Decimal => "text",
            ty => ty.sql_type(),
        };
        format!("a{k} {ty}")
    });
    fixed.chain(attributes).collect()
}

/// Appends `row` of `entity` to `out` as one binary COPY tuple of the entity's staging table.
/// `newid` is the `datafordelerRowId` the row gets if its key is new.
pub fn write_staging(entity: &Entity, line: u64, row: &Row, newid: uuid::Uuid, out: &mut Vec<u8>) {
    // Definitions have far fewer than 32,000 attributes per entity.
    let columns = FIXED.len() + entity.attributes.len();
    out.extend_from_slice(&(columns as i16).to_be_bytes());
    field(out, &(line as i64).to_be_bytes());
    let Some(upsert) = &row.upsert else {
        field(out, b"d");
        field(out, row.key.as_bytes());
        for _ in 3..columns {
            null(out);
        }
        return;
    };
    field(out, b"u");
    field(out, row.key.as_bytes());
    field(out, newid.as_bytes());
    period(out, upsert.registrering);
    period(out, upsert.virkning);
    match &upsert.status {
        Some(status) => field(out, status.as_bytes()),
        None => null(out),
    }
    for value in &upsert.values {
        binary_value(out, value);
    }
}

fn period(out: &mut Vec<u8>, period: Period) {
    timestamp(out, period.fra);
    match period.til {
        Some(til) => timestamp(out, til),
        None => null(out),
    }
}

fn binary_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => null(out),
        Value::Text(text) | Value::Decimal(text) => field(out, text.as_bytes()),
        Value::Integer(n) => field(out, &n.to_be_bytes()),
        Value::Boolean(b) => field(out, &[u8::from(*b)]),
        Value::Date(date) => field(out, &pg_days(*date).to_be_bytes()),
        Value::Timestamp(micros) => timestamp(out, *micros),
        Value::Uuid(id) => field(out, id.as_bytes()),
    }
}

fn timestamp(out: &mut Vec<u8>, unix_micros: i64) {
    field(out, &(unix_micros - PG_EPOCH_MICROS).to_be_bytes());
}

/// Days since 2000-01-01.
fn pg_days(date: NaiveDate) -> i32 {
    use chrono::Datelike;
    date.num_days_from_ce() - PG_EPOCH_DAYS_FROM_CE
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Values are bounded well below 2 GB: a package line is.
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i32).to_be_bytes());
}

/// The import benchmark's reference: every entity's rows as COPY text into one plain table with
/// the fixed columns, the entity index, then every entity's attributes side by side (a row
/// fills its own entity's and leaves the others null).
pub struct ReferenceEncoder {
    /// Column of each entity's first attribute.
    offsets: Vec<usize>,
    columns: usize,
}

impl ReferenceEncoder {
    /// The layout of `register`'s rows.
    pub fn new(register: &Register) -> Self {
        let mut offsets = Vec::with_capacity(register.entities.len());
        let mut next = FIXED.len() + 1;
        for entity in &register.entities {
            offsets.push(next);
            next += entity.attributes.len();
        }
        Self {
            offsets,
            columns: next,
        }
    }

    /// Column definitions of the reference table.
    pub fn columns(register: &Register) -> Vec<String> {
        let fixed = FIXED.iter().map(|(name, ty)| format!("{name} {ty}"));
        let entity = std::iter::once("ent smallint".to_owned());
        let attributes = register
            .entities
            .iter()
            .flat_map(|e| &e.attributes)
            .enumerate()
            .map(|(c, a)| format!("c{c} {}", a.ty.sql_type()));
        fixed.chain(entity).chain(attributes).collect()
    }

    /// Appends `row` as one COPY text line.
    pub fn write(&self, line: u64, row: &Row, newid: uuid::Uuid, out: &mut Vec<u8>) {
        let op = if row.upsert.is_some() { "u" } else { "d" };
        write!(out, "{line}\t{op}\t").ok();
        push_text(out, &row.key);
        let mut column = 3;
        if let Some(upsert) = &row.upsert {
            write!(out, "\t{newid}").ok();
            for micros in [
                Some(upsert.registrering.fra),
                upsert.registrering.til,
                Some(upsert.virkning.fra),
                upsert.virkning.til,
            ] {
                out.push(b'\t');
                match micros {
                    Some(micros) => text_value(out, &Value::Timestamp(micros)),
                    None => out.extend_from_slice(b"\\N"),
                }
            }
            out.push(b'\t');
            match &upsert.status {
                Some(status) => push_text(out, status),
                None => out.extend_from_slice(b"\\N"),
            }
            column = FIXED.len();
        }
        self.nulls(out, column, FIXED.len());
        write!(out, "\t{}", row.entity).ok();
        let own = self.offsets[row.entity];
        self.nulls(out, FIXED.len() + 1, own);
        let values = row.upsert.as_ref().map_or(&[][..], |u| &u.values);
        for value in values {
            out.push(b'\t');
            text_value(out, value);
        }
        self.nulls(out, own + values.len(), self.columns);
        out.push(b'\n');
    }

    fn nulls(&self, out: &mut Vec<u8>, from: usize, to: usize) {
        for _ in from..to {
            out.extend_from_slice(b"\t\\N");
        }
    }
}

fn text_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"\\N"),
        Value::Text(text) => push_text(out, text),
        Value::Decimal(text) => out.extend_from_slice(text.as_bytes()),
        Value::Integer(n) => write!(out, "{n}").unwrap_or_default(),
        Value::Boolean(b) => write!(out, "{b}").unwrap_or_default(),
        Value::Date(date) => write!(out, "{}", date.format("%Y-%m-%d")).unwrap_or_default(),
        Value::Timestamp(micros) => out.extend_from_slice(super::format_micros(*micros).as_bytes()),
        Value::Uuid(id) => write!(out, "{}", id.hyphenated()).unwrap_or_default(),
    }
}

/// Appends text escaped for COPY's text format.
fn push_text(out: &mut Vec<u8>, text: &str) {
    for b in text.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_dates_and_times_count_from_2000() {
        let date = NaiveDate::from_ymd_opt(2000, 1, 2).unwrap_or_default();
        assert_eq!(pg_days(date), 1);
        let mut out = Vec::new();
        timestamp(&mut out, PG_EPOCH_MICROS + 5);
        assert_eq!(out, [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 5]);
    }

    #[test]
    fn copy_text_escapes_its_delimiters() {
        let mut out = Vec::new();
        push_text(&mut out, "a\tb\\c\nd");
        assert_eq!(out, b"a\\tb\\\\c\\nd");
    }
}
