//! # sse-load
//!
//! A load generator for fordeler's GraphQL subscriptions over Server-Sent Events: it opens N
//! concurrent SSE streams (`GET /graphql?query=...`, `Accept: text/event-stream`), keeps them
//! open while another process imports packages, and measures what arrived and how late.
//!
//! It is a standalone crate (not part of the server's build). Build it into its own target
//! directory so it does not wait on the main build's lock:
//!
//! ```text
//! cd load-tests/sse-load && CARGO_TARGET_DIR=../../target/sse-load cargo build --release
//! ../../target/sse-load/release/sse-load --url http://127.0.0.1:8080/graphql \
//!     --clients 10000 --connect-rate 2000 --duration 60s \
//!     --ready-file /tmp/ready --commits /tmp/commits --out results.json
//! ```
//!
//! ## Options
//!
//! - `--url URL` (required): `http://host[:port]/path`; plain http only. A target that does
//!   not resolve to a loopback address is refused unless `--allow-remote` is given.
//! - `--clients N` (10000): concurrent streams, one tokio task each.
//! - `--query Q`: the subscription (default
//!   `subscription { BBR_Events { eventid datafordelerRegisterImportSequenceNumber } }`).
//! - `--connect-rate R` (2000): at most R connections opened per second (a ramp).
//! - `--duration D` (60s): how long to keep the streams open once all clients are connected;
//!   `ms`, `s`, `m` and `h` suffixes (a bare number is seconds). The run ends earlier when every
//!   stream has ended (for instance each got `event: complete`).
//! - `--connect-timeout D` (30s): limit for one client's TCP connect plus response head.
//! - `--ready-file PATH`: written (atomically; contents: the number of connected clients) when
//!   every client has its response head or has failed. An orchestrating script waits for it
//!   before it starts imports.
//! - `--commits PATH`: read at the end; lines `SEQ UNIX_MICROS`, the package sequence number
//!   and the wall-clock time its import committed, appended by the orchestrator during the run.
//! - `--out PATH`: where the JSON results go (they are printed to stdout too).
//! - `--threads N` (1): tokio worker threads; 1 leaves the other core to a server on the same
//!   2-core machine.
//!
//! Progress and diagnostics go to stderr; stdout carries only the JSON. Clients do not reconnect:
//! a stream the server ends (its max lifetime, a restart) stays ended, and the run stops early
//! once no stream is open.
//!
//! ## Results
//!
//! `clients`, `clients_connected` (got `200` with `text/event-stream`), `clients_failed`,
//! `error_samples` (at most 5 distinct messages, `[N clients]` appended when shared: connect
//! failures and non-200 answers with the first 200 bytes of their body first, then streams that
//! broke or ended without `complete`),
//! `streams_completed` (got `event: complete`), `events_total` (`next` messages),
//! `events_per_client_min`/`_max` (over connected clients), `events_per_sec` (events_total over
//! the time from the first commit in `--commits` to the last event received; over the measured
//! streaming phase when there are no commits), `duplicates` (an `id:` equal to the client's
//! highest id so far), `out_of_order` (an `id:` below it), `missing_sequences` (summed over
//! connected clients: commit-file sequences the client saw no event of; 0 is expected for an
//! unfiltered query), and `latency_ms` `{count, p50, p90, p99, max}`: for each client and each
//! sequence in the commits file that it saw, the receive time of its first event of that
//! sequence minus the commit time; `latency_max_by_package_ms`, `[sequence, max]` pairs: the
//! slowest client's latency for each package.
//!
//! Messages are not JSON-parsed: the id comes from the `id:` line and the sequence number from
//! the digits after `"datafordelerRegisterImportSequenceNumber":` in the `data:` line.

mod body;
mod sse;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use body::{BodyDecoder, Head};
use sse::{Kind, SseParser};

const DEFAULT_QUERY: &str =
    "subscription { BBR_Events { eventid datafordelerRegisterImportSequenceNumber } }";
