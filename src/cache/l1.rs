//! L1: the per-isolate, byte-bounded LRU cache with TTL expiry.
//!
//! An isolate has 128 MB in all and wasm linear memory never shrinks, so the bound is in bytes,
//! not entries: every entry is charged for its key, its value and its bookkeeping
//! ([`ENTRY_OVERHEAD`]), and `stats().bytes <= max_bytes` holds after every call.
//!
//! Layout: a `HashMap` from key to an index into a slab of nodes; the nodes form an intrusive
//! doubly-linked recency list by index (head = most recently used), and freed slots form a
//! free list threaded through the same slab. Every operation is O(1) apart from `retain` and
//! shrinking `set_max_bytes`, which are linear in the entries they visit.
//!
//! Time is injected (`now_ms`) and never read here, so the module runs the same on the host
//! and in wasm, and tests control expiry exactly. An entry is live while `now_ms < expires_at_ms`.

use std::collections::HashMap;
use std::mem::size_of;

/// How many bytes a value occupies: its inline size plus everything it owns on the heap.
pub trait Weigh {
    /// Inline plus heap bytes of this value.
    fn weight(&self) -> usize;
}

impl Weigh for Vec<u8> {
    fn weight(&self) -> usize {
        // Capacity, not length: the allocation is what the isolate pays for.
        size_of::<Self>() + self.capacity()
    }
}

impl Weigh for String {
    fn weight(&self) -> usize {
        size_of::<Self>() + self.capacity()
    }
}

/// Index meaning "no node" in the recency and free lists.
const NIL: usize = usize::MAX;

/// Everything a slab node holds besides the value.
struct Link {
    /// Second copy of the key (the map owns the first): eviction starts from the list tail and
    /// must find the map entry to remove.
    key: Box<str>,
    expires_at_ms: u64,
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

/// Slab bytes per entry beyond the value: the node's key pointer, expiry, charge and links, plus
/// at most 7 bytes of padding to place a value aligned to at most 8. `L1Cache::new` refuses, at
/// compile time, any `V` for which `size_of::<Slot<V>>()` would exceed `size_of::<V>()` plus this.
const SLOT_OVERHEAD: usize = size_of::<Link>() + 7;

/// Map bytes per entry: hashbrown stores `(Box<str>, usize)` plus one control byte per bucket
/// and keeps at most 7/8 of its buckets full, so each entry costs at least 8/7 of a bucket.
const MAP_OVERHEAD: usize = ((size_of::<(Box<str>, usize)>() + 1) * 8).div_ceil(7);

/// Bytes charged per entry for bookkeeping, on top of its key bytes (stored twice, so counted
/// twice) and `value.weight()`: one slab slot without the value, plus one hash-map bucket.
///
/// Derived from `size_of` of the real types (48 + 7 + 29 = 84 on 64-bit hosts, 32 + 7 + 15 = 54
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
    /// Not stored: `expires_at_ms <= now_ms`, so it could never be served.
    AlreadyExpired,
}

/// A snapshot of the cache's size and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L1Stats {
    /// Entries held, expired ones not yet removed included.
    pub entries: usize,
    /// Bytes charged for the entries held.
    pub bytes: usize,
    /// The byte bound.
    pub max_bytes: usize,
    /// Entries removed to make room (by `insert` or a shrinking `set_max_bytes`).
    pub evictions: u64,
    /// Expired entries removed when `get` found them.
    pub expirations: u64,
    /// Inserts refused because the entry alone exceeded `max_bytes`.
    pub rejections: u64,
}

/// Per-isolate LRU cache bounded in bytes, with per-entry expiry times.
pub struct L1Cache<V> {
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
    expirations: u64,
    rejections: u64,
}

/// Bytes charged for an entry; saturates so an absurd weight is rejected rather than wrapping.
fn charge_of<V: Weigh>(key: &str, value: &V) -> usize {
    key.len()
        .saturating_mul(2)
        .saturating_add(value.weight())
        .saturating_add(ENTRY_OVERHEAD)
}

