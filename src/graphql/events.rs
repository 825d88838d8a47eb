//! `<REGISTER>_Events`: a register's events in eventid order.

use std::sync::Arc;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputValue, Object, ResolverContext, Type, TypeRef,
};
use async_graphql::indexmap::IndexMap;
use async_graphql::{Name, Value};

use super::access::{Access, forbidden};
use super::connection::{self, Keyed, Page};

use super::errors::ApiError;
use super::filters::{self, FilterField, FilterFields};
use super::{Api, scalars};
use crate::query::events::{self as store, EventQuery, EventRow, STANDARD_FIELDS};
use crate::query::{Cursor, Filter, Scalar, Test};
use crate::registry::{AttrType, Register};

/// The events API of one register.
#[derive(Debug)]
pub struct RegisterEvents {
    pub(super) register: Register,
    /// `BBR_Events`.
    pub(super) name: Arc<str>,
    fields: FilterFields,
    field_order: Vec<(String, FilterField)>,
}

impl Keyed for EventRow {
    fn cursor(&self) -> Cursor {
        Cursor::Event(self.eventid)
    }
}

impl RegisterEvents {
    /// The events API of `register`.
    pub fn new(register: &Register) -> Self {
        let filterable = |name: &str| {
            register
                .event_fields
                .iter()
                .find(|f| f.name == name)
                .is_none_or(|f| f.filterable)
        };
        let field_order: Vec<(String, FilterField)> = store::columns(register)
            .into_iter()
            .filter(|c| filterable(&c.name))
            .map(|column| {
                let field = FilterField {
                    column,
                    searchable: false,
                };
                (field.column.name.clone(), field)
            })
            .collect();
        Self {
            register: register.clone(),
            name: format!("{}_Events", register.name).into(),
            fields: field_order.iter().cloned().collect(),
            field_order,
        }
    }

    /// The register's extra event fields.
    pub fn extra_fields(&self) -> &[crate::registry::EventField] {
        &self.register.event_fields
    }

    /// The root field and the types it needs.
    pub fn schema(&self) -> (Field, Vec<Type>) {
        let node = self.name.to_string();
        let (connection, edge) = connection::types::<EventRow>(&node);
        let filter_name = format!("{node}FilterInput");
        let filter = filters::filter_type(
            &filter_name,
            &format!("Conditions on {} events.", self.register.name),
            &self.field_order,
        );
        let key: Arc<str> = self.register.name.as_str().into();
        let field = connection::root_field(
            self.name.clone(),
            key,
            connection.type_name(),
            |api, key, args, access| Box::pin(page(api, key, args, access)),
        )
        .description(format!(
            "Events of {}: one per changed row, ascending `eventid`, gap-free. Page with \
             `first`/`after`, or filter `eventid: {{gt: last}}`.",
            self.register.name
        ))
        .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
        .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new("where", TypeRef::named(filter_name)));
        let types = vec![
            self.node_type().into(),
            connection.into(),
            edge.into(),
            filter.into(),
        ];
        (field, types)
    }

    fn node_type(&self) -> Object {
        let mut object = Object::new(self.name.to_string()).description(format!(
            "An event of {}: which row changed, how, and its new bitemporal values.",
            self.register.name
        ));
        for (n, (name, _, ty)) in STANDARD_FIELDS.iter().enumerate() {
            let ty = match n {
                // Never null.
                0..=5 | 7 | 8 => TypeRef::named_nn(scalars::type_name(*ty)),
                _ => TypeRef::named(scalars::type_name(*ty)),
            };
            object = object.field(
                Field::new(*name, ty, move |ctx| {
                    FieldFuture::Value(event(&ctx).map(|e| FieldValue::value(standard_value(e, n))))
                })
                .description(DESCRIPTIONS[n]),
            );
        }
        for extra in &self.register.event_fields {
            let name = extra.name.clone();
            object = object.field(
                Field::new(
                    extra.name.as_str(),
                    TypeRef::named(scalars::type_name(extra.ty)),
                    move |ctx| {
                        let name = name.clone();
                        FieldFuture::Value(
                            event(&ctx).map(|e| FieldValue::value(extra_value(e, &name))),
                        )
                    },
                )
                .description(extra.description.as_str()),
            );
        }
        object
    }
}

/// What the standard event fields mean, in [`STANDARD_FIELDS`] order.
const DESCRIPTIONS: [&str; 14] = [
    "Identifier of the event: per register, from 1, gap-free, in commit order. Page with eventid > last.",
    "Entity the event concerns, without the register prefix (`Bygning`).",
    "`i` insert, `u` update, `d` delete.",
    "Sequence number of the register's package that made the change.",
    "When the event was written.",
    "Always false: fordeler applies packages atomically, so no event comes from a failed import.",
    "The register's id of the object, if the entity has one.",
    "fordeler's id of the changed row: fetch it with datafordelerRowId: {eq: ...} on the entity.",
    "Version of the row after the change (1 on insert).",
    "New registreringFra of the row.",
    "New registreringTil of the row (set when a registration is closed).",
    "New status of the row.",
    "New virkningFra of the row.",
    "New virkningTil of the row.",
];

