//! Validating package rows against the register definition, in one pass over each line and
//! without copying what can be borrowed: a [`Row`] holds typed, canonical values, ready for
//! the COPY encoders of [`super::copy`].

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::PackageError;
use crate::registry::{AttrType, Attribute, Entity, Register};

/// What a row asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Insert the row, or update it if its key exists.
    Upsert,
    /// Remove the row with this key.
    Delete,
}

/// A row validated against its entity, borrowing from its line.
#[derive(Debug)]
pub struct Row<'a> {
    /// Index of the row's entity in the register.
    pub entity: usize,
    /// The register's row identity: not empty, no NUL.
    pub key: Cow<'a, str>,
    /// The row's values; `None` for a delete.
    pub upsert: Option<Upsert<'a>>,
}

impl Row<'_> {
    /// What the row asks for.
    pub fn op(&self) -> Op {
        if self.upsert.is_some() {
            Op::Upsert
        } else {
            Op::Delete
        }
    }
}

/// The values of an upsert.
#[derive(Debug)]
pub struct Upsert<'a> {
    /// Transaction time.
    pub registrering: Period,
    /// Valid time.
    pub virkning: Period,
    /// The register's status of the registration.
    pub status: Option<Cow<'a, str>>,
    /// One value per attribute of the entity, in definition order.
    pub values: Vec<Value<'a>>,
}

/// A bitemporal period in microseconds since the Unix epoch; `til`, when given, is after `fra`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Start, inclusive.
    pub fra: i64,
    /// End, exclusive; `None`: open.
    pub til: Option<i64>,
}

/// An attribute value checked against its type and in canonical form: PostgreSQL stores
/// exactly the value validated here, whatever notation the package used.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// Absent or JSON `null` (only where the attribute is not required).
    Null,
    /// Text without NUL.
    Text(Cow<'a, str>),
    /// A 64-bit integer.
    Integer(i64),
    /// A decimal in a notation PostgreSQL's `numeric` accepts.
    Decimal(Cow<'a, str>),
    /// `true` or `false`.
    Boolean(bool),
    /// A date from year 1.
    Date(NaiveDate),
    /// Microseconds since the Unix epoch.
    Timestamp(i64),
    /// A UUID.
    Uuid(uuid::Uuid),
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

/// Validates the rows of one register's packages.
pub struct RowParser<'r> {
    register: &'r Register,
    /// Per entity: attribute name -> position.
    names: Vec<NameIndex<'r>>,
}

type FieldError = (Option<String>, String);

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    (Some(field.to_owned()), message.into())
}

impl<'r> RowParser<'r> {
    /// A parser for `register`'s rows.
    pub fn new(register: &'r Register) -> Self {
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
        Self { register, names }
    }

    /// Validates one row line; an error names the file, line and field.
    pub fn parse<'a>(
        &self,
        file: &str,
        line_no: u64,
        line: &'a str,
    ) -> Result<Row<'a>, PackageError> {
        self.parse_inner(line)
            .map_err(|(field, message)| PackageError {
                file: file.to_owned(),
                line: line_no,
                field,
                message,
            })
    }

    fn parse_inner<'a>(&self, line: &'a str) -> Result<Row<'a>, FieldError> {
        let row: RawRow = serde_json::from_str(line).map_err(|e| json_error(line, &e))?;
        let (index, entity) = self.entity(&row.entity)?;
        if row.key.is_empty() {
            return Err(field_error("key", "must not be empty"));
        }
        check_no_nul(&row.key).map_err(|m| field_error("key", m))?;
        let upsert = match row.op {
            Op::Delete => {
                check_delete_has_only_key(&row)?;
                None
            }
            Op::Upsert => Some(Upsert {
                registrering: period(&row.registrering_fra, &row.registrering_til, "registrering")?,
                virkning: period(&row.virkning_fra, &row.virkning_til, "virkning")?,
                status: match row.status {
                    Some(status) => {
                        check_no_nul(&status).map_err(|m| field_error("status", m))?;
                        Some(status)
                    }
                    None => None,
                },
                values: self.values(index, entity, row.attributes.as_ref())?,
            }),
        };
        Ok(Row {
            entity: index,
            key: row.key,
            upsert,
        })
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

    fn values<'a>(
        &self,
        index: usize,
        entity: &Entity,
        attributes: Option<&Attributes<'a>>,
    ) -> Result<Vec<Value<'a>>, FieldError> {
        let mut raw: Vec<Option<&'a RawValue>> = vec![None; entity.attributes.len()];
        for (name, value) in attributes.map(|a| a.0.as_slice()).unwrap_or_default() {
            let Some(&k) = self.names[index].get(name.as_ref()) else {
                return Err(field_error(
                    &format!("attributes.{name}"),
                    format!("entity {} has no attribute \"{name}\"", entity.name),
                ));
            };
            if raw[k].replace(*value).is_some() {
                return Err(field_error(&format!("attributes.{name}"), "given twice"));
            }
        }
        if raw[entity.object_id].map_or(0, |v| v.get().len()) > 1000 {
            let name = &entity.object_id_attribute().name;
            return Err(field_error(
                &format!("attributes.{name}"),
                "the object id is longer than 1000 bytes",
            ));
        }
        entity
            .attributes
            .iter()
            .zip(raw)
            .map(|(attribute, value)| {
                attribute_value(attribute, value)
                    .map_err(|m| field_error(&format!("attributes.{}", attribute.name), m))
            })
            .collect()
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

