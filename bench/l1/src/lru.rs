//! The LRU that was EdgeCache's L1 until this benchmark showed quick_cache keeping more hits
//! in the same bytes (`bench/README.md`); kept here as the baseline it is measured against.
//!
//! An isolate has 128 MB in all and wasm linear memory never shrinks, so the bound is in bytes,
//! not entries: every entry is charged for its key, its value and its bookkeeping
//! ([`ENTRY_OVERHEAD`]), and `stats().bytes <= max_bytes` holds after every call.
//!
//! Layout: a `HashMap` from key to an index into a slab of nodes; the nodes form an intrusive
//! doubly-linked recency list by index (head = most recently used), and freed slots form a
//! free list threaded through the same slab. Every operation is O(1) (an insert also evicts as
//! many entries as it needs to fit).
//!
//! There is no expiry here: the caller keeps entries past their TTL (for stale-if-error) and
//! checks freshness itself on lookup, so L1 never reads a clock.

use std::collections::HashMap;

pub use edgecache::cache::l1::Weigh;
use std::mem::size_of;

/// Index meaning "no node" in the recency and free lists.
const NIL: usize = usize::MAX;

/// Everything a slab node holds besides the value.
struct Link {
    /// Second copy of the key (the map owns the first): eviction starts from the list tail and
    /// must find the map entry to remove.
    key: Box<str>,
    /// Bytes charged when inserted, kept so accounting stays exact even if `weight()` of a value
    /// with interior mutability were to change later.
    charge: usize,
    prev: usize,
    next: usize,
}

/// A live cache entry.
struct Node<V> {
    link: Link,
    value: V,
}

/// One slab slot. `Free` fits in the niche of `Link::key`'s pointer, so a slot is exactly as
/// large as a node (checked in the tests).
enum Slot<V> {
    Live(Node<V>),
    Free { next_free: usize },
}

/// Slab bytes per entry beyond the value: the node's key pointer, charge and links, plus
/// at most 7 bytes of padding to place a value aligned to at most 8. `LruCache::new` refuses, at
/// compile time, any `V` for which `size_of::<Slot<V>>()` would exceed `size_of::<V>()` plus this.
const SLOT_OVERHEAD: usize = size_of::<Link>() + 7;

/// Map bytes per entry: hashbrown stores `(Box<str>, usize)` plus one control byte per bucket
/// and keeps at most 7/8 of its buckets full, so each entry costs at least 8/7 of a bucket.
const MAP_OVERHEAD: usize = ((size_of::<(Box<str>, usize)>() + 1) * 8).div_ceil(7);

/// Bytes charged per entry for bookkeeping, on top of its key bytes (stored twice, so counted
/// twice) and `value.weight()`: one slab slot without the value, plus one hash-map bucket.
///
/// Derived from `size_of` of the real types (40 + 7 + 29 = 76 on 64-bit hosts, 20 + 7 + 15 = 42
/// on wasm32). Not included: allocator headers of the two key boxes, and the spare capacity of
/// the slab and map after growth (they never shrink, so that slack is bounded by the peak
/// number of entries, which the byte bound itself limits).
pub const ENTRY_OVERHEAD: usize = SLOT_OVERHEAD + MAP_OVERHEAD;

/// What `insert` did with the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored as most recently used, after evicting `evicted` least recently used entries.
    Inserted {
        /// Entries evicted to make room.
        evicted: usize,
    },
    /// Not stored: the entry alone is larger than `max_bytes`; nothing was evicted.
    Rejected,
}

/// A snapshot of the cache's size and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LruStats {
    /// Entries held.
    pub entries: usize,
    /// Bytes charged for the entries held.
    pub bytes: usize,
    /// The byte bound.
    pub max_bytes: usize,
    /// Least recently used entries removed by `insert` to make room.
    pub evictions: u64,
    /// Inserts refused because the entry alone exceeded `max_bytes`.
    pub rejections: u64,
}

