//! The refill queue: invalidated keys whose routes ask for it are refilled from the origin by
//! the object's alarm, so the next read is a hit with fresh data. The queue is a SQLite table
//! and alarms are durable and retried on `Err`, so a refill survives the object's eviction.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use worker::Storage;

use super::answer_through::compare_refetch;
use super::client::{register_all, Coordinator};
use super::graph::{Graph, RehydrateItem};
use super::object::{TableCoordinator, MAX_KNOWN_TENANTS};
use super::register::registration_is_fresh;
use super::store::{Store, StoreError};
use crate::cache::l2;
use crate::origin::d1::D1Origin;
use crate::origin::{AnyOrigin, Origin};
use crate::runtime::platform::now_ms;
use edgecache_core::entry::CachedEntry;
use edgecache_core::extract::{list_window, ListWindow};
use edgecache_core::fill::{self, keeps_place, patched_page};
use edgecache_core::key::CacheKey;
use edgecache_core::origin::{read_target, OriginRead, ReadTarget};
use edgecache_core::planner::WriteImages;
use edgecache_core::protocol::{
    Dependent, OriginConfig, RefreshRequest, RegisterRequest, Registration, SLOW_REFILL_MS,
};
use edgecache_core::query::ListQuery;
use edgecache_core::ratelimit::{Limit, RateLimiter, Verdict};
use edgecache_core::route;
use edgecache_core::rules::RoutePolicy;
use edgecache_core::schema::{BoundView, Relation, RelationKind, Scope, ViewDecl, ViewDecls};
use edgecache_core::shadow::shadow_digest;
use edgecache_core::shared_cache::{storable, OriginHeaders};
use edgecache_core::{ApiError, CoordinatorId};

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

