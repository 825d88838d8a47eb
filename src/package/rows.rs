//! Validating package rows against the register definition and encoding them as COPY text for
//! the staging table, in one pass and without building intermediate values.
//!
//! The staging table has [`STAGING_FIXED_COLUMNS`] fixed columns followed by the attributes of
//! every entity of the register, entity after entity: a row fills its own entity's columns and
//! leaves the others null. One COPY stream therefore carries a package of mixed entities in
//! file order.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::PackageError;
use crate::registry::{AttrType, Attribute, Entity, Register};

/// Fixed staging columns: line, ent, op, key, newid, regfra, regtil, virkfra, virktil, status.
pub const STAGING_FIXED_COLUMNS: usize = 10;

/// What a row asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Insert the row, or update it if its key exists.
    Upsert,
    /// Remove the row with this key.
    Delete,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRow<'a> {
    #[serde(borrow)]
    entity: Cow<'a, str>,
    op: Op,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(rename = "registreringFra", borrow, default)]
    registrering_fra: Option<Cow<'a, str>>,
    #[serde(rename = "registreringTil", borrow, default)]
    registrering_til: Option<Cow<'a, str>>,
    #[serde(rename = "virkningFra", borrow, default)]
    virkning_fra: Option<Cow<'a, str>>,
    #[serde(rename = "virkningTil", borrow, default)]
    virkning_til: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    attributes: Option<Attributes<'a>>,
}

/// A row's attributes in file order: no hashing while parsing, and a name given twice is
/// caught instead of silently keeping the last value.
struct Attributes<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Attributes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Attributes<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of attribute values")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((key, value)) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    pairs.push((key, value));
                }
                Ok(Attributes(pairs))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// FNV-1a: attribute names are short and trusted, so a fast non-keyed hash is right here.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type NameIndex<'r> = HashMap<&'r str, usize, std::hash::BuildHasherDefault<Fnv>>;

/// Encodes the rows of one register's packages.
pub struct RowEncoder<'r> {
    register: &'r Register,
    /// Staging column of each entity's first attribute.
    offsets: Vec<usize>,
    columns: usize,
    /// Per entity: attribute name -> position.
    names: Vec<NameIndex<'r>>,
}

type FieldError = (Option<String>, String);

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    (Some(field.to_owned()), message.into())
}

impl<'r> RowEncoder<'r> {
    /// An encoder for `register`'s staging layout.
    pub fn new(register: &'r Register) -> Self {
        let mut offsets = Vec::with_capacity(register.entities.len());
        let mut next = STAGING_FIXED_COLUMNS;
        for entity in &register.entities {
            offsets.push(next);
            next += entity.attributes.len();
        }
        let names = register
            .entities
            .iter()
            .map(|e| {
                e.attributes
                    .iter()
                    .enumerate()
                    .map(|(k, a)| (a.name.as_str(), k))
                    .collect()
            })
            .collect();
        Self {
            register,
            offsets,
            columns: next,
            names,
        }
    }

    /// Staging column index of `entity`'s first attribute.
    pub fn offset(&self, entity: usize) -> usize {
        self.offsets[entity]
    }

    /// Validates one row line and appends its COPY text line to `out`. On error `out` is left
    /// as it was. Returns the entity index and the operation.
    pub fn encode(
        &self,
        file: &str,
        line_no: u64,
        line: &str,
        out: &mut Vec<u8>,
    ) -> Result<(usize, Op), PackageError> {
        let start = out.len();
        let result = self.encode_inner(line_no, line, out);
        result.map_err(|(field, message)| {
            out.truncate(start);
            PackageError {
                file: file.to_owned(),
                line: line_no,
                field,
                message,
            }
        })
    }

