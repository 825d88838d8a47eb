//! `/graphql` per the GraphQL-over-HTTP spec: `POST` with a JSON body, `GET` with the request in
//! the query string; `application/graphql-response+json` (request errors get a 4xx status) or
//! `application/json` (always 200 once the request is well-formed). A browser asking for HTML at
//! `GET /graphql` gets GraphiQL; a request accepting `text/event-stream` gets an event stream
//! ([`super::sse`]).

use async_graphql::{Request, Response as GqlResponse, ServerError};
use axum::body::Bytes;
use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::rate::RateKey;
use super::{AppState, graphiql, sse};
use crate::graphql::errors::{codes, ensure_code};
use crate::graphql::{Access, RawData, Started};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

fn peer_addr(peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> Option<SocketAddr> {
    peer.map(|Extension(ConnectInfo(addr))| addr)
}

/// `GET /graphql`: GraphiQL for a browser, else a query from the query string.
pub async fn get(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let format = Format::negotiate(&headers);
    let stream = accepts(&headers, EVENT_STREAM);
    let query = query.unwrap_or_default();
    if !query.split('&').any(|p| p.starts_with("query=")) {
        if accepts(&headers, "text/html") && !stream {
            return Html(graphiql::page(state.config.graphiql_assets.is_some())).into_response();
        }
        return error_body(
            StatusCode::BAD_REQUEST,
            codes::BAD_REQUEST,
            "GET /graphql needs a `query` parameter",
        );
    }
    let access = match authenticate(&state, &headers, Some(&query), peer_addr(peer)).await {
        Ok(access) => access,
        Err(refused) => return refused,
    };
    match async_graphql::http::parse_query_string(&query) {
        Ok(request) if stream => {
            sse::respond(&state, request, &headers, peer_addr(peer), access).await
        }
        Ok(request) => execute(&state, request, format, access).await,
        Err(e) => error_body(
            StatusCode::BAD_REQUEST,
            codes::BAD_REQUEST,
            &format!("invalid query string: {e}"),
        ),
    }
}

/// `POST /graphql` with a JSON body `{query, operationName, variables, extensions}`.
pub async fn post(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let format = Format::negotiate(&headers);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case(JSON) {
        return error_body(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::BAD_REQUEST,
            "POST /graphql needs Content-Type: application/json",
        );
    }
    let access = match authenticate(&state, &headers, query.as_deref(), peer_addr(peer)).await {
        Ok(access) => access,
        Err(refused) => return refused,
    };
    match serde_json::from_slice::<Request>(&body) {
        Ok(request) if accepts(&headers, EVENT_STREAM) => {
            sse::respond(&state, request, &headers, peer_addr(peer), access).await
        }
        Ok(request) => execute(&state, request, format, access).await,
        Err(e) => error_body(
            StatusCode::BAD_REQUEST,
            codes::BAD_REQUEST,
            &format!("invalid JSON body: {e}"),
        ),
    }
}

/// `GET /graphql/schema.graphql`: the SDL.
pub async fn schema_sdl(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        state.sdl.to_string(),
    )
        .into_response()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    GraphqlResponse,
    Json,
}

impl Format {
    fn negotiate(headers: &HeaderMap) -> Self {
        if accepts(headers, GRAPHQL_RESPONSE) {
            Format::GraphqlResponse
        } else {
            Format::Json
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Format::Json => "application/json; charset=utf-8",
        }
    }
}

fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            part.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(media_type)
        })
}

/// The caller's rights from its credentials: anonymous without any; a refused credential is
/// answered with 401 and `WWW-Authenticate`, before anything is read. Then the client's rate
/// limit: per credential, or per address for anonymous callers and refused credentials.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    peer: Option<SocketAddr>,
) -> Result<Access, Response> {
    let address = || peer.map_or(RateKey::Unknown, |a| RateKey::Address(a.ip()));
    let outcome = state.auth.authenticate(headers, raw_query).await;
    let key = match &outcome {
        Ok(Some(principal)) => RateKey::Credential(principal.id.as_str().into()),
        _ => address(),
    };
    if let Err(wait) = state.rate.check(key) {
        state.metrics.rate_limited.inc();
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let message = format!(
            "rate limit: at most {} requests per second for this client; retry after {seconds} s",
            state.rate.rate()
        );
        let mut response = error_body(
            StatusCode::TOO_MANY_REQUESTS,
            codes::LIMIT_EXCEEDED,
            &message,
        );
        if let Ok(value) = http::HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Err(response);
    }
    match outcome {
        Ok(Some(principal)) => Ok(Access::of(principal)),
        Ok(None) => Ok(Access::anonymous()),
        Err(refused) => {
            state.metrics.auth_refused.inc();
            tracing::info!(reason = %refused, "credential refused");
            let mut response =
                error_body(StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED, &refused.0);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static(
                    "Bearer realm=\"fordeler\", error=\"invalid_token\"",
                ),
            );
            Err(response)
        }
    }
}

async fn execute(state: &AppState, request: Request, format: Format, access: Access) -> Response {
    let raw = RawData::default();
    let started = Started::default();
    let request = request.data(access).data(raw.clone()).data(started.clone());
    let timeout = state.config.request_timeout;
    let mut response = match tokio::time::timeout(timeout, state.schema.execute(request)).await {
        Ok(response) => response,
        Err(_) => {
            let message = format!(
                "the request took longer than {} ms and was stopped",
                timeout.as_millis()
            );
            let mut error = ServerError::new(message, None);
            ensure_code(&mut error, codes::TIMEOUT);
            let status = match format {
                Format::GraphqlResponse => StatusCode::GATEWAY_TIMEOUT,
                Format::Json => StatusCode::OK,
            };
            return json(status, format, &GqlResponse::from_errors(vec![error]));
        }
    };
    if let Some(data) = raw.take() {
        return raw_json(format, data);
    }
    for error in &mut response.errors {
        ensure_code(error, codes::INTERNAL);
    }
    if started.get() {
        return json(StatusCode::OK, format, &response);
    }
    // Refused before execution (parse, validation, limits): no `data` entry at all.
    let status = match format {
        Format::GraphqlResponse => StatusCode::BAD_REQUEST,
        Format::Json => StatusCode::OK,
    };
    let body = serde_json::json!({ "errors": response.errors });
    (
        status,
        [(header::CONTENT_TYPE, format.content_type())],
        body.to_string(),
    )
        .into_response()
}

fn json(status: StatusCode, format: Format, response: &GqlResponse) -> Response {
    match serde_json::to_vec(response) {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, format.content_type())],
            body,
        )
            .into_response(),
        Err(_) => error_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            "cannot encode the response",
        ),
    }
}

/// A response the fast path already wrote as JSON.
fn raw_json(format: Format, body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

/// A request-level error in the GraphQL response shape: `{"errors": [{message, extensions}]}`.
pub fn error_body(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}
