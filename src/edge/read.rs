//! The read path: `GET /v1/*` through L1 → L2 → origin, validated against the coordinators'
//! invalidations, with coalescing, HTTP validators and stale-if-error.
//!
//! A read runs in phases, each a function below and an entry in `server-timing`: resolve →
//! validate views → look up → coalesce → fetch → store. Each phase says with an enum how it
//! ended, so the next step is a `match`, not a flag.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::{select, Either};
use serde_json::Value;
use worker::{Context, Delay, Env, Request, Response};

use super::token::min_seqs;
use crate::cache::isolate::{Edge, FillGuard};
use crate::cache::l2::{self, L2Tier};
use crate::cache::lookup::{lookup, Lookup, Tier};
use crate::coordinator::client::Coordinator;
use crate::origin::{AnyOrigin, Origin};
use crate::runtime::platform::now_ms;
use edgecache_core::cache_control::request_forbids_cached;
use edgecache_core::config::Config;
use edgecache_core::entry::{format_stamps, if_none_match, CachedEntry, SharedEntry};
use edgecache_core::fill::registration;
use edgecache_core::key::CacheKey;
use edgecache_core::origin::{read_target, OriginError, OriginRead, ReadTarget};
use edgecache_core::outcome::{NotStored, Outcome};
use edgecache_core::protocol::{OriginConfig, RegisterRequest};
use edgecache_core::route::Resource;
use edgecache_core::rules::{self, RoutePolicy, RouteRule};
use edgecache_core::schema::Relation;
use edgecache_core::timing::{ReadPhase, ReadTiming};
use edgecache_core::{ApiError, CoordinatorId};

/// How often a coalesced follower looks whether the leader's fill has landed.
const FOLLOWER_POLL_MS: u64 = 5;

/// Everything one read needs.
pub struct ReadContext<'a> {
    /// The worker's bindings.
    pub env: &'a Env,
    /// For work after the response (registration, storing).
    pub ctx: &'a Context,
    /// Configuration.
    pub config: &'a Config,
    /// The tenant.
    pub tenant: &'a str,
    /// The tenant's route rules.
    pub rules: &'a [RouteRule],
    /// The path without any `/t/<tenant>` prefix.
    pub path: &'a str,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// The relation read.
    pub relation: &'a Relation,
    /// The tenant's origin.
    pub origin: &'a OriginConfig,
    /// The resource addressed.
    pub resource: &'a Resource,
}

/// Serves a GET.
pub async fn serve(req: &Request, rc: ReadContext<'_>) -> Result<Response, ApiError> {
    let mut timing = ReadTiming::start(now_ms());
    let read = resolve(req, &rc)?;
    timing.end(ReadPhase::Resolve, now_ms());
    if read.policy.no_store {
        return bypass(&read).await;
    }
    let views = validate_views(&read).await;
    timing.end(ReadPhase::Validate, now_ms());
    let found = look_up(&read, views).await;
    timing.end(ReadPhase::LookUp, now_ms());
    let fallback = match found {
        Lookup::Fresh(entry, outcome) => {
            read.count(outcome);
            return respond(&entry, read.meta(outcome, &timing));
        }
        Lookup::Stale(entry) => Some(entry),
        Lookup::Miss => None,
    };
    let coalesced = coalesce(&read, views).await;
    timing.end(ReadPhase::Coalesce, now_ms());
    let fill = match coalesced {
        Coalesced::Landed(entry) => {
            read.edge.count(rc.tenant, |c| {
                c.coalesced += 1;
                c.count(&rc.relation.name, Outcome::HitL1)
            });
            return respond(&entry, read.meta(Outcome::HitL1, &timing));
        }
        Coalesced::Fetch(fill) => fill,
    };
    let fetched = fetch(&read, fill, &mut timing).await;
    timing.end(ReadPhase::Fetch, now_ms());
    match fetched {
        Fetched::Storable { entry, json, fill } => {
            read.count(Outcome::Miss);
            store(&read, views, &entry, &json, fill);
            timing.end(ReadPhase::Store, now_ms());
            respond(&entry, read.meta(Outcome::Miss, &timing))
        }
        Fetched::PassThrough(origin, outcome, reason) => {
            read.count(outcome);
            passthrough(origin, outcome, reason)
        }
        Fetched::Failed(e) => stale_if_error(&read, fallback, e, &timing),
    }
}

/// What the resolve phase works out once from the request; every later phase reads it.
struct Read<'r> {
    rc: &'r ReadContext<'r>,
    edge: Edge,
    key: CacheKey,
    target: ReadTarget,
    policy: RoutePolicy,
    /// Read-your-writes tokens: per table, the least seq the answer must reflect.
    tokens: BTreeMap<String, u64>,
    /// The coordinator of each of `relation.tables`, in that order.
    coordinators: Vec<CoordinatorId>,
    wants: Wants,
    /// The request's `If-None-Match`.
    if_none_match: Option<String>,
    /// `x-edgecache-debug` was sent.
    debug: bool,
}

