//! Issue 12's scale simulation: how many requests one table's coordinator gets from C data
//! centres × I isolates, with and without the per-data-centre change relay, and whether every
//! simulated read keeps DESIGN.md's invariants 1, 4 and 5.
//!
//! A seeded, deterministic discrete-event simulation in microseconds (the core sees whole
//! milliseconds, as a worker's `Date.now()` gives them, floored). Every freshness decision is
//! the core's own code: `TableView::{needs_refresh, apply, admits, since}`,
//! `RelayPolicy::{from_unit, verdict}` and `RelayedChanges::new`.
//!
//! The model:
//! * **Reads**: Poisson at `reads` per second per isolate, each for one of `keys` record keys or
//!   the table's list key. A read whose view `needs_refresh` either asks the coordinator itself
//!   (baseline, today's product: every isolate, every read that finds its view due) or first
//!   gets the data centre's relay entry (Cache API get latency), then does what the verdict says:
//!   `Apply` (with `asked_at_ms` as the refresh time; `refresh_early` also asks the coordinator
//!   in the background and puts the answer in the relay), `NotNewer` (serve), anything else or no
//!   entry: ask the coordinator, wait, apply, publish to the relay. Reads are not coalesced (the
//!   edge's `validate_views` is not), and the view of an isolate is shared by its reads.
//!   Validated reads look in the isolate's L1, then the data centre's L2, and fill both on a miss
//!   with the view's seq as the stamp; origin and L2 latencies are not modelled (they change
//!   neither the coordinator's load nor what a view knows).
//! * **Writes**: Poisson at `writes` per second from a random isolate; each is one coordinator
//!   request that bumps the seq and invalidates its record's key and the list key. Its
//!   acknowledgement reaches the client one way later; `token-reads` reads of that client (same
//!   data centre, any isolate) follow `token-after-ms` later carrying the write's seq.
//! * **Coordinator**: one server, FIFO, `service-us` per request (writes and `changes since`
//!   alike; 1 ms ≈ a Durable Object's ~1,000 requests/s), `rtt-ms` away from every edge. An
//!   answer is what the coordinator knew when it finished serving the request (writes are
//!   recorded when theirs finishes); it reaches the edge half an RTT later. With one-way
//!   latencies constant, requests reach it in the order they were sent, so the FIFO is solved
//!   as they are sent.
//! * **Modes** (each configuration runs all three): no relay; the relay as specified above;
//!   and the relay as the edge uses it: refreshes ask from `RELAY_WINDOW_SEQS` behind the
//!   view (`relay_since`, `full_answers`, so no view of the data centre gets `Gap`), an
//!   isolate whose view is past its refresh fraction consults the relay in the background
//!   (`early_refresh`, `RelayPolicy::early_step`: applies a newer entry, refreshes one past its
//!   fraction), and the isolate that refreshes first puts a claim in the Cache API that the
//!   others honour for `claim_ms(bound)`.
//! * **Start**: steady (each relay entry, or without the relay each view, refreshed at a random
//!   moment of the last bound, half bound with `early_refresh`) or `--cold` (all empty at once,
//!   as after a deploy). `--coalesce` makes an isolate's due reads wait for its one refresh.
//! * **Invariants, checked on every read** (`Violations`):
//!   1. A served L1/L2 entry `(key, stamp)` was not invalidated by any write with a seq in
//!      `(stamp, view.seq]` (anything the view should know).
//!   4. `view.seq ≥` the seq of the last write the coordinator recorded at or before
//!      `read start − bound`: every answer, direct or relayed, is dated when it was asked for
//!      (as `src/edge/read.rs` does), before the coordinator produced it, so no slack is
//!      needed; nor for the queue wait: an answer knows every write recorded before it was
//!      served.
//!   5. A read with token `T` is served from a view with `seq ≥ T`.
//!
//! Run `cargo run --release -p edgecache-core --example scale -- --help` for the parameters.
//! Exits 1 if any read broke an invariant.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::path::PathBuf;

use edgecache_core::freshness::{Changes, TableView};
use edgecache_core::relay::{
    claim_ms, relay_since, EarlyStep, RelayPolicy, RelayVerdict, RelayedChanges,
    MIN_REFRESH_FRACTION,
};
use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};

/// The simulated clock starts here (µs since the epoch): a view refreshed at 0 counts as never
/// refreshed, and a coordinator's seq starts at its creation time in ms.
const EPOCH_US: u64 = 1_796_000_000_000_000;
const US_PER_MS: u64 = 1_000;
const US_PER_S: f64 = 1e6;

/// The whole-millisecond clock a worker sees.
fn ms(t_us: u64) -> u64 {
    t_us / US_PER_MS
}

/// What one simulated configuration is.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Data centres.
    pub dcs: usize,
    /// Isolates per data centre.
    pub isolates: usize,
    /// Reads per second per isolate.
    pub reads_per_isolate_s: f64,
    /// Writes per second to the table.
    pub writes_s: f64,
    /// Record keys (the list key comes on top).
    pub keys: usize,
    /// The route's staleness bound.
    pub bound_ms: u64,
    /// Coordinator time per request.
    pub service_us: u64,
    /// Edge ↔ coordinator round trip.
    pub rtt_us: u64,
    /// Cache API get and put latencies.
    pub cache_get_us: u64,
    pub cache_put_us: u64,
    /// Reads carrying a write's token, per write, and how long after its acknowledgement.
    pub token_reads: usize,
    pub token_after_us: u64,
    /// Simulated time before measuring, and measured time.
    pub warmup_s: f64,
    pub measure_s: f64,
    pub seed: u64,
    /// Whether edges use the relay.
    pub relay: bool,
    /// A deliberate bug, for checking that the checker catches it.
    pub fault: Fault,
    /// Whether views and relay entries start empty (every isolate cold at once, as after a
    /// deploy) rather than as in a steady state (each data centre's relay entry, or without
    /// the relay each view, refreshed at a random moment of the last bound, or of the last
    /// half bound with `early_refresh`).
    pub cold_start: bool,
    /// As the edge does (`RelayPolicy::early_step`): an isolate whose view is past its refresh
    /// fraction of the bound (but not yet due) consults the relay in the background while
    /// serving from the view it has: it applies a newer entry, and refreshes the relay when
    /// the verdict says `refresh_early`, when the entry is the one it has and past its
    /// fraction, or when the entry is of no use; unless another isolate claimed that refresh.
    pub early_refresh: bool,
    /// Whether an isolate's reads that find its view due wait for the refresh already on its
    /// way instead of each starting their own (the edge does not coalesce them today).
    pub coalesce: bool,
    /// As the edge does: with the relay, isolates ask the coordinator from `relay_since` (a
    /// window behind their view) instead of since their own view's seq.
    pub full_answers: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            dcs: 10,
            isolates: 10,
            reads_per_isolate_s: 10.0,
            writes_s: 20.0,
            keys: 50,
            bound_ms: 1_000,
            service_us: 1_000,
            rtt_us: 40_000,
            cache_get_us: 2_000,
            cache_put_us: 5_000,
            token_reads: 1,
            token_after_us: 10_000,
            warmup_s: 2.0,
            measure_s: 4.0,
            seed: 12,
            relay: true,
            fault: Fault::None,
            cold_start: false,
            early_refresh: false,
            coalesce: false,
            full_answers: false,
        }
    }
}

