//! The edge: maps HTTP requests to the read path, the write path and the operator endpoints.

pub mod admin;
pub mod invalidate;
pub mod ops;
pub mod read;
pub mod rest;
pub mod tenants;
pub mod token;
pub mod write;

use worker::{Context, Env, Method, Request, Response};

use edgecache_core::auth;
use edgecache_core::config::Config;
use edgecache_core::invalidation::{self, InvalidationSpec};
use edgecache_core::route;
use edgecache_core::ApiError;

use crate::runtime::env::{isolate_config, secret};
use crate::runtime::http::{error_response, query_param, read_body};
use crate::runtime::platform::now_ms;

/// The worker's fetch handler: never panics on input, answers every error as typed JSON.
pub async fn handle(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    match dispatch(req, &env, &ctx).await {
        Ok(resp) => Ok(resp),
        Err(e) => error_response(&e),
    }
}

async fn dispatch(mut req: Request, env: &Env, ctx: &Context) -> Result<Response, ApiError> {
    let config = isolate_config(env)?;
    let url = req.url()?;
    let host = url.host_str().unwrap_or("").to_string();
    let addressed = route::address(
        &host,
        url.path(),
        config.base_domain.as_deref(),
        &config.default_tenant,
    );
    if addressed.path.starts_with("/v1/") {
        let resource = route::resource(&addressed.path)
            .ok_or_else(|| ApiError::route_not_found(&addressed.path))?;
        return rest::serve(req, env, ctx, &config, &url, &addressed, resource).await;
    }
    if let Some(rest) = url.path().strip_prefix("/_edgecache/admin/") {
        return admin::serve(&mut req, env, &config, rest).await;
    }
    let tenant = addressed.tenant.as_str();
    let param = |name: &str| query_param(&url, name);
    match (req.method(), addressed.path.as_str()) {
        (Method::Get, "/_edgecache/health") => {
            Ok(Response::from_json(&serde_json::json!({ "ok": true }))?)
        }
        (Method::Post, "/_edgecache/invalidate") => webhook(&mut req, env, &config, tenant).await,
        (Method::Get, "/_edgecache/stats") => {
            admin::authorize(&admin::authenticate(&req, env).await?, tenant)?;
            admin::stats(env, &config, tenant).await
        }
        (Method::Get, "/_edgecache/deps") => {
            admin::authorize(&admin::authenticate(&req, env).await?, tenant)?;
            admin::deps(
                env,
                tenant,
                param("url").or_else(|| param("key")),
                param("record"),
            )
            .await
        }
        (Method::Put, "/_edgecache/test/faults") if config.test_hooks => {
            ops::set_faults(&mut req, &config).await
        }
        (Method::Post, "/_edgecache/test/register") if config.test_hooks => {
            ops::register(&mut req, env, tenant).await
        }
        _ => Err(ApiError::route_not_found(url.path())),
    }
}

/// `POST /_edgecache/invalidate`: the origin's signed webhook. The body is signed with the
/// tenant's webhook secret (`x-edgecache-signature: t=<unix secs>,v1=<hex hmac-sha256>`);
/// signatures older than five minutes are refused, so a captured request cannot be replayed later.
async fn webhook(
    req: &mut Request,
    env: &Env,
    config: &Config,
    tenant: &str,
) -> Result<Response, ApiError> {
    let record = tenants::load(env, tenant).await?;
    let secret = match record.webhook_secret.clone() {
        Some(s) => s,
        None => secret(env, "EDGECACHE_WEBHOOK_SECRET").ok_or_else(|| {
            ApiError::new(
                503,
                "webhook_not_configured",
                "set the EDGECACHE_WEBHOOK_SECRET secret",
            )
        })?,
    };
    let bytes = read_body(req, invalidation::MAX_BODY_BYTES).await?;
    let header = req.headers().get(auth::SIGNATURE_HEADER)?;
    let now_secs = (now_ms() / 1000) as i64;
    auth::verify_signature(
        secret.as_bytes(),
        header.as_deref(),
        &bytes,
        now_secs,
        auth::SIGNATURE_TOLERANCE_SECS,
    )
    .map_err(|e| ApiError::new(401, e.code(), e.to_string()))?;
    let spec = InvalidationSpec::parse(&bytes)?;
    let catalog = admin::catalog_of(env, &record).await?;
    let body = invalidate::invalidate(env, config.l1_max_bytes, tenant, &catalog, &spec).await?;
    Ok(Response::from_json(&body)?)
}
