//! `fordeler serve` and `fordeler demo` as processes: they announce their address, answer, and
//! stop cleanly on SIGTERM; the demo keeps importing while it serves.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestDb;
use serde_json::{Value, json};

/// Starts `fordeler <args>` on the test database with its stdout and stderr piped.
fn spawn(db: &TestDb, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fordeler"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env(
            "FORDELER_REGISTERS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/registers"),
        )
        .env("FORDELER_DATA_DIR", db.dir.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads `stream` line by line until one contains `http://`; returns the base URL.
fn address(stream: impl std::io::Read + Send + 'static) -> String {
    capture(stream).0
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the process did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn last_eventid(base: &str) -> i64 {
    let body: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&json!({"query": "{ RegisterImportStatus(register: \"BBR\") { lastEventId } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"]["RegisterImportStatus"][0]["lastEventId"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn serve_answers_on_its_address_and_stops_cleanly_on_sigterm() {
    let db = TestDb::new().await;
    let mut child = spawn(&db, &["serve", "--listen", "127.0.0.1:0"]);
    let base = address(child.stderr.take().unwrap());

    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(last_eventid(&base).await, 0);

    assert!(terminate(&mut child).success());
}

#[tokio::test]
async fn the_demo_serves_and_keeps_importing_until_sigterm() {
    let db = TestDb::new().await;
    let mut child = spawn(
        &db,
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--packages",
            "1",
            "--rows",
            "50",
            "--import-every",
            "1s",
        ],
    );
    let base = address(child.stdout.take().unwrap());

    let first = last_eventid(&base).await;
    assert!(first > 0, "the demo imported BBR before serving");
    let deadline = Instant::now() + Duration::from_secs(60);
    while last_eventid(&base).await == first {
        assert!(
            Instant::now() < deadline,
            "no new BBR package was imported while serving"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert!(terminate(&mut child).success());
}

/// Reads `stream` into a shared buffer; returns the base URL once a line holds one.
fn capture(
    stream: impl std::io::Read + Send + 'static,
) -> (String, std::sync::Arc<std::sync::Mutex<String>>) {
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let line = line.unwrap_or_default();
            if let Some(at) = line.find("http://") {
                let url: String = line[at..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                let _ = tx.send(url.trim_end_matches("/graphql").to_owned());
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the process printed its address");
    (base, log)
}

#[tokio::test]
async fn an_api_key_in_the_url_never_reaches_the_log() {
    let db = TestDb::new().await;
    let grants = fordeler::auth::Grants::parse("CPR:*").unwrap();
    let (key, _) = fordeler::auth::apikey::create(&db.pool, "logs", &grants, None)
        .await
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fordeler"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", &db.url)
        .env(
            "FORDELER_REGISTERS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/registers"),
        )
        .env("FORDELER_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (base, log) = capture(child.stderr.take().unwrap());
    let query = "{ CPR_Person(first: 1) { nodes { datafordelerRowId } } }";
    for api_key in [
        key.as_str(),
        "fordeler_0190a1b2000070008000000000000001_wrongsecret",
    ] {
        let response = reqwest::Client::new()
            .get(format!("{base}/graphql"))
            .query(&[("query", query), ("apiKey", api_key)])
            .send()
            .await
            .unwrap();
        assert!(response.status() == 200 || response.status() == 401);
    }
    assert!(terminate(&mut child).success());
    std::thread::sleep(Duration::from_millis(200));
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains("status=401"),
        "the refused request was logged: {log}"
    );
    assert!(log.contains("credential refused"), "with its reason: {log}");
    let secret = key.rsplit('_').next().unwrap();
    assert!(!log.contains(secret), "the key leaked into the log: {log}");
    assert!(
        !log.contains("wrongsecret"),
        "the bad key leaked into the log: {log}"
    );
}
