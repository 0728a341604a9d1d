//! Staleness you can see: how long a write took from the coordinator recording it to an edge's
//! view including it (the invalidation lag), kept per table in bounded memory.
//!
//! Coordinator and edge clocks are different machines' clocks; in one data centre they agree to
//! within milliseconds, and a negative difference is counted as 0.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::freshness::Changes;

/// Lag samples an edge keeps per table (the most recent ones).
pub const MAX_LAG_SAMPLES: usize = 1024;

/// The lags a view's refresh reveals: for every seq the view did not know (`> known_seq`) and
/// whose recording time the answer carries, `now_ms` minus that time.
pub fn revealed_lags(known_seq: u64, changes: &Changes, now_ms: u64) -> Vec<u64> {
    changes
        .times
        .iter()
        .filter(|(seq, _)| *seq > known_seq)
        .map(|(_, at)| now_ms.saturating_sub(*at))
        .collect()
}

/// The most recent lags of one table, and how its view was refreshed.
#[derive(Debug, Clone, Default)]
pub struct LagWindow {
    samples: VecDeque<u64>,
    /// Refreshes answered by the data centre's relay.
    pub relay_refreshes: u64,
    /// Refreshes answered by the coordinator itself.
    pub coordinator_refreshes: u64,
}

/// A summary for stats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LagSummary {
    /// Samples behind the percentiles.
    pub samples: u64,
    /// Median lag (ms); 0 with no samples.
    pub p50_ms: u64,
    /// 99th percentile lag (ms); 0 with no samples.
    pub p99_ms: u64,
    /// Refreshes answered by the data centre's relay.
    pub relay_refreshes: u64,
    /// Refreshes answered by the coordinator.
    pub coordinator_refreshes: u64,
    /// `relay / (relay + coordinator)`; 0 with no refreshes.
    pub relay_share: f64,
}

impl LagWindow {
    /// Records lags, forgetting the oldest past [`MAX_LAG_SAMPLES`].
    pub fn record(&mut self, lags: impl IntoIterator<Item = u64>) {
        for lag in lags {
            if self.samples.len() == MAX_LAG_SAMPLES {
                self.samples.pop_front();
            }
            self.samples.push_back(lag);
        }
    }

    /// Percentiles (nearest rank) and refresh counts.
    pub fn summary(&self) -> LagSummary {
        let mut sorted: Vec<u64> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        let rank = |p: f64| match sorted.len() {
            0 => 0,
            n => sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1],
        };
        let refreshes = self.relay_refreshes + self.coordinator_refreshes;
        LagSummary {
            samples: sorted.len() as u64,
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            relay_refreshes: self.relay_refreshes,
            coordinator_refreshes: self.coordinator_refreshes,
            relay_share: match refreshes {
                0 => 0.0,
                n => self.relay_refreshes as f64 / n as f64,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_seqs_the_view_did_not_know_count() {
        let c = Changes {
            seq: 12,
            times: vec![(10, 1_000), (11, 1_100), (12, 1_250)],
            ..Changes::default()
        };
        assert_eq!(revealed_lags(10, &c, 1_300), vec![200, 50]);
        assert_eq!(revealed_lags(12, &c, 1_300), Vec::<u64>::new());
        assert_eq!(revealed_lags(0, &c, 900), vec![0, 0, 0], "clock skew is 0");
    }

    #[test]
    fn summary_of_a_known_window() {
        let mut w = LagWindow::default();
        assert_eq!(w.summary().p50_ms, 0);
        w.record(1..=100);
        w.relay_refreshes = 3;
        w.coordinator_refreshes = 1;
        let s = w.summary();
        assert_eq!((s.samples, s.p50_ms, s.p99_ms), (100, 50, 99));
        assert_eq!(s.relay_share, 0.75);
    }

    proptest! {
        /// Against sorting all recent samples: bounded memory, percentiles of the last
        /// MAX_LAG_SAMPLES samples by nearest rank.
        #[test]
        fn percentiles_of_the_most_recent_samples(lags in prop::collection::vec(0u64..10_000, 0..3_000)) {
            let mut w = LagWindow::default();
            w.record(lags.iter().copied());
            let recent: Vec<u64> = lags.iter().rev().take(MAX_LAG_SAMPLES).copied().collect();
            let mut sorted = recent.clone();
            sorted.sort_unstable();
            let s = w.summary();
            prop_assert_eq!(s.samples as usize, recent.len());
            if !sorted.is_empty() {
                let n = sorted.len();
                prop_assert_eq!(s.p50_ms, sorted[n.div_ceil(2) - 1]);
                prop_assert_eq!(s.p99_ms, sorted[(99 * n).div_ceil(100).clamp(1, n) - 1]);
            }
        }
    }
}