const READ_BUF: usize = 16 * 1024;
const ERROR_BODY_BYTES: usize = 200;
const MAX_ERROR_SAMPLES: usize = 5;

#[derive(Parser, Debug)]
#[command(
    name = "sse-load",
    about = "Opens N concurrent GraphQL-over-SSE subscriptions and measures delivery"
)]
struct Args {
    /// http://host[:port]/path of the GraphQL endpoint
    #[arg(long)]
    url: String,
    /// Number of concurrent streams
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// The subscription to send
    #[arg(long, default_value = DEFAULT_QUERY)]
    query: String,
    /// At most this many connections opened per second
    #[arg(long, default_value_t = 2000.0)]
    connect_rate: f64,
    /// How long to keep streams open after all clients are connected (ms, s, m, h)
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Limit for one client's connect plus response head
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Written with the number of connected clients once the connect phase has ended
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// File of `SEQ UNIX_MICROS` commit lines, read at the end
    #[arg(long)]
    commits: Option<PathBuf>,
    /// Where to write the JSON results (also printed to stdout)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tokio worker threads
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Allow a target that is not a loopback address (a test host of your own)
    #[arg(long)]
    allow_remote: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 500ms, 60s, 2m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * unit))
}

/// Instants to unix microseconds through one anchor, so all receive times share one clock.
struct Clock {
    instant: Instant,
    unix_micros: u64,
}

impl Clock {
    fn new() -> Self {
        let instant = Instant::now();
        let unix_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Clock {
            instant,
            unix_micros,
        }
    }

    fn micros(&self, at: Instant) -> u64 {
        self.unix_micros + at.saturating_duration_since(self.instant).as_micros() as u64
    }
}

struct Shared {
    addr: SocketAddr,
    request: Vec<u8>,
    clock: Clock,
    connect_timeout: Duration,
    /// Clients whose connect phase has ended, connected or failed.
    settled: AtomicUsize,
    connected: AtomicUsize,
    /// Streams connected and not yet ended.
    open: AtomicUsize,
    events: AtomicU64,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum End {
    #[default]
    NotConnected,
    /// Stopped by us at the end of the run.
    Stopped,
    /// Got `event: complete`.
    Completed,
    /// The body ended by its framing (or the peer closed) without `complete`.
    Eof,
    Error(String),
}

#[derive(Debug, Default)]
struct ClientResult {
    connected: bool,
    /// Connect-phase failure.
    error: Option<String>,
    end: End,
    events: u64,
    duplicates: u64,
    out_of_order: u64,
    other_events: u64,
    events_without_seq: u64,
    last_id: Option<u64>,
    last_event_micros: u64,
    /// (sequence, unix micros of its first event seen), in arrival order.
    firsts: Vec<(u32, u64)>,
    max_seq: Option<u32>,
    completed: bool,
}

impl ClientResult {
    fn on_event(&mut self, ev: sse::Event, now_micros: u64) {
        if self.completed {
            return;
        }
        match ev.kind {
            Kind::Next | Kind::Message => {
                self.events += 1;
                self.last_event_micros = now_micros;
                if let Some(id) = ev.id {
                    match self.last_id {
                        Some(last) if id == last => self.duplicates += 1,
                        Some(last) if id < last => self.out_of_order += 1,
                        _ => self.last_id = Some(id),
                    }
                }
                match ev.seq.and_then(|s| u32::try_from(s).ok()) {
                    Some(seq) => self.record_first(seq, now_micros),
                    None => self.events_without_seq += 1,
                }
            }
            Kind::Complete => self.completed = true,
            Kind::Other => self.other_events += 1,
        }
    }

