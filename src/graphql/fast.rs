//! The hot path: a page of events (`R_Events { nodes { ... } pageInfo { ... } }`) or of an
//! entity's rows (`R_Entity { nodes { ... } pageInfo { ... } }`, the replica's row fetches),
//! written straight into JSON bytes instead of through one async resolver per field (which costs
//! ten times the database's own work on a 1000-row page). Likewise each event of a subscription
//! (`subscription { R_Events { ... } }`), as a whole SSE message: [`StreamPlan`].
//!
//! It runs after async-graphql has parsed and validated the request, and covers one shape only:
//! a query with a single `R_Events` or `R_Entity` root field selecting plain `nodes` and
//! `pageInfo` fields, no fragments, directives, `edges` or `__typename`. Anything else, and any
//! error, goes the general way, so both always answer alike (tests compare them).

use std::collections::HashSet;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
};
use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, OperationDefinition, OperationType, Selection,
};
use async_graphql::{Name, Positioned, Response, ServerResult, Value, Variables};
use chrono::{DateTime, Datelike, Timelike, Utc};

use super::Api;
use super::access::Access;
use super::connection::{Keyed, Page};
use super::entities;
use super::events::page;
use crate::query::events::STANDARD_FIELDS;
use crate::query::{EntityRow, EventRow, Scalar};

/// Where the fast path leaves the whole response, already JSON (`{"data":...}`); the HTTP layer
/// sends it as is.
#[derive(Debug, Clone, Default)]
pub struct RawData(Arc<Mutex<Option<Vec<u8>>>>);

impl RawData {
    /// The response body, if the fast path answered.
    pub fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().ok()?.take()
    }

    fn put(&self, json: Vec<u8>) -> bool {
        self.0.lock().map(|mut slot| *slot = Some(json)).is_ok()
    }
}

/// The extension factory.
pub struct FastEvents {
    api: Arc<Api>,
}

impl FastEvents {
    /// The fast path over `api`.
    pub fn new(api: Arc<Api>) -> Self {
        Self { api }
    }
}

impl ExtensionFactory for FastEvents {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(FastExtension {
            api: self.api.clone(),
            parsed: Mutex::new(None),
        })
    }
}

struct FastExtension {
    api: Arc<Api>,
    parsed: Mutex<Option<(ExecutableDocument, Variables)>>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for FastExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        if ctx.data_opt::<RawData>().is_some()
            && let Ok(mut parsed) = self.parsed.lock()
        {
            *parsed = Some((document.clone(), variables.clone()));
        }
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let parsed = self.parsed.lock().ok().and_then(|mut p| p.take());
        if let (Some((document, variables)), Some(raw)) = (parsed, ctx.data_opt::<RawData>())
            && let Some(plan) = Plan::of(&self.api, &document, operation_name, &variables)
        {
            let access = ctx.data_opt::<Access>().cloned().unwrap_or_default();
            // An error is left to the general path, which reports it the usual way.
            let json = if plan.entity {
                let result = entities::page(&self.api, &plan.field, &plan.args, &access).await;
                if result.is_ok() {
                    self.api.observe(&plan.field, &result);
                }
                result.ok().map(|page| plan.write(&page))
            } else {
                let result = page(&self.api, &plan.register, &plan.args, &access).await;
                if result.is_ok() {
                    self.api.observe(&plan.field, &result);
                }
                result.ok().map(|page| plan.write(&page))
            };
            if let Some(json) = json
                && raw.put(json)
            {
                self.api.metrics.fast_path_pages.inc();
                return Response::new(Value::Null);
            }
        }
        next.run(ctx, operation_name).await
    }
}

/// What the request selects, resolved against the schema.
struct Plan {
    /// `BBR_Events` or `BBR_Bygning`.
    field: String,
    /// An entity's rows, not events.
    entity: bool,
    register: String,
    /// The field's response key (its alias, or its name).
    key: String,
    args: IndexMap<Name, Value>,
    parts: Vec<Part>,
}

enum Part {
    Nodes(String, Vec<(String, NodeField)>),
    PageInfo(String, Vec<(String, PageInfoField)>),
}

#[derive(Debug)]
enum NodeField {
    /// An event's standard field.
    Standard(usize),
    /// An event's register-specific field.
    Extra(String),
    /// An entity row's value in this slot.
    Slot(usize),
    /// An entity row's value in this slot, as text (`id`).
    SlotText(usize),
}

/// A row the fast path can write.
trait FastRow: Keyed {
    fn write_field(&self, out: &mut Vec<u8>, field: &NodeField);
}