    fn encode_inner(
        &self,
        line_no: u64,
        line: &str,
        out: &mut Vec<u8>,
    ) -> Result<(usize, Op), FieldError> {
        let row: RawRow = serde_json::from_str(line).map_err(|e| json_error(line, &e))?;
        let (index, entity) = self.entity(&row.entity)?;
        if row.key.is_empty() {
            return Err(field_error("key", "must not be empty"));
        }
        check_no_nul(&row.key).map_err(|m| field_error("key", m))?;
        write!(out, "{line_no}\t{index}\t").ok();
        match row.op {
            Op::Delete => {
                check_delete_has_only_key(&row)?;
                out.extend_from_slice(b"d\t");
                push_text(out, &row.key);
                out.extend_from_slice(b"\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N");
                self.push_nulls(out, 0, self.columns - STAGING_FIXED_COLUMNS);
            }
            Op::Upsert => {
                out.extend_from_slice(b"u\t");
                push_text(out, &row.key);
                write!(out, "\t{}", uuid::Uuid::now_v7()).ok();
                push_period(
                    out,
                    &row.registrering_fra,
                    &row.registrering_til,
                    "registrering",
                )?;
                push_period(out, &row.virkning_fra, &row.virkning_til, "virkning")?;
                out.push(b'\t');
                match &row.status {
                    Some(status) => {
                        check_no_nul(status).map_err(|m| field_error("status", m))?;
                        push_text(out, status);
                    }
                    None => out.extend_from_slice(b"\\N"),
                }
                self.push_attributes(out, index, entity, row.attributes.as_ref())?;
            }
        }
        out.push(b'\n');
        Ok((index, row.op))
    }

    fn entity(&self, name: &str) -> Result<(usize, &'r Entity), FieldError> {
        let found = self
            .register
            .entities
            .iter()
            .enumerate()
            .find(|(_, e)| e.name == name);
        found.ok_or_else(|| {
            field_error(
                "entity",
                format!(
                    "unknown entity \"{name}\" in register {} (known: {})",
                    self.register.name,
                    self.register.entity_names()
                ),
            )
        })
    }

    fn push_nulls(&self, out: &mut Vec<u8>, from: usize, to: usize) {
        for _ in from..to {
            out.extend_from_slice(b"\t\\N");
        }
    }

    fn push_attributes(
        &self,
        out: &mut Vec<u8>,
        index: usize,
        entity: &Entity,
        attributes: Option<&Attributes>,
    ) -> Result<(), FieldError> {
        let mut values: Vec<Option<&RawValue>> = vec![None; entity.attributes.len()];
        for (name, value) in attributes.map(|a| a.0.as_slice()).unwrap_or_default() {
            let Some(&k) = self.names[index].get(name.as_ref()) else {
                return Err(field_error(
                    &format!("attributes.{name}"),
                    format!("entity {} has no attribute \"{name}\"", entity.name),
                ));
            };
            if values[k].replace(value).is_some() {
                return Err(field_error(&format!("attributes.{name}"), "given twice"));
            }
        }
        let own = self.offset(index) - STAGING_FIXED_COLUMNS;
        self.push_nulls(out, 0, own);
        let object_id = values[entity.object_id].map_or(0, |v| v.get().len());
        if object_id > 1000 {
            let name = &entity.object_id_attribute().name;
            return Err(field_error(
                &format!("attributes.{name}"),
                "the object id is longer than 1000 bytes",
            ));
        }
        for (attribute, value) in entity.attributes.iter().zip(values) {
            out.push(b'\t');
            push_attribute(out, attribute, value)
                .map_err(|m| field_error(&format!("attributes.{}", attribute.name), m))?;
        }
        self.push_nulls(
            out,
            own + entity.attributes.len(),
            self.columns - STAGING_FIXED_COLUMNS,
        );
        Ok(())
    }
}

/// Describes a row that is not valid JSON or not of the row's shape, naming the field when there
/// is one (found by parsing again with path tracking: only on the error path).
fn json_error(line: &str, error: &serde_json::Error) -> FieldError {
    let mut deserializer = serde_json::Deserializer::from_str(line);
    let path = match serde_path_to_error::deserialize::<_, RawRow>(&mut deserializer) {
        Err(e) => e.path().to_string(),
        Ok(_) => String::new(),
    };
    let text = error.to_string();
    let text = text.split(" at line ").next().unwrap_or_default();
    let field = (!path.is_empty() && path != "." && path != "?").then_some(path);
    (
        field,
        format!("invalid row: {text} (column {})", error.column()),
    )
}

fn check_delete_has_only_key(row: &RawRow) -> Result<(), FieldError> {
    let extra = [
        ("registreringFra", row.registrering_fra.is_some()),
        ("registreringTil", row.registrering_til.is_some()),
        ("virkningFra", row.virkning_fra.is_some()),
        ("virkningTil", row.virkning_til.is_some()),
        ("status", row.status.is_some()),
        ("attributes", row.attributes.is_some()),
    ];
    match extra.iter().find(|(_, present)| *present) {
        Some((field, _)) => Err(field_error(
            field,
            "a delete carries only entity, op and key",
        )),
        None => Ok(()),
    }
}