    fn record_first(&mut self, seq: u32, now_micros: u64) {
        match self.max_seq {
            Some(max) if seq == max => {}
            Some(max) if seq < max => {
                if !self.firsts.iter().rev().any(|&(s, _)| s == seq) {
                    self.firsts.push((seq, now_micros));
                }
            }
            _ => {
                self.firsts.push((seq, now_micros));
                self.max_seq = Some(seq);
            }
        }
    }
}

fn io_error(what: &str, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(24) => format!(
            "{what}: {e} (EMFILE: the fd limit is reached; use fewer clients or raise ulimit -n)"
        ),
        Some(99) => format!("{what}: {e} (EADDRNOTAVAIL: out of local ports)"),
        _ => format!("{what}: {e}"),
    }
}

/// Connects, sends the request and reads the response head into `buf`. Returns the stream, the
/// head, and the range of `buf` holding body bytes read along with it.
async fn open(shared: &Shared, buf: &mut [u8]) -> Result<(TcpStream, Head, usize, usize), String> {
    let mut stream = TcpStream::connect(shared.addr)
        .await
        .map_err(|e| io_error("connect", &e))?;
    stream
        .write_all(&shared.request)
        .await
        .map_err(|e| io_error("send request", &e))?;
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            return Err(format!("response head larger than {} bytes", buf.len()));
        }
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(|e| io_error("read response head", &e))?;
        if n == 0 {
            return Err("connection closed before the response head".into());
        }
        let scan_from = filled.saturating_sub(3);
        filled += n;
        if let Some(end) = body::find_head_end(&buf[scan_from..filled]) {
            let end = scan_from + end;
            let head = body::parse_head(&buf[..end])?;
            return Ok((stream, head, end, filled));
        }
    }
}

/// Up to [`ERROR_BODY_BYTES`] of a rejected response's body, for the error sample.
async fn error_body(
    stream: &mut TcpStream,
    head: &Head,
    buf: &mut [u8],
    start: usize,
    filled: usize,
) -> String {
    let mut dec = BodyDecoder::new(head.framing);
    let mut out = Vec::new();
    let take = |dec: &mut BodyDecoder, data: &[u8], out: &mut Vec<u8>| {
        let _ = dec.feed(data, &mut |s| {
            let room = ERROR_BODY_BYTES.saturating_sub(out.len());
            out.extend_from_slice(&s[..s.len().min(room)]);
        });
    };
    take(&mut dec, &buf[start..filled], &mut out);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while out.len() < ERROR_BODY_BYTES && !dec.is_done() {
        match tokio::time::timeout_at(deadline, stream.read(buf)).await {
            Ok(Ok(n)) if n > 0 => take(&mut dec, &buf[..n], &mut out),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).trim().to_string()
}

async fn client(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) -> ClientResult {
    let mut r = ClientResult::default();
    let mut buf = vec![0u8; READ_BUF].into_boxed_slice();
    let opened = match tokio::time::timeout(shared.connect_timeout, open(&shared, &mut buf)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no response head within {:?}",
            shared.connect_timeout
        )),
    };
    let (mut stream, head, start, filled) = match opened {
        Ok(x) => x,
        Err(e) => {
            r.error = Some(e);
            shared.settled.fetch_add(1, Ordering::SeqCst);
            return r;
        }
    };
    let is_sse = head
        .content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("text/event-stream"));
    if head.status != 200 || !is_sse {
        shared.settled.fetch_add(1, Ordering::SeqCst);
        let body = error_body(&mut stream, &head, &mut buf, start, filled).await;
        r.error = Some(if head.status != 200 {
            format!("HTTP {}: {body}", head.status)
        } else {
            format!(
                "HTTP 200 with content-type {:?}: {body}",
                head.content_type.as_deref().unwrap_or("")
            )
        });
        return r;
    }
    r.connected = true;
    shared.connected.fetch_add(1, Ordering::SeqCst);
    shared.open.fetch_add(1, Ordering::SeqCst);
    shared.settled.fetch_add(1, Ordering::SeqCst);

    let mut dec = BodyDecoder::new(head.framing);
    let mut sse = SseParser::new();
    let mut process =
        |r: &mut ClientResult, dec: &mut BodyDecoder, data: &[u8]| -> Result<(), String> {
            let now = shared.clock.micros(Instant::now());
            let before = r.events;
            let result = dec.feed(data, &mut |s| {
                if !r.completed {
                    sse.feed(s, &mut |ev| r.on_event(ev, now));
                }
            });
            shared
                .events
                .fetch_add(r.events - before, Ordering::Relaxed);
            result
        };
    r.end = match process(&mut r, &mut dec, &buf[start..filled]) {
        Err(e) => End::Error(e),
        Ok(()) => loop {
            if r.completed {
                break End::Completed;
            }
            if dec.is_done() {
                break End::Eof;
            }
            if *stop.borrow() {
                break End::Stopped;
            }
            let read = tokio::select! {
                biased;
                _ = stop.changed() => break End::Stopped,
                read = stream.read(&mut buf) => read,
            };
            match read {
                Ok(0) if dec.eof_ok() => break End::Eof,
                Ok(0) => break End::Error("connection closed mid-body".into()),
                Ok(n) => {
                    if let Err(e) = process(&mut r, &mut dec, &buf[..n]) {
                        break End::Error(e);
                    }
                }
                Err(e) => break End::Error(io_error("read", &e)),
            }
        },
    };
    if r.completed {
        r.end = End::Completed;
    }
    shared.open.fetch_sub(1, Ordering::SeqCst);
    r
}

