//! `<REGISTER>_<Entity>`: an entity's rows valid at a bitemporal point, or any stored row by id.

use std::sync::Arc;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputValue, Object, ResolverContext, Type, TypeRef,
};
use async_graphql::indexmap::IndexMap;
use async_graphql::{Name, Value};
use chrono::{DateTime, Utc};

use super::access::Access;
use super::connection::{self, Keyed, Page};

use super::errors::ApiError;
use super::filters::{self, FilterField, FilterFields};
use super::{Api, Limits, scalars};
use crate::query::entities::{self as store, ROW_ID, STANDARD_FIELDS};
use crate::query::{Bitemporal, Cursor, EntityQuery, EntityRow, Scalar};
use crate::registry::{Entity, Register, Registry};

/// The data API of one entity.
#[derive(Debug)]
pub struct EntityApi {
    register: Register,
    entity: Entity,
    /// `BBR_Bygning`.
    name: Arc<str>,
    fields: FilterFields,
    field_order: Vec<(String, FilterField)>,
}

impl Keyed for EntityRow {
    fn cursor(&self) -> Cursor {
        match self.0.get(ROW_ID) {
            Some(Some(Scalar::Uuid(id))) => Cursor::Row(*id),
            _ => Cursor::Row(uuid::Uuid::nil()),
        }
    }
}

impl EntityApi {
    /// The data APIs of every entity of every register.
    pub fn all(registry: &Registry) -> Vec<Self> {
        registry
            .registers()
            .iter()
            .flat_map(|r| r.entities.iter().map(move |e| Self::new(r, e)))
            .collect()
    }

    /// `BBR_Bygning`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The register's code.
    pub fn register_name(&self) -> &str {
        &self.register.name
    }

    /// The row slot of the node field `name`, and whether the field renders it as text (the
    /// `id` field: the object id as a string).
    pub fn slot(&self, name: &str) -> Option<(usize, bool)> {
        if let Some(n) = STANDARD_FIELDS.iter().position(|(f, _)| *f == name) {
            return Some((n, false));
        }
        if let Some(n) = self.entity.attributes.iter().position(|a| a.name == name) {
            return Some((STANDARD_FIELDS.len() + n, false));
        }
        (name == "id").then_some((STANDARD_FIELDS.len() + self.entity.object_id, true))
    }

    fn new(register: &Register, entity: &Entity) -> Self {
        let searchable = |slot: usize| {
            slot >= STANDARD_FIELDS.len()
                && entity.attributes[slot - STANDARD_FIELDS.len()].searchable
        };
        let filterable = |slot: usize| {
            slot < STANDARD_FIELDS.len()
                || entity.attributes[slot - STANDARD_FIELDS.len()].filterable
        };
        let field_order: Vec<(String, FilterField)> = store::columns(entity)
            .into_iter()
            .filter(|c| filterable(c.slot))
            .map(|column| {
                let searchable = searchable(column.slot);
                (column.name.clone(), FilterField { column, searchable })
            })
            .collect();
        Self {
            register: register.clone(),
            entity: entity.clone(),
            name: format!("{}_{}", register.name, entity.name).into(),
            fields: field_order.iter().cloned().collect(),
            field_order,
        }
    }

    /// The root field and the types it needs.
    pub fn schema(&self) -> (Field, Vec<Type>) {
        let node = self.name.to_string();
        let (connection, edge) = connection::types::<EntityRow>(&node);
        let filter_name = format!("{node}FilterInput");
        let filter = filters::filter_type(
            &filter_name,
            &format!("Conditions on {node} rows."),
            &self.field_order,
        );
        let field = connection::root_field(
            self.name.clone(),
            self.name.clone(),
            connection.type_name(),
            |api, key, args, access| Box::pin(page(api, key, args, access)),
        )
        .description(format!(
            "{} rows valid at `registreringstid` and `virkningstid` (default: now), ascending \
             `datafordelerRowId`. {} A `datafordelerRowId` `eq`/`in` filter without explicit \
             times, or `allRegistrations: true`, reaches every stored registration, current or \
             not.",
            node,
            if self.entity.protected {
                "Protected: needs a grant."
            } else {
                "Open data."
            }
        ))
        .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
        .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new("where", TypeRef::named(filter_name)))
        .argument(
            InputValue::new("registreringstid", TypeRef::named("DafDateTime"))
                .description("Transaction time (default: now)."),
        )
        .argument(
            InputValue::new("virkningstid", TypeRef::named("DafDateTime"))
                .description("Valid time (default: now)."),
        )
        .argument(
            InputValue::new("allRegistrations", TypeRef::named(TypeRef::BOOLEAN)).description(
                "Every stored registration, current or not, whatever its bitemporal times \
                 (a full copy, as `fordeler replica verify` reads it). Not with \
                 `registreringstid` or `virkningstid`.",
            ),
        );
        let types = vec![
            self.node_type().into(),
            connection.into(),
            edge.into(),
            filter.into(),
        ];
        (field, types)
    }

    fn node_type(&self) -> Object {
        let mut object =
            Object::new(self.name.to_string()).description(self.entity.description.as_str());
        let standard = STANDARD_FIELDS.iter().map(|(name, ty)| {
            (
                name.to_string(),
                *ty,
                standard_description(name).to_owned(),
                true,
            )
        });
        let attributes = self
            .entity
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.ty, a.description.clone(), a.required));
        for (slot, (name, ty, description, required)) in standard.chain(attributes).enumerate() {
            let non_null =
                required && !matches!(name.as_str(), "registreringTil" | "virkningTil" | "status");
            let ty_ref = if non_null {
                TypeRef::named_nn(scalars::type_name(ty))
            } else {
                TypeRef::named(scalars::type_name(ty))
            };
            object = object.field(
                Field::new(name, ty_ref, move |ctx| {
                    FieldFuture::Value(row(&ctx).map(|r| FieldValue::value(slot_value(r, slot))))
                })
                .description(description),
            );
        }
        if self.entity.attribute("id").is_none() {
            let slot = STANDARD_FIELDS.len() + self.entity.object_id;
            object = object.field(
                Field::new("id", TypeRef::named(TypeRef::STRING), move |ctx| {
                    FieldFuture::Value(row(&ctx).map(|r| {
                        FieldValue::value(match slot_value(r, slot) {
                            Value::String(s) => Value::String(s),
                            Value::Null => Value::Null,
                            other => Value::String(other.to_string()),
                        })
                    }))
                })
                .description(format!(
                    "The object id ({}) as text.",
                    self.entity.object_id_attribute().name
                )),
            );
        }
        object
    }
}

