//! `TableCoordinator`: one Durable Object per `source:table` (a data source's table: the
//! built-in D1 database's, or one HTTP API's), shared by every tenant on that source. Every
//! write of the table passes through it, so writes are serialized and numbered; it owns the
//! dependency graph and tells edges what changed since the seq they know. This file is the object and its routing; the
//! work is in `register`, `write`, `invalidate` and `rehydrate`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use worker::{durable_object, DurableObject, Env, Method, Request, Response, SqlStorage, State};

use super::forget::{forget_all, forget_candidate, forget_hypothesis};
use super::graph::Graph;
use super::queue::{WriteGroups, WriteQueue, WriteTiming, WriteTimings};
use super::shadow::table_learning;
use super::store::Store;
use super::write::recover;
use crate::origin::d1::D1Origin;
use crate::runtime::env::ObjectConfig;
use crate::runtime::http::{error_response, json, query_param, read_json, INTERNAL_MAX_BODY};
use crate::runtime::platform::{after_pending_io, now_ms};
use edgecache_core::catalog::Catalog;
use edgecache_core::config::Config;
use edgecache_core::learned_ref::{LearnedKind, LearnedRef};
use edgecache_core::origin::OriginError;
use edgecache_core::protocol::{
    CoordinatorStats, ExplainRequest, ForgetCandidateRequest, ForgetHypothesisRequest,
    ForgetRequest, ForgottenRule, InvalidateRequest, KeyInfo, ObserveRequest, OriginConfig,
    OriginContext, RecordInfo, RefreshRequest, RegisterRequest, WriteRequest, NAME_HEADER,
    ORIGIN_HEADER,
};
use edgecache_core::ratelimit::RateLimiter;
use edgecache_core::schema::{Relation, Scope};
use edgecache_core::{ApiError, CoordinatorId};

/// Most tenants whose origin credentials (and refill budgets) one coordinator remembers.
pub(super) const MAX_KNOWN_TENANTS: usize = 1024;

/// The coordinator of one table of one data source.
#[durable_object]
pub struct TableCoordinator {
    pub(super) state: State,
    pub(super) env: Env,
    /// `source:table`, the object's own name: from the runtime when it tells it, else from the
    /// caller's header (checked against the object's id) or the name stored on first use (an
    /// instance woken by an alarm is not told its name).
    id: RefCell<Option<CoordinatorId>>,
    /// Vars, parsed once per object.
    config: ObjectConfig,
    /// Each tenant's origin as its last request told it (in memory only: the registry keeps
    /// the credentials; after an eviction a tenant's refills wait for its next request).
    origins: RefCell<HashMap<String, OriginConfig>>,
    migrated: Cell<bool>,
    recovered: Cell<bool>,
    /// Serializes writes: awaiting the origin lets other requests run in between.
    writes_queue: WriteQueue,
    /// Writes submitted and not yet committed: the next group.
    write_groups: WriteGroups,
    /// The last writes' timings (test hooks only: the writers bench reads them).
    timings: WriteTimings,
    /// Groups committed since the object started (stats).
    pub(super) commits: Cell<u64>,
    /// Writes recorded since the object started (stats).
    pub(super) writes: Cell<u64>,
    /// Origin reads made by refills since the object started (stats).
    pub(super) refills: Cell<u64>,
    /// Record copies rebuilt from a write's after image since the object started (stats).
    pub(super) written_through: Cell<u64>,
    /// List pages patched in place since the object started (stats; counted by tasks that
    /// outlive the request, hence shared).
    pub(super) patched: Rc<Cell<u64>>,
    /// Test hooks only: the next refill crashes the object after its origin read.
    pub(super) crash_next_refill: Cell<bool>,
    /// Test hooks only: the next refill's origin answer is held (`WriteFault::SlowRefill`).
    pub(super) slow_next_refill: Cell<bool>,
    /// The name is known to be stored.
    named: Cell<bool>,
    /// When the alarm this instance last set will fire, until it runs: a write that queues a
    /// refill due no earlier need not set it again (each `set_alarm` is a durable commit the
    /// write's answer waits for). Unknown after an eviction, so set again then.
    pub(super) alarm_at: Cell<Option<u64>>,
    /// Each tenant's refill budget (`EDGECACHE_REFILLS_PER_MIN`), made on first use.
    pub(super) refill_budget: RefCell<Option<RateLimiter>>,
    /// Each tenant's budget of before-image reads for learned planning, as large as refills'.
    pub(super) before_image_budget: RefCell<Option<RateLimiter>>,
    /// Each tenant's shadow-check budget (`EDGECACHE_SHADOW_PER_SEC`), made on first use.
    pub(super) shadow_budget: RefCell<Option<RateLimiter>>,
}