/// Deliberate deviations from the relay's rules, to prove the checker can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The edge as specified.
    None,
    /// A `TooOld` relay entry is applied as if it were `Apply` (breaks invariant 4).
    ApplyTooOld,
    /// A `BehindToken` relay entry is applied as if it were `Apply` (breaks invariant 5).
    ApplyBehindToken,
    /// Answers go to the relay as they came, without `RelayedChanges::new` raising the floor to
    /// the `since` asked for (breaks invariant 1).
    UnraisedFloor,
}

/// Reads that broke an invariant, by invariant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Violations {
    /// 1: served an entry invalidated by a write the view should know.
    pub lost_invalidation: u64,
    /// 4: the view missed a write recorded more than `bound` before the read started.
    pub staleness: u64,
    /// 5: the view was older than the read's token.
    pub token: u64,
}

impl Violations {
    pub fn total(&self) -> u64 {
        self.lost_invalidation + self.staleness + self.token
    }
}

/// Why due views asked the coordinator rather than take the relay's entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectBecause {
    pub too_old: u64,
    pub behind_token: u64,
    pub gap: u64,
    pub no_entry: u64,
}

/// What one run measured (reads that started, and coordinator requests that arrived, in the
/// measured window).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub reads: u64,
    pub token_reads: u64,
    /// Reads still waiting for the coordinator when the simulation ended.
    pub unserved: u64,
    pub hits: u64,
    /// Coordinator requests per second (writes and `changes`), and of them `changes`.
    pub coordinator_rps: f64,
    pub changes_rps: f64,
    /// Share of the window the coordinator was busy.
    pub utilisation: f64,
    /// Time requests waited in the coordinator's queue (ms).
    pub wait_p50_ms: f64,
    pub wait_p99_ms: f64,
    /// Refreshes views took from the relay (due views, and with `early_refresh` views about
    /// to be), due views' refreshes asked of the coordinator, and background refreshes of the
    /// relay.
    pub relay_refreshes: u64,
    pub direct_refreshes: u64,
    pub background_refreshes: u64,
    /// Why reads that looked at the relay asked the coordinator instead.
    pub direct_because: DirectBecause,
    /// Age of the served view's knowledge: read time minus when the coordinator produced the
    /// newest answer the view applied (ms).
    pub staleness_p50_ms: f64,
    pub staleness_p99_ms: f64,
    pub staleness_max_ms: f64,
    pub violations: Violations,
}

impl Report {
    /// Share of view refreshes answered by the relay.
    pub fn relay_share(&self) -> f64 {
        match self.relay_refreshes + self.direct_refreshes {
            0 => 0.0,
            n => self.relay_refreshes as f64 / n as f64,
        }
    }
}

/// A read on its way.
#[derive(Debug, Clone, Copy)]
struct ReadCtx {
    dc: usize,
    isolate: usize,
    key: usize,
    token: Option<u64>,
    started_us: u64,
}

#[derive(Debug)]
enum Event {
    /// The next Poisson read (of a random isolate).
    Read,
    /// The next Poisson write.
    Write,
    TokenRead(ReadCtx),
    /// A read's Cache API get of the relay entry has returned.
    RelayLookup(ReadCtx),
    /// A background get of the relay entry has returned (the early-refresh proposal).
    RelayCheck(usize, usize),
    /// A coordinator's answer reaches the isolate that asked.
    Answer {
        /// The read waiting for it; `None` for a background refresh of the relay.
        read: Option<ReadCtx>,
        dc: usize,
        isolate: usize,
        since: u64,
        asked_us: u64,
        produced_us: u64,
        changes: Changes,
    },
    /// A Cache API put of a claim to be refreshing the relay completes.
    RelayClaim(usize),
    /// A Cache API put of the relay entry completes.
    RelayPut {
        dc: usize,
        entry: RelayedChanges,
        produced_us: u64,
    },
}

struct Scheduled {
    at_us: u64,
    order: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.order) == (other.at_us, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Earliest first in a max-heap; ties in scheduling order, so runs are deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_us, other.order).cmp(&(self.at_us, self.order))
    }
}

/// The table's coordinator: its seq, every invalidation, when each seq was recorded, its queue.
struct Coordinator {
    seq: u64,
    floor: u64,
    busy_until_us: u64,
    /// Per key: the seqs of its invalidations, ascending.
    invalidations: Vec<Vec<u64>>,
    /// `(seq, recorded at)` of every write, ascending in both.
    recorded: Vec<(u64, u64)>,
}

impl Coordinator {
    fn new(key_count: usize) -> Self {
        let created = ms(EPOCH_US);
        Coordinator {
            seq: created,
            floor: created,
            busy_until_us: 0,
            invalidations: vec![Vec::new(); key_count],
            recorded: Vec::new(),
        }
    }

    /// Queues a request arriving at `arrive_us`: when its service starts and ends.
    fn serve(&mut self, arrive_us: u64, service_us: u64) -> (u64, u64) {
        let start = arrive_us.max(self.busy_until_us);
        self.busy_until_us = start + service_us;
        (start, self.busy_until_us)
    }

    fn record_write(&mut self, keys: &[usize], at_us: u64) -> u64 {
        self.seq += 1;
        for &k in keys {
            self.invalidations[k].push(self.seq);
        }
        self.recorded.push((self.seq, at_us));
        self.seq
    }

    /// Its answer to `changes since since`.
    fn changes_since(&self, since: u64, names: &[String]) -> Changes {
        let from = since.max(self.floor);
        let keys = self
            .invalidations
            .iter()
            .zip(names)
            .filter_map(|(seqs, name)| match seqs.last() {
                Some(&s) if s > from => Some((name.clone(), s)),
                _ => None,
            })
            .collect();
        Changes {
            seq: self.seq,
            floor: self.floor,
            keys,
            ..Changes::default()
        }
    }

    /// The seq after every write recorded at or before `t_us`.
    fn seq_recorded_by(&self, t_us: u64) -> u64 {
        match self.recorded.partition_point(|&(_, at)| at <= t_us) {
            0 => self.floor,
            n => self.recorded[n - 1].0,
        }
    }

