//! The read path: `GET /v1/*` through L1 → L2 → origin, validated against the coordinators'
//! invalidations, with coalescing, HTTP validators and stale-if-error.
//!
//! A read runs in phases, each a function below and an entry in `server-timing`: resolve →
//! validate views → look up → coalesce → fetch → store. Each phase says with an enum how it
//! ended, so the next step is a `match`, not a flag.
//!
//! Shared-cache safety (RFC 9111 §3.5, §4.1), for HTTP origins: a read's credentials are
//! forwarded and keyed (its key carries their keyed hash), what the origin's answer allows is
//! decided by `shared_cache::storable`, and an answer with `Vary` is stored under a variant key
//! with a variance record under the request's key naming the headers, read first on lookup.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use worker::{Context, Delay, Env, Headers, Method, Request, Response, ResponseBuilder};

use super::tenants::{forget, registry};
use super::token::min_seqs;
use crate::cache::isolate::{Edge, FillGuard, RefreshSource};
use crate::cache::l2::{self, L2Tier};
use crate::cache::lookup::{lookup, Lookup, Tier};
use crate::cache::relay;
use crate::coordinator::client::{register_all, Coordinator};
use crate::origin::{AnyOrigin, Origin};
use crate::runtime::env::variant_keyer;
use crate::runtime::http::body_bytes;
use crate::runtime::platform::{now_ms, within};
use edgecache_core::cache_control::request_forbids_cached;
use edgecache_core::codec::encode_component;
use edgecache_core::config::Config;
use edgecache_core::entry::{format_stamps, if_none_match, CachedEntry, SharedEntry};
use edgecache_core::fill::registration;
use edgecache_core::key::CacheKey;
use edgecache_core::origin::{read_target, OriginError, OriginRead, ReadTarget};
use edgecache_core::outcome::{NotStored, Outcome};
use edgecache_core::protocol::{
    OriginConfig, OriginHeader, RefreshRequest, RegisterRequest, Registration, Tenant,
};
use edgecache_core::relay::{claim_ms, relay_since, EarlyStep, RelayVerdict, RelayedChanges};
use edgecache_core::route::Resource;
use edgecache_core::rules::{self, RoutePolicy, RouteRule};
use edgecache_core::schema::Relation;
use edgecache_core::shadow::shadow_digest;
use edgecache_core::shared_cache::{storable, OriginHeaders};
use edgecache_core::timing::{ReadBudget, ReadPhase, ReadTiming, READ_SLACK_MS, STEP_TIMEOUT_MS};
use edgecache_core::vary::{VariantKeyer, CREDENTIAL_HEADERS, FORWARDED_READ_HEADERS};
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
    /// A `HEAD`: answered like the GET, from the same entry, without the body.
    pub head: bool,
    /// The relation is one the tenant knows (every D1 relation; an HTTP origin's declared or
    /// learned tables). A read of any other creates no state: see [`first_read`].
    pub known_table: bool,
}

/// Serves a GET, or a HEAD from the same entry.
pub async fn serve(req: &Request, rc: ReadContext<'_>) -> Result<Response, ApiError> {
    let head = rc.head;
    let resp = serve_get(req, rc).await?;
    if head {
        without_body(resp).await
    } else {
        Ok(resp)
    }
}

