//! The gap-free invariant under concurrency: imports of the same and of different registers race
//! while readers poll `eventid > last`; every reader sees every event exactly once, in order.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::TestDb;
use fordeler::generate::{GenerateOptions, generate};
use fordeler::import::{self, ImportError, Quiet};
use sqlx::PgPool;

const PACKAGES: u64 = 8;

fn packages(db: &TestDb, register: &str) -> Vec<PathBuf> {
    let options = GenerateOptions {
        packages: PACKAGES,
        rows: 1_500,
        seed: 3,
        start_seq: 1,
        out: db.dir.path().join(register),
        gzip: false,
    };
    generate(db.registry.get(register).unwrap(), &options).unwrap()
}

/// Polls `eventid > last` until `done` is set and the register's head is reached; returns every
/// eventid seen, in the order seen.
async fn read_all(pool: PgPool, register: &'static str, done: Arc<AtomicBool>) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut last = 0i64;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let page: Vec<i64> = sqlx::query_scalar(
            "SELECT e.eventid FROM events e JOIN registers r USING (register_id)
             WHERE r.name = $1 AND e.eventid > $2 ORDER BY e.eventid LIMIT 500",
        )
        .bind(register)
        .bind(last)
        .fetch_all(&pool)
        .await
        .unwrap();
        if let Some(&max) = page.last() {
            last = max;
        }
        let empty = page.is_empty();
        seen.extend(page);
        if finished && empty {
            return seen;
        }
        if empty {
            tokio::task::yield_now().await;
        }
    }
}

async fn import_all(db_url: String, registry: fordeler::registry::Registry, files: Vec<PathBuf>) {
    let mut conn = import::connect(&db_url).await.unwrap();
    for file in files {
        match import::import_package(&mut conn, &registry, &file, &Quiet).await {
            Ok(_) => {}
            // A racing importer got there first: this package is not next any more, or is done.
            Err(ImportError::Gap { .. }) => {
                panic!("packages are imported in order, a gap is a bug")
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_imports_and_polling_readers_see_every_event_once_in_order() {
    let db = TestDb::new().await;
    let registers = ["BBR", "CVR"];
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for register in registers {
        for _ in 0..3 {
            readers.push((
                register,
                tokio::spawn(read_all(db.pool.clone(), register, done.clone())),
            ));
        }
    }
    let mut importers = Vec::new();
    for register in registers {
        let files = packages(&db, register);
        // Two importers race on the same packages of each register; one applies each package,
        // the other finds it already imported.
        for _ in 0..2 {
            importers.push(tokio::spawn(import_all(
                db.url.clone(),
                db.registry.clone(),
                files.clone(),
            )));
        }
    }
    for importer in importers {
        importer.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for (register, reader) in readers {
        let seen = reader.await.unwrap();
        let (last_sequence, last_eventid, _) = db.register_state(register).await;
        assert_eq!(last_sequence, PACKAGES as i64);
        let expected: Vec<i64> = (1..=last_eventid).collect();
        assert_eq!(
            seen.len(),
            expected.len(),
            "{register}: every event exactly once"
        );
        assert!(
            seen == expected,
            "{register}: events seen in eventid order without a gap"
        );
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let heads: i64 = sqlx::query_scalar("SELECT sum(last_eventid)::bigint FROM registers")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        stored, heads,
        "no holes: events count equals the eventid heads"
    );
}