impl DurableObject for TableCoordinator {
    fn new(state: State, env: Env) -> Self {
        let id = state.id().name().and_then(|n| CoordinatorId::parse(&n));
        TableCoordinator {
            state,
            env,
            id: RefCell::new(id),
            config: ObjectConfig::default(),
            origins: RefCell::new(HashMap::new()),
            migrated: Cell::new(false),
            recovered: Cell::new(false),
            writes_queue: WriteQueue::default(),
            write_groups: WriteGroups::default(),
            timings: WriteTimings::default(),
            commits: Cell::new(0),
            writes: Cell::new(0),
            refills: Cell::new(0),
            written_through: Cell::new(0),
            patched: Rc::new(Cell::new(0)),
            crash_next_refill: Cell::new(false),
            slow_next_refill: Cell::new(false),
            named: Cell::new(false),
            alarm_at: Cell::new(None),
            refill_budget: RefCell::new(None),
            before_image_budget: RefCell::new(None),
            shadow_budget: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        match self.serve(req).await {
            Ok(resp) => Ok(resp),
            Err(e) => error_response(&e),
        }
    }

    /// Refills due keys; an `Err` makes the runtime retry the alarm.
    async fn alarm(&self) -> worker::Result<Response> {
        // The alarm has fired: whatever this run leaves due must be scheduled anew.
        self.alarm_at.set(None);
        self.rehydrate()
            .await
            .map_err(|e| worker::Error::RustError(format!("{}: {}", e.code, e.message)))?;
        Response::ok("")
    }
}

impl TableCoordinator {
    /// The object's storage, migrated on first use.
    pub(super) fn graph(&self) -> Result<Graph<SqlStorage>, ApiError> {
        let graph = Graph::open(self.state.storage().sql(), now_ms(), !self.migrated.get())?;
        self.migrated.set(true);
        Ok(graph)
    }

    /// The configuration.
    pub(super) fn config(&self) -> Result<&Config, ApiError> {
        self.config.get(&self.env)
    }

    /// `tenant`'s origin: the built-in database for a D1 coordinator; for an HTTP one, as the
    /// tenant's last request told it (`None` if none has since the object started).
    pub(super) fn origin_of(&self, tenant: &str) -> Option<OriginConfig> {
        match self.id().as_ref().map(CoordinatorId::source) {
            Some(source) if source.is_d1() => Some(OriginConfig::D1),
            _ => self.origins.borrow().get(tenant).cloned(),
        }
    }

    /// Whether this coordinator's data source is an HTTP API.
    pub(super) fn is_http(&self) -> bool {
        self.id().is_some_and(|id| !id.source().is_d1())
    }

    /// Remembers what a request says of its tenant's origin, if it belongs to this source.
    fn learn_origin(&self, header: Option<String>) -> Option<OriginContext> {
        let ctx: OriginContext = serde_json::from_str(&header?).ok()?;
        let mine = self.id().as_ref().map(CoordinatorId::source);
        if mine != Some(ctx.origin.source()) {
            return None;
        }
        let mut origins = self.origins.borrow_mut();
        if origins.len() >= MAX_KNOWN_TENANTS && !origins.contains_key(&ctx.tenant) {
            origins.clear();
        }
        origins.insert(ctx.tenant.clone(), ctx.origin.clone());
        Some(ctx)
    }

    /// The object's name, if known.
    pub(super) fn id(&self) -> Option<CoordinatorId> {
        self.id.borrow().clone()
    }

