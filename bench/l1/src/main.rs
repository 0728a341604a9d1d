//! EdgeCache's L1 against the LRU it replaced and against `quick_cache` with its own default
//! hasher, natively, under one byte budget.
//!
//! Every cache holds `Rc<CachedEntry>` values shaped like the worker's (JSON-like bodies of 200 B
//! to 4 KB, one table stamp). The LRU and raw quick_cache are charged the LRU's bytes per entry
//! (`2 × key + value.weight() + lru::ENTRY_OVERHEAD`, quick_cache's weighter); L1 charges its
//! own (`key + value.weight() + l1::ENTRY_OVERHEAD`, a few bytes less per entry). So the budget is
//! the same in nearly the same currency, and the hit ratios compare eviction policies. L1 is
//! quick_cache with std's SipHash (its build without the `ahash` feature, as on wasm32); the
//! raw quick_cache row shows what its default hasher (ahash) would add.
//!
//! Measurements (fixed seed, one thread):
//! * Hit ratio: a read-through trace (get; on a miss build the entry and insert it) of Zipf
//!   requests (s = 1.0 over `KEYS` keys), and the same trace with a scan of `SCAN_LEN` one-off
//!   keys every `SCAN_EVERY` Zipf requests. The first `WARMUP` Zipf requests are not counted.
//!   Deterministic: the same figures every run.
//! * ns per get-hit: `get(key).cloned()` (what `L1Tier::get` does) over Zipf-drawn keys resident
//!   in every cache. ns per insert: fresh keys into the full cache, so each insert evicts and
//!   frees its victims (what a miss's fill does), including the key copy each API needs. Both in
//!   `ROUNDS` rounds of short batches, the caches taking turns within each round so that load
//!   from other processes falls on all of them alike; the minimum and median are printed.
//!
//! Bytes: the charged bytes each cache reports, and the heap it really holds: the live heap
//! (requested sizes, by a counting global allocator) after the scan trace minus before the cache
//! was made.

mod lru;

use edgecache::cache::l1::{L1Cache, Weigh};
use edgecache_core::entry::{CachedEntry, SharedEntry};
use lru::{LruCache, ENTRY_OVERHEAD};
use quick_cache::unsync::{Cache as QuickCache, DefaultLifecycle};
use quick_cache::Weighter;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

/// L1's default budget (32 MiB of a 128 MB isolate).
const BUDGET: usize = 32 << 20;
/// Distinct keys in the Zipf population.
const KEYS: usize = 200_000;
/// Zipf exponent.
const ZIPF_S: f64 = 1.0;
/// Zipf requests in each hit-ratio trace.
const REQUESTS: usize = 1_000_000;
/// Zipf requests at the start of a trace that are not counted.
const WARMUP: usize = 100_000;
/// Zipf requests between two scans.
const SCAN_EVERY: usize = 10_000;
/// One-off keys in each scan.
const SCAN_LEN: usize = 2_500;
/// Timed rounds per micro-measurement; each round times one short batch per cache, the caches
/// taking turns, so a burst of load from other processes hits all of them alike.
const ROUNDS: usize = 41;
/// Gets per timed batch (the batches cycle through `GET_KEYS` resident keys).
const GET_BATCH: usize = 5_000;
/// Resident, Zipf-drawn keys the get batches use.
const GET_KEYS: usize = 50_000;
/// Inserts per timed batch.
const INSERT_BATCH: usize = 2_000;
/// Body sizes, log-uniform in this range.
const BODY_MIN: f64 = 200.0;
const BODY_MAX: f64 = 4_096.0;
const SEED: u64 = 0x5EED_CAFE_F00D_0001;

