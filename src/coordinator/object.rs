//! `TableCoordinator`: one Durable Object per `tenant:table`. Every write of the table passes
//! through it, so writes are serialized and numbered; it owns the dependency graph and tells
//! edges what changed since the seq they know.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use worker::{durable_object, DurableObject, Env, Method, Request, Response, State};

use super::graph::Graph;
use super::queue::WriteQueue;
use crate::cache::l2;
use crate::origin::d1::D1Origin;
use crate::origin::{AnyOrigin, Origin};
use crate::runtime::env::EnvVars;
use crate::runtime::http::{json, read_json, INTERNAL_MAX_BODY};
use crate::runtime::platform::now_ms;
use edgecache_core::catalog::Catalog;
use edgecache_core::config::Config;
use edgecache_core::entry::CachedEntry;
use edgecache_core::fill;
use edgecache_core::freshness::ALL_KEYS;
use edgecache_core::key::CacheKey;
use edgecache_core::origin::read_target;
use edgecache_core::origin::OriginError;
use edgecache_core::planner::{
    plan_write, row_index_terms, row_unindexed_columns, InvalidationReason, ListDependent,
    WriteImages,
};
use edgecache_core::protocol::OriginConfig;
use edgecache_core::protocol::{
    CoordinatorStats, InvalidateRequest, InvalidateResponse, Invalidated, KeyInfo, RecordInfo,
    RegisterRequest, RegisterResponse, Registration, WriteRequest, WriteResponse,
    COORDINATOR_HEADER, ORIGIN_HEADER,
};
use edgecache_core::route;
use edgecache_core::rules::RoutePolicy;
use edgecache_core::schema::Relation;
use edgecache_core::ApiError;

/// Keys refilled per alarm run.
const REHYDRATE_BATCH: usize = 16;
/// Refills in flight at once.
const REHYDRATE_CONCURRENCY: usize = 4;
/// L2 copies purged after one write; the rest expire or fail validation.
const MAX_PURGE_PER_WRITE: usize = 100;
/// Attempts before a refill is dropped (the next read simply misses).
const REHYDRATE_MAX_ATTEMPTS: u64 = 5;

/// The coordinator of one table of one tenant.
#[durable_object]
pub struct TableCoordinator {
    state: State,
    env: Env,
    /// `(tenant, table)`, learned from the first request's header.
    ident: RefCell<Option<(String, String)>>,
    /// The tenant's origin, learned from the edge's header (D1 until told otherwise).
    origin: RefCell<OriginConfig>,
    migrated: Cell<bool>,
    recovered: Cell<bool>,
    /// Serializes writes: awaiting the origin lets other requests run in between.
    writes_queue: WriteQueue,
    writes: Cell<u64>,
}