/// Per-isolate LRU cache bounded in bytes.
pub struct LruCache<V> {
    map: HashMap<Box<str>, usize>,
    slots: Vec<Slot<V>>,
    free_head: usize,
    /// Most recently used.
    head: usize,
    /// Least recently used: the next to evict.
    tail: usize,
    bytes: usize,
    max_bytes: usize,
    evictions: u64,
    rejections: u64,
}

/// Bytes charged for an entry; saturates so an absurd weight is rejected rather than wrapping.
fn charge_of<V: Weigh>(key: &str, value: &V) -> usize {
    key.len()
        .saturating_mul(2)
        .saturating_add(value.weight())
        .saturating_add(ENTRY_OVERHEAD)
}

impl<V: Weigh> LruCache<V> {
    /// An empty cache that will hold at most `max_bytes` charged bytes.
    pub fn new(max_bytes: usize) -> Self {
        const {
            assert!(
                size_of::<Slot<V>>() <= size_of::<V>() + SLOT_OVERHEAD,
                "LruCache: values aligned to more than 8 bytes are not covered by ENTRY_OVERHEAD"
            );
        }
        Self {
            map: HashMap::new(),
            slots: Vec::new(),
            free_head: NIL,
            head: NIL,
            tail: NIL,
            bytes: 0,
            max_bytes,
            evictions: 0,
            rejections: 0,
        }
    }

    /// The value for `key`, marking it most recently used.
    pub fn get(&mut self, key: &str) -> Option<&V> {
        let idx = *self.map.get(key)?;
        self.unlink(idx);
        self.push_front(idx);
        Some(&self.node(idx).value)
    }

    /// Stores `value` as most recently used, evicting from the LRU end until it fits.
    ///
    /// Any previous value for `key` is dropped whatever the outcome, so after an insert `key`
    /// maps to the new value or to nothing, never to an older one.
    pub fn insert(&mut self, key: &str, value: V) -> InsertOutcome {
        if let Some(&idx) = self.map.get(key) {
            self.remove_at(idx);
        }
        let charge = charge_of(key, &value);
        if charge > self.max_bytes {
            self.rejections += 1;
            return InsertOutcome::Rejected;
        }
        let evicted = self.evict_down_to(self.max_bytes - charge);
        let node = Node {
            link: Link {
                key: key.into(),
                charge,
                prev: NIL,
                next: NIL,
            },
            value,
        };
        let idx = self.alloc(node);
        self.map.insert(key.into(), idx);
        self.push_front(idx);
        self.bytes += charge;
        InsertOutcome::Inserted { evicted }
    }