    /// Learns the object's name where the runtime did not tell it: from the caller's header,
    /// accepted only if it names this very object, else from storage. Stores it on first
    /// learning, so an instance woken by an alarm finds it.
    pub(super) fn learn_name<S: Store>(
        &self,
        graph: &Graph<S>,
        header: Option<String>,
    ) -> Result<(), ApiError> {
        if let Some(id) = self.id() {
            if !self.named.get() && graph.name()?.as_deref() != Some(id.as_str()) {
                graph.set_name(id.as_str())?;
            }
            self.named.set(true);
            return Ok(());
        }
        let ns = self.env.durable_object("COORDINATOR")?;
        let from_header = header.filter(|name| {
            ns.id_from_name(name)
                .is_ok_and(|their| their == self.state.id())
        });
        let name = match from_header {
            Some(name) => Some(name),
            None => graph.name()?,
        };
        if let Some(id) = name.as_deref().and_then(CoordinatorId::parse) {
            *self.id.borrow_mut() = Some(id);
            return self.learn_name(graph, None);
        }
        Ok(())
    }

    /// The coordinated table.
    pub(super) fn table(&self) -> Result<String, ApiError> {
        self.id()
            .map(|id| id.table().to_string())
            .ok_or_else(|| ApiError::internal("coordinator called without its name"))
    }