    /// Whether `key` was invalidated by a seq in `(stamp, known]`.
    fn invalidated_between(&self, key: usize, stamp: u64, known: u64) -> bool {
        let seqs = &self.invalidations[key];
        seqs.get(seqs.partition_point(|&s| s <= stamp))
            .is_some_and(|&s| s <= known)
    }
}

struct Isolate {
    view: TableView,
    policy: RelayPolicy,
    /// When the coordinator produced the newest answer the view applied.
    produced_us: u64,
    /// A background refresh of the relay is on its way (one at a time per isolate).
    refreshing_relay: bool,
    /// With `coalesce`: a read's refresh is on its way, and the reads waiting for it.
    refreshing: bool,
    waiting: Vec<ReadCtx>,
    l1: Vec<Option<u64>>,
}

struct DataCentre {
    /// The relay entry, and when the coordinator produced the answer in it.
    relay: Option<(RelayedChanges, u64)>,
    /// With `early_refresh`: when another isolate's claim to be refreshing the relay became
    /// visible in the Cache API.
    claimed_us: Option<u64>,
    l2: Vec<Option<u64>>,
    isolates: Vec<Isolate>,
}

/// Nearest-rank percentile of sorted samples; 0 with none.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    match sorted.len() {
        0 => 0,
        n => sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1],
    }
}

struct Sim {
    p: Params,
    rng: TestRng,
    queue: BinaryHeap<Scheduled>,
    scheduled: u64,
    coordinator: Coordinator,
    dcs: Vec<DataCentre>,
    names: Vec<String>,
    window_start_us: u64,
    end_us: u64,
    report: Report,
    started_in_window: u64,
    waits_us: Vec<u64>,
    changes_requests: u64,
    busy_in_window_us: u64,
    ages_us: Vec<u64>,
}

impl Sim {
    fn new(p: Params) -> Self {
        let mut seed = [0u8; 16];
        seed[..8].copy_from_slice(&p.seed.to_le_bytes());
        seed[8..].copy_from_slice(&(!p.seed).to_le_bytes());
        let mut rng = TestRng::from_seed(RngAlgorithm::XorShift, &seed);
        // Record keys, then the list key every write also invalidates.
        let mut names: Vec<String> = (0..p.keys).map(|k| format!("t:/v1/t/{k}")).collect();
        names.push("t:/v1/t".to_string());
        let key_count = names.len();
        let coordinator = Coordinator::new(key_count);
        // A steady start: every view and relay entry holds the coordinator's (empty) answer as
        // of a random moment, spread as each way of refreshing keeps them: over the last bound
        // when views refresh as they fall due, over the last half bound when the relay is
        // refreshed early (from half the bound on).
        let span_us = match p.early_refresh {
            true => MIN_REFRESH_FRACTION * (p.bound_ms * US_PER_MS) as f64,
            false => (p.bound_ms * US_PER_MS) as f64,
        };
        let warm = |rng: &mut TestRng| {
            let asked_us = EPOCH_US - (unit(rng) * span_us) as u64;
            let changes = coordinator.changes_since(0, &names);
            (RelayedChanges::new(0, changes, ms(asked_us)), asked_us)
        };
        // With the relay, a data centre's views all took its entry; without it, each view was
        // refreshed on its own.
        let dcs = (0..p.dcs)
            .map(|_| {
                let relay = (!p.cold_start && p.relay).then(|| warm(&mut rng));
                let isolates = (0..p.isolates)
                    .map(|_| {
                        let mut view = TableView::default();
                        let mut produced_us = 0;
                        if !p.cold_start {
                            let (entry, asked_us) = relay.clone().unwrap_or_else(|| warm(&mut rng));
                            view.apply(&entry.changes, entry.asked_at_ms);
                            produced_us = asked_us;
                        }
                        Isolate {
                            view,
                            policy: RelayPolicy::from_unit(unit(&mut rng)),
                            produced_us,
                            refreshing_relay: false,
                            refreshing: false,
                            waiting: Vec::new(),
                            l1: vec![None; key_count],
                        }
                    })
                    .collect();
                DataCentre {
                    relay,
                    claimed_us: None,
                    l2: vec![None; key_count],
                    isolates,
                }
            })
            .collect();
        let window_start_us = EPOCH_US + (p.warmup_s * US_PER_S) as u64;
        let end_us = window_start_us + (p.measure_s * US_PER_S) as u64;
        Sim {
            rng,
            queue: BinaryHeap::new(),
            scheduled: 0,
            coordinator,
            dcs,
            names,
            window_start_us,
            end_us,
            report: Report::default(),
            started_in_window: 0,
            waits_us: Vec::new(),
            changes_requests: 0,
            busy_in_window_us: 0,
            ages_us: Vec::new(),
            p,
        }
    }

    fn at(&mut self, at_us: u64, event: Event) {
        if at_us < self.end_us {
            self.scheduled += 1;
            self.queue.push(Scheduled {
                at_us,
                order: self.scheduled,
                event,
            });
        }
    }

    /// An exponential gap (µs) for a Poisson process at `rate_s` per second.
    fn gap_us(&mut self, rate_s: f64) -> u64 {
        (-(1.0 - unit(&mut self.rng)).ln() / rate_s * US_PER_S) as u64
    }

    fn pick(&mut self, n: usize) -> usize {
        (unit(&mut self.rng) * n as f64) as usize % n
    }

    fn in_window(&self, t_us: u64) -> bool {
        t_us >= self.window_start_us && t_us < self.end_us
    }

    fn run(mut self) -> Report {
        let read_rate = self.p.reads_per_isolate_s * (self.p.dcs * self.p.isolates) as f64;
        if read_rate > 0.0 {
            let first = EPOCH_US + self.gap_us(read_rate);
            self.at(first, Event::Read);
        }
        if self.p.writes_s > 0.0 {
            let first = EPOCH_US + self.gap_us(self.p.writes_s);
            self.at(first, Event::Write);
        }
        while let Some(Scheduled { at_us, event, .. }) = self.queue.pop() {
            self.handle(at_us, event);
        }
        self.finish()
    }

