//! The per-data-centre change relay: the isolates of one data centre share a coordinator's
//! answer to `changes since S` through the Cache API (which is per data centre), so the
//! coordinator is asked about once per staleness bound per data centre, not once per isolate.
//!
//! Why it keeps the invariants (DESIGN.md):
//! * **1 (never serve an invalidated entry as fresh).** A relayed answer is stored with its
//!   floor raised to the `since` it was asked for ([`RelayedChanges::new`]): it lists every
//!   invalidation in `(floor, seq]` and claims nothing below, so any view may apply it. A view
//!   behind that floor would lose entries it could still serve (L2 copies stamped before it),
//!   so it asks the coordinator itself instead ([`RelayVerdict::Gap`]); so does a new view,
//!   unless the relayed answer is a whole one (asked `since 0`), which it can apply.
//! * **4 (bounded staleness).** The view's refresh time becomes the moment the answer was
//!   *asked for* (before the coordinator produced it), never the moment it was read from the
//!   relay; an answer as old as the route's bound is not used ([`RelayVerdict::TooOld`]).
//! * **5 (read your writes).** A read whose token is newer than the answer's seq asks the
//!   coordinator ([`RelayVerdict::BehindToken`]).
//!
//! Every isolate would find the relay due at the same moment; each refreshes it early instead,
//! at its own fraction of the bound ([`RelayPolicy::refresh_fraction`], drawn once per isolate),
//! in the background while the answer it has is still good, so the isolate with the lowest
//! fraction refreshes and the others keep reading its answer.

use serde::{Deserialize, Serialize};

use crate::freshness::{Changes, TableView};

/// Earliest fraction of the bound at which an isolate refreshes the relay.
pub const MIN_REFRESH_FRACTION: f64 = 0.5;
/// Latest fraction of the bound at which an isolate refreshes the relay.
pub const MAX_REFRESH_FRACTION: f64 = 0.8;
/// How far behind the asking view a relayed answer starts, in seqs: views of a data centre that
/// take the relay sit within one refresh of each other, so an answer that starts this far back
/// serves them all without a `Gap`, and stays small (a whole log would be up to
/// `EDGECACHE_INVALIDATION_LOG` keys per call).
pub const RELAY_WINDOW_SEQS: u64 = 256;

/// The `since` to ask the coordinator for an answer that will be relayed, for a view whose own
/// `since()` is `view_since` (0, a whole answer, for a new view).
pub fn relay_since(view_since: u64) -> u64 {
    match view_since {
        0 => 0,
        s => s.saturating_sub(RELAY_WINDOW_SEQS).max(1),
    }
}

/// How long an isolate's claim to be refreshing the relay holds off the others: past it, one
/// more isolate may try before the answer turns `TooOld`.
pub fn claim_ms(max_staleness_ms: u64) -> u64 {
    ((1.0 - MAX_REFRESH_FRACTION) * max_staleness_ms as f64).round() as u64
}

/// What an isolate whose view is not due yet, but past its refresh fraction, does with the
/// relay in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyStep {
    /// Apply the relayed answer (newer than the view): another isolate refreshed it; and with
    /// `refresh`, it is past this isolate's fraction already, so refresh it too.
    Apply {
        /// Also refresh the relay.
        refresh: bool,
    },
    /// Refresh the relay from the coordinator (unless another isolate claimed that).
    Refresh,
    /// Nothing to do.
    Nothing,
}

/// How long the Cache API keeps a relayed answer: past the longest useful bound it is only
/// ever `TooOld`, so it can go.
pub const RELAY_TTL_SECS: u64 = 60;

/// A coordinator's answer as the relay keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedChanges {
    /// When the isolate that fetched it sent the request (ms): the coordinator produced the
    /// answer after this, so a view that applies it knew everything up to at least this time.
    pub asked_at_ms: u64,
    /// The `since` it was asked for (0: the coordinator's whole log).
    pub since: u64,
    /// The answer, its floor raised to `since`.
    pub changes: Changes,
}

impl RelayedChanges {
    /// Wraps the answer to `changes since since` asked at `asked_at_ms`.
    pub fn new(since: u64, mut changes: Changes, asked_at_ms: u64) -> Self {
        // The answer lists only invalidations after `since`: below it, it knows nothing.
        changes.floor = changes.floor.max(since.min(changes.seq));
        RelayedChanges {
            asked_at_ms,
            since,
            changes,
        }
    }

    /// Its age at `now_ms`.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.asked_at_ms)
    }
}

