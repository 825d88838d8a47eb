//! `fordeler replica`: a real server on port 0 over a real PostgreSQL, replicas in real SQLite
//! files and a real PostgreSQL database, the client run in-process and as the `fordeler`
//! binary (killed with SIGKILL at random moments).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{TestDb, TestServer};
use fordeler::live::LiveConfig;
use fordeler::replica::{
    self, Credentials, Progress, ReplicaError, Source, SyncOptions, SyncReport, Target,
};
use sqlx::Row as _;

struct Quiet;

impl Progress for Quiet {
    fn update(&self, _: &SyncReport) {}
    fn notice(&self, _: &str) {}
}

fn quiet() -> Arc<dyn Progress> {
    Arc::new(Quiet)
}

fn source(server: &TestServer, register: &str) -> Source {
    Source::new(&server.base, register, &Credentials::None).unwrap()
}

fn sqlite_url(dir: &Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(name).display())
}

async fn sync_once(server: &TestServer, target: &Target, register: &str) -> SyncReport {
    replica::sync(
        &source(server, register),
        target,
        &SyncOptions::new(register),
        quiet(),
    )
    .await
    .unwrap()
}

async fn verify(server: &TestServer, target: &Target, register: &str) -> replica::VerifyReport {
    replica::verify(&source(server, register), target, register, 1000)
        .await
        .unwrap()
}

/// Every (row id, version, registreringTil, virkningTil) of an entity at the source, sorted.
async fn source_rows(db: &TestDb, register: &str, entity: &str) -> Vec<String> {
    let sql = format!(
        "SELECT \"datafordelerRowId\"::text || ' ' || \"datafordelerRowVersion\" || ' ' || \
         coalesce(to_char(\"registreringTil\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '-') \
         || ' ' || coalesce(to_char(\"virkningTil\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '-') \
         FROM reg_{}.{} ORDER BY 1",
        register.to_lowercase(),
        entity.to_lowercase()
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

/// The same, from a SQLite replica.
async fn replica_rows(url: &str, register: &str, entity: &str) -> Vec<String> {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    let sql = format!(
        "SELECT \"datafordelerRowId\" || ' ' || \"datafordelerRowVersion\" || ' ' || \
         coalesce(\"registreringTil\", '-') || ' ' || coalesce(\"virkningTil\", '-') \
         FROM {}_{} ORDER BY 1",
        register.to_lowercase(),
        entity.to_lowercase()
    );
    let rows = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows
}

async fn import_all(db: &TestDb, files: &[std::path::PathBuf]) {
    for file in files {
        db.import(file).await.unwrap();
    }
}

#[tokio::test]
async fn initial_and_incremental_syncs_into_sqlite_mirror_every_registration() {
    let db = TestDb::new().await;
    let files = db.generate("BBR", 4, 400, 11);
    import_all(&db, &files[..2]).await;
    let server = TestServer::start(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path(), "bbr.db");
    let target = Target::open(&url).await.unwrap();

    let first = sync_once(&server, &target, "BBR").await;
    let (_, head, _) = db.register_state("BBR").await;
    assert_eq!(first.checkpoint, head);
    assert_eq!(first.events, head as u64);
    assert!(first.rows_deleted > 0 || first.rows_written > 0);

    for files in [&files[2..3], &files[3..4]] {
        let before = db.register_state("BBR").await.1;
        import_all(&db, files).await;
        let report = sync_once(&server, &target, "BBR").await;
        let (_, head, _) = db.register_state("BBR").await;
        assert_eq!(report.checkpoint, head);
        assert_eq!(report.events, (head - before) as u64, "only the new events");
    }
    let events = db.events("BBR").await;
    assert!(
        events.iter().any(|e| e["eventaction"] == "d"),
        "the history has deletes"
    );
    assert!(
        events.iter().any(|e| e["eventaction"] == "u"),
        "and corrections"
    );

    target.close().await;
    for entity in ["Bygning", "Enhed", "Grund"] {
        assert_eq!(
            replica_rows(&url, "BBR", entity).await,
            source_rows(&db, "BBR", entity).await,
            "{entity}: every registration with its version and closing times"
        );
    }
    let target = Target::open(&url).await.unwrap();
    let report = verify(&server, &target, "BBR").await;
    assert!(report.identical, "{report:?}");
    assert!(report.entities.iter().any(|e| e.source.rows > 0));

    let again = sync_once(&server, &target, "BBR").await;
    assert_eq!(again.events, 0, "nothing new, nothing applied");
    server.stop().await;
}

#[tokio::test]
async fn a_postgresql_target_holds_the_same_rows_with_native_types() {
    let db = TestDb::new().await;
    import_all(&db, &db.generate("CVR", 3, 300, 5)).await;
    let server = TestServer::start(&db).await;
    let target_db = TestDb::new().await;
    let target = Target::open(&target_db.url).await.unwrap();
    let report = sync_once(&server, &target, "CVR").await;
    assert_eq!(report.checkpoint, db.register_state("CVR").await.1);
    let verified = verify(&server, &target, "CVR").await;
    assert!(verified.identical, "{verified:?}");

    let types: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name = 'cvr_cvrenhed' \
         AND column_name IN ('datafordelerRowId', 'registreringFra', 'datafordelerRowVersion')",
    )
    .fetch_all(&target_db.pool)
    .await
    .unwrap();
    assert!(
        types.contains(&("datafordelerRowId".into(), "uuid".into())),
        "{types:?}"
    );
    assert!(types.contains(&("registreringFra".into(), "timestamp with time zone".into())));
    assert!(types.contains(&("datafordelerRowVersion".into(), "bigint".into())));
    target.close().await;
    server.stop().await;
}

#[tokio::test]
async fn verify_finds_a_tampered_row_and_the_cli_exits_7() {
    let db = TestDb::new().await;
    import_all(&db, &db.generate("BBR", 2, 200, 3)).await;
    let server = TestServer::start(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path(), "bbr.db");
    let target = Target::open(&url).await.unwrap();
    sync_once(&server, &target, "BBR").await;
    target.close().await;

    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "UPDATE bbr_bygning SET \"status\" = 'tampered' WHERE \"datafordelerRowId\" = \
         (SELECT min(\"datafordelerRowId\") FROM bbr_bygning)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let output = fordeler(&[
        "replica",
        "verify",
        "--source",
        &server.base,
        "--register",
        "BBR",
    ])
    .arg("--target")
    .arg(&url)
    .output()
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let entities = report["verify"]["entities"].as_array().unwrap();
    let differing: Vec<_> = entities
        .iter()
        .filter(|e| e["identical"] == false)
        .map(|e| e["entity"].as_str().unwrap())
        .collect();
    assert_eq!(differing, ["Bygning"], "{stdout}");
    server.stop().await;
}

