//! The read path: `GET /v1/*` through L1 → L2 → origin, validated against the coordinators'
//! invalidations, with coalescing, HTTP validators and stale-if-error.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{Context, Delay, Env, Request, Response};

use super::token::min_seqs;
use crate::cache::isolate::Edge;
use crate::cache::l2::{self, L2Tier};
use crate::cache::lookup::{lookup, Lookup, Tier};
use crate::coordinator::client::Coordinator;
use crate::origin::{AnyOrigin, Origin};
use crate::runtime::platform::now_ms;
use edgecache_core::cache_control::request_forbids_cached;
use edgecache_core::config::Config;
use edgecache_core::entry::{format_stamps, if_none_match, CachedEntry, SharedEntry};
use edgecache_core::fill;
use edgecache_core::key::CacheKey;
use edgecache_core::origin::read_target;
use edgecache_core::origin::{OriginError, OriginRead, ReadTarget};
use edgecache_core::outcome::{NotStored, Outcome};
use edgecache_core::protocol::OriginConfig;
use edgecache_core::protocol::RegisterRequest;
use edgecache_core::route::Resource;
use edgecache_core::rules::{resolve, RouteRule};
use edgecache_core::schema::Relation;
use edgecache_core::ApiError;

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
    let started = now_ms();
    let key = CacheKey::from_request(rc.tenant, rc.path, rc.query)?;
    let target = read_target(rc.origin, rc.relation, rc.resource, &key)?;
    let policy = resolve(rc.rules, rc.path);
    let tokens = min_seqs(req)?;
    let no_cache = request_says_no_cache(req)?;
    let conditional = req.headers().get("if-none-match")?;
    let debug = req.headers().get("x-edgecache-debug")?.is_some();
    let edge = Edge::new(rc.config.l1_max_bytes);
    let route = rc.relation.name.clone();

    if policy.no_store {
        let read = fetch_origin(&rc, &edge, &key, &target).await?;
        edge.count(rc.tenant, |c| c.count(&route, Outcome::Bypass));
        return passthrough(read, Outcome::Bypass, NotStored::RouteNoStore);
    }

    // Bring each table's view up to the route's staleness bound and the client's token.
    let mut validated = true;
    for table in &rc.relation.tables {
        let name = format!("{}:{table}", rc.tenant);
        let token = tokens.get(table).copied();
        let (stale_view, since) = edge.with_view(&name, |v| {
            (
                v.needs_refresh(now_ms(), policy.max_staleness_ms, token),
                v.since(),
            )
        });
        if stale_view {
            match Coordinator::of(rc.env, rc.tenant, table)
                .changes(since)
                .await
            {
                Ok(changes) => edge.apply_changes(&name, &changes, now_ms()),
                Err(_) => validated = false,
            }
        }
        if token.is_some_and(|t| t > edge.with_view(&name, |v| v.seq)) {
            validated = false; // a token from a future we cannot see: only the origin will do
        }
    }

    let l1 = edge.l1(now_ms());
    let l2 = L2Tier { key: &key };
    let is_fresh =
        |e: &CachedEntry| validated && !e.is_expired(now_ms()) && edge.admits(rc.tenant, e);
    let mut fallback = None;
    if !no_cache {
        match lookup(&l1, &l2, key.as_str(), is_fresh).await {
            Lookup::Fresh(entry, outcome) => {
                edge.count(rc.tenant, |c| c.count(&route, outcome));
                return respond(
                    &entry,
                    outcome,
                    started,
                    None,
                    conditional.as_deref(),
                    debug,
                    None,
                );
            }
            Lookup::Stale(entry) => fallback = Some(entry),
            Lookup::Miss => {}
        }
        // Coalescing: one origin fetch per key per isolate; followers wait for the leader's fill
        // with a timer of their own (a request may not await a future another request completes).
        let wait_limit = rc.config.origin_timeout_ms + 2_000;
        let leader = edge.begin_fill(key.as_str(), now_ms(), wait_limit);
        if !leader {
            let waited_from = now_ms();
            while edge.is_filling(key.as_str()) && now_ms().saturating_sub(waited_from) < wait_limit
            {
                Delay::from(Duration::from_millis(FOLLOWER_POLL_MS)).await;
            }
        }
        // Another request's fill may have landed while this one looked in L2 or waited.
        if let Some(entry) = l1.get(key.as_str()).await.filter(|e| is_fresh(e)) {
            if leader {
                edge.end_fill(key.as_str());
            }
            edge.count(rc.tenant, |c| {
                c.coalesced += 1;
                c.count(&route, Outcome::HitL1)
            });
            return respond(
                &entry,
                Outcome::HitL1,
                started,
                None,
                conditional.as_deref(),
                debug,
                None,
            );
        }
        if !leader {
            edge.begin_fill(key.as_str(), now_ms(), 0);
        }
    } else {
        edge.begin_fill(key.as_str(), now_ms(), 0);
    }

    // Invariant 2: stamps come from the views *before* the origin fetch starts.
    let stamps: BTreeMap<String, u64> = rc
        .relation
        .tables
        .iter()
        .map(|t| {
            (
                t.clone(),
                edge.with_view(&format!("{}:{t}", rc.tenant), |v| v.seq),
            )
        })
        .collect();
    let origin_started = now_ms();
    let read = match fetch_origin(&rc, &edge, &key, &target).await {
        Ok(read) => read,
        Err(e) => {
            edge.end_fill(key.as_str());
            if matches!(e, OriginError::Unavailable(_) | OriginError::Timeout(_)) {
                if let Some(entry) = fallback.filter(|f| satisfies_tokens(f, &tokens)) {
                    edge.count(rc.tenant, |c| c.count(&route, Outcome::Stale));
                    let mut resp = respond(
                        &entry,
                        Outcome::Stale,
                        started,
                        None,
                        conditional.as_deref(),
                        debug,
                        None,
                    )?;
                    resp.headers_mut()
                        .set("warning", "110 - \"Response is Stale\"")?;
                    resp.headers_mut()
                        .set("x-edgecache-stale-reason", &ApiError::from(e).code)?;
                    return Ok(resp);
                }
            }
            return Err(e.into());
        }
    };
    let origin_ms = now_ms().saturating_sub(origin_started);
    if read.status != 200 {
        // The origin's own answer (e.g. its 404), passed through and never cached.
        edge.end_fill(key.as_str());
        edge.count(rc.tenant, |c| c.count(&route, Outcome::Miss));
        return passthrough(read, Outcome::Miss, NotStored::OriginStatus);
    }
    if let Some(reason) = read.not_storable {
        edge.end_fill(key.as_str());
        edge.count(rc.tenant, |c| c.count(&route, Outcome::Bypass));
        return passthrough(read, Outcome::Bypass, reason);
    }
    let body = read.json;
    let entry = SharedEntry::new(CachedEntry::new(
        key.as_str().to_string(),
        read.body,
        stamps,
        now_ms(),
        policy.ttl_secs,
    ));
    edge.count(rc.tenant, |c| c.count(&route, Outcome::Miss));

    if validated {
        let regs: Vec<(String, RegisterRequest)> = rc
            .relation
            .tables
            .iter()
            .map(|t| {
                let reg =
                    fill::registration(&key, rc.relation, &target, &body, entry.stamps[t], &policy);
                (t.clone(), RegisterRequest { entries: vec![reg] })
            })
            .collect();
        let env = rc.env.clone();
        let tenant = rc.tenant.to_string();
        let origin = rc.origin.clone();
        let stored = entry.clone();
        let key = key.clone();
        rc.ctx.wait_until(async move {
            let outcome = register_all(&env, &tenant, &origin, &regs).await;
            match outcome {
                Ok(()) => {
                    edge.l1(now_ms()).put(&stored).await;
                    let _ = l2::put(&key, &stored).await;
                }
                Err(NotStored::Overtaken) => {
                    // A write this isolate had not heard of beat the fill: its views are
                    // behind, so the next read refreshes them and stamps newer fills.
                    edge.count(&tenant, |c| c.overtaken += 1);
                    for (table, _) in &regs {
                        edge.expire_view(&format!("{tenant}:{table}"));
                    }
                }
                Err(_) => {}
            }
            edge.end_fill(key.as_str());
        });
    } else {
        edge.end_fill(key.as_str());
    }
    respond(
        &entry,
        Outcome::Miss,
        started,
        Some(origin_ms),
        conditional.as_deref(),
        debug,
        None,
    )
}

