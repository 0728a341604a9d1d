//! The website's live demo: writes and resets of the demo tenant's sandbox table, made through
//! the same coordinator write path as `/v1` writes, so the invalidations the page shows are the
//! real ones. Reads need nothing special: the page reads `/t/<demo tenant>/v1/demo_users…`.
//!
//! The sandbox is the `demo_users` table, which only the demo tenant can name (see
//! `edgecache_core::schema::Scope`); a reset copies `edgecache_demo_seed` back over it, on
//! demand and from the hourly cron trigger. Writes and resets are rate-limited per client.

use serde::{Deserialize, Serialize};
use worker::{Env, Request, Response};

use super::tenants;
use super::throttle::{self, Bucket};
use super::write::{self, WriteContext};
use crate::cache::isolate::Edge;
use crate::coordinator::client::Coordinator;
use crate::runtime::http::read_json;
use edgecache_core::config::Config;
use edgecache_core::protocol::{InvalidateRequest, WriteExplanation, WriteOp};
use edgecache_core::route::Resource;
use edgecache_core::write_body::{check_id, check_id_readable, parse_row};
use edgecache_core::{ApiError, CoordinatorId, Row};

/// The demo's sandbox table.
pub const DEMO_TABLE: &str = "demo_users";
/// Largest demo write body.
const MAX_DEMO_BODY: usize = 2 * 1024;

/// `POST /_edgecache/demo/write`: `{"id": "u1", "set": {"city": "Osaka"}}`, a PATCH of one
/// sandbox record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoWrite {
    id: String,
    set: Row,
}

/// What the page shows of a demo write.
#[derive(Debug, Serialize)]
struct DemoWritten {
    /// The origin's status.
    status: u16,
    /// The record as written.
    record: serde_json::Value,
    /// The read-your-writes token, as `x-edgecache-min-seq` takes it.
    token: String,
    /// The keys made stale (and whether each is refilled) and the keys spared.
    #[serde(flatten)]
    explained: WriteExplanation,
}

/// What a reset did.
#[derive(Debug, Serialize)]
struct DemoReset {
    /// Rows restored from the seed.
    rows: usize,
    /// The table's seq after invalidating every cached key of it.
    seq: u64,
}

/// `POST /_edgecache/demo/write`.
pub async fn write(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    throttle::check(req, config, Bucket::DemoWrite)?;
    let body: DemoWrite = read_json(req, MAX_DEMO_BODY).await?;
    let tenant = config.demo_tenant.as_str();
    let record = tenants::load(env, tenant).await?;
    let relation = tenants::catalog_of(env, &record).await?.table(DEMO_TABLE)?;
    check_id_readable(tenant, DEMO_TABLE, &body.id)?;
    let set = serde_json::to_vec(&body.set)?;
    let row = parse_row(&set, &relation)?;
    check_id(&row, &relation, &body.id)?;
    let resource = Resource {
        relation: DEMO_TABLE.to_string(),
        id: Some(body.id.clone()),
    };
    let wc = WriteContext {
        env,
        config,
        tenant,
        relation: &relation,
        resource: &resource,
        origin: &record.tenant.origin,
        access: &record.tenant.access,
        learn: None,
    };
    let op = WriteOp::Patch { id: body.id, row };
    let written = write::send(&wc, op, true).await?;
    let answer = DemoWritten {
        status: written.status,
        record: written.body,
        token: format!("{DEMO_TABLE}={}", written.seq),
        explained: written.explained.unwrap_or_default(),
    };
    let mut resp = Response::from_json(&answer)?.with_status(written.status);
    resp.headers_mut().set("cache-control", "no-store")?;
    Ok(resp)
}

/// `POST /_edgecache/demo/reset`.
pub async fn reset_on_demand(
    req: &Request,
    env: &Env,
    config: &Config,
) -> Result<Response, ApiError> {
    throttle::check(req, config, Bucket::DemoReset)?;
    let done = reset(env, config).await?;
    let mut resp = Response::from_json(&done)?;
    resp.headers_mut().set("cache-control", "no-store")?;
    Ok(resp)
}

/// The cron trigger's reset; errors are logged, there is nobody to answer.
pub async fn reset_on_schedule(env: &Env) {
    let result = match crate::runtime::env::isolate_config(env) {
        Ok(config) => reset(env, &config).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        worker::console_error!("demo reset failed: {}: {}", e.code, e.message);
    }
}

/// Restores the seed (one D1 batch, so one transaction), then invalidates every cached key of
/// the table through its coordinator: a copy filled before the invalidation's seq is never
/// served again, whichever side of the restore it was read on.
async fn reset(env: &Env, config: &Config) -> Result<DemoReset, ApiError> {
    let db = env.d1("DB")?;
    let restored = db
        .batch(vec![
            db.prepare(format!("DELETE FROM {DEMO_TABLE}")),
            db.prepare(format!(
                "INSERT INTO {DEMO_TABLE} (id, name, city, plan) \
                 SELECT id, name, city, plan FROM edgecache_demo_seed"
            )),
        ])
        .await
        .map_err(|e| ApiError::new(502, "origin_unavailable", e.to_string()))?;
    let rows = restored
        .get(1)
        .and_then(|r| r.meta().ok().flatten())
        .and_then(|m| m.changes)
        .unwrap_or(0);
    let tenant = config.demo_tenant.as_str();
    let record = tenants::load(env, tenant).await?;
    let origin = &record.tenant.origin;
    let coordinator = CoordinatorId::new(&origin.source(), DEMO_TABLE);
    let invalidated = Coordinator::of(env, &coordinator)
        .for_tenant(tenant, origin)
        .invalidate(&InvalidateRequest {
            all: true,
            ..InvalidateRequest::default()
        })
        .await?;
    Edge::new(config.l1_max_bytes).expire_view(&coordinator);
    Ok(DemoReset {
        rows,
        seq: invalidated.seq,
    })
}
