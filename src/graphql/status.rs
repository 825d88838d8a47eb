//! `RegisterImportStatus`: open to everyone, one object per register.

use std::sync::Arc;

use async_graphql::Value;
use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputValue, Object, Type, TypeRef};

use async_graphql::ErrorExtensions;

use super::errors::ApiError;
use super::{Api, scalars};
use crate::query::{ImportStatus, import_status};

/// The root field and its type.
pub fn schema() -> (Field, Vec<Type>) {
    let field = Field::new(
        "RegisterImportStatus",
        TypeRef::named_nn_list_nn("RegisterImportStatus"),
        |ctx| {
            FieldFuture::new(async move {
                let api = ctx.data::<Arc<Api>>()?;
                let wanted = match ctx.args.get("register").filter(|v| !v.is_null()) {
                    Some(v) => Some(v.string()?.to_owned()),
                    None => None,
                };
                let rows = statuses(api, wanted.as_deref())
                    .await
                    .map_err(|e| e.extend())?;
                Ok(Some(FieldValue::list(
                    rows.into_iter().map(FieldValue::owned_any),
                )))
            })
        },
    )
    .description(
        "How far each register's import has come: every event up to lastEventId is readable. \
         Open to everyone.",
    )
    .argument(
        InputValue::new("register", TypeRef::named(TypeRef::STRING))
            .description("Only this register (`BBR`)."),
    );
    (field, vec![object().into()])
}

async fn statuses(api: &Api, wanted: Option<&str>) -> Result<Vec<ImportStatus>, ApiError> {
    if let Some(name) = wanted
        && api.registry.get(name).is_none()
    {
        return Err(ApiError::BadUserInput(format!(
            "register: no register {name:?}; known: {}",
            api.registry.names()
        )));
    }
    let all = import_status(&api.pool).await?;
    Ok(all
        .into_iter()
        .filter(|s| api.registry.get(&s.register).is_some())
        .filter(|s| wanted.is_none_or(|w| w == s.register))
        .collect())
}

fn object() -> Object {
    type Get = fn(&ImportStatus) -> Value;
    let fields: [(&str, TypeRef, &str, Get); 8] = [
        (
            "register",
            TypeRef::named_nn(TypeRef::STRING),
            "Register code.",
            |s| Value::String(s.register.clone()),
        ),
        (
            "lastSequenceNumber",
            TypeRef::named_nn("Long"),
            "Sequence number of the last imported package (0: none).",
            |s| Value::from(s.last_sequence),
        ),
        (
            "lastEventId",
            TypeRef::named_nn("Long"),
            "Highest eventid (0: none).",
            |s| Value::from(s.last_eventid),
        ),
        (
            "lastUpdated",
            TypeRef::named("DafDateTime"),
            "When the last package was imported.",
            |s| opt_time(s.last_import_at),
        ),
        (
            "importRunning",
            TypeRef::named_nn(TypeRef::BOOLEAN),
            "A package is being imported now.",
            |s| Value::Boolean(s.importing_sequence.is_some()),
        ),
        (
            "importingSequenceNumber",
            TypeRef::named("Long"),
            "Sequence number of the package being imported.",
            |s| s.importing_sequence.map_or(Value::Null, Value::from),
        ),
        (
            "importingSince",
            TypeRef::named("DafDateTime"),
            "When the running import started.",
            |s| opt_time(s.importing_since),
        ),
        (
            "lastFailureAt",
            TypeRef::named("DafDateTime"),
            "When an import attempt after the last success was refused or failed.",
            |s| opt_time(s.last_failure_at),
        ),
    ];
    let mut object =
        Object::new("RegisterImportStatus").description("The import state of one register.");
    for (name, ty, description, get) in fields {
        object = object.field(
            Field::new(name, ty, move |ctx| {
                FieldFuture::Value(
                    ctx.parent_value
                        .downcast_ref::<ImportStatus>()
                        .map(|s| FieldValue::value(get(s))),
                )
            })
            .description(description),
        );
    }
    object.field(
        Field::new("lastFailureKind", TypeRef::named(TypeRef::STRING), |ctx| {
            FieldFuture::Value(ctx.parent_value.downcast_ref::<ImportStatus>().map(|s| {
                FieldValue::value(s.last_failure.clone().map_or(Value::Null, Value::String))
            }))
        })
        .description("Its kind: invalid, gap, conflict or internal (the message stays in the operator's log)."),
    )
}

fn opt_time(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    t.map_or(Value::Null, |t| Value::String(scalars::timestamp(&t)))
}
