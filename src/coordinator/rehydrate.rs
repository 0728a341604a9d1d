//! The refill queue: invalidated keys whose routes ask for it are refilled from the origin by
//! the object's alarm, so the next read is a hit with fresh data. The queue is a SQLite table
//! and alarms are durable and retried on `Err`, so a refill survives the object's eviction.

use std::collections::BTreeMap;
use std::time::Duration;

use worker::Storage;

use super::answer_through::compare_refetch;
use super::graph::{Graph, RehydrateItem};
use super::object::{TableCoordinator, MAX_KNOWN_TENANTS};
use super::register::registration_is_fresh;
use super::store::{Store, StoreError};
use crate::cache::l2;
use crate::origin::{AnyOrigin, Origin};
use crate::runtime::platform::now_ms;
use edgecache_core::entry::CachedEntry;
use edgecache_core::extract::{list_window, ListWindow};
use edgecache_core::fill::{self, keeps_place, patched_page};
use edgecache_core::key::CacheKey;
use edgecache_core::origin::{read_target, OriginRead, ReadTarget};
use edgecache_core::planner::WriteImages;
use edgecache_core::protocol::{Dependent, OriginConfig, RefreshRequest, Registration};
use edgecache_core::query::ListQuery;
use edgecache_core::ratelimit::{Limit, RateLimiter, Verdict};
use edgecache_core::route;
use edgecache_core::rules::RoutePolicy;
use edgecache_core::schema::Relation;
use edgecache_core::shadow::body_digest;
use edgecache_core::shared_cache::{storable, OriginHeaders};
use edgecache_core::ApiError;

/// Keys refilled per alarm run.
const REHYDRATE_BATCH: usize = 16;
/// Refills in flight at once.
const REHYDRATE_CONCURRENCY: usize = 4;
/// Attempts before a refill is dropped (the next read simply misses).
const REHYDRATE_MAX_ATTEMPTS: u64 = 5;
/// How long the refill of a page a write may patch in place waits: the patch, made right after
/// the write's answer, normally lands first and takes it off the queue.
pub(super) const PATCH_GRACE_MS: u64 = 2_000;

/// A cached list page a write changed only where it shows the written row
/// ([`fill::keeps_place`]): its copy in this data centre's L2 can be patched with the after
/// image instead of refilled from the origin.
#[derive(Debug, Clone, PartialEq)]
pub struct PagePatch {
    key: CacheKey,
    /// Fill stamp of the registration the write was planned against: only that copy is
    /// patched.
    stamp: u64,
    query: ListQuery,
    /// The page as that copy holds it.
    window: ListWindow,
    ttl_secs: u64,
}

/// The patch of `key` (registered as `reg` when the write was planned) for a write with
/// `images`, if the write keeps the row's place in its list.
pub(super) fn page_patch(
    key: &CacheKey,
    reg: &Registration,
    images: &WriteImages,
) -> Option<PagePatch> {
    match &reg.dependent {
        Dependent::List { query, window }
            if key.variant().is_none() && keeps_place(query, images) =>
        {
            Some(PagePatch {
                key: key.clone(),
                stamp: reg.stamp,
                query: query.clone(),
                window: window.clone(),
                ttl_secs: reg.ttl_secs,
            })
        }
        _ => None,
    }
}

impl TableCoordinator {
    /// Sets the alarm for the next due refill or shadow check, if any.
    pub(super) async fn schedule_rehydrate<S: Store>(
        &self,
        graph: &Graph<S>,
    ) -> Result<(), ApiError> {
        let due = match (graph.next_rehydrate_due()?, graph.next_shadow_due()?) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(due) = due {
            let delay = due.saturating_sub(now_ms());
            self.state
                .storage()
                .set_alarm(Duration::from_millis(delay.max(1)))
                .await?;
        }
        Ok(())
    }

    /// `POST /refresh`: queues a refill of each key it tracks and can refill, now (a key
    /// already queued stays queued once), at most [`REHYDRATE_BATCH`] keys a call.
    pub(super) async fn refresh<S: Store>(
        &self,
        graph: &Graph<S>,
        req: RefreshRequest,
    ) -> Result<(), ApiError> {
        for key in req.keys.iter().take(REHYDRATE_BATCH) {
            if let Some(reg) = graph.registration(key)?.filter(|r| r.refills()) {
                graph.enqueue_rehydrate(key, reg.ttl_secs, now_ms())?;
            }
        }
        self.schedule_rehydrate(graph).await
    }

