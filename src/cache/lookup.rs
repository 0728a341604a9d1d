//! The lookup order L1 → L2, written once over a small tier trait so it is tested natively
//! with in-memory tiers.

use edgecache_core::entry::{CachedEntry, SharedEntry};
use edgecache_core::outcome::Outcome;

/// One cache tier.
#[allow(async_fn_in_trait)] // single-threaded runtime: no Send bound wanted
pub trait Tier {
    /// The outcome a hit in this tier reports.
    fn outcome(&self) -> Outcome;
    /// The stored copy of `key`, fresh or not.
    async fn get(&self, key: &str) -> Option<SharedEntry>;
    /// Stores a copy.
    async fn put(&self, entry: &SharedEntry);
}

/// What the tiers hold for a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// A copy that may be served.
    Fresh(SharedEntry, Outcome),
    /// Only copies that may not be served as fresh; the newest is kept for stale-if-error.
    Stale(SharedEntry),
    /// Nothing.
    Miss,
}

/// Looks in L1, then L2; a fresh L2 copy is promoted into L1.
pub async fn lookup<A: Tier, B: Tier>(
    l1: &A,
    l2: &B,
    key: &str,
    is_fresh: impl Fn(&CachedEntry) -> bool,
) -> Lookup {
    let mut stale: Option<SharedEntry> = None;
    if let Some(e) = l1.get(key).await {
        if is_fresh(&e) {
            return Lookup::Fresh(e, l1.outcome());
        }
        stale = Some(e);
    }
    if let Some(e) = l2.get(key).await {
        if is_fresh(&e) {
            l1.put(&e).await;
            return Lookup::Fresh(e, l2.outcome());
        }
        if stale
            .as_ref()
            .is_none_or(|s| s.filled_at_ms < e.filled_at_ms)
        {
            stale = Some(e);
        }
    }
    stale.map_or(Lookup::Miss, Lookup::Stale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};

    struct Memory(Outcome, RefCell<HashMap<String, SharedEntry>>);

    impl Tier for Memory {
        fn outcome(&self) -> Outcome {
            self.0
        }
        async fn get(&self, key: &str) -> Option<SharedEntry> {
            self.1.borrow().get(key).cloned()
        }
        async fn put(&self, entry: &SharedEntry) {
            self.1.borrow_mut().insert(entry.key.clone(), entry.clone());
        }
    }

    fn entry(key: &str, filled: u64) -> SharedEntry {
        std::rc::Rc::new(CachedEntry::new(
            key.into(),
            b"{}".to_vec(),
            BTreeMap::new(),
            filled,
            60,
        ))
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures_util::FutureExt::now_or_never(f).expect("in-memory tiers never wait")
    }

    #[test]
    fn l1_first_then_l2_with_promotion() {
        let l1 = Memory(Outcome::HitL1, RefCell::default());
        let l2 = Memory(Outcome::HitL2, RefCell::default());
        assert_eq!(block_on(lookup(&l1, &l2, "k", |_| true)), Lookup::Miss);
        block_on(l2.put(&entry("k", 1)));
        assert!(matches!(
            block_on(lookup(&l1, &l2, "k", |_| true)),
            Lookup::Fresh(_, Outcome::HitL2)
        ));
        assert!(matches!(
            block_on(lookup(&l1, &l2, "k", |_| true)),
            Lookup::Fresh(_, Outcome::HitL1)
        ));
    }

    #[test]
    fn stale_copies_are_never_fresh_and_the_newest_is_kept() {
        let l1 = Memory(Outcome::HitL1, RefCell::default());
        let l2 = Memory(Outcome::HitL2, RefCell::default());
        block_on(l1.put(&entry("k", 1)));
        block_on(l2.put(&entry("k", 2)));
        match block_on(lookup(&l1, &l2, "k", |_| false)) {
            Lookup::Stale(e) => assert_eq!(e.filled_at_ms, 2),
            other => panic!("{other:?}"),
        }
        // A stale L2 copy is not promoted.
        let l1 = Memory(Outcome::HitL1, RefCell::default());
        block_on(lookup(&l1, &l2, "k", |_| false));
        assert!(l1.1.borrow().is_empty());
    }

    #[test]
    fn fresh_l2_behind_stale_l1_is_served_and_replaces_it() {
        let l1 = Memory(Outcome::HitL1, RefCell::default());
        let l2 = Memory(Outcome::HitL2, RefCell::default());
        block_on(l1.put(&entry("k", 1)));
        block_on(l2.put(&entry("k", 5)));
        let fresh = |e: &CachedEntry| e.filled_at_ms >= 5;
        assert!(matches!(
            block_on(lookup(&l1, &l2, "k", fresh)),
            Lookup::Fresh(_, Outcome::HitL2)
        ));
        assert_eq!(l1.1.borrow()["k"].filled_at_ms, 5);
    }
}