impl FastRow for EventRow {
    fn write_field(&self, out: &mut Vec<u8>, field: &NodeField) {
        match field {
            NodeField::Standard(i) => write_standard(out, self, *i),
            NodeField::Extra(name) => write_extra(out, self, name),
            NodeField::Slot(_) | NodeField::SlotText(_) => out.extend_from_slice(b"null"),
        }
    }
}

impl FastRow for EntityRow {
    fn write_field(&self, out: &mut Vec<u8>, field: &NodeField) {
        let (slot, text) = match field {
            NodeField::Slot(slot) => (*slot, false),
            NodeField::SlotText(slot) => (*slot, true),
            _ => (usize::MAX, false),
        };
        match (self.0.get(slot), text) {
            (Some(Some(Scalar::Integer(n))), true) => {
                out.push(b'"');
                write_int(out, *n);
                out.push(b'"');
            }
            (Some(Some(Scalar::Boolean(b))), true) => {
                out.push(b'"');
                write_bool(out, *b);
                out.push(b'"');
            }
            (Some(Some(value)), _) => write_scalar(out, value),
            _ => out.extend_from_slice(b"null"),
        }
    }
}

/// A row value, as [`super::scalars::to_value`] renders it.
fn write_scalar(out: &mut Vec<u8>, value: &Scalar) {
    match value {
        Scalar::Text(s) => write_str(out, s),
        Scalar::Integer(n) => write_int(out, *n),
        Scalar::Decimal(d) => write_str(out, &d.to_string()),
        Scalar::Boolean(b) => write_bool(out, *b),
        Scalar::Date(d) => {
            let _ = write!(out, "\"{}\"", d.format("%Y-%m-%d"));
        }
        Scalar::Timestamp(t) => write_time(out, Some(t)),
        Scalar::Uuid(u) => {
            let mut buf = uuid::Uuid::encode_buffer();
            write_str(out, u.hyphenated().encode_lower(&mut buf));
        }
    }
}

#[derive(Clone, Copy)]
enum PageInfoField {
    HasNext,
    HasPrevious,
    Start,
    End,
}

impl Plan {
    fn of(
        api: &Api,
        document: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &Variables,
    ) -> Option<Self> {
        if !document.fragments.is_empty() {
            return None;
        }
        let operation = &operation(document, operation_name)?.node;
        if operation.ty != OperationType::Query || !operation.directives.is_empty() {
            return None;
        }
        let [root] = operation.selection_set.node.items.as_slice() else {
            return None;
        };
        let root = plain_field(root)?;
        let field = root.name.node.as_str();
        let events = api.events.iter().find(|e| &*e.name == field);
        let entity = match events {
            Some(_) => None,
            None => Some(api.entities.iter().find(|e| e.name() == field)?),
        };
        let args = arguments(root, operation, variables);
        let mut keys = HashSet::new();
        let mut parts = Vec::new();
        for item in &root.selection_set.node.items {
            let sub = plain_field(item)?;
            let key = sub.response_key().node.to_string();
            if !keys.insert(key.clone()) || !sub.arguments.is_empty() {
                return None;
            }
            parts.push(match sub.name.node.as_str() {
                "nodes" => Part::Nodes(
                    key,
                    leaves(sub, |name| match (events, entity) {
                        (Some(events), _) => node_field(events, name),
                        (None, Some(entity)) => entity.slot(name).map(|(slot, text)| {
                            if text {
                                NodeField::SlotText(slot)
                            } else {
                                NodeField::Slot(slot)
                            }
                        }),
                        (None, None) => None,
                    })?,
                ),
                "pageInfo" => Part::PageInfo(key, leaves(sub, page_info_field)?),
                _ => return None,
            });
        }
        Some(Self {
            field: field.to_owned(),
            entity: entity.is_some(),
            register: match (events, entity) {
                (Some(events), _) => events.register.name.clone(),
                (None, Some(entity)) => entity.register_name().to_owned(),
                (None, None) => return None,
            },
            key: root.response_key().node.to_string(),
            args,
            parts,
        })
    }

    /// The response, as JSON.
    fn write<T: FastRow>(&self, page: &Page<T>) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + page.rows.len() * 700);
        let _ = write!(out, "{{\"data\":{{\"{}\":{{", self.key);
        for (n, part) in self.parts.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            match part {
                Part::Nodes(key, fields) => write_nodes(&mut out, key, fields, page),
                Part::PageInfo(key, fields) => write_page_info(&mut out, key, fields, page),
            }
        }
        out.extend_from_slice(b"}}}");
        out
    }
}

