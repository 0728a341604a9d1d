//! The edge: maps HTTP requests to the read path, the write path and the operator endpoints.

pub mod admin;
pub mod body;
pub mod error;
pub mod invalidate;
pub mod ops;
pub mod read;
pub mod rest;
pub mod route;
pub mod tenants;
pub mod token;
pub mod write;

use worker::{Context, Env, Method, Request, Response};

use self::error::ApiError;
use crate::auth;
use crate::config::{Config, VarSource};

/// Reads the worker's vars for `Config`.
pub struct EnvVars<'a>(pub &'a Env);

impl VarSource for EnvVars<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.0.var(name).ok().map(|v| v.to_string())
    }
}

thread_local! {
    // Vars are fixed for an isolate's life: parse and validate them once.
    static CONFIG: std::cell::OnceCell<Result<Config, String>> = const { std::cell::OnceCell::new() };
}

/// The edge's configuration, read on first use in this isolate.
fn config(env: &Env) -> Result<Config, ApiError> {
    CONFIG
        .with(|c| {
            c.get_or_init(|| Config::from_vars(&EnvVars(env)).map_err(|e| e.to_string()))
                .clone()
        })
        .map_err(|m| ApiError::new(500, "misconfigured", m))
}

/// The worker's fetch handler: never panics on input, answers every error as typed JSON.
pub async fn handle(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    match dispatch(req, &env, &ctx).await {
        Ok(resp) => Ok(resp),
        Err(e) => e.to_response(),
    }
}

async fn dispatch(mut req: Request, env: &Env, ctx: &Context) -> Result<Response, ApiError> {
    let config = config(env)?;
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
        None => env
            .secret("EDGECACHE_WEBHOOK_SECRET")
            .map(|s| s.to_string())
            .or_else(|_| env.var("EDGECACHE_WEBHOOK_SECRET").map(|s| s.to_string()))
            .map_err(|_| {
                ApiError::new(
                    503,
                    "webhook_not_configured",
                    "set the EDGECACHE_WEBHOOK_SECRET secret",
                )
            })?,
    };
    let bytes = body::read_body(req, invalidate::MAX_BODY_BYTES).await?;
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
    let catalog = admin::catalog_of(env, &record).await?;
    let body = invalidate::invalidate(env, config.l1_max_bytes, tenant, &catalog, &spec).await?;
    Ok(Response::from_json(&body)?)
}

/// The first value of a query parameter, decoded.
pub fn query_param(url: &worker::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Percent-encodes a query component (everything but unreserved characters).
pub fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
