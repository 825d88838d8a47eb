//! `subscription { R_Events(where: ...) { ... } }`: a register's events as they are published,
//! filtered with the same `where` as queries (evaluated in memory), resumable from an eventid.
//!
//! The resolver opens a [`Source`] on the live hub and hands it to the SSE layer ([`Handoff`]),
//! which either writes each event's message itself, once per batch for every subscriber that
//! shares the selection (a plain selection: [`StreamPlan`](super::fast::StreamPlan)), or gives
//! the source back to async-graphql to resolve each event (any other selection).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::dynamic::{
    FieldValue, InputValue, Subscription, SubscriptionField, SubscriptionFieldFuture, TypeRef,
};
use async_graphql::indexmap::IndexMap;
use async_graphql::{ErrorExtensions, Name, Value};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};

use super::Api;
use super::access::Access;
use super::errors::ApiError;
use super::events::checked_filter;
use crate::live::{Source, SourceError};
use crate::query::{EventRow, Filter, Scalar, Test};

/// Where to resume: the `Last-Event-ID` a reconnecting client sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resume(pub Option<i64>);

/// Passes a source between the SSE layer and a subscription resolver. With a `Handoff` in its
/// data, the resolver validates the request, opens the source, puts it here and streams
/// nothing: the SSE layer then writes the events itself, or executes the request again with
/// the source given back as [`Handoff::give`], so that the subscription starts (and its
/// position is fixed) before the response does.
#[derive(Debug, Clone, Default)]
pub struct Handoff {
    slot: Arc<Mutex<Option<Source>>>,
    given: bool,
}

impl Handoff {
    /// A handoff that gives `source` to the resolver, which streams it.
    pub fn give(source: Source) -> Self {
        Self {
            slot: Arc::new(Mutex::new(Some(source))),
            given: true,
        }
    }

    /// The source, once the resolver has run.
    pub fn take(&self) -> Option<Source> {
        self.slot.lock().ok()?.take()
    }

    fn put(&self, source: Source) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(source);
        }
    }
}

/// The eventid of the event async-graphql is resolving, for the SSE `id:` of its message.
#[derive(Debug, Clone)]
pub struct LastId(Arc<AtomicI64>);

impl Default for LastId {
    fn default() -> Self {
        Self(Arc::new(AtomicI64::new(-1)))
    }
}

impl LastId {
    /// The eventid of the last event resolved since the previous call.
    pub fn take(&self) -> Option<i64> {
        let id = self.0.swap(-1, Ordering::AcqRel);
        (id >= 0).then_some(id)
    }
}

/// The `Subscription` root: one `R_Events` field per register.
pub fn schema(api: &Api) -> Subscription {
    let mut root = Subscription::new("Subscription").description(
        "Events as they are published (over Server-Sent Events: `Accept: text/event-stream`). \
         Resume with `Last-Event-ID` or `where: {eventid: {gt: N}}`.",
    );
    for events in &api.events {
        let register: Arc<str> = events.register.name.as_str().into();
        let node = events.name.to_string();
        let field = SubscriptionField::new(node.clone(), TypeRef::named_nn(&node), move |ctx| {
            let register = register.clone();
            SubscriptionFieldFuture::new(async move {
                let api = ctx.data::<Arc<Api>>()?;
                let access = ctx.data_opt::<Access>().cloned().unwrap_or_default();
                let resume = ctx.data_opt::<Resume>().and_then(|r| r.0);
                let args = ctx.args.as_index_map();
                let handoff = ctx.data_opt::<Handoff>();
                let source = match handoff.filter(|h| h.given).and_then(Handoff::take) {
                    Some(source) => source,
                    None => open(api, &register, args, &access, resume)
                        .await
                        .map_err(|e| e.extend())?,
                };
                if let Some(handoff) = handoff.filter(|h| !h.given) {
                    handoff.put(source);
                    return Ok(stream::empty().boxed());
                }
                Ok(resolved(source, ctx.data_opt::<LastId>().cloned()))
            })
        })
        .description(format!(
            "New events of {}, one message per event, ascending `eventid`, published every \
             interval. With `Last-Event-ID: N` or `where: {{eventid: {{gt: N}}}}`, the events \
             after N first.",
            events.register.name
        ))
        .argument(InputValue::new(
            "where",
            TypeRef::named(format!("{node}FilterInput")),
        ));
        root = root.field(field);
    }
    root
}

/// Opens a source of `register`'s events matching the `where` of `args`.
async fn open(
    api: &Api,
    register: &str,
    args: &IndexMap<Name, Value>,
    access: &Access,
    resume: Option<i64>,
) -> Result<Source, ApiError> {
    let (events, filter, hidden) = checked_filter(api, register, args, access)?;
    if let Some(principal) = access.principal() {
        for entity in events.register.entities.iter() {
            if entity.protected && !hidden.contains(&entity.name) {
                let name = &events.register.name;
                api.audit
                    .record(&principal.id, name, &entity.name, "subscribe", 0);
            }
        }
    }
    let after = resume.max(lower_bound(&filter));
    api.live
        .subscribe(&events.register.name, filter, hidden, after)
        .await
        .map_err(|e| match e {
            SourceError::Closed => ApiError::Unavailable("the server is shutting down".into()),
            SourceError::Database(e) => e.into(),
        })
}

/// The position a filter's own `eventid` bound starts from (`gt: N` → N).
fn lower_bound(filter: &Filter) -> Option<i64> {
    filter
        .conjuncts()
        .into_iter()
        .filter(|(column, _)| column.name == "eventid")
        .filter_map(|(_, test)| match test {
            Test::Gt(Scalar::Integer(n)) => Some(*n),
            Test::Gte(Scalar::Integer(n)) | Test::Eq(Scalar::Integer(n)) => Some(n - 1),
            _ => None,
        })
        .max()
}

/// The events of `source`, one by one, for async-graphql to resolve.
fn resolved<'a>(
    source: Source,
    last_id: Option<LastId>,
) -> BoxStream<'a, async_graphql::Result<FieldValue<'a>>> {
    let state = (Some(source), VecDeque::<EventRow>::new());
    stream::unfold(state, move |(mut source, mut pending)| {
        let last_id = last_id.clone();
        async move {
            loop {
                if let Some(event) = pending.pop_front() {
                    if let Some(last_id) = &last_id {
                        last_id.0.store(event.eventid, Ordering::Release);
                    }
                    return Some((Ok(FieldValue::owned_any(event)), (source, pending)));
                }
                match source.as_mut()?.next().await {
                    Ok(delivery) => pending.extend(delivery.events().cloned()),
                    Err(SourceError::Closed) => return None,
                    Err(SourceError::Database(e)) => {
                        let error = ApiError::from(e).extend();
                        return Some((Err(error), (None, pending)));
                    }
                }
            }
        }
    })
    .boxed()
}