#[tokio::test]
async fn some_entities_only() {
    let db = TestDb::new().await;
    import_all(&db, &db.generate("BBR", 2, 300, 9)).await;
    let server = TestServer::start(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path(), "bbr.db");
    let target = Target::open(&url).await.unwrap();
    let options = SyncOptions {
        entities: vec!["Enhed".into()],
        ..SyncOptions::new("BBR")
    };
    let report = replica::sync(&source(&server, "BBR"), &target, &options, quiet())
        .await
        .unwrap();
    let enhed_events = db
        .events("BBR")
        .await
        .into_iter()
        .filter(|e| e["entityname"] == "Enhed")
        .count();
    assert_eq!(report.events, enhed_events as u64);
    let verified = verify(&server, &target, "BBR").await;
    assert!(verified.identical);
    let names: Vec<_> = verified
        .entities
        .iter()
        .map(|e| e.entity.as_str())
        .collect();
    assert_eq!(names, ["Enhed"]);

    let other = SyncOptions {
        entities: vec!["Bygning".into()],
        ..SyncOptions::new("BBR")
    };
    let refused = replica::sync(&source(&server, "BBR"), &target, &other, quiet())
        .await
        .unwrap_err();
    assert!(matches!(refused, ReplicaError::Usage(_)), "{refused}");
    let unknown = SyncOptions {
        entities: vec!["Nope".into()],
        ..SyncOptions::new("BBR")
    };
    let fresh = Target::open(&sqlite_url(dir.path(), "other.db"))
        .await
        .unwrap();
    let error = replica::sync(&source(&server, "BBR"), &fresh, &unknown, quiet())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no entity Nope") && error.contains("Bygning"),
        "{error}"
    );
    server.stop().await;
}

fn fast_live() -> LiveConfig {
    LiveConfig {
        publish_interval: Duration::from_millis(100),
        ..LiveConfig::default()
    }
}

