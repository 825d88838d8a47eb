//! Relay connections (`nodes`, `edges { cursor node }`, `pageInfo`) over a page of keyed rows.

use std::sync::Arc;

use async_graphql::dynamic::{Field, FieldFuture, FieldValue, Object, ResolverContext, TypeRef};
use async_graphql::indexmap::IndexMap;
use async_graphql::{ErrorExtensions, Name, Value};
use futures_util::future::BoxFuture;

use super::Api;
use super::access::Access;
use super::errors::ApiError;
use crate::query::Cursor;

/// A row that has a keyset position.
pub trait Keyed: Send + Sync + 'static {
    /// Its position.
    fn cursor(&self) -> Cursor;
}

/// One page, as a connection field resolves to.
pub struct Page<T> {
    /// The connection's field name, which cursors carry (`BBR_Events`).
    pub field: Arc<str>,
    /// The rows (shared with the edges).
    pub rows: Arc<Vec<T>>,
    /// More rows follow.
    pub has_next: bool,
    /// The page started after a cursor.
    pub has_previous: bool,
}

impl<T: Keyed> Page<T> {
    fn cursor(&self, row: &T) -> String {
        row.cursor().encode(&self.field)
    }
}

/// How a root connection field reads its page: `(api, key, arguments, access)`.
pub type PageFn<T> = for<'a> fn(
    &'a Api,
    &'a str,
    &'a IndexMap<Name, Value>,
    &'a Access,
) -> BoxFuture<'a, Result<Page<T>, ApiError>>;

/// A root field of type `connection` that reads its page with `page(api, key, ...)`, counts it
/// under `field` in the metrics, and answers errors with their code.
pub fn root_field<T: Keyed>(
    field: Arc<str>,
    key: Arc<str>,
    connection: &str,
    page: PageFn<T>,
) -> Field {
    Field::new(
        field.to_string(),
        TypeRef::named_nn(connection),
        move |ctx| {
            let (field, key) = (field.clone(), key.clone());
            FieldFuture::new(async move {
                let api = ctx.data::<Arc<Api>>()?;
                let access = ctx.data_opt::<Access>().cloned().unwrap_or_default();
                let result = page(api, &key, ctx.args.as_index_map(), &access).await;
                api.observe(&field, &result);
                Ok(Some(FieldValue::owned_any(result.map_err(|e| e.extend())?)))
            })
        },
    )
}

/// The shared `PageInfo` type.
pub fn page_info() -> Object {
    let field = |name: &str, ty: TypeRef, get: fn(&PageInfo) -> Value| {
        Field::new(name, ty, move |ctx| {
            FieldFuture::Value(
                ctx.parent_value
                    .downcast_ref::<PageInfo>()
                    .map(|p| FieldValue::value(get(p))),
            )
        })
    };
    Object::new("PageInfo")
        .description(
            "Where a page sits in its connection. Cursors are opaque; pass endCursor as `after`.",
        )
        .field(field(
            "hasNextPage",
            TypeRef::named_nn(TypeRef::BOOLEAN),
            |p| Value::Boolean(p.has_next),
        ))
        .field(field(
            "hasPreviousPage",
            TypeRef::named_nn(TypeRef::BOOLEAN),
            |p| Value::Boolean(p.has_previous),
        ))
        .field(field("startCursor", TypeRef::named(TypeRef::STRING), |p| {
            opt(&p.start)
        }))
        .field(field("endCursor", TypeRef::named(TypeRef::STRING), |p| {
            opt(&p.end)
        }))
}

struct PageInfo {
    has_next: bool,
    has_previous: bool,
    start: Option<String>,
    end: Option<String>,
}

fn opt(text: &Option<String>) -> Value {
    text.as_ref()
        .map_or(Value::Null, |t| Value::String(t.clone()))
}

/// The connection and edge types of `node` (`BBR_Bygning` gives `BBR_BygningConnection` and
/// `BBR_BygningEdge`).
pub fn types<T: Keyed>(node: &str) -> (Object, Object) {
    let edge_name = format!("{node}Edge");
    let connection = Object::new(format!("{node}Connection"))
        .description(format!("A page of {node}, ascending by its key."))
        .field(Field::new(
            "nodes",
            TypeRef::named_nn_list_nn(node),
            |ctx| {
                FieldFuture::Value(page::<T>(&ctx).map(|p| {
                    FieldValue::list(p.rows.iter().map(|row| FieldValue::borrowed_any(row)))
                }))
            },
        ))
        .field(Field::new(
            "edges",
            TypeRef::named_nn_list_nn(&edge_name),
            |ctx| {
                FieldFuture::Value(page::<T>(&ctx).map(|p| {
                    FieldValue::list(p.rows.iter().enumerate().map(|(index, row)| {
                        FieldValue::owned_any(Edge {
                            cursor: p.cursor(row),
                            rows: p.rows.clone(),
                            index,
                        })
                    }))
                }))
            },
        ))
        .field(Field::new(
            "pageInfo",
            TypeRef::named_nn("PageInfo"),
            |ctx| {
                FieldFuture::Value(page::<T>(&ctx).map(|p| {
                    FieldValue::owned_any(PageInfo {
                        has_next: p.has_next,
                        has_previous: p.has_previous,
                        start: p.rows.first().map(|r| p.cursor(r)),
                        end: p.rows.last().map(|r| p.cursor(r)),
                    })
                }))
            },
        ));
    let edge = Object::new(edge_name)
        .field(Field::new(
            "cursor",
            TypeRef::named_nn(TypeRef::STRING),
            |ctx| {
                FieldFuture::Value(
                    ctx.parent_value
                        .downcast_ref::<Edge<T>>()
                        .map(|e| FieldValue::value(e.cursor.clone())),
                )
            },
        ))
        .field(Field::new("node", TypeRef::named_nn(node), |ctx| {
            FieldFuture::Value(
                ctx.parent_value
                    .downcast_ref::<Edge<T>>()
                    .map(|e| FieldValue::borrowed_any(&e.rows[e.index])),
            )
        }));
    (connection, edge)
}

struct Edge<T> {
    cursor: String,
    rows: Arc<Vec<T>>,
    index: usize,
}

fn page<'a, T: Keyed>(ctx: &ResolverContext<'a>) -> Option<&'a Page<T>> {
    ctx.parent_value.downcast_ref::<Page<T>>()
}