    /// The alarm: refills the due keys, a few at a time, and schedules the next run. An object
    /// that does not know its name has nothing to refill for.
    pub(super) async fn rehydrate(&self) -> Result<(), ApiError> {
        let graph = self.graph()?;
        self.learn_name(&graph, None)?;
        let Some(id) = self.id() else {
            return Ok(());
        };
        let table = id.table();
        let relation = self.relation(table).await?;
        // Shadow checks first: a fresh refetch of an invalidated key is its refill.
        self.shadow_checks(&relation).await?;
        let due = graph.due_rehydrates(now_ms(), REHYDRATE_BATCH)?;
        let due = self.within_budgets(&graph, due)?;
        for chunk in due.chunks(REHYDRATE_CONCURRENCY) {
            let results = futures_util::future::join_all(
                chunk
                    .iter()
                    .map(|item| self.refill(&relation, &item.key, item.ttl_secs as u64)),
            )
            .await;
            let outcomes: Vec<bool> = results.iter().map(Result::is_ok).collect();
            settle_refills(&self.graph()?, chunk, &outcomes, now_ms())?;
        }
        self.schedule_rehydrate(&graph).await
    }

    /// Draws one origin read from `tenant`'s refill budget (`EDGECACHE_REFILLS_PER_MIN`):
    /// refills and the before images of learned planning share it.
    pub(super) fn refill_budget_check(&self, tenant: &str, now: u64) -> Result<Verdict, ApiError> {
        let mut budget = self.refill_budget.borrow_mut();
        let budget = match &mut *budget {
            Some(budget) => budget,
            empty => {
                let per_min = u32::try_from(self.config()?.refills_per_min).unwrap_or(u32::MAX);
                empty.insert(RateLimiter::new(
                    Limit {
                        max: per_min,
                        window_ms: 60_000,
                    },
                    MAX_KNOWN_TENANTS, // past it, new tenants share one budget
                ))
            }
        };
        Ok(budget.check(tenant, now))
    }

    /// The due refills whose tenants are within their budget; the others wait (their attempts
    /// unspent) until their tenant's window allows again, so one tenant's flood of invalidated
    /// keys cannot hold up another tenant's refills or the origin.
    fn within_budgets<S: Store>(
        &self,
        graph: &Graph<S>,
        due: Vec<RehydrateItem>,
    ) -> Result<Vec<RehydrateItem>, ApiError> {
        let now = now_ms();
        let mut go = Vec::with_capacity(due.len());
        for item in due {
            let tenant = CacheKey::parse(&item.key)
                .map(|k| k.tenant().to_string())
                .unwrap_or_default();
            match self.refill_budget_check(&tenant, now)? {
                Verdict::Allowed => go.push(item),
                Verdict::Limited { retry_after_secs } => graph.retry_rehydrate(
                    &item.key,
                    item.attempts as u64,
                    now + retry_after_secs * 1000,
                )?,
            }
        }
        Ok(go)
    }

    /// Patches `patches` in place after the write's answer (a write at `seq` with `images`):
    /// each page's L2 copy, if it is the copy the write was planned against, gets the after
    /// image and is registered at `seq` and stored again; its queued refill is then dropped. A
    /// page that cannot be patched is refilled by its queued refill.
    pub(super) fn patch_later(
        &self,
        relation: &Relation,
        images: &WriteImages,
        seq: u64,
        patches: Vec<PagePatch>,
    ) {
        if patches.is_empty() {
            return;
        }
        let storage = self.state.storage();
        let patched = self.patched.clone();
        let (relation, images) = (relation.clone(), images.clone());
        self.state.wait_until(async move {
            for patch in &patches {
                if let Ok(true) = patch_page(&storage, &relation, &images, seq, patch).await {
                    patched.set(patched.get() + 1);
                }
            }
        });
    }

