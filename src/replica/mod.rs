//! `fordeler replica`: keeps a copy of one register in sync through the source's public GraphQL
//! API only, the two-step way (events, then the rows they name), with the checkpoint stored in
//! the same transaction as the rows it covers.
//!
//! - [`source`]: the HTTP client of the source: queries, the SSE subscription, credentials.
//! - `decode`: rows read straight from the source's JSON.
//! - [`schema`]: what is mirrored (learned by introspection), value conversions, checksums.
//! - [`target`]: the replica's database, SQLite or PostgreSQL.
//! - [`sync`]: catch-up and follow.
//! - [`verify`]: compares replica and source.

pub(crate) mod decode;
pub mod schema;
pub mod source;
pub mod sync;
pub mod target;
pub mod verify;

use std::time::Duration;

pub use source::{Credentials, Source};
pub use sync::{Phase, Progress, SyncOptions, SyncReport, sync};
pub use target::Target;
pub use verify::{VerifyReport, verify};

/// Why a replica command stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The source did not answer (connection refused, timeout, broken stream).
    #[error("cannot reach the source {url}: {detail}")]
    Unreachable {
        /// The endpoint.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The source refused the credentials, or they do not grant what was asked.
    #[error("the source refused access: {0}")]
    Auth(String),
    /// The source is overloaded or shutting down (429, 503, `LIMIT_EXCEEDED`).
    #[error("the source is busy ({message})")]
    Busy {
        /// HTTP status.
        status: u16,
        /// What it said.
        message: String,
        /// Its `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The source no longer has the history the replica was built from.
    #[error("the source was reset: {0}")]
    Reset(String),
    /// The source's schema of the register differs from what the replica holds.
    #[error("schema mismatch: {0}")]
    Schema(String),
    /// The source answered with an error a retry cannot fix.
    #[error("the source answered with an error: {0}")]
    Source(String),
    /// The replica's database failed.
    #[error("replica database: {0}")]
    Target(String),
    /// The command was asked for something impossible.
    #[error("{0}")]
    Usage(String),
}

impl ReplicaError {
    /// Whether waiting and retrying can help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ReplicaError::Unreachable { .. } | ReplicaError::Busy { .. }
        )
    }

    /// The process exit code (documented in `fordeler replica --help`).
    pub fn exit_code(&self) -> i32 {
        match self {
            ReplicaError::Usage(_) => 2,
            ReplicaError::Unreachable { .. } | ReplicaError::Busy { .. } => 3,
            ReplicaError::Auth(_) => 4,
            ReplicaError::Reset(_) => 5,
            ReplicaError::Schema(_) => 6,
            ReplicaError::Source(_) | ReplicaError::Target(_) => 1,
        }
    }

    /// A short name of the kind, for JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            ReplicaError::Unreachable { .. } => "unreachable",
            ReplicaError::Auth(_) => "auth",
            ReplicaError::Busy { .. } => "busy",
            ReplicaError::Reset(_) => "reset",
            ReplicaError::Schema(_) => "schema",
            ReplicaError::Source(_) => "source",
            ReplicaError::Target(_) => "target",
            ReplicaError::Usage(_) => "usage",
        }
    }
}

/// Exponential backoff with full jitter, honouring the server's `Retry-After`.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    base: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            attempt: 0,
            base: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// Failures since the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Forgets earlier failures.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How long to wait after the next failure: a random time up to `base * 2^attempt`
    /// (capped), but at least what `Retry-After` asked for.
    pub fn next_delay(&mut self, error: &ReplicaError) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1 << self.attempt.min(16))
            .min(self.max);
        self.attempt += 1;
        let jittered = ceiling.mul_f64(0.5 + fastrand::f64() * 0.5);
        match error {
            ReplicaError::Busy {
                retry_after: Some(after),
                ..
            } => (*after).max(jittered.min(Duration::from_secs(1)) + *after),
            _ => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_honours_retry_after() {
        let mut backoff = Backoff::default();
        let unreachable = ReplicaError::Unreachable {
            url: "x".into(),
            detail: "y".into(),
        };
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay(&unreachable)).collect();
        assert!(delays[0] <= Duration::from_millis(250));
        assert!(delays[0] >= Duration::from_millis(125));
        assert!(delays[11] <= Duration::from_secs(30));
        assert!(delays[11] >= Duration::from_secs(15));
        let busy = ReplicaError::Busy {
            status: 429,
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        backoff.reset();
        let delay = backoff.next_delay(&busy);
        assert!(delay >= Duration::from_secs(7) && delay <= Duration::from_secs(8));
    }
}
