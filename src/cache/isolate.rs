//! The isolate's state: L1, the views of each coordinator's table, misses in flight, counters
//! and (tests only) injected faults. Plain Rust data only: a JS object kept across requests
//! fails, and a panic resets all of it, so nothing here is the only copy of anything.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::l1::{L1Cache, Weigh};
use super::lookup::Tier;
use crate::runtime::platform::random_bytes;
use edgecache_core::config::Config;
use edgecache_core::entry::{CachedEntry, SharedEntry};
use edgecache_core::freshness::{Changes, TableView};
use edgecache_core::lag::{revealed_lags, LagSummary, LagWindow};
use edgecache_core::outcome::Outcome;
use edgecache_core::protocol::{EdgeCounters, L1Summary, WriteFault};
use edgecache_core::relay::RelayPolicy;
use edgecache_core::CoordinatorId;

/// Faults the integration tests inject (only with `EDGECACHE_TEST_HOOKS=1`).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, Serialize)]
#[serde(default)]
pub struct Faults {
    /// Origin reads fail.
    pub fail_reads: bool,
    /// Origin reads wait this long after the fill stamp is taken.
    pub read_delay_ms: u64,
    /// Bench switch: L1 holds nothing, so hits come from L2.
    pub disable_l1: bool,
    /// Writes through this isolate leave its views alone, as if another isolate had taken
    /// the write: tests of bounded staleness and read-your-writes need that.
    pub keep_views_on_write: bool,
    /// The next write through this isolate fails this way.
    pub next_write_fault: Option<WriteFault>,
}

struct EdgeState {
    l1: L1Cache<SharedEntry>,
    views: HashMap<String, TableView>,
    /// Views whose next refresh must come from the coordinator itself, not the data centre's
    /// relay (a write went through this isolate: the relay's answer may predate it).
    expired: HashSet<String>,
    /// Per view: invalidation lags and how it was refreshed.
    lags: HashMap<String, LagWindow>,
    /// When this isolate refreshes the data centre's relay early (drawn once per isolate, on
    /// first use).
    relay: Option<RelayPolicy>,
    inflight: HashMap<String, u64>,
    counters: HashMap<String, EdgeCounters>,
    faults: Faults,
}

thread_local! {
    static EDGE: RefCell<Option<EdgeState>> = const { RefCell::new(None) };
}

/// A number in `[0, 1)` from the runtime's randomness (0 if it has none: every isolate then
/// refreshes the relay at the earliest fraction, which is safe, just less spread).
fn random_unit() -> f64 {
    random_bytes::<4>()
        .map(|b| u32::from_le_bytes(b) as f64 / (u32::MAX as f64 + 1.0))
        .unwrap_or(0.0)
}

/// Runs `f` on the isolate's state, creating it with an L1 of `l1_max_bytes` on first use.
/// Never call across an `.await`: the borrow must end before the request yields.
fn with<T>(l1_max_bytes: usize, f: impl FnOnce(&mut EdgeState) -> T) -> T {
    EDGE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let state = slot.get_or_insert_with(|| EdgeState {
            l1: L1Cache::new(l1_max_bytes),
            views: HashMap::new(),
            expired: HashSet::new(),
            lags: HashMap::new(),
            relay: None,
            inflight: HashMap::new(),
            counters: HashMap::new(),
            faults: Faults::default(),
        });
        f(state)
    })
}

/// Where a view's refresh came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshSource {
    /// Another isolate's answer, shared through the data centre's relay.
    Relay,
    /// The coordinator itself.
    Coordinator,
}

/// Handle on the isolate's state for one request.
#[derive(Clone, Copy)]
pub struct Edge {
    l1_max_bytes: usize,
}

impl Edge {
    /// The state of this isolate, L1 bounded to `l1_max_bytes`.
    pub fn new(l1_max_bytes: usize) -> Self {
        Edge { l1_max_bytes }
    }

    /// Reads the view of `coordinator` (a [`CoordinatorId`]'s text) without copying it (a view
    /// can hold thousands of invalidated keys).
    pub fn with_view<T>(&self, coordinator: &CoordinatorId, f: impl FnOnce(&TableView) -> T) -> T {
        static EMPTY: std::sync::OnceLock<TableView> = std::sync::OnceLock::new();
        with(self.l1_max_bytes, |s| {
            match s.views.get(coordinator.as_str()) {
                Some(v) => f(v),
                None => f(EMPTY.get_or_init(TableView::default)),
            }
        })
    }