    /// Refills one key: purges this data centre's stale L2 copy, reads the key's origin
    /// (`read_fresh`) and keeps the copy unless a write overtook it (`keep_copy`).
    async fn refill(&self, relation: &Relation, key: &str, ttl_secs: u64) -> Result<(), ApiError> {
        let key = CacheKey::parse(key)?;
        let Some(target) = self.refetchable(relation, &key)? else {
            return Ok(());
        };
        l2::purge(&key).await;
        self.refills.set(self.refills.get() + 1);
        let fetched = self.read_fresh(relation, &key, target).await?;
        if self.crash_next_refill.replace(false) {
            panic!("test hook: coordinator crashed during a refill");
        }
        // A refill after a write is what checks the write's answer against the record's GET.
        compare_refetch(
            &self.graph()?,
            key.as_str(),
            fetched.stamp,
            fetched.digest().as_deref(),
            now_ms(),
        )?;
        self.keep_copy(relation, &key, fetched, ttl_secs).await
    }

    /// Where the coordinator can read `key` from: `None` for a key whose tenant's origin this
    /// object has not been told since it started (an HTTP source after an eviction; the next
    /// read fills it) and for a variant (it needs its user's headers).
    pub(super) fn refetchable(
        &self,
        relation: &Relation,
        key: &CacheKey,
    ) -> Result<Option<(OriginConfig, ReadTarget)>, ApiError> {
        let Some(origin) = self.origin_of(key.tenant()) else {
            return Ok(None);
        };
        if key.variant().is_some() {
            return Ok(None);
        }
        let resource = route::resource(key.encoded_path())
            .ok_or_else(|| ApiError::route_not_found(key.encoded_path()))?;
        let target = read_target(&origin, relation, &resource, key)?;
        Ok(Some((origin, target)))
    }

    /// Reads `key` from its tenant's origin (with that tenant's credentials) with a stamp
    /// taken before the read (invariant 2).
    pub(super) async fn read_fresh(
        &self,
        relation: &Relation,
        key: &CacheKey,
        (origin, target): (OriginConfig, ReadTarget),
    ) -> Result<Fetched, ApiError> {
        let stamp = self.graph()?.seq()?;
        let read = AnyOrigin::open(&self.env, &origin)?
            .read(relation, &target, key, &[])
            .await?;
        Ok(Fetched {
            target,
            stamp,
            read,
        })
    }

    /// Registers and stores a fetched copy of `key` unless a write overtook it (that write
    /// queued its own refill) or the origin's answer may not be stored.
    pub(super) async fn keep_copy(
        &self,
        relation: &Relation,
        key: &CacheKey,
        fetched: Fetched,
        ttl_secs: u64,
    ) -> Result<(), ApiError> {
        let read = fetched.read;
        if read.status != 200 || read.not_storable.is_some() {
            return Ok(()); // nothing storable; the next read passes it through
        }
        let headers = OriginHeaders {
            cache_control: read.cache_control.as_deref(),
            vary: read.vary.as_deref(),
        };
        let Some((reg, entry)) = refilled_copy(
            key,
            relation,
            &fetched.target,
            (&read.json, read.body),
            headers,
            (fetched.stamp, now_ms()),
            ttl_secs,
        ) else {
            return Ok(());
        };
        let graph = self.graph()?;
        if !registration_is_fresh(&graph, &reg, graph.seq()?, relation)? {
            return Ok(());
        }
        graph.register(&reg)?;
        super::semantics::observe(&graph, &reg, now_ms())?;
        l2::put(key, &entry).await.map_err(ApiError::from)
    }
}

/// An origin read made by the coordinator, with the stamp taken before it.
pub(super) struct Fetched {
    /// What was read.
    pub target: ReadTarget,
    /// The table's seq before the read.
    pub stamp: u64,
    /// The origin's answer.
    pub read: OriginRead,
}

impl Fetched {
    /// The digest shadow checks compare (`shadow::body_digest`); `None` for an answer that
    /// could not be stored, which says nothing about a cached copy.
    pub fn digest(&self) -> Option<String> {
        let read = &self.read;
        (read.status == 200 && read.not_storable.is_none()).then(|| body_digest(&read.json))
    }
}