/// A subscription whose events can be written straight into SSE messages: a single
/// `R_Events` root field selecting plain event fields, no fragments, directives or
/// `__typename`. Anything else goes through async-graphql, one resolver per field.
#[derive(Debug)]
pub struct StreamPlan {
    /// Identifies the rendering: subscribers with equal keys share each event's message.
    key: Arc<str>,
    /// The root field's response key.
    root: String,
    fields: Vec<(String, NodeField)>,
}

impl StreamPlan {
    /// The plan for `query`, if it has the one shape the plan covers. The request must still
    /// be validated by the schema.
    pub fn of(api: &Api, query: &str, operation_name: Option<&str>) -> Option<Self> {
        let document = async_graphql::parser::parse_query(query).ok()?;
        if !document.fragments.is_empty() {
            return None;
        }
        let operation = &operation(&document, operation_name)?.node;
        if operation.ty != OperationType::Subscription || !operation.directives.is_empty() {
            return None;
        }
        let [root] = operation.selection_set.node.items.as_slice() else {
            return None;
        };
        let root = plain_field(root)?;
        let events = api.events.iter().find(|e| *e.name == *root.name.node)?;
        let fields = leaves(root, |name| node_field(events, name))?;
        let root = root.response_key().node.to_string();
        let mut key = format!("{}:{root}", events.name);
        for (name, field) in &fields {
            let _ = match field {
                NodeField::Standard(n) => write!(key, ",{name}={n}"),
                NodeField::Extra(extra) => write!(key, ",{name}={extra}"),
                NodeField::Slot(n) | NodeField::SlotText(n) => write!(key, ",{name}=#{n}"),
            };
        }
        Some(Self {
            key: key.into(),
            root,
            fields,
        })
    }

    /// Identifies the rendering.
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// The SSE message of `event`: `event: next`, `id: <eventid>`, `data: {"data": ...}`.
    pub fn message(&self, event: &EventRow) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.fields.len() * 48);
        out.extend_from_slice(b"event: next\nid: ");
        write_int(&mut out, event.eventid);
        let _ = write!(out, "\ndata: {{\"data\":{{\"{}\":{{", self.root);
        write_fields(&mut out, &self.fields, event);
        out.extend_from_slice(b"}}}\n\n");
        out
    }
}

fn operation<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a Positioned<OperationDefinition>> {
    match (&document.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        _ => None,
    }
}

/// A field without directives (fragments and inline fragments are not plain).
fn plain_field(selection: &Positioned<Selection>) -> Option<&Field> {
    match &selection.node {
        Selection::Field(field) if field.node.directives.is_empty() => Some(&field.node),
        _ => None,
    }
}

/// The field's arguments with variables substituted (a missing variable takes its default).
fn arguments(
    field: &Field,
    operation: &OperationDefinition,
    variables: &Variables,
) -> IndexMap<Name, Value> {
    let lookup = |name: Name| -> Result<Value, Infallible> {
        if let Some(value) = variables.get(&name) {
            return Ok(value.clone());
        }
        let default = operation
            .variable_definitions
            .iter()
            .find(|d| d.node.name.node == name)
            .and_then(|d| d.node.default_value.as_ref())
            .map(|v| v.node.clone());
        Ok(default.unwrap_or(Value::Null))
    };
    field
        .arguments
        .iter()
        .filter_map(|(name, value)| {
            let value = value.node.clone().into_const_with(lookup).ok()?;
            Some((name.node.clone(), value))
        })
        .collect()
}

/// The leaf fields of `field`'s selection, each mapped by `pick`; `None` when one is not a leaf
/// it knows, or a response key repeats.
fn leaves<T>(field: &Field, pick: impl Fn(&str) -> Option<T>) -> Option<Vec<(String, T)>> {
    let mut keys = HashSet::new();
    field
        .selection_set
        .node
        .items
        .iter()
        .map(|item| {
            let leaf = plain_field(item)?;
            let key = leaf.response_key().node.to_string();
            let fits = leaf.selection_set.node.items.is_empty() && leaf.arguments.is_empty();
            (fits && keys.insert(key.clone())).then_some(())?;
            Some((key, pick(leaf.name.node.as_str())?))
        })
        .collect()
}

fn node_field(events: &super::events::RegisterEvents, name: &str) -> Option<NodeField> {
    if let Some(n) = STANDARD_FIELDS.iter().position(|(f, _, _)| *f == name) {
        return Some(NodeField::Standard(n));
    }
    events
        .extra_fields()
        .iter()
        .find(|f| f.name == name)
        .map(|f| NodeField::Extra(f.name.clone()))
}

