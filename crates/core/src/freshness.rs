//! What an edge knows of a table's invalidations, and whether a cached entry may be served.
//!
//! The coordinator numbers every write and invalidation of its table (`seq`) and keeps a bounded
//! log of the last invalidation of each key. An edge mirrors the part of that log it has fetched
//! (`changes since S`). An entry filled with stamp `s` may be served only if the edge knows every
//! invalidation after `s` (`s >= floor`) and none of them names the entry's key (invariant 1).
//!
//! A coordinator starts its seq (and floor) at its creation time in milliseconds, so a
//! coordinator whose storage was wiped never reuses a seq: everything stamped by its predecessor
//! sits below the new floor and counts as stale.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::key::base_of;

/// The key under which a table-wide invalidation travels: every entry of the table filled
/// before its seq is stale.
pub const ALL_KEYS: &str = "*";

/// Most invalidated keys an edge remembers per table; past it the oldest are forgotten and the
/// floor rises, so entries filled before the floor count as stale (safe, never wrong).
pub const MAX_REMEMBERED_KEYS: usize = 8192;

/// A coordinator's answer to `changes since S`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The table's seq now.
    pub seq: u64,
    /// Invalidations after `floor` are all listed (or were listed in earlier answers when
    /// `floor <= since`); below it the coordinator's log has been truncated.
    pub floor: u64,
    /// `(key, seq of its last invalidation)` for invalidations in `(max(since, floor), seq]`.
    pub keys: Vec<(String, u64)>,
    /// `(seq, ms)`: when the coordinator recorded each seq in `(max(since, floor), seq]` it still
    /// remembers, so an edge can measure how long a write took to reach its view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<(u64, u64)>,
}

#[cfg(test)]
impl Changes {
    /// An answer listing `keys` (tests).
    pub(crate) fn listing(seq: u64, floor: u64, keys: &[(&str, u64)]) -> Changes {
        Changes {
            seq,
            floor,
            keys: keys.iter().map(|(k, s)| (k.to_string(), *s)).collect(),
            ..Changes::default()
        }
    }
}

/// An edge's view of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableView {
    /// Highest seq the edge has seen.
    pub seq: u64,
    /// The edge knows every invalidation in `(floor, seq]`.
    pub floor: u64,
    /// When the view was last refreshed (ms since epoch); 0 = never.
    pub refreshed_at_ms: u64,
    /// Entries filled before this are stale (table-wide invalidation).
    reset_seq: u64,
    invalidated: HashMap<String, u64>,
}

impl TableView {
    /// Whether the view has ever been refreshed.
    pub fn is_known(&self) -> bool {
        self.refreshed_at_ms > 0
    }

    /// The `since` to ask the coordinator for.
    pub fn since(&self) -> u64 {
        if self.is_known() {
            self.seq
        } else {
            0
        }
    }

    /// Whether the view must be refreshed before serving: older than the route's staleness
    /// bound, or older than a read-your-writes token.
    pub fn needs_refresh(&self, now_ms: u64, max_staleness_ms: u64, min_seq: Option<u64>) -> bool {
        !self.is_known()
            || min_seq.is_some_and(|m| self.seq < m)
            || max_staleness_ms == 0
            || now_ms.saturating_sub(self.refreshed_at_ms) >= max_staleness_ms
    }

    /// Applies an answer to `changes since S` (S taken from `since()` when the request left;
    /// answers may arrive out of order). The view keeps knowing every invalidation in
    /// `(floor, seq]`: the answer covers `(max(S, floor'), seq']`, which joins what we knew
    /// unless the coordinator's floor is above our seq, in which case we know only its part.
    pub fn apply(&mut self, changes: &Changes, now_ms: u64) {
        if !self.is_known() || changes.floor > self.seq {
            self.floor = changes.floor;
        }
        for (key, seq) in &changes.keys {
            if key == ALL_KEYS {
                self.reset_seq = self.reset_seq.max(*seq);
            } else {
                let e = self.invalidated.entry(key.clone()).or_insert(0);
                *e = (*e).max(*seq);
            }
        }
        self.seq = self.seq.max(changes.seq);
        // Knowledge only grows: an answer asked for earlier (a relayed one) adds what it lists
        // without making the view look older than its own last refresh.
        self.refreshed_at_ms = self.refreshed_at_ms.max(now_ms);
        self.forget_oldest();
    }

    /// Whether an entry with this fill stamp may be served for `key`. A variant key is also
    /// stale once its base key is invalidated, so invalidating a URL reaches every variant of
    /// it (per user, per language) without naming them.
    pub fn admits(&self, key: &str, stamp: u64) -> bool {
        let untouched = |k: &str| self.invalidated.get(k).is_none_or(|&s| s <= stamp);
        self.is_known()
            && stamp >= self.floor
            && stamp >= self.reset_seq
            && stamp <= self.seq
            && untouched(key)
            && untouched(base_of(key))
    }

