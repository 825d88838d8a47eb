//! Per-request plumbing: one log line, metrics, and the `Server-Timing` header.

use std::any::Any;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::graphql::error_body;
use crate::graphql::errors::codes;

/// Logs the request once (method, route, status, duration, request id; never the query string,
/// which may carry credentials), counts it, and adds `Server-Timing`.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = route_label(request.uri().path());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let message = format!("the request body is over {} bytes", state.config.body_limit);
        response = error_body(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::LIMIT_EXCEEDED,
            &message,
        );
    }
    let elapsed = started.elapsed();
    let status = response.status();
    if let Ok(value) =
        HeaderValue::from_str(&format!("app;dur={:.1}", elapsed.as_secs_f64() * 1000.0))
    {
        response.headers_mut().insert("server-timing", value);
    }
    state
        .metrics
        .http_requests
        .with_label_values(&[route, status.as_str()])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[route])
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        target: "fordeler::http",
        %method,
        route,
        status = status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        request_id,
        "request"
    );
    response
}

/// The metric label of a path: a known route, or `unmatched` (paths are user input, so they
/// never become labels themselves).
fn route_label(path: &str) -> &'static str {
    const ROUTES: [&str; 5] = [
        "/graphql",
        "/graphql/schema.graphql",
        "/healthz",
        "/readyz",
        "/metrics",
    ];
    if let Some(route) = ROUTES.iter().find(|r| **r == path) {
        return route;
    }
    if path.starts_with(super::graphiql::ASSETS_PATH) {
        return super::graphiql::ASSETS_PATH;
    }
    "unmatched"
}

/// 404 for unknown paths, in the API's error shape.
pub async fn not_found() -> Response {
    error_body(
        StatusCode::NOT_FOUND,
        codes::BAD_REQUEST,
        "no such path; the API is at /graphql",
    )
}

/// A panic inside a handler becomes a 500 with no details; the server keeps serving.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown");
    tracing::error!(panic = detail, "a request handler panicked");
    error_body(
        StatusCode::INTERNAL_SERVER_ERROR,
        codes::INTERNAL,
        "internal error; the server log has the details",
    )
    .into_response()
}