fn event<'a>(ctx: &ResolverContext<'a>) -> Option<&'a EventRow> {
    ctx.parent_value.downcast_ref::<EventRow>()
}

/// The value of standard field `n` (in [`STANDARD_FIELDS`] order).
pub fn standard_value(e: &EventRow, n: usize) -> Value {
    let time = |t: &Option<chrono::DateTime<chrono::Utc>>| {
        t.as_ref()
            .map_or(Value::Null, |t| Value::String(scalars::timestamp(t)))
    };
    let text = |t: &Option<String>| t.as_ref().map_or(Value::Null, |t| Value::String(t.clone()));
    match n {
        0 => Value::from(e.eventid),
        1 => Value::String(e.entityname.clone()),
        2 => Value::String(e.eventaction.clone()),
        3 => Value::from(e.datafordeler_import_sequence),
        4 => Value::String(scalars::timestamp(&e.datafordeler_opdateringstid)),
        5 => Value::Boolean(e.fromfailedimport),
        6 => text(&e.object_id),
        7 => Value::String(e.object_datafordeler_rowid.hyphenated().to_string()),
        8 => Value::from(e.object_datafordeler_rowversion),
        9 => time(&e.object_registreringfra),
        10 => time(&e.object_registreringtil),
        11 => text(&e.object_status),
        12 => time(&e.object_virkningfra),
        13 => time(&e.object_virkningtil),
        _ => Value::Null,
    }
}

/// The value of an extra event field, from the event's `extra` JSON.
pub fn extra_value(e: &EventRow, name: &str) -> Value {
    e.extra
        .as_ref()
        .and_then(|x| x.get(name))
        .and_then(|v| Value::from_json(v.clone()).ok())
        .unwrap_or(Value::Null)
}

/// Reads the page an `R_Events` field with `args` asks for.
pub async fn page(
    api: &Api,
    register: &str,
    args: &IndexMap<Name, Value>,
    access: &Access,
) -> Result<Page<EventRow>, ApiError> {
    let (events, filter, hidden) = checked_filter(api, register, args, access)?;
    let first = super::entities::page_size(args.get("first"), &api.limits)?;
    let after = match super::entities::cursor_arg(args, &events.name, true)? {
        Some(Cursor::Event(id)) => Some(id),
        _ => None,
    };
    let query = EventQuery {
        filter: &filter,
        after,
        until: None,
        first,
        hidden_entities: &hidden,
    };
    let page = store::fetch_events(&api.pool, &events.register, &query).await?;
    audit_protected(api, access, &events.register, &page.rows);
    Ok(Page {
        field: events.name.clone(),
        rows: Arc::new(page.rows),
        has_next: page.has_next,
        has_previous: after.is_some_and(|a| a > 0),
    })
}

/// Records in the audit log how many events of each protected entity the caller received.
fn audit_protected(api: &Api, access: &Access, register: &Register, rows: &[EventRow]) {
    let Some(principal) = access.principal() else {
        return;
    };
    for entity in register.entities.iter().filter(|e| e.protected) {
        let n = rows.iter().filter(|r| r.entityname == entity.name).count();
        if n > 0 {
            api.audit
                .record(&principal.id, &register.name, &entity.name, "events", n);
        }
    }
}

/// The events API of `register`, the `where` filter of `args`, and the entities the caller may
/// not see; `FORBIDDEN` when the filter names one of them, or the caller sees none.
pub fn checked_filter<'a>(
    api: &'a Api,
    register: &str,
    args: &IndexMap<Name, Value>,
    access: &Access,
) -> Result<(&'a RegisterEvents, Filter, Vec<String>), ApiError> {
    let events = api
        .events
        .iter()
        .find(|e| e.register.name == register)
        .ok_or(ApiError::Internal)?;
    let hidden = access.hidden_entities(&events.register);
    if hidden.len() == events.register.entities.len() {
        return Err(forbidden(
            &events.register,
            "Events",
            access.principal().is_some(),
        ));
    }
    let filter = filters::parse_filter(args.get("where"), &events.fields, &api.limits)?;
    if let Some(entity) = named_entity(&filter, &hidden) {
        return Err(forbidden(
            &events.register,
            entity,
            access.principal().is_some(),
        ));
    }
    Ok((events, filter, hidden))
}

/// A hidden entity the filter asks for by name (`entityname: {eq: "Person"}` or `in`).
fn named_entity<'a>(filter: &Filter, hidden: &'a [String]) -> Option<&'a str> {
    let named = |s: &Scalar| {
        hidden
            .iter()
            .find(|h| matches!(s, Scalar::Text(t) if t == *h))
    };
    filter.conditions().into_iter().find_map(|(column, test)| {
        if column.name != "entityname" || column.ty != AttrType::Text {
            return None;
        }
        match test {
            Test::Eq(s) => named(s),
            Test::In(list) => list.iter().find_map(named),
            _ => None,
        }
        .map(String::as_str)
    })
}