    /// Applies a coordinator's answer to the view, as of `asked_at_ms` (when it was asked for,
    /// by this isolate or, through the relay, another), and records the lag of each write it
    /// reveals at `now_ms`.
    pub fn apply_changes(
        &self,
        coordinator: &CoordinatorId,
        changes: &Changes,
        asked_at_ms: u64,
        now_ms: u64,
        source: RefreshSource,
    ) {
        with(self.l1_max_bytes, |s| {
            let id = coordinator.as_str();
            let view = s.views.entry(id.to_string()).or_default();
            let lags = revealed_lags(view.seq, changes, now_ms);
            view.apply(changes, asked_at_ms);
            let window = s.lags.entry(id.to_string()).or_default();
            window.record(lags);
            match source {
                RefreshSource::Relay => window.relay_refreshes += 1,
                RefreshSource::Coordinator => {
                    window.coordinator_refreshes += 1;
                    s.expired.remove(id);
                }
            }
        })
    }

    /// Makes the next read of the table refresh its view first, from the coordinator itself
    /// (after a write through here).
    pub fn expire_view(&self, coordinator: &CoordinatorId) {
        with(self.l1_max_bytes, |s| {
            if let Some(v) = s.views.get_mut(coordinator.as_str()) {
                v.refreshed_at_ms = v.refreshed_at_ms.min(1);
            }
            s.expired.insert(coordinator.as_str().to_string());
        })
    }

    /// Whether the view's next refresh must come from the coordinator (see `expire_view`).
    pub fn must_ask_coordinator(&self, coordinator: &CoordinatorId) -> bool {
        with(self.l1_max_bytes, |s| {
            s.expired.contains(coordinator.as_str())
        })
    }

    /// This isolate's relay policy.
    pub fn relay_policy(&self) -> RelayPolicy {
        with(self.l1_max_bytes, |s| {
            *s.relay
                .get_or_insert_with(|| RelayPolicy::from_unit(random_unit()))
        })
    }

    /// Test hooks only: forgets every view, as a new isolate would start.
    pub fn forget_views(&self) {
        with(self.l1_max_bytes, |s| s.views.clear())
    }

    /// The lag and refresh figures of a view.
    pub fn lag_summary(&self, coordinator: &CoordinatorId) -> LagSummary {
        with(self.l1_max_bytes, |s| {
            s.lags
                .get(coordinator.as_str())
                .map(LagWindow::summary)
                .unwrap_or_default()
        })
    }

    /// Whether every table view admits the entry. `known` are the coordinators the read
    /// already named (all of one data source), so a hit builds no names; an entry stamped by
    /// other tables (filled before its relation was redefined) has those named here.
    pub fn admits(&self, known: &[CoordinatorId], entry: &CachedEntry) -> bool {
        with(self.l1_max_bytes, |s| {
            entry.stamps.iter().all(|(table, stamp)| {
                let view = match known.iter().find(|c| c.table() == table) {
                    Some(id) => s.views.get(id.as_str()),
                    None => known
                        .first()
                        .and_then(|c| s.views.get(CoordinatorId::new(&c.source(), table).as_str())),
                };
                view.is_some_and(|v| v.admits(&entry.key, *stamp))
            })
        })
    }

    /// Starts the fill of `key`, unless another request's fill of it started less than
    /// `stale_after_ms` ago (`None`: that request is fetching it).
    pub fn begin_fill(&self, key: &str, now_ms: u64, stale_after_ms: u64) -> Option<FillGuard> {
        let busy = with(self.l1_max_bytes, |s| {
            s.inflight
                .get(key)
                .is_some_and(|&since| now_ms.saturating_sub(since) < stale_after_ms)
        });
        if busy {
            None
        } else {
            Some(self.take_fill(key, now_ms))
        }
    }

    /// Starts the fill of `key` whatever is in flight; the first guard dropped ends it.
    pub fn take_fill(&self, key: &str, now_ms: u64) -> FillGuard {
        with(self.l1_max_bytes, |s| {
            s.inflight.insert(key.to_string(), now_ms);
        });
        FillGuard {
            edge: *self,
            key: key.to_string(),
        }
    }

    /// Whether a fill of the key is in flight.
    pub fn is_filling(&self, key: &str) -> bool {
        with(self.l1_max_bytes, |s| s.inflight.contains_key(key))
    }

    /// Updates a tenant's counters.
    pub fn count(&self, tenant: &str, f: impl FnOnce(&mut EdgeCounters)) {
        with(self.l1_max_bytes, |s| {
            // Looked up before inserting: a hit allocates nothing for a tenant already counted.
            if let Some(c) = s.counters.get_mut(tenant) {
                f(c)
            } else {
                let mut c = EdgeCounters::default();
                f(&mut c);
                s.counters.insert(tenant.to_string(), c);
            }
        })
    }

