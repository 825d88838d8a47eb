//! Shared test harness: a fresh database per test on a real PostgreSQL (the one at
//! `DATABASE_URL`, else fordeler's embedded cluster under `target/`), the sample registers, and
//! helpers to write packages and read events back.
#![allow(dead_code, clippy::unwrap_used)]

pub mod node;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fordeler::import::{self, ImportError, PackageSummary, Quiet};
use fordeler::registry::{self, Registry};
use serde_json::{Value, json};
use sqlx::PgPool;

/// The server's admin URL: `DATABASE_URL`, or the embedded test cluster (started once).
pub fn admin_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return url;
        }
        let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-pg");
        let cluster = fordeler::embedded::Cluster::new(&base).expect("embedded cluster");
        cluster.start().expect("start the embedded test cluster");
        cluster.url()
    })
    .clone()
}

/// The URL of database `name` on the admin server.
fn database_url(name: &str) -> String {
    url_lite::Url::parse(&admin_url()).with(name)
}

/// A fresh, migrated database with the sample registers; dropped when the test ends.
pub struct TestDb {
    /// Database name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// A small pool on it.
    pub pool: PgPool,
    /// The sample registers.
    pub registry: Registry,
    /// A directory for package files, removed with the test.
    pub dir: tempfile::TempDir,
}

/// The sample register definitions of `registers/`.
pub fn sample_registry() -> Registry {
    registry::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("registers")).unwrap()
}

