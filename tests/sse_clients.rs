//! Subscriptions with real third-party SSE clients: the graphql-sse npm client
//! (`tests/browser/graphql-sse.mjs`, under node) and a browser's own `EventSource` in headless
//! Chromium (`tests/browser/eventsource.mjs`, driven by playwright-core), against the real
//! server over a real PostgreSQL while packages are imported. Needs `node` and Chromium
//! (`scripts/install-deps.sh` installs both) and the npm registry on first run
//! (`scripts/graphiql-assets.sh`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::node::{chromium, require_node, require_node_and_chromium, root, run};
use common::{TestDb, TestServer, bygning, delete};
use fordeler::live::LiveConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// The node_modules directory with graphql-sse and playwright-core, installed on demand (once:
/// the tests of this file run at the same time, and two npm installs into one directory clash).
async fn node_modules() -> PathBuf {
    static INSTALLED: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    INSTALLED.get_or_init(install_node_modules).await.clone()
}

async fn install_node_modules() -> PathBuf {
    let (ok, out, err) = run(
        &mut Command::new("scripts/graphiql-assets.sh"),
        Duration::from_secs(600),
    )
    .await;
    assert!(ok, "scripts/graphiql-assets.sh failed:\n{out}{err}");
    let dir = PathBuf::from(out.lines().last().unwrap_or_default().trim());
    for package in ["graphql-sse", "playwright-core"] {
        assert!(
            dir.join(package).join("package.json").is_file(),
            "scripts/graphiql-assets.sh did not install {package} (printed {}):\n{out}{err}",
            dir.display()
        );
    }
    dir
}

/// A node script running alongside the test: its stdout is read line by line as it comes, so
/// the test can wait for `READY` before it imports.
struct Script {
    name: &'static str,
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    stdout: Vec<String>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Script {
    /// Starts `command` in the repository root.
    fn start(name: &'static str, command: &mut Command) -> Self {
        let mut child = command
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text).await;
            text
        });
        Self {
            name,
            child,
            lines,
            stdout: Vec::new(),
            stderr,
        }
    }

    /// Waits up to `limit` for a stdout line equal to `wanted`.
    async fn wait_for_line(&mut self, wanted: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let found = line.trim() == wanted;
                    self.stdout.push(line);
                    if found {
                        return;
                    }
                }
                Ok(None) => {
                    let (_, out, err) = self.finish(Duration::from_secs(5)).await;
                    panic!("{} ended before printing {wanted}:\n{out}{err}", self.name);
                }
                Err(_) => {
                    let _ = self.child.start_kill();
                    let (_, out, err) = self.finish(Duration::from_secs(5)).await;
                    panic!(
                        "{} printed no {wanted} within {limit:?}:\n{out}{err}",
                        self.name
                    );
                }
            }
        }
    }

    /// Waits up to `limit` for the script to exit (killing it after); returns (success, all of
    /// stdout, stderr).
    async fn finish(&mut self, limit: Duration) -> (bool, String, String) {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.map(|s| s.success()).unwrap_or(false),
            Err(_) => {
                let _ = self.child.kill().await;
                self.stdout
                    .push(format!("({} did not finish in {limit:?})", self.name));
                false
            }
        };
        // The reader ends with the pipe; whatever it still holds is the rest of stdout.
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(5), self.lines.recv()).await
        {
            self.stdout.push(line);
        }
        let stderr = tokio::time::timeout(Duration::from_secs(5), &mut self.stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        (status, self.stdout.join("\n") + "\n", stderr)
    }
}

/// The last line of a script's stdout, its JSON report.
fn report(name: &str, out: &str, err: &str) -> Value {
    let last = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{name} printed no JSON report ({e}):\n{out}{err}"))
}

/// Publishes as soon as an import commits.
fn immediate() -> LiveConfig {
    LiveConfig {
        publish_interval: Duration::ZERO,
        ..LiveConfig::default()
    }
}

/// Imports BBR package `seq` with `rows` (one event each); returns the number of rows.
async fn import(db: &TestDb, seq: i64, rows: &[Value]) -> usize {
    db.import(&db.package("BBR", seq, rows)).await.unwrap();
    rows.len()
}

