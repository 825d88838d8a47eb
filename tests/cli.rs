//! The `fordeler` binary's contract for scripts: exit codes, `--json` output, `status --json`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{TestDb, bygning, uuid};
use serde_json::Value;

fn fordeler(db: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fordeler"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env(
            "FORDELER_REGISTERS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("registers"),
        )
        .output()
        .unwrap()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

#[tokio::test]
async fn import_json_reports_each_package_and_the_totals() {
    let db = TestDb::new().await;
    let one = db.package("BBR", 1, &[bygning("k1", &uuid(1), "0101")]);
    let two = db.package("BBR", 2, &[bygning("k2", &uuid(2), "0101")]);
    // Given out of order: imported in sequence order.
    let output = fordeler(
        &db,
        &[
            "import",
            "--json",
            two.to_str().unwrap(),
            one.to_str().unwrap(),
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json(&output);
    let sequences: Vec<i64> = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2]);
    assert_eq!(report["totals"]["events"], 2);
    assert_eq!(report["error"], Value::Null);
    assert_eq!(report["packages"][1]["first_eventid"], 2);
}

#[tokio::test]
async fn import_exit_codes_tell_invalid_gap_and_conflict_apart() {
    let db = TestDb::new().await;
    let one = db.package("BBR", 1, &[bygning("k1", &uuid(1), "0101")]);
    assert_eq!(
        fordeler(&db, &["import", one.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        fordeler(&db, &["import", one.to_str().unwrap()])
            .status
            .code(),
        Some(0),
        "already imported"
    );

    let gap = db.package("BBR", 3, &[bygning("k3", &uuid(3), "0101")]);
    let output = fordeler(&db, &["import", "--json", gap.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(json(&output)["error"]["kind"], "gap");

    let other = db.package("BBR", 1, &[bygning("k1", &uuid(1), "0147")]);
    assert_eq!(
        fordeler(&db, &["import", other.to_str().unwrap()])
            .status
            .code(),
        Some(5)
    );

    let mut bad = bygning("k2", &uuid(2), "0101");
    bad["attributes"]["byg026Opfoerelsesaar"] = Value::from("x");
    let invalid = db.package("BBR", 2, &[bad]);
    let output = fordeler(&db, &["import", invalid.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(":2: field \"attributes.byg026Opfoerelsesaar\""),
        "{stderr}"
    );

    let missing = fordeler(&db, &["import", "/nonexistent/package.ndjson"]);
    assert_eq!(
        missing.status.code(),
        Some(3),
        "an unreadable package is refused"
    );
    assert_eq!(
        fordeler(&db, &["import"]).status.code(),
        Some(2),
        "usage error"
    );
}

#[tokio::test]
async fn status_json_has_one_object_per_register() {
    let db = TestDb::new().await;
    let one = db.package(
        "CPR",
        1,
        &[
            serde_json::json!({"entity": "Person", "op": "upsert", "key": "p1",
        "registreringFra": "2026-01-01T00:00:00Z", "virkningFra": "1990-01-01T00:00:00Z",
        "attributes": {"personnummer": "0101901234", "kommunekode": "0101"}}),
        ],
    );
    assert!(
        fordeler(&db, &["import", one.to_str().unwrap()])
            .status
            .success()
    );
    let output = fordeler(&db, &["status", "--json"]);
    assert!(output.status.success());
    let status = json(&output);
    let registers: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["register"].as_str().unwrap())
        .collect();
    assert_eq!(registers, ["BBR", "CPR", "CVR"]);
    let cpr = &status[1];
    assert_eq!(
        (
            cpr["last_sequence"].as_i64(),
            cpr["last_eventid"].as_i64(),
            cpr["rows"].as_i64(),
            cpr["events"].as_i64()
        ),
        (Some(1), Some(1), Some(1), Some(1))
    );
}

#[tokio::test]
async fn check_validates_without_a_database() {
    let db = TestDb::new().await;
    let good = db.package("BBR", 1, &[bygning("k1", &uuid(1), "0101")]);
    let mut row = bygning("k2", &uuid(2), "0101");
    row["entity"] = Value::from("Bygnig");
    let bad = db.package("BBR", 2, &[row]);
    let run = |file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_fordeler"))
            .args(["check"])
            .arg(file)
            .env(
                "FORDELER_REGISTERS",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("registers"),
            )
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .output()
            .unwrap()
    };
    let output = run(&good);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("valid BBR package 1: 1 rows"));
    let output = run(&bad);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains(":2: field \"entity\": unknown entity \"Bygnig\"")
    );
}

#[tokio::test]
async fn the_demo_imports_the_next_packages_on_every_run_whatever_rows_it_is_given() {
    let db = TestDb::new().await;
    let data_dir = db.dir.path().join("state");
    let data_dir = data_dir.to_str().unwrap();
    let first = fordeler(
        &db,
        &[
            "demo",
            "--no-serve",
            "--data-dir",
            data_dir,
            "--packages",
            "2",
            "--rows",
            "100",
        ],
    );
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // A later run with other --rows continues the imported history instead of breaking it.
    let second = fordeler(
        &db,
        &[
            "demo",
            "--no-serve",
            "--data-dir",
            data_dir,
            "--packages",
            "1",
            "--rows",
            "300",
        ],
    );
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        String::from_utf8_lossy(&second.stdout)
            .contains("continuing the imported history of 100 rows per package")
    );
    let status = json(&fordeler(&db, &["status", "--json"]));
    for register in status.as_array().unwrap() {
        assert_eq!(register["last_sequence"], 3, "{register}");
    }
}