/// A period after checking that `fra` is present and before `til`, compared as stored: in
/// microseconds (finer fractions are truncated).
fn period(
    fra: &Option<Cow<str>>,
    til: &Option<Cow<str>>,
    name: &str,
) -> Result<Period, FieldError> {
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
    if let Some(til_value) = til_value
        && fra_value >= til_value
    {
        return Err(field_error(
            &til_name,
            format!(
                "{til_name} ({}) must be after {fra_name} ({})",
                format_micros(til_value),
                format_micros(fra_value)
            ),
        ));
    }
    Ok(Period {
        fra: fra_value,
        til: til_value,
    })
}

/// A timestamp as microseconds since the Unix epoch.
fn parse_timestamp(text: &str) -> Result<i64, String> {
    let value = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("\"{text}\" is not an RFC 3339 timestamp ({e})"))?;
    if !(1..=9999).contains(&value.year()) {
        return Err(format!("\"{text}\" is outside the years 0001-9999"));
    }
    Ok(value.timestamp_micros())
}

/// RFC 3339 in UTC with microseconds: `2026-01-01T00:00:00.000000Z`.
pub fn format_micros(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One attribute value checked against the attribute's type (absent and `null` are allowed
/// unless it is required).
fn attribute_value<'a>(
    attribute: &Attribute,
    value: Option<&'a RawValue>,
) -> Result<Value<'a>, String> {
    let raw = value.map(RawValue::get).filter(|v| *v != "null");
    let Some(raw) = raw else {
        if attribute.required {
            return Err("is required".into());
        }
        return Ok(Value::Null);
    };
    let wrong = || format!("expected {}, got {}", describe(attribute.ty), shorten(raw));
    Ok(match attribute.ty {
        AttrType::Text => {
            let text = json_string(raw).ok_or_else(wrong)?;
            check_no_nul(&text)?;
            Value::Text(text)
        }
        AttrType::Integer => Value::Integer(raw.parse().map_err(|_| wrong())?),
        AttrType::Decimal => {
            let text = json_string(raw).unwrap_or(Cow::Borrowed(raw));
            if !is_decimal(&text) {
                return Err(wrong());
            }
            Value::Decimal(text)
        }
        AttrType::Boolean => match raw {
            "true" => Value::Boolean(true),
            "false" => Value::Boolean(false),
            _ => return Err(wrong()),
        },
        AttrType::Date => {
            let text = json_string(raw).ok_or_else(wrong)?;
            Value::Date(parse_date(&text).ok_or_else(wrong)?)
        }
        AttrType::Timestamp => {
            let text = json_string(raw).ok_or_else(wrong)?;
            Value::Timestamp(parse_timestamp(&text)?)
        }
        AttrType::Uuid => {
            let text = json_string(raw).ok_or_else(wrong)?;
            Value::Uuid(uuid::Uuid::try_parse(&text).map_err(|_| wrong())?)
        }
    })
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
    fn timestamps_are_read_to_the_microsecond_in_any_offset() {
        let text = "2026-01-01T02:00:00.12345678+02:00";
        let micros = parse_timestamp(text).unwrap_or_default();
        assert_eq!(format_micros(micros), "2026-01-01T00:00:00.123456Z");
        assert!(parse_timestamp("0000-01-01T00:00:00Z").is_err());
        assert!(parse_timestamp("2026-01-01 00:00:00").is_err());
    }
}