/// Writes `\t<fra>\t<til>` after checking that fra is present and before til.
fn push_period(
    out: &mut Vec<u8>,
    fra: &Option<Cow<str>>,
    til: &Option<Cow<str>>,
    name: &str,
) -> Result<(), FieldError> {
    let fra_name = format!("{name}Fra");
    let til_name = format!("{name}Til");
    let fra_text = fra
        .as_deref()
        .ok_or_else(|| field_error(&fra_name, "is required"))?;
    let fra_value = parse_timestamp(fra_text).map_err(|m| field_error(&fra_name, m))?;
    let til_value = til
        .as_deref()
        .map(parse_timestamp)
        .transpose()
        .map_err(|m| field_error(&til_name, m))?;
    // Compared as they will be stored: in microseconds (push_timestamp truncates).
    if let Some(til_value) = til_value
        && micros(fra_value) >= micros(til_value)
    {
        return Err(field_error(
            &til_name,
            format!(
                "{til_name} ({}) must be after {fra_name} ({})",
                format_ts(til_value),
                format_ts(fra_value)
            ),
        ));
    }
    out.push(b'\t');
    push_timestamp(out, fra_text, fra_value);
    out.push(b'\t');
    match (til.as_deref(), til_value) {
        (Some(text), Some(value)) => push_timestamp(out, text, value),
        _ => out.extend_from_slice(b"\\N"),
    }
    Ok(())
}

/// Writes a validated timestamp in canonical UTC form with at most microseconds, so PostgreSQL
/// stores exactly the instant that was validated (whatever offset or precision the package
/// used). Text already in that form is copied as it is.
fn push_timestamp(out: &mut Vec<u8>, text: &str, value: DateTime<Utc>) {
    if is_canonical_utc(text) {
        out.extend_from_slice(text.as_bytes());
    } else {
        write!(out, "{}", value.format("%Y-%m-%dT%H:%M:%S%.6fZ")).ok();
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, with at most six fractional digits.
fn is_canonical_utc(text: &str) -> bool {
    let b = text.as_bytes();
    let fraction = b.get(19..b.len().saturating_sub(1)).unwrap_or_default();
    b.len() >= 20
        && b[10] == b'T'
        && b[17] < b'6'
        && b.last() == Some(&b'Z')
        && (fraction.is_empty() || (fraction[0] == b'.' && (2..=7).contains(&fraction.len())))
}

fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, String> {
    let value = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("\"{text}\" is not an RFC 3339 timestamp ({e})"))?;
    if !(1..=9999).contains(&value.year()) {
        return Err(format!("\"{text}\" is outside the years 0001-9999"));
    }
    Ok(value)
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn format_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Writes one attribute value (or `\N`) after checking it against the attribute's type.
fn push_attribute(
    out: &mut Vec<u8>,
    attribute: &Attribute,
    value: Option<&RawValue>,
) -> Result<(), String> {
    let raw = value.map(RawValue::get).filter(|v| *v != "null");
    let Some(raw) = raw else {
        if attribute.required {
            return Err("is required".into());
        }
        out.extend_from_slice(b"\\N");
        return Ok(());
    };
    let wrong = || format!("expected {}, got {}", describe(attribute.ty), shorten(raw));
    match attribute.ty {
        AttrType::Text => {
            let text = json_string(raw).ok_or_else(wrong)?;
            check_no_nul(&text)?;
            push_text(out, &text);
        }
        AttrType::Integer => {
            let n: i64 = raw.parse().map_err(|_| wrong())?;
            write!(out, "{n}").ok();
        }
        AttrType::Decimal => {
            let text = json_string(raw).unwrap_or(Cow::Borrowed(raw));
            if !is_decimal(&text) {
                return Err(wrong());
            }
            out.extend_from_slice(text.as_bytes());
        }
        AttrType::Boolean => match raw {
            "true" | "false" => out.extend_from_slice(raw.as_bytes()),
            _ => return Err(wrong()),
        },
        // Dates, timestamps and UUIDs are written in canonical form, so PostgreSQL stores
        // exactly the value validated here.
        AttrType::Date => {
            let text = json_string(raw).ok_or_else(wrong)?;
            let date = parse_date(&text).ok_or_else(wrong)?;
            write!(out, "{}", date.format("%Y-%m-%d")).ok();
        }
        AttrType::Timestamp => {
            let text = json_string(raw).ok_or_else(wrong)?;
            push_timestamp(out, &text, parse_timestamp(&text)?);
        }
        AttrType::Uuid => {
            let text = json_string(raw).ok_or_else(wrong)?;
            let id = uuid::Uuid::try_parse(&text).map_err(|_| wrong())?;
            write!(out, "{}", id.hyphenated()).ok();
        }
    }
    Ok(())
}

fn describe(ty: AttrType) -> &'static str {
    match ty {
        AttrType::Text => "text (a JSON string)",
        AttrType::Integer => "an integer (a JSON number without fraction, 64-bit)",
        AttrType::Decimal => "a decimal number (a JSON number or numeric string)",
        AttrType::Boolean => "true or false",
        AttrType::Date => "a date \"YYYY-MM-DD\"",
        AttrType::Timestamp => "an RFC 3339 timestamp string",
        AttrType::Uuid => "a UUID string",
    }
}

fn shorten(raw: &str) -> String {
    if raw.len() <= 60 {
        raw.to_owned()
    } else {
        let cut = (0..=60)
            .rev()
            .find(|i| raw.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}...", &raw[..cut])
    }
}

/// The string a raw JSON value holds, or `None` if it is not a string.
fn json_string(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.starts_with('"') {
        return None;
    }
    // Fast path: no escapes, so the text between the quotes is the string (RawValue holds
    // valid JSON, so there is a closing quote).
    if !raw.contains('\\') {
        return raw.get(1..raw.len() - 1).map(Cow::Borrowed);
    }
    serde_json::from_str::<Cow<str>>(raw).ok()
}

/// Exactly `YYYY-MM-DD` with a year from 0001 (chrono alone also takes `5-6-7`, which
/// PostgreSQL would read as another date).
fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    (shape && date.year() >= 1).then_some(date)
}

