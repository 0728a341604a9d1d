//! Per-client rate limits for the website's public endpoints (the demo's writes and resets,
//! beta sign-ups): a fixed window per client, kept in bounded memory.
//!
//! The edge keeps one limiter per endpoint in isolate memory, so the limit holds per isolate:
//! a client spread over several isolates or data centres gets the limit in each, and a
//! restarted isolate starts afresh. That is enough to keep a demo from being hammered, not a
//! quota. Time is passed in, so the arithmetic is tested without a clock.

use std::collections::HashMap;

/// Where clients beyond the memory bound are counted, together.
const OVERFLOW: &str = "\u{0}overflow";

/// A limit: at most `max` requests per `window_ms` per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests allowed in one window.
    pub max: u32,
    /// The window's length.
    pub window_ms: u64,
}

/// A limiter's verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allowed,
    /// Refused: the client's window allows again in this many seconds (at least 1).
    Limited {
        /// Seconds until the window ends.
        retry_after_secs: u64,
    },
}

/// Counts requests per client in fixed windows, remembering at most `max_clients` clients.
/// When that many clients have open windows, new clients share one overflow window: memory
/// stays bounded, and a flood of made-up clients is limited as one client rather than let
/// through.
#[derive(Debug)]
pub struct RateLimiter {
    limit: Limit,
    max_clients: usize,
    /// Client → (window start, requests in it).
    windows: HashMap<String, (u64, u32)>,
}

impl RateLimiter {
    /// An empty limiter.
    pub fn new(limit: Limit, max_clients: usize) -> Self {
        RateLimiter {
            limit,
            max_clients: max_clients.max(1),
            windows: HashMap::new(),
        }
    }

    /// Counts one request of `client` at `now_ms` and says whether it may go ahead.
    pub fn check(&mut self, client: &str, now_ms: u64) -> Verdict {
        let window_ms = self.limit.window_ms;
        let expired = |start: u64| now_ms.saturating_sub(start) >= window_ms;
        if !self.windows.contains_key(client) && self.windows.len() >= self.max_clients {
            self.windows.retain(|_, (start, _)| !expired(*start));
        }
        let client = if self.windows.contains_key(client) || self.windows.len() < self.max_clients {
            client
        } else {
            OVERFLOW
        };
        let window = self
            .windows
            .entry(client.to_string())
            .or_insert((now_ms, 0));
        if expired(window.0) {
            *window = (now_ms, 0);
        }
        if window.1 >= self.limit.max {
            let left_ms = (window.0 + window_ms).saturating_sub(now_ms);
            return Verdict::Limited {
                retry_after_secs: left_ms.div_ceil(1000).max(1),
            };
        }
        window.1 += 1;
        Verdict::Allowed
    }

    /// Clients with a window in memory (the overflow window counts as one).
    pub fn clients(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: Limit = Limit {
        max: 3,
        window_ms: 60_000,
    };

    #[test]
    fn a_client_gets_max_requests_per_window() {
        let mut l = RateLimiter::new(LIMIT, 10);
        for t in [0, 1, 2] {
            assert_eq!(l.check("a", t), Verdict::Allowed);
        }
        assert_eq!(
            l.check("a", 30_000),
            Verdict::Limited {
                retry_after_secs: 30
            }
        );
        assert_eq!(l.check("b", 30_000), Verdict::Allowed, "per client");
        assert_eq!(
            l.check("a", 59_999),
            Verdict::Limited {
                retry_after_secs: 1
            }
        );
        assert_eq!(l.check("a", 60_000), Verdict::Allowed, "a new window");
    }

    #[test]
    fn clients_past_the_bound_share_one_window() {
        let mut l = RateLimiter::new(LIMIT, 2);
        assert_eq!(l.check("a", 0), Verdict::Allowed);
        assert_eq!(l.check("b", 0), Verdict::Allowed);
        for c in ["c", "d", "e"] {
            assert_eq!(l.check(c, 0), Verdict::Allowed);
        }
        assert!(matches!(l.check("f", 0), Verdict::Limited { .. }));
        assert_eq!(l.clients(), 3);
        // Once the old windows are over, their room is given to new clients.
        assert_eq!(l.check("g", 60_000), Verdict::Allowed);
        assert_eq!(l.clients(), 1);
    }

    /// The most allowances `allowed` (times, by client) hold in any interval of `window_ms`.
    fn busiest(allowed: &[(u64, u8)], who: Option<u8>, window_ms: u64) -> usize {
        let mine: Vec<u64> = allowed
            .iter()
            .filter(|(_, c)| who.is_none_or(|w| w == *c))
            .map(|(t, _)| *t)
            .collect();
        mine.iter()
            .map(|t| {
                mine.iter()
                    .filter(|u| **u >= *t && **u < t + window_ms)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    proptest! {
        /// Against a brute-force count over random request sequences: a fixed window lets a
        /// client through at most `max` times per window, so at most 2 × `max` in any interval
        /// of a window's length (the end of one window and the start of the next); with more
        /// clients than the memory bound, the total is bounded by the remembered clients plus
        /// the overflow window; memory never exceeds the bound plus that one window.
        #[test]
        fn never_more_than_max_per_window_and_bounded_memory(
            steps in proptest::collection::vec((0u8..6, 0u64..5_000), 1..200),
            max_clients in 1usize..8,
        ) {
            let limit = Limit { max: 4, window_ms: 10_000 };
            let mut l = RateLimiter::new(limit, max_clients);
            let mut now = 0;
            let mut allowed = Vec::new();
            for (client, dt) in steps {
                now += dt;
                if l.check(&format!("c{client}"), now) == Verdict::Allowed {
                    allowed.push((now, client));
                }
                prop_assert!(l.clients() <= max_clients + 1);
            }
            if max_clients >= 6 {
                for c in 0..6 {
                    prop_assert!(busiest(&allowed, Some(c), 10_000) <= 8);
                }
            }
            prop_assert!(busiest(&allowed, None, 10_000) <= 8 * (max_clients.min(6) + 1));
        }

        #[test]
        fn a_lone_client_gets_exactly_max(times in proptest::collection::vec(0u64..9_999, 1..20)) {
            let mut l = RateLimiter::new(Limit { max: 5, window_ms: 10_000 }, 8);
            let mut sorted = times.clone();
            sorted.sort_unstable();
            let verdicts: Vec<Verdict> = sorted.iter().map(|t| l.check("x", *t)).collect();
            let ok = verdicts.iter().filter(|v| **v == Verdict::Allowed).count();
            prop_assert_eq!(ok, sorted.len().min(5));
            prop_assert!(verdicts[..ok].iter().all(|v| *v == Verdict::Allowed));
        }
    }
}
