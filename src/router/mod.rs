//! The edge: maps HTTP requests to the read path, the write path and the operator endpoints.

pub mod error;
pub mod invalidate;
pub mod ops;
pub mod policy;
pub mod read;
pub mod rest;
pub mod route;
pub mod token;
pub mod write;

use worker::{Context, Env, Method, Request, Response};

use self::error::ApiError;
use crate::auth;
use crate::config::{Config, VarSource};
use crate::origin::d1::D1Origin;

/// Reads the worker's vars for `Config`.
pub struct EnvVars<'a>(pub &'a Env);

impl VarSource for EnvVars<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.0.var(name).ok().map(|v| v.to_string())
    }
}

/// The worker's fetch handler: never panics on input, answers every error as typed JSON.
pub async fn handle(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    match dispatch(req, &env, &ctx).await {
        Ok(resp) => Ok(resp),
        Err(e) => e.to_response(),
    }
}

async fn dispatch(mut req: Request, env: &Env, ctx: &Context) -> Result<Response, ApiError> {
    let config = Config::from_vars(&EnvVars(env))?;
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
        return rest::serve(req, env, ctx, &config, &addressed, resource).await;
    }
    let tenant = addressed.tenant.as_str();
    match (req.method(), addressed.path.as_str()) {
        (Method::Get, "/_edgecache/health") => {
            Ok(Response::from_json(&serde_json::json!({ "ok": true }))?)
        }
        (Method::Post, "/_edgecache/invalidate") => webhook(&mut req, env, &config, tenant).await,
        (Method::Get, "/_edgecache/stats") => {
            require_local(&host)?;
            ops::stats(&config, tenant)
        }
        (Method::Get, "/_edgecache/deps") => {
            require_local(&host)?;
            let schema = D1Origin::new(env.d1("DB")?).schema(&config).await?;
            let param = |name: &str| {
                url.query_pairs()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.to_string())
            };
            let body = match (param("key").or_else(|| param("url")), param("record")) {
                (Some(u), None) => invalidate::deps_of_url(env, tenant, &schema, &u).await?,
                (None, Some(r)) => invalidate::deps_of_record(env, tenant, &schema, &r).await?,
                _ => {
                    return Err(ApiError::new(
                        400,
                        "bad_request",
                        "give exactly one of ?key=<url> or ?record=<table:id>",
                    ))
                }
            };
            Ok(Response::from_json(&body)?)
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

/// Until tenants have admin tokens, operator endpoints answer only requests addressed to the
/// machine itself (wrangler dev). In production the worker is reached only through its own
/// routes, so such a host never arrives from outside.
fn require_local(host: &str) -> Result<(), ApiError> {
    if matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
        Ok(())
    } else {
        Err(ApiError::new(
            403,
            "forbidden",
            "this endpoint answers local requests only",
        ))
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
    let secret = webhook_secret(env, config, tenant)?;
    let bytes = req.bytes().await?;
    if bytes.len() > invalidate::MAX_BODY_BYTES {
        return Err(ApiError::new(
            413,
            "body_too_large",
            "the invalidation body is larger than 64 KiB",
        ));
    }
    let header = req.headers().get(auth::SIGNATURE_HEADER)?;
    let now_secs = (crate::platform::now_ms() / 1000) as i64;
    auth::verify_signature(
        secret.as_bytes(),
        header.as_deref(),
        &bytes,
        now_secs,
        auth::SIGNATURE_TOLERANCE_SECS,
    )
    .map_err(|e| ApiError::new(401, e.code(), e.to_string()))?;
    let spec = invalidate::InvalidationSpec::parse(&bytes)?;
    let schema = D1Origin::new(env.d1("DB")?).schema(config).await?;
    let body = invalidate::invalidate(env, tenant, &schema, &spec).await?;
    Ok(Response::from_json(&body)?)
}

fn webhook_secret(env: &Env, config: &Config, tenant: &str) -> Result<String, ApiError> {
    if tenant != config.default_tenant {
        return Err(ApiError::new(
            404,
            "unknown_tenant",
            format!("no tenant named `{tenant}`"),
        ));
    }
    env.secret("EDGECACHE_WEBHOOK_SECRET")
        .map(|s| s.to_string())
        .or_else(|_| env.var("EDGECACHE_WEBHOOK_SECRET").map(|s| s.to_string()))
        .map_err(|_| {
            ApiError::new(
                503,
                "webhook_not_configured",
                "set the EDGECACHE_WEBHOOK_SECRET secret",
            )
        })
}
