//! What a replica mirrors, learned from the source's GraphQL schema (introspection), and the
//! conversions between the source's JSON values, typed [`Scalar`]s and an order-independent
//! checksum of rows.

use std::fmt::Write as _;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ReplicaError;
use crate::graphql::scalars;
use crate::query::{Decimal, Scalar};
use crate::registry::AttrType;

/// One register as the source's schema shows it: its entities and their fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSchema {
    /// Register code (`BBR`).
    pub register: String,
    /// Entities, in the source's order.
    pub entities: Vec<EntitySchema>,
}

/// One entity: its name in events, its query field and its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntitySchema {
    /// The name events carry in `entityname` (`Bygning`).
    pub name: String,
    /// Its query field (`BBR_Bygning`).
    pub field: String,
    /// Fields in the source's order; `datafordelerRowId` and `datafordelerRowVersion` first.
    pub columns: Vec<ColumnSchema>,
}

/// One field of an entity and its type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSchema {
    /// Field name (`byg026Opfoerelsesaar`).
    pub name: String,
    /// Value type.
    pub ty: AttrType,
}

/// A row in [`EntitySchema::columns`] order (`None` is null).
pub type Row = Vec<Option<Scalar>>;

/// Slot of `datafordelerRowId` in a [`Row`].
pub const ROW_ID: usize = 0;
/// Slot of `datafordelerRowVersion` in a [`Row`].
pub const ROW_VERSION: usize = 1;

/// The introspection query [`RemoteSchema::from_introspection`] reads.
pub const INTROSPECTION: &str = "{ __schema { queryType { fields { name type { kind name ofType { \
     kind name } } } } types { name fields { name type { kind name ofType { kind name } } } } } }";

impl RemoteSchema {
    /// Reads `register`'s entities from the answer to [`INTROSPECTION`]: every query field
    /// `<register>_<Entity>` whose type is a `<register>_<Entity>Connection`.
    pub fn from_introspection(register: &str, data: &Value) -> Result<Self, ReplicaError> {
        let schema = &data["__schema"];
        let bad = |what: &str| ReplicaError::Schema(format!("the source's schema {what}"));
        let types = schema["types"]
            .as_array()
            .ok_or_else(|| bad("has no types (is introspection disabled?)"))?;
        let fields = schema["queryType"]["fields"]
            .as_array()
            .ok_or_else(|| bad("has no query fields"))?;
        let prefix = format!("{register}_");
        let mut entities = Vec::new();
        for field in fields {
            let Some(name) = field["name"].as_str() else {
                continue;
            };
            let Some(entity) = name.strip_prefix(&prefix) else {
                continue;
            };
            let connection = named_type(&field["type"]);
            if entity == "Events" || connection != Some(&format!("{name}Connection")) {
                continue;
            }
            let node = types
                .iter()
                .find(|t| t["name"] == name)
                .ok_or_else(|| bad(&format!("lacks the type {name}")))?;
            let columns = node["fields"]
                .as_array()
                .ok_or_else(|| bad(&format!("type {name} has no fields")))?
                .iter()
                .map(|f| column(name, f))
                .collect::<Result<Vec<_>, _>>()?;
            if columns.len() < 2
                || columns[ROW_ID].name != "datafordelerRowId"
                || columns[ROW_VERSION].name != "datafordelerRowVersion"
            {
                return Err(bad(&format!(
                    "type {name} does not start with datafordelerRowId, datafordelerRowVersion"
                )));
            }
            entities.push(EntitySchema {
                name: entity.to_owned(),
                field: name.to_owned(),
                columns,
            });
        }
        if entities.is_empty() {
            return Err(ReplicaError::Usage(format!(
                "the source has no register {register} (no {register}_<Entity> queries)"
            )));
        }
        Ok(Self {
            register: register.to_owned(),
            entities,
        })
    }

    /// Keeps only `names` (all when empty); an unknown name is an error naming the known ones.
    pub fn select(mut self, names: &[String]) -> Result<Self, ReplicaError> {
        if names.is_empty() {
            return Ok(self);
        }
        for name in names {
            if !self.entities.iter().any(|e| &e.name == name) {
                let known: Vec<_> = self.entities.iter().map(|e| e.name.as_str()).collect();
                return Err(ReplicaError::Usage(format!(
                    "{} has no entity {name}; it has {}",
                    self.register,
                    known.join(", ")
                )));
            }
        }
        self.entities.retain(|e| names.contains(&e.name));
        Ok(self)
    }

