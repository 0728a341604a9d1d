//! The edge: maps HTTP requests to the read path, the write path and the operator endpoints.

pub mod access;
pub mod admin;
pub mod beta;
pub mod demo;
pub mod invalidate;
pub mod learn;
pub mod ops;
pub mod read;
pub mod rest;
pub mod site;
pub mod tenants;
pub mod throttle;
pub mod token;
pub mod webhook;
pub mod write;

use worker::{Context, Env, Method, Request, Response, ScheduledEvent};

use edgecache_core::route;
use edgecache_core::ApiError;

use crate::runtime::env::isolate_config;
use crate::runtime::http::error_response;

/// The worker's fetch handler: never panics on input, answers every error as typed JSON.
pub async fn handle(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    match dispatch(req, &env, &ctx).await {
        Ok(resp) => Ok(resp),
        Err(e) => error_response(&e),
    }
}

/// The cron trigger (`wrangler.toml` `[triggers]`): restores the website demo's sandbox.
pub async fn scheduled(_event: ScheduledEvent, env: Env) {
    demo::reset_on_schedule(&env).await;
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
        if addressed.tenant == config.demo_tenant && req.method() != Method::Get {
            // The demo's sandbox is written only through the rate-limited demo endpoint.
            return Err(ApiError::new(
                403,
                "demo_read_only",
                "the demo tenant is written through POST /_edgecache/demo/write",
            ));
        }
        return rest::serve(req, env, ctx, &config, &url, &addressed, resource).await;
    }
    if let Some(rest) = url.path().strip_prefix("/_edgecache/admin/") {
        return admin::serve(&mut req, env, &config, rest).await;
    }
    let tenant = addressed.tenant.as_str();
    if matches!(req.method(), Method::Get | Method::Head) && site::serves(url.path()) {
        return site::serve(&req, &config, url.path());
    }
    match (req.method(), addressed.path.as_str()) {
        (Method::Get, "/_edgecache/health") => {
            Ok(Response::from_json(&serde_json::json!({ "ok": true }))?)
        }
        (Method::Post, "/_edgecache/invalidate") => {
            webhook::serve(&mut req, env, &config, tenant).await
        }
        (Method::Get, "/_edgecache/stats") => {
            let caller = admin::authenticate(&req, env).await?;
            admin::stats(env, &config, &caller, tenant).await
        }
        (Method::Get, "/_edgecache/deps") => {
            let caller = admin::authenticate(&req, env).await?;
            admin::deps(env, &caller, tenant, &url).await
        }
        (Method::Put, "/_edgecache/test/faults") if config.test_hooks => {
            ops::set_faults(&mut req, &config).await
        }
        (Method::Post, "/_edgecache/test/forget-views") if config.test_hooks => {
            ops::forget_views(&config)
        }
        (Method::Post, "/_edgecache/test/register") if config.test_hooks => {
            ops::register(&mut req, env, tenant).await
        }
        (Method::Get | Method::Patch, path)
            if config.test_hooks && path.starts_with(ops::ORIGIN_DIRECT_PREFIX) =>
        {
            ops::origin_direct(&mut req, env, tenant, path, url.query()).await
        }
        (Method::Post, "/_edgecache/beta") => beta::sign_up(&mut req, env).await,
        (Method::Post, "/_edgecache/demo/write") => demo::write(&mut req, env, &config).await,
        (Method::Post, "/_edgecache/demo/reset") => demo::reset_on_demand(&req, env, &config).await,
        (Method::Get, _) if site::wants_html(&req) => site::not_found_page(url.path()),
        _ => Err(ApiError::route_not_found(url.path())),
    }
}