    /// Current size and counters.
    pub fn stats(&self) -> LruStats {
        LruStats {
            entries: self.map.len(),
            bytes: self.bytes,
            max_bytes: self.max_bytes,
            evictions: self.evictions,
            rejections: self.rejections,
        }
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Evicts from the LRU end until at most `limit` bytes are charged; returns how many.
    fn evict_down_to(&mut self, limit: usize) -> usize {
        let mut evicted = 0;
        while self.bytes > limit {
            // bytes > 0 implies at least one entry, so the tail is a live node.
            self.remove_at(self.tail);
            self.evictions += 1;
            evicted += 1;
        }
        evicted
    }

    /// Places `node` in a free slot (or a new one) and returns its index.
    fn alloc(&mut self, node: Node<V>) -> usize {
        if self.free_head == NIL {
            self.slots.push(Slot::Live(node));
            return self.slots.len() - 1;
        }
        let idx = self.free_head;
        match std::mem::replace(&mut self.slots[idx], Slot::Live(node)) {
            Slot::Free { next_free } => self.free_head = next_free,
            Slot::Live(_) => unreachable!("free list points at a live slot"),
        }
        idx
    }

    /// Unlinks, unmaps and frees the live node at `idx`, dropping its value.
    fn remove_at(&mut self, idx: usize) {
        self.unlink(idx);
        let freed = Slot::Free {
            next_free: self.free_head,
        };
        let Slot::Live(node) = std::mem::replace(&mut self.slots[idx], freed) else {
            unreachable!("removing a free slot");
        };
        self.free_head = idx;
        self.map.remove(&node.link.key);
        self.bytes -= node.link.charge;
    }

    /// Detaches the node at `idx` from the recency list.
    fn unlink(&mut self, idx: usize) {
        let (prev, next) = {
            let link = &self.node(idx).link;
            (link.prev, link.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.node_mut(p).link.next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.node_mut(n).link.prev = prev,
        }
    }

    /// Attaches the detached node at `idx` as most recently used.
    fn push_front(&mut self, idx: usize) {
        let old_head = self.head;
        {
            let link = &mut self.node_mut(idx).link;
            link.prev = NIL;
            link.next = old_head;
        }
        match old_head {
            NIL => self.tail = idx,
            h => self.node_mut(h).link.prev = idx,
        }
        self.head = idx;
    }

    fn node(&self, idx: usize) -> &Node<V> {
        match &self.slots[idx] {
            Slot::Live(node) => node,
            Slot::Free { .. } => unreachable!("index {idx} is a free slot"),
        }
    }

    fn node_mut(&mut self, idx: usize) -> &mut Node<V> {
        match &mut self.slots[idx] {
            Slot::Live(node) => node,
            Slot::Free { .. } => unreachable!("index {idx} is a free slot"),
        }
    }

    /// Entries from most to least recently used, without touching recency.
    #[cfg(test)]
    fn entries_by_recency(&self) -> Vec<(&str, &V)> {
        let mut entries = Vec::with_capacity(self.len());
        let mut idx = self.head;
        while idx != NIL {
            let node = self.node(idx);
            entries.push((&*node.link.key, &node.value));
            idx = node.link.next;
        }
        entries
    }

    /// Keys from most to least recently used.
    #[cfg(test)]
    fn keys_by_recency(&self) -> Vec<&str> {
        self.entries_by_recency()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// Panics unless the list, map, free list and byte count agree with each other.
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut seen = 0;
        let mut bytes = 0;
        let mut prev = NIL;
        let mut idx = self.head;
        while idx != NIL {
            let node = self.node(idx);
            assert_eq!(node.link.prev, prev, "back link of {idx}");
            assert_eq!(
                self.map.get(&node.link.key),
                Some(&idx),
                "map entry of {idx}"
            );
            assert_eq!(node.link.charge, charge_of(&node.link.key, &node.value));
            bytes += node.link.charge;
            seen += 1;
            prev = idx;
            idx = node.link.next;
        }
        assert_eq!(self.tail, prev, "tail");
        assert_eq!(seen, self.map.len(), "list length vs map");
        assert_eq!(bytes, self.bytes, "bytes equal the sum of charges");
        assert!(self.bytes <= self.max_bytes, "bytes within bound");
        let mut free = 0;
        let mut f = self.free_head;
        while f != NIL {
            match self.slots[f] {
                Slot::Free { next_free } => f = next_free,
                Slot::Live(_) => panic!("free list reaches live slot {f}"),
            }
            free += 1;
        }
        assert_eq!(free + seen, self.slots.len(), "every slot is live or free");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A value with a chosen weight, so tests control charges without allocating.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Blob {
        id: u32,
        weight: usize,
    }

    impl Weigh for Blob {
        fn weight(&self) -> usize {
            self.weight
        }
    }

    fn blob(id: u32, weight: usize) -> Blob {
        Blob { id, weight }
    }

    /// Charge of a `Blob` entry as the tests compute it independently.
    fn charge(key: &str, weight: usize) -> usize {
        2 * key.len() + weight + ENTRY_OVERHEAD
    }

    #[test]
    fn slot_is_no_larger_than_node_and_overhead_covers_it() {
        fn check<V>() {
            assert_eq!(size_of::<Slot<V>>(), size_of::<Node<V>>());
            assert!(size_of::<Slot<V>>() <= size_of::<V>() + SLOT_OVERHEAD);
        }
        check::<()>();
        check::<u8>();
        check::<[u8; 3]>();
        check::<u64>();
        check::<Vec<u8>>();
        check::<String>();
        check::<Blob>();
        check::<(Vec<u8>, u16, Box<str>)>();
    }

    #[test]
    fn get_returns_values_and_misses() {
        let mut c = LruCache::new(10_000);
        assert_eq!(c.len(), 0);
        c.insert("a", blob(1, 10));
        assert_eq!(c.get("a"), Some(&blob(1, 10)));
        assert_eq!(c.get("b"), None);
        assert_eq!(c.len(), 1);
        c.check_invariants();
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let w = 100;
        let mut c = LruCache::new(3 * charge("a", w));
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            assert_eq!(
                c.insert(k, blob(i as u32, w)),
                InsertOutcome::Inserted { evicted: 0 }
            );
        }
        assert_eq!(c.keys_by_recency(), ["c", "b", "a"]);
        // Reading "a" makes "b" the LRU entry.
        c.get("a");
        assert_eq!(c.keys_by_recency(), ["a", "c", "b"]);
        assert_eq!(
            c.insert("d", blob(3, w)),
            InsertOutcome::Inserted { evicted: 1 }
        );
        assert_eq!(c.keys_by_recency(), ["d", "a", "c"]);
        assert_eq!(c.stats().evictions, 1);
        // A bigger entry evicts as many as it needs.
        assert_eq!(
            c.insert("e", blob(4, 2 * w + charge("a", 0))),
            InsertOutcome::Inserted { evicted: 2 }
        );
        assert_eq!(c.keys_by_recency(), ["e", "d"]);
        c.check_invariants();
    }

    #[test]
    fn insert_replaces_and_recharges() {
        let mut c = LruCache::new(10_000);
        c.insert("a", blob(1, 100));
        c.insert("b", blob(2, 100));
        assert_eq!(
            c.insert("a", blob(3, 500)),
            InsertOutcome::Inserted { evicted: 0 }
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a"), Some(&blob(3, 500)));
        assert_eq!(c.stats().bytes, charge("a", 500) + charge("b", 100));
        assert_eq!(c.stats().evictions, 0, "replacing is not evicting");
        c.check_invariants();
    }

    #[test]
    fn oversized_entry_is_rejected_without_evicting() {
        let max = 3 * charge("a", 10);
        let mut c = LruCache::new(max);
        c.insert("a", blob(1, 10));
        c.insert("b", blob(2, 10));
        let too_big = max - charge("c", 0) + 1;
        assert_eq!(c.insert("c", blob(3, too_big)), InsertOutcome::Rejected);
        assert_eq!(c.keys_by_recency(), ["b", "a"]);
        assert_eq!(c.stats().rejections, 1);
        assert_eq!(c.stats().evictions, 0);
        // Exactly max_bytes fits (after evicting everything else).
        assert_eq!(
            c.insert("c", blob(3, too_big - 1)),
            InsertOutcome::Inserted { evicted: 2 }
        );
        assert_eq!(c.stats().bytes, max);
        // A rejected replacement still drops the superseded value.
        assert_eq!(c.insert("c", blob(4, usize::MAX)), InsertOutcome::Rejected);
        assert_eq!(c.len(), 0);
        c.check_invariants();
    }

    #[test]
    fn slots_are_reused() {
        let mut c = LruCache::new(2 * charge("k0000", 0));
        for i in 0..1_000u32 {
            c.insert(&format!("k{i:04}"), blob(i, 0));
        }
        assert_eq!(c.slots.len(), 2);
        c.check_invariants();
    }

    #[test]
    fn flood_of_distinct_keys_never_exceeds_the_bound() {
        const MAX: usize = 1 << 20;
        let mut c = LruCache::new(MAX);
        for i in 0..100_000u64 {
            // Bodies from 0 to ~12 KB, so the entry count keeps changing.
            let body = vec![0u8; ((i * 7919) % 12_000) as usize];
            c.insert(&format!("https://api.example.com/v1/users/{i}"), body);
            assert!(c.stats().bytes <= MAX);
        }
        let stats = c.stats();
        assert!(stats.entries > 100, "cache still holds a working set");
        assert_eq!(stats.evictions as usize + stats.entries, 100_000);
        c.check_invariants();
    }

    #[test]
    fn bytes_per_entry_for_typical_responses() {
        let mut c = LruCache::new(usize::MAX);
        let key = "GET api.example.com/v1/users?limit=10&offset=20&order=name&x=y";
        assert_eq!(key.len(), 62);
        for body_len in [1_024, 2_048, 4_096, 10_240] {
            let body = vec![0u8; body_len];
            c.insert(key, body);
            let charged = c.stats().bytes;
            let ratio = charged as f64 / body_len as f64;
            println!(
                "L1 body {body_len:>6} B, key {} B: charged {charged} B, ratio {ratio:.3}, \
                 overhead {} B (ENTRY_OVERHEAD {ENTRY_OVERHEAD})",
                key.len(),
                charged - body_len
            );
            assert!(
                charged * 5 <= body_len * 6 + 256 * 5,
                "within 1.2 x body + 256 B"
            );
        }
    }

    /// The reference model: entries in recency order (index 0 = most recently used).
    #[derive(Debug)]
    struct Model {
        entries: Vec<(String, Blob)>,
        stats: LruStats,
    }

    impl Model {
        fn position(&self, key: &str) -> Option<usize> {
            self.entries.iter().position(|(k, _)| k == key)
        }

        fn bytes(&self) -> usize {
            self.entries.iter().map(|(k, v)| charge(k, v.weight)).sum()
        }

        fn get(&mut self, key: &str) -> Option<Blob> {
            let entry = self.entries.remove(self.position(key)?);
            let value = entry.1.clone();
            self.entries.insert(0, entry);
            Some(value)
        }

        fn insert(&mut self, key: &str, value: Blob) -> InsertOutcome {
            if let Some(i) = self.position(key) {
                self.entries.remove(i);
            }
            let c = charge(key, value.weight);
            if c > self.stats.max_bytes {
                self.stats.rejections += 1;
                return InsertOutcome::Rejected;
            }
            let mut evicted = 0;
            while self.bytes() + c > self.stats.max_bytes {
                self.entries.pop();
                evicted += 1;
            }
            self.stats.evictions += evicted as u64;
            self.entries.insert(0, (key.to_owned(), value));
            InsertOutcome::Inserted { evicted }
        }

        fn snapshot(&self) -> LruStats {
            LruStats {
                entries: self.entries.len(),
                bytes: self.bytes(),
                ..self.stats
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Get(usize),
        Insert { key: usize, weight: usize },
    }

    /// Keys of different lengths, few enough that operations collide often.
    fn key(i: usize) -> String {
        format!("k{i}{}", "/x".repeat(i * 5))
    }

    const KEYS: usize = 10;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..KEYS).prop_map(Op::Get),
            5 => (0..KEYS, 0..1_500usize).prop_map(|(key, weight)| Op::Insert { key, weight }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// After every operation: the same return value, the same entries (keys and values) in
        /// the same recency order, the same stats (so `bytes <= max_bytes` too, checked again by
        /// `check_invariants`).
        #[test]
        fn behaves_like_the_model(
            max in 0..8_000usize,
            ops in prop::collection::vec(op(), 1..150),
        ) {
            let mut cache = LruCache::new(max);
            let mut model = Model {
                entries: Vec::new(),
                stats: LruStats { max_bytes: max, ..LruStats::default() },
            };
            let mut next_id = 0u32;
            for op in ops {
                match op {
                    Op::Get(k) => {
                        let k = key(k);
                        prop_assert_eq!(cache.get(&k).cloned(), model.get(&k));
                    }
                    Op::Insert { key: k, weight } => {
                        let k = key(k);
                        next_id += 1;
                        let v = blob(next_id, weight);
                        prop_assert_eq!(cache.insert(&k, v.clone()), model.insert(&k, v));
                    }
                }
                let model_entries: Vec<(&str, &Blob)> =
                    model.entries.iter().map(|(k, v)| (k.as_str(), v)).collect();
                prop_assert_eq!(cache.entries_by_recency(), model_entries);
                prop_assert_eq!(cache.stats(), model.snapshot());
                prop_assert!(cache.stats().bytes <= max);
                cache.check_invariants();
            }
        }
    }
}
