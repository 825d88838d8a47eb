//! The source: a fordeler (or Datafordeler-compatible) GraphQL endpoint, reached over HTTP
//! only. Every answer is checked; errors are sorted into what a retry can fix and what it
//! cannot.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::{Value, json};
use uuid::Uuid;

use super::ReplicaError;
use super::decode::{self, PageInfo};
use super::schema::{EntitySchema, INTROSPECTION, RemoteSchema, Row};

/// The environment variable holding a bearer token.
pub const TOKEN_ENV: &str = "FORDELER_TOKEN";
/// The environment variable holding an API key.
pub const API_KEY_ENV: &str = "FORDELER_API_KEY";

/// How the client proves who it is. Never taken from the command line, where process
/// listings would show it: from the environment or a file.
#[derive(Clone, Default)]
pub enum Credentials {
    /// Anonymous: open registers and entities only.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `X-Api-Key: <key>`.
    ApiKey(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::Bearer(_) => "Bearer(<redacted>)",
            Credentials::ApiKey(_) => "ApiKey(<redacted>)",
        })
    }
}

impl Credentials {
    /// From `--token-file` or `--api-key-file` when given, else `FORDELER_TOKEN` or
    /// `FORDELER_API_KEY`, else none.
    pub fn load(
        token_file: Option<&Path>,
        api_key_file: Option<&Path>,
    ) -> Result<Self, ReplicaError> {
        let read = |path: &Path| -> Result<String, ReplicaError> {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ReplicaError::Usage(format!(
                    "cannot read credentials from {}: {e}",
                    path.display()
                ))
            })?;
            let secret = text.trim().to_owned();
            if secret.is_empty() {
                return Err(ReplicaError::Usage(format!("{} is empty", path.display())));
            }
            Ok(secret)
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Ok(match (token_file, api_key_file) {
            (Some(_), Some(_)) => {
                return Err(ReplicaError::Usage(
                    "give --token-file or --api-key-file, not both".into(),
                ));
            }
            (Some(path), None) => Credentials::Bearer(read(path)?),
            (None, Some(path)) => Credentials::ApiKey(read(path)?),
            (None, None) => match (env(TOKEN_ENV), env(API_KEY_ENV)) {
                (Some(token), _) => Credentials::Bearer(token.trim().to_owned()),
                (None, Some(key)) => Credentials::ApiKey(key.trim().to_owned()),
                (None, None) => Credentials::None,
            },
        })
    }

    fn headers(&self) -> Result<HeaderMap, ReplicaError> {
        let mut headers = HeaderMap::new();
        let value = |text: String| {
            let mut value = HeaderValue::from_str(&text).map_err(|_| {
                ReplicaError::Usage("the credentials hold characters a header cannot".into())
            })?;
            value.set_sensitive(true);
            Ok::<_, ReplicaError>(value)
        };
        match self {
            Credentials::None => {}
            Credentials::Bearer(token) => {
                headers.insert(AUTHORIZATION, value(format!("Bearer {token}"))?);
            }
            Credentials::ApiKey(key) => {
                headers.insert("x-api-key", value(key.clone())?);
            }
        }
        Ok(headers)
    }
}

/// One event as a replica needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `eventid`.
    pub eventid: i64,
    /// `entityname`.
    pub entity: String,
    /// `eventaction`: `i`, `u` or `d`.
    pub action: char,
    /// `object_datafordelerRowId`.
    pub row_id: Uuid,
    /// `object_datafordelerRowVersion`.
    pub version: i64,
}

/// The event fields a replica selects.
const EVENT_FIELDS: &str =
    "eventid entityname eventaction object_datafordelerRowId object_datafordelerRowVersion";

impl Event {
    fn from_json(node: &Value) -> Result<Self, ReplicaError> {
        let bad = || ReplicaError::Source(format!("malformed event {node}"));
        let action = node["eventaction"].as_str().ok_or_else(bad)?;
        let action = match action {
            "i" | "u" | "d" => action.chars().next().ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        Ok(Self {
            eventid: node["eventid"].as_i64().ok_or_else(bad)?,
            entity: node["entityname"].as_str().ok_or_else(bad)?.to_owned(),
            action,
            row_id: node["object_datafordelerRowId"]
                .as_str()
                .and_then(|s| Uuid::try_parse(s).ok())
                .ok_or_else(bad)?,
            version: node["object_datafordelerRowVersion"]
                .as_i64()
                .ok_or_else(bad)?,
        })
    }
}

/// A page of events and whether more follow.
#[derive(Debug)]
pub struct EventPage {
    /// Events, ascending eventid.
    pub events: Vec<Event>,
    /// More events follow the last one.
    pub has_next: bool,
}

/// The source's import state of one register.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    /// Highest eventid.
    pub last_event_id: i64,
    /// An import is running.
    pub import_running: bool,
}