// ---------------------------------------------------------------------------------------------
// A counting allocator: live heap bytes, for the "heap" column.

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_heap() -> isize {
    LIVE.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Deterministic inputs.

/// SplitMix64: small, fast, and good enough to drive a workload.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf over ranks `0..n` by inverse CDF (binary search over the cumulative weights).
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Body length for key number `id`: log-uniform in `BODY_MIN..BODY_MAX`, fixed per key.
fn body_len(id: u64) -> usize {
    let u = Rng(id ^ SEED).unit();
    (BODY_MIN * (BODY_MAX / BODY_MIN).powf(u)) as usize
}

fn zipf_key(id: usize) -> String {
    format!("GET api.example.com/v1/users/{id:06}?fields=id,name,email,plan")
}

fn scan_key(n: usize) -> String {
    format!("GET api.example.com/v1/exports/{n:08}?page=all")
}

/// A cache entry shaped like the worker's: owned key, body, etag, one table stamp. The etag has
/// the real one's length but is not hashed from the body, to keep the harness cheap.
fn build_entry(key: &str, id: u64) -> SharedEntry {
    let len = body_len(id);
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(b"{\"data\":\"");
    body.resize(len - 2, b'x');
    body.extend_from_slice(b"\"}");
    let mut stamps = BTreeMap::new();
    stamps.insert("users".to_string(), id);
    Rc::new(CachedEntry {
        key: key.to_string(),
        etag: format!("\"{id:016x}-{len:x}\""),
        body,
        stamps,
        filled_at_ms: 0,
        expires_at_ms: 60_000,
        vary: None,
    })
}

// ---------------------------------------------------------------------------------------------
// The caches behind one interface, called the way `L1Tier` calls L1.

trait Bench {
    fn get(&mut self, key: &str) -> Option<SharedEntry>;
    fn put(&mut self, entry: &SharedEntry);
    fn charged(&self) -> usize;
    fn len(&self) -> usize;
}

/// Both L1 and the LRU it replaced are called as `L1Tier` calls L1.
macro_rules! bench_for_l1_shape {
    ($cache:ident) => {
        impl Bench for $cache<SharedEntry> {
            #[inline]
            fn get(&mut self, key: &str) -> Option<SharedEntry> {
                $cache::get(self, key).cloned()
            }
            #[inline]
            fn put(&mut self, entry: &SharedEntry) {
                self.insert(&entry.key, entry.clone());
            }
            fn charged(&self) -> usize {
                self.stats().bytes as usize
            }
            fn len(&self) -> usize {
                $cache::len(self)
            }
        }
    };
}

bench_for_l1_shape!(L1Cache);
bench_for_l1_shape!(LruCache);

/// The LRU's charge, so raw quick_cache spends the budget in the same currency.
#[derive(Clone)]
struct L1Charge;

impl Weighter<String, SharedEntry> for L1Charge {
    #[inline]
    fn weight(&self, key: &String, val: &SharedEntry) -> u64 {
        (2 * key.len() + val.weight() + ENTRY_OVERHEAD) as u64
    }
}

type Quick<B> = QuickCache<String, SharedEntry, L1Charge, B, DefaultLifecycle<String, SharedEntry>>;

fn quick<B: BuildHasher>(hasher: B) -> Quick<B> {
    // The estimate only sizes the table and the ghost list; the weight is the bound.
    let estimated = BUDGET / 1_500;
    QuickCache::with(
        estimated,
        BUDGET as u64,
        L1Charge,
        hasher,
        DefaultLifecycle::default(),
    )
}

impl<B: BuildHasher> Bench for Quick<B> {
    #[inline]
    fn get(&mut self, key: &str) -> Option<SharedEntry> {
        QuickCache::get(self, key).cloned()
    }
    #[inline]
    fn put(&mut self, entry: &SharedEntry) {
        self.insert(entry.key.clone(), entry.clone());
    }
    fn charged(&self) -> usize {
        self.weight() as usize
    }
    fn len(&self) -> usize {
        QuickCache::len(self)
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements.

struct Inputs {
    zipf: Zipf,
    keys: Vec<String>,
}

#[derive(Default)]
struct Trace {
    zipf_hits: u64,
    zipf_reqs: u64,
    all_hits: u64,
    all_reqs: u64,
}

impl Trace {
    fn zipf_ratio(&self) -> f64 {
        self.zipf_hits as f64 / self.zipf_reqs as f64
    }
    fn all_ratio(&self) -> f64 {
        self.all_hits as f64 / self.all_reqs as f64
    }
}

/// A read-through trace; `scans` adds the periodic one-off scans.
fn run_trace(c: &mut impl Bench, inputs: &Inputs, scans: bool) -> Trace {
    let mut rng = Rng(SEED);
    let mut t = Trace::default();
    let mut next_scan_key = 0usize;
    for i in 0..REQUESTS {
        if scans && i > 0 && i % SCAN_EVERY == 0 {
            for _ in 0..SCAN_LEN {
                let key = scan_key(next_scan_key);
                let id = (KEYS + next_scan_key) as u64;
                next_scan_key += 1;
                let hit = c.get(&key).is_some();
                if !hit {
                    c.put(&build_entry(&key, id));
                }
                if i >= WARMUP {
                    t.all_reqs += 1;
                    t.all_hits += hit as u64;
                }
            }
        }
        let id = inputs.zipf.sample(&mut rng);
        let key = &inputs.keys[id];
        let hit = c.get(key).is_some();
        if !hit {
            c.put(&build_entry(key, id as u64));
        }
        if i >= WARMUP {
            t.zipf_reqs += 1;
            t.zipf_hits += hit as u64;
            t.all_reqs += 1;
            t.all_hits += hit as u64;
        }
    }
    t
}

/// One cache under test, with its timing loops monomorphised for its type.
trait Subject {
    fn name(&self) -> &'static str;
    fn is_hit(&mut self, key: &str) -> bool;
    /// ns per `get(key).cloned()` over `keys`.
    fn time_gets(&mut self, keys: &[&str]) -> f64;
    /// ns per insert of the entries of `batch`.
    fn time_puts(&mut self, batch: Vec<SharedEntry>) -> f64;
}

struct Measured<C> {
    name: &'static str,
    cache: C,
}

impl<C: Bench> Subject for Measured<C> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn is_hit(&mut self, key: &str) -> bool {
        self.cache.get(key).is_some()
    }

    fn time_gets(&mut self, keys: &[&str]) -> f64 {
        let start = Instant::now();
        for key in keys {
            black_box(self.cache.get(black_box(key)));
        }
        start.elapsed().as_nanos() as f64 / keys.len() as f64
    }

    fn time_puts(&mut self, mut batch: Vec<SharedEntry>) -> f64 {
        let n = batch.len();
        let start = Instant::now();
        for e in batch.drain(..) {
            self.cache.put(&e);
        }
        start.elapsed().as_nanos() as f64 / n as f64
    }
}

/// (min, median) of per-round figures.
fn min_median(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[0], xs[xs.len() / 2])
}

struct Row {
    name: &'static str,
    zipf_only: f64,
    with_scans_zipf: f64,
    with_scans_all: f64,
    entries: usize,
    charged: usize,
    heap: isize,
    get_ns: (f64, f64),
    insert_ns: (f64, f64),
}

/// Runs both traces on fresh caches from `make`; keeps the scan-trace cache for timing.
fn traced<C: Bench + 'static>(
    name: &'static str,
    make: impl Fn() -> C,
    inputs: &Inputs,
) -> (Row, Box<dyn Subject>) {
    let zipf_only = run_trace(&mut make(), inputs, false).zipf_ratio();
    let before = live_heap();
    let mut cache = make();
    let scanned = run_trace(&mut cache, inputs, true);
    let heap = live_heap() - before;
    assert!(cache.charged() <= BUDGET, "{name} went over its budget");
    let row = Row {
        name,
        zipf_only,
        with_scans_zipf: scanned.zipf_ratio(),
        with_scans_all: scanned.all_ratio(),
        entries: cache.len(),
        charged: cache.charged(),
        heap,
        get_ns: (0.0, 0.0),
        insert_ns: (0.0, 0.0),
    };
    (row, Box::new(Measured { name, cache }))
}

