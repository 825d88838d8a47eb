//! Pages of a register's events in eventid order (keyset: `eventid > after`).
//!
//! Imports of a register are serialised and number their events under the register's lock, so
//! commit order is eventid order: a page read at any moment is a gap-free prefix of the events,
//! and `eventid > last` never skips one however imports and readers interleave.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::filter::{Column, Filter, Scalar};
use crate::registry::{AttrType, Register, quote_ident};

/// One event, as stored.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Gap-free, commit-ordered id, per register.
    pub eventid: i64,
    /// Entity the event concerns.
    pub entityname: String,
    /// `i`, `u` or `d`.
    pub eventaction: String,
    /// Sequence number of the package that made the change.
    pub datafordeler_import_sequence: i64,
    /// When the event was written.
    pub datafordeler_opdateringstid: DateTime<Utc>,
    /// Always false: packages are atomic.
    pub fromfailedimport: bool,
    /// The register's object id.
    pub object_id: Option<String>,
    /// Our row id.
    pub object_datafordeler_rowid: Uuid,
    /// Row version after the change.
    pub object_datafordeler_rowversion: i32,
    /// New registreringFra.
    pub object_registreringfra: Option<DateTime<Utc>>,
    /// New registreringTil.
    pub object_registreringtil: Option<DateTime<Utc>>,
    /// New status.
    pub object_status: Option<String>,
    /// New virkningFra.
    pub object_virkningfra: Option<DateTime<Utc>>,
    /// New virkningTil.
    pub object_virkningtil: Option<DateTime<Utc>>,
    /// The register's extra event fields, by name.
    pub extra: Option<serde_json::Value>,
}

impl<'r> sqlx::FromRow<'r, PgRow> for EventRow {
    /// By position, in [`SELECT`]'s order: looking columns up by name cost 5% of a page.
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            eventid: row.try_get(0)?,
            entityname: row.try_get(1)?,
            eventaction: row.try_get(2)?,
            datafordeler_import_sequence: row.try_get(3)?,
            datafordeler_opdateringstid: row.try_get(4)?,
            fromfailedimport: row.try_get(5)?,
            object_id: row.try_get(6)?,
            object_datafordeler_rowid: row.try_get(7)?,
            object_datafordeler_rowversion: row.try_get(8)?,
            object_registreringfra: row.try_get(9)?,
            object_registreringtil: row.try_get(10)?,
            object_status: row.try_get(11)?,
            object_virkningfra: row.try_get(12)?,
            object_virkningtil: row.try_get(13)?,
            extra: row.try_get(14)?,
        })
    }
}

const SELECT: &str = "SELECT eventid, entityname, eventaction, datafordeler_import_sequence, \
    datafordeler_opdateringstid, fromfailedimport, object_id, object_datafordeler_rowid, \
    object_datafordeler_rowversion, object_registreringfra, object_registreringtil, \
    object_status, object_virkningfra, object_virkningtil, extra FROM ";

/// The standard event fields: API name, column, type.
pub const STANDARD_FIELDS: [(&str, &str, AttrType); 14] = [
    ("eventid", "eventid", AttrType::Integer),
    ("entityname", "entityname", AttrType::Text),
    ("eventaction", "eventaction", AttrType::Text),
    (
        "datafordelerRegisterImportSequenceNumber",
        "datafordeler_import_sequence",
        AttrType::Integer,
    ),
    (
        "datafordelerOpdateringstid",
        "datafordeler_opdateringstid",
        AttrType::Timestamp,
    ),
    ("fromfailedimport", "fromfailedimport", AttrType::Boolean),
    ("object_id", "object_id", AttrType::Text),
    (
        "object_datafordelerRowId",
        "object_datafordeler_rowid",
        AttrType::Uuid,
    ),
    (
        "object_datafordelerRowVersion",
        "object_datafordeler_rowversion",
        AttrType::Integer,
    ),
    (
        "object_registreringfra",
        "object_registreringfra",
        AttrType::Timestamp,
    ),
    (
        "object_registreringtil",
        "object_registreringtil",
        AttrType::Timestamp,
    ),
    ("object_status", "object_status", AttrType::Text),
    (
        "object_virkningfra",
        "object_virkningfra",
        AttrType::Timestamp,
    ),
    (
        "object_virkningtil",
        "object_virkningtil",
        AttrType::Timestamp,
    ),
];

/// The filterable columns of a register's events: the standard fields, then its extra fields
/// (read from the `extra` JSON and cast to their type).
pub fn columns(register: &Register) -> Vec<Arc<Column>> {
    let standard = STANDARD_FIELDS
        .iter()
        .map(|(name, sql, ty)| (name.to_string(), sql.to_string(), *ty));
    let extra = register.event_fields.iter().map(|f| {
        let cast = match f.ty {
            AttrType::Text => String::new(),
            other => format!("::{}", other.sql_type()),
        };
        (
            f.name.clone(),
            format!("(extra ->> '{}'){cast}", f.name.replace('\'', "''")),
            f.ty,
        )
    });
    standard
        .chain(extra)
        .enumerate()
        .map(|(slot, (name, sql, ty))| {
            Arc::new(Column {
                name,
                sql,
                ty,
                slot,
            })
        })
        .collect()
}

