//! `TableCoordinator`: one Durable Object per `tenant:table`. Every write of the table passes
//! through it, so writes are serialized and numbered; it owns the dependency graph and tells
//! edges what changed since the seq they know. This file is the object and its routing; the
//! work is in `register`, `write`, `invalidate` and `rehydrate`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use worker::{durable_object, DurableObject, Env, Method, Request, Response, SqlStorage, State};

use super::graph::Graph;
use super::queue::WriteQueue;
use super::write::recover;
use crate::origin::d1::D1Origin;
use crate::runtime::env::ObjectConfig;
use crate::runtime::http::{error_response, json, query_param, read_json, INTERNAL_MAX_BODY};
use crate::runtime::platform::now_ms;
use edgecache_core::catalog::Catalog;
use edgecache_core::config::Config;
use edgecache_core::origin::OriginError;
use edgecache_core::protocol::{
    CoordinatorStats, InvalidateRequest, KeyInfo, OriginConfig, RecordInfo, RegisterRequest,
    WriteRequest, ORIGIN_HEADER,
};
use edgecache_core::schema::{Relation, Scope};
use edgecache_core::{ApiError, CoordinatorId};

/// The coordinator of one table of one tenant.
#[durable_object]
pub struct TableCoordinator {
    pub(super) state: State,
    pub(super) env: Env,
    /// `tenant:table`, the object's own name (`None` only if it was not addressed by name).
    pub(super) id: Option<CoordinatorId>,
    /// Vars, parsed once per object.
    config: ObjectConfig,
    /// The tenant's origin, learned from the edge's header (D1 until told otherwise).
    origin: RefCell<OriginConfig>,
    migrated: Cell<bool>,
    recovered: Cell<bool>,
    /// Serializes writes: awaiting the origin lets other requests run in between.
    writes_queue: WriteQueue,
    /// Writes recorded since the object started (stats).
    pub(super) writes: Cell<u64>,
}

impl DurableObject for TableCoordinator {
    fn new(state: State, env: Env) -> Self {
        let id = state.id().name().and_then(|n| CoordinatorId::parse(&n));
        TableCoordinator {
            state,
            env,
            id,
            config: ObjectConfig::default(),
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
            Err(e) => error_response(&e),
        }
    }

    /// Refills due keys; an `Err` makes the runtime retry the alarm.
    async fn alarm(&self) -> worker::Result<Response> {
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

    /// The tenant's origin.
    pub(super) fn origin(&self) -> OriginConfig {
        self.origin.borrow().clone()
    }

    /// Whether refills can read this tenant's origin: they read D1; keys of HTTP origins are
    /// left for the next read.
    pub(super) fn origin_refills(&self) -> bool {
        self.origin() == OriginConfig::D1
    }

    /// The coordinated table.
    pub(super) fn table(&self) -> Result<&str, ApiError> {
        self.id
            .as_ref()
            .map(CoordinatorId::table)
            .ok_or_else(|| ApiError::internal("coordinator called without its name"))
    }

    /// The coordinated table as the origin describes it.
    pub(super) async fn relation(&self, table: &str) -> Result<Relation, ApiError> {
        if let OriginConfig::Http { .. } = self.origin() {
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
        if let Some(origin) = req.headers().get(ORIGIN_HEADER)? {
            if let Ok(origin) = serde_json::from_str::<OriginConfig>(&origin) {
                *self.origin.borrow_mut() = origin;
            }
        }
        let graph = self.graph()?;
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
                let body: WriteRequest = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                let _turn = self.writes_queue.turn().await;
                json(&self.write(body).await?)
            }
            (Method::Post, "/invalidate") => {
                let body: InvalidateRequest = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                json(&self.invalidate(&graph, body).await?)
            }
            (Method::Get, "/inspect") => inspect(&graph, param("key"), param("record")),
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