async fn wait_for_checkpoint(target_url: &str, register: &str, eventid: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let target = Target::open(target_url).await.unwrap();
        let state = target.state(register).await.unwrap();
        target.close().await;
        if state.is_some_and(|s| s.checkpoint >= eventid) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica did not reach eventid {eventid}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn follow_applies_events_while_imports_run_and_survives_a_server_restart() {
    let db = TestDb::new().await;
    let files = db.generate("BBR", 8, 150, 21);
    import_all(&db, &files[..1]).await;
    let server = TestServer::start_live(&db, fast_live()).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path(), "bbr.db");
    let follower = {
        let (base, url) = (server.base.clone(), url.clone());
        tokio::spawn(async move {
            let source = Source::new(&base, "BBR", &Credentials::None).unwrap();
            let target = Target::open(&url).await.unwrap();
            let options = SyncOptions {
                follow: true,
                ..SyncOptions::new("BBR")
            };
            replica::sync(&source, &target, &options, quiet()).await
        })
    };
    for file in &files[1..4] {
        tokio::time::sleep(Duration::from_millis(150)).await;
        db.import(file).await.unwrap();
    }
    wait_for_checkpoint(&url, "BBR", db.register_state("BBR").await.1).await;

    // The server goes away; imports go on; a new server comes up on the same port.
    server.stop().await;
    import_all(&db, &files[4..6]).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let server = TestServer::start_live_at(&db, fast_live(), &addr).await;
    for file in &files[6..] {
        db.import(file).await.unwrap();
    }
    wait_for_checkpoint(&url, "BBR", db.register_state("BBR").await.1).await;
    assert!(!follower.is_finished(), "follow keeps going: {follower:?}");
    follower.abort();

    let target = Target::open(&url).await.unwrap();
    let report = verify(&server, &target, "BBR").await;
    assert!(report.identical, "{report:?}");
    server.stop().await;
}

fn fordeler(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_fordeler"));
    command
        .args(args)
        .env_remove("FORDELER_TOKEN")
        .env_remove("FORDELER_API_KEY")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn killed_with_sigkill_at_random_moments_the_replica_still_ends_identical() {
    let db = TestDb::new().await;
    let files = db.generate("BBR", 10, 1500, 33);
    import_all(&db, &files[..4]).await;
    let server = TestServer::start_live(&db, fast_live()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path(), "bbr.db");
    let args = [
        "replica",
        "sync",
        "--source",
        &server.base,
        "--register",
        "BBR",
        "--page-size",
        "200",
    ];
    // Imports go on while the client is killed and restarted, following, again and again.
    let importer = {
        let files = files[4..].to_vec();
        let db_url = db.url.clone();
        tokio::spawn(async move {
            let registry = common::sample_registry();
            for file in files {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let mut conn = fordeler::import::connect(&db_url).await.unwrap();
                fordeler::import::import_package(
                    &mut conn,
                    &registry,
                    &file,
                    &fordeler::import::Quiet,
                )
                .await
                .unwrap();
            }
        })
    };
    let mut kills = 0;
    for round in 0..8 {
        let mut child = fordeler(&args)
            .arg("--target")
            .arg(&url)
            .args(if round % 2 == 0 {
                &["--follow"][..]
            } else {
                &[][..]
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let wait = Duration::from_millis(100 + fastrand::u64(0..500));
        match tokio::time::timeout(wait, child.wait()).await {
            Ok(status) => assert!(status.unwrap().success()),
            Err(_) => {
                child.start_kill().unwrap();
                child.wait().await.unwrap();
                kills += 1;
            }
        }
    }
    assert!(kills > 0, "some runs were killed mid-way");
    importer.await.unwrap();
    let output = fordeler(&args)
        .arg("--target")
        .arg(&url)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");

    let target = Target::open(&url).await.unwrap();
    let state = target.state("BBR").await.unwrap().unwrap();
    assert_eq!(state.checkpoint, db.register_state("BBR").await.1);
    let report = verify(&server, &target, "BBR").await;
    assert!(report.identical, "{report:?}");
    target.close().await;

    let output = fordeler(&[
        "replica",
        "verify",
        "--source",
        &server.base,
        "--register",
        "BBR",
    ])
    .arg("--target")
    .arg(&url)
    .output()
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_reset_source_is_detected_with_a_clear_error() {
    let original = TestDb::new().await;
    import_all(&original, &original.generate("BBR", 3, 200, 1)).await;
    let server = TestServer::start(&original).await;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path(), "bbr.db");
    let target = Target::open(&url).await.unwrap();
    sync_once(&server, &target, "BBR").await;
    server.stop().await;

    // A rebuilt source with less history: the checkpoint is beyond its head.
    let shorter = TestDb::new().await;
    import_all(&shorter, &shorter.generate("BBR", 1, 200, 1)).await;
    let server = TestServer::start(&shorter).await;
    let error = replica::sync(
        &source(&server, "BBR"),
        &target,
        &SyncOptions::new("BBR"),
        quiet(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ReplicaError::Reset(_)), "{error}");
    assert!(error.to_string().contains("head"), "{error}");
    let output = fordeler(&[
        "replica",
        "sync",
        "--source",
        &server.base,
        "--register",
        "BBR",
    ])
    .arg("--target")
    .arg(&url)
    .output()
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(5), "{output:?}");
    server.stop().await;

    // A rebuilt source with as much history, but other rows.
    let other = TestDb::new().await;
    import_all(&other, &other.generate("BBR", 4, 200, 2)).await;
    let server = TestServer::start(&other).await;
    let error = replica::sync(
        &source(&server, "BBR"),
        &target,
        &SyncOptions::new("BBR"),
        quiet(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ReplicaError::Reset(_)), "{error}");
    target.close().await;
    server.stop().await;
}

#[tokio::test]
async fn unreachable_source_refused_access_and_schema_mismatch_get_their_own_exit_codes() {
    let db = TestDb::new().await;
    import_all(&db, &db.generate("CPR", 1, 50, 1)).await;
    import_all(&db, &db.generate("BBR", 1, 50, 1)).await;
    let server = TestServer::start(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path(), "r.db");

    let run = |source: String, register: &'static str| {
        let url = url.clone();
        async move {
            fordeler(&[
                "replica",
                "sync",
                "--source",
                &source,
                "--register",
                register,
            ])
            .arg("--target")
            .arg(&url)
            .output()
            .await
            .unwrap()
        }
    };
    // Port 9 (discard) on loopback: nothing listens there.
    let unreachable = fordeler(&[
        "replica",
        "sync",
        "--source",
        "http://127.0.0.1:9",
        "--register",
        "BBR",
    ])
    .arg("--target")
    .arg(&url)
    .env("FORDELER_LOG", "off")
    .output();
    let unreachable = tokio::time::timeout(Duration::from_secs(120), unreachable)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3), "{unreachable:?}");
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the source"));

    let forbidden = run(server.base.clone(), "CPR").await;
    assert_eq!(forbidden.status.code(), Some(4), "{forbidden:?}");
    assert!(String::from_utf8_lossy(&forbidden.stderr).contains("refused access"));

    let unknown = run(server.base.clone(), "XYZ").await;
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");

    let ok = run(server.base.clone(), "BBR").await;
    assert!(ok.status.success(), "{ok:?}");
    // The replica's stored schema no longer matches what the source serves.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let schema: String = sqlx::query("SELECT schema FROM fordeler_replica WHERE register = 'BBR'")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    let changed = schema.replacen(
        "\"columns\":[",
        "\"columns\":[{\"name\":\"gone\",\"ty\":\"text\"},",
        1,
    );
    sqlx::query("UPDATE fordeler_replica SET schema = ? WHERE register = 'BBR'")
        .bind(changed)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let mismatch = run(server.base.clone(), "BBR").await;
    assert_eq!(mismatch.status.code(), Some(6), "{mismatch:?}");
    assert!(String::from_utf8_lossy(&mismatch.stderr).contains("removed gone: String"));
    server.stop().await;
}

