//! GraphQL over Server-Sent Events, the graphql-sse protocol's "distinct connections" mode: a
//! `POST` or `GET /graphql` that accepts `text/event-stream` gets a stream of `next` messages,
//! one per event with the eventid as SSE `id:`, ended by `complete`. Request errors arrive as a
//! `next` holding `errors`, then `complete`, as the protocol requires (an `EventSource` would
//! drop the body of an error status).
//!
//! Every stream opens with `retry:`, gets a keep-alive comment when idle, and completes at its
//! time limit or when the server shuts down, so the client reconnects to this or another
//! instance: an `EventSource` by itself with `Last-Event-ID`, a graphql-sse client by
//! subscribing again from its last eventid.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_graphql::{Request, Response as GqlResponse};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};

use super::AppState;
use super::graphql::error_body;
use crate::graphql::errors::{codes, ensure_code};
use crate::graphql::subscription::{Handoff, LastId, Resume};
use crate::graphql::{Access, Started, StreamPlan};
use crate::live::{Client, Hub, Refused, Source, SourceError, StreamPermit};

const COMPLETE: &[u8] = b"event: complete\ndata:\n\n";
const KEEP_ALIVE: &[u8] = b":\n\n";

/// Answers a request that accepts `text/event-stream`.
pub async fn respond(
    state: &AppState,
    request: Request,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    access: Access,
) -> Response {
    let resume = match last_event_id(headers) {
        Ok(resume) => resume,
        Err(message) => return error_body(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message),
    };
    let hub = state.api.live();
    let client = match access.principal() {
        Some(principal) => Client::Credential(principal.id.as_str().into()),
        None => peer.map_or(Client::Unknown, |a| Client::Address(a.ip())),
    };
    // A stream ends with `complete` when its credential expires.
    let expires_at = access.principal().and_then(|p| p.expires_at);
    let permit = match hub.admit(client) {
        Ok(permit) => permit,
        Err(refused) => return refusal(&refused, hub.config().retry),
    };
    let plan = StreamPlan::of(
        &state.api,
        &request.query,
        request.operation_name.as_deref(),
    );
    let last_id = LastId::default();
    let started = Started::default();
    let prepare = |handoff: Handoff| {
        let mut again = Request::new(request.query.clone()).variables(request.variables.clone());
        again.operation_name = request.operation_name.clone();
        again
            .data(access.clone())
            .data(Resume(resume))
            .data(started.clone())
            .data(last_id.clone())
            .data(handoff)
    };
    // Validates the request and opens the subscription before the response starts, so its
    // position is fixed now: the events of an import that commits after this are delivered.
    let handoff = Handoff::default();
    let mut responses = state.schema.execute_stream(prepare(handoff.clone()));
    let first = responses.next().await;
    let messages = match (first, handoff.take()) {
        // A query's result, or the errors of a request that failed.
        (Some(response), _) => {
            let responses = stream::iter([response]).chain(responses).boxed();
            executed(responses, last_id, started)
        }
        (None, Some(source)) => match plan {
            Some(plan) => planned(source, Arc::new(plan)),
            None => {
                let responses = state.schema.execute_stream(prepare(Handoff::give(source)));
                executed(responses, last_id, started)
            }
        },
        (None, None) => stream::empty().boxed(),
    };
    stream_response(messages, permit, hub, expires_at)
}

/// `Last-Event-ID`, an eventid.
fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, &'static str> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<i64>() {
        Ok(id) if id >= 0 => Ok(Some(id)),
        _ => Err("Last-Event-ID must be an eventid (a non-negative integer)"),
    }
}

/// `429` (a stream limit) or `503` (shutting down), with `Retry-After`.
fn refusal(refused: &Refused, retry: Duration) -> Response {
    let (status, code) = match refused {
        Refused::Closed => (StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE),
        Refused::ServerFull(_) | Refused::ClientFull(_) => {
            (StatusCode::TOO_MANY_REQUESTS, codes::LIMIT_EXCEEDED)
        }
    };
    let mut response = error_body(status, code, &refused.to_string());
    let seconds = retry.as_secs().max(1);
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Events written by `plan`, each message made once per batch for all subscribers sharing it.
fn planned(source: Source, plan: Arc<StreamPlan>) -> BoxStream<'static, Bytes> {
    stream::unfold(Some(source), move |source| {
        let plan = plan.clone();
        async move {
            let mut source = source?;
            match source.next().await {
                Ok(delivery) => {
                    let batch = &delivery.batch;
                    let rendering = batch.messages(plan.key());
                    let message = |i: usize| {
                        rendering.events[i]
                            .get_or_init(|| plan.message(&batch.events[i]).into())
                            .clone()
                    };
                    let concat = |indices: &mut dyn Iterator<Item = usize>| {
                        let mut out = BytesMut::new();
                        for i in indices {
                            out.extend_from_slice(&message(i));
                        }
                        out.freeze()
                    };
                    let bytes = match delivery.matched.as_slice() {
                        [one] => message(*one),
                        // The whole batch: made once, shared by every subscriber it goes to.
                        all if all.len() == batch.events.len() => rendering
                            .all
                            .get_or_init(|| concat(&mut (0..batch.events.len())))
                            .clone(),
                        some => concat(&mut some.iter().copied()),
                    };
                    Some((bytes, Some(source)))
                }
                Err(SourceError::Closed) => None,
                Err(SourceError::Database(e)) => {
                    let error = crate::graphql::ApiError::from(e);
                    let response = GqlResponse::from_errors(vec![async_graphql::ServerError::new(
                        error.to_string(),
                        None,
                    )]);
                    Some((next_message(None, &with_codes(response)), None))
                }
            }
        }
    })
    .boxed()
}

