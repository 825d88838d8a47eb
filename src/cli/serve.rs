//! `fordeler serve`: the GraphQL API over HTTP (queries, and subscriptions over SSE) until
//! SIGTERM or Ctrl-C, which completes every event stream.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::auth::{JwtConfig, JwtVerifier};
use crate::database::DatabaseOpts;
use crate::graphql::{Api, Limits};
use crate::http::{self, AppState, HttpConfig};
use crate::live::LiveConfig;
use crate::metrics::Metrics;

/// Options of `fordeler serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Database and register definitions.
    #[command(flatten)]
    pub db: DatabaseOpts,
    /// Address to listen on.
    #[arg(long, env = "FORDELER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Most database connections the server opens.
    #[arg(long, env = "FORDELER_POOL_SIZE", default_value_t = 16)]
    pub pool_size: u32,
    /// Page size when a query gives no `first`.
    #[arg(long, env = "FORDELER_DEFAULT_PAGE_SIZE", default_value_t = 100)]
    pub default_page_size: usize,
    /// Largest `first` a query may ask for; more is a LIMIT_EXCEEDED error.
    #[arg(long, env = "FORDELER_MAX_PAGE_SIZE", default_value_t = 1000)]
    pub max_page_size: usize,
    /// Most values in one `in`/`nin` list.
    #[arg(long, env = "FORDELER_MAX_IN_LIST", default_value_t = 1000)]
    pub max_in_list: usize,
    /// Deepest selection nesting a query may have.
    #[arg(long, env = "FORDELER_MAX_DEPTH", default_value_t = 12)]
    pub max_depth: usize,
    /// Highest query complexity (one per selected field).
    #[arg(long, env = "FORDELER_MAX_COMPLEXITY", default_value_t = 500)]
    pub max_complexity: usize,
    /// Most aliases in one request.
    #[arg(long, env = "FORDELER_MAX_ALIASES", default_value_t = 20)]
    pub max_aliases: usize,
    /// Most root fields in one operation.
    #[arg(long, env = "FORDELER_MAX_ROOT_FIELDS", default_value_t = 10)]
    pub max_root_fields: usize,
    /// Largest request body in bytes.
    #[arg(long, env = "FORDELER_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Longest a GraphQL request may run (`30s`, `1500ms`, `2m`).
    #[arg(long, env = "FORDELER_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Serve GraphiQL's scripts from this directory (an npm install of graphiql@3.8.3,
    /// react@18.3.1 and react-dom@18.3.1, i.e. its node_modules) instead of the unpkg CDN.
    #[arg(long, env = "FORDELER_GRAPHIQL_ASSETS")]
    pub graphiql_assets: Option<PathBuf>,
    /// At most how often each register's new events are read and published to subscribers:
    /// an import committed after a quiet interval is published at once, later ones when the
    /// interval since the last publication has passed (`0s`: as soon as an import commits).
    #[arg(long, env = "FORDELER_PUBLISH_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub publish_interval: Duration,
    /// Longest an event stream stays open; it then completes and the client reconnects with
    /// Last-Event-ID.
    #[arg(long, env = "FORDELER_STREAM_LIMIT", default_value = "10m", value_parser = parse_duration)]
    pub stream_limit: Duration,
    /// Keep-alive comment interval on idle event streams.
    #[arg(long, env = "FORDELER_KEEP_ALIVE", default_value = "15s", value_parser = parse_duration)]
    pub keep_alive: Duration,
    /// Most open event streams in this process; more get 429.
    #[arg(long, env = "FORDELER_MAX_STREAMS", default_value_t = 10_000)]
    pub max_streams: usize,
    /// Most open event streams per client (credential, or IP address when anonymous); more
    /// get 429.
    #[arg(long, env = "FORDELER_MAX_STREAMS_PER_CLIENT", default_value_t = 100)]
    pub max_streams_per_client: usize,
    /// Bearer tokens: a JWKS file of RSA/EC public keys, picked by the token's `kid`.
    #[arg(long, env = "FORDELER_JWT_JWKS", value_name = "FILE")]
    pub jwt_jwks: Option<PathBuf>,
    /// Bearer tokens: a PEM file of an RSA or EC public key (repeatable).
    #[arg(
        long,
        env = "FORDELER_JWT_PUBLIC_KEY",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub jwt_public_key: Vec<PathBuf>,
    /// Bearer tokens: a file holding an HS256 shared secret (32 characters or more).
    #[arg(long, env = "FORDELER_JWT_HS256_SECRET_FILE", value_name = "FILE")]
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// The accepted token algorithms (RS256, ES256, HS256...); default: those the keys imply.
    #[arg(long, env = "FORDELER_JWT_ALGORITHMS", value_delimiter = ',', value_parser = parse_algorithm)]
    pub jwt_algorithms: Vec<jsonwebtoken::Algorithm>,
    /// The `iss` tokens must carry (required with any JWT key).
    #[arg(long, env = "FORDELER_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` tokens must carry (required with any JWT key).
    #[arg(long, env = "FORDELER_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "FORDELER_JWT_LEEWAY", default_value = "30s", value_parser = parse_duration)]
    pub jwt_leeway: Duration,
    /// Requests per second per client (credential, or IP address when anonymous); more get
    /// 429 with Retry-After. 0: no limit.
    #[arg(long, env = "FORDELER_RATE_LIMIT", default_value_t = 1000)]
    pub rate_limit: u32,
    /// Requests a client may make at once above its rate.
    #[arg(long, env = "FORDELER_RATE_BURST", default_value_t = 2000)]
    pub rate_burst: u32,
    /// Browser origins allowed to call the API (CORS), comma-separated
    /// (`https://app.example.org`); default: none.
    #[arg(long, env = "FORDELER_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<::http::HeaderValue>,
    /// The token claim holding the grants (`"BBR:* CPR:Person"` or a list of such strings).
    #[arg(long, env = "FORDELER_JWT_GRANTS_CLAIM", default_value = "scope")]
    pub jwt_grants_claim: String,
}