impl DurableObject for TableCoordinator {
    fn new(state: State, env: Env) -> Self {
        TableCoordinator {
            state,
            env,
            ident: RefCell::new(None),
            origin: RefCell::new(OriginConfig::D1),
            migrated: Cell::new(false),
            recovered: Cell::new(false),
            writes_queue: WriteQueue::default(),
            writes: Cell::new(0),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        match self.serve(req).await {
            Ok(resp) => Ok(resp),
            Err(e) => crate::runtime::http::error_response(&e),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.rehydrate().await?;
        Response::ok("")
    }
}

impl TableCoordinator {
    fn graph(&self) -> Result<Graph, ApiError> {
        let graph = Graph::open(self.state.storage().sql(), now_ms(), !self.migrated.get())?;
        self.migrated.set(true);
        Ok(graph)
    }

    fn log_limit(&self) -> Result<u64, ApiError> {
        Ok(Config::from_vars(&EnvVars(&self.env))?.invalidation_log)
    }

    fn origin(&self) -> OriginConfig {
        self.origin.borrow().clone()
    }

    fn ident(&self) -> Result<(String, String), ApiError> {
        self.ident
            .borrow()
            .clone()
            .ok_or_else(|| ApiError::new(500, "internal", "coordinator called without its name"))
    }

    async fn serve(&self, mut req: Request) -> Result<Response, ApiError> {
        if let Some(name) = req.headers().get(COORDINATOR_HEADER)? {
            if let Some((tenant, table)) = name.split_once(':') {
                *self.ident.borrow_mut() = Some((tenant.to_string(), table.to_string()));
            }
        }
        if let Some(origin) = req.headers().get(ORIGIN_HEADER)? {
            if let Ok(origin) = serde_json::from_str::<OriginConfig>(&origin) {
                *self.origin.borrow_mut() = origin;
            }
        }
        let graph = self.graph()?;
        if !self.recovered.get() {
            self.recover(&graph)?;
            self.recovered.set(true);
        }
        let url = req.url()?;
        let param = |name: &str| crate::runtime::http::query_param(&url, name);
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
                let body: WriteRequest = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                let _turn = self.writes_queue.turn().await;
                json(&self.write(body).await?)
            }
            (Method::Post, "/invalidate") => {
                let body: InvalidateRequest = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                let resp = self.invalidate(&graph, body)?;
                self.schedule_rehydrate(&graph).await?;
                json(&resp)
            }
            (Method::Get, "/inspect") => {
                if let Some(key) = param("key") {
                    json(&KeyInfo {
                        entry: graph.registration(&key)?,
                        last_invalidated: graph.last_invalidation(&key)?,
                        key,
                    })
                } else if let Some(record) = param("record") {
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
            (Method::Get, "/stats") => {
                let (keys, pending) = graph.counts()?;
                json(&CoordinatorStats {
                    seq: graph.seq()?,
                    keys,
                    pending_rehydrates: pending,
                    writes: self.writes.get(),
                })
            }
            _ => Err(ApiError::route_not_found(url.path())),
        }
    }

    /// Invariant 6: an intent left by a coordinator that died between forwarding a write and
    /// recording it means the origin may have changed in ways nobody planned for, so every
    /// entry of the table is invalidated.
    fn recover(&self, graph: &Graph) -> Result<(), ApiError> {
        let intents = graph.pending_intents()?;
        if intents.is_empty() {
            return Ok(());
        }
        let seq = graph.bump()?;
        graph.invalidate_all(seq, InvalidationReason::Recovery)?;
        for (id, _) in intents {
            graph.end_intent(id)?;
        }
        Ok(())
    }

    async fn relation(&self, table: &str) -> Result<Relation, ApiError> {
        if let OriginConfig::Http { .. } = self.origin() {
            return Catalog::Http(String::new())
                .relation(table)
                .ok_or_else(|| OriginError::UnknownRelation(table.to_string()).into());
        }
        // A coordinator's table is a real table: views play no part here.
        let origin = D1Origin::new(self.env.d1("DB")?);
        let schema = origin.schema(&BTreeMap::new()).await?;
        schema
            .relation(table)
            .cloned()
            .ok_or_else(|| OriginError::UnknownRelation(table.to_string()).into())
    }

    /// Invariant 3: a registration arriving after writes that touched the entry is refused and
    /// the key invalidated, so no copy filled before those writes is ever served.
    async fn register(
        &self,
        graph: &Graph,
        req: RegisterRequest,
    ) -> Result<RegisterResponse, ApiError> {
        let (_, table) = self.ident()?;
        let relation = self.relation(&table).await?;
        // No await below: the checks and the inserts are one atomic step against writes.
        let seq = graph.seq()?;
        let mut accepted = Vec::with_capacity(req.entries.len());
        for reg in &req.entries {
            let ok = self.registration_is_fresh(graph, reg, seq, &relation)?;
            if ok {
                graph.register(reg)?;
            } else {
                let at = graph.bump()?;
                graph.invalidate(&reg.key, at, InvalidationReason::LateRegistration)?;
            }
            accepted.push(ok);
        }
        Ok(RegisterResponse {
            seq: graph.seq()?,
            accepted,
        })
    }

    fn registration_is_fresh(
        &self,
        graph: &Graph,
        reg: &Registration,
        seq: u64,
        relation: &Relation,
    ) -> Result<bool, ApiError> {
        if reg.stamp > seq {
            return Ok(false);
        }
        if graph
            .last_invalidation(&reg.key)?
            .is_some_and(|(at, _)| at > reg.stamp)
            || graph
                .last_invalidation(ALL_KEYS)?
                .is_some_and(|(at, _)| at > reg.stamp)
        {
            return Ok(false);
        }
        let Some(writes) = graph.writes_since(reg.stamp, &relation.name, &relation.id_column)?
        else {
            return Ok(false); // the log no longer reaches back to the stamp
        };
        let Ok(key) = CacheKey::parse(&reg.key) else {
            return Ok(false);
        };
        for (_, write) in writes {
            let record_keys = if reg.records.contains(&write.id) {
                vec![key.clone()]
            } else {
                vec![]
            };
            let (lists, opaque) = match &reg.dependent {
                edgecache_core::protocol::Dependent::List { query, window } => (
                    vec![ListDependent {
                        key: key.clone(),
                        query: query.clone(),
                        window: Some(window.clone()),
                    }],
                    vec![],
                ),
                edgecache_core::protocol::Dependent::Opaque => (vec![], vec![key.clone()]),
                edgecache_core::protocol::Dependent::Record => (vec![], vec![]),
            };
            if !plan_write(&write, &record_keys, &lists, &opaque)
                .entries
                .is_empty()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn write(&self, req: WriteRequest) -> Result<WriteResponse, ApiError> {
        let (_, table) = self.ident()?;
        if req.table != table {
            return Err(ApiError::new(
                400,
                "bad_request",
                "write sent to another table's coordinator",
            ));
        }
        let relation = self.relation(&table).await?;
        let intent = self.graph()?.begin_intent(req.op.id().unwrap_or(""))?;
        let result = match AnyOrigin::open(&self.env, &self.origin()) {
            Ok(origin) => origin.write(&relation, &req.op).await,
            Err(e) => Err(e),
        };
        if req.crash_after_forward && Config::from_vars(&EnvVars(&self.env))?.test_hooks {
            // Abort the instance: the runtime starts a fresh one, as after a real crash.
            panic!("test hook: coordinator crashed between forwarding a write and recording it");
        }
        let graph = self.graph()?;
        let forwarded = match result {
            Ok(f) if f.changed => f,
            Ok(f) => {
                // The origin refused the write: nothing changed.
                graph.end_intent(intent)?;
                return Ok(WriteResponse {
                    status: f.status,
                    body: f.body,
                    seq: graph.seq()?,
                    invalidated: 0,
                });
            }
            Err(e @ OriginError::Unavailable(_)) | Err(e @ OriginError::Timeout(_)) => {
                // The write may or may not have reached the database: invalidate as if it did.
                let seq = graph.bump()?;
                graph.invalidate_all(seq, InvalidationReason::Recovery)?;
                graph.end_intent(intent)?;
                return Err(e.into());
            }
            Err(e) => {
                // The database refused the write: nothing changed.
                graph.end_intent(intent)?;
                return Err(e.into());
            }
        };
        let (status, id, before, after) = (
            forwarded.status,
            forwarded.id,
            forwarded.before,
            forwarded.after,
        );
        // Plan, record and bump as one synchronous step (no await until the intent is gone).
        let images = WriteImages {
            table: table.clone(),
            id: id.clone(),
            id_column: relation.id_column.clone(),
            before,
            after: after.clone(),
        };
        let seq = graph.bump()?;
        graph.log_write(seq, &images)?;
        let mut terms = Vec::new();
        let mut unindexed = Vec::new();
        for image in [&images.before, &images.after].into_iter().flatten() {
            terms.extend(row_index_terms(image));
            unindexed.extend(row_unindexed_columns(image));
        }
        let record_keys: Vec<CacheKey> = graph
            .keys_for_record(&id)?
            .iter()
            .filter_map(|k| CacheKey::parse(k).ok())
            .collect();
        let (lists, opaque) = graph.candidates(&terms, &unindexed)?;
        let plan = plan_write(&images, &record_keys, &lists, &opaque);
        let now = now_ms();
        // Refills read the D1 origin; keys of HTTP origins are left for the next read.
        let refillable = self.origin() == OriginConfig::D1;
        let mut purge: Vec<CacheKey> = Vec::new();
        for planned in &plan.entries {
            let reg = graph.registration(planned.key.as_str())?;
            graph.invalidate(planned.key.as_str(), seq, planned.reason)?;
            match reg.filter(|r| r.rehydrate && r.tables.len() == 1 && refillable) {
                // The refill purges before it refills.
                Some(reg) => graph.enqueue_rehydrate(&reg.key, reg.ttl_secs, now)?,
                None if purge.len() < MAX_PURGE_PER_WRITE => purge.push(planned.key.clone()),
                None => {}
            }
        }
        graph.end_intent(intent)?;
        graph.prune(self.log_limit()?)?;
        self.writes.set(self.writes.get() + 1);
        self.schedule_rehydrate(&graph).await?;
        // Free this data centre's stale L2 copies early. Best effort and bounded: a stale copy
        // fails validation anyway, so nothing depends on this.
        self.state.wait_until(async move {
            for key in purge {
                l2::purge(&key).await;
            }
        });
        Ok(WriteResponse {
            status,
            body: forwarded.body,
            seq,
            invalidated: plan.entries.len(),
        })
    }

    fn invalidate(
        &self,
        graph: &Graph,
        req: InvalidateRequest,
    ) -> Result<InvalidateResponse, ApiError> {
        let seq = graph.bump()?;
        let refillable = self.origin() == OriginConfig::D1;
        let mut invalidated = Vec::new();
        if req.all {
            graph.invalidate_all(seq, InvalidationReason::Manual)?;
            invalidated.push(Invalidated {
                key: ALL_KEYS.to_string(),
                reason: InvalidationReason::Manual,
            });
        } else {
            let mut keys: Vec<String> = req.keys.clone();
            for record in &req.records {
                keys.extend(graph.keys_for_record(record)?);
            }
            for prefix in &req.prefixes {
                keys.extend(graph.keys_with_prefix(prefix)?);
            }
            keys.sort();
            keys.dedup();
            let now = now_ms();
            for key in keys {
                let reg = graph.registration(&key)?;
                graph.invalidate(&key, seq, InvalidationReason::Manual)?;
                if let Some(reg) = reg.filter(|r| r.rehydrate && r.tables.len() == 1 && refillable)
                {
                    graph.enqueue_rehydrate(&key, reg.ttl_secs, now)?;
                }
                invalidated.push(Invalidated {
                    key,
                    reason: InvalidationReason::Manual,
                });
            }
        }
        graph.prune(self.log_limit()?)?;
        Ok(InvalidateResponse { seq, invalidated })
    }

    async fn schedule_rehydrate(&self, graph: &Graph) -> Result<(), ApiError> {
        if let Some(due) = graph.next_rehydrate_due()? {
            let delay = due.saturating_sub(now_ms());
            self.state
                .storage()
                .set_alarm(Duration::from_millis(delay.max(1)))
                .await?;
        }
        Ok(())
    }

    /// Refills invalidated keys from the origin so the next read is a hit with fresh data, and
    /// purges the stale L2 copy this data centre holds.
    async fn rehydrate(&self) -> worker::Result<()> {
        let Some((_, table)) = self.ident.borrow().clone() else {
            return Ok(());
        };
        let graph = self.graph().map_err(api_to_worker)?;
        let due = graph.due_rehydrates(now_ms(), REHYDRATE_BATCH)?;
        let relation = self.relation(&table).await.map_err(api_to_worker)?;
        for chunk in due.chunks(REHYDRATE_CONCURRENCY) {
            let results = futures_util::future::join_all(
                chunk
                    .iter()
                    .map(|item| self.refill(&table, &relation, &item.key, item.ttl_secs as u64)),
            )
            .await;
            let graph = self.graph().map_err(api_to_worker)?;
            for (item, result) in chunk.iter().zip(results) {
                match result {
                    Ok(()) => graph.finish_rehydrate(&item.key)?,
                    Err(_) if item.attempts as u64 + 1 >= REHYDRATE_MAX_ATTEMPTS => {
                        graph.finish_rehydrate(&item.key)?
                    }
                    Err(_) => {
                        let attempts = item.attempts as u64 + 1;
                        let backoff = 200u64 << attempts.min(10);
                        graph.retry_rehydrate(&item.key, attempts, now_ms() + backoff)?;
                    }
                }
            }
        }
        self.schedule_rehydrate(&graph).await.map_err(api_to_worker)
    }

    async fn refill(
        &self,
        table: &str,
        relation: &Relation,
        key: &str,
        ttl_secs: u64,
    ) -> Result<(), ApiError> {
        let key = CacheKey::parse(key)?;
        let resource = route::resource(key.encoded_path())
            .ok_or_else(|| ApiError::route_not_found(key.encoded_path()))?;
        let target = read_target(&OriginConfig::D1, relation, &resource, &key)?;
        l2::purge(&key).await;
        let stamp = self.graph()?.seq()?;
        let origin = D1Origin::new(self.env.d1("DB")?);
        let body = origin.read_json(relation, &target).await?;
        let policy = RoutePolicy {
            ttl_secs,
            rehydrate: true,
            ..RoutePolicy::default()
        };
        let reg = fill::registration(&key, relation, &target, &body, stamp, &policy);
        let graph = self.graph()?;
        if !self.registration_is_fresh(&graph, &reg, graph.seq()?, relation)? {
            return Ok(()); // a write overtook the refill; that write queued its own
        }
        graph.register(&reg)?;
        let bytes =
            serde_json::to_vec(&body).map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
        let entry = CachedEntry::new(
            key.as_str().to_string(),
            bytes,
            BTreeMap::from([(table.to_string(), stamp)]),
            now_ms(),
            ttl_secs,
        );
        l2::put(&key, &entry).await.map_err(ApiError::from)
    }
}

fn api_to_worker(e: ApiError) -> worker::Error {
    worker::Error::RustError(format!("{}: {}", e.code, e.message))
}