    /// Keeps memory bounded: forgets the oldest invalidations and raises the floor past them.
    fn forget_oldest(&mut self) {
        if self.invalidated.len() <= MAX_REMEMBERED_KEYS {
            return;
        }
        let mut seqs: Vec<u64> = self.invalidated.values().copied().collect();
        seqs.sort_unstable();
        let cut = seqs[self.invalidated.len() - MAX_REMEMBERED_KEYS / 2];
        self.invalidated.retain(|_, s| *s > cut);
        self.floor = self.floor.max(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn changes(seq: u64, floor: u64, keys: &[(&str, u64)]) -> Changes {
        Changes::listing(seq, floor, keys)
    }

    #[test]
    fn unknown_view_admits_nothing() {
        assert!(!TableView::default().admits("k", 0));
    }

    #[test]
    fn invalidation_after_the_stamp_rejects_only_that_key() {
        let mut v = TableView::default();
        v.apply(&changes(5, 0, &[]), 1);
        assert!(v.admits("a", 5) && v.admits("b", 5));
        v.apply(&changes(7, 0, &[("a", 6)]), 2);
        assert!(!v.admits("a", 5), "a was invalidated at 6 > 5");
        assert!(v.admits("a", 6), "a refilled at 6 is fresh");
        assert!(v.admits("b", 5));
    }

    #[test]
    fn invalidating_a_base_key_rejects_its_variants_only() {
        let mut v = TableView::default();
        v.apply(&changes(5, 0, &[]), 1);
        v.apply(&changes(7, 0, &[("t:/v1/me", 6)]), 2);
        assert!(!v.admits("t:/v1/me#c01", 5));
        assert!(!v.admits("t:/v1/me#c01v02", 5));
        assert!(v.admits("t:/v1/me#c01", 6), "refilled after it");
        assert!(v.admits("t:/v1/me2#c01", 5), "another base key");
        v.apply(&changes(9, 0, &[("t:/v1/x#c01", 8)]), 3);
        assert!(!v.admits("t:/v1/x#c01", 7));
        assert!(
            v.admits("t:/v1/x", 7),
            "a variant's invalidation leaves its base"
        );
    }

    #[test]
    fn truncated_log_makes_older_entries_stale() {
        let mut v = TableView::default();
        v.apply(&changes(100, 40, &[("a", 50)]), 1);
        assert!(!v.admits("b", 39), "filled before the floor: unknowable");
        assert!(v.admits("b", 40));
    }

    #[test]
    fn a_gap_resets_what_the_edge_knew() {
        let mut v = TableView::default();
        v.apply(&changes(10, 0, &[("a", 3)]), 1);
        // The coordinator truncated past our seq: its answer starts at 20.
        v.apply(&changes(30, 20, &[("b", 25)]), 2);
        assert_eq!(v.floor, 20);
        assert!(!v.admits("c", 15));
        assert!(!v.admits("b", 24));
        assert!(v.admits("b", 25));
    }

    #[test]
    fn table_wide_invalidation_rejects_everything_older() {
        let mut v = TableView::default();
        v.apply(&changes(10, 0, &[]), 1);
        v.apply(&changes(11, 0, &[(ALL_KEYS, 11)]), 2);
        assert!(!v.admits("x", 10));
        assert!(v.admits("x", 11));
    }

    #[test]
    fn stamps_from_the_future_are_not_trusted() {
        let mut v = TableView::default();
        v.apply(&changes(10, 0, &[]), 1);
        assert!(!v.admits("x", 11));
    }

    #[test]
    fn refresh_rules() {
        let mut v = TableView::default();
        assert!(v.needs_refresh(0, 1000, None));
        v.apply(&changes(10, 0, &[]), 1_000);
        assert!(!v.needs_refresh(1_500, 1000, None));
        assert!(v.needs_refresh(2_000, 1000, None));
        assert!(v.needs_refresh(1_001, 0, None), "0 = check on every hit");
        assert!(
            v.needs_refresh(1_001, 60_000, Some(11)),
            "token newer than the view"
        );
        assert!(!v.needs_refresh(1_001, 60_000, Some(10)));
    }

    /// A coordinator model: the full invalidation history, truncated below `floor`.
    #[derive(Debug, Clone)]
    enum Op {
        Invalidate(u8),
        InvalidateAll,
        Truncate,
        Refresh,
        Fill(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6).prop_map(Op::Invalidate),
            Just(Op::InvalidateAll),
            Just(Op::Truncate),
            Just(Op::Refresh),
            (0u8..6).prop_map(Op::Fill),
        ]
    }

    proptest! {
        /// Whatever the interleaving of invalidations, truncations and refreshes, the view never
        /// admits an entry that an invalidation the edge has been told about (or could not
        /// rule out) made stale.
        #[test]
        fn never_admits_a_stale_entry(ops in prop::collection::vec(op(), 1..80)) {
            let mut history: Vec<(String, u64)> = Vec::new();
            let mut seq = 0u64;
            let mut floor = 0u64;
            let mut view = TableView::default();
            let mut entries: Vec<(String, u64)> = Vec::new();
            let mut now = 1;
            for op in ops {
                now += 1;
                match op {
                    Op::Invalidate(k) => { seq += 1; history.push((format!("k{k}"), seq)); }
                    Op::InvalidateAll => { seq += 1; history.push((ALL_KEYS.into(), seq)); }
                    Op::Truncate => { floor = seq; }
                    Op::Refresh => {
                        let since = view.since();
                        let from = since.max(floor);
                        let keys = history.iter().filter(|(_, s)| *s > from).cloned().collect();
                        view.apply(&Changes { seq, floor, keys, ..Changes::default() }, now);
                    }
                    // Odd numbers fill a variant of the base key of the number below.
                    Op::Fill(k) if k % 2 == 1 => entries.push((format!("k{}#v{k}", k - 1), view.seq.min(seq))),
                    Op::Fill(k) => entries.push((format!("k{k}"), view.seq.min(seq))),
                }
                let seen = view.seq;
                for (key, stamp) in &entries {
                    // Stale as of what the edge has seen: invalidated in (stamp, seen].
                    let named = |k: &str| k == key || k == ALL_KEYS || k == base_of(key);
                    let stale = history.iter().any(|(k, s)| named(k) && *s > *stamp && *s <= seen);
                    if stale {
                        prop_assert!(!view.admits(key, *stamp), "{key}@{stamp} admitted though stale");
                    }
                }
            }
        }
    }
}
