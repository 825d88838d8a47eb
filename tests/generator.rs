//! The synthetic package generator: deterministic, restartable (`--start-seq`), well-formed
//! packages, and a history whose import gives exactly the documented mix of events.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use fordeler::generate::{GenerateOptions, generate};
use fordeler::import::Outcome;
use fordeler::package::{FORMAT, Header};
use fordeler::registry::Register;
use serde_json::Value;

fn register(name: &str) -> Register {
    common::sample_registry().get(name).unwrap().clone()
}

fn options(out: &Path, packages: u64, rows: u64, seed: u64) -> GenerateOptions {
    GenerateOptions {
        packages,
        rows,
        seed,
        start_seq: 1,
        out: out.to_path_buf(),
        gzip: true,
    }
}

/// The file names of `paths`, in the given order.
fn names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect()
}

/// The decompressed lines of a package file (gzip or plain, by extension).
fn lines(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap();
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    BufReader::new(reader).lines().map(Result::unwrap).collect()
}

/// The header and the rows of a package file.
fn read_package(path: &Path) -> (Header, Vec<Value>) {
    let lines = lines(path);
    let (first, rest) = lines.split_first().unwrap();
    let header: Header = serde_json::from_str(first).unwrap();
    let rows = rest
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (header, rows)
}

// ---------------------------------------------------------------------------------------------
// The documented mix, computed independently of the generator
// ---------------------------------------------------------------------------------------------

/// How many of 0..n are congruent to r modulo m (by counting, not by formula).
fn cnt(n: u64, m: u64, r: u64) -> u64 {
    (0..n).filter(|i| i % m == r).count() as u64
}

/// new(p) for p in 0..=last: new(0) = 0, new(1) = rows,
/// new(p) = rows - 3*ceil(new(p-1)/10) - cnt(new(p-1), 20, 3) - cnt(new(p-2), 20, 7).
fn new_objects(rows: u64, last: usize) -> Vec<u64> {
    let mut new = vec![0, rows];
    for p in 2..=last {
        let fixed = 3 * new[p - 1].div_ceil(10) + cnt(new[p - 1], 20, 3) + cnt(new[p - 2], 20, 7);
        new.push(rows - fixed);
    }
    new
}

/// What importing package `p` of a history with `rows` rows per package must report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mix {
    inserted: u64,
    updated: u64,
    unchanged: u64,
    deleted: u64,
}

impl Mix {
    fn of(rows: u64, p: usize) -> Self {
        let new = new_objects(rows, p);
        let corrections = if p >= 2 { new[p - 1].div_ceil(10) } else { 0 };
        let unchanged = if p >= 2 { cnt(new[p - 1], 20, 3) } else { 0 };
        let deleted = if p >= 3 { cnt(new[p - 2], 20, 7) } else { 0 };
        Mix {
            inserted: new[p] + 2 * corrections,
            updated: corrections,
            unchanged,
            deleted,
        }
    }

    fn rows(&self) -> u64 {
        // Each correction is three rows: the closed registration (u) and two new ones (i).
        self.inserted + self.updated + self.unchanged + self.deleted
    }

    fn events(&self) -> u64 {
        self.inserted + self.updated + self.deleted
    }
}