/// The commits file: sequence → earliest commit time (unix micros).
fn read_commits(path: &Path) -> BTreeMap<u32, u64> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "sse-load: cannot read commits file {}: {e}; no latency",
                path.display()
            );
            return BTreeMap::new();
        }
    };
    let mut commits = BTreeMap::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        match (
            it.next().and_then(|s| s.parse::<u32>().ok()),
            it.next().and_then(|s| s.parse::<u64>().ok()),
        ) {
            (Some(seq), Some(us)) => {
                let e = commits.entry(seq).or_insert(us);
                *e = (*e).min(us);
            }
            _ => bad += 1,
        }
    }
    if bad > 0 {
        eprintln!(
            "sse-load: skipped {bad} malformed line(s) in {}",
            path.display()
        );
    }
    commits
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(
    clients: usize,
    results: &mut [ClientResult],
    commits: &BTreeMap<u32, u64>,
    stream_phase: Duration,
) -> serde_json::Value {
    let connected: Vec<&ClientResult> = results.iter().filter(|r| r.connected).collect();
    let samples = error_samples(results);
    let events_total: u64 = connected.iter().map(|r| r.events).sum();
    let last_event = connected
        .iter()
        .map(|r| r.last_event_micros)
        .max()
        .unwrap_or(0);
    let first_commit = commits.values().min().copied();
    let secs = match first_commit {
        Some(first) if last_event > first => (last_event - first) as f64 / 1e6,
        _ => stream_phase.as_secs_f64(),
    };
    let events_per_sec = if secs > 0.0 {
        events_total as f64 / secs
    } else {
        0.0
    };

    let mut missing = 0u64;
    let mut latencies = Vec::new();
    let mut slowest: BTreeMap<u32, f64> = BTreeMap::new();
    for r in results.iter_mut().filter(|r| r.connected) {
        r.firsts.sort_unstable_by_key(|&(seq, _)| seq);
        for (&seq, &committed) in commits {
            match r.firsts.binary_search_by_key(&seq, |&(s, _)| s) {
                Ok(i) => {
                    let ms = (r.firsts[i].1 as f64 - committed as f64) / 1000.0;
                    latencies.push(ms);
                    let max = slowest.entry(seq).or_insert(ms);
                    *max = max.max(ms);
                }
                Err(_) => missing += 1,
            }
        }
    }
    let slowest: Vec<serde_json::Value> = slowest
        .into_iter()
        .map(|(seq, ms)| json!([seq, round1(ms)]))
        .collect();
    latencies.sort_unstable_by(f64::total_cmp);
    let latency = if latencies.is_empty() {
        json!({"count": 0, "p50": null, "p90": null, "p99": null, "max": null})
    } else {
        json!({
            "count": latencies.len(),
            "p50": round1(percentile(&latencies, 50.0)),
            "p90": round1(percentile(&latencies, 90.0)),
            "p99": round1(percentile(&latencies, 99.0)),
            "max": round1(*latencies.last().unwrap()),
        })
    };
    let connected: Vec<&ClientResult> = results.iter().filter(|r| r.connected).collect();
    json!({
        "clients": clients,
        "clients_connected": connected.len(),
        "clients_failed": clients - connected.len(),
        "error_samples": samples,
        "streams_completed": connected.iter().filter(|r| r.completed).count(),
        "events_total": events_total,
        "events_per_client_min": connected.iter().map(|r| r.events).min().unwrap_or(0),
        "events_per_client_max": connected.iter().map(|r| r.events).max().unwrap_or(0),
        "events_per_sec": round1(events_per_sec),
        "duplicates": connected.iter().map(|r| r.duplicates).sum::<u64>(),
        "out_of_order": connected.iter().map(|r| r.out_of_order).sum::<u64>(),
        "missing_sequences": missing,
        "latency_ms": latency,
        "latency_max_by_package_ms": slowest,
    })
}