/// Whether the client takes a cached copy.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wants {
    /// Any fresh copy will do.
    Cached,
    /// `no-cache`: only the origin's answer, which is still stored for later reads.
    Origin,
}

/// What the validate phase made of the tables' views.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Views {
    /// Every view is within the route's staleness bound and the client's tokens: copies they
    /// admit may be served, and a fill may be registered and stored.
    Validated,
    /// A coordinator could not be asked, or a token is newer than anything it told us: no copy
    /// is fresh and the fill is not stored; only the origin will do.
    Unvalidated,
}

/// What the coalesce phase settled.
enum Coalesced {
    /// Another request's fill landed in L1 while this one looked in L2 or waited.
    Landed(SharedEntry),
    /// This request fetches; dropping the guard ends its fill.
    Fetch(FillGuard),
}

/// What the fetch phase got from the origin.
enum Fetched {
    /// A 200 answer that may be stored, made into an entry; its fill stays open until stored.
    Storable {
        entry: SharedEntry,
        json: Value,
        fill: FillGuard,
    },
    /// An answer served as the origin gave it, never stored.
    PassThrough(OriginRead, Outcome, NotStored),
    /// The origin failed.
    Failed(OriginError),
}

impl Read<'_> {
    /// Whether a copy may be served: the views are validated, its TTL has not run out, and every
    /// view it depends on admits it (invariant 1).
    fn is_fresh(&self, views: Views, entry: &CachedEntry) -> bool {
        views == Views::Validated
            && !entry.is_expired(now_ms())
            && self.edge.admits(&self.coordinators, entry)
    }

    /// Counts the read's outcome for its tenant and route.
    fn count(&self, outcome: Outcome) {
        self.edge
            .count(self.rc.tenant, |c| c.count(&self.rc.relation.name, outcome));
    }

    /// How a copy is answered with `outcome`.
    fn meta<'a>(&'a self, outcome: Outcome, timing: &'a ReadTiming) -> ResponseMeta<'a> {
        ResponseMeta {
            outcome,
            timing,
            if_none_match: self.if_none_match.as_deref(),
            debug: self.debug,
        }
    }
}

/// Resolve phase: the cache key, what the origin is asked, the route's policy and what the
/// client asked for.
fn resolve<'r>(req: &Request, rc: &'r ReadContext<'r>) -> Result<Read<'r>, ApiError> {
    let key = CacheKey::from_request(rc.tenant, rc.path, rc.query)?;
    let target = read_target(rc.origin, rc.relation, rc.resource, &key)?;
    let tokens = min_seqs(req)?;
    let h = req.headers();
    let wants = if request_forbids_cached(
        h.get("cache-control")?.as_deref(),
        h.get("pragma")?.as_deref(),
    ) {
        Wants::Origin
    } else {
        Wants::Cached
    };
    let source = rc.origin.source();
    Ok(Read {
        edge: Edge::new(rc.config.l1_max_bytes),
        // Rules see the normalised path, so no spelling of a path escapes its rule.
        policy: rules::resolve(rc.rules, key.path()),
        coordinators: rc
            .relation
            .tables
            .iter()
            .map(|t| CoordinatorId::new(&source, t))
            .collect(),
        if_none_match: h.get("if-none-match")?,
        debug: h.get("x-edgecache-debug")?.is_some(),
        rc,
        key,
        target,
        tokens,
        wants,
    })
}

/// A `no-store` route: straight to the origin, and never stored.
async fn bypass(read: &Read<'_>) -> Result<Response, ApiError> {
    let origin = fetch_origin(read).await?;
    read.count(Outcome::Bypass);
    passthrough(origin, Outcome::Bypass, NotStored::RouteNoStore)
}

/// Validate phase: brings each table's view up to the route's staleness bound (invariant 4)
/// and the client's token (invariant 5).
async fn validate_views(read: &Read<'_>) -> Views {
    let (rc, edge) = (read.rc, read.edge);
    let mut views = Views::Validated;
    for (table, id) in rc.relation.tables.iter().zip(&read.coordinators) {
        let token = read.tokens.get(table).copied();
        let (stale_view, since) = edge.with_view(id, |v| {
            (
                v.needs_refresh(now_ms(), read.policy.max_staleness_ms, token),
                v.since(),
            )
        });
        if stale_view {
            match Coordinator::of(rc.env, id).changes(since).await {
                Ok(changes) => edge.apply_changes(id, &changes, now_ms()),
                Err(_) => views = Views::Unvalidated,
            }
        }
        if token.is_some_and(|t| t > edge.with_view(id, |v| v.seq)) {
            views = Views::Unvalidated; // a token from a future we cannot see
        }
    }
    views
}