/// Patches one page (see [`TableCoordinator::patch_later`]); whether it did. The copy must be
/// this table's alone, stamped as the registration the write was planned against and holding
/// the page that registration describes; [`patched_page`] checks it shows the before image.
/// The patched copy is registered only if no later write touched it (as a refill is).
async fn patch_page(
    storage: &Storage,
    relation: &Relation,
    images: &WriteImages,
    seq: u64,
    patch: &PagePatch,
) -> Result<bool, ApiError> {
    let Some(entry) = l2::get(&patch.key).await else {
        return Ok(false);
    };
    let own_stamp = BTreeMap::from([(relation.name.clone(), patch.stamp)]);
    if entry.vary.is_some() || entry.stamps != own_stamp {
        return Ok(false);
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&entry.body) else {
        return Ok(false);
    };
    if list_window(&patch.query, &relation.id_column, &body) != patch.window {
        return Ok(false);
    }
    let Some(json) = patched_page(&body, &patch.query, images) else {
        return Ok(false);
    };
    let Ok(bytes) = serde_json::to_vec(&json) else {
        return Ok(false);
    };
    let no_headers = OriginHeaders {
        cache_control: None,
        vary: None,
    };
    let target = ReadTarget::List(patch.query.clone());
    let Some((reg, copy)) = refilled_copy(
        &patch.key,
        relation,
        &target,
        (&json, bytes),
        no_headers,
        (seq, now_ms()),
        patch.ttl_secs,
    ) else {
        return Ok(false);
    };
    let graph = Graph::open(storage.sql(), now_ms(), false)?;
    let key = patch.key.as_str();
    if graph.registration(key)?.is_some()
        || !registration_is_fresh(&graph, &reg, graph.seq()?, relation)?
    {
        return Ok(false);
    }
    graph.register(&reg)?;
    graph.finish_rehydrate(key)?;
    l2::put(&patch.key, &copy).await?;
    Ok(true)
}

/// The registration and L2 entry of a refilled copy of `key`, the origin's answer `json` and
/// `body` with its `headers`, stamped `stamp` and filled at `now_ms`; `None` where a read could
/// not store it either. Also how a write rebuilds a record's copy from its after image
/// (`write::apply`).
pub(super) fn refilled_copy(
    key: &CacheKey,
    relation: &Relation,
    target: &ReadTarget,
    (json, body): (&serde_json::Value, Vec<u8>),
    headers: OriginHeaders<'_>,
    (stamp, now_ms): (u64, u64),
    ttl_secs: u64,
) -> Option<(Registration, CachedEntry)> {
    let policy = RoutePolicy {
        ttl_secs,
        rehydrate: true,
        ..RoutePolicy::default()
    };
    // What a read may not store, a refill may not either; a varied answer is stored per
    // variant, by reads.
    let ttl_secs = match storable(headers, &[], &policy) {
        Ok(allowed) if allowed.vary.is_empty() => allowed.ttl_secs,
        _ => return None,
    };
    let reg = fill::registration(key, relation, target, json, stamp, &policy);
    let entry = CachedEntry::new(
        key.as_str().to_string(),
        body,
        BTreeMap::from([(relation.name.clone(), stamp)]),
        now_ms,
        ttl_secs,
    );
    Some((reg, entry))
}

/// Records how refills went (`refilled[i]` for `items[i]`): a done refill leaves the queue; a
/// failed one is retried with exponential backoff, and dropped after its last attempt.
pub fn settle_refills<S: Store>(
    graph: &Graph<S>,
    items: &[RehydrateItem],
    refilled: &[bool],
    now_ms: u64,
) -> Result<(), StoreError> {
    for (item, &ok) in items.iter().zip(refilled) {
        let attempts = item.attempts as u64 + 1;
        if ok || attempts >= REHYDRATE_MAX_ATTEMPTS {
            graph.finish_rehydrate(&item.key)?;
        } else {
            let backoff = 200u64 << attempts.min(10);
            graph.retry_rehydrate(&item.key, attempts, now_ms + backoff)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::fixtures::graph;

    #[test]
    fn refills_leave_the_queue_or_back_off_until_their_last_attempt() {
        let g = graph();
        for key in ["done", "failed", "last"] {
            g.enqueue_rehydrate(key, 60, 0).unwrap();
        }
        g.retry_rehydrate("last", REHYDRATE_MAX_ATTEMPTS - 1, 0)
            .unwrap();
        let due = g.due_rehydrates(0, 10).unwrap();
        let outcome = |key: &str| key == "done";
        let refilled: Vec<bool> = due.iter().map(|i| outcome(&i.key)).collect();
        settle_refills(&g, &due, &refilled, 1_000).unwrap();
        let left = g.due_rehydrates(u64::MAX >> 12, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].key.as_str(), left[0].attempts), ("failed", 1.0));
        assert_eq!(g.next_rehydrate_due().unwrap(), Some(1_000 + 400));
    }
}