/// `-?digits[.digits][e[+-]digits]`, what PostgreSQL's numeric accepts, without NaN or infinity
/// (exponent at most 1000 either way, as numeric input allows).
fn is_decimal(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok =
        exponent.is_none_or(|e| digits(e) && e.parse::<u32>().is_ok_and(|n| n <= 1000));
    text.len() <= 1000 && digits(int) && digits(frac) && exponent_ok
}

fn check_no_nul(text: &str) -> Result<(), String> {
    if text.contains('\0') {
        Err("contains a NUL character (\\u0000), which PostgreSQL text cannot hold".into())
    } else {
        Ok(())
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
    fn decimals_accept_what_numeric_accepts_and_refuse_the_rest() {
        for ok in ["0", "-1.25", "12e3", "1.5E-2"] {
            assert!(is_decimal(ok), "{ok}");
        }
        for bad in [
            "", "-", "1.", ".5", "NaN", "Infinity", "1e", "1,5", "0x10", "1e1001",
        ] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }

    #[test]
    fn dates_must_have_four_digit_years_and_two_digit_months_and_days() {
        assert!(parse_date("2024-02-29").is_some());
        for bad in [
            "05-06-07",
            "1-2-3",
            "2024-2-29",
            " 2024-02-29",
            "0000-01-01",
            "2023-02-29",
            "+2024-02-29",
        ] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn timestamps_are_written_in_canonical_utc() {
        let mut out = Vec::new();
        let text = "2026-01-01T02:00:00.12345678+02:00";
        push_timestamp(&mut out, text, parse_timestamp(text).unwrap_or_default());
        assert_eq!(out, b"2026-01-01T00:00:00.123456Z");
        for canonical in [
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.5Z",
            "2026-01-01T00:00:00.123456Z",
        ] {
            assert!(is_canonical_utc(canonical), "{canonical}");
        }
        for other in [
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00+00:00",
            "2026-01-01T00:00:00.1234567Z",
        ] {
            assert!(!is_canonical_utc(other), "{other}");
        }
        assert!(parse_timestamp("0000-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn copy_text_escapes_its_delimiters() {
        let mut out = Vec::new();
        push_text(&mut out, "a\tb\\c\nd");
        assert_eq!(out, b"a\\tb\\\\c\\nd");
    }
}