/// What the standard fields of every entity mean.
fn standard_description(name: &str) -> &'static str {
    match name {
        "datafordelerRowId" => "fordeler's id of this row (one registration), stable for its life.",
        "datafordelerRowVersion" => "1 when the row was inserted, +1 on every change to it.",
        "datafordelerOpdateringstid" => "When fordeler last wrote the row.",
        "datafordelerRegisterImportSequenceNumber" => {
            "Sequence number of the package that last touched the row."
        }
        "registreringFra" => "Start of the registration (transaction time).",
        "registreringTil" => "End of the registration; null while it is current.",
        "virkningFra" => "Start of validity in the real world (valid time).",
        "virkningTil" => "End of validity; null while open-ended.",
        _ => "Status of the registration, as the register gives it.",
    }
}

fn row<'a>(ctx: &ResolverContext<'a>) -> Option<&'a EntityRow> {
    ctx.parent_value.downcast_ref::<EntityRow>()
}

fn slot_value(row: &EntityRow, slot: usize) -> Value {
    row.0
        .get(slot)
        .and_then(Option::as_ref)
        .map_or(Value::Null, scalars::to_value)
}

/// The `first` argument: default, refused when negative, `LIMIT_EXCEEDED` over the cap.
pub fn page_size(first: Option<&Value>, limits: &Limits) -> Result<usize, ApiError> {
    let first = match first {
        None | Some(Value::Null) => return Ok(limits.default_page_size),
        Some(Value::Number(n)) => n.as_i64(),
        Some(_) => None,
    }
    .ok_or_else(|| ApiError::BadUserInput("first: expected an Int".into()))?;
    if first < 0 {
        return Err(ApiError::BadUserInput(format!(
            "first: {first} is negative"
        )));
    }
    if first as u64 > limits.max_page_size as u64 {
        return Err(ApiError::LimitExceeded(format!(
            "first: {first} is over the maximum page size {}",
            limits.max_page_size
        )));
    }
    Ok(first as usize)
}

/// The `after` argument, decoded for the connection `field`.
pub fn cursor_arg(
    args: &IndexMap<Name, Value>,
    field: &str,
    events: bool,
) -> Result<Option<Cursor>, ApiError> {
    match args.get("after") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Cursor::decode(text, field, events)
            .map(Some)
            .ok_or_else(|| ApiError::BadUserInput(format!("after: not a cursor of {field}"))),
        Some(_) => Err(ApiError::BadUserInput("after: expected a String".into())),
    }
}

fn time_arg(args: &IndexMap<Name, Value>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => scalars::parse_timestamp(text)
            .map(Some)
            .ok_or_else(|| ApiError::BadUserInput(format!("{name}: not a DafDateTime"))),
        Some(_) => Err(ApiError::BadUserInput(format!("{name}: not a DafDateTime"))),
    }
}

/// Reads the page an `R_<Entity>` field with `args` asks for.
pub async fn page(
    api: &Api,
    name: &str,
    args: &IndexMap<Name, Value>,
    access: &Access,
) -> Result<Page<EntityRow>, ApiError> {
    let this = api
        .entities
        .iter()
        .find(|e| &*e.name == name)
        .ok_or(ApiError::Internal)?;
    access.check(&this.register, &this.entity)?;
    let filter = filters::parse_filter(args.get("where"), &this.fields, &api.limits)?;
    let first = page_size(args.get("first"), &api.limits)?;
    let at = Bitemporal {
        registreringstid: time_arg(args, "registreringstid")?,
        virkningstid: time_arg(args, "virkningstid")?,
    };
    let every_registration = match args.get("allRegistrations") {
        None | Some(Value::Null) | Some(Value::Boolean(false)) => false,
        Some(Value::Boolean(true)) => true,
        Some(_) => {
            return Err(ApiError::BadUserInput(
                "allRegistrations: not a Boolean".into(),
            ));
        }
    };
    if every_registration && (at.registreringstid.is_some() || at.virkningstid.is_some()) {
        return Err(ApiError::BadUserInput(
            "allRegistrations: cannot be combined with registreringstid or virkningstid".into(),
        ));
    }
    let after = match cursor_arg(args, name, false)? {
        Some(Cursor::Row(id)) => Some(id),
        _ => None,
    };
    let query = EntityQuery {
        filter: &filter,
        at,
        every_registration,
        after,
        first,
    };
    let page = store::fetch_rows(&api.pool, &this.register, &this.entity, &query).await?;
    if this.entity.protected
        && let Some(principal) = access.principal()
    {
        let (register, entity) = (&this.register.name, &this.entity.name);
        api.audit
            .record(&principal.id, register, entity, "rows", page.rows.len());
    }
    Ok(Page {
        field: this.name.clone(),
        rows: Arc::new(page.rows),
        has_next: page.has_next,
        has_previous: after.is_some(),
    })
}