#[tokio::test]
async fn credentials_come_from_a_file_or_the_environment_never_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "  \n").unwrap();
    let error = Credentials::load(Some(&empty), None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("empty"), "{error}");
    let token = dir.path().join("token");
    std::fs::write(&token, "abc.def.ghi\n").unwrap();
    let loaded = Credentials::load(Some(&token), None).unwrap();
    assert!(matches!(&loaded, Credentials::Bearer(t) if t == "abc.def.ghi"));
    assert_eq!(format!("{loaded:?}"), "Bearer(<redacted>)");
    assert!(Credentials::load(Some(&token), Some(&token)).is_err());
    let missing = Credentials::load(None, Some(&dir.path().join("nope")))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("cannot read credentials"), "{missing}");

    let help = fordeler(&["replica", "sync", "--help"])
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--token-file") && !help.contains("--token <"),
        "{help}"
    );
}

#[tokio::test]
async fn a_protected_register_is_copied_with_an_api_key_from_the_environment_or_a_file() {
    let db = TestDb::new().await;
    import_all(&db, &db.generate("CPR", 2, 100, 8)).await;
    let server = TestServer::start(&db).await;
    let grants = fordeler::auth::Grants::parse("CPR:*").unwrap();
    let (key, _) = fordeler::auth::apikey::create(&db.pool, "replica", &grants, None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path(), "cpr.db");
    let args = [
        "replica",
        "sync",
        "--source",
        &server.base,
        "--register",
        "CPR",
    ];

    let anonymous = fordeler(&args)
        .arg("--target")
        .arg(&url)
        .output()
        .await
        .unwrap();
    assert_eq!(anonymous.status.code(), Some(4), "{anonymous:?}");

    let from_env = fordeler(&args)
        .arg("--target")
        .arg(&url)
        .env("FORDELER_API_KEY", &key)
        .output()
        .await
        .unwrap();
    assert!(from_env.status.success(), "{from_env:?}");

    let file = dir.path().join("key");
    std::fs::write(&file, format!("{key}\n")).unwrap();
    let verify = fordeler(&[
        "replica",
        "verify",
        "--source",
        &server.base,
        "--register",
        "CPR",
    ])
    .arg("--target")
    .arg(&url)
    .arg("--api-key-file")
    .arg(&file)
    .output()
    .await
    .unwrap();
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert!(
        report["verify"]["entities"][0]["source"]["rows"]
            .as_u64()
            .unwrap()
            > 0
    );
    server.stop().await;
}