impl TestDb {
    /// Creates the database, applies migrations and syncs the sample registers.
    pub async fn new() -> Self {
        let name = format!("fordeler_test_{}", uuid::Uuid::now_v7().simple());
        let admin = fordeler::store::connect(&admin_url(), 1).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let url = database_url(&name);
        let pool = fordeler::store::connect(&url, 8).await.unwrap();
        let registry = sample_registry();
        fordeler::store::migrate(&pool).await.unwrap();
        fordeler::store::sync_registers(&pool, &registry)
            .await
            .unwrap();
        Self {
            name,
            url,
            pool,
            registry,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Imports one package file through the library, on a fresh importer connection.
    pub async fn import(&self, path: &Path) -> Result<PackageSummary, ImportError> {
        let mut conn = import::connect(&self.url).await.unwrap();
        import::import_package(&mut conn, &self.registry, path, &Quiet).await
    }

    /// [`TestDb::import`], applying `batch_rows` rows per batch.
    pub async fn import_in_batches(
        &self,
        path: &Path,
        batch_rows: u64,
    ) -> Result<PackageSummary, ImportError> {
        let mut conn = import::connect(&self.url).await.unwrap();
        let options = import::ImportOptions { batch_rows };
        import::import_package_with(&mut conn, &self.registry, path, &Quiet, &options).await
    }

    /// Generates `packages` packages of `register`'s synthetic history (from sequence 1) into
    /// the test directory; returns their files in sequence order.
    pub fn generate(&self, register: &str, packages: u64, rows: u64, seed: u64) -> Vec<PathBuf> {
        let definition = self.registry.get(register).unwrap();
        let options = fordeler::generate::GenerateOptions {
            packages,
            rows,
            seed,
            start_seq: 1,
            out: self.dir.path().to_path_buf(),
            gzip: false,
        };
        fordeler::generate::generate(definition, &options).unwrap()
    }

    /// Writes a package (header + rows) as plain NDJSON into the test directory.
    pub fn package(&self, register: &str, sequence: i64, rows: &[Value]) -> PathBuf {
        let path = self.dir.path().join(format!(
            "{register}-{sequence:08}-{}.ndjson",
            uuid::Uuid::now_v7().simple()
        ));
        write_package(&path, register, sequence, rows);
        path
    }

    /// All events of `register`, in eventid order, as JSON objects (Datafordeler field names).
    pub async fn events(&self, register: &str) -> Vec<Value> {
        let mut conn = self.pool.acquire().await.unwrap();
        events_on(&mut conn, register).await
    }

    /// Number of rows in one entity table.
    pub async fn count_rows(&self, register: &str, entity: &str) -> i64 {
        let sql = format!(
            "SELECT count(*) FROM reg_{}.{}",
            register.to_lowercase(),
            entity.to_lowercase()
        );
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// The register's (last_sequence, last_eventid, row_count).
    pub async fn register_state(&self, register: &str) -> (i64, i64, i64) {
        sqlx::query_as(
            "SELECT last_sequence, last_eventid, row_count FROM registers WHERE name = $1",
        )
        .bind(register)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// A canonical dump of everything an import writes for `register` (events without the
    /// write time, rows without fordeler's row ids), for comparing two stores.
    /// Read in one REPEATABLE READ snapshot, so a commit landing meanwhile is seen whole or not.
    pub async fn fingerprint(&self, register: &str) -> Vec<String> {
        let mut tx = self.pool.begin().await.unwrap();
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await
            .unwrap();
        let mut out: Vec<String> = events_on(&mut tx, register)
            .await
            .into_iter()
            .map(|mut e| {
                e.as_object_mut()
                    .unwrap()
                    .remove("object_datafordelerRowId");
                e.to_string()
            })
            .collect();
        let reg = self.registry.get(register).unwrap();
        for entity in &reg.entities {
            let sql = format!(
                "SELECT to_jsonb(t) - 'datafordelerRowId' - 'datafordelerOpdateringstid' FROM {} t ORDER BY rowkey",
                entity.table_name(reg)
            );
            let rows: Vec<(Value,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            out.extend(rows.into_iter().map(|(v,)| format!("{}:{v}", entity.name)));
        }
        let state: (i64, i64, i64) = sqlx::query_as(
            "SELECT last_sequence, last_eventid, row_count FROM registers WHERE name = $1",
        )
        .bind(register)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        out.push(format!("{state:?}"));
        out
    }

    /// Waits until no other session is connected to this database (a killed client's backend
    /// has finished rolling back or committing).
    pub async fn wait_for_other_sessions(&self) {
        for _ in 0..600 {
            let others: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                 AND pid <> pg_backend_pid() AND application_name = 'fordeler' AND state <> 'idle'",
            )
            .fetch_one(&self.pool)
            .await
            .unwrap();
            if others == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("another session stayed busy for 30 s");
    }
}

async fn events_on(conn: &mut sqlx::PgConnection, register: &str) -> Vec<Value> {
    let rows: Vec<(Value,)> = sqlx::query_as(
        "SELECT jsonb_build_object(
            'eventid', e.eventid, 'entityname', e.entityname, 'eventaction', e.eventaction,
            'datafordelerRegisterImportSequenceNumber', e.datafordeler_import_sequence,
            'fromfailedimport', e.fromfailedimport, 'object_id', e.object_id,
            'object_datafordelerRowId', e.object_datafordeler_rowid,
            'object_datafordelerRowVersion', e.object_datafordeler_rowversion,
            'object_registreringfra', e.object_registreringfra, 'object_registreringtil', e.object_registreringtil,
            'object_status', e.object_status, 'object_virkningfra', e.object_virkningfra,
            'object_virkningtil', e.object_virkningtil) || coalesce(e.extra, '{}')
         FROM events e JOIN registers r USING (register_id) WHERE r.name = $1 ORDER BY e.eventid",
    )
    .bind(register)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    rows.into_iter().map(|(v,)| v).collect()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop the database on a thread of its own: Drop cannot await.
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(admin) = fordeler::store::connect(&admin_url(), 1).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// Writes a plain NDJSON package.
pub fn write_package(path: &Path, register: &str, sequence: i64, rows: &[Value]) {
    let header = json!({"format": "fordeler-package/1", "register": register, "sequence": sequence,
        "created": "2026-01-01T00:00:00Z", "rows": rows.len()});
    let mut text = header.to_string();
    text.push('\n');
    for row in rows {
        text.push_str(&row.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// A valid BBR Bygning upsert with the given key, object id, and kommunekode.
pub fn bygning(key: &str, object: &str, kommunekode: &str) -> Value {
    json!({"entity": "Bygning", "op": "upsert", "key": key,
        "registreringFra": "2026-01-01T00:00:00Z", "virkningFra": "2020-01-01T00:00:00Z",
        "status": "gældende",
        "attributes": {"id_lokalId": object, "kommunekode": kommunekode, "byg026Opfoerelsesaar": 1932}})
}

/// (eventaction, object_kommunekodenuvaerende, object_kommunekodetidligere) of CPR events.
pub fn municipality_fields(events: &[Value]) -> Vec<(String, Value, Value)> {
    events
        .iter()
        .map(|e| {
            let action = e["eventaction"].as_str().unwrap().to_owned();
            (
                action,
                e["object_kommunekodenuvaerende"].clone(),
                e["object_kommunekodetidligere"].clone(),
            )
        })
        .collect()
}

/// A delete row.
pub fn delete(entity: &str, key: &str) -> Value {
    json!({"entity": entity, "op": "delete", "key": key})
}

/// A UUID built from a small number, for readable test object ids.
pub fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Minimal URL editing (replace the database name) without another dependency.
mod url_lite {
    pub struct Url {
        before: String,
        after: String,
    }

    impl Url {
        pub fn parse(url: &str) -> Self {
            let scheme_end = url.find("://").map_or(0, |i| i + 3);
            let path_start = url[scheme_end..].find('/').map(|i| i + scheme_end);
            let query_start = url.find('?');
            match path_start {
                Some(p) => {
                    let end = query_start.unwrap_or(url.len());
                    Url {
                        before: url[..p].to_owned(),
                        after: url[end..].to_owned(),
                    }
                }
                None => match query_start {
                    Some(q) => Url {
                        before: url[..q].to_owned(),
                        after: url[q..].to_owned(),
                    },
                    None => Url {
                        before: url.to_owned(),
                        after: String::new(),
                    },
                },
            }
        }

        pub fn with(&self, name: &str) -> String {
            format!("{}/{name}{}", self.before, self.after)
        }
    }
}

/// The real server (`fordeler serve`'s router) on 127.0.0.1, port 0, over a [`TestDb`].
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// An HTTP client.
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts the server with default limits.
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with(
            db,
            fordeler::graphql::Limits::default(),
            fordeler::http::HttpConfig::default(),
        )
        .await
    }

    /// Starts the server with the given limits and HTTP settings.
    pub async fn start_with(
        db: &TestDb,
        limits: fordeler::graphql::Limits,
        config: fordeler::http::HttpConfig,
    ) -> Self {
        Self::start_full(db, limits, config, fordeler::live::LiveConfig::default()).await
    }

    /// Starts the server with the given subscription settings.
    pub async fn start_live(db: &TestDb, live: fordeler::live::LiveConfig) -> Self {
        let http = fordeler::http::HttpConfig::default();
        Self::start_full(db, fordeler::graphql::Limits::default(), http, live).await
    }

    /// Starts the server with every setting given.
    pub async fn start_full(
        db: &TestDb,
        limits: fordeler::graphql::Limits,
        config: fordeler::http::HttpConfig,
        live: fordeler::live::LiveConfig,
    ) -> Self {
        Self::start_bound(db, limits, config, live, "127.0.0.1:0").await
    }

    /// Starts the server with the given subscription settings on `addr` (to restart one on
    /// the port it had).
    pub async fn start_live_at(db: &TestDb, live: fordeler::live::LiveConfig, addr: &str) -> Self {
        let http = fordeler::http::HttpConfig::default();
        Self::start_bound(db, fordeler::graphql::Limits::default(), http, live, addr).await
    }

    async fn start_bound(
        db: &TestDb,
        limits: fordeler::graphql::Limits,
        config: fordeler::http::HttpConfig,
        live: fordeler::live::LiveConfig,
        addr: &str,
    ) -> Self {
        let api = fordeler::graphql::Api::with_live(
            db.pool.clone(),
            std::sync::Arc::new(db.registry.clone()),
            limits,
            live,
            fordeler::metrics::Metrics::new(),
        );
        let router = fordeler::http::router(fordeler::http::AppState::new(&api, config).unwrap());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let hub = api.live().clone();
        let task = tokio::spawn(fordeler::http::serve(listener, router, async move {
            let _ = rx.await;
            hub.close();
        }));
        Self {
            base,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Opens an event stream: POSTs `query` accepting `text/event-stream`, with `Last-Event-ID`
    /// when given.
    pub async fn subscribe(
        &self,
        query: &str,
        variables: Value,
        last_event_id: Option<i64>,
    ) -> Sse {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.base))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&json!({"query": query, "variables": variables}));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        Sse::new(request.send().await.unwrap())
    }

    /// Asks for the server's shutdown without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// POSTs a GraphQL request; returns the HTTP status and the JSON body.
    pub async fn post(&self, query: &str, variables: Value) -> (reqwest::StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    /// POSTs a query that must succeed; returns its `data`.
    pub async fn data(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(query, variables).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// POSTs a query that must fail; returns its first error's `extensions.code`.
    pub async fn error_code(&self, query: &str, variables: Value) -> String {
        let (_, body) = self.post(query, variables).await;
        body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {body}"))
            .to_owned()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// An upsert row of any entity with explicit bitemporal periods (`None`: open-ended) and
/// attributes.
pub fn upsert(
    entity: &str,
    key: &str,
    registrering: (&str, Option<&str>),
    virkning: (&str, Option<&str>),
    attributes: Value,
) -> Value {
    json!({"entity": entity, "op": "upsert", "key": key,
        "registreringFra": registrering.0, "registreringTil": registrering.1,
        "virkningFra": virkning.0, "virkningTil": virkning.1,
        "status": "gældende", "attributes": attributes})
}

impl TestServer {
    /// POSTs a GraphQL request with an `Accept` header; returns the HTTP status and the body.
    pub async fn post_accepting(
        &self,
        accept: &str,
        query: &str,
        variables: Value,
    ) -> (reqwest::StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/graphql", self.base))
            .header(reqwest::header::ACCEPT, accept)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }
}

/// One Server-Sent Events message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseMessage {
    /// `event:` (empty when absent).
    pub event: String,
    /// `id:`, if any.
    pub id: Option<String>,
    /// `data:` lines joined by newlines.
    pub data: String,
    /// `retry:`, if any.
    pub retry: Option<u64>,
}

impl SseMessage {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {:?}", self.data))
    }

    /// The eventid of a `next` message.
    pub fn eventid(&self) -> i64 {
        self.id.as_deref().expect("an id").parse().unwrap()
    }
}

/// A streaming response read as SSE messages (comments are counted, not returned).
pub struct Sse {
    /// The HTTP status.
    pub status: reqwest::StatusCode,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: Vec<u8>,
    /// Comment lines (keep-alives) seen so far.
    pub comments: usize,
}

impl Sse {
    /// Reads `response` as an event stream.
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            status: response.status(),
            headers: response.headers().clone(),
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            comments: 0,
        }
    }

    /// The next message, or `None` when the stream ends; panics after `wait` without one.
    pub async fn next_within(&mut self, wait: std::time::Duration) -> Option<SseMessage> {
        tokio::time::timeout(wait, self.next())
            .await
            .unwrap_or_else(|_| panic!("no SSE message within {wait:?}"))
    }

    /// The next message, or `None` when the stream ends.
    pub async fn next(&mut self) -> Option<SseMessage> {
        use futures_util::StreamExt;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let mut message = SseMessage::default();
                let mut data = Vec::new();
                let mut fields = 0;
                for line in text.lines().filter(|l| !l.is_empty()) {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    fields += 1;
                    match name {
                        "event" => message.event = value.to_owned(),
                        "id" => message.id = Some(value.to_owned()),
                        "data" => data.push(value.to_owned()),
                        "retry" => message.retry = Some(value.parse().unwrap()),
                        other => panic!("unknown SSE field {other:?} in {text:?}"),
                    }
                }
                if fields == 0 {
                    continue;
                }
                message.data = data.join("\n");
                return Some(message);
            }
            match self.body.next().await {
                Some(chunk) => self.buffer.extend_from_slice(&chunk.unwrap()),
                None => {
                    assert!(
                        self.buffer.iter().all(u8::is_ascii_whitespace),
                        "stream ended mid-message: {:?}",
                        String::from_utf8_lossy(&self.buffer)
                    );
                    return None;
                }
            }
        }
    }

    /// `next` messages until `count` events arrived (ignoring `retry:` messages); panics on
    /// `complete` or after `wait`.
    pub async fn events(&mut self, count: usize, wait: std::time::Duration) -> Vec<SseMessage> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while out.len() < count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self
                .next_within(left)
                .await
                .unwrap_or_else(|| panic!("stream ended after {} of {count} events", out.len()));
            match message.event.as_str() {
                "next" => out.push(message),
                "" if message.retry.is_some() => {}
                other => panic!(
                    "unexpected {other:?} message after {} events: {message:?}",
                    out.len()
                ),
            }
        }
        out
    }
}