#[test]
fn the_documented_mix_adds_up_to_the_rows_of_every_package() {
    for rows in [10, 11, 19, 20, 37, 200, 1000] {
        for p in 1..=12 {
            assert_eq!(Mix::of(rows, p).rows(), rows, "rows {rows}, package {p}");
        }
    }
    assert_eq!(
        Mix::of(200, 1),
        Mix {
            inserted: 200,
            updated: 0,
            unchanged: 0,
            deleted: 0
        }
    );
    // Package 2: 20 corrections of the 200 objects of package 1 (60 rows), 10 re-deliveries,
    // and 130 new objects.
    assert_eq!(
        Mix::of(200, 2),
        Mix {
            inserted: 130 + 40,
            updated: 20,
            unchanged: 10,
            deleted: 0
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

#[test]
fn the_same_register_seed_and_rows_give_byte_identical_files() {
    let bbr = register("BBR");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = generate(&bbr, &options(a.path(), 3, 50, 7)).unwrap();
    let second = generate(&bbr, &options(b.path(), 3, 50, 7)).unwrap();
    assert_eq!(names(&first), names(&second));
    assert_eq!(first.len(), 3);
    for (x, y) in first.iter().zip(&second) {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{} differs",
            x.display()
        );
    }
}

#[test]
fn a_different_seed_gives_different_files() {
    let bbr = register("BBR");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = generate(&bbr, &options(a.path(), 3, 50, 7)).unwrap();
    let second = generate(&bbr, &options(b.path(), 3, 50, 8)).unwrap();
    assert_eq!(names(&first), names(&second));
    for (x, y) in first.iter().zip(&second) {
        assert_ne!(
            lines(x)[1..],
            lines(y)[1..],
            "{} has the same rows for another seed",
            x.display()
        );
        // Same shape, other content: the header and the row count do not depend on the seed.
        assert_eq!(lines(x)[0], lines(y)[0]);
        assert_eq!(lines(x).len(), lines(y).len());
    }
}

#[test]
fn a_later_start_seq_gives_the_same_files_as_a_full_run() {
    let cvr = register("CVR");
    let (full, tail) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let all = generate(&cvr, &options(full.path(), 5, 40, 3)).unwrap();
    let later = generate(
        &cvr,
        &GenerateOptions {
            start_seq: 3,
            ..options(tail.path(), 3, 40, 3)
        },
    )
    .unwrap();
    assert_eq!(
        names(&later),
        [
            "CVR-00000003.ndjson.gz",
            "CVR-00000004.ndjson.gz",
            "CVR-00000005.ndjson.gz"
        ]
    );
    assert_eq!(names(&all[2..]), names(&later));
    for (x, y) in all[2..].iter().zip(&later) {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{} differs",
            y.display()
        );
    }
    let mut written: Vec<String> = std::fs::read_dir(tail.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    assert_eq!(
        written,
        names(&later),
        "only the requested packages are written"
    );
}

#[test]
fn file_names_sort_in_sequence_order() {
    let bbr = register("BBR");
    let dir = tempfile::tempdir().unwrap();
    let written = generate(&bbr, &options(dir.path(), 12, 10, 1)).unwrap();
    let expected: Vec<String> = (1..=12).map(|n| format!("BBR-{n:08}.ndjson.gz")).collect();
    assert_eq!(names(&written), expected, "returned in sequence order");
    let mut listed: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    assert_eq!(
        listed, expected,
        "a sorted listing (a shell glob) is in sequence order, with no leftovers"
    );
    for (path, n) in written.iter().zip(1..) {
        assert_eq!(read_package(path).0.sequence, n);
    }
}

#[test]
fn without_gzip_the_files_are_plain_ndjson_with_the_same_content() {
    let cpr = register("CPR");
    let (gz, plain) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let zipped = generate(&cpr, &options(gz.path(), 2, 30, 5)).unwrap();
    let unzipped = generate(
        &cpr,
        &GenerateOptions {
            gzip: false,
            ..options(plain.path(), 2, 30, 5)
        },
    )
    .unwrap();
    assert_eq!(
        names(&unzipped),
        ["CPR-00000001.ndjson", "CPR-00000002.ndjson"]
    );
    for (x, y) in zipped.iter().zip(&unzipped) {
        let text = std::fs::read_to_string(y).unwrap();
        assert!(text.starts_with('{'), "plain NDJSON");
        assert_eq!(lines(x), lines(y));
    }
}

#[test]
fn every_package_has_a_right_header_and_exactly_the_requested_rows() {
    for name in ["BBR", "CPR", "CVR"] {
        let reg = register(name);
        let dir = tempfile::tempdir().unwrap();
        let rows = 37;
        let written = generate(&reg, &options(dir.path(), 6, rows, 11)).unwrap();
        for (path, p) in written.iter().zip(1usize..) {
            let (header, lines) = read_package(path);
            assert_eq!(header.format, FORMAT);
            assert_eq!(header.register, name);
            assert_eq!(header.sequence, p as i64);
            assert_eq!(header.rows, Some(rows));
            assert_eq!(lines.len() as u64, rows, "{}", path.display());

            // The rows follow the documented mix: closed registrations (registreringTil set)
            // for the corrections, deletes of objects of package p-2, upserts otherwise.
            let mix = Mix::of(rows, p);
            let closed = lines
                .iter()
                .filter(|r| r.get("registreringTil").is_some())
                .count() as u64;
            let deletes = lines.iter().filter(|r| r["op"] == "delete").count() as u64;
            assert_eq!(closed, mix.updated, "{}", path.display());
            assert_eq!(deletes, mix.deleted, "{}", path.display());
            for row in &lines {
                let entity = row["entity"].as_str().unwrap();
                assert!(
                    reg.entity(entity).is_some(),
                    "unknown entity {entity} in {}",
                    path.display()
                );
                assert!(!row["key"].as_str().unwrap().is_empty());
            }
        }
    }
}

#[test]
fn every_entity_gets_new_objects() {
    let bbr = register("BBR");
    let dir = tempfile::tempdir().unwrap();
    let written = generate(&bbr, &options(dir.path(), 1, 500, 1)).unwrap();
    let (_, rows) = read_package(&written[0]);
    let mut per_entity: HashMap<String, usize> = HashMap::new();
    for row in rows {
        *per_entity
            .entry(row["entity"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for entity in &bbr.entities {
        assert!(
            per_entity.get(&entity.name).copied().unwrap_or(0) > 0,
            "no {} among 500 new objects",
            entity.name
        );
    }
}

#[test]
fn fewer_than_ten_rows_per_package_are_refused() {
    let bbr = register("BBR");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let error = generate(&bbr, &options(&out, 1, 9, 1)).unwrap_err();
    assert!(
        error.to_string().contains("--rows must be at least 10"),
        "{error}"
    );
    assert!(!out.exists(), "nothing is written");
    generate(&bbr, &options(&out, 1, 10, 1)).unwrap();
}

#[test]
fn a_start_seq_of_zero_is_refused() {
    let bbr = register("BBR");
    let dir = tempfile::tempdir().unwrap();
    let error = generate(
        &bbr,
        &GenerateOptions {
            start_seq: 0,
            ..options(dir.path(), 1, 10, 1)
        },
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("--start-seq must be 1 or more"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Importing a generated history
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn importing_a_generated_history_gives_exactly_the_documented_mix() {
    let db = common::TestDb::new().await;
    let (packages, rows) = (4usize, 200u64);
    for name in ["BBR", "CVR", "CPR"] {
        let reg = register(name);
        let out = db.dir.path().join(name);
        let written = generate(&reg, &options(&out, packages as u64, rows, 42)).unwrap();
        assert_eq!(written.len(), packages);

        let mut last_eventid = 0i64;
        let (mut total, mut rows_in_store) = (
            Mix {
                inserted: 0,
                updated: 0,
                unchanged: 0,
                deleted: 0,
            },
            0i64,
        );
        for (path, p) in written.iter().zip(1usize..) {
            let summary = db.import(path).await.unwrap();
            let expected = Mix::of(rows, p);
            let got = Mix {
                inserted: summary.inserted,
                updated: summary.updated,
                unchanged: summary.unchanged,
                deleted: summary.deleted,
            };
            assert_eq!(got, expected, "{name} package {p}");
            assert_eq!(summary.outcome, Outcome::Imported);
            assert_eq!(summary.register, name);
            assert_eq!(summary.sequence, p as i64);
            assert_eq!(summary.rows_read, rows);
            assert_eq!(summary.events, expected.events());
            assert_eq!(
                summary.first_eventid,
                Some(last_eventid + 1),
                "{name} package {p}: eventids continue"
            );
            assert_eq!(
                summary.last_eventid,
                Some(last_eventid + expected.events() as i64)
            );
            last_eventid += expected.events() as i64;
            total.inserted += got.inserted;
            total.updated += got.updated;
            total.deleted += got.deleted;
            rows_in_store += got.inserted as i64 - got.deleted as i64;
        }

        let (last_sequence, state_eventid, row_count) = db.register_state(name).await;
        assert_eq!(
            (last_sequence, state_eventid, row_count),
            (packages as i64, last_eventid, rows_in_store)
        );
        let mut counted = 0;
        for entity in &reg.entities {
            counted += db.count_rows(name, &entity.name).await;
        }
        assert_eq!(counted, rows_in_store, "{name}: rows in the entity tables");

        let events = db.events(name).await;
        let ids: Vec<i64> = events
            .iter()
            .map(|e| e["eventid"].as_i64().unwrap())
            .collect();
        assert_eq!(
            ids,
            (1..=last_eventid).collect::<Vec<_>>(),
            "{name}: eventids are 1..N without gaps"
        );
        let actions = |a: &str| events.iter().filter(|e| e["eventaction"] == a).count() as u64;
        assert_eq!(
            (actions("i"), actions("u"), actions("d")),
            (total.inserted, total.updated, total.deleted)
        );
        let sequences: Vec<i64> = events
            .iter()
            .map(|e| {
                e["datafordelerRegisterImportSequenceNumber"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert!(
            sequences.windows(2).all(|w| w[0] <= w[1]),
            "{name}: events are in package order"
        );
    }
}

#[tokio::test]
async fn cpr_corrections_move_people_between_municipalities() {
    let db = common::TestDb::new().await;
    let cpr = register("CPR");
    let written = generate(&cpr, &options(&db.dir.path().join("CPR"), 4, 200, 42)).unwrap();
    for path in &written {
        db.import(path).await.unwrap();
    }
    let events = db.events("CPR").await;
    let new = |e: &Value| e["object_kommunekodenuvaerende"].clone();
    let old = |e: &Value| e["object_kommunekodetidligere"].clone();

    for event in &events {
        let entity = event["entityname"].as_str().unwrap();
        let object = event.as_object().unwrap();
        assert!(
            object.contains_key("object_kommunekodenuvaerende")
                && object.contains_key("object_kommunekodetidligere")
        );
        match (entity, event["eventaction"].as_str().unwrap()) {
            // Civilstand has no kommunekode: both fields are null.
            ("Civilstand", _) => assert_eq!((new(event), old(event)), (Value::Null, Value::Null)),
            // A new object has no value before it; a replacement registration carries the
            // object's value before the package.
            (_, "i") => {
                assert!(new(event).is_string(), "{event}");
                assert!(old(event).is_null() || old(event).is_string(), "{event}");
            }
            // A closed registration keeps its values; a delete carries the deleted row's last value.
            (_, "u" | "d") => {
                assert!(new(event).is_string(), "{event}");
                assert_eq!(new(event), old(event), "{event}");
            }
            (_, action) => panic!("unexpected eventaction {action}"),
        }
    }

    // A correction closes the object's registration (u) and inserts the registrations before
    // and after the change (i, i): where kommunekode changed, the two inserts of the same object
    // carry different municipality codes, which is how a subscriber sees the move.
    let mut per_object: HashMap<(i64, String), Vec<&Value>> = HashMap::new();
    for event in &events {
        let package = event["datafordelerRegisterImportSequenceNumber"]
            .as_i64()
            .unwrap();
        per_object
            .entry((package, event["object_id"].as_str().unwrap().to_owned()))
            .or_default()
            .push(event);
    }
    let mut corrections = 0;
    let mut moves = 0;
    for group in per_object
        .values()
        .filter(|g| g.iter().any(|e| e["eventaction"] == "u"))
    {
        if group[0]["entityname"] == "Civilstand" {
            continue;
        }
        corrections += 1;
        let actions: Vec<&str> = group
            .iter()
            .map(|e| e["eventaction"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["u", "i", "i"], "a correction is u, i, i");
        let (closed, before, after) = (group[0], group[1], group[2]);
        assert_eq!(
            new(closed),
            new(before),
            "the registration before the change keeps the old value"
        );
        assert_eq!(
            old(before),
            new(closed),
            "tidligere is the value before the package"
        );
        assert_eq!(
            old(after),
            new(closed),
            "tidligere is the value before the package"
        );
        if new(before) != new(after) {
            moves += 1;
            assert_ne!(
                new(after),
                old(after),
                "the move shows on one event: {}",
                after
            );
        }
    }
    assert!(
        corrections > 20,
        "only {corrections} Person/Adresse corrections"
    );
    assert!(
        moves > 0,
        "no correction of {corrections} changed kommunekode"
    );
    assert!(
        moves < corrections,
        "every one of {corrections} corrections changed kommunekode"
    );
}