    /// The entity events name `name`.
    pub fn entity(&self, name: &str) -> Option<&EntitySchema> {
        self.entities.iter().find(|e| e.name == name)
    }

    /// How `self` (what the replica holds) differs from `source`, in words; `None` if alike.
    pub fn difference(&self, source: &RemoteSchema) -> Option<String> {
        let mut out = Vec::new();
        for mine in &self.entities {
            match source.entity(&mine.name) {
                None => out.push(format!("entity {} is gone", mine.name)),
                Some(theirs) if theirs.columns != mine.columns => {
                    let names = |e: &EntitySchema| -> Vec<String> {
                        e.columns
                            .iter()
                            .map(|c| format!("{}: {}", c.name, scalars::type_name(c.ty)))
                            .collect()
                    };
                    let (a, b) = (names(mine), names(theirs));
                    let added: Vec<_> = b.iter().filter(|c| !a.contains(c)).cloned().collect();
                    let removed: Vec<_> = a.iter().filter(|c| !b.contains(c)).cloned().collect();
                    let mut text = format!("entity {} changed", mine.name);
                    if !added.is_empty() {
                        let _ = write!(text, "; added {}", added.join(", "));
                    }
                    if !removed.is_empty() {
                        let _ = write!(text, "; removed {}", removed.join(", "));
                    }
                    if added.is_empty() && removed.is_empty() {
                        text.push_str("; fields reordered");
                    }
                    out.push(text);
                }
                Some(_) => {}
            }
        }
        (!out.is_empty()).then(|| out.join("; "))
    }
}

impl EntitySchema {
    /// The selection set of every field, for row queries.
    pub fn selection(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        names.join(" ")
    }
}

/// The named type under any non-null/list wrappers of an introspected type.
fn named_type(ty: &Value) -> Option<&String> {
    match &ty["name"] {
        Value::String(name) => Some(name),
        _ => match &ty["ofType"]["name"] {
            Value::String(name) => Some(name),
            _ => None,
        },
    }
}

fn column(entity: &str, field: &Value) -> Result<ColumnSchema, ReplicaError> {
    let name = field["name"].as_str().unwrap_or_default();
    let type_name = named_type(&field["type"]).map(String::as_str);
    let ty = match type_name {
        Some("String") => AttrType::Text,
        Some("Long") => AttrType::Integer,
        Some("Decimal") => AttrType::Decimal,
        Some("Boolean") => AttrType::Boolean,
        Some("LocalDate") => AttrType::Date,
        Some("DafDateTime") => AttrType::Timestamp,
        Some("UUID") => AttrType::Uuid,
        other => {
            return Err(ReplicaError::Schema(format!(
                "{entity}.{name} has the type {}, which a replica cannot store",
                other.unwrap_or("(none)")
            )));
        }
    };
    Ok(ColumnSchema {
        name: name.to_owned(),
        ty,
    })
}

/// Reads a value of type `ty` from its text form (as a replica stores dates, times, UUIDs and
/// decimals in SQLite).
pub fn from_text(ty: AttrType, text: &str) -> Option<Scalar> {
    match ty {
        AttrType::Text => Some(Scalar::Text(text.to_owned())),
        AttrType::Integer => text.parse().ok().map(Scalar::Integer),
        AttrType::Decimal => Decimal::parse(text).map(Scalar::Decimal),
        AttrType::Boolean => text.parse().ok().map(Scalar::Boolean),
        AttrType::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(Scalar::Date),
        AttrType::Timestamp => scalars::parse_timestamp(text).map(Scalar::Timestamp),
        AttrType::Uuid => Uuid::try_parse(text).ok().map(Scalar::Uuid),
    }
}

/// The text form of a value: what the server renders, and what SQLite stores for dates, times,
/// UUIDs and decimals.
pub fn to_text(value: &Scalar) -> String {
    match value {
        Scalar::Text(s) => s.clone(),
        Scalar::Integer(n) => n.to_string(),
        Scalar::Decimal(d) => d.to_string(),
        Scalar::Boolean(b) => b.to_string(),
        Scalar::Date(d) => d.format("%Y-%m-%d").to_string(),
        Scalar::Timestamp(t) => scalars::timestamp(t),
        Scalar::Uuid(u) => u.hyphenated().to_string(),
    }
}

