//! Test-hook endpoints of the edge: fault injection, forgetting views and bulk registration.

use worker::{Request, Response};

use crate::cache::isolate::{Edge, Faults};
use crate::runtime::http::{read_json, INTERNAL_MAX_BODY};
use edgecache_core::config::Config;
use edgecache_core::ApiError;

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