/// Look-up phase: L1, then L2 (skipped when the client wants the origin's answer).
async fn look_up(read: &Read<'_>, views: Views) -> Lookup {
    if read.wants == Wants::Origin {
        return Lookup::Miss;
    }
    let l1 = read.edge.l1();
    let l2 = L2Tier { key: &read.key };
    lookup(&l1, &l2, read.key.as_str(), |e| read.is_fresh(views, e)).await
}

/// Coalesce phase: one origin fetch per key per isolate. A follower waits for the leader's
/// fill with a timer of its own (a request may not await a future another request completes),
/// then takes the fill over if none landed. Leaders look in L1 again too: another request's
/// fill may have landed while they looked in L2.
async fn coalesce(read: &Read<'_>, views: Views) -> Coalesced {
    let (edge, key) = (read.edge, read.key.as_str());
    if read.wants == Wants::Origin {
        return Coalesced::Fetch(edge.take_fill(key, now_ms()));
    }
    let wait_limit = read.rc.config.origin_timeout_ms + 2_000;
    let leader = edge.begin_fill(key, now_ms(), wait_limit);
    if leader.is_none() {
        let waited_from = now_ms();
        while edge.is_filling(key) && now_ms().saturating_sub(waited_from) < wait_limit {
            Delay::from(Duration::from_millis(FOLLOWER_POLL_MS)).await;
        }
    }
    let landed = edge.l1().get(key).await;
    if let Some(entry) = landed.filter(|e| read.is_fresh(views, e)) {
        return Coalesced::Landed(entry);
    }
    Coalesced::Fetch(leader.unwrap_or_else(|| edge.take_fill(key, now_ms())))
}

/// Fetch phase: the origin read, stamped from the views before it starts (invariant 2). Only a
/// storable answer keeps the fill open; every other outcome ends it here.
async fn fetch(read: &Read<'_>, fill: FillGuard, timing: &mut ReadTiming) -> Fetched {
    let stamps: BTreeMap<String, u64> = read
        .rc
        .relation
        .tables
        .iter()
        .zip(&read.coordinators)
        .map(|(t, id)| (t.clone(), read.edge.with_view(id, |v| v.seq)))
        .collect();
    let origin_started = now_ms();
    let origin = match fetch_origin(read).await {
        Ok(origin) => origin,
        Err(e) => return Fetched::Failed(e),
    };
    timing.origin(now_ms().saturating_sub(origin_started));
    if origin.status != 200 {
        // The origin's own answer (e.g. its 404), passed through and never cached.
        return Fetched::PassThrough(origin, Outcome::Miss, NotStored::OriginStatus);
    }
    if let Some(reason) = origin.not_storable {
        return Fetched::PassThrough(origin, Outcome::Bypass, reason);
    }
    let entry = SharedEntry::new(CachedEntry::new(
        read.key.as_str().to_string(),
        origin.body,
        stamps,
        now_ms(),
        read.policy.ttl_secs,
    ));
    Fetched::Storable {
        entry,
        json: origin.json,
        fill,
    }
}

/// Store phase: with validated views, registers the entry with every coordinator it depends on
/// off the response path (invariant 3), then stores it in L1 and L2. The fill ends only after
/// that, so a follower that stops waiting finds the copy in L1.
fn store(read: &Read<'_>, views: Views, entry: &SharedEntry, json: &Value, fill: FillGuard) {
    if views == Views::Unvalidated {
        return;
    }
    let rc = read.rc;
    let regs: Vec<(CoordinatorId, RegisterRequest)> = rc
        .relation
        .tables
        .iter()
        .zip(&read.coordinators)
        .map(|(t, id)| {
            let reg = registration(
                &read.key,
                rc.relation,
                &read.target,
                json,
                entry.stamps[t],
                &read.policy,
            );
            (id.clone(), RegisterRequest { entries: vec![reg] })
        })
        .collect();
    let (env, tenant, origin) = (rc.env.clone(), rc.tenant.to_string(), rc.origin.clone());
    let (edge, key, stored) = (read.edge, read.key.clone(), entry.clone());
    rc.ctx.wait_until(async move {
        match register_all(&env, &tenant, &origin, &regs).await {
            Ok(()) => {
                edge.l1().put(&stored).await;
                let _ = l2::put(&key, &stored).await;
            }
            Err(NotStored::Overtaken) => {
                // A write this isolate had not heard of beat the fill: its views are
                // behind, so the next read refreshes them and stamps newer fills.
                edge.count(&tenant, |c| c.overtaken += 1);
                for (id, _) in &regs {
                    edge.expire_view(id);
                }
            }
            Err(_) => {}
        }
        drop(fill);
    });
}

