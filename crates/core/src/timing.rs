//! The `server-timing` header of a read: how long it took in all, the origin's share, and each
//! phase's. Time is read by the caller, so this is tested without a clock.

use std::fmt::Write;

use crate::outcome::Outcome;

/// The phases of a read, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPhase {
    /// Key, target, route policy and what the client asked for.
    Resolve,
    /// Each table's view brought up to the staleness bound and the client's token.
    Validate,
    /// L1, then L2.
    LookUp,
    /// Waiting for another request's fill of the same key, or taking the fill.
    Coalesce,
    /// The origin read, stamped before it starts.
    Fetch,
    /// Registration and storing handed to the background.
    Store,
}

impl ReadPhase {
    const ALL: [ReadPhase; 6] = [
        ReadPhase::Resolve,
        ReadPhase::Validate,
        ReadPhase::LookUp,
        ReadPhase::Coalesce,
        ReadPhase::Fetch,
        ReadPhase::Store,
    ];

    /// The metric name in `server-timing`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadPhase::Resolve => "resolve",
            ReadPhase::Validate => "validate",
            ReadPhase::LookUp => "lookup",
            ReadPhase::Coalesce => "coalesce",
            ReadPhase::Fetch => "fetch",
            ReadPhase::Store => "store",
        }
    }
}

/// The durations of one read, in milliseconds. No allocation until the header is written.
#[derive(Debug, Clone)]
pub struct ReadTiming {
    started_ms: u64,
    last_ms: u64,
    phases: [Option<u64>; 6],
    origin_ms: Option<u64>,
}

impl ReadTiming {
    /// A read that started at `now_ms`.
    pub fn start(now_ms: u64) -> Self {
        ReadTiming {
            started_ms: now_ms,
            last_ms: now_ms,
            phases: [None; 6],
            origin_ms: None,
        }
    }

    /// Ends `phase` at `now_ms`; it ran since the previous phase ended.
    pub fn end(&mut self, phase: ReadPhase, now_ms: u64) {
        self.phases[phase as usize] = Some(now_ms.saturating_sub(self.last_ms));
        self.last_ms = now_ms;
    }

    /// Records how long the origin took.
    pub fn origin(&mut self, ms: u64) {
        self.origin_ms = Some(ms);
    }

