//! Request rate limits per client: a token bucket per credential, or per IP address for
//! anonymous callers and refused credentials (so guessing keys is slow too).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who a bucket belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// An authenticated caller, by credential id.
    Credential(Arc<str>),
    /// An anonymous caller, or one whose credential was refused.
    Address(IpAddr),
    /// A caller whose address is unknown (not over TCP).
    Unknown,
}

/// Token buckets: `rate` requests per second on average, bursts of up to `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<RateKey, (f64, Instant)>>,
}

/// Most buckets kept; beyond it, full ones (idle clients) are dropped.
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    /// `rate` requests per second with bursts of `burst`; `rate == 0` admits everything.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `key`'s bucket, or says how long until one is there.
    pub fn check(&self, key: RateKey) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }

    /// The configured rate (requests per second).
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_with_the_wait() {
        let limiter = RateLimiter::new(10, 3);
        let key = || RateKey::Address(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..3 {
            assert!(limiter.check(key()).is_ok());
        }
        let wait = limiter.check(key()).expect_err("over the burst");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert!(
            limiter
                .check(RateKey::Address(IpAddr::from([10, 0, 0, 2])))
                .is_ok(),
            "another client has its own bucket"
        );
        assert!(RateLimiter::new(0, 0).check(key()).is_ok(), "0 disables");
    }
}
