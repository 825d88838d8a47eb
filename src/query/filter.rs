//! One filter representation, evaluated two ways: compiled to parameterised SQL for queries, and
//! evaluated in memory for subscriptions. Both follow the same rules:
//!
//! - a test on a field whose value is null is false, except `IsNull` (`eq: null`) and
//!   `IsNotNull` (`neq: null`);
//! - `in: []` matches nothing, `nin: []` matches every non-null value;
//! - `ngt` is "not greater than", i.e. `lte` on a non-null value (and so on for the others);
//! - text comparison is exact and case-sensitive; `startsWith` compares bytes.
//!
//! Column expressions come from register definitions, never from users; every user value is a
//! bind parameter.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::decimal::Decimal;
use crate::registry::AttrType;

/// A typed value of a field, as filters compare it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Text.
    Text(String),
    /// 64-bit integer.
    Integer(i64),
    /// Exact decimal.
    Decimal(Decimal),
    /// Boolean.
    Boolean(bool),
    /// Calendar date.
    Date(NaiveDate),
    /// Timestamp, microsecond precision.
    Timestamp(DateTime<Utc>),
    /// UUID.
    Uuid(Uuid),
}

/// A filterable field: its public name, its SQL expression, type, and its slot in a [`Record`].
#[derive(Debug)]
pub struct Column {
    /// Field name as the API spells it.
    pub name: String,
    /// Trusted SQL expression (a quoted column, or a cast of a JSON field).
    pub sql: String,
    /// Value type.
    pub ty: AttrType,
    /// Position of the value in a [`Record`].
    pub slot: usize,
}

/// A comparison operator with its operand(s), already typed for the column.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `eq`.
    Eq(Scalar),
    /// `neq`.
    Neq(Scalar),
    /// `in`.
    In(Vec<Scalar>),
    /// `nin`.
    Nin(Vec<Scalar>),
    /// `gt`.
    Gt(Scalar),
    /// `gte`.
    Gte(Scalar),
    /// `lt`.
    Lt(Scalar),
    /// `lte`.
    Lte(Scalar),
    /// `startsWith` (text).
    StartsWith(String),
    /// `eq: null`.
    IsNull,
    /// `neq: null`.
    IsNotNull,
}

/// A filter: conditions combined with `and` / `or`.
#[derive(Debug, Clone)]
pub enum Filter {
    /// Every part holds (an empty list holds).
    All(Vec<Filter>),
    /// Some part holds (an empty list never holds).
    Any(Vec<Filter>),
    /// One test on one column.
    Cond(Arc<Column>, Test),
}

/// Values a filter can be evaluated on in memory, by column slot.
pub trait Record {
    /// The value in `slot`, or `None` when it is null.
    fn value(&self, slot: usize) -> Option<&Scalar>;
}

impl Record for [Option<Scalar>] {
    fn value(&self, slot: usize) -> Option<&Scalar> {
        self.get(slot).and_then(Option::as_ref)
    }
}

impl Filter {
    /// A filter that holds for everything.
    pub fn all() -> Self {
        Filter::All(Vec::new())
    }

    /// Whether the filter holds for `record`.
    pub fn matches<R: Record + ?Sized>(&self, record: &R) -> bool {
        match self {
            Filter::All(parts) => parts.iter().all(|f| f.matches(record)),
            Filter::Any(parts) => parts.iter().any(|f| f.matches(record)),
            Filter::Cond(column, test) => test.holds(record.value(column.slot)),
        }
    }

    /// Appends the filter as a boolean SQL expression, values as binds.
    pub fn push_sql(&self, qb: &mut QueryBuilder<Postgres>) {
        match self {
            Filter::All(parts) => push_joined(qb, parts, " AND ", "TRUE"),
            Filter::Any(parts) => push_joined(qb, parts, " OR ", "FALSE"),
            Filter::Cond(column, test) => push_test(qb, column, test),
        }
    }

    /// The conditions that must all hold (the top-level `and` chain), for planners that look
    /// for a particular condition, such as a row-id lookup.
    pub fn conjuncts(&self) -> Vec<(&Column, &Test)> {
        let mut out = Vec::new();
        self.collect_conjuncts(&mut out);
        out
    }

