//! Rate limits of the website's public endpoints, per client, in isolate memory (see
//! `edgecache_core::ratelimit` for what that does and does not promise).

use std::cell::RefCell;

use worker::Request;

use crate::runtime::platform::now_ms;
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
}

impl Bucket {
    const ALL: [Bucket; 3] = [Bucket::DemoWrite, Bucket::DemoReset, Bucket::BetaSignup];

    /// The limit.
    pub fn limit(self) -> Limit {
        let (max, window_ms) = match self {
            Bucket::DemoWrite => (30, 60_000),
            Bucket::DemoReset => (5, 60_000),
            Bucket::BetaSignup => (5, 600_000),
        };
        Limit { max, window_ms }
    }

    fn index(self) -> usize {
        Bucket::ALL.iter().position(|b| *b == self).unwrap_or(0)
    }
}

thread_local! {
    static LIMITERS: RefCell<Vec<RateLimiter>> = RefCell::new(
        Bucket::ALL.iter().map(|b| RateLimiter::new(b.limit(), MAX_CLIENTS)).collect(),
    );
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

/// Counts the request against `bucket`; 429 `rate_limited` with `retry-after` when over it.
pub fn check(req: &Request, bucket: Bucket) -> Result<(), ApiError> {
    let client = client(req);
    let verdict = LIMITERS.with(|l| l.borrow_mut()[bucket.index()].check(&client, now_ms()));
    match verdict {
        Verdict::Allowed => Ok(()),
        Verdict::Limited { retry_after_secs } => Err(ApiError::rate_limited(retry_after_secs)),
    }
}