fn parse_origin(text: &str) -> Result<::http::HeaderValue, String> {
    let text = text.trim();
    let valid = (text.starts_with("https://") || text.starts_with("http://"))
        && !text.ends_with('/')
        && text != "*";
    if !valid {
        return Err(format!(
            "{text:?} is not an origin such as https://app.example.org (no path, no *)"
        ));
    }
    ::http::HeaderValue::from_str(text).map_err(|_| format!("{text:?} is not a valid origin"))
}

fn parse_algorithm(text: &str) -> Result<jsonwebtoken::Algorithm, String> {
    use jsonwebtoken::Algorithm::*;
    Ok(match text.trim().to_ascii_uppercase().as_str() {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "ES256" => ES256,
        "ES384" => ES384,
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        "EDDSA" => EdDSA,
        other => return Err(format!("{other:?} is not a JWT signature algorithm")),
    })
}

impl Opts {
    /// The query limits these options set.
    pub fn limits(&self) -> Limits {
        Limits {
            default_page_size: self.default_page_size,
            max_page_size: self.max_page_size,
            max_in_list: self.max_in_list,
            max_depth: self.max_depth,
            max_complexity: self.max_complexity,
            max_aliases: self.max_aliases,
            max_root_fields: self.max_root_fields,
            ..Limits::default()
        }
    }

    /// The subscription settings these options set.
    pub fn live(&self) -> LiveConfig {
        LiveConfig {
            publish_interval: self.publish_interval,
            stream_limit: self.stream_limit,
            keep_alive: self.keep_alive,
            max_streams: self.max_streams,
            max_streams_per_client: self.max_streams_per_client,
            ..LiveConfig::default()
        }
    }

    /// The HTTP settings these options set, with the JWT keys loaded.
    pub fn http(&self) -> anyhow::Result<HttpConfig> {
        let jwt = JwtConfig {
            jwks: self.jwt_jwks.clone(),
            public_keys: self.jwt_public_key.clone(),
            hs256_secret: self.jwt_hs256_secret_file.clone(),
            algorithms: self.jwt_algorithms.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway_seconds: self.jwt_leeway.as_secs(),
            grants_claim: self.jwt_grants_claim.clone(),
        };
        let jwt = if jwt.is_enabled() {
            Some(Arc::new(JwtVerifier::load(&jwt)?))
        } else {
            None
        };
        Ok(HttpConfig {
            body_limit: self.body_limit,
            request_timeout: self.request_timeout,
            graphiql_assets: self.graphiql_assets.clone(),
            jwt,
            rate_limit: self.rate_limit,
            rate_burst: self.rate_burst,
            cors_origins: self.cors_origins.clone(),
        })
    }
}

/// Parses what [`parse_duration`] does, and days (`90d`).
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    match text.trim().strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .map(|d| Duration::from_secs(d * 86_400))
            .map_err(|_| format!("{text:?} is not a duration such as 90d, 12h or 30m")),
        None => parse_duration(text),
    }
}

/// Parses `30s`, `1500ms`, `10m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 1500ms, 10m or 1h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "{text:?}: unknown unit {unit:?}; use ms, s, m or h"
        )),
    }
}

/// Serves until SIGTERM or Ctrl-C.
pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let (pool, registry, _) = opts.db.open(opts.pool_size).await?;
    let registry = Arc::new(registry);
    let api = Api::with_live(pool, registry, opts.limits(), opts.live(), Metrics::new());
    let router = http::router(AppState::new(&api, opts.http()?)?);
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving GraphQL");
    eprintln!("fordeler: GraphQL at http://{addr}/graphql (GraphiQL in a browser)");
    let hub = api.live().clone();
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: completing event streams");
        hub.close();
    };
    http::serve(listener, router, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("").is_err());
    }
}