/// Whether an alarm already set for `set_at` (and not yet fired) runs the work due at `due`
/// in time: it fires no later and has not fired yet (`now`; an alarm whose time has passed may
/// be running this very moment, past the point where it looks for due work).
fn alarm_covers(set_at: Option<u64>, due: u64, now: u64) -> bool {
    set_at.is_some_and(|at| at > now && at <= due)
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
        let Some(due) = due else {
            return Ok(());
        };
        let now = now_ms();
        if alarm_covers(self.alarm_at.get(), due, now) {
            return Ok(());
        }
        let at = due.max(now + 1);
        self.state
            .storage()
            .set_alarm(Duration::from_millis(at - now))
            .await?;
        self.alarm_at.set(Some(at));
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
                graph.enqueue_rehydrate(&reg, now_ms())?;
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
                chunk.iter().map(|item| self.refill(&relation, item)),
            )
            .await;
            let outcomes: Vec<bool> = results.iter().map(Result::is_ok).collect();
            settle_refills(&self.graph()?, chunk, &outcomes, now_ms())?;
        }
        self.schedule_rehydrate(&graph).await
    }

    /// Draws one origin read from `tenant`'s refill budget (`EDGECACHE_REFILLS_PER_MIN`).
    pub(super) fn refill_budget_check(&self, tenant: &str, now: u64) -> Result<Verdict, ApiError> {
        self.draw_per_minute(&self.refill_budget, tenant, now)
    }

    /// Draws one before-image read of learned planning from `tenant`'s budget for them, as
    /// large as refills' but apart: a conservative plan queues a refill of every list of the
    /// table, and were those to spend the before images' budget, every later write would be
    /// planned conservatively too.
    pub(super) fn before_image_budget_check(
        &self,
        tenant: &str,
        now: u64,
    ) -> Result<Verdict, ApiError> {
        self.draw_per_minute(&self.before_image_budget, tenant, now)
    }

    /// One draw from a per-tenant budget of `EDGECACHE_REFILLS_PER_MIN` origin reads a minute.
    fn draw_per_minute(
        &self,
        budget: &RefCell<Option<RateLimiter>>,
        tenant: &str,
        now: u64,
    ) -> Result<Verdict, ApiError> {
        let mut budget = budget.borrow_mut();
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
    /// (`read_fresh`) and keeps the copy unless a write overtook it (`keep_copy`). A view's key
    /// is read as the view (`view_relation`), as an edge's miss reads it.
    async fn refill(&self, relation: &Relation, item: &RehydrateItem) -> Result<(), ApiError> {
        let key = CacheKey::parse(&item.key)?;
        let read_as = match &item.view {
            None => relation.clone(),
            Some(reg) => match self.view_relation(relation, reg).await? {
                Some(view) => view,
                None => return Ok(()), // not refillable as a view: the next read fills it
            },
        };
        let Some(target) = self.refetchable(&read_as, &key)? else {
            return Ok(());
        };
        l2::purge(&key).await;
        self.refills.set(self.refills.get() + 1);
        let fetched = self.read_fresh(&read_as, &key, target).await?;
        if self.crash_next_refill.replace(false) {
            panic!("test hook: coordinator crashed during a refill");
        }
        // A refill after a write is what checks the write's answer against the record's GET.
        compare_refetch(
            &self.graph()?,
            key.as_str(),
            fetched.own_stamp(),
            fetched.checked_digest().as_deref(),
            now_ms(),
        )?;
        self.keep_copy(relation, &key, fetched, item.ttl_secs as u64)
            .await
    }

    /// The coordinator of `table` of this coordinator's data source.
    fn sibling(&self, table: &str) -> Result<CoordinatorId, ApiError> {
        let id = self
            .id()
            .ok_or_else(|| ApiError::internal("coordinator called without its name"))?;
        Ok(CoordinatorId::new(&id.source(), table))
    }

    /// What a view's key whose queued registration is `reg` (JSON) is read as: the view as the
    /// database's catalogue describes it, with the bindings and tables the registration names
    /// (as `write::view_reads` builds it). `None` for a registration that is not a view's, a
    /// view gone from the catalogue or no longer reading `table`, and on an HTTP source (views
    /// are the built-in database's).
    async fn view_relation(
        &self,
        table: &Relation,
        reg: &str,
    ) -> Result<Option<Relation>, ApiError> {
        let Ok(Registration {
            dependent: Dependent::View { view, bind, .. },
            tables,
            ..
        }) = serde_json::from_str(reg)
        else {
            return Ok(None);
        };
        if self.is_http() {
            return Ok(None);
        }
        let decls = ViewDecls::from([(view.clone(), ViewDecl::Bound(BoundView { bind, tables }))]);
        let schema = D1Origin::new(self.env.d1("DB")?)
            .schema(&decls, Scope::All)
            .await?;
        Ok(schema
            .relation(&view)
            .filter(|v| v.kind == RelationKind::View && v.tables.contains(&table.name))
            .cloned())
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

    /// Reads `key` of `relation` from its tenant's origin (with that tenant's credentials) with
    /// a stamp for every table the relation reads taken before the read (invariant 2): this
    /// table's seq, and for a view each other table's from that table's coordinator.
    pub(super) async fn read_fresh(
        &self,
        relation: &Relation,
        key: &CacheKey,
        (origin, target): (OriginConfig, ReadTarget),
    ) -> Result<Fetched, ApiError> {
        let table = self.table()?;
        let others = relation.tables.iter().filter(|t| **t != table);
        let stamped = futures_util::future::join_all(others.map(|other| async {
            let id = self.sibling(other)?;
            let client = Coordinator::of(&self.env, &id).for_tenant(key.tenant(), &origin);
            Ok::<_, ApiError>((other.clone(), client.seq().await?))
        }))
        .await;
        let mut stamps = stamped.into_iter().collect::<Result<BTreeMap<_, _>, _>>()?;
        stamps.insert(table.clone(), self.graph()?.seq()?);
        let read = AnyOrigin::open(&self.env, &origin)?
            .read(relation, &target, key, &[])
            .await?;
        if self.slow_next_refill.replace(false) {
            worker::Delay::from(Duration::from_millis(SLOW_REFILL_MS)).await;
        }
        Ok(Fetched {
            digest: shadow_digest(&origin, &read.json),
            read_as: relation.clone(),
            target,
            table,
            stamps,
            read,
        })
    }

    /// Registers and stores a fetched copy of `key` (this coordinator's table is `relation`)
    /// unless a write overtook it (that write queued its own refill) or the origin's answer may
    /// not be stored. A view's copy is registered first with each other table's coordinator,
    /// through the same call an edge's fill makes, and kept only if every one accepts it.
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
            &fetched.read_as,
            &fetched.target,
            (&read.json, read.body),
            headers,
            (&fetched.table, fetched.stamps),
            (now_ms(), ttl_secs),
        ) else {
            return Ok(());
        };
        let reg = Registration {
            digest: fetched.digest,
            ..reg
        };
        let others = entry
            .stamps
            .iter()
            .filter(|(t, _)| **t != fetched.table)
            .map(|(t, stamp)| {
                let theirs = Registration {
                    stamp: *stamp,
                    ..reg.clone()
                };
                Ok((
                    self.sibling(t)?,
                    RegisterRequest {
                        entries: vec![theirs],
                    },
                ))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        if !others.is_empty() {
            let Some(origin) = self.origin_of(key.tenant()) else {
                return Ok(());
            };
            if register_all(&self.env, key.tenant(), &origin, &others)
                .await
                .is_err()
            {
                return Ok(()); // refused or unreachable: no copy; the next read fills it
            }
        }
        let graph = self.graph()?;
        if !registration_is_fresh(&graph, &reg, graph.seq()?, relation)? {
            return Ok(());
        }
        graph.register(&reg)?;
        super::semantics::observe(&graph, &reg, now_ms())?;
        l2::put(key, &entry).await.map_err(ApiError::from)
    }
}

/// An origin read made by the coordinator, with the stamps taken before it.
pub(super) struct Fetched {
    /// The relation read: this coordinator's table, or a view that reads it.
    pub read_as: Relation,
    /// What was read.
    pub target: ReadTarget,
    /// This coordinator's table.
    pub table: String,
    /// The seq of every table `read_as` reads before the read (this table's among them).
    pub stamps: BTreeMap<String, u64>,
    /// The origin's answer.
    pub read: OriginRead,
    /// Its digest, where the origin is shadow-checked.
    pub digest: Option<String>,
}

impl Fetched {
    /// The seq of this coordinator's table before the read.
    pub fn own_stamp(&self) -> u64 {
        self.stamps.get(&self.table).copied().unwrap_or(0)
    }

    /// The digest shadow checks compare (`shadow::shadow_digest`); `None` for an answer that
    /// could not be stored, which says nothing about a cached copy, and off HTTP origins.
    pub fn checked_digest(&self) -> Option<String> {
        let read = &self.read;
        match read.status == 200 && read.not_storable.is_none() {
            true => self.digest.clone(),
            false => None,
        }
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
        (
            &relation.name,
            BTreeMap::from([(relation.name.clone(), seq)]),
        ),
        (now_ms(), patch.ttl_secs),
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

/// The registration with this coordinator's `table` and the L2 entry of a refilled copy of
/// `key` of `relation` (the table, or a view that reads it), the origin's answer `json` and
/// `body` with its `headers`, stamped `stamps` (one per table the relation reads; the
/// registration takes `table`'s) and filled at `now_ms`; `None` where a read could not store
/// it either. Also how a write rebuilds a record's copy from its after image (`write::apply`).
pub(super) fn refilled_copy(
    key: &CacheKey,
    relation: &Relation,
    target: &ReadTarget,
    (json, body): (&serde_json::Value, Vec<u8>),
    headers: OriginHeaders<'_>,
    (table, stamps): (&str, BTreeMap<String, u64>),
    (now_ms, ttl_secs): (u64, u64),
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
    let stamp = *stamps.get(table)?;
    let reg = fill::registration(key, relation, target, json, stamp, &policy);
    let entry = CachedEntry::new(key.as_str().to_string(), body, stamps, now_ms, ttl_secs);
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
    use crate::coordinator::fixtures::{graph, user_reg, BORN};

    #[test]
    fn an_alarm_is_set_again_unless_one_pending_fires_in_time() {
        // Nothing set by this instance (new, evicted, or the alarm fired): set it.
        assert!(!alarm_covers(None, 5_000, 1_000));
        // One pending that fires no later than the new work: leave it.
        assert!(alarm_covers(Some(3_000), 5_000, 1_000));
        assert!(alarm_covers(Some(5_000), 5_000, 1_000));
        // One that fires after the new work is due: bring it forward.
        assert!(!alarm_covers(Some(6_000), 5_000, 1_000));
        // One whose time has passed may be running already: set it.
        assert!(!alarm_covers(Some(1_000), 5_000, 1_000));
        assert!(!alarm_covers(Some(900), 5_000, 1_000));
    }

    #[test]
    fn refills_leave_the_queue_or_back_off_until_their_last_attempt() {
        let g = graph();
        let [done, failed, last] = ["done", "failed", "last"].map(|id| user_reg(id, "Ann", BORN));
        for reg in [&done, &failed, &last] {
            g.enqueue_rehydrate(reg, 0).unwrap();
        }
        g.retry_rehydrate(&last.key, REHYDRATE_MAX_ATTEMPTS - 1, 0)
            .unwrap();
        let due = g.due_rehydrates(0, 10).unwrap();
        let refilled: Vec<bool> = due.iter().map(|i| i.key == done.key).collect();
        settle_refills(&g, &due, &refilled, 1_000).unwrap();
        let left = g.due_rehydrates(u64::MAX >> 12, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!((&left[0].key, left[0].attempts), (&failed.key, 1.0));
        assert_eq!(g.next_rehydrate_due().unwrap(), Some(1_000 + 400));
    }
}