    fn collect_conjuncts<'a>(&'a self, out: &mut Vec<(&'a Column, &'a Test)>) {
        match self {
            Filter::All(parts) => parts.iter().for_each(|p| p.collect_conjuncts(out)),
            Filter::Any(parts) if parts.len() == 1 => parts[0].collect_conjuncts(out),
            Filter::Any(_) => {}
            Filter::Cond(column, test) => out.push((column, test)),
        }
    }

    /// Every condition anywhere in the filter, for checks such as "does it name this entity".
    pub fn conditions(&self) -> Vec<(&Column, &Test)> {
        let mut out = Vec::new();
        self.collect_conditions(&mut out);
        out
    }

    fn collect_conditions<'a>(&'a self, out: &mut Vec<(&'a Column, &'a Test)>) {
        match self {
            Filter::All(parts) | Filter::Any(parts) => {
                parts.iter().for_each(|p| p.collect_conditions(out))
            }
            Filter::Cond(column, test) => out.push((column, test)),
        }
    }
}

fn push_joined(qb: &mut QueryBuilder<Postgres>, parts: &[Filter], op: &str, empty: &str) {
    if parts.is_empty() {
        qb.push(empty);
        return;
    }
    qb.push("(");
    for (n, part) in parts.iter().enumerate() {
        if n > 0 {
            qb.push(op);
        }
        part.push_sql(qb);
    }
    qb.push(")");
}

fn push_test(qb: &mut QueryBuilder<Postgres>, column: &Column, test: &Test) {
    let col = &column.sql;
    match test {
        Test::Eq(v) => push_cmp(qb, col, "=", v),
        Test::Gt(v) => push_cmp(qb, col, ">", v),
        Test::Gte(v) => push_cmp(qb, col, ">=", v),
        Test::Lt(v) => push_cmp(qb, col, "<", v),
        Test::Lte(v) => push_cmp(qb, col, "<=", v),
        // `<>` is already false on null.
        Test::Neq(v) => push_cmp(qb, col, "<>", v),
        Test::In(list) => {
            qb.push(format_args!("{col} = ANY("));
            push_list(qb, column.ty, list);
            qb.push(")");
        }
        // `<> ALL('{}')` is true even on null: say "not null" explicitly.
        Test::Nin(list) => {
            qb.push(format_args!("({col} IS NOT NULL AND {col} <> ALL("));
            push_list(qb, column.ty, list);
            qb.push("))");
        }
        Test::StartsWith(prefix) => {
            qb.push(format_args!("starts_with({col}, "));
            qb.push_bind(prefix.clone());
            qb.push(")");
        }
        Test::IsNull => {
            qb.push(format_args!("{col} IS NULL"));
        }
        Test::IsNotNull => {
            qb.push(format_args!("{col} IS NOT NULL"));
        }
    }
}

fn push_cmp(qb: &mut QueryBuilder<Postgres>, col: &str, op: &str, value: &Scalar) {
    qb.push(format_args!("{col} {op} "));
    push_scalar(qb, value);
}

fn push_scalar(qb: &mut QueryBuilder<Postgres>, value: &Scalar) {
    match value.clone() {
        Scalar::Text(v) => qb.push_bind(v),
        Scalar::Integer(v) => qb.push_bind(v),
        // numeric has no Rust type wide enough: bound as text, cast by PostgreSQL.
        Scalar::Decimal(v) => qb.push_bind(v.to_string()).push("::numeric"),
        Scalar::Boolean(v) => qb.push_bind(v),
        Scalar::Date(v) => qb.push_bind(v),
        Scalar::Timestamp(v) => qb.push_bind(v),
        Scalar::Uuid(v) => qb.push_bind(v),
    };
}

/// Binds a list as one typed array parameter (values were typed for the column at parse time).
fn push_list(qb: &mut QueryBuilder<Postgres>, ty: AttrType, list: &[Scalar]) {
    fn collect<T>(list: &[Scalar], pick: impl Fn(&Scalar) -> Option<T>) -> Vec<T> {
        list.iter().filter_map(pick).collect()
    }
    match ty {
        AttrType::Text => qb.push_bind(collect(list, |s| match s {
            Scalar::Text(v) => Some(v.clone()),
            _ => None,
        })),
        AttrType::Integer => qb.push_bind(collect(list, |s| match s {
            Scalar::Integer(v) => Some(*v),
            _ => None,
        })),
        AttrType::Decimal => qb
            .push_bind(collect(list, |s| match s {
                Scalar::Decimal(v) => Some(v.to_string()),
                _ => None,
            }))
            .push("::numeric[]"),
        AttrType::Boolean => qb.push_bind(collect(list, |s| match s {
            Scalar::Boolean(v) => Some(*v),
            _ => None,
        })),
        AttrType::Date => qb.push_bind(collect(list, |s| match s {
            Scalar::Date(v) => Some(*v),
            _ => None,
        })),
        AttrType::Timestamp => qb.push_bind(collect(list, |s| match s {
            Scalar::Timestamp(v) => Some(*v),
            _ => None,
        })),
        AttrType::Uuid => qb.push_bind(collect(list, |s| match s {
            Scalar::Uuid(v) => Some(*v),
            _ => None,
        })),
    };
}