    fn handle(&mut self, now: u64, event: Event) {
        match event {
            Event::Read => {
                let rate = self.p.reads_per_isolate_s * (self.p.dcs * self.p.isolates) as f64;
                let next = now + self.gap_us(rate);
                self.at(next, Event::Read);
                let (dc, isolate) = (self.pick(self.p.dcs), self.pick(self.p.isolates));
                let key = self.pick(self.names.len());
                self.start_read(
                    now,
                    ReadCtx {
                        dc,
                        isolate,
                        key,
                        token: None,
                        started_us: now,
                    },
                );
            }
            Event::Write => {
                let next = now + self.gap_us(self.p.writes_s);
                self.at(next, Event::Write);
                self.write(now);
            }
            Event::TokenRead(ctx) => self.start_read(now, ctx),
            Event::RelayLookup(ctx) => self.relay_lookup(now, ctx),
            Event::RelayCheck(dc, isolate) => self.relay_check(now, dc, isolate),
            Event::Answer {
                read,
                dc,
                isolate,
                since,
                asked_us,
                produced_us,
                changes,
            } => {
                let iso = &mut self.dcs[dc].isolates[isolate];
                iso.produced_us = iso.produced_us.max(produced_us);
                match read {
                    Some(ctx) => {
                        // As the edge does: dated when it was asked for.
                        iso.view.apply(&changes, ms(asked_us));
                        if self.p.relay {
                            let relayed = self.relayed(since, changes, asked_us);
                            self.publish(now, dc, relayed, produced_us);
                        }
                        self.refreshed(now, ctx);
                    }
                    None => {
                        let relayed = self.relayed(since, changes, asked_us);
                        let iso = &mut self.dcs[dc].isolates[isolate];
                        iso.view.apply(&relayed.changes, relayed.asked_at_ms);
                        iso.refreshing_relay = false;
                        self.publish(now, dc, relayed, produced_us);
                    }
                }
            }
            Event::RelayPut {
                dc,
                entry,
                produced_us,
            } => self.dcs[dc].relay = Some((entry, produced_us)),
            Event::RelayClaim(dc) => self.dcs[dc].claimed_us = Some(now),
        }
    }

    /// How an answer to `changes since since`, asked at `asked_us`, goes into the relay.
    fn relayed(&self, since: u64, changes: Changes, asked_us: u64) -> RelayedChanges {
        match self.p.fault {
            // Stored as a whole answer with the coordinator's floor, though it lists only what
            // came after `since`.
            Fault::UnraisedFloor => RelayedChanges {
                asked_at_ms: ms(asked_us),
                since: 0,
                changes,
            },
            _ => RelayedChanges::new(since, changes, ms(asked_us)),
        }
    }

    fn publish(&mut self, now: u64, dc: usize, entry: RelayedChanges, produced_us: u64) {
        self.at(
            now + self.p.cache_put_us,
            Event::RelayPut {
                dc,
                entry,
                produced_us,
            },
        );
    }

    fn write(&mut self, now: u64) {
        let (dc, isolate) = (self.pick(self.p.dcs), self.pick(self.p.isolates));
        let record = self.pick(self.p.keys.max(1)).min(self.names.len() - 2);
        let list = self.names.len() - 1;
        let (_, done) = self.request(now, true);
        let seq = self.coordinator.record_write(&[record, list], done);
        let acknowledged = done + self.p.rtt_us / 2;
        for _ in 0..self.p.token_reads {
            let isolate = if self.p.isolates > 1 {
                self.pick(self.p.isolates)
            } else {
                isolate
            };
            let started_us = acknowledged + self.p.token_after_us;
            let key = self.pick(self.names.len());
            self.at(
                started_us,
                Event::TokenRead(ReadCtx {
                    dc,
                    isolate,
                    key,
                    token: Some(seq),
                    started_us,
                }),
            );
        }
    }

    /// Sends one request (a write or a `changes since`) to the coordinator at `now`: when its
    /// service starts and ends.
    fn request(&mut self, now: u64, write: bool) -> (u64, u64) {
        let arrive = now + self.p.rtt_us / 2;
        let (start, done) = self.coordinator.serve(arrive, self.p.service_us);
        let overlap = done
            .min(self.end_us)
            .saturating_sub(start.max(self.window_start_us));
        self.busy_in_window_us += overlap;
        if self.in_window(arrive) {
            self.waits_us.push(start - arrive);
            if !write {
                self.changes_requests += 1;
            }
        }
        (start, done)
    }

    fn start_read(&mut self, now: u64, ctx: ReadCtx) {
        if self.in_window(ctx.started_us) {
            self.started_in_window += 1;
        }
        self.validate(now, ctx);
    }

    /// Serves a read whose view is good enough, else starts (or with `coalesce`, joins) a
    /// refresh of it.
    fn validate(&mut self, now: u64, ctx: ReadCtx) {
        let iso = &mut self.dcs[ctx.dc].isolates[ctx.isolate];
        if self.p.coalesce && iso.view.needs_refresh(ms(now), self.p.bound_ms, ctx.token) {
            if iso.refreshing {
                iso.waiting.push(ctx);
                return;
            }
            iso.refreshing = true;
        }
        let iso = &self.dcs[ctx.dc].isolates[ctx.isolate];
        let view = &iso.view;
        if !view.needs_refresh(ms(now), self.p.bound_ms, ctx.token) {
            let age_ms = ms(now).saturating_sub(view.refreshed_at_ms);
            if self.p.relay
                && self.p.early_refresh
                && age_ms as f64 >= iso.policy.refresh_fraction * self.p.bound_ms as f64
                && !iso.refreshing_relay
            {
                self.dcs[ctx.dc].isolates[ctx.isolate].refreshing_relay = true;
                let at = now + self.p.cache_get_us;
                self.at(at, Event::RelayCheck(ctx.dc, ctx.isolate));
            }
            self.serve(now, ctx);
        } else if self.p.relay {
            self.at(now + self.p.cache_get_us, Event::RelayLookup(ctx));
        } else {
            self.ask(now, ctx.dc, ctx.isolate, Some(ctx));
        }
    }

    fn relay_lookup(&mut self, now: u64, ctx: ReadCtx) {
        let dc = &self.dcs[ctx.dc];
        let iso = &dc.isolates[ctx.isolate];
        let verdict = dc.relay.as_ref().map(|(entry, _)| {
            iso.policy
                .verdict(&iso.view, entry, ms(now), self.p.bound_ms, ctx.token)
        });
        let verdict = match (verdict, self.p.fault) {
            (Some(RelayVerdict::TooOld), Fault::ApplyTooOld)
            | (Some(RelayVerdict::BehindToken), Fault::ApplyBehindToken) => {
                Some(RelayVerdict::Apply {
                    refresh_early: true,
                })
            }
            (verdict, _) => verdict,
        };
        let counted = self.in_window(ctx.started_us);
        match verdict {
            Some(RelayVerdict::Apply { refresh_early }) => {
                let dc = &mut self.dcs[ctx.dc];
                let (entry, produced_us) = dc.relay.as_ref().expect("a verdict needs an entry");
                let iso = &mut dc.isolates[ctx.isolate];
                iso.view.apply(&entry.changes, entry.asked_at_ms);
                iso.produced_us = iso.produced_us.max(*produced_us);
                if counted {
                    self.report.relay_refreshes += 1;
                }
                if refresh_early {
                    self.refresh_relay(now, ctx.dc, ctx.isolate);
                }
                self.refreshed(now, ctx);
            }
            Some(RelayVerdict::NotNewer) => self.refreshed(now, ctx),
            Some(RelayVerdict::TooOld | RelayVerdict::Gap | RelayVerdict::BehindToken) | None => {
                if counted {
                    let why = &mut self.report.direct_because;
                    *match verdict {
                        Some(RelayVerdict::TooOld) => &mut why.too_old,
                        Some(RelayVerdict::BehindToken) => &mut why.behind_token,
                        Some(RelayVerdict::Gap) => &mut why.gap,
                        _ => &mut why.no_entry,
                    } += 1;
                }
                self.ask(now, ctx.dc, ctx.isolate, Some(ctx))
            }
        }
    }