/// Bygning upserts of keys `sse{k}` for `keys`, in `kommunekode`.
fn bygninger(keys: std::ops::Range<u32>, kommunekode: &str) -> Vec<Value> {
    keys.map(|k| bygning(&format!("sse{k}"), &common::uuid(k), kommunekode))
        .collect()
}

/// (eventid, entityname, eventaction) of each event.
fn triples<'a>(events: impl IntoIterator<Item = &'a Value>) -> Vec<(i64, String, String)> {
    events
        .into_iter()
        .map(|e| {
            (
                e["eventid"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("no eventid in {e}")),
                e["entityname"].as_str().unwrap_or_default().to_owned(),
                e["eventaction"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn graphql_sse_client_receives_every_event() {
    require_node().await;
    let modules = node_modules().await;
    let db = TestDb::new().await;
    let server = TestServer::start_live(&db, immediate()).await;
    let url = format!("{}/graphql", server.base);

    // A first, realistic package (all BBR entities) before the client subscribes: replayed.
    for file in db.generate("BBR", 1, 200, 11) {
        db.import(&file).await.unwrap();
    }
    let before = db.events("BBR").await.len();
    assert!(before > 0, "the generated package wrote no events");

    // Then inserts, updates, deletes and a large package while it listens, one event per row.
    let later: Vec<Vec<Value>> = vec![
        bygninger(0..5, "0101"),
        [
            bygninger(0..2, "0202"),
            vec![bygning("sse5", &common::uuid(5), "0101")],
        ]
        .concat(),
        vec![delete("Bygning", "sse2"), delete("Bygning", "sse3")],
        bygninger(100..400, "0751"),
    ];
    let count = before + later.iter().map(Vec::len).sum::<usize>();

    let mut client = Script::start(
        "tests/browser/graphql-sse.mjs",
        Command::new("node")
            .arg("tests/browser/graphql-sse.mjs")
            .arg(&url)
            .arg(count.to_string())
            .arg("--modules")
            .arg(&modules),
    );
    client.wait_for_line("READY", Duration::from_secs(30)).await;
    for (seq, rows) in (2..).zip(&later) {
        import(&db, seq, rows).await;
    }
    let (ok, out, err) = client.finish(Duration::from_secs(45)).await;
    assert!(ok, "the graphql-sse client failed:\n{out}{err}");
    let got = report("tests/browser/graphql-sse.mjs", &out, &err);
    println!("{err}");

    let stored = db.events("BBR").await;
    assert_eq!(
        stored.len(),
        count,
        "the imports wrote other than one event per row"
    );
    let got = triples(got["events"].as_array().unwrap());
    let want = triples(&stored);
    let ids: Vec<i64> = got.iter().map(|t| t.0).collect();
    let count = i64::try_from(count).unwrap();
    assert_eq!(
        ids,
        (1..=count).collect::<Vec<_>>(),
        "the client got other eventids than 1..={count}, once each, in order"
    );
    assert_eq!(got, want, "the client's events differ from the database's");
    let actions: std::collections::BTreeSet<&str> = got.iter().map(|t| t.2.as_str()).collect();
    assert_eq!(
        actions,
        ["d", "i", "u"].into(),
        "the history has inserts, updates and deletes"
    );

    // A request error reaches the client as a result holding the errors, then the stream
    // completes.
    let (ok, out, err) = run(
        Command::new("node")
            .arg("tests/browser/graphql-sse.mjs")
            .arg(&url)
            .arg("1")
            .arg("--query")
            .arg("subscription { BBR_Events { eventid nosuchfield } }")
            .arg("--variables")
            .arg("{}")
            .arg("--modules")
            .arg(&modules),
        Duration::from_secs(45),
    )
    .await;
    assert!(!ok, "the client accepted an invalid query:\n{out}{err}");
    let failed = report("tests/browser/graphql-sse.mjs", &out, &err);
    assert_eq!(
        failed["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{out}{err}"
    );
    let message = failed["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nosuchfield"), "{failed}");
    assert_eq!(
        failed["completed"], true,
        "the stream did not complete after the errors: {failed}"
    );
    server.stop().await;
}

#[tokio::test]
async fn browser_event_source_resumes_with_last_event_id() {
    require_node_and_chromium().await;
    let modules = node_modules().await;
    let db = TestDb::new().await;
    // Short streams and a short retry: the EventSource reconnects by itself every ~1.7 s.
    let live = LiveConfig {
        publish_interval: Duration::ZERO,
        stream_limit: Duration::from_millis(1500),
        retry: Duration::from_millis(200),
        ..LiveConfig::default()
    };
    let server = TestServer::start_live(&db, live).await;
    // 2 events before the browser subscribes (replayed: `gt: 0`), then 8 packages of 3.
    let mut count = import(&db, 1, &bygninger(0..2, "0101")).await;
    let packages: Vec<Vec<Value>> = (1..=8)
        .map(|p| bygninger(p * 10..p * 10 + 3, "0147"))
        .collect();
    count += packages.iter().map(Vec::len).sum::<usize>();

    let mut browser = Script::start(
        "tests/browser/eventsource.mjs",
        Command::new("node")
            .arg("tests/browser/eventsource.mjs")
            .arg(&server.base)
            .arg(count.to_string())
            .arg(&modules)
            .env("CHROMIUM", chromium()),
    );
    browser
        .wait_for_line("READY", Duration::from_secs(45))
        .await;
    // Imports spread over several streams, so some land while the browser reconnects.
    for (seq, rows) in (2..).zip(&packages) {
        import(&db, seq, rows).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let (ok, out, err) = browser.finish(Duration::from_secs(45)).await;
    assert!(ok, "the EventSource browser test failed:\n{out}{err}");
    let got = report("tests/browser/eventsource.mjs", &out, &err);
    println!("{err}");

    let want: Vec<i64> = db
        .events("BBR")
        .await
        .iter()
        .map(|e| e["eventid"].as_i64().unwrap())
        .collect();
    assert_eq!(want.len(), count);
    let events = got["events"].as_array().unwrap();
    let ids: Vec<i64> = events
        .iter()
        .map(|e| {
            e["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("a next message without a numeric id: {e}"))
        })
        .collect();
    assert_eq!(
        ids, want,
        "the browser got other events than the database's, once each, in order:\n{err}"
    );
    for event in events {
        let id: i64 = event["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            event["data"],
            json!({"data": {"BBR_Events": {"eventid": id}}}),
            "message id {id}"
        );
    }
    let completes = got["completes"].as_u64().unwrap();
    let opens = got["opens"].as_u64().unwrap();
    // Each stream ran to its limit and completed; the EventSource reconnected after each.
    assert!(
        completes >= 2 && opens >= 3,
        "{completes} completes and {opens} opens: expected at least 2 reconnects:\n{err}"
    );
    assert!(
        opens == completes || opens == completes + 1,
        "{opens} opens for {completes} completes:\n{err}"
    );
    assert!(got["unexpected"].as_array().unwrap().is_empty(), "{got}");

    // Every reconnect sent the id of the last event it had, never going back.
    let sent: Vec<Option<i64>> = got["lastEventIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().map(|s| s.parse().unwrap()))
        .collect();
    assert_eq!(
        sent.first(),
        Some(&None),
        "the first request has no Last-Event-ID: {sent:?}"
    );
    let resumed: Vec<i64> = sent.iter().flatten().copied().collect();
    assert!(
        resumed.len() >= 2,
        "fewer than 2 requests carried Last-Event-ID: {sent:?}"
    );
    assert!(
        resumed.windows(2).all(|w| w[0] <= w[1]),
        "Last-Event-ID went back: {sent:?}"
    );
    assert!(
        resumed.iter().all(|id| want.contains(id)),
        "Last-Event-ID not an eventid: {sent:?}"
    );
    assert_eq!(
        resumed.last(),
        want.last(),
        "the last reconnect resumed after the last event: {sent:?}"
    );
    server.stop().await;
}