fn main() {
    let wall = Instant::now();
    let inputs = Inputs {
        zipf: Zipf::new(KEYS, ZIPF_S),
        keys: (0..KEYS).map(zipf_key).collect(),
    };
    let mean_body = (0..KEYS as u64).map(body_len).sum::<usize>() / KEYS;
    println!(
        "L1 (quick_cache) vs the LRU it replaced: budget {} MiB, {KEYS} keys Zipf s={ZIPF_S}, bodies {BODY_MIN}-{BODY_MAX} B \
         (mean {mean_body} B), {REQUESTS} requests ({WARMUP} warm-up), scans of {SCAN_LEN} one-off \
         keys every {SCAN_EVERY} requests, seed {SEED:#x}",
        BUDGET >> 20,
    );
    let (mut rows, mut subjects): (Vec<Row>, Vec<Box<dyn Subject>>) = [
        traced(
            "previous L1 (LRU, SipHash)",
            || LruCache::new(BUDGET),
            &inputs,
        ),
        traced(
            "L1: quick_cache unsync (SipHash)",
            || L1Cache::new(BUDGET),
            &inputs,
        ),
        traced(
            "quick_cache unsync (ahash)",
            || quick(ahash::RandomState::default()),
            &inputs,
        ),
    ]
    .into_iter()
    .unzip();

    // The same Zipf-drawn keys for every cache, each resident in all of them.
    let mut rng = Rng(SEED ^ 0x6E7);
    let mut hit_keys: Vec<&str> = Vec::with_capacity(GET_KEYS);
    while hit_keys.len() < GET_KEYS {
        let key = inputs.keys[inputs.zipf.sample(&mut rng)].as_str();
        if subjects.iter_mut().all(|s| s.is_hit(key)) {
            hit_keys.push(key);
        }
    }
    let n = subjects.len();
    let mut gets = vec![Vec::with_capacity(ROUNDS); n];
    let mut puts = vec![Vec::with_capacity(ROUNDS); n];
    let mut fresh = 1usize << 30; // scan-key numbers no trace used
    for round in 0..ROUNDS {
        let chunk = &hit_keys[(round * GET_BATCH) % GET_KEYS..][..GET_BATCH];
        for turn in 0..n {
            let i = (round + turn) % n;
            gets[i].push(subjects[i].time_gets(chunk));
        }
    }
    for round in 0..ROUNDS {
        for turn in 0..n {
            let i = (round + turn) % n;
            let batch: Vec<SharedEntry> = (0..INSERT_BATCH)
                .map(|j| build_entry(&scan_key(fresh + j), (KEYS + fresh + j) as u64))
                .collect();
            puts[i].push(subjects[i].time_puts(batch));
        }
        fresh += INSERT_BATCH;
    }
    for (i, row) in rows.iter_mut().enumerate() {
        debug_assert_eq!(row.name, subjects[i].name());
        row.get_ns = min_median(std::mem::take(&mut gets[i]));
        row.insert_ns = min_median(std::mem::take(&mut puts[i]));
    }

    println!();
    println!(
        "{:<29} {:>8} {:>8} {:>8} {:>13} {:>13} {:>7} {:>9} {:>9}",
        "cache",
        "hit zipf",
        "hit z+sc",
        "all z+sc",
        "ns/get-hit",
        "ns/insert",
        "entries",
        "charged",
        "heap"
    );
    for r in &rows {
        println!(
            "{:<29} {:>7.1}% {:>7.1}% {:>7.1}% {:>5.0} ({:>5.0}) {:>5.0} ({:>5.0}) {:>7} {:>6.2}MiB {:>6.2}MiB",
            r.name,
            100.0 * r.zipf_only,
            100.0 * r.with_scans_zipf,
            100.0 * r.with_scans_all,
            r.get_ns.0,
            r.get_ns.1,
            r.insert_ns.0,
            r.insert_ns.1,
            r.entries,
            r.charged as f64 / (1 << 20) as f64,
            r.heap as f64 / (1 << 20) as f64,
        );
    }
    println!();
    println!(
        "hit zipf: Zipf-only trace. hit z+sc: the Zipf requests of the trace with scans; all z+sc: \
         all its requests, scans included."
    );
    println!(
        "ns: min (median) over {ROUNDS} rounds, the caches taking turns each round; get-hit = \
         get(key).cloned() on {GET_BATCH} resident keys, insert = {INSERT_BATCH} fresh keys into \
         the full cache (each evicts)."
    );
    println!(
        "charged: bytes as each cache charges them (L1 its own; the LRU and raw quick_cache the LRU's); heap: live heap held by the cache \
         after the scan trace (counting allocator)."
    );
    println!("wall time {:.1} s", wall.elapsed().as_secs_f64());
}