    /// A read's refresh is done: it is served, and with `coalesce` the reads that waited for
    /// it are validated again (a token newer than what it brought starts another).
    fn refreshed(&mut self, now: u64, ctx: ReadCtx) {
        self.serve(now, ctx);
        if self.p.coalesce {
            let iso = &mut self.dcs[ctx.dc].isolates[ctx.isolate];
            iso.refreshing = false;
            for waiting in std::mem::take(&mut iso.waiting) {
                self.validate(now, waiting);
            }
        }
    }

    /// The early-refresh proposal: a view not yet due takes a newer relay entry, and refreshes
    /// the relay when the verdict says so or the entry is of no use.
    fn relay_check(&mut self, now: u64, dc: usize, isolate: usize) {
        let d = &mut self.dcs[dc];
        let iso = &mut d.isolates[isolate];
        // The edge's own decision (`RelayPolicy::early_step`).
        let step = iso.policy.early_step(
            &iso.view,
            d.relay.as_ref().map(|(entry, _)| entry),
            ms(now),
            self.p.bound_ms,
        );
        let ask = match step {
            EarlyStep::Apply { refresh } => {
                let (entry, produced_us) = d.relay.as_ref().expect("a step needs an entry");
                iso.view.apply(&entry.changes, entry.asked_at_ms);
                iso.produced_us = iso.produced_us.max(*produced_us);
                if now >= self.window_start_us && now < self.end_us {
                    self.report.relay_refreshes += 1;
                }
                refresh
            }
            EarlyStep::Refresh => true,
            EarlyStep::Nothing => false,
        };
        iso.refreshing_relay = false;
        if ask {
            self.refresh_relay(now, dc, isolate);
        }
    }

    /// Refreshes the relay in the background unless this isolate already is, or (with
    /// `early_refresh`) another isolate of the data centre claimed to less than
    /// `(1 - MAX_REFRESH_FRACTION) × bound` ago: then that claim expires in time for one more
    /// try before the entry turns `TooOld`.
    fn refresh_relay(&mut self, now: u64, dc: usize, isolate: usize) {
        let claim_us = claim_ms(self.p.bound_ms) * US_PER_MS;
        let d = &mut self.dcs[dc];
        if self.p.early_refresh && d.claimed_us.is_some_and(|at| now < at + claim_us) {
            return;
        }
        let iso = &mut d.isolates[isolate];
        if !iso.refreshing_relay {
            iso.refreshing_relay = true;
            if self.p.early_refresh {
                self.at(now + self.p.cache_put_us, Event::RelayClaim(dc));
            }
            self.ask(now, dc, isolate, None);
        }
    }

    /// An isolate asks the coordinator `changes since` its view's `since()`, for a waiting
    /// read or (`None`) to refresh the relay in the background. The answer is what the
    /// coordinator knew when it finished serving the request; it arrives half an RTT later.
    fn ask(&mut self, now: u64, dc: usize, isolate: usize, read: Option<ReadCtx>) {
        // A full answer (`since 0`) carries the coordinator's own floor, so any view above it
        // can take it from the relay; a delta from this view's seq leaves every view behind
        // this one with `Gap`.
        let own = self.dcs[dc].isolates[isolate].view.since();
        let since = match self.p.relay && self.p.full_answers {
            true => relay_since(own),
            false => own,
        };
        let (_, produced_us) = self.request(now, false);
        match read {
            Some(ctx) if self.in_window(ctx.started_us) => self.report.direct_refreshes += 1,
            None if self.in_window(now) => self.report.background_refreshes += 1,
            _ => {}
        }
        let arrives = produced_us + self.p.rtt_us / 2;
        if arrives >= self.end_us {
            return; // after the end: its read counts as unserved
        }
        let changes = self.coordinator.changes_since(since, &self.names);
        self.at(
            arrives,
            Event::Answer {
                read,
                dc,
                isolate,
                since,
                asked_us: now,
                produced_us,
                changes,
            },
        );
    }

    /// A validated read: checks the invariants against the view that serves it, then L1, L2,
    /// or a fill.
    fn serve(&mut self, now: u64, ctx: ReadCtx) {
        let counted = self.in_window(ctx.started_us);
        let bound_us = self.p.bound_ms * US_PER_MS;
        let cutoff = ctx.started_us.saturating_sub(bound_us);
        let must_know = self.coordinator.seq_recorded_by(cutoff);
        let dc = &mut self.dcs[ctx.dc];
        let iso = &mut dc.isolates[ctx.isolate];
        let view = &iso.view;
        let mut broken = Violations::default();
        if ctx.token.is_some_and(|t| view.seq < t) {
            broken.token += 1;
        }
        if view.seq < must_know {
            broken.staleness += 1;
        }
        let name = &self.names[ctx.key];
        let cached = [iso.l1[ctx.key], dc.l2[ctx.key]]
            .into_iter()
            .flatten()
            .find(|&stamp| view.admits(name, stamp));
        match cached {
            Some(stamp) => {
                if self
                    .coordinator
                    .invalidated_between(ctx.key, stamp, view.seq)
                {
                    broken.lost_invalidation += 1;
                }
                iso.l1[ctx.key] = Some(stamp);
            }
            None => {
                // The fill stamp is the view's seq, taken before the origin fetch (invariant 2).
                iso.l1[ctx.key] = Some(view.seq);
                dc.l2[ctx.key] = Some(view.seq);
            }
        }
        // Violations count whenever they happen; the other figures only in the window.
        let v = &mut self.report.violations;
        v.lost_invalidation += broken.lost_invalidation;
        v.staleness += broken.staleness;
        v.token += broken.token;
        if counted {
            self.report.reads += 1;
            self.report.token_reads += u64::from(ctx.token.is_some());
            self.report.hits += u64::from(cached.is_some());
            self.ages_us.push(now.saturating_sub(iso.produced_us));
        }
    }