/// The GET's answer, phase by phase.
async fn serve_get(req: &Request, rc: ReadContext<'_>) -> Result<Response, ApiError> {
    let mut timing = ReadTiming::start(now_ms());
    let read = resolve(req, &rc)?;
    timing.end(ReadPhase::Resolve, now_ms());
    if !rc.known_table {
        return first_read(&read).await;
    }
    if read.policy.no_store {
        return bypass(&read, NotStored::RouteNoStore).await;
    }
    if let Some(reason) = read.unstorable {
        return bypass(&read, reason).await;
    }
    let views = validate_views(&read).await;
    timing.end(ReadPhase::Validate, now_ms());
    // An L2 that does not answer in time is a miss.
    let Found { lookup: found, key } = within(read.budget.step(now_ms()), look_up(&read, views))
        .await
        .unwrap_or_else(|| Found {
            lookup: Lookup::Miss,
            key: read.key.clone(),
        });
    timing.end(ReadPhase::LookUp, now_ms());
    let fallback = match found {
        Lookup::Fresh(entry, outcome) => {
            read.count(outcome);
            return respond(&entry, read.meta(outcome, &timing));
        }
        Lookup::Stale(entry) if read.may_revalidate(views, &key, &entry) => {
            return stale_while_revalidate(&read, &entry, &timing);
        }
        Lookup::Stale(entry) => Some(entry),
        Lookup::Miss => None,
    };
    let coalesced = coalesce(&read, views, &key).await;
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
        Fetched::Storable(fill) => {
            read.count(Outcome::Miss);
            let resp = respond(&fill.entry, read.meta(Outcome::Miss, &timing));
            store(&read, views, fill);
            timing.end(ReadPhase::Store, now_ms());
            resp
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
    /// What the read may still spend waiting, so it answers within the origin timeout plus
    /// `READ_SLACK_MS` however its steps go.
    budget: ReadBudget,
    /// The request's key: its base key, followed by the keyed hash of its credentials when it
    /// carries any (so no other user, and no request without them, shares it).
    key: CacheKey,
    target: ReadTarget,
    policy: RoutePolicy,
    /// The client's headers an HTTP origin is sent (credentials, language).
    forward: Vec<OriginHeader>,
    /// The credential headers the read carries (HTTP origins; D1 ignores them).
    credentials: Vec<&'static str>,
    /// The request's headers, for the values an answer's `Vary` names.
    headers: Headers,
    /// What keys variant keys, looked up on first use.
    keyer: OnceCell<Option<VariantKeyer>>,
    /// Why no answer to this read may be stored, whatever the origin says.
    unstorable: Option<NotStored>,
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

/// What the look-up phase found, and the key it found it under: the request's own, or the
/// variant of it that a variance record there names.
struct Found {
    lookup: Lookup,
    key: CacheKey,
}

/// A 200 answer that may be stored, made into an entry; its fill stays open until stored.
struct Fill {
    /// The entry, under its key (a variant key when the answer varies).
    entry: SharedEntry,
    /// Its key.
    key: CacheKey,
    /// The body parsed, for its dependencies.
    json: Value,
    /// The entry's TTL, as `shared_cache` settled it.
    ttl_secs: u64,
    /// The variance record to store under the request's key when the answer varies.
    variance: Option<SharedEntry>,
    guard: FillGuard,
}

/// What the fetch phase got from the origin.
enum Fetched {
    /// An answer that may be stored.
    Storable(Fill),
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

    /// Whether an expired copy may be served while it is refilled (the rule's `swr`): the
    /// views of every table it depends on are validated and admit it, as for a hit, so only its
    /// TTL is forgiven (a copy a write to any of its tables invalidated never is); and its
    /// coordinator can refill it: a key that is no variant (neither a `Vary` variant nor a
    /// credentialed read's key: a refill has no user's headers, `store` registers neither as
    /// refilled) on a route that refills, a table's key or a view's (whose refill stamps every
    /// table the view reads, `Registration::refills`).
    fn may_revalidate(&self, views: Views, key: &CacheKey, entry: &CachedEntry) -> bool {
        views == Views::Validated
            && self.policy.rehydrate
            && key.variant().is_none()
            && entry.vary.is_none()
            && self.policy.may_revalidate(entry.expires_at_ms, now_ms())
            && self.edge.admits(&self.coordinators, entry)
    }

    /// Counts the read's outcome for its tenant and route.
    fn count(&self, outcome: Outcome) {
        self.edge
            .count(self.rc.tenant, |c| c.count(&self.rc.relation.name, outcome));
    }

    /// What keys variant keys (`None`: the deployment has no secret).
    fn keyer(&self) -> Option<&VariantKeyer> {
        self.keyer
            .get_or_init(|| variant_keyer(self.rc.env))
            .as_ref()
    }

    /// The key of the variant of `key` that this request's values of the headers `names`
    /// select (`None` without a keyer).
    fn variant_key(&self, key: &CacheKey, names: &[String]) -> Option<CacheKey> {
        let tag = self
            .keyer()?
            .vary_tag(names, |n| self.headers.get(n).ok().flatten());
        key.with_variant(&tag).ok()
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
/// client asked for. An HTTP origin is sent the client's credentials and language, and a read
/// with credentials gets a key of its own (their keyed hash), or stores nothing when the
/// deployment has no secret to key it with.
fn resolve<'r>(req: &Request, rc: &'r ReadContext<'r>) -> Result<Read<'r>, ApiError> {
    let mut key = CacheKey::from_request(rc.tenant, rc.path, rc.query)?;
    let target = read_target(rc.origin, rc.relation, rc.resource, &key)?;
    let tokens = min_seqs(req)?;
    let h = req.headers();
    let (mut forward, mut credentials) = (Vec::new(), Vec::new());
    if matches!(rc.origin, OriginConfig::Http { .. }) {
        for name in FORWARDED_READ_HEADERS {
            if let Some(value) = h.get(name)? {
                forward.push(OriginHeader {
                    name: name.to_string(),
                    value,
                });
            }
        }
        credentials = CREDENTIAL_HEADERS
            .into_iter()
            .filter(|c| forward.iter().any(|f| f.name == *c))
            .collect();
    }
    let keyer = OnceCell::new();
    let mut unstorable = None;
    if !credentials.is_empty() {
        let tag = keyer
            .get_or_init(|| variant_keyer(rc.env))
            .as_ref()
            .and_then(|k: &VariantKeyer| {
                k.credentials_tag(|n| {
                    forward
                        .iter()
                        .find(|f| f.name == n)
                        .map(|f| f.value.clone())
                })
            });
        match tag.map(|t| key.with_variant(&t)) {
            Some(Ok(keyed)) => key = keyed,
            _ => unstorable = Some(NotStored::NoKeySecret),
        }
    }
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
        budget: ReadBudget::start(now_ms(), rc.config.origin_timeout_ms),
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
        // A second handle on the request's headers object, not a copy (`Headers::clone`
        // copies every header in JS): only a `Vary` look-up reads it again.
        headers: Headers(h.0.clone()),
        rc,
        key,
        target,
        tokens,
        wants,
        forward,
        credentials,
        keyer,
        unstorable,
    })
}

/// A read of an HTTP origin's table the tenant does not know yet: straight to the origin, with
/// no view, coordinator, counter or cache entry made for it, so made-up names grow nothing. A
/// 2xx answer teaches the registry the table (at most `MAX_HTTP_TABLES` per tenant), and later
/// reads of it are cached; any other answer (the origin's own 404) is passed through.
async fn first_read(read: &Read<'_>) -> Result<Response, ApiError> {
    let origin = fetch_origin(read).await?;
    let (rc, table) = (read.rc, &read.rc.relation.name);
    if (200..300).contains(&origin.status) {
        let path = format!(
            "/tables?name={}&table={}",
            rc.tenant,
            encode_component(table)
        );
        // Best effort: past the limit the table stays unknown and its reads pass through.
        if registry::<(), Tenant>(rc.env, Method::Post, &path, None)
            .await
            .is_ok()
        {
            forget(rc.tenant);
        }
    }
    passthrough(origin, Outcome::Bypass, NotStored::UnknownTable)
}

/// A read nothing may be stored for (a `no-store` route, say): straight to the origin.
async fn bypass(read: &Read<'_>, reason: NotStored) -> Result<Response, ApiError> {
    let origin = fetch_origin(read).await?;
    read.count(Outcome::Bypass);
    passthrough(origin, Outcome::Bypass, reason)
}

/// Validate phase: brings each table's view up to the route's staleness bound (invariant 4)
/// and the client's token (invariant 5), from the data centre's relay when its answer is young
/// enough, else from the coordinator. A view not due yet but past this isolate's fraction of
/// the bound looks at the relay in the background, so views rarely fall due at all.
async fn validate_views(read: &Read<'_>) -> Views {
    let (edge, bound) = (read.edge, read.policy.max_staleness_ms);
    let policy = edge.relay_policy();
    let mut views = Views::Validated;
    for (table, id) in read.rc.relation.tables.iter().zip(&read.coordinators) {
        let token = read.tokens.get(table).copied();
        let now = now_ms();
        let (stale_view, early) = edge.with_view(id, |v| {
            (
                v.needs_refresh(now, bound, token),
                policy.past_fraction(v, now, bound),
            )
        });
        if stale_view {
            if refresh_view(read, id, token).await.is_err() {
                views = Views::Unvalidated;
            }
        } else if early {
            in_background(read, id, Background::EarlyStep);
        }
        if token.is_some_and(|t| t > edge.with_view(id, |v| v.seq)) {
            views = Views::Unvalidated; // a token from a future we cannot see
        }
    }
    views
}

/// Why a view could not be refreshed: the coordinator failed or did not answer in time.
struct NotRefreshed;

/// Refreshes one view that is due: applies the relay's answer if the relay policy allows
/// (refreshing the relay in the background when this isolate's turn has come), else asks the
/// coordinator and shares its answer through the relay.
async fn refresh_view(
    read: &Read<'_>,
    id: &CoordinatorId,
    token: Option<u64>,
) -> Result<(), NotRefreshed> {
    let (edge, bound) = (read.edge, read.policy.max_staleness_ms);
    let relayed = match bound > 0 && !edge.must_ask_coordinator(id) {
        true => within(read.budget.step(now_ms()), relay::get(id))
            .await
            .flatten(),
        false => None,
    };
    if let Some(relayed) = relayed {
        let now = now_ms();
        let policy = edge.relay_policy();
        let verdict = edge.with_view(id, |v| policy.verdict(v, &relayed, now, bound, token));
        match verdict {
            RelayVerdict::Apply { refresh_early } => {
                edge.apply_changes(
                    id,
                    &relayed.changes,
                    relayed.asked_at_ms,
                    now,
                    RefreshSource::Relay,
                );
                if refresh_early {
                    in_background(read, id, Background::Refresh);
                }
                return Ok(());
            }
            RelayVerdict::NotNewer => return Ok(()),
            RelayVerdict::TooOld | RelayVerdict::BehindToken | RelayVerdict::Gap => {}
        }
    }
    let relayed = bound > 0;
    match within(
        read.budget.step(now_ms()),
        ask_coordinator(read.rc.env, edge, id, relayed),
    )
    .await
    {
        Some(Ok(share)) => {
            if let Some(share) = share {
                let id = id.clone();
                read.rc
                    .ctx
                    .wait_until(async move { relay::put(&id, &share).await });
            }
            Ok(())
        }
        Some(Err(_)) | None => Err(NotRefreshed),
    }
}

/// Relay work done after the response.
#[derive(Clone, Copy)]
enum Background {
    /// The view is past this isolate's fraction: take a newer relayed answer, or refresh it.
    EarlyStep,
    /// Refresh the relay from the coordinator.
    Refresh,
}

/// Runs relay work after the response, at most one per view per isolate at a time, and
/// refreshes only if no other isolate of the data centre claimed that lately.
fn in_background(read: &Read<'_>, id: &CoordinatorId, work: Background) {
    let (edge, bound) = (read.edge, read.policy.max_staleness_ms);
    // A name no cache key can have: cache keys always have `:/`.
    let busy = format!("\u{0}relay:{}", id.as_str());
    let Some(guard) = edge.begin_fill(&busy, now_ms(), bound) else {
        return;
    };
    let (env, id) = (read.rc.env.clone(), id.clone());
    read.rc.ctx.wait_until(async move {
        let now = now_ms();
        let refresh = match work {
            Background::Refresh => true,
            Background::EarlyStep => {
                let relayed = relay::get(&id).await;
                let policy = edge.relay_policy();
                let step =
                    edge.with_view(&id, |v| policy.early_step(v, relayed.as_ref(), now, bound));
                match (step, relayed) {
                    (EarlyStep::Apply { refresh }, Some(r)) => {
                        edge.apply_changes(
                            &id,
                            &r.changes,
                            r.asked_at_ms,
                            now_ms(),
                            RefreshSource::Relay,
                        );
                        refresh
                    }
                    (EarlyStep::Refresh, _) => true,
                    _ => false,
                }
            }
        };
        if refresh && !relay::claimed(&id, now, claim_ms(bound)).await {
            relay::claim(&id, now).await;
            if let Ok(Some(share)) = ask_coordinator(&env, edge, &id, true).await {
                relay::put(&id, &share).await;
            }
        }
        drop(guard);
    });
}

/// Asks the coordinator for changes since this view's seq and applies them as of the moment
/// they were asked for. With `relayed` (routes with a staleness bound) the answer starts a
/// window further back, so every view of the data centre can take it, and is returned to be
/// shared through the relay.
async fn ask_coordinator(
    env: &Env,
    edge: Edge,
    id: &CoordinatorId,
    relayed: bool,
) -> Result<Option<RelayedChanges>, ApiError> {
    let own = edge.with_view(id, |v| v.since());
    let since = if relayed { relay_since(own) } else { own };
    let asked_at = now_ms();
    let changes = Coordinator::of(env, id).changes(since).await?;
    edge.apply_changes(id, &changes, asked_at, now_ms(), RefreshSource::Coordinator);
    Ok(relayed.then(|| RelayedChanges::new(since, changes, asked_at)))
}

/// Look-up phase: L1, then L2 (skipped when the client wants the origin's answer). A fresh
/// variance record under the request's key sends the look-up on to the variant its `Vary`
/// headers select; a stale one is a miss (it names no variant worth serving).
async fn look_up(read: &Read<'_>, views: Views) -> Found {
    let own = |lookup| Found {
        lookup,
        key: read.key.clone(),
    };
    if read.wants == Wants::Origin {
        return own(Lookup::Miss);
    }
    let found = look_in(read, views, &read.key).await;
    let vary = match &found {
        Lookup::Fresh(e, _) | Lookup::Stale(e) => e.vary.clone(),
        Lookup::Miss => None,
    };
    let Some(names) = vary else {
        return own(found);
    };
    match read.variant_key(&read.key, &names) {
        Some(key) if matches!(found, Lookup::Fresh(..)) => {
            // Only the request's own key holds variance records; one anywhere else is a miss.
            let lookup = match look_in(read, views, &key).await {
                Lookup::Fresh(e, _) | Lookup::Stale(e) if e.vary.is_some() => Lookup::Miss,
                found => found,
            };
            Found { lookup, key }
        }
        _ => own(Lookup::Miss),
    }
}

/// L1 then L2 for one key.
async fn look_in(read: &Read<'_>, views: Views, key: &CacheKey) -> Lookup {
    let l2 = L2Tier { key };
    lookup(&read.edge.l1(), &l2, key.as_str(), |e| {
        read.is_fresh(views, e)
    })
    .await
}

/// Coalesce phase: one origin fetch per key per isolate. A follower waits for the leader's
/// fill with a timer of its own (a request may not await a future another request completes),
/// then takes the fill over if none landed. Leaders look in L1 again too: another request's
/// fill may have landed while they looked in L2.
async fn coalesce(read: &Read<'_>, views: Views, found: &CacheKey) -> Coalesced {
    let (edge, key) = (read.edge, found.as_str());
    if read.wants == Wants::Origin {
        return Coalesced::Fetch(edge.take_fill(key, now_ms()));
    }
    // A fill older than a whole read's budget was abandoned: its guard is taken over.
    let abandoned_after = read.rc.config.origin_timeout_ms + READ_SLACK_MS;
    let leader = edge.begin_fill(key, now_ms(), abandoned_after);
    if leader.is_none() {
        while edge.is_filling(key) && read.budget.may_wait(now_ms()) {
            Delay::from(Duration::from_millis(FOLLOWER_POLL_MS)).await;
        }
    }
    if let Some(entry) = landed(read, views, found).await {
        return Coalesced::Landed(entry);
    }
    Coalesced::Fetch(leader.unwrap_or_else(|| edge.take_fill(key, now_ms())))
}

/// A fresh copy in L1 that this request may be served: the entry under `key`, or, when that
/// is a variance record (another request's fill of a varied answer), the variant this
/// request selects. A variance record itself is never served.
async fn landed(read: &Read<'_>, views: Views, key: &CacheKey) -> Option<SharedEntry> {
    let l1 = read.edge.l1();
    let entry = l1
        .get(key.as_str())
        .await
        .filter(|e| read.is_fresh(views, e))?;
    let Some(names) = &entry.vary else {
        return Some(entry);
    };
    let variant = read.variant_key(key, names)?;
    l1.get(variant.as_str())
        .await
        .filter(|e| e.vary.is_none() && read.is_fresh(views, e))
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
    let headers = OriginHeaders {
        cache_control: origin.cache_control.as_deref(),
        vary: origin.vary.as_deref(),
    };
    let allowed = match storable(headers, &read.credentials, &read.policy) {
        Ok(allowed) => allowed,
        Err(reason) => return Fetched::PassThrough(origin, Outcome::Bypass, reason),
    };
    let key = match allowed.vary.as_slice() {
        [] => read.key.clone(),
        names => match read.variant_key(&read.key, names) {
            Some(variant) => variant,
            None => return Fetched::PassThrough(origin, Outcome::Bypass, NotStored::NoKeySecret),
        },
    };
    let entry = SharedEntry::new(CachedEntry::new(
        key.as_str().to_string(),
        origin.body,
        stamps,
        now_ms(),
        allowed.ttl_secs,
    ));
    let variance = (!allowed.vary.is_empty()).then(|| {
        SharedEntry::new(CachedEntry::variance(
            &entry,
            read.key.as_str().to_string(),
            allowed.vary,
        ))
    });
    Fetched::Storable(Fill {
        entry,
        key,
        json: origin.json,
        ttl_secs: allowed.ttl_secs,
        variance,
        guard: fill,
    })
}

/// Store phase: with validated views, registers the entry with every coordinator it depends on
/// off the response path (invariant 3), then stores it in L1 and L2, and then its variance
/// record, if any, under the request's key (so a reader that finds the record finds the
/// variant). The fill ends only after that, so a follower that stops waiting finds the copy in
/// L1. Variant entries are never rehydrated: a refill would not carry the user's headers.
fn store(read: &Read<'_>, views: Views, fill: Fill) {
    if views == Views::Unvalidated {
        return;
    }
    let rc = read.rc;
    let policy = RoutePolicy {
        ttl_secs: fill.ttl_secs,
        rehydrate: read.policy.rehydrate && fill.key.variant().is_none(),
        ..read.policy.clone()
    };
    let digest = shadow_digest(rc.origin, &fill.json);
    let regs: Vec<(CoordinatorId, RegisterRequest)> = rc
        .relation
        .tables
        .iter()
        .zip(&read.coordinators)
        .map(|(t, id)| {
            let reg = Registration {
                digest: digest.clone(),
                ..registration(
                    &fill.key,
                    rc.relation,
                    &read.target,
                    &fill.json,
                    fill.entry.stamps[t],
                    &policy,
                )
            };
            (id.clone(), RegisterRequest { entries: vec![reg] })
        })
        .collect();
    let (env, tenant, origin) = (rc.env.clone(), rc.tenant.to_string(), rc.origin.clone());
    let (edge, primary) = (read.edge, read.key.clone());
    rc.ctx.wait_until(async move {
        match register_all(&env, &tenant, &origin, &regs).await {
            Ok(()) => {
                edge.l1().put(&fill.entry).await;
                let _ = within(STEP_TIMEOUT_MS, l2::put(&fill.key, &fill.entry)).await;
                if let Some(record) = &fill.variance {
                    edge.l1().put(record).await;
                    let _ = within(STEP_TIMEOUT_MS, l2::put(&primary, record)).await;
                }
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
        drop(fill.guard);
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

/// Stale-while-revalidate: the expired copy is answered as `STALE`, and its coordinator is asked,
/// after the response, to refill it (its refill queue holds the key once however many reads
/// ask). A view's key is refilled by the coordinator of the view's first table, which holds its
/// registration as every table's does, through the refill a write of that table queues (a stamp
/// from each table's coordinator first, kept only if every one accepts the copy). The next read
/// finds the refilled copy in L2.
fn stale_while_revalidate(
    read: &Read<'_>,
    entry: &SharedEntry,
    timing: &ReadTiming,
) -> Result<Response, ApiError> {
    read.count(Outcome::Stale);
    let (env, id) = (read.rc.env.clone(), read.coordinators[0].clone());
    let (tenant, origin) = (read.rc.tenant.to_string(), read.rc.origin.clone());
    let refresh = RefreshRequest {
        keys: vec![read.key.as_str().to_string()],
    };
    read.rc.ctx.wait_until(async move {
        // Best effort: without the refill the next read past the window is a miss. The tenant
        // and its origin go with it: a coordinator started since that tenant's last write or
        // registration would not know the origin to refill from.
        let _ = Coordinator::of(&env, &id)
            .for_tenant(&tenant, &origin)
            .refresh(&refresh)
            .await;
    });
    let mut resp = respond(entry, read.meta(Outcome::Stale, timing))?;
    let h = resp.headers_mut();
    h.set("warning", "110 - \"Response is Stale\"")?;
    h.set("x-edgecache-stale-reason", "stale_while_revalidate")?;
    Ok(resp)
}

/// One origin read, bounded by the origin timeout; tests may delay or fail it.
async fn fetch_origin(read: &Read<'_>) -> Result<OriginRead, OriginError> {
    let rc = read.rc;
    read.edge.count(rc.tenant, |c| c.origin_fetches += 1);
    let faults = read.edge.faults(rc.config);
    // The origin timeout, or less if waits before took part of the read's budget.
    let timeout = read.budget.fetch(now_ms());
    let origin = async {
        if faults.read_delay_ms > 0 {
            Delay::from(Duration::from_millis(faults.read_delay_ms)).await;
        }
        if faults.fail_reads {
            return Err(OriginError::Unavailable("injected by a test".into()));
        }
        AnyOrigin::open(rc.env, rc.origin)?
            .read(rc.relation, &read.target, &read.key, &read.forward)
            .await
    };
    within(timeout, origin)
        .await
        .unwrap_or(Err(OriginError::Timeout(rc.config.origin_timeout_ms)))
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

/// The answer to a HEAD: the GET's status and headers, `content-length` the GET body's, no body.
async fn without_body(resp: Response) -> Result<Response, ApiError> {
    let len = body_bytes(&resp).await?.len();
    let headers = resp.headers().clone();
    headers.set("content-length", &len.to_string())?;
    Ok(Response::empty()?
        .with_status(resp.status_code())
        .with_headers(headers))
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
    // Built with its content type (`Response::from_bytes` would set one, to be replaced: every
    // header set is a call into JavaScript on the hit path).
    let builder = ResponseBuilder::new().with_header("content-type", "application/json")?;
    let mut resp = if meta
        .if_none_match
        .is_some_and(|h| if_none_match(h, &entry.etag))
    {
        builder.with_status(304).empty()
    } else {
        builder.fixed(entry.body.clone())
    };
    let h = resp.headers_mut();
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