    /// The header: `cache;desc="<outcome>";dur=<total>` first (clients read the outcome there),
    /// then `origin;dur=` if the origin was asked, then each phase that ran.
    pub fn header(&self, outcome: Outcome, now_ms: u64) -> String {
        let mut h = String::with_capacity(160);
        let total = now_ms.saturating_sub(self.started_ms);
        // Writing to a String cannot fail.
        let _ = write!(h, "cache;desc=\"{}\";dur={total}", outcome.as_str());
        if let Some(ms) = self.origin_ms {
            let _ = write!(h, ", origin;dur={ms}");
        }
        for (phase, ms) in ReadPhase::ALL.iter().zip(self.phases) {
            if let Some(ms) = ms {
                let _ = write!(h, ", {};dur={ms}", phase.as_str());
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_first_then_origin_then_the_phases_that_ran() {
        let mut t = ReadTiming::start(100);
        t.end(ReadPhase::Resolve, 100);
        t.end(ReadPhase::Validate, 103);
        t.end(ReadPhase::LookUp, 104);
        assert_eq!(
            t.header(Outcome::HitL1, 105),
            "cache;desc=\"HIT-L1\";dur=5, resolve;dur=0, validate;dur=3, lookup;dur=1"
        );
        t.end(ReadPhase::Coalesce, 104);
        t.origin(20);
        t.end(ReadPhase::Fetch, 125);
        t.end(ReadPhase::Store, 125);
        assert_eq!(
            t.header(Outcome::Miss, 126),
            "cache;desc=\"MISS\";dur=26, origin;dur=20, resolve;dur=0, validate;dur=3, \
             lookup;dur=1, coalesce;dur=0, fetch;dur=21, store;dur=0"
        );
    }

    #[test]
    fn a_clock_that_steps_back_never_underflows() {
        let mut t = ReadTiming::start(50);
        t.end(ReadPhase::Resolve, 40);
        assert_eq!(
            t.header(Outcome::Miss, 30),
            "cache;desc=\"MISS\";dur=0, resolve;dur=0"
        );
    }
}

/// How long a read may take in all: the origin timeout plus [`READ_SLACK_MS`], from the moment
/// it starts, however many steps it waits on (coordinators, L2, another request's fill, the
/// origin). Each wait takes what is left, so no combination of slow steps adds up past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadBudget {
    /// When the read must have its answer.
    pub deadline_ms: u64,
    /// The origin timeout: no origin fetch is given longer.
    pub origin_timeout_ms: u64,
}

/// What a read may spend beyond one origin timeout: waits on coordinators and L2, and on
/// another request's fill of the same key (the coalescing bound).
pub const READ_SLACK_MS: u64 = 3_000;
/// Longest wait for one coordinator or L2 call on the read path; past it the read goes on
/// without (unvalidated views are not cached from; an unanswered L2 is a miss).
pub const STEP_TIMEOUT_MS: u64 = 1_000;

impl ReadBudget {
    /// The budget of a read starting at `now_ms`.
    pub fn start(now_ms: u64, origin_timeout_ms: u64) -> Self {
        ReadBudget {
            deadline_ms: now_ms
                .saturating_add(origin_timeout_ms)
                .saturating_add(READ_SLACK_MS),
            origin_timeout_ms,
        }
    }

    /// Milliseconds left at `now_ms`.
    pub fn left(&self, now_ms: u64) -> u64 {
        self.deadline_ms.saturating_sub(now_ms)
    }

    /// The bound for one coordinator or L2 call starting at `now_ms`.
    pub fn step(&self, now_ms: u64) -> u64 {
        self.left(now_ms).min(STEP_TIMEOUT_MS)
    }

    /// The bound for the origin fetch starting at `now_ms` (0: no time left; fail at once).
    pub fn fetch(&self, now_ms: u64) -> u64 {
        self.left(now_ms).min(self.origin_timeout_ms)
    }

    /// Whether a follower may keep waiting for another request's fill at `now_ms`. A fill that
    /// began no later than this read ends (fetched, registered) before the deadline, so waiting
    /// up to it never gives up on a fill that will land.
    pub fn may_wait(&self, now_ms: u64) -> bool {
        now_ms < self.deadline_ms
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the steps take, the time granted to them never runs past the deadline:
        /// waits, coordinator calls and the fetch each take from what is left.
        #[test]
        fn steps_never_outlast_the_budget(
            start in 0u64..1u64 << 40,
            timeout in 1u64..60_000,
            steps in proptest::collection::vec(0u64..5_000, 0..8),
        ) {
            let budget = ReadBudget::start(start, timeout);
            let mut now = start;
            for step in steps {
                now += step.min(budget.step(now));
            }
            while budget.may_wait(now) {
                now += 5; // a follower polling
            }
            let _ = budget.fetch(now);
            now += budget.fetch(now);
            prop_assert!(now <= start + timeout + READ_SLACK_MS + 5);
            prop_assert!(budget.fetch(start) == timeout);
        }
    }

    #[test]
    fn a_fresh_read_gets_the_full_origin_timeout_and_a_late_one_none() {
        let b = ReadBudget::start(1_000, 10_000);
        assert_eq!(b.fetch(1_000), 10_000);
        assert_eq!(b.step(1_000), STEP_TIMEOUT_MS);
        assert_eq!(b.fetch(1_000 + 12_500), 500);
        assert_eq!(b.fetch(1_000 + 13_000), 0);
        assert!(!b.may_wait(1_000 + 13_000));
    }
}