fn page_info_field(name: &str) -> Option<PageInfoField> {
    Some(match name {
        "hasNextPage" => PageInfoField::HasNext,
        "hasPreviousPage" => PageInfoField::HasPrevious,
        "startCursor" => PageInfoField::Start,
        "endCursor" => PageInfoField::End,
        _ => return None,
    })
}

fn write_nodes<T: FastRow>(
    out: &mut Vec<u8>,
    key: &str,
    fields: &[(String, NodeField)],
    page: &Page<T>,
) {
    let _ = write!(out, "\"{key}\":[");
    for (n, row) in page.rows.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.push(b'{');
        write_fields(out, fields, row);
        out.push(b'}');
    }
    out.push(b']');
}

/// `"key":value` for each of `fields`, comma-separated.
fn write_fields<T: FastRow>(out: &mut Vec<u8>, fields: &[(String, NodeField)], row: &T) {
    for (m, (key, field)) in fields.iter().enumerate() {
        if m > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        row.write_field(out, field);
    }
}

fn write_page_info<T: FastRow>(
    out: &mut Vec<u8>,
    key: &str,
    fields: &[(String, PageInfoField)],
    page: &Page<T>,
) {
    let _ = write!(out, "\"{key}\":{{");
    for (m, (key, field)) in fields.iter().enumerate() {
        if m > 0 {
            out.push(b',');
        }
        let _ = write!(out, "\"{key}\":");
        let cursor = |row: Option<&T>| row.map(|r| r.cursor().encode(&page.field));
        match field {
            PageInfoField::HasNext => write_bool(out, page.has_next),
            PageInfoField::HasPrevious => write_bool(out, page.has_previous),
            PageInfoField::Start => write_opt_str(out, cursor(page.rows.first()).as_deref()),
            PageInfoField::End => write_opt_str(out, cursor(page.rows.last()).as_deref()),
        }
    }
    out.push(b'}');
}

/// Standard field `n`, as [`super::events::standard_value`] renders it.
fn write_standard(out: &mut Vec<u8>, e: &EventRow, n: usize) {
    match n {
        0 => write_int(out, e.eventid),
        1 => write_str(out, &e.entityname),
        2 => write_str(out, &e.eventaction),
        3 => write_int(out, e.datafordeler_import_sequence),
        4 => write_time(out, Some(&e.datafordeler_opdateringstid)),
        5 => write_bool(out, e.fromfailedimport),
        6 => write_opt_str(out, e.object_id.as_deref()),
        7 => {
            let mut buf = uuid::Uuid::encode_buffer();
            let id = e
                .object_datafordeler_rowid
                .hyphenated()
                .encode_lower(&mut buf);
            write_str(out, id);
        }
        8 => write_int(out, i64::from(e.object_datafordeler_rowversion)),
        9 => write_time(out, e.object_registreringfra.as_ref()),
        10 => write_time(out, e.object_registreringtil.as_ref()),
        11 => write_opt_str(out, e.object_status.as_deref()),
        12 => write_time(out, e.object_virkningfra.as_ref()),
        13 => write_time(out, e.object_virkningtil.as_ref()),
        _ => out.extend_from_slice(b"null"),
    }
}

/// An extra event field, as [`super::events::extra_value`] renders it.
fn write_extra(out: &mut Vec<u8>, e: &EventRow, name: &str) {
    match e.extra.as_ref().and_then(|x| x.get(name)) {
        Some(value) => {
            let _ = serde_json::to_writer(&mut *out, value);
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn write_int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn write_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A DafDateTime (`2025-11-24T18:17:05.481142Z`), digit by digit: `write!` spent a third of
/// the page's time here.
fn write_time(out: &mut Vec<u8>, t: Option<&DateTime<Utc>>) {
    let Some(t) = t else {
        out.extend_from_slice(b"null");
        return;
    };
    let naive = t.naive_utc();
    let (date, time) = (naive.date(), naive.time());
    let micros = time.nanosecond() / 1000;
    if !(0..=9999).contains(&date.year()) || micros > 999_999 {
        write_str(out, &super::scalars::timestamp(t));
        return;
    }
    let mut buf = *b"\"0000-00-00T00:00:00.000000Z\"";
    digits(&mut buf[1..5], date.year() as u32);
    digits(&mut buf[6..8], date.month());
    digits(&mut buf[9..11], date.day());
    digits(&mut buf[12..14], time.hour());
    digits(&mut buf[15..17], time.minute());
    digits(&mut buf[18..20], time.second());
    digits(&mut buf[21..27], micros);
    out.extend_from_slice(&buf);
}

/// Writes `value` into `slot` as zero-padded decimal digits.
fn digits(slot: &mut [u8], mut value: u32) {
    for byte in slot.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}