/// A GraphQL endpoint.
#[derive(Debug, Clone)]
pub struct Source {
    client: reqwest::Client,
    stream_client: reqwest::Client,
    endpoint: String,
    register: String,
}

impl Source {
    /// A client of `url` (the server's base URL or its `/graphql` endpoint) for `register`.
    pub fn new(url: &str, register: &str, credentials: &Credentials) -> Result<Self, ReplicaError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| ReplicaError::Usage(format!("--source {url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ReplicaError::Usage(format!(
                "--source {url}: not an http or https URL"
            )));
        }
        let endpoint = if parsed.path().ends_with("/graphql") {
            url.to_owned()
        } else {
            format!("{}/graphql", url.trim_end_matches('/'))
        };
        let headers = credentials.headers()?;
        let build = |builder: reqwest::ClientBuilder| {
            builder
                .default_headers(headers.clone())
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("fordeler-replica/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ReplicaError::Usage(format!("cannot build an HTTP client: {e}")))
        };
        Ok(Self {
            client: build(reqwest::Client::builder().timeout(Duration::from_secs(120)))?,
            // A stream has no total time limit, but a silent one (no event and no keep-alive
            // for a minute) is dead.
            stream_client: build(reqwest::Client::builder().read_timeout(Duration::from_secs(60)))?,
            endpoint,
            register: register.to_owned(),
        })
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs one query and returns its `data`.
    pub async fn query(&self, query: &str, variables: Value) -> Result<Value, ReplicaError> {
        let data = self.answer(query, variables).await?;
        serde_json::from_slice(&data)
            .map_err(|e| ReplicaError::Source(format!("{}: {e}", self.endpoint)))
    }

    /// Runs one row query and reads its rows.
    async fn query_rows(
        &self,
        entity: &EntitySchema,
        query: &str,
        variables: Value,
    ) -> Result<(Vec<Row>, PageInfo), ReplicaError> {
        let data = self.answer(query, variables).await?;
        decode::rows(entity, &data)
    }

    /// Sends one query; returns the answer's `data` member, as JSON bytes, when it holds data
    /// and no errors.
    async fn answer(&self, query: &str, variables: Value) -> Result<bytes::Bytes, ReplicaError> {
        let response = self
            .client
            .post(&self.endpoint)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        match serde_json::from_slice::<Envelope<'_>>(&body) {
            Ok(envelope) if !envelope.errors.is_empty() => {
                Err(graphql_error(status, retry_after, &envelope.errors))
            }
            _ if !status.is_success() => Err(http_error(status, retry_after, &body)),
            Ok(Envelope {
                data: Some(data), ..
            }) => {
                // `data` borrows from `body`: hand on that slice of it, without a copy.
                let start = data.get().as_ptr() as usize - body.as_ptr() as usize;
                Ok(body.slice(start..start + data.get().len()))
            }
            _ => Err(ReplicaError::Source(format!(
                "{}: the answer is not a GraphQL result",
                self.endpoint
            ))),
        }
    }

    fn unreachable(&self, error: &reqwest::Error) -> ReplicaError {
        let mut detail = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            detail = format!("{detail}: {cause}");
            source = cause.source();
        }
        ReplicaError::Unreachable {
            url: self.endpoint.clone(),
            detail,
        }
    }

    /// The register's entities and fields.
    pub async fn schema(&self) -> Result<RemoteSchema, ReplicaError> {
        let data = self.query(INTROSPECTION, json!({})).await?;
        RemoteSchema::from_introspection(&self.register, &data)
    }

    /// The register's import state.
    pub async fn head(&self) -> Result<Head, ReplicaError> {
        let data = self
            .query(
                "query($register: String) { RegisterImportStatus(register: $register) { \
                 lastEventId importRunning } }",
                json!({"register": self.register}),
            )
            .await?;
        let status = data["RegisterImportStatus"]
            .as_array()
            .and_then(|all| all.first())
            .ok_or_else(|| {
                ReplicaError::Usage(format!("the source has no register {}", self.register))
            })?;
        Ok(Head {
            last_event_id: status["lastEventId"].as_i64().unwrap_or(0),
            import_running: status["importRunning"].as_bool().unwrap_or(false),
        })
    }

    /// Up to `first` events after `after`, of `entities` only when not empty.
    pub async fn events(
        &self,
        after: i64,
        first: usize,
        entities: &[String],
    ) -> Result<EventPage, ReplicaError> {
        let query = format!(
            "query($after: Long!, $first: Int!{}) {{ page: {}_Events(first: $first, \
             where: {{eventid: {{gt: $after}}{}}}) {{ nodes {{ {EVENT_FIELDS} }} \
             pageInfo {{ hasNextPage }} }} }}",
            if entities.is_empty() {
                ""
            } else {
                ", $entities: [String!]"
            },
            self.register,
            if entities.is_empty() {
                ""
            } else {
                ", entityname: {in: $entities}"
            },
        );
        let data = self
            .query(
                &query,
                json!({"after": after, "first": first, "entities": entities}),
            )
            .await?;
        let page = &data["page"];
        let events = page["nodes"]
            .as_array()
            .ok_or_else(|| ReplicaError::Source("an events page without nodes".into()))?
            .iter()
            .map(Event::from_json)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EventPage {
            events,
            has_next: page["pageInfo"]["hasNextPage"].as_bool().unwrap_or(false),
        })
    }

    /// The event `eventid`, if the source has it (and shows it to this client).
    pub async fn event(&self, eventid: i64) -> Result<Option<Event>, ReplicaError> {
        let query = format!(
            "query($id: Long!) {{ page: {}_Events(first: 1, where: {{eventid: {{eq: $id}}}}) \
             {{ nodes {{ {EVENT_FIELDS} }} }} }}",
            self.register
        );
        let data = self.query(&query, json!({"id": eventid})).await?;
        data["page"]["nodes"]
            .as_array()
            .and_then(|nodes| nodes.first())
            .map(Event::from_json)
            .transpose()
    }

    /// The rows `ids` of `entity`, every registration whatever its times; a row the source no
    /// longer has (deleted since) is absent.
    pub async fn rows(
        &self,
        entity: &EntitySchema,
        ids: &[Uuid],
    ) -> Result<Vec<Row>, ReplicaError> {
        let query = format!(
            "query($ids: [UUID!], $first: Int!) {{ rows: {}(first: $first, \
             where: {{datafordelerRowId: {{in: $ids}}}}) {{ nodes {{ {} }} }} }}",
            entity.field,
            entity.selection()
        );
        let (rows, _) = self
            .query_rows(
                entity,
                &query,
                json!({"ids": ids, "first": ids.len().max(1)}),
            )
            .await?;
        Ok(rows)
    }

    /// A page of every stored registration of `entity` after the cursor `after`; returns the
    /// rows and the cursor of the next page, if any.
    pub async fn scan(
        &self,
        entity: &EntitySchema,
        after: Option<&str>,
        first: usize,
    ) -> Result<(Vec<Row>, Option<String>), ReplicaError> {
        let query = format!(
            "query($after: String, $first: Int!) {{ rows: {}(first: $first, after: $after, \
             allRegistrations: true) {{ nodes {{ {} }} pageInfo {{ hasNextPage endCursor }} }} }}",
            entity.field,
            entity.selection()
        );
        let (rows, info) = self
            .query_rows(entity, &query, json!({"after": after, "first": first}))
            .await?;
        Ok((rows, info.has_next.then_some(info.end_cursor).flatten()))
    }

    /// Opens an SSE subscription to the register's events after `after` (of `entities` only
    /// when not empty); `Last-Event-ID` carries the same position.
    pub async fn subscribe(
        &self,
        after: i64,
        entities: &[String],
    ) -> Result<EventStream, ReplicaError> {
        let query = format!(
            "subscription($after: Long!{}) {{ {}_Events(where: {{eventid: {{gt: $after}}{}}}) \
             {{ {EVENT_FIELDS} }} }}",
            if entities.is_empty() {
                ""
            } else {
                ", $entities: [String!]"
            },
            self.register,
            if entities.is_empty() {
                ""
            } else {
                ", entityname: {in: $entities}"
            },
        );
        let response = self
            .stream_client
            .post(&self.endpoint)
            .header(ACCEPT, "text/event-stream")
            .header("last-event-id", after.to_string())
            .json(&json!({"query": query, "variables": {"after": after, "entities": entities}}))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            let body = response.bytes().await.unwrap_or_default();
            if let Some(errors) = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["errors"].as_array().cloned())
                && !errors.is_empty()
            {
                return Err(graphql_error(status, retry_after, &errors));
            }
            return Err(http_error(status, retry_after, &body));
        }
        let field = format!("{}_Events", self.register);
        let endpoint = self.endpoint.clone();
        let body = response
            .bytes_stream()
            .map(move |chunk| {
                chunk.map_err(|e| ReplicaError::Unreachable {
                    url: endpoint.clone(),
                    detail: format!("the event stream broke: {e}"),
                })
            })
            .boxed();
        Ok(EventStream {
            body,
            buffer: BytesMut::new(),
            field,
            frame: Frame::default(),
        })
    }
}

