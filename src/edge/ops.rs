//! Test-hook endpoints of the edge: fault injection, forgetting views, bulk registration, and
//! the origin reached without the cache (the baseline of the benchmark's overhead rows).

use worker::{Method, Request, Response};

use super::tenants;
use crate::cache::isolate::{Edge, Faults};
use crate::origin::{AnyOrigin, Origin};
use crate::runtime::http::{read_body, read_json, INTERNAL_MAX_BODY};
use edgecache_core::config::Config;
use edgecache_core::key::CacheKey;
use edgecache_core::origin::{read_target, OriginError};
use edgecache_core::protocol::WriteOp;
use edgecache_core::route;
use edgecache_core::write_body::{parse_row, MAX_BODY_BYTES};
use edgecache_core::ApiError;

/// The prefix of [`origin_direct`]'s paths; what follows it is a `/v1/...` path.
pub const ORIGIN_DIRECT_PREFIX: &str = "/_edgecache/test/origin";

/// `PUT /_edgecache/test/faults`: replaces the injected faults. Exists only with
/// `EDGECACHE_TEST_HOOKS=1`; everywhere else the path is a plain 404.
pub async fn set_faults(req: &mut Request, config: &Config) -> Result<Response, ApiError> {
    let faults: Faults = read_json(req, INTERNAL_MAX_BODY).await?;
    Edge::new(config.l1_max_bytes).set_faults(faults.clone());
    Ok(Response::from_json(&faults)?)
}

/// `POST /_edgecache/test/forget-views`: this isolate forgets its views of every table, as a
/// newly started isolate of the same data centre would have none. Test hooks only.
pub fn forget_views(config: &Config) -> Result<Response, ApiError> {
    Edge::new(config.l1_max_bytes).forget_views();
    Ok(Response::empty()?.with_status(204))
}

/// `POST /_edgecache/test/register`: registers entries with a coordinator directly, so the
/// fan-out benchmark can set up 100,000 keys without 100,000 origin reads. Test hooks only.
pub async fn register(
    req: &mut Request,
    env: &worker::Env,
    tenant: &str,
) -> Result<Response, ApiError> {
    #[derive(serde::Deserialize)]
    struct Bulk {
        table: String,
        entries: Vec<edgecache_core::protocol::Registration>,
    }
    let bulk: Bulk = read_json(req, INTERNAL_MAX_BODY).await?;
    let record = super::tenants::load(env, tenant).await?;
    let id = edgecache_core::CoordinatorId::new(&record.tenant.origin.source(), &bulk.table);
    let resp = crate::coordinator::client::Coordinator::of(env, &id)
        .register(&edgecache_core::protocol::RegisterRequest {
            entries: bulk.entries,
        })
        .await?;
    Ok(Response::from_json(&resp)?)
}

/// `GET|PATCH /_edgecache/test/origin/v1/<relation>[/<id>]`: the same origin read a miss makes,
/// or the same D1 batch a PATCH runs (image before, `UPDATE … RETURNING`), straight to the
/// tenant's origin: no cache, no views, no coordinator (no sequence number, no plan, no
/// invalidation). What
/// `npm run bench` compares a miss and a write through EdgeCache with. Test hooks only.
pub async fn origin_direct(
    req: &mut Request,
    env: &worker::Env,
    tenant: &str,
    path: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let path = path.strip_prefix(ORIGIN_DIRECT_PREFIX).unwrap_or(path);
    let resource = route::resource(path).ok_or_else(|| ApiError::route_not_found(path))?;
    let record = tenants::load(env, tenant).await?;
    let catalog = tenants::catalog_of(env, &record).await?;
    let relation = catalog
        .relation(&resource.relation)
        .ok_or_else(|| OriginError::UnknownRelation(resource.relation.clone()))?;
    let origin = AnyOrigin::open(env, &record.tenant.origin)?;
    match (req.method(), &resource.id, &origin) {
        (Method::Get, _, _) => {
            let key = CacheKey::from_request(tenant, path, query)?;
            let target = read_target(&record.tenant.origin, &relation, &resource, &key)?;
            let read = origin.read(&relation, &target, &key, &[]).await?;
            let mut resp = Response::from_bytes(read.body)?.with_status(read.status);
            resp.headers_mut().set("content-type", &read.content_type)?;
            Ok(resp)
        }
        (Method::Patch, Some(id), AnyOrigin::D1(d1)) => {
            let row = parse_row(&read_body(req, MAX_BODY_BYTES).await?, &relation)?;
            // The same D1 batch a write through the coordinator runs (image before, UPDATE).
            let op = WriteOp::Patch {
                id: id.clone(),
                row,
            };
            let written = d1.write(&relation, &op).await?;
            Ok(Response::from_json(&written.body)?)
        }
        _ => Err(ApiError::method_not_allowed(
            req.method().as_ref(),
            "GET (any origin), PATCH (D1 records)",
        )),
    }
}