/// Row count and order-independent checksum of a set of rows: the wrapping sum of the first
/// 8 bytes of each row's SHA-256 over its fields' names and text forms. Two sets are equal
/// (with overwhelming probability) exactly when count and checksum are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Checksum {
    /// Rows.
    pub rows: u64,
    /// The sum, as 16 hex digits when serialised.
    #[serde(serialize_with = "hex_u64")]
    pub sum: u64,
}

impl Checksum {
    /// Adds one row of `entity`.
    pub fn add(&mut self, entity: &EntitySchema, row: &Row) {
        let mut hash = Sha256::new();
        for (column, value) in entity.columns.iter().zip(row) {
            hash.update(column.name.as_bytes());
            match value {
                None => hash.update([0u8]),
                Some(value) => {
                    hash.update([1u8]);
                    hash.update(to_text(value).as_bytes());
                }
            }
            hash.update([0xffu8]);
        }
        let digest = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        self.rows += 1;
        self.sum = self.sum.wrapping_add(u64::from_le_bytes(first));
    }
}

fn hex_u64<S: serde::Serializer>(sum: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("{sum:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entity() -> EntitySchema {
        let column = |name: &str, ty| ColumnSchema {
            name: name.into(),
            ty,
        };
        EntitySchema {
            name: "Bygning".into(),
            field: "BBR_Bygning".into(),
            columns: vec![
                column("datafordelerRowId", AttrType::Uuid),
                column("datafordelerRowVersion", AttrType::Integer),
                column("areal", AttrType::Decimal),
                column("fra", AttrType::Timestamp),
            ],
        }
    }

    fn row(entity: &EntitySchema, node: &serde_json::Value) -> Result<Row, ReplicaError> {
        let data = json!({"rows": {"nodes": [node]}}).to_string();
        let (mut rows, _) = crate::replica::decode::rows(entity, data.as_bytes())?;
        Ok(rows.remove(0))
    }

    #[test]
    fn rows_read_from_json_render_back_to_the_same_text() {
        let node = json!({
            "datafordelerRowId": "0190a1b2-0000-7000-8000-000000000001",
            "datafordelerRowVersion": 3,
            "areal": "12.50",
            "fra": "2025-11-24T18:17:05.481142Z",
        });
        let row = row(&entity(), &node).expect("a valid row");
        let texts: Vec<String> = row
            .iter()
            .map(|v| to_text(v.as_ref().expect("not null")))
            .collect();
        assert_eq!(
            texts,
            [
                "0190a1b2-0000-7000-8000-000000000001",
                "3",
                "12.50",
                "2025-11-24T18:17:05.481142Z"
            ]
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_names_the_field() {
        let node = json!({"datafordelerRowId": "not a uuid", "datafordelerRowVersion": 1});
        let error = row(&entity(), &node).expect_err("not a uuid").to_string();
        assert!(error.contains("BBR_Bygning.datafordelerRowId"), "{error}");
    }

    #[test]
    fn the_checksum_ignores_order_and_sees_every_field() {
        let e = entity();
        let a = row(
            &e,
            &json!({"datafordelerRowId": "0190a1b2-0000-7000-8000-000000000001", "datafordelerRowVersion": 1, "areal": "1.0"}),
        )
        .expect("a valid row");
        let b = row(
            &e,
            &json!({"datafordelerRowId": "0190a1b2-0000-7000-8000-000000000002", "datafordelerRowVersion": 1, "areal": "1.0"}),
        )
        .expect("a valid row");
        let mut b_changed = b.clone();
        b_changed[2] = Some(Scalar::Decimal(Decimal::parse("1.00").expect("a decimal")));
        let sum = |rows: &[&Row]| {
            let mut c = Checksum::default();
            rows.iter().for_each(|r| c.add(&e, r));
            c
        };
        assert_eq!(sum(&[&a, &b]), sum(&[&b, &a]));
        assert_ne!(sum(&[&a, &b]), sum(&[&a, &b_changed]));
        assert_ne!(sum(&[&a, &b]).sum, sum(&[&a]).sum);
    }
}