    /// `name`, a `kind` of this table's learning as the edge checked it: anything else is the
    /// edge's mistake.
    fn learned_ref(&self, name: &str, kind: LearnedKind) -> Result<LearnedRef, ApiError> {
        let table = self.table()?;
        LearnedRef::parse(name, kind)
            .filter(|r| r.table == table)
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "a {}'s name reached another table's coordinator",
                    kind.as_str()
                ))
            })
    }

    /// The coordinated table as the origin describes it.
    pub(super) async fn relation(&self, table: &str) -> Result<Relation, ApiError> {
        if self.is_http() {
            return Catalog::Http(String::new())
                .relation(table)
                .ok_or_else(|| OriginError::UnknownRelation(table.to_string()).into());
        }
        // A coordinator's table is a real table: views play no part here.
        let origin = D1Origin::new(self.env.d1("DB")?);
        let schema = origin.schema(&BTreeMap::new(), Scope::All).await?;
        schema
            .relation(table)
            .cloned()
            .ok_or_else(|| OriginError::UnknownRelation(table.to_string()).into())
    }

    /// Takes what the request says about the tenant, then recovers (once) and routes.
    async fn serve(&self, mut req: Request) -> Result<Response, ApiError> {
        let graph = self.graph()?;
        self.learn_name(&graph, req.headers().get(NAME_HEADER)?)?;
        let caller = self.learn_origin(req.headers().get(ORIGIN_HEADER)?);
        if !self.recovered.get() {
            recover(&graph)?;
            self.recovered.set(true);
        }
        let url = req.url()?;
        let param = |name: &str| query_param(&url, name);
        match (req.method(), url.path()) {
            (Method::Get, "/changes") => {
                let since = param("since").and_then(|s| s.parse().ok()).unwrap_or(0);
                json(&graph.changes_since(since)?)
            }
            (Method::Post, "/register") => {
                let body: RegisterRequest = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                json(&self.register(&graph, body).await?)
            }
            (Method::Post, "/write") => {
                let arrived_ms = now_ms();
                let body: WriteRequest = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                let caller = caller.ok_or_else(|| {
                    ApiError::internal("a write reached a coordinator without its origin")
                })?;
                let ticket =
                    self.write_groups
                        .submit(body, caller.tenant, caller.origin, arrived_ms);
                let turn = self.writes_queue.turn().await;
                // When writes contend, the runtime gets to read its sockets before this writer
                // goes on, so writes it has received but not read join the next group. Under
                // sustained writes the edge, this object and the database hand work to each
                // other without ever leaving the runtime idle, and it polls sockets only when
                // idle: a client's next write waited unread for hundreds of milliseconds while
                // other writers went round. Every writer that waited yields, also one whose
                // write an earlier group took: measured, that kept the unread wait lowest
                // (bench/README.md). A lone writer skips it (a turn of the event loop).
                if turn.waited {
                    after_pending_io().await;
                }
                let group = self.write_groups.take(&ticket);
                if !group.is_empty() {
                    self.commit_group(group).await;
                }
                drop(turn);
                // Sent by this writer's group, or an earlier one, before this turn began.
                let answer = ticket.outcome.await.map_err(|_| {
                    ApiError::internal("the write's group ended without answering it")
                })?;
                if self.config()?.test_hooks {
                    self.timings.push(WriteTiming {
                        responded_ms: now_ms(),
                        ..answer.timing
                    });
                }
                json(&answer.outcome?)
            }
            (Method::Get, "/timings") if self.config()?.test_hooks => json(&self.timings.take()),
            (Method::Post, "/explain") => {
                let body: ExplainRequest = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                let caller = caller.ok_or_else(|| {
                    ApiError::internal("an explain reached a coordinator without its origin")
                })?;
                let _turn = self.writes_queue.turn().await;
                json(
                    &self
                        .explain_write(body, &caller.tenant, &caller.origin)
                        .await?,
                )
            }
            (Method::Post, "/invalidate") => {
                let body: InvalidateRequest = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                json(&self.invalidate(&graph, body).await?)
            }
            (Method::Post, "/refresh") => {
                let body: RefreshRequest = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                json(&self.refresh(&graph, body).await?)
            }
            (Method::Post, "/observe") => {
                let body: ObserveRequest = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                let caller = caller.ok_or_else(|| {
                    ApiError::internal("an observe reached a coordinator without its origin")
                })?;
                json(&self.observe(&graph, body, &caller.tenant).await?)
            }
            (Method::Get, "/learn") => json(&table_learning(&graph, &self.table()?)?),
            (Method::Post, "/learn/forget") => {
                let body: ForgetRequest = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                let table = self.table()?;
                let rule = graph.forget_rule(body.rule)?.ok_or_else(|| {
                    ApiError::new(
                        404,
                        "learned_rule_not_found",
                        format!("no learned rule {table}:{}", body.rule),
                    )
                })?;
                json(&ForgottenRule {
                    id: format!("{table}:{}", rule.id),
                    rule: rule.dependency.to_string(),
                })
            }
            (Method::Post, "/learn/forget-hypothesis") => {
                let body: ForgetHypothesisRequest = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                let target = self.learned_ref(&body.hypothesis, LearnedKind::Hypothesis)?;
                let answer = forget_hypothesis(&graph, &target)?;
                if answer.forgotten.is_empty() {
                    return Err(ApiError::new(
                        404,
                        "hypothesis_not_found",
                        format!("no learned hypothesis {target}"),
                    ));
                }
                json(&answer)
            }
            (Method::Post, "/learn/forget-candidate") => {
                let body: ForgetCandidateRequest = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                let target = self.learned_ref(&body.candidate, LearnedKind::Candidate)?;
                let answer = forget_candidate(&graph, &target)?;
                if answer.forgotten.is_empty() {
                    return Err(ApiError::new(
                        404,
                        "candidate_not_found",
                        format!("no dependency candidate {target}"),
                    ));
                }
                json(&answer)
            }
            (Method::Post, "/learn/forget-all") => json(&forget_all(&graph, &self.table()?)?),
            (Method::Get, "/inspect") => inspect(&graph, param("key"), param("record")),
            (Method::Get, "/stats") => {
                let (keys, pending) = graph.counts()?;
                json(&CoordinatorStats {
                    seq: graph.seq()?,
                    keys,
                    pending_rehydrates: pending,
                    writes: self.writes.get(),
                    commits: self.commits.get(),
                    hypotheses: super::semantics::hypotheses(&graph, &self.table()?)?,
                    refills: self.refills.get(),
                    written_through: self.written_through.get(),
                    patched: self.patched.get(),
                })
            }
            _ => Err(ApiError::route_not_found(url.path())),
        }
    }
}

/// `GET /inspect?key=` or `?record=`: what the graph knows of either.
fn inspect(
    graph: &Graph<SqlStorage>,
    key: Option<String>,
    record: Option<String>,
) -> Result<Response, ApiError> {
    if let Some(key) = key {
        json(&KeyInfo {
            entry: graph.registration(&key)?,
            last_invalidated: graph.last_invalidation(&key)?,
            key,
        })
    } else if let Some(record) = record {
        json(&RecordInfo {
            keys: graph.keys_for_record(&record)?,
            last_write: graph.last_write(&record)?,
            record,
        })
    } else {
        Err(ApiError::new(
            400,
            "bad_request",
            "inspect takes ?key= or ?record=",
        ))
    }
}