/// The origin failed: if it is unavailable or slow, the last good copy stands in, provided it
/// reflects the client's writes, and says so. Otherwise the answer is the origin's error.
fn stale_if_error(
    read: &Read<'_>,
    fallback: Option<SharedEntry>,
    e: OriginError,
    timing: &ReadTiming,
) -> Result<Response, ApiError> {
    let stands_in = matches!(e, OriginError::Unavailable(_) | OriginError::Timeout(_));
    let Some(entry) = fallback.filter(|f| stands_in && satisfies_tokens(f, &read.tokens)) else {
        return Err(e.into());
    };
    read.count(Outcome::Stale);
    let mut resp = respond(&entry, read.meta(Outcome::Stale, timing))?;
    let h = resp.headers_mut();
    h.set("warning", "110 - \"Response is Stale\"")?;
    h.set("x-edgecache-stale-reason", &ApiError::from(e).code)?;
    Ok(resp)
}

/// Registers the entry with every coordinator it depends on; it may be stored only if all accept.
async fn register_all(
    env: &Env,
    tenant: &str,
    origin: &OriginConfig,
    regs: &[(CoordinatorId, RegisterRequest)],
) -> Result<(), NotStored> {
    for (id, req) in regs {
        match Coordinator::of(env, id)
            .for_tenant(tenant, origin)
            .register(req)
            .await
        {
            Ok(resp) if resp.accepted.iter().all(|a| *a) => {}
            Ok(_) => return Err(NotStored::Overtaken),
            Err(_) => return Err(NotStored::Unregistered),
        }
    }
    Ok(())
}

/// One origin read, bounded by the origin timeout; tests may delay or fail it.
async fn fetch_origin(read: &Read<'_>) -> Result<OriginRead, OriginError> {
    let rc = read.rc;
    read.edge.count(rc.tenant, |c| c.origin_fetches += 1);
    let faults = read.edge.faults(rc.config);
    let timeout = rc.config.origin_timeout_ms;
    let origin = async {
        if faults.read_delay_ms > 0 {
            Delay::from(Duration::from_millis(faults.read_delay_ms)).await;
        }
        if faults.fail_reads {
            return Err(OriginError::Unavailable("injected by a test".into()));
        }
        AnyOrigin::open(rc.env, rc.origin)?
            .read(rc.relation, &read.target, &read.key)
            .await
    };
    let timer = Delay::from(Duration::from_millis(timeout));
    futures_util::pin_mut!(origin);
    match select(origin, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(OriginError::Timeout(timeout)),
    }
}

/// An answer served as the origin gave it, not stored.
fn passthrough(
    read: OriginRead,
    outcome: Outcome,
    reason: NotStored,
) -> Result<Response, ApiError> {
    let mut resp = Response::from_bytes(read.body)?.with_status(read.status);
    let h = resp.headers_mut();
    h.set("content-type", &read.content_type)?;
    h.set("x-edgecache", outcome.as_str())?;
    h.set("x-edgecache-not-stored", reason.as_str())?;
    h.set("cache-control", "no-store")?;
    Ok(resp)
}

/// A stale copy may stand in for the origin only if it already reflects the client's writes.
fn satisfies_tokens(entry: &CachedEntry, tokens: &BTreeMap<String, u64>) -> bool {
    tokens
        .iter()
        .all(|(table, min)| entry.stamps.get(table).is_none_or(|s| s >= min))
}

/// How an entry is answered.
struct ResponseMeta<'a> {
    /// The `x-edgecache` value.
    outcome: Outcome,
    /// The read's phases so far, for `server-timing`.
    timing: &'a ReadTiming,
    /// The request's `If-None-Match`: a match is answered with a 304.
    if_none_match: Option<&'a str>,
    /// Show the entry's key and stamps.
    debug: bool,
}

/// The response for an entry: body (or 304), and the observable cache headers.
fn respond(entry: &CachedEntry, meta: ResponseMeta<'_>) -> Result<Response, ApiError> {
    let now = now_ms();
    let mut resp = if meta
        .if_none_match
        .is_some_and(|h| if_none_match(h, &entry.etag))
    {
        Response::empty()?.with_status(304)
    } else {
        Response::from_bytes(entry.body.clone())?
    };
    let h = resp.headers_mut();
    h.set("content-type", "application/json")?;
    h.set("x-edgecache", meta.outcome.as_str())?;
    h.set("etag", &entry.etag)?;
    h.set("age", &entry.age_secs(now).to_string())?;
    // Freshness is decided here, not by downstream caches: clients revalidate (cheap 304s).
    h.set("cache-control", "max-age=0, must-revalidate")?;
    h.set("server-timing", &meta.timing.header(meta.outcome, now))?;
    if meta.debug {
        h.set("x-edgecache-deps", &format_stamps(&entry.stamps))?;
        h.set("x-edgecache-key", &entry.key)?;
    }
    Ok(resp)
}