/// A GraphQL result, its data unread.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    data: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    errors: Vec<Value>,
}

/// What an event stream yields.
#[derive(Debug)]
pub enum StreamItem {
    /// One event.
    Event(Event),
    /// A keep-alive comment: the source is alive but has nothing new.
    KeepAlive,
}

/// An open SSE subscription.
pub struct EventStream {
    body: Pin<Box<dyn Stream<Item = Result<Bytes, ReplicaError>> + Send>>,
    buffer: BytesMut,
    field: String,
    frame: Frame,
}

/// The message being read: kept in the stream, not the future, so that [`EventStream::next`]
/// is cancel-safe.
#[derive(Debug, Default)]
struct Frame {
    event: String,
    data: String,
    comment: bool,
}

impl EventStream {
    /// The next event or keep-alive; `None` when the server completed the stream or closed
    /// the connection (resume from the last applied event). Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<StreamItem>, ReplicaError> {
        loop {
            while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line = self.buffer.split_to(end + 1);
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    let frame = std::mem::take(&mut self.frame);
                    if frame.event == "complete" {
                        return Ok(None);
                    }
                    if !frame.data.is_empty() {
                        return self.message(&frame.data).map(Some);
                    }
                    if frame.comment {
                        return Ok(Some(StreamItem::KeepAlive));
                    }
                    continue;
                }
                if line.starts_with(':') {
                    self.frame.comment = true;
                    continue;
                }
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match name {
                    "event" => self.frame.event = value.to_owned(),
                    "data" => {
                        if !self.frame.data.is_empty() {
                            self.frame.data.push('\n');
                        }
                        self.frame.data.push_str(value);
                    }
                    _ => {}
                }
            }
            match self.body.next().await {
                Some(chunk) => self.buffer.extend_from_slice(&chunk?),
                None => return Ok(None),
            }
        }
    }

    fn message(&self, data: &str) -> Result<StreamItem, ReplicaError> {
        let message: Value = serde_json::from_str(data)
            .map_err(|e| ReplicaError::Source(format!("a stream message is not JSON: {e}")))?;
        if let Some(errors) = message["errors"].as_array()
            && !errors.is_empty()
        {
            return Err(graphql_error(StatusCode::OK, None, errors));
        }
        Event::from_json(&message["data"][&self.field]).map(StreamItem::Event)
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn graphql_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    errors: &[Value],
) -> ReplicaError {
    let first = &errors[0];
    let code = first["extensions"]["code"].as_str().unwrap_or_default();
    let message = first["message"]
        .as_str()
        .unwrap_or("(no message)")
        .to_owned();
    match code {
        "FORBIDDEN" | "UNAUTHENTICATED" | "DAF-AUTH-0001" => ReplicaError::Auth(message),
        "LIMIT_EXCEEDED" | "UNAVAILABLE" | "TIMEOUT" => ReplicaError::Busy {
            status: status.as_u16(),
            message,
            retry_after,
        },
        _ if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
            ReplicaError::Auth(message)
        }
        _ if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {
            ReplicaError::Busy {
                status: status.as_u16(),
                message,
                retry_after,
            }
        }
        _ => ReplicaError::Source(if code.is_empty() {
            message
        } else {
            format!("{code}: {message}")
        }),
    }
}

fn http_error(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> ReplicaError {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)])
        .trim()
        .to_owned();
    let message = format!(
        "HTTP {status}{}",
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    );
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        ReplicaError::Auth(message)
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        ReplicaError::Busy {
            status: status.as_u16(),
            message,
            retry_after,
        }
    } else {
        ReplicaError::Source(message)
    }
}

/// Where a replica's credentials may come from, for help texts.
pub fn credential_help() -> String {
    format!(
        "Credentials: {TOKEN_ENV} (bearer token) or {API_KEY_ENV} in the environment, or \
         --token-file / --api-key-file; never on the command line."
    )
}
