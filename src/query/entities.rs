//! Pages of one entity's rows valid at a point in bitemporal time, in datafordelerRowId order.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::decimal::Decimal;
use super::filter::{Column, Filter, Scalar, Test};
use crate::registry::{AttrType, Entity, Register, quote_ident};

/// The bitemporal fields every entity row has, before its attributes: API name and type.
pub const STANDARD_FIELDS: [(&str, AttrType); 9] = [
    ("datafordelerRowId", AttrType::Uuid),
    ("datafordelerRowVersion", AttrType::Integer),
    ("datafordelerOpdateringstid", AttrType::Timestamp),
    (
        "datafordelerRegisterImportSequenceNumber",
        AttrType::Integer,
    ),
    ("registreringFra", AttrType::Timestamp),
    ("registreringTil", AttrType::Timestamp),
    ("virkningFra", AttrType::Timestamp),
    ("virkningTil", AttrType::Timestamp),
    ("status", AttrType::Text),
];

/// Slot of `datafordelerRowId` in a row.
pub const ROW_ID: usize = 0;

/// Slot of `datafordelerRowVersion` in a row.
const ROW_VERSION: usize = 1;

/// The columns of an entity's rows: the standard fields, then the attributes, in slot order.
pub fn columns(entity: &Entity) -> Vec<Arc<Column>> {
    let standard = STANDARD_FIELDS
        .iter()
        .map(|(name, ty)| (name.to_string(), *ty));
    let attributes = entity.attributes.iter().map(|a| (a.name.clone(), a.ty));
    standard
        .chain(attributes)
        .enumerate()
        .map(|(slot, (name, ty))| {
            let sql = quote_ident(&name);
            Arc::new(Column {
                name,
                sql,
                ty,
                slot,
            })
        })
        .collect()
}

/// One stored row: its values in [`columns`] order (`None` is null).
#[derive(Debug, Clone)]
pub struct EntityRow(pub Vec<Option<Scalar>>);

/// The bitemporal point rows must be valid at; `None` means now.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bitemporal {
    /// Transaction time.
    pub registreringstid: Option<DateTime<Utc>>,
    /// Valid time.
    pub virkningstid: Option<DateTime<Utc>>,
}

/// What to read.
#[derive(Debug)]
pub struct EntityQuery<'a> {
    /// Conditions the rows must meet.
    pub filter: &'a Filter,
    /// The bitemporal point.
    pub at: Bitemporal,
    /// Every stored registration, whatever its times (`at` must then be now).
    pub every_registration: bool,
    /// Only rows after this row id.
    pub after: Option<Uuid>,
    /// Page size.
    pub first: usize,
}

/// A page of rows and whether more follow.
#[derive(Debug)]
pub struct EntityPage {
    /// Rows, ascending datafordelerRowId.
    pub rows: Vec<EntityRow>,
    /// More rows match after the last one.
    pub has_next: bool,
}

impl EntityQuery<'_> {
    /// `every_registration`, or a lookup by row id (`datafordelerRowId` `eq`/`in` that must
    /// hold) with no explicit time, reaches every stored registration, current or not: that is
    /// how the two-step sync fetches what an event names.
    fn is_timeless(&self) -> bool {
        if self.every_registration {
            return true;
        }
        self.at.registreringstid.is_none()
            && self.at.virkningstid.is_none()
            && self.filter.conjuncts().iter().any(|(column, test)| {
                column.slot == ROW_ID && matches!(test, Test::Eq(_) | Test::In(_))
            })
    }
}