impl Test {
    /// Whether the test holds for a field value (`None` is null).
    pub fn holds(&self, value: Option<&Scalar>) -> bool {
        let Some(value) = value else {
            return matches!(self, Test::IsNull);
        };
        match self {
            Test::Eq(v) => value == v,
            Test::Neq(v) => value != v,
            Test::In(list) => list.contains(value),
            Test::Nin(list) => !list.contains(value),
            Test::Gt(v) => compare(value, v).is_some_and(|o| o.is_gt()),
            Test::Gte(v) => compare(value, v).is_some_and(|o| o.is_ge()),
            Test::Lt(v) => compare(value, v).is_some_and(|o| o.is_lt()),
            Test::Lte(v) => compare(value, v).is_some_and(|o| o.is_le()),
            Test::StartsWith(prefix) => {
                matches!(value, Scalar::Text(text) if text.starts_with(prefix.as_str()))
            }
            Test::IsNull => false,
            Test::IsNotNull => true,
        }
    }
}

/// Orders two values of the same type (`None` across types, which parsing rules out).
fn compare(a: &Scalar, b: &Scalar) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Scalar::Text(a), Scalar::Text(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Scalar::Integer(a), Scalar::Integer(b)) => Some(a.cmp(b)),
        (Scalar::Decimal(a), Scalar::Decimal(b)) => Some(a.cmp(b)),
        (Scalar::Boolean(a), Scalar::Boolean(b)) => Some(a.cmp(b)),
        (Scalar::Date(a), Scalar::Date(b)) => Some(a.cmp(b)),
        (Scalar::Timestamp(a), Scalar::Timestamp(b)) => Some(a.cmp(b)),
        (Scalar::Uuid(a), Scalar::Uuid(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(ty: AttrType) -> Arc<Column> {
        Arc::new(Column {
            name: "f".into(),
            sql: "\"f\"".into(),
            ty,
            slot: 0,
        })
    }

    #[test]
    fn a_test_on_a_null_value_is_false_unless_it_asks_for_null() {
        let ints = column(AttrType::Integer);
        let null: [Option<Scalar>; 1] = [None];
        for test in [
            Test::Eq(Scalar::Integer(1)),
            Test::Neq(Scalar::Integer(1)),
            Test::Nin(vec![]),
            Test::Lte(Scalar::Integer(1)),
            Test::IsNotNull,
        ] {
            assert!(!Filter::Cond(ints.clone(), test).matches(&null[..]));
        }
        assert!(Filter::Cond(ints, Test::IsNull).matches(&null[..]));
    }

    #[test]
    fn and_or_combine_as_in_sql() {
        let ints = column(AttrType::Integer);
        let five = [Some(Scalar::Integer(5))];
        let gt = |n| Filter::Cond(ints.clone(), Test::Gt(Scalar::Integer(n)));
        assert!(Filter::All(vec![gt(1), gt(4)]).matches(&five[..]));
        assert!(!Filter::All(vec![gt(1), gt(5)]).matches(&five[..]));
        assert!(Filter::Any(vec![gt(9), gt(4)]).matches(&five[..]));
        assert!(!Filter::Any(vec![]).matches(&five[..]));
        assert!(Filter::all().matches(&five[..]));
    }

    #[test]
    fn sql_binds_every_value_and_names_only_the_trusted_column() {
        let text = column(AttrType::Text);
        let filter = Filter::Any(vec![
            Filter::Cond(text.clone(), Test::Eq(Scalar::Text("x' OR 1=1 --".into()))),
            Filter::Cond(text, Test::Nin(vec![Scalar::Text("a".into())])),
        ]);
        let mut qb = QueryBuilder::<Postgres>::new("SELECT 1 WHERE ");
        filter.push_sql(&mut qb);
        assert_eq!(
            qb.sql().as_str(),
            "SELECT 1 WHERE (\"f\" = $1 OR (\"f\" IS NOT NULL AND \"f\" <> ALL($2)))"
        );
    }
}