    fn finish(mut self) -> Report {
        let window_s = self.p.measure_s;
        let r = &mut self.report;
        r.unserved = self.started_in_window - r.reads;
        let requests = self.waits_us.len() as f64;
        r.coordinator_rps = requests / window_s;
        r.changes_rps = self.changes_requests as f64 / window_s;
        r.utilisation = self.busy_in_window_us as f64 / (window_s * US_PER_S);
        self.waits_us.sort_unstable();
        self.ages_us.sort_unstable();
        let ms_of = |us: u64| us as f64 / US_PER_MS as f64;
        r.wait_p50_ms = ms_of(percentile(&self.waits_us, 0.50));
        r.wait_p99_ms = ms_of(percentile(&self.waits_us, 0.99));
        r.staleness_p50_ms = ms_of(percentile(&self.ages_us, 0.50));
        r.staleness_p99_ms = ms_of(percentile(&self.ages_us, 0.99));
        r.staleness_max_ms = ms_of(self.ages_us.last().copied().unwrap_or(0));
        self.report
    }
}

/// A uniform draw from `[0, 1)`.
fn unit(rng: &mut TestRng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs one configuration.
pub fn simulate(p: Params) -> Report {
    Sim::new(p).run()
}

/// What the command line asked for: the grid and every other parameter.
#[derive(Debug, Clone, PartialEq)]
struct Cli {
    dcs: Vec<usize>,
    isolates: Vec<usize>,
    base: Params,
    svg: Option<PathBuf>,
}

const USAGE: &str = "\
cargo run --release -p edgecache-core --example scale -- [flags]
  --dcs LIST           data centres to sweep (default 1,10,30,100,300)
  --isolates LIST      isolates per data centre to sweep (default 1,3,10,30,100)
  --reads N            reads per second per isolate (default 10)
  --writes N           writes per second to the table (default 20)
  --keys N             record keys; writes invalidate one and the list key (default 50)
  --bound-ms N         the route's staleness bound (default 1000)
  --service-us N       coordinator time per request (default 1000: ~1,000 req/s)
  --rtt-ms N           edge <-> coordinator round trip (default 40)
  --cache-get-ms N     Cache API get latency (default 2)
  --cache-put-ms N     Cache API put latency (default 5)
  --token-reads N      reads with the token per write (default 1)
  --token-after-ms N   from a write's acknowledgement to its token reads (default 10)
  --warmup-s N         simulated seconds before measuring (default 2)
  --measure-s N        simulated seconds measured (default 4)
  --seed N             (default 12)
  --svg PATH           where the plot goes (default docs/scale.svg of the workspace)
  --cold               views and relay entries start empty, every isolate at once (as after
                       a deploy); default: a steady start, each view refreshed at a random
                       moment of the last bound (half bound with early refresh)
  --coalesce           an isolate's due reads wait for the refresh already on its way
                       (default: each read refreshes, as the edge does today)
  --no-svg             no plot
Each configuration runs three times: without the relay; with the relay consulted only when a
view is due, asking since the view's seq (the first design); and with the relay as the edge
uses it: answers from a window behind the view (`relay_since`), an early background step once
the view is past its refresh fraction of the bound (`RelayPolicy::early_step`), claimed by one
isolate per data centre.";

fn parse_cli(args: &[String]) -> Result<Cli, String> {
    let mut cli = Cli {
        dcs: vec![1, 10, 30, 100, 300],
        isolates: vec![1, 3, 10, 30, 100],
        base: Params::default(),
        svg: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/scale.svg")),
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        if flag == "--no-svg" {
            cli.svg = None;
            continue;
        }
        if flag == "--coalesce" {
            cli.base.coalesce = true;
            continue;
        }
        if flag == "--cold" {
            cli.base.cold_start = true;
            continue;
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = || format!("{flag}: cannot read {value:?}\n{USAGE}");
        let num = || {
            value.parse::<f64>().map_err(|_| bad()).and_then(|v| {
                if v.is_finite() && v >= 0.0 {
                    Ok(v)
                } else {
                    Err(bad())
                }
            })
        };
        let list = || -> Result<Vec<usize>, String> {
            value
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(bad)
                })
                .collect()
        };
        let b = &mut cli.base;
        match flag.as_str() {
            "--dcs" => cli.dcs = list()?,
            "--isolates" => cli.isolates = list()?,
            "--reads" => b.reads_per_isolate_s = num()?,
            "--writes" => b.writes_s = num()?,
            "--keys" => b.keys = (num()? as usize).max(1),
            "--bound-ms" => b.bound_ms = num()? as u64,
            "--service-us" => b.service_us = (num()? as u64).max(1),
            "--rtt-ms" => b.rtt_us = (num()? * 1e3) as u64,
            "--cache-get-ms" => b.cache_get_us = (num()? * 1e3) as u64,
            "--cache-put-ms" => b.cache_put_us = (num()? * 1e3) as u64,
            "--token-reads" => b.token_reads = num()? as usize,
            "--token-after-ms" => b.token_after_us = (num()? * 1e3) as u64,
            "--warmup-s" => b.warmup_s = num()?,
            "--measure-s" => b.measure_s = num()?.max(0.001),
            "--seed" => b.seed = num()? as u64,
            "--svg" => cli.svg = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(cli)
}

/// One row of the sweep: a configuration without the relay, with it consulted only when due
/// (the first design), and with it as the edge uses it (windowed answers, early background
/// step, a claim).
#[derive(Debug, Clone, PartialEq)]
struct Row {
    dcs: usize,
    isolates: usize,
    baseline: Report,
    relay: Report,
    proposed: Report,
}

impl Row {
    fn modes(&self) -> [(&'static str, &Report); 3] {
        [
            ("none", &self.baseline),
            ("relay-due-only", &self.relay),
            ("relay-edge", &self.proposed),
        ]
    }
}

fn sweep(cli: &Cli) -> Vec<Row> {
    let mut rows = Vec::new();
    for &dcs in &cli.dcs {
        for &isolates in &cli.isolates {
            let p = Params {
                dcs,
                isolates,
                ..cli.base.clone()
            };
            rows.push(Row {
                dcs,
                isolates,
                baseline: simulate(Params {
                    relay: false,
                    ..p.clone()
                }),
                relay: simulate(Params {
                    relay: true,
                    ..p.clone()
                }),
                proposed: simulate(Params {
                    relay: true,
                    early_refresh: true,
                    full_answers: true,
                    ..p
                }),
            });
        }
    }
    rows
}

fn table(rows: &[Row], p: &Params) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| DCs | isolates/DC | relay | coordinator req/s (changes) | utilisation | queue wait p50 / p99 ms | relay share (background req/s) | direct because too old / token / gap / none | staleness p50 / p99 / max ms (bound {}) | reads (token) | unserved | violations 1/4/5 |",
        p.bound_ms
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        for (mode, r) in row.modes() {
            let v = r.violations;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} ({:.0}) | {:.0} % | {:.1} / {:.1} | {:.0} % ({:.0}) | {} / {} / {} / {} | {:.0} / {:.0} / {:.0} | {} ({}) | {} | {}/{}/{} |",
                row.dcs,
                row.isolates,
                mode,
                r.coordinator_rps,
                r.changes_rps,
                r.utilisation * 100.0,
                r.wait_p50_ms,
                r.wait_p99_ms,
                r.relay_share() * 100.0,
                r.background_refreshes as f64 / p.measure_s,
                r.direct_because.too_old,
                r.direct_because.behind_token,
                r.direct_because.gap,
                r.direct_because.no_entry,
                r.staleness_p50_ms,
                r.staleness_p99_ms,
                r.staleness_max_ms,
                r.reads,
                r.token_reads,
                r.unserved,
                v.lost_invalidation,
                v.staleness,
                v.token
            );
        }
    }
    out
}