/// Results async-graphql resolved, one message each; an event's carries its eventid. A request
/// refused before execution (parse, validation, limits) has `errors` and no `data`.
fn executed(
    responses: BoxStream<'static, GqlResponse>,
    last_id: LastId,
    started: Started,
) -> BoxStream<'static, Bytes> {
    responses
        .map(move |response| {
            let response = with_codes(response);
            if started.get() {
                next_message(last_id.take(), &response)
            } else {
                let body = serde_json::json!({ "errors": response.errors });
                Bytes::from(format!("event: next\ndata: {body}\n\n"))
            }
        })
        .boxed()
}

fn with_codes(mut response: GqlResponse) -> GqlResponse {
    for error in &mut response.errors {
        ensure_code(error, codes::INTERNAL);
    }
    response
}

fn next_message(id: Option<i64>, response: &GqlResponse) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"event: next\n");
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut out, response).is_err() {
        out.extend_from_slice(br#"{"errors":[{"message":"cannot encode the result"}]}"#);
    }
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// The `text/event-stream` response: `retry:`, the messages with keep-alives between them, and
/// `complete` when they end, at the stream's time limit, or at shutdown.
fn stream_response(
    messages: BoxStream<'static, Bytes>,
    permit: StreamPermit,
    hub: &Hub,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Response {
    let config = hub.config();
    let retry = Bytes::from(format!("retry: {}\n\n", config.retry.as_millis()));
    let mut limit = permit.limit();
    if let Some(expires_at) = expires_at {
        let left = (expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        limit = limit.min(left);
    }
    let now = tokio::time::Instant::now();
    let body = SseBody {
        retry: Some(retry),
        messages,
        keep_alive: config.keep_alive,
        idle: Box::pin(tokio::time::sleep_until(now + config.keep_alive)),
        last_sent: now,
        deadline: Box::pin(tokio::time::sleep_until(now + limit)),
        closed: Box::pin(hub.closed()),
        _permit: permit,
        done: false,
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            // Tells nginx not to buffer the stream.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::new(body),
    )
        .into_response()
}

/// The body of an event stream: `retry:` first, then the messages with keep-alive comments
/// between them, and `complete` when they end, at the stream's time limit, or at shutdown.
/// Written as a state machine over its parts (it is polled once per message of every
/// subscriber).
struct SseBody {
    retry: Option<Bytes>,
    messages: BoxStream<'static, Bytes>,
    keep_alive: Duration,
    /// Fires when the stream may have been idle for `keep_alive`. Moved only when it fires,
    /// not at every message: a message just records `last_sent`.
    idle: std::pin::Pin<Box<tokio::time::Sleep>>,
    last_sent: tokio::time::Instant,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    closed: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Counts the stream until the client goes or the stream completes.
    _permit: StreamPermit,
    done: bool,
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let data = |bytes: Bytes| Poll::Ready(Some(Ok(http_body::Frame::data(bytes))));
        if let Some(retry) = this.retry.take() {
            return data(retry);
        }
        if this.done {
            return Poll::Ready(None);
        }
        let ended =
            this.closed.as_mut().poll(cx).is_ready() || this.deadline.as_mut().poll(cx).is_ready();
        let message = if ended {
            Poll::Ready(None)
        } else {
            this.messages.poll_next_unpin(cx)
        };
        match message {
            Poll::Ready(Some(message)) => {
                this.last_sent = tokio::time::Instant::now();
                return data(message);
            }
            Poll::Ready(None) => {
                this.done = true;
                return data(Bytes::from_static(COMPLETE));
            }
            Poll::Pending => {}
        }
        while this.idle.as_mut().poll(cx).is_ready() {
            let now = tokio::time::Instant::now();
            let due = this.last_sent + this.keep_alive;
            if now < due {
                this.idle.as_mut().reset(due);
                continue;
            }
            this.idle.as_mut().reset(now + this.keep_alive);
            this.last_sent = now;
            return data(Bytes::from_static(KEEP_ALIVE));
        }
        Poll::Pending
    }
}
