//! Reads a page of rows straight from the source's JSON answer into [`Row`]s, without building a
//! `serde_json::Value` tree per row (a map and a string per field): on a 1000-row page that tree
//! was most of the client's time.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::ReplicaError;
use super::schema::{EntitySchema, Row, from_text};
use crate::query::Scalar;
use crate::registry::AttrType;

/// A connection answer: `{"rows": {"nodes": [...], "pageInfo": {...}}}`.
#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow)]
    rows: Connection<'a>,
}

#[derive(Deserialize)]
struct Connection<'a> {
    #[serde(borrow)]
    nodes: Vec<Node<'a>>,
    #[serde(rename = "pageInfo", default)]
    page_info: Option<PageInfo>,
}

/// The page's `pageInfo`, when selected.
#[derive(Debug, Default, Deserialize)]
pub struct PageInfo {
    /// More rows follow.
    #[serde(rename = "hasNextPage", default)]
    pub has_next: bool,
    /// The last row's cursor.
    #[serde(rename = "endCursor", default)]
    pub end_cursor: Option<String>,
}

/// One node: its fields in the order the answer gives them.
struct Node<'a>(Vec<(&'a str, Cell)>);

/// One JSON value of a node.
enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
}

/// Reads `data` (the answer's `data` member, as bytes) of a row query on `entity`.
pub fn rows(entity: &EntitySchema, data: &[u8]) -> Result<(Vec<Row>, PageInfo), ReplicaError> {
    let data: Data<'_> = serde_json::from_slice(data)
        .map_err(|e| ReplicaError::Source(format!("{}: malformed rows: {e}", entity.field)))?;
    let rows = data
        .rows
        .nodes
        .into_iter()
        .map(|node| row(entity, node))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((rows, data.rows.page_info.unwrap_or_default()))
}

fn row(entity: &EntitySchema, node: Node<'_>) -> Result<Row, ReplicaError> {
    let mut cells = node.0;
    let in_order = cells.len() == entity.columns.len()
        && cells
            .iter()
            .zip(&entity.columns)
            .all(|((name, _), column)| *name == column.name);
    if !in_order {
        // Not the order asked for: pick each column by name.
        let mut ordered = Vec::with_capacity(entity.columns.len());
        for column in &entity.columns {
            let at = cells.iter().position(|(name, _)| *name == column.name);
            let cell = match at {
                Some(at) => cells.swap_remove(at).1,
                None => Cell::Null,
            };
            ordered.push((column.name.as_str(), cell));
        }
        return convert(entity, ordered.into_iter().map(|(_, cell)| cell));
    }
    convert(entity, cells.into_iter().map(|(_, cell)| cell))
}

fn convert(entity: &EntitySchema, cells: impl Iterator<Item = Cell>) -> Result<Row, ReplicaError> {
    entity
        .columns
        .iter()
        .zip(cells)
        .map(|(column, cell)| {
            let bad = |shown: String| {
                ReplicaError::Source(format!(
                    "{}.{}: {shown} is not a valid {}",
                    entity.field,
                    column.name,
                    crate::graphql::scalars::type_name(column.ty)
                ))
            };
            Ok(match (column.ty, cell) {
                (_, Cell::Null) => None,
                (AttrType::Text, Cell::Str(s)) => Some(Scalar::Text(s)),
                (AttrType::Integer, Cell::Int(n)) => Some(Scalar::Integer(n)),
                (AttrType::Boolean, Cell::Bool(b)) => Some(Scalar::Boolean(b)),
                (ty, Cell::Str(s)) if ty != AttrType::Integer && ty != AttrType::Boolean => {
                    Some(from_text(ty, &s).ok_or_else(|| bad(format!("{s:?}")))?)
                }
                (_, Cell::Str(s)) => return Err(bad(format!("{s:?}"))),
                (_, Cell::Int(n)) => return Err(bad(n.to_string())),
                (_, Cell::Bool(b)) => return Err(bad(b.to_string())),
            })
        })
        .collect()
}

impl<'de: 'a, 'a> Deserialize<'de> for Node<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a row object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut cells = Vec::with_capacity(map.size_hint().unwrap_or(40));
                while let Some(name) = map.next_key::<&'de str>()? {
                    cells.push((name, map.next_value::<Cell>()?));
                }
                Ok(Node(cells))
            }
        }
        deserializer.deserialize_map(NodeVisitor)
    }
}

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CellVisitor;
        impl<'de> Visitor<'de> for CellVisitor {
            type Value = Cell;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar value")
            }
            fn visit_unit<E>(self) -> Result<Cell, E> {
                Ok(Cell::Null)
            }
            fn visit_none<E>(self) -> Result<Cell, E> {
                Ok(Cell::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Cell, E> {
                Ok(Cell::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Cell, E> {
                Ok(Cell::Int(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Cell, E> {
                i64::try_from(n)
                    .map(Cell::Int)
                    .map_err(|_| E::custom(format!("{n} is out of range")))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Cell, E> {
                Err(E::custom(format!("{n} is not an integer")))
            }
            fn visit_str<E>(self, s: &str) -> Result<Cell, E> {
                Ok(Cell::Str(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Cell, E> {
                Ok(Cell::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Cell, A::Error> {
                Err(de::Error::custom("a list where a scalar belongs"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Err(de::Error::custom("an object where a scalar belongs"))
            }
        }
        deserializer.deserialize_any(CellVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::schema::ColumnSchema;

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
                column("status", AttrType::Text),
                column("elevator", AttrType::Boolean),
            ],
        }
    }

    #[test]
    fn rows_are_read_in_column_order_whatever_order_the_answer_has() {
        let json = br#"{"rows":{"nodes":[
            {"datafordelerRowId":"0190a1b2-0000-7000-8000-000000000001","datafordelerRowVersion":2,"status":"g\u00e6ldende","elevator":true},
            {"elevator":null,"status":"x","datafordelerRowVersion":1,"datafordelerRowId":"0190a1b2-0000-7000-8000-000000000002"}
        ],"pageInfo":{"hasNextPage":true,"endCursor":"abc"}}}"#;
        let (rows, info) = rows(&entity(), json).expect("valid rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][1], Some(Scalar::Integer(2)));
        assert_eq!(rows[0][2], Some(Scalar::Text("gældende".into())));
        assert_eq!(rows[0][3], Some(Scalar::Boolean(true)));
        assert_eq!(rows[1][2], Some(Scalar::Text("x".into())));
        assert_eq!(rows[1][3], None);
        assert!(info.has_next);
        assert_eq!(info.end_cursor.as_deref(), Some("abc"));
    }

    #[test]
    fn a_value_of_the_wrong_type_names_entity_and_field() {
        let json =
            br#"{"rows":{"nodes":[{"datafordelerRowId":"nope","datafordelerRowVersion":1}]}}"#;
        let error = rows(&entity(), json).expect_err("not a UUID").to_string();
        assert!(error.contains("BBR_Bygning.datafordelerRowId"), "{error}");
        let json = br#"{"rows":{"nodes":[{"datafordelerRowId":"0190a1b2-0000-7000-8000-000000000001","datafordelerRowVersion":"1"}]}}"#;
        let error = rows(&entity(), json).expect_err("a string").to_string();
        assert!(error.contains("datafordelerRowVersion"), "{error}");
    }
}
