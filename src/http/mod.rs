//! The HTTP layer: mounts the GraphQL schema (`/graphql`, with subscriptions over SSE),
//! GraphiQL, the SDL, health, readiness and metrics, with request ids, a body-size limit, a timeout, panic recovery and one log line
//! per request. Knows nothing of SQL beyond the readiness probe.

mod conn;
mod graphiql;
mod graphql;
mod health;
mod middleware;
pub mod rate;
mod sse;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dynamic::Schema;
use axum::Router;
use axum::routing::get;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;

use crate::auth::{Authenticator, JwtVerifier};
use crate::graphql::Api;
use crate::metrics::Metrics;

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Longest time one GraphQL request may run.
    pub request_timeout: Duration,
    /// A directory holding GraphiQL's assets (`graphiql/`, `react/`, `react-dom/` as npm
    /// installs them), for networks that cannot reach the CDN.
    pub graphiql_assets: Option<PathBuf>,
    /// Verifies bearer tokens; without it they are refused (API keys work either way).
    pub jwt: Option<Arc<JwtVerifier>>,
    /// Requests per second per client (credential, or IP address when anonymous); 0: no
    /// limit. `fordeler serve` sets 1000.
    pub rate_limit: u32,
    /// Requests a client may make at once above its rate.
    pub rate_burst: u32,
    /// Browser origins allowed to call the API (CORS); empty: none.
    pub cors_origins: Vec<http::HeaderValue>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            graphiql_assets: None,
            jwt: None,
            rate_limit: 0,
            rate_burst: 200,
            cors_origins: Vec::new(),
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    api: Arc<Api>,
    schema: Schema,
    pool: PgPool,
    metrics: Metrics,
    config: Arc<HttpConfig>,
    sdl: Arc<str>,
    auth: Authenticator,
    rate: Arc<rate::RateLimiter>,
}

impl AppState {
    /// The state for serving `api`.
    pub fn new(api: &Arc<Api>, config: HttpConfig) -> anyhow::Result<Self> {
        let schema = api.schema()?;
        let sdl = schema.sdl().into();
        Ok(Self {
            api: api.clone(),
            schema,
            pool: api.pool().clone(),
            metrics: api.metrics().clone(),
            auth: Authenticator::new(config.jwt.clone(), api.pool().clone()),
            rate: Arc::new(rate::RateLimiter::new(config.rate_limit, config.rate_burst)),
            config: Arc::new(config),
            sdl,
        })
    }
}

/// The application's routes and layers.
pub fn router(state: AppState) -> Router {
    let assets = state.config.graphiql_assets.clone();
    let body_limit = state.config.body_limit;
    let mut router = Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphql/schema.graphql", get(graphql::schema_sdl))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics));
    if let Some(dir) = assets {
        router = router.nest_service(graphiql::ASSETS_PATH, ServeDir::new(dir));
    }
    if !state.config.cors_origins.is_empty() {
        use tower_http::cors::{AllowOrigin, CorsLayer};
        let headers = [
            http::header::CONTENT_TYPE,
            http::header::AUTHORIZATION,
            http::header::ACCEPT,
            http::HeaderName::from_static("x-api-key"),
            http::HeaderName::from_static("last-event-id"),
        ];
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(state.config.cors_origins.clone()))
                .allow_methods([http::Method::GET, http::Method::POST])
                .allow_headers(headers)
                .max_age(Duration::from_secs(600)),
        );
    }
    router
        .fallback(middleware::not_found)
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then drains open requests (close
/// the API's live hub in `shutdown`, so that event streams complete). Event streams are served
/// on a lean HTTP/1.1 path, everything else by hyper ([`conn`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let (listener, lean) = conn::divert(listener, router.clone())?;
    // `tap_io` only to get axum's `ConnectInfo<SocketAddr>` for a custom listener.
    let listener = listener.tap_io(|_| ());
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await?;
    lean.wait().await;
    Ok(())
}
