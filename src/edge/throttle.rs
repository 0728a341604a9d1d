//! Rate limits in isolate memory (see `edgecache_core::ratelimit` for what that does and does
//! not promise): the website's public endpoints per client, and each tenant's budgets for the
//! admin API and for invalidations, so one tenant cannot starve another's coordinators or the
//! isolate.

use std::cell::RefCell;

use worker::Request;

use crate::runtime::platform::now_ms;
use edgecache_core::config::Config;
use edgecache_core::ratelimit::{Limit, RateLimiter, Verdict};
use edgecache_core::ApiError;

/// Clients each limiter remembers; past it, new clients share one window.
const MAX_CLIENTS: usize = 10_000;

/// One limited endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `POST /_edgecache/demo/write`: 30 a minute.
    DemoWrite,
    /// `POST /_edgecache/demo/reset`: 5 a minute.
    DemoReset,
    /// `POST /_edgecache/beta`: 5 every ten minutes.
    BetaSignup,
    /// A tenant token's admin API calls: `EDGECACHE_ADMIN_CALLS_PER_MIN` a minute.
    AdminCall,
    /// A tenant's invalidations (signed webhook, admin API):
    /// `EDGECACHE_INVALIDATIONS_PER_MIN` a minute.
    Invalidation,
}

impl Bucket {
    const ALL: [Bucket; 5] = [
        Bucket::DemoWrite,
        Bucket::DemoReset,
        Bucket::BetaSignup,
        Bucket::AdminCall,
        Bucket::Invalidation,
    ];

    /// The limit.
    pub fn limit(self, config: &Config) -> Limit {
        let per_min = |n: u64| (u32::try_from(n).unwrap_or(u32::MAX), 60_000);
        let (max, window_ms) = match self {
            Bucket::DemoWrite => (30, 60_000),
            Bucket::DemoReset => (5, 60_000),
            Bucket::BetaSignup => (5, 600_000),
            Bucket::AdminCall => per_min(config.admin_calls_per_min),
            Bucket::Invalidation => per_min(config.invalidations_per_min),
        };
        Limit { max, window_ms }
    }

    fn index(self) -> usize {
        Bucket::ALL.iter().position(|b| *b == self).unwrap_or(0)
    }
}

thread_local! {
    // Made on first use from the isolate's configuration (fixed for its life).
    static LIMITERS: RefCell<Vec<RateLimiter>> = const { RefCell::new(Vec::new()) };
}

/// The client a request counts against: Cloudflare's `CF-Connecting-IP`, or one shared client
/// where there is none (a local `wrangler dev` without it).
pub fn client(req: &Request) -> String {
    req.headers()
        .get("cf-connecting-ip")
        .ok()
        .flatten()
        .filter(|ip| !ip.is_empty() && ip.len() <= 64)
        .unwrap_or_else(|| "local".to_string())
}

/// Counts the request against `bucket` for its client; 429 `rate_limited` with `retry-after`
/// when over it.
pub fn check(req: &Request, config: &Config, bucket: Bucket) -> Result<(), ApiError> {
    check_for(&client(req), config, bucket)
}

/// Counts one call of `who` (a client, or a tenant) against `bucket`.
pub fn check_for(who: &str, config: &Config, bucket: Bucket) -> Result<(), ApiError> {
    let verdict = LIMITERS.with(|l| {
        let mut l = l.borrow_mut();
        if l.is_empty() {
            *l = Bucket::ALL
                .iter()
                .map(|b| RateLimiter::new(b.limit(config), MAX_CLIENTS))
                .collect();
        }
        l[bucket.index()].check(who, now_ms())
    });
    match verdict {
        Verdict::Allowed => Ok(()),
        Verdict::Limited { retry_after_secs } => Err(ApiError::rate_limited(retry_after_secs)),
    }
}