/// Registers the entry with every coordinator it depends on; it may be stored only if all accept.
async fn register_all(
    env: &Env,
    tenant: &str,
    origin: &OriginConfig,
    regs: &[(String, RegisterRequest)],
) -> Result<(), NotStored> {
    for (table, req) in regs {
        match Coordinator::of(env, tenant, table)
            .with_origin(origin)
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

async fn fetch_origin(
    rc: &ReadContext<'_>,
    edge: &Edge,
    key: &CacheKey,
    target: &ReadTarget,
) -> Result<OriginRead, OriginError> {
    edge.count(rc.tenant, |c| c.origin_fetches += 1);
    let faults = edge.faults(rc.config);
    let timeout = rc.config.origin_timeout_ms;
    let read = async {
        if faults.read_delay_ms > 0 {
            Delay::from(Duration::from_millis(faults.read_delay_ms)).await;
        }
        if faults.fail_reads {
            return Err(OriginError::Unavailable("injected by a test".into()));
        }
        AnyOrigin::open(rc.env, rc.origin)?
            .read(rc.relation, target, key)
            .await
    };
    let timer = Delay::from(Duration::from_millis(timeout));
    futures_util::pin_mut!(read);
    match select(read, timer).await {
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

fn request_says_no_cache(req: &Request) -> Result<bool, ApiError> {
    let h = req.headers();
    Ok(request_forbids_cached(
        h.get("cache-control")?.as_deref(),
        h.get("pragma")?.as_deref(),
    ))
}

/// The response for an entry: body (or 304), and the observable cache headers.
fn respond(
    entry: &CachedEntry,
    outcome: Outcome,
    started_ms: u64,
    origin_ms: Option<u64>,
    if_none: Option<&str>,
    debug: bool,
    not_stored: Option<NotStored>,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let mut resp = if if_none.is_some_and(|h| if_none_match(h, &entry.etag)) {
        Response::empty()?.with_status(304)
    } else {
        Response::from_bytes(entry.body.clone())?
    };
    let h = resp.headers_mut();
    h.set("content-type", "application/json")?;
    h.set("x-edgecache", outcome.as_str())?;
    h.set("etag", &entry.etag)?;
    h.set("age", &entry.age_secs(now).to_string())?;
    // Freshness is decided here, not by downstream caches: clients revalidate (cheap 304s).
    h.set(
        "cache-control",
        if outcome == Outcome::Bypass {
            "no-store"
        } else {
            "max-age=0, must-revalidate"
        },
    )?;
    let mut timing = format!(
        "cache;desc=\"{}\";dur={}",
        outcome.as_str(),
        now.saturating_sub(started_ms)
    );
    if let Some(ms) = origin_ms {
        timing.push_str(&format!(", origin;dur={ms}"));
    }
    h.set("server-timing", &timing)?;
    if debug {
        h.set("x-edgecache-deps", &format_stamps(&entry.stamps))?;
        h.set("x-edgecache-key", &entry.key)?;
        if let Some(reason) = not_stored {
            h.set("x-edgecache-not-stored", reason.as_str())?;
        }
    }
    Ok(resp)
}