/// Up to [`MAX_ERROR_SAMPLES`] distinct errors, each with how many clients had it: connect-phase
/// failures first, then streams that broke or ended before `complete`.
fn error_samples(results: &[ClientResult]) -> Vec<String> {
    let mut distinct: Vec<(String, usize)> = Vec::new();
    let mut add = |e: String| {
        if let Some((_, n)) = distinct.iter_mut().find(|(d, _)| *d == e) {
            *n += 1;
        } else if distinct.len() < MAX_ERROR_SAMPLES {
            distinct.push((e, 1));
        }
    };
    for r in results {
        if let Some(e) = &r.error {
            add(e.clone());
        }
    }
    for r in results {
        match &r.end {
            End::Error(e) => add(format!("stream: {e}")),
            End::Eof => add("stream: ended without event: complete".into()),
            _ => {}
        }
    }
    distinct
        .into_iter()
        .map(|(e, n)| {
            if n == 1 {
                e
            } else {
                format!("{e} [{n} clients]")
            }
        })
        .collect()
}

/// The report's keys in output order (serde_json's maps are sorted by key).
const KEYS: [&str; 14] = [
    "clients",
    "clients_connected",
    "clients_failed",
    "error_samples",
    "streams_completed",
    "events_total",
    "events_per_client_min",
    "events_per_client_max",
    "events_per_sec",
    "duplicates",
    "out_of_order",
    "missing_sequences",
    "latency_ms",
    "latency_max_by_package_ms",
];
const LATENCY_KEYS: [&str; 5] = ["count", "p50", "p90", "p99", "max"];

/// Pretty JSON with the keys in [`KEYS`] order.
fn render(report: &serde_json::Value) -> String {
    let fields: Vec<String> = KEYS
        .iter()
        .map(|&key| {
            let value = if key == "latency_ms" {
                let inner: Vec<String> = LATENCY_KEYS
                    .iter()
                    .map(|&k| format!("    \"{k}\": {}", report[key][k]))
                    .collect();
                format!("{{\n{}\n  }}", inner.join(",\n"))
            } else {
                report[key].to_string()
            };
            format!("  \"{key}\": {value}")
        })
        .collect();
    format!("{{\n{}\n}}", fields.join(",\n"))
}

/// Stream-end and oddity counts that have no key in the JSON, for stderr.
fn diagnostics(results: &[ClientResult]) -> String {
    let count = |f: &dyn Fn(&ClientResult) -> bool| results.iter().filter(|r| f(r)).count();
    let stopped = count(&|r| r.end == End::Stopped);
    let completed = count(&|r| r.end == End::Completed);
    let eof = count(&|r| r.end == End::Eof);
    let errors = count(&|r| matches!(r.end, End::Error(_)));
    let other: u64 = results.iter().map(|r| r.other_events).sum();
    let no_seq: u64 = results.iter().map(|r| r.events_without_seq).sum();
    format!(
        "streams: {completed} completed, {stopped} open until the end, {eof} ended without complete, {errors} broke; \
         {other} events of other types, {no_seq} events without a sequence number"
    )
}

fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

fn progress(shared: &Shared, clients: usize, last: &mut Instant) {
    if last.elapsed() >= Duration::from_secs(5) {
        *last = Instant::now();
        eprintln!(
            "sse-load: settled {}/{clients}, connected {}, open {}, events {}",
            shared.settled.load(Ordering::Relaxed),
            shared.connected.load(Ordering::Relaxed),
            shared.open.load(Ordering::Relaxed),
            shared.events.load(Ordering::Relaxed),
        );
    }
}

async fn run(args: Args) -> Result<serde_json::Value, String> {
    if args.connect_rate.is_nan() || args.connect_rate <= 0.0 {
        return Err("--connect-rate must be positive".into());
    }
    let url = body::parse_url(&args.url)?;
    let addr = tokio::net::lookup_host(&url.connect)
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", url.connect))?
        .next()
        .ok_or_else(|| format!("{} resolved to no address", url.connect))?;
    if !addr.ip().is_loopback() && !args.allow_remote {
        return Err(format!(
            "{addr} is not a loopback address; load goes only to a server of your own (pass --allow-remote for a test host)"
        ));
    }
    let shared = Arc::new(Shared {
        addr,
        request: body::build_request(&url, &args.query),
        clock: Clock::new(),
        connect_timeout: args.connect_timeout,
        settled: AtomicUsize::new(0),
        connected: AtomicUsize::new(0),
        open: AtomicUsize::new(0),
        events: AtomicU64::new(0),
    });
    let clients = args.clients;
    eprintln!(
        "sse-load: {clients} clients to {addr} at up to {}/s",
        args.connect_rate
    );
    let (stop_tx, stop_rx) = watch::channel(false);

    let ramp_start = Instant::now();
    let mut last_progress = Instant::now();
    let mut handles = Vec::with_capacity(clients);
    for i in 0..clients {
        let at = ramp_start + Duration::from_secs_f64(i as f64 / args.connect_rate);
        if at > Instant::now() {
            tokio::time::sleep_until(at.into()).await;
        }
        handles.push(tokio::spawn(client(shared.clone(), stop_rx.clone())));
        progress(&shared, clients, &mut last_progress);
    }
    while shared.settled.load(Ordering::SeqCst) < clients {
        tokio::time::sleep(Duration::from_millis(20)).await;
        progress(&shared, clients, &mut last_progress);
    }
    let connected = shared.connected.load(Ordering::SeqCst);
    eprintln!(
        "sse-load: connect phase done in {:.1}s: {connected} connected, {} failed",
        ramp_start.elapsed().as_secs_f64(),
        clients - connected
    );
    if let Some(path) = &args.ready_file {
        write_atomic(path, &format!("{connected}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }

    let stream_start = Instant::now();
    let deadline = stream_start + args.duration;
    while Instant::now() < deadline && shared.open.load(Ordering::SeqCst) > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
        progress(&shared, clients, &mut last_progress);
    }
    let stream_phase = stream_start.elapsed();
    let _ = stop_tx.send(true);
    let mut results = Vec::with_capacity(clients);
    for h in handles {
        results.push(h.await.unwrap_or_else(|e| ClientResult {
            error: Some(format!("client task: {e}")),
            ..Default::default()
        }));
    }
    let commits = args
        .commits
        .as_deref()
        .map(read_commits)
        .unwrap_or_default();
    eprintln!(
        "sse-load: {}; {} commits read",
        diagnostics(&results),
        commits.len()
    );
    Ok(report(clients, &mut results, &commits, stream_phase))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let out = args.out.clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sse-load: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(args));
    // Dropping the runtime would wait for nothing: every task has ended.
    let value = match result {
        Ok(v) => v,
        Err(e) => {
            eprintln!("sse-load: {e}");
            return ExitCode::from(2);
        }
    };
    let text = render(&value);
    println!("{text}");
    if let Some(path) = out
        && let Err(e) = std::fs::write(&path, format!("{text}\n"))
    {
        eprintln!("sse-load: cannot write {}: {e}", path.display());
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    fn ev(id: u64, seq: u64) -> sse::Event {
        sse::Event {
            kind: Kind::Next,
            id: Some(id),
            seq: Some(seq),
        }
    }

    #[test]
    fn client_bookkeeping() {
        let mut r = ClientResult {
            connected: true,
            ..Default::default()
        };
        r.on_event(ev(1, 5), 100);
        r.on_event(ev(2, 5), 110);
        r.on_event(ev(2, 5), 120); // duplicate
        r.on_event(ev(3, 6), 130);
        r.on_event(ev(1, 5), 140); // out of order, seq already seen
        r.on_event(ev(4, 4), 150); // an older sequence first seen late
        r.on_event(
            sse::Event {
                kind: Kind::Complete,
                id: None,
                seq: None,
            },
            160,
        );
        r.on_event(ev(9, 9), 170); // after complete: ignored
        assert_eq!((r.events, r.duplicates, r.out_of_order), (6, 1, 1));
        assert_eq!(r.firsts, vec![(5, 100), (6, 130), (4, 150)]);
        assert!(r.completed);

        let commits = BTreeMap::from([(4, 50), (5, 90), (6, 100), (7, 100)]);
        let mut results = vec![
            r,
            ClientResult {
                error: Some("connect: refused".into()),
                ..Default::default()
            },
        ];
        let v = report(2, &mut results, &commits, Duration::from_secs(1));
        assert_eq!(v["clients_connected"], 1);
        assert_eq!(v["clients_failed"], 1);
        assert_eq!(v["streams_completed"], 1);
        assert_eq!(v["events_total"], 6);
        assert_eq!(v["missing_sequences"], 1);
        assert_eq!(v["latency_ms"]["count"], 3);
        // latencies 0.1, 0.01, 0.03 ms
        assert_eq!(v["latency_ms"]["max"], 0.1);
        assert_eq!(v["error_samples"][0], "connect: refused");
        // 6 events from the first commit (50) to the last event (150): 100 µs
        assert_eq!(v["events_per_sec"], 60000.0);

        let text = render(&v);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), v);
        assert!(text.starts_with("{\n  \"clients\": 2,\n  \"clients_connected\": 1,"));
        let none = report(0, &mut [], &BTreeMap::new(), Duration::ZERO);
        assert_eq!(none["latency_ms"]["p50"], serde_json::Value::Null);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&render(&none)).unwrap(),
            none
        );
    }

    #[test]
    fn samples_are_distinct_and_counted() {
        let failed = |e: &str| ClientResult {
            error: Some(e.into()),
            ..Default::default()
        };
        let ended = |end| ClientResult {
            connected: true,
            end,
            ..Default::default()
        };
        let mut results: Vec<ClientResult> = (0..3).map(|_| failed("connect: refused")).collect();
        results.push(failed("HTTP 400: bad"));
        results.push(ended(End::Eof));
        results.push(ended(End::Stopped));
        results.push(ended(End::Error("read: reset".into())));
        results.push(ended(End::Error("read: reset".into())));
        assert_eq!(
            error_samples(&results),
            vec![
                "connect: refused [3 clients]",
                "HTTP 400: bad",
                "stream: ended without event: complete",
                "stream: read: reset [2 clients]"
            ]
        );
        let many: Vec<ClientResult> = (0..9).map(|i| failed(&format!("e{i}"))).collect();
        assert_eq!(error_samples(&many), vec!["e0", "e1", "e2", "e3", "e4"]);
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 90.0), 3.0);
    }
}
