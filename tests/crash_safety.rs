//! Killing the importer (SIGKILL) at any moment leaves all or nothing of a package, and a rerun
//! completes it: the store ends identical to a clean import.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestDb;
use fordeler::generate::{GenerateOptions, generate};

/// Several batches per package, so that kills land between them too.
const BATCH_ROWS: u64 = 4_000;

fn importer(db: &TestDb, file: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fordeler"));
    command
        .args(["import", "--json", "--batch-rows", &BATCH_ROWS.to_string()])
        .arg(file)
        .env("DATABASE_URL", &db.url)
        .env(
            "FORDELER_REGISTERS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("registers"),
        )
        .env("FORDELER_LOG", "fordeler=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Runs the importer on `file`, kills it with SIGKILL `delay` after it logs `phase`, and returns
/// whether the kill happened before the process ended by itself.
fn kill_at(db: &TestDb, file: &Path, phase: &str, delay: Duration) -> bool {
    let mut child = importer(db, file).spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let marker = format!("phase=\"{phase}\"");
    let mut reached = false;
    for line in stderr.lines() {
        if line.unwrap().contains(&marker) {
            reached = true;
            break;
        }
    }
    assert!(reached, "the importer never reached phase {phase}");
    std::thread::sleep(delay);
    let killed = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    killed
}

/// Asserts two fingerprints are equal, reporting only the first difference.
fn assert_same(actual: &[String], expected: &[String], context: &str) {
    let first = actual.iter().zip(expected).position(|(a, e)| a != e);
    assert!(
        first.is_none() && actual.len() == expected.len(),
        "{context}: {} vs {} entries; first difference at {first:?}: {:?} vs {:?}",
        actual.len(),
        expected.len(),
        first.map(|i| &actual[i]),
        first.map(|i| &expected[i]),
    );
}

fn packages(dir: &Path, rows: u64) -> Vec<PathBuf> {
    let registry = common::sample_registry();
    let options = GenerateOptions {
        packages: 2,
        rows,
        seed: 11,
        start_seq: 1,
        out: dir.to_path_buf(),
        gzip: true,
    };
    generate(registry.get("BBR").unwrap(), &options).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_killed_at_any_phase_then_rerun_equals_a_clean_import() {
    let clean = TestDb::new().await;
    let files = packages(clean.dir.path(), 30_000);
    for file in &files {
        clean.import_in_batches(file, BATCH_ROWS).await.unwrap();
    }
    let expected = clean.fingerprint("BBR").await;

    let crashed = TestDb::new().await;
    crashed
        .import_in_batches(&files[0], BATCH_ROWS)
        .await
        .unwrap();
    let before = crashed.fingerprint("BBR").await;
    let kills = [
        ("staging", Duration::from_millis(0)),
        ("staging", Duration::from_millis(400)),
        ("applying", Duration::from_millis(0)),
        ("applying", Duration::from_millis(150)),
        ("committing", Duration::from_millis(0)),
    ];
    for (phase, delay) in kills {
        let killed = kill_at(&crashed, &files[1], phase, delay);
        crashed.wait_for_other_sessions().await;
        let after = crashed.fingerprint("BBR").await;
        if killed && after != before {
            // The kill landed after COMMIT reached the server: the package is whole.
            assert_same(
                &after,
                &expected,
                &format!("killed at {phase}+{delay:?}: all or nothing"),
            );
            break;
        }
        assert_same(
            &after,
            &before,
            &format!("killed at {phase}+{delay:?}: nothing of the package applied"),
        );
    }
    let status = importer(&crashed, &files[1]).status().unwrap();
    assert!(status.success(), "the rerun completes the package");
    assert_same(
        &crashed.fingerprint("BBR").await,
        &expected,
        "after the rerun",
    );
}