    /// A tenant's counters.
    pub fn counters(&self, tenant: &str) -> EdgeCounters {
        with(self.l1_max_bytes, |s| {
            s.counters.get(tenant).cloned().unwrap_or_default()
        })
    }

    /// L1's counters (isolate-wide).
    pub fn l1_stats(&self) -> L1Summary {
        with(self.l1_max_bytes, |s| s.l1.stats())
    }

    /// The faults tests injected; none unless the deployment enables test hooks.
    pub fn faults(&self, config: &Config) -> Faults {
        if config.test_hooks {
            with(self.l1_max_bytes, |s| s.faults.clone())
        } else {
            Faults::default()
        }
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        with(self.l1_max_bytes, |s| s.faults = faults)
    }

    /// L1 as a lookup tier.
    pub fn l1(&self) -> L1Tier {
        L1Tier { edge: *self }
    }
}

/// A miss in flight: dropping it ends the fill, stored or not, so followers stop waiting.
/// Never drop one inside [`with`] (the isolate's state is borrowed there).
#[must_use = "dropping the guard ends the fill at once"]
pub struct FillGuard {
    edge: Edge,
    key: String,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        with(self.edge.l1_max_bytes, |s| {
            s.inflight.remove(&self.key);
        })
    }
}

/// L1 as a lookup tier.
pub struct L1Tier {
    edge: Edge,
}

impl Tier for L1Tier {
    fn outcome(&self) -> Outcome {
        Outcome::HitL1
    }

    async fn get(&self, key: &str) -> Option<SharedEntry> {
        with(self.edge.l1_max_bytes, |s| {
            if s.faults.disable_l1 {
                return None;
            }
            s.l1.get(key).cloned()
        })
    }

    async fn put(&self, entry: &SharedEntry) {
        with(self.edge.l1_max_bytes, |s| {
            if !s.faults.disable_l1 {
                // L1 keeps copies past their TTL (for stale-if-error); the TTL is checked on
                // lookup, so L1 itself has no expiry.
                s.l1.insert(&entry.key, entry.clone());
            }
        })
    }
}

impl Weigh for SharedEntry {
    fn weight(&self) -> usize {
        // The Rc's counters sit beside the entry in one allocation.
        2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<CachedEntry>()
            + self.key.len()
            + self.body.len()
            + self.etag.len()
            + self.stamps.keys().map(|t| t.len() + 48).sum::<usize>()
            + self
                .vary
                .iter()
                .flatten()
                .map(|n| n.len() + std::mem::size_of::<String>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_ends_when_its_guard_drops() {
        let edge = Edge::new(1 << 20);
        let leader = edge
            .begin_fill("t:/a", 1_000, 500)
            .expect("nothing in flight");
        assert!(edge.is_filling("t:/a"));
        assert!(
            edge.begin_fill("t:/a", 1_400, 500).is_none(),
            "a follower waits"
        );
        drop(leader);
        assert!(!edge.is_filling("t:/a"));
        assert!(edge.begin_fill("t:/a", 1_400, 500).is_some());
        assert!(!edge.is_filling("t:/a"), "an unbound guard ends at once");
    }

    #[test]
    fn a_fill_older_than_the_wait_limit_is_taken_over() {
        let edge = Edge::new(1 << 20);
        let old = edge
            .begin_fill("t:/b", 1_000, 500)
            .expect("nothing in flight");
        let new = edge
            .begin_fill("t:/b", 1_500, 500)
            .expect("the old fill is stale");
        let forced = edge.take_fill("t:/b", 1_501);
        drop(old);
        assert!(
            !edge.is_filling("t:/b"),
            "the first guard dropped ends the fill"
        );
        drop((new, forced));
        assert!(!edge.is_filling("t:/b"));
    }

    #[test]
    fn faults_need_test_hooks() {
        let edge = Edge::new(1 << 20);
        let injected = Faults {
            fail_reads: true,
            ..Faults::default()
        };
        edge.set_faults(injected.clone());
        let mut config = Config::from_vars(&NoVars).expect("defaults are valid");
        assert_eq!(edge.faults(&config), Faults::default());
        config.test_hooks = true;
        assert_eq!(edge.faults(&config), injected);
    }

    struct NoVars;

    impl edgecache_core::config::VarSource for NoVars {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
    }
}
