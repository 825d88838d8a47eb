//! One filter, two evaluations: for random filters over real events, the SQL a query runs and
//! the in-memory predicate subscriptions will use select exactly the same events.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::TestDb;
use fordeler::query::events::{EventQuery, columns, fetch_events};
use fordeler::query::{Column, Filter, Scalar, Test};

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A random value of the column's type, drawn from the values the events have (or near them).
fn value(rng: &mut Rng, column: &Column, seen: &[Vec<Option<Scalar>>]) -> Scalar {
    let present: Vec<&Scalar> = seen
        .iter()
        .filter_map(|r| r[column.slot].as_ref())
        .collect();
    if present.is_empty() || rng.below(5) == 0 {
        return match column.ty {
            fordeler::registry::AttrType::Integer => Scalar::Integer(rng.below(2000) as i64 - 5),
            fordeler::registry::AttrType::Timestamp => Scalar::Timestamp(
                DateTime::<Utc>::from_timestamp(1_500_000_000 + rng.below(400_000_000) as i64, 0)
                    .unwrap(),
            ),
            fordeler::registry::AttrType::Boolean => Scalar::Boolean(rng.below(2) == 0),
            fordeler::registry::AttrType::Uuid => Scalar::Uuid(uuid::Uuid::now_v7()),
            _ => Scalar::Text(["Bygning", "i", "x", "gældende", ""][rng.below(5)].to_owned()),
        };
    }
    (*rng.pick(&present)).clone()
}

fn test(rng: &mut Rng, column: &Column, seen: &[Vec<Option<Scalar>>]) -> Test {
    use fordeler::registry::AttrType;
    let ordered = !matches!(
        column.ty,
        AttrType::Text | AttrType::Uuid | AttrType::Boolean
    );
    let list = |rng: &mut Rng| {
        (0..rng.below(4))
            .map(|_| value(rng, column, seen))
            .collect()
    };
    match rng.below(if ordered { 10 } else { 7 }) {
        0 => Test::Eq(value(rng, column, seen)),
        1 => Test::Neq(value(rng, column, seen)),
        2 => Test::In(list(rng)),
        3 => Test::Nin(list(rng)),
        4 => Test::IsNull,
        5 => Test::IsNotNull,
        6 if column.ty == AttrType::Text => match value(rng, column, seen) {
            Scalar::Text(t) => Test::StartsWith(t.chars().take(rng.below(4)).collect()),
            _ => Test::IsNull,
        },
        6 => Test::Eq(value(rng, column, seen)),
        7 => Test::Gt(value(rng, column, seen)),
        8 => Test::Lte(value(rng, column, seen)),
        _ => Test::Lt(value(rng, column, seen)),
    }
}

fn filter(
    rng: &mut Rng,
    columns: &[Arc<Column>],
    seen: &[Vec<Option<Scalar>>],
    depth: usize,
) -> Filter {
    match rng.below(if depth < 3 { 4 } else { 1 }) {
        0 | 1 => {
            let column = rng.pick(columns).clone();
            let test = test(rng, &column, seen);
            Filter::Cond(column, test)
        }
        2 => Filter::All(
            (0..rng.below(4))
                .map(|_| filter(rng, columns, seen, depth + 1))
                .collect(),
        ),
        _ => Filter::Any(
            (0..rng.below(4))
                .map(|_| filter(rng, columns, seen, depth + 1))
                .collect(),
        ),
    }
}

#[tokio::test]
async fn sql_and_in_memory_evaluation_select_the_same_events_for_random_filters() {
    agree("BBR", 0x5eed_f11e).await;
}

/// CPR's events carry extra fields (the municipality after and before the change) read from
/// JSON: SQL casts them, memory converts them.
#[tokio::test]
async fn they_agree_on_extra_event_fields_too() {
    agree("CPR", 0xc0de_0101).await;
}

async fn agree(register: &str, seed: u64) {
    let db = TestDb::new().await;
    let definition = db.registry.get(register).unwrap().clone();
    for file in db.generate(register, 3, 120, 11) {
        db.import(&file).await.unwrap();
    }
    let everything = Filter::all();
    let all_query = EventQuery {
        filter: &everything,
        after: None,
        until: None,
        first: 100_000,
        hidden_entities: &[],
    };
    let events = fetch_events(&db.pool, &definition, &all_query)
        .await
        .unwrap()
        .rows;
    assert!(events.len() > 300, "{}", events.len());
    assert!(
        events.iter().any(|e| e.eventaction == "u") && events.iter().any(|e| e.eventaction == "d")
    );
    let records: Vec<Vec<Option<Scalar>>> =
        events.iter().map(|e| e.to_record(&definition)).collect();
    let columns = columns(&definition);

    let mut rng = Rng(seed);
    let mut nonempty = 0;
    for round in 0..300 {
        let filter = filter(&mut rng, &columns, &records, 0);
        let query = EventQuery {
            filter: &filter,
            after: None,
            until: None,
            first: 100_000,
            hidden_entities: &[],
        };
        let from_sql: Vec<i64> = fetch_events(&db.pool, &definition, &query)
            .await
            .unwrap()
            .rows
            .iter()
            .map(|e| e.eventid)
            .collect();
        let in_memory: Vec<i64> = events
            .iter()
            .zip(&records)
            .filter(|(_, record)| filter.matches(&record[..]))
            .map(|(e, _)| e.eventid)
            .collect();
        assert_eq!(from_sql, in_memory, "round {round}: {filter:?}");
        nonempty += usize::from(!in_memory.is_empty() && in_memory.len() < events.len());
    }
    // The filters discriminate: many select some events but not all.
    assert!(nonempty > 50, "{register}: {nonempty}");
    // The extra fields were among the filtered ones, with values present.
    for field in &definition.event_fields {
        let column = columns.iter().find(|c| c.name == field.name).unwrap();
        assert!(
            records.iter().any(|r| r[column.slot].is_some()),
            "{register}: no event has {}",
            field.name
        );
    }
}