/// Reads one page of `entity`'s rows.
pub async fn fetch_rows(
    pool: &PgPool,
    register: &Register,
    entity: &Entity,
    query: &EntityQuery<'_>,
) -> sqlx::Result<EntityPage> {
    let mut qb = QueryBuilder::<Postgres>::new("SELECT ");
    push_select_list(&mut qb, entity);
    qb.push(" FROM ");
    qb.push(entity.table_name(register));
    qb.push(" WHERE TRUE");
    if !query.is_timeless() {
        push_bitemporal(&mut qb, query.at);
    }
    if let Some(after) = query.after {
        qb.push(" AND \"datafordelerRowId\" > ");
        qb.push_bind(after);
    }
    if !matches!(query.filter, Filter::All(parts) if parts.is_empty()) {
        qb.push(" AND ");
        query.filter.push_sql(&mut qb);
    }
    qb.push(" ORDER BY \"datafordelerRowId\" LIMIT ");
    qb.push_bind(query.first as i64 + 1);
    let rows = qb.build().fetch_all(pool).await?;
    let mut rows = rows
        .iter()
        .map(|row| decode_row(row, entity))
        .collect::<sqlx::Result<Vec<_>>>()?;
    let has_next = rows.len() > query.first;
    rows.truncate(query.first);
    Ok(EntityPage { rows, has_next })
}

fn push_select_list(qb: &mut QueryBuilder<Postgres>, entity: &Entity) {
    // numeric is read as text: no Rust type holds every value PostgreSQL can.
    let names = STANDARD_FIELDS
        .iter()
        .map(|(name, _)| quote_ident(name))
        .chain(entity.attributes.iter().map(|a| match a.ty {
            AttrType::Decimal => format!("{}::text", quote_ident(&a.name)),
            _ => quote_ident(&a.name),
        }));
    qb.push(names.collect::<Vec<_>>().join(", "));
}

/// Valid at the point: `fra <= t < til` (an open `til` is infinity) in both time dimensions.
fn push_bitemporal(qb: &mut QueryBuilder<Postgres>, at: Bitemporal) {
    let now = Utc::now();
    for (fra, til, t) in [
        ("registreringFra", "registreringTil", at.registreringstid),
        ("virkningFra", "virkningTil", at.virkningstid),
    ] {
        let t = t.unwrap_or(now);
        qb.push(format_args!(" AND \"{fra}\" <= "));
        qb.push_bind(t);
        qb.push(format_args!(" AND (\"{til}\" IS NULL OR \"{til}\" > "));
        qb.push_bind(t);
        qb.push(")");
    }
}

fn decode_row(row: &PgRow, entity: &Entity) -> sqlx::Result<EntityRow> {
    let types = STANDARD_FIELDS
        .iter()
        .map(|(_, ty)| *ty)
        .chain(entity.attributes.iter().map(|a| a.ty));
    types
        .enumerate()
        .map(|(i, ty)| decode_value(row, i, ty))
        .collect::<sqlx::Result<Vec<_>>>()
        .map(EntityRow)
}

fn decode_value(row: &PgRow, i: usize, ty: AttrType) -> sqlx::Result<Option<Scalar>> {
    Ok(match ty {
        AttrType::Text => row.try_get::<Option<String>, _>(i)?.map(Scalar::Text),
        // datafordelerRowVersion is an integer column, the attributes bigint.
        AttrType::Integer if i == ROW_VERSION => row
            .try_get::<Option<i32>, _>(i)?
            .map(|v| Scalar::Integer(v.into())),
        AttrType::Integer => row.try_get::<Option<i64>, _>(i)?.map(Scalar::Integer),
        AttrType::Decimal => row
            .try_get::<Option<String>, _>(i)?
            .and_then(|text| Decimal::parse(&text))
            .map(Scalar::Decimal),
        AttrType::Boolean => row.try_get::<Option<bool>, _>(i)?.map(Scalar::Boolean),
        AttrType::Date => row.try_get::<Option<NaiveDate>, _>(i)?.map(Scalar::Date),
        AttrType::Timestamp => row
            .try_get::<Option<DateTime<Utc>>, _>(i)?
            .map(Scalar::Timestamp),
        AttrType::Uuid => row.try_get::<Option<Uuid>, _>(i)?.map(Scalar::Uuid),
    })
}