impl EventRow {
    /// The event's values in [`columns`] order, for evaluating a filter in memory.
    pub fn to_record(&self, register: &Register) -> Vec<Option<Scalar>> {
        let text = |t: &Option<String>| t.clone().map(Scalar::Text);
        let time = |t: &Option<DateTime<Utc>>| t.map(Scalar::Timestamp);
        let mut values = vec![
            Some(Scalar::Integer(self.eventid)),
            Some(Scalar::Text(self.entityname.clone())),
            Some(Scalar::Text(self.eventaction.clone())),
            Some(Scalar::Integer(self.datafordeler_import_sequence)),
            Some(Scalar::Timestamp(self.datafordeler_opdateringstid)),
            Some(Scalar::Boolean(self.fromfailedimport)),
            text(&self.object_id),
            Some(Scalar::Uuid(self.object_datafordeler_rowid)),
            Some(Scalar::Integer(self.object_datafordeler_rowversion.into())),
            time(&self.object_registreringfra),
            time(&self.object_registreringtil),
            text(&self.object_status),
            time(&self.object_virkningfra),
            time(&self.object_virkningtil),
        ];
        for field in &register.event_fields {
            let json = self.extra.as_ref().and_then(|x| x.get(&field.name));
            values.push(json.and_then(|v| extra_scalar(field.ty, v)));
        }
        values
    }
}

/// An extra field's JSON value as the type the definition gives it.
fn extra_scalar(ty: AttrType, value: &serde_json::Value) -> Option<Scalar> {
    use serde_json::Value as J;
    match (ty, value) {
        (AttrType::Text, J::String(s)) => Some(Scalar::Text(s.clone())),
        (AttrType::Integer, J::Number(n)) => n.as_i64().map(Scalar::Integer),
        (AttrType::Decimal, J::Number(n)) => {
            super::Decimal::parse(&n.to_string()).map(Scalar::Decimal)
        }
        (AttrType::Boolean, J::Bool(b)) => Some(Scalar::Boolean(*b)),
        (AttrType::Date, J::String(s)) => s.parse().ok().map(Scalar::Date),
        (AttrType::Timestamp, J::String(s)) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| Scalar::Timestamp(t.with_timezone(&Utc))),
        (AttrType::Uuid, J::String(s)) => Uuid::try_parse(s).ok().map(Scalar::Uuid),
        _ => None,
    }
}

/// What to read: a filter, a position, a page size and entities the caller may not see.
#[derive(Debug)]
pub struct EventQuery<'a> {
    /// Conditions the events must meet.
    pub filter: &'a Filter,
    /// Only events after this eventid.
    pub after: Option<i64>,
    /// Only events up to and including this eventid.
    pub until: Option<i64>,
    /// Page size.
    pub first: usize,
    /// Entities whose events are left out.
    pub hidden_entities: &'a [String],
}

/// A page of events and whether more follow.
#[derive(Debug)]
pub struct EventPage {
    /// The events, ascending eventid.
    pub rows: Vec<EventRow>,
    /// More events match after the last one.
    pub has_next: bool,
}

/// Reads one page of `register`'s events.
pub async fn fetch_events(
    pool: &PgPool,
    register: &Register,
    query: &EventQuery<'_>,
) -> sqlx::Result<EventPage> {
    let mut qb = QueryBuilder::<Postgres>::new(SELECT);
    qb.push(quote_ident(&register.events_table()));
    // The partition's indexes lead with register_id: without it the planner cannot use them
    // for `eventid > X ORDER BY eventid` and sorts the whole partition.
    qb.push(" WHERE register_id = (SELECT register_id FROM registers WHERE name = ");
    qb.push_bind(register.name.clone());
    qb.push(") AND eventid > ");
    qb.push_bind(query.after.unwrap_or(0));
    if let Some(until) = query.until {
        qb.push(" AND eventid <= ");
        qb.push_bind(until);
    }
    if !query.hidden_entities.is_empty() {
        qb.push(" AND entityname <> ALL(");
        qb.push_bind(query.hidden_entities.to_vec());
        qb.push(")");
    }
    if !matches!(query.filter, Filter::All(parts) if parts.is_empty()) {
        qb.push(" AND ");
        query.filter.push_sql(&mut qb);
    }
    qb.push(" ORDER BY eventid LIMIT ");
    qb.push_bind(query.first as i64 + 1);
    let mut rows: Vec<EventRow> = qb.build_query_as().fetch_all(pool).await?;
    let has_next = rows.len() > query.first;
    rows.truncate(query.first);
    Ok(EventPage { rows, has_next })
}