/// Utilisation from which a configuration counts as saturated.
const SATURATED: f64 = 0.99;

/// A tick label: 1, 10, 100, 1k, 10k, 100k, 1M.
fn short(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v => format!("{v}"),
    }
}

/// How each mode is drawn, in `Row::modes` order, and its legend.
const MODE_DASHES: [&str; 3] = [
    r#" stroke-dasharray="6 4""#,
    "",
    r#" stroke-dasharray="2 2""#,
];
const MODE_LABELS: [&str; 3] = [
    "no relay",
    "relay, consulted when due only (first design)",
    "relay as the edge uses it",
];

/// Coordinator requests per second against isolates per data centre, log-log: one colour per
/// data-centre count, dashed without the relay, solid with it, and one coordinator's capacity.
fn plot(rows: &[Row], p: &Params) -> String {
    const COLOURS: [&str; 8] = [
        "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
    ];
    let (w, h) = (760.0, 480.0);
    let (left, right, top, bottom) = (80.0, 200.0, 40.0, 60.0);
    let capacity = US_PER_S / p.service_us as f64;
    let decade = |v: f64, up: bool| {
        let l = v.max(0.1).log10();
        10f64.powf(if up { l.ceil() } else { l.floor() })
    };
    let xs: Vec<f64> = rows.iter().map(|r| r.isolates as f64).collect();
    let ys: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.modes().map(|(_, report)| report.coordinator_rps))
        .chain([capacity])
        .filter(|v| *v > 0.0)
        .collect();
    let (x0, x1) = (
        decade(xs.iter().copied().fold(f64::MAX, f64::min), false),
        decade(xs.iter().copied().fold(1.0, f64::max), true).max(10.0),
    );
    let (y0, y1) = (
        decade(ys.iter().copied().fold(f64::MAX, f64::min), false),
        decade(ys.iter().copied().fold(1.0, f64::max), true),
    );
    let y1 = if y1 <= y0 { y0 * 10.0 } else { y1 };
    let px =
        |x: f64| left + (x.log10() - x0.log10()) / (x1.log10() - x0.log10()) * (w - left - right);
    let py = |y: f64| {
        let y = y.max(y0);
        h - bottom - (y.log10() - y0.log10()) / (y1.log10() - y0.log10()) * (h - top - bottom)
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="13">Requests reaching one table's coordinator (simulated: {} reads/s per isolate, {} writes/s, bound {} ms)</text>"#,
        (w - right + left) / 2.0 + 40.0,
        p.reads_per_isolate_s,
        p.writes_s,
        p.bound_ms
    );
    // Decade grid and tick labels.
    let mut x = x0;
    while x <= x1 * 1.0001 {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#ddd"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>"##,
            px(x),
            top,
            h - bottom,
            h - bottom + 18.0,
            short(x)
        );
        x *= 10.0;
    }
    let mut y = y0;
    while y <= y1 * 1.0001 {
        let _ = writeln!(
            s,
            r##"<line x1="{0}" y1="{1:.1}" x2="{2}" y2="{1:.1}" stroke="#ddd"/><text x="{3}" y="{4:.1}" text-anchor="end">{5}</text>"##,
            left,
            py(y),
            w - right,
            left - 6.0,
            py(y) + 4.0,
            short(y)
        );
        y *= 10.0;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        w - left - right,
        h - top - bottom
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">isolates per data centre (log)</text>"#,
        left + (w - left - right) / 2.0,
        h - 15.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20 {}) rotate(-90)" text-anchor="middle">coordinator requests/s (log)</text>"#,
        top + (h - top - bottom) / 2.0
    );
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#c00" stroke-dasharray="2 3"/><text x="{2}" y="{3:.1}" fill="#c00">one coordinator: {4:.0}/s</text>"##,
        py(capacity),
        w - right,
        left + 6.0,
        py(capacity) - 5.0,
        capacity
    );
    let mut dcs: Vec<usize> = rows.iter().map(|r| r.dcs).collect();
    dcs.dedup();
    for (i, &dc) in dcs.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let line: Vec<&Row> = rows.iter().filter(|r| r.dcs == dc).collect();
        for (mode, dash) in MODE_DASHES.iter().enumerate() {
            let points: Vec<String> = line
                .iter()
                .map(|r| {
                    let rps = r.modes()[mode].1.coordinator_rps;
                    format!("{:.1},{:.1}", px(r.isolates as f64), py(rps))
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
                points.join(" ")
            );
            for r in line
                .iter()
                .filter(|r| r.modes()[mode].1.utilisation >= SATURATED)
            {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="white" stroke="{colour}" stroke-width="1.5"/>"#,
                    px(r.isolates as f64),
                    py(r.modes()[mode].1.coordinator_rps)
                );
            }
        }
        let ly = top + 10.0 + i as f64 * 20.0;
        let lx = w - right + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{dc} DC{}</text>"#,
            lx + 25.0,
            lx + 32.0,
            ly + 4.0,
            if dc == 1 { "" } else { "s" }
        );
    }
    let lx = w - right + 15.0;
    for (i, (dash, label)) in MODE_DASHES.iter().zip(MODE_LABELS).enumerate() {
        let ly = top + 30.0 + (dcs.len() + i) as f64 * 20.0;
        let _ = writeln!(
            s,
            r##"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="#333" stroke-width="2"{dash}/><text x="{}" y="{}">{label}</text>"##,
            lx + 25.0,
            lx + 32.0,
            ly + 4.0
        );
    }
    let ly = top + 30.0 + (dcs.len() + MODE_DASHES.len()) as f64 * 20.0;
    let _ = writeln!(
        s,
        r##"<circle cx="{}" cy="{ly}" r="4" fill="white" stroke="#333" stroke-width="1.5"/><text x="{}" y="{}">saturated: busy ≥ 99 %,</text><text x="{}" y="{}">its queue grows</text>"##,
        lx + 12.0,
        lx + 32.0,
        ly + 4.0,
        lx + 32.0,
        ly + 20.0
    );
    s.push_str("</svg>\n");
    s
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let cli = match parse_cli(&args) {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let rows = sweep(&cli);
    let p = &cli.base;
    println!(
        "EdgeCache scale simulation: {} reads/s per isolate, {} writes/s, bound {} ms, coordinator {} µs per request (capacity {:.0} req/s), RTT {} ms, Cache API get/put {}/{} ms, {} token read(s) per write, {} s measured after {} s, seed {}\n",
        p.reads_per_isolate_s,
        p.writes_s,
        p.bound_ms,
        p.service_us,
        US_PER_S / p.service_us as f64,
        p.rtt_us as f64 / 1e3,
        p.cache_get_us as f64 / 1e3,
        p.cache_put_us as f64 / 1e3,
        p.token_reads,
        p.measure_s,
        p.warmup_s,
        p.seed
    );
    print!("{}", table(&rows, p));
    if let Some(path) = &cli.svg {
        let svg = plot(&rows, p);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::write(path, svg) {
            Ok(()) => println!("\nplot: {}", path.display()),
            Err(e) => {
                eprintln!("cannot write {}: {e}", path.display());
                std::process::exit(2);
            }
        }
    }
    let violations: u64 = rows
        .iter()
        .flat_map(|r| r.modes().map(|(_, report)| report.violations.total()))
        .sum();
    if violations > 0 {
        eprintln!("\n{violations} reads broke an invariant");
        std::process::exit(1);
    }
    println!("\nevery simulated read kept invariants 1, 4 and 5");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small enough for a debug build: 3 data centres × 4 isolates, 2 simulated seconds.
    fn small() -> Params {
        Params {
            dcs: 3,
            isolates: 4,
            reads_per_isolate_s: 20.0,
            writes_s: 30.0,
            keys: 8,
            warmup_s: 1.0,
            measure_s: 2.0,
            ..Params::default()
        }
    }

    #[test]
    fn every_read_keeps_the_invariants_with_and_without_the_relay() {
        for (relay, proposed) in [(false, false), (true, false), (true, true)] {
            for cold_start in [false, true] {
                for seed in 1..4 {
                    let p = Params {
                        relay,
                        early_refresh: proposed,
                        full_answers: proposed,
                        cold_start,
                        coalesce: seed == 3,
                        seed,
                        ..small()
                    };
                    let r = simulate(p.clone());
                    assert_eq!(r.violations, Violations::default(), "{p:?}: {r:?}");
                    assert!(r.reads > 400 && r.token_reads > 20 && r.hits > 0, "{r:?}");
                    assert_eq!(r.relay_refreshes > 0, relay, "{r:?}");
                    assert!(r.direct_refreshes > 0, "{r:?}");
                }
            }
        }
    }

    #[test]
    fn the_checker_catches_each_planted_fault() {
        // Sparse reads leave relay entries to age past the bound, so `TooOld` comes up.
        let too_old = simulate(Params {
            fault: Fault::ApplyTooOld,
            reads_per_isolate_s: 2.0,
            token_reads: 0,
            measure_s: 4.0,
            ..small()
        });
        assert!(too_old.violations.staleness > 0, "{too_old:?}");
        let behind = simulate(Params {
            fault: Fault::ApplyBehindToken,
            ..small()
        });
        assert!(behind.violations.token > 0, "{behind:?}");
        let unraised = simulate(Params {
            fault: Fault::UnraisedFloor,
            ..small()
        });
        assert!(unraised.violations.lost_invalidation > 0, "{unraised:?}");
    }

    #[test]
    fn runs_are_deterministic_and_seeds_matter() {
        let run = |seed| simulate(Params { seed, ..small() });
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn the_relay_takes_most_refreshes_off_the_coordinator() {
        let p = Params {
            dcs: 5,
            isolates: 20,
            ..small()
        };
        let without = simulate(Params {
            relay: false,
            ..p.clone()
        });
        let with = simulate(Params { relay: true, ..p });
        assert!(
            with.changes_rps * 1.5 < without.changes_rps,
            "{with:?} vs {without:?}"
        );
        assert!(with.relay_share() > 0.4, "{with:?}");
    }

    #[test]
    fn relayed_deltas_leave_due_views_with_gap_and_the_proposal_scales_with_data_centres() {
        let run = |isolates, proposed| {
            simulate(Params {
                dcs: 2,
                isolates,
                early_refresh: proposed,
                full_answers: proposed,
                ..small()
            })
        };
        // As specified, an entry's floor is its asker's seq: a due view is usually behind it.
        let specified = run(40, false);
        let why = specified.direct_because;
        assert!(
            why.gap > why.too_old && why.gap > why.behind_token,
            "{why:?}"
        );
        let (few, many) = (run(5, true), run(40, true));
        assert_eq!(many.direct_because.gap, 0, "{many:?}");
        assert!(many.changes_rps < specified.changes_rps, "{many:?}");
        // Eight times the isolates, well under twice the requests.
        assert!(many.changes_rps < 2.0 * few.changes_rps, "{few:?} {many:?}");
        // Four times the data centres, at least three times the relay's refreshes (no token
        // reads here: their answers refresh the relay too).
        let proposed = |dcs| {
            simulate(Params {
                dcs,
                early_refresh: true,
                full_answers: true,
                token_reads: 0,
                ..small()
            })
        };
        let (fewer_dcs, more_dcs) = (proposed(2), proposed(8));
        assert!(
            more_dcs.background_refreshes >= 3 * fewer_dcs.background_refreshes
                && fewer_dcs.background_refreshes > 0,
            "{fewer_dcs:?} {more_dcs:?}"
        );
    }

    #[test]
    fn a_coordinator_past_its_capacity_queues_without_bound() {
        let r = simulate(Params {
            relay: false,
            dcs: 20,
            isolates: 60,
            reads_per_isolate_s: 10.0,
            ..small()
        });
        assert!(r.utilisation > 0.99, "{r:?}");
        assert!(r.wait_p99_ms > 1_000.0 && r.unserved > 0, "{r:?}");
    }

    #[test]
    fn the_command_line_sweeps_a_grid_into_a_table_and_a_plot() {
        let args: Vec<String> = [
            "--dcs",
            "1,2",
            "--isolates",
            "1,3",
            "--reads",
            "5",
            "--warmup-s",
            "0.5",
            "--measure-s",
            "1",
            "--no-svg",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let cli = parse_cli(&args).unwrap();
        assert_eq!(
            (cli.dcs.clone(), cli.isolates.clone(), cli.svg.clone()),
            (vec![1, 2], vec![1, 3], None)
        );
        assert!(parse_cli(&["--dcs".to_string(), "0".to_string()]).is_err());
        assert!(parse_cli(&["--what".to_string(), "1".to_string()]).is_err());
        let rows = sweep(&cli);
        assert_eq!(rows.len(), 4);
        let text = table(&rows, &cli.base);
        assert_eq!(text.lines().count(), 2 + 3 * rows.len());
        let svg = plot(&rows, &cli.base);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<polyline").count(),
            2 * 3,
            "three lines per DC count"
        );
    }
}