/// Whether a view may take a relayed answer, and if not, why it asks the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayVerdict {
    /// Apply it (with `asked_at_ms` as the refresh time); `refresh_early` says this isolate
    /// should also refresh the relay in the background.
    Apply {
        /// The answer is past this isolate's refresh fraction of the bound.
        refresh_early: bool,
    },
    /// The answer is as old as the route's bound, or older (invariant 4).
    TooOld,
    /// The read's token is newer than the answer (invariant 5).
    BehindToken,
    /// The view is behind the answer's floor and would forget entries it holds, or is new
    /// and the answer is not a whole one.
    Gap,
    /// The view already knows at least as much, as recently: the relay is of no use.
    NotNewer,
}

/// One isolate's relay policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelayPolicy {
    /// The fraction of a route's bound at which this isolate refreshes the relay early, in
    /// `[MIN_REFRESH_FRACTION, MAX_REFRESH_FRACTION]`.
    pub refresh_fraction: f64,
}

impl RelayPolicy {
    /// The policy for an isolate that drew `unit` uniformly from `[0, 1)`.
    pub fn from_unit(unit: f64) -> Self {
        let unit = unit.clamp(0.0, 1.0);
        RelayPolicy {
            refresh_fraction: MIN_REFRESH_FRACTION
                + unit * (MAX_REFRESH_FRACTION - MIN_REFRESH_FRACTION),
        }
    }

    /// What a view due for a refresh (`TableView::needs_refresh`) does with `relayed` at
    /// `now_ms`, for a route whose bound is `max_staleness_ms` and a read carrying `token`.
    pub fn verdict(
        &self,
        view: &TableView,
        relayed: &RelayedChanges,
        now_ms: u64,
        max_staleness_ms: u64,
        token: Option<u64>,
    ) -> RelayVerdict {
        let age = relayed.age_ms(now_ms);
        if age >= max_staleness_ms {
            return RelayVerdict::TooOld;
        }
        if token.is_some_and(|t| t > relayed.changes.seq) {
            return RelayVerdict::BehindToken;
        }
        if !view.is_known() && relayed.since > 0 {
            return RelayVerdict::Gap;
        }
        if view.is_known() {
            if view.seq >= relayed.changes.seq && view.refreshed_at_ms >= relayed.asked_at_ms {
                return RelayVerdict::NotNewer;
            }
            if relayed.changes.floor > view.seq {
                return RelayVerdict::Gap;
            }
        }
        RelayVerdict::Apply {
            refresh_early: self.past(age, max_staleness_ms),
        }
    }

    /// Whether `age_ms` is past this isolate's fraction of the bound.
    fn past(&self, age_ms: u64, max_staleness_ms: u64) -> bool {
        age_ms as f64 >= self.refresh_fraction * max_staleness_ms as f64
    }

    /// Whether a view not due for a refresh is past this isolate's fraction of the bound, so it
    /// should look at the relay in the background ([`RelayPolicy::early_step`]).
    pub fn past_fraction(&self, view: &TableView, now_ms: u64, max_staleness_ms: u64) -> bool {
        max_staleness_ms > 0
            && view.is_known()
            && self.past(
                now_ms.saturating_sub(view.refreshed_at_ms),
                max_staleness_ms,
            )
    }