impl<V: Weigh> L1Cache<V> {
    /// An empty cache that will hold at most `max_bytes` charged bytes.
    pub fn new(max_bytes: usize) -> Self {
        const {
            assert!(
                size_of::<Slot<V>>() <= size_of::<V>() + SLOT_OVERHEAD,
                "L1Cache: values aligned to more than 8 bytes are not covered by ENTRY_OVERHEAD"
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
            expirations: 0,
            rejections: 0,
        }
    }

    /// The live value for `key`, marking it most recently used; an expired entry is removed.
    pub fn get(&mut self, key: &str, now_ms: u64) -> Option<&V> {
        let idx = *self.map.get(key)?;
        if self.node(idx).link.expires_at_ms <= now_ms {
            self.remove_at(idx);
            self.expirations += 1;
            return None;
        }
        self.unlink(idx);
        self.push_front(idx);
        Some(&self.node(idx).value)
    }

    /// The live value for `key` without touching recency or removing anything.
    pub fn peek(&self, key: &str, now_ms: u64) -> Option<&V> {
        let node = self.node(*self.map.get(key)?);
        (now_ms < node.link.expires_at_ms).then_some(&node.value)
    }

    /// Stores `value` as most recently used, evicting from the LRU end until it fits.
    ///
    /// Any previous value for `key` is dropped whatever the outcome, so after an insert `key`
    /// maps to the new value or to nothing, never to an older one.
    pub fn insert(
        &mut self,
        key: &str,
        value: V,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> InsertOutcome {
        if let Some(&idx) = self.map.get(key) {
            self.remove_at(idx);
        }
        if expires_at_ms <= now_ms {
            return InsertOutcome::AlreadyExpired;
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
                expires_at_ms,
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

    /// Removes `key` and returns its value, expired or not.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let idx = *self.map.get(key)?;
        Some(self.remove_at(idx))
    }

    /// Drops every entry for which `f` returns false, visiting from most to least recently
    /// used; returns how many were dropped. Expired entries are visited too.
    pub fn retain(&mut self, mut f: impl FnMut(&str, &V) -> bool) -> usize {
        let mut dropped = 0;
        let mut idx = self.head;
        while idx != NIL {
            let node = self.node(idx);
            let next = node.link.next;
            if !f(&node.link.key, &node.value) {
                self.remove_at(idx);
                dropped += 1;
            }
            idx = next;
        }
        dropped
    }

    /// Changes the byte bound; shrinking evicts least recently used entries at once.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
        self.evict_down_to(max_bytes);
    }

    /// Current size and counters.
    pub fn stats(&self) -> L1Stats {
        L1Stats {
            entries: self.map.len(),
            bytes: self.bytes,
            max_bytes: self.max_bytes,
            evictions: self.evictions,
            expirations: self.expirations,
            rejections: self.rejections,
        }
    }

    /// Number of entries held, expired ones not yet removed included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
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

    /// Unlinks, unmaps and frees the live node at `idx`, returning its value.
    fn remove_at(&mut self, idx: usize) -> V {
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
        node.value
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

    /// Keys from most to least recently used.
    #[cfg(test)]
    fn keys_by_recency(&self) -> Vec<&str> {
        let mut keys = Vec::with_capacity(self.len());
        let mut idx = self.head;
        while idx != NIL {
            let link = &self.node(idx).link;
            keys.push(&*link.key);
            idx = link.next;
        }
        keys
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

    const FOREVER: u64 = u64::MAX;

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
        let mut c = L1Cache::new(10_000);
        assert!(c.is_empty());
        c.insert("a", blob(1, 10), FOREVER, 0);
        assert_eq!(c.get("a", 0), Some(&blob(1, 10)));
        assert_eq!(c.get("b", 0), None);
        assert_eq!(c.len(), 1);
        c.check_invariants();
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let w = 100;
        let mut c = L1Cache::new(3 * charge("a", w));
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            assert_eq!(
                c.insert(k, blob(i as u32, w), FOREVER, 0),
                InsertOutcome::Inserted { evicted: 0 }
            );
        }
        assert_eq!(c.keys_by_recency(), ["c", "b", "a"]);
        // Reading "a" makes "b" the LRU entry.
        c.get("a", 0);
        assert_eq!(c.keys_by_recency(), ["a", "c", "b"]);
        assert_eq!(
            c.insert("d", blob(3, w), FOREVER, 0),
            InsertOutcome::Inserted { evicted: 1 }
        );
        assert_eq!(c.keys_by_recency(), ["d", "a", "c"]);
        assert_eq!(c.stats().evictions, 1);
        // A bigger entry evicts as many as it needs.
        assert_eq!(
            c.insert("e", blob(4, 2 * w + charge("a", 0)), FOREVER, 0),
            InsertOutcome::Inserted { evicted: 2 }
        );
        assert_eq!(c.keys_by_recency(), ["e", "d"]);
        c.check_invariants();
    }

    #[test]
    fn peek_does_not_change_recency() {
        let mut c = L1Cache::new(2 * charge("a", 0));
        c.insert("a", blob(1, 0), FOREVER, 0);
        c.insert("b", blob(2, 0), FOREVER, 0);
        assert_eq!(c.peek("a", 0), Some(&blob(1, 0)));
        assert_eq!(c.keys_by_recency(), ["b", "a"]);
        c.insert("c", blob(3, 0), FOREVER, 0);
        assert_eq!(c.peek("a", 0), None, "a was still LRU and got evicted");
    }

    #[test]
    fn insert_replaces_and_recharges() {
        let mut c = L1Cache::new(10_000);
        c.insert("a", blob(1, 100), FOREVER, 0);
        c.insert("b", blob(2, 100), FOREVER, 0);
        assert_eq!(
            c.insert("a", blob(3, 500), FOREVER, 0),
            InsertOutcome::Inserted { evicted: 0 }
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a", 0), Some(&blob(3, 500)));
        assert_eq!(c.stats().bytes, charge("a", 500) + charge("b", 100));
        assert_eq!(c.stats().evictions, 0, "replacing is not evicting");
        c.check_invariants();
    }

    #[test]
    fn entries_expire_at_their_deadline() {
        let mut c = L1Cache::new(10_000);
        c.insert("a", blob(1, 0), 1_000, 0);
        assert!(c.get("a", 999).is_some());
        assert!(c.peek("a", 999).is_some());
        assert_eq!(c.peek("a", 1_000), None);
        assert_eq!(c.len(), 1, "peek never removes");
        assert_eq!(c.get("a", 1_000), None);
        assert_eq!(c.len(), 0);
        assert_eq!(c.stats().bytes, 0);
        assert_eq!(c.stats().expirations, 1);
        c.check_invariants();
    }

    #[test]
    fn already_expired_insert_is_not_stored_and_drops_the_old_value() {
        let mut c = L1Cache::new(10_000);
        c.insert("a", blob(1, 0), 5_000, 0);
        assert_eq!(
            c.insert("a", blob(2, 0), 100, 100),
            InsertOutcome::AlreadyExpired
        );
        assert_eq!(c.get("a", 100), None);
        assert_eq!(
            c.stats(),
            L1Stats {
                max_bytes: 10_000,
                ..L1Stats::default()
            }
        );
    }

    #[test]
    fn oversized_entry_is_rejected_without_evicting() {
        let max = 3 * charge("a", 10);
        let mut c = L1Cache::new(max);
        c.insert("a", blob(1, 10), FOREVER, 0);
        c.insert("b", blob(2, 10), FOREVER, 0);
        let too_big = max - charge("c", 0) + 1;
        assert_eq!(
            c.insert("c", blob(3, too_big), FOREVER, 0),
            InsertOutcome::Rejected
        );
        assert_eq!(c.keys_by_recency(), ["b", "a"]);
        assert_eq!(c.stats().rejections, 1);
        assert_eq!(c.stats().evictions, 0);
        // Exactly max_bytes fits (after evicting everything else).
        assert_eq!(
            c.insert("c", blob(3, too_big - 1), FOREVER, 0),
            InsertOutcome::Inserted { evicted: 2 }
        );
        assert_eq!(c.stats().bytes, max);
        // A rejected replacement still drops the superseded value.
        assert_eq!(
            c.insert("c", blob(4, usize::MAX), FOREVER, 0),
            InsertOutcome::Rejected
        );
        assert!(c.is_empty());
        c.check_invariants();
    }

    #[test]
    fn remove_returns_the_value_even_if_expired() {
        let mut c = L1Cache::new(10_000);
        c.insert("a", blob(1, 0), 10, 0);
        c.insert("b", blob(2, 0), FOREVER, 0);
        assert_eq!(c.remove("a"), Some(blob(1, 0)));
        assert_eq!(c.remove("a"), None);
        assert_eq!(c.keys_by_recency(), ["b"]);
        c.check_invariants();
    }

    #[test]
    fn retain_drops_rejected_entries_in_recency_order() {
        let mut c = L1Cache::new(100_000);
        for i in 0..10u32 {
            c.insert(&format!("k{i}"), blob(i, 0), FOREVER, 0);
        }
        let mut visited = Vec::new();
        let dropped = c.retain(|k, v| {
            visited.push(k.to_owned());
            v.id % 3 != 0
        });
        assert_eq!(dropped, 4);
        let expected_visit: Vec<String> = (0..10).rev().map(|i| format!("k{i}")).collect();
        assert_eq!(visited, expected_visit);
        assert_eq!(c.keys_by_recency(), ["k8", "k7", "k5", "k4", "k2", "k1"]);
        assert_eq!(c.stats().evictions, 0);
        c.check_invariants();
    }

    #[test]
    fn shrinking_evicts_at_once_and_growing_does_not() {
        let mut c = L1Cache::new(10 * charge("k0", 0));
        for i in 0..10u32 {
            c.insert(&format!("k{i}"), blob(i, 0), FOREVER, 0);
        }
        c.set_max_bytes(3 * charge("k0", 0));
        assert_eq!(c.keys_by_recency(), ["k9", "k8", "k7"]);
        assert_eq!(c.stats().evictions, 7);
        c.set_max_bytes(usize::MAX);
        assert_eq!(c.len(), 3);
        c.set_max_bytes(0);
        assert!(c.is_empty());
        assert_eq!(
            c.insert("k", blob(0, 0), FOREVER, 0),
            InsertOutcome::Rejected
        );
        c.check_invariants();
    }

    #[test]
    fn slots_are_reused() {
        let mut c = L1Cache::new(2 * charge("k0000", 0));
        for i in 0..1_000u32 {
            c.insert(&format!("k{i:04}"), blob(i, 0), FOREVER, 0);
        }
        assert_eq!(c.slots.len(), 2);
        c.check_invariants();
    }

    #[test]
    fn flood_of_distinct_keys_never_exceeds_the_bound() {
        const MAX: usize = 1 << 20;
        let mut c = L1Cache::new(MAX);
        for i in 0..100_000u64 {
            // Bodies from 0 to ~12 KB, so the entry count keeps changing.
            let body = vec![0u8; ((i * 7919) % 12_000) as usize];
            c.insert(
                &format!("https://api.example.com/v1/users/{i}"),
                body,
                FOREVER,
                0,
            );
            assert!(c.stats().bytes <= MAX);
        }
        let stats = c.stats();
        assert!(stats.entries > 100, "cache still holds a working set");
        assert_eq!(stats.evictions as usize + stats.entries, 100_000);
        c.check_invariants();
    }

    #[test]
    fn bytes_per_entry_for_typical_responses() {
        let mut c = L1Cache::new(usize::MAX);
        let key = "GET api.example.com/v1/users?limit=10&offset=20&order=name&x=y";
        assert_eq!(key.len(), 62);
        for body_len in [1_024, 2_048, 4_096, 10_240] {
            let body = vec![0u8; body_len];
            c.insert(key, body, FOREVER, 0);
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
        entries: Vec<(String, Blob, u64)>,
        stats: L1Stats,
    }

    impl Model {
        fn position(&self, key: &str) -> Option<usize> {
            self.entries.iter().position(|(k, _, _)| k == key)
        }

        fn bytes(&self) -> usize {
            self.entries
                .iter()
                .map(|(k, v, _)| charge(k, v.weight))
                .sum()
        }

        fn evict_down_to(&mut self, limit: usize) -> usize {
            let mut evicted = 0;
            while self.bytes() > limit {
                self.entries.pop();
                evicted += 1;
            }
            self.stats.evictions += evicted as u64;
            evicted
        }

        fn get(&mut self, key: &str, now: u64) -> Option<Blob> {
            let i = self.position(key)?;
            let entry = self.entries.remove(i);
            if entry.2 <= now {
                self.stats.expirations += 1;
                return None;
            }
            let value = entry.1.clone();
            self.entries.insert(0, entry);
            Some(value)
        }

        fn peek(&self, key: &str, now: u64) -> Option<Blob> {
            let (_, v, exp) = &self.entries[self.position(key)?];
            (now < *exp).then(|| v.clone())
        }

        fn insert(&mut self, key: &str, value: Blob, exp: u64, now: u64) -> InsertOutcome {
            self.remove(key);
            if exp <= now {
                return InsertOutcome::AlreadyExpired;
            }
            let c = charge(key, value.weight);
            if c > self.stats.max_bytes {
                self.stats.rejections += 1;
                return InsertOutcome::Rejected;
            }
            let evicted = self.evict_down_to(self.stats.max_bytes - c);
            self.entries.insert(0, (key.to_owned(), value, exp));
            InsertOutcome::Inserted { evicted }
        }

        fn remove(&mut self, key: &str) -> Option<Blob> {
            let i = self.position(key)?;
            Some(self.entries.remove(i).1)
        }

        fn snapshot(&self) -> L1Stats {
            L1Stats {
                entries: self.entries.len(),
                bytes: self.bytes(),
                ..self.stats
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Get(usize),
        Peek(usize),
        Insert {
            key: usize,
            weight: usize,
            ttl: u64,
        },
        Remove(usize),
        /// Keep entries whose id is not a multiple of the modulus.
        Retain(u32),
        Advance(u64),
        SetMax(usize),
    }

    /// Keys of different lengths, few enough that operations collide often.
    fn key(i: usize) -> String {
        format!("k{i}{}", "/x".repeat(i * 5))
    }

    const KEYS: usize = 10;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..KEYS).prop_map(Op::Get),
            2 => (0..KEYS).prop_map(Op::Peek),
            6 => (0..KEYS, 0..1_500usize, 0..300u64)
                .prop_map(|(key, weight, ttl)| Op::Insert { key, weight, ttl }),
            1 => (0..KEYS).prop_map(Op::Remove),
            1 => (2..5u32).prop_map(Op::Retain),
            2 => (0..120u64).prop_map(Op::Advance),
            1 => (0..8_000usize).prop_map(Op::SetMax),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn behaves_like_the_model(
            max in 0..8_000usize,
            ops in prop::collection::vec(op(), 1..150),
        ) {
            let mut cache = L1Cache::new(max);
            let mut model = Model {
                entries: Vec::new(),
                stats: L1Stats { max_bytes: max, ..L1Stats::default() },
            };
            let mut now = 1_000u64;
            let mut next_id = 0u32;
            for op in ops {
                match op {
                    Op::Get(k) => {
                        let k = key(k);
                        prop_assert_eq!(cache.get(&k, now).cloned(), model.get(&k, now));
                    }
                    Op::Peek(k) => {
                        let k = key(k);
                        prop_assert_eq!(cache.peek(&k, now).cloned(), model.peek(&k, now));
                    }
                    Op::Insert { key: k, weight, ttl } => {
                        let k = key(k);
                        next_id += 1;
                        let v = blob(next_id, weight);
                        let exp = now + ttl;
                        prop_assert_eq!(
                            cache.insert(&k, v.clone(), exp, now),
                            model.insert(&k, v, exp, now)
                        );
                    }
                    Op::Remove(k) => {
                        let k = key(k);
                        prop_assert_eq!(cache.remove(&k), model.remove(&k));
                    }
                    Op::Retain(m) => {
                        let before = model.entries.len();
                        model.entries.retain(|(_, v, _)| v.id % m != 0);
                        let dropped = before - model.entries.len();
                        prop_assert_eq!(cache.retain(|_, v| v.id % m != 0), dropped);
                    }
                    Op::Advance(dt) => now += dt,
                    Op::SetMax(m) => {
                        model.stats.max_bytes = m;
                        model.evict_down_to(m);
                        cache.set_max_bytes(m);
                    }
                }
                let model_keys: Vec<&str> = model.entries.iter().map(|(k, _, _)| k.as_str()).collect();
                prop_assert_eq!(cache.keys_by_recency(), model_keys);
                prop_assert_eq!(cache.stats(), model.snapshot());
                for (k, v, exp) in &model.entries {
                    prop_assert_eq!(cache.peek(k, now), (now < *exp).then_some(v));
                }
                cache.check_invariants();
            }
        }
    }
}