    /// The early background step: take a newer relayed answer; refresh the relay when it holds
    /// nothing useful, or only the answer this view already took and that answer is past this
    /// isolate's fraction (else every view that took it would fall due as it turns `TooOld`).
    pub fn early_step(
        &self,
        view: &TableView,
        relayed: Option<&RelayedChanges>,
        now_ms: u64,
        max_staleness_ms: u64,
    ) -> EarlyStep {
        let Some(relayed) = relayed else {
            return EarlyStep::Refresh;
        };
        match self.verdict(view, relayed, now_ms, max_staleness_ms, None) {
            RelayVerdict::Apply { refresh_early } => EarlyStep::Apply {
                refresh: refresh_early,
            },
            RelayVerdict::NotNewer if !self.past(relayed.age_ms(now_ms), max_staleness_ms) => {
                EarlyStep::Nothing
            }
            _ => EarlyStep::Refresh,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freshness::ALL_KEYS;
    use proptest::prelude::*;

    fn changes(seq: u64, floor: u64, keys: &[(&str, u64)]) -> Changes {
        Changes::listing(seq, floor, keys)
    }

    const POLICY: RelayPolicy = RelayPolicy {
        refresh_fraction: 0.5,
    };

    #[test]
    fn the_floor_is_raised_to_what_was_asked() {
        let r = RelayedChanges::new(7, changes(10, 2, &[("a", 8)]), 100);
        assert_eq!(r.changes.floor, 7);
        let r = RelayedChanges::new(0, changes(10, 2, &[]), 100);
        assert_eq!(r.changes.floor, 2, "since 0: the coordinator's own floor");
        // A view that applies it admits nothing filled before what the answer covers.
        let mut v = TableView::default();
        v.apply(
            &RelayedChanges::new(7, changes(10, 2, &[]), 100).changes,
            100,
        );
        assert!(!v.admits("k", 6) && v.admits("k", 7));
    }

    #[test]
    fn verdicts() {
        let relayed = RelayedChanges::new(0, changes(10, 0, &[]), 1_000);
        let empty = TableView::default();
        let at = |now, bound, token| POLICY.verdict(&empty, &relayed, now, bound, token);
        assert_eq!(
            at(1_400, 1_000, None),
            RelayVerdict::Apply {
                refresh_early: false
            }
        );
        assert_eq!(
            at(1_500, 1_000, None),
            RelayVerdict::Apply {
                refresh_early: true
            }
        );
        assert_eq!(at(2_000, 1_000, None), RelayVerdict::TooOld);
        assert_eq!(
            at(1_000, 0, None),
            RelayVerdict::TooOld,
            "bound 0: always the coordinator"
        );
        assert_eq!(at(1_100, 1_000, Some(11)), RelayVerdict::BehindToken);
        assert!(matches!(
            at(1_100, 1_000, Some(10)),
            RelayVerdict::Apply { .. }
        ));

        let incremental = RelayedChanges::new(5, changes(10, 0, &[]), 1_000);
        assert_eq!(
            POLICY.verdict(&empty, &incremental, 1_100, 1_000, None),
            RelayVerdict::Gap,
            "a new view takes only a whole answer"
        );
        let relayed = incremental;
        let mut behind = TableView::default();
        behind.apply(&changes(3, 0, &[]), 500);
        assert_eq!(
            POLICY.verdict(&behind, &relayed, 1_100, 1_000, None),
            RelayVerdict::Gap
        );
        let mut joined = TableView::default();
        joined.apply(&changes(6, 0, &[]), 500);
        assert!(matches!(
            POLICY.verdict(&joined, &relayed, 1_100, 1_000, None),
            RelayVerdict::Apply { .. }
        ));
        let mut ahead = TableView::default();
        ahead.apply(&changes(10, 0, &[]), 1_050);
        assert_eq!(
            POLICY.verdict(&ahead, &relayed, 1_100, 1_000, None),
            RelayVerdict::NotNewer
        );
    }

    #[test]
    fn early_steps() {
        let mut view = TableView::default();
        view.apply(&changes(10, 0, &[]), 1_000);
        assert!(!POLICY.past_fraction(&view, 1_400, 1_000));
        assert!(POLICY.past_fraction(&view, 1_500, 1_000));
        assert!(!POLICY.past_fraction(&view, 1_500, 0), "bound 0: no relay");
        let step =
            |relayed: Option<&RelayedChanges>, now| POLICY.early_step(&view, relayed, now, 1_000);
        assert_eq!(step(None, 1_500), EarlyStep::Refresh);
        let newer = RelayedChanges::new(relay_since(10), changes(12, 0, &[]), 1_300);
        assert_eq!(
            step(Some(&newer), 1_500),
            EarlyStep::Apply { refresh: false }
        );
        assert_eq!(
            step(Some(&newer), 1_900),
            EarlyStep::Apply { refresh: true }
        );
        let same = RelayedChanges::new(0, changes(10, 0, &[]), 1_000);
        assert_eq!(
            step(Some(&same), 1_500),
            EarlyStep::Refresh,
            "the one it took, past 0.5"
        );
        let fresh_same = RelayedChanges::new(0, changes(10, 0, &[]), 1_000);
        let mut newer_view = view.clone();
        newer_view.apply(&changes(10, 0, &[]), 1_200);
        assert_eq!(
            POLICY.early_step(&newer_view, Some(&fresh_same), 1_400, 1_000),
            EarlyStep::Nothing
        );
        let old = RelayedChanges::new(0, changes(9, 0, &[]), 100);
        assert_eq!(step(Some(&old), 1_500), EarlyStep::Refresh, "too old");
    }

    #[test]
    fn relayed_answers_start_a_window_behind() {
        assert_eq!(relay_since(0), 0);
        assert_eq!(relay_since(1_000), 1_000 - RELAY_WINDOW_SEQS);
        assert_eq!(relay_since(5), 1, "never 0 unless asked: 0 means whole");
        assert_eq!(claim_ms(1_000), 200);
    }

    #[test]
    fn refresh_fractions_stay_in_their_range() {
        assert_eq!(RelayPolicy::from_unit(0.0).refresh_fraction, 0.5);
        assert!(RelayPolicy::from_unit(7.0).refresh_fraction <= MAX_REFRESH_FRACTION);
        assert!((RelayPolicy::from_unit(0.5).refresh_fraction - 0.65).abs() < 1e-9);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Invalidate(u8),
        InvalidateAll,
        Truncate,
        /// An isolate asks the coordinator and publishes the answer to the relay.
        Publish(usize),
        /// An isolate refreshes from the relay if the verdict allows, else from the coordinator.
        Refresh(usize),
        Fill(usize, u8),
        Tick(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..5).prop_map(Op::Invalidate),
            Just(Op::InvalidateAll),
            Just(Op::Truncate),
            (0usize..3).prop_map(Op::Publish),
            (0usize..3).prop_map(Op::Refresh),
            (0usize..3, 0u8..5).prop_map(|(i, k)| Op::Fill(i, k)),
            (0u16..800).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Three isolates of one data centre, one coordinator, one relay, random interleavings:
        /// no view ever admits an entry an invalidation it should know of made stale
        /// (invariant 1); every view's refresh time is never later than the moment the
        /// coordinator's answer it holds was asked for (so invariant 4 is measured from a true
        /// time); and a view refreshed for a token covers it (invariant 5).
        #[test]
        fn relayed_views_never_admit_stale_entries(ops in prop::collection::vec(op(), 1..120)) {
            const BOUND: u64 = 1_000;
            let mut history: Vec<(String, u64)> = Vec::new();
            let (mut seq, mut floor, mut now) = (100u64, 100u64, 1_000u64);
            let answer = |since: u64, seq: u64, floor: u64, history: &[(String, u64)]| Changes {
                seq,
                floor,
                keys: history.iter().filter(|(_, s)| *s > since.max(floor)).cloned().collect(),
                ..Changes::default()
            };
            let mut views = vec![TableView::default(); 3];
            let mut relay: Option<RelayedChanges> = None;
            let mut entries: Vec<(usize, String, u64)> = Vec::new();
            for op in ops {
                now += 1;
                match op {
                    Op::Invalidate(k) => { seq += 1; history.push((format!("k{k}"), seq)); }
                    Op::InvalidateAll => { seq += 1; history.push((ALL_KEYS.into(), seq)); }
                    Op::Truncate => floor = seq,
                    Op::Tick(ms) => now += ms as u64,
                    Op::Publish(i) => {
                        let since = views[i].since();
                        let c = answer(since, seq, floor, &history);
                        views[i].apply(&c, now);
                        relay = Some(RelayedChanges::new(since, c, now));
                    }
                    Op::Refresh(i) => {
                        let token = Some(seq);
                        let verdict = relay.as_ref().map(|r| POLICY.verdict(&views[i], r, now, BOUND, token));
                        match (verdict, &relay) {
                            (Some(RelayVerdict::Apply { .. }), Some(r)) => {
                                views[i].apply(&r.changes, r.asked_at_ms);
                                prop_assert!(views[i].seq >= seq, "a token read saw less than its token");
                                prop_assert!(now - r.asked_at_ms < BOUND);
                            }
                            _ => {
                                let c = answer(views[i].since(), seq, floor, &history);
                                views[i].apply(&c, now);
                            }
                        }
                    }
                    Op::Fill(i, k) => {
                        let stamp = views[i].seq;
                        entries.push((i, format!("k{k}"), stamp));
                    }
                }
                for (i, view) in views.iter().enumerate() {
                    if !view.is_known() {
                        continue;
                    }
                    let seen = view.seq;
                    for (_, key, stamp) in entries.iter().filter(|(j, _, _)| *j == i) {
                        let stale = history.iter().any(|(k, s)| {
                            (k == key || k == ALL_KEYS) && *s > *stamp && *s <= seen
                        });
                        if stale {
                            prop_assert!(!view.admits(key, *stamp), "{key}@{stamp} admitted by view {i}");
                        }
                    }
                    // What a relayed view claims to know, it knew by then: the relay's answer
                    // was asked for no later than the view says.
                    prop_assert!(view.refreshed_at_ms <= now);
                }
            }
        }
    }
}
