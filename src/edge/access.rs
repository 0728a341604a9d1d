//! Who may read and write a tenant's data through `/v1/*`: the tenant's API keys, checked
//! against the tenant record every edge already holds (so a revoked key stops working within
//! [`TENANT_CACHE_MS`](super::tenants::TENANT_CACHE_MS)), and when each key was last used.

use std::cell::RefCell;
use std::collections::HashMap;

use worker::{Context, Env, Method, Request};

use super::tenants::registry;
use crate::runtime::env::secret;
use crate::runtime::platform::now_ms;
use edgecache_core::access::{
    authorize, presented_key, ApiKey, KeyScope, Need, KEY_HEADER, USE_REPORT_MS,
};
use edgecache_core::auth::hash_token;
use edgecache_core::codec::encode_component;
use edgecache_core::config::Config;
use edgecache_core::protocol::{Access, OriginConfig, OriginHeader, TenantRecord};
use edgecache_core::ApiError;

/// The secret that is also a write key of the default tenant (`npm run dev` writes one to
/// `.dev.vars`), so a fresh deployment can be written to before any key is created.
pub const DEFAULT_WRITE_KEY: &str = "EDGECACHE_WRITE_KEY";

/// Key uses an isolate remembers reporting; past it the memory starts over.
const MAX_REPORTED: usize = 4096;

thread_local! {
    // (tenant, key name) -> when this isolate last told the registry the key was used.
    static REPORTED: RefCell<HashMap<(String, String), u64>> = RefCell::new(HashMap::new());
}

/// Whether the request may do what `need` asks of `tenant`. Writes through the built-in D1
/// origin always need a write key; writes to an HTTP origin only when the tenant requires it
/// (the origin decides on the client's own credentials); reads only for private tenants.
pub fn check(
    req: &Request,
    env: &Env,
    ctx: &Context,
    config: &Config,
    tenant: &TenantRecord,
    need: Need,
) -> Result<(), ApiError> {
    let access = &tenant.tenant.access;
    let d1 = tenant.tenant.origin == OriginConfig::D1;
    let required = match need {
        Need::Write => d1 || access.require_write_key,
        Need::Read => access.private_reads,
    };
    if !required {
        return Ok(());
    }
    let headers = req.headers();
    let authorization = headers.get("authorization")?;
    let key_header = headers.get(KEY_HEADER)?;
    // On an HTTP origin `Authorization` is the origin's: only `x-edgecache-key` is ours.
    let presented = presented_key(authorization.as_deref(), key_header.as_deref(), d1);
    let deployment_keys = deployment_keys(env, config, &tenant.tenant.name);
    let key = authorize(need, presented, &tenant.api_keys, &deployment_keys)?;
    report_use(env, ctx, &tenant.tenant.name, &key.name);
    Ok(())
}

/// The default tenant's key from the deployment's secret, if set.
fn deployment_keys(env: &Env, config: &Config, tenant: &str) -> Vec<ApiKey> {
    if tenant != config.default_tenant {
        return Vec::new();
    }
    secret(env, DEFAULT_WRITE_KEY)
        .map(|key| ApiKey {
            name: DEFAULT_WRITE_KEY.to_ascii_lowercase(),
            scope: KeyScope::Write,
            hash: hash_token(&key),
            created_at: String::new(),
            last_used_at: None,
        })
        .into_iter()
        .collect()
}

/// Tells the registry a key was used, at most once a minute per key per isolate, after the
/// response. The deployment's own key is no registry key and is not reported.
fn report_use(env: &Env, ctx: &Context, tenant: &str, key: &str) {
    if key == DEFAULT_WRITE_KEY.to_ascii_lowercase() {
        return;
    }
    let now = now_ms();
    let due = REPORTED.with(|r| {
        let mut r = r.borrow_mut();
        let id = (tenant.to_string(), key.to_string());
        if r.get(&id)
            .is_some_and(|at| now.saturating_sub(*at) < USE_REPORT_MS)
        {
            return false;
        }
        if r.len() >= MAX_REPORTED {
            r.clear();
        }
        r.insert(id, now);
        true
    });
    if !due {
        return;
    }
    let env = env.clone();
    let path = format!("/key-used?name={tenant}&key={}", encode_component(key));
    ctx.wait_until(async move {
        // Best effort: a lost report only makes `last_used_at` older.
        let _ = registry::<(), ()>(&env, Method::Post, &path, None).await;
    });
}

/// The client headers an HTTP origin decides on: `authorization`, `cookie` and the tenant's
/// `forward_headers`. EdgeCache's own key header is never among them.
pub fn forwarded_headers(req: &Request, access: &Access) -> Result<Vec<OriginHeader>, ApiError> {
    let names = ["authorization", "cookie"]
        .into_iter()
        .chain(access.forward_headers.iter().map(String::as_str));
    let mut out = Vec::new();
    for name in names {
        if let Some(value) = req.headers().get(name)? {
            out.push(OriginHeader {
                name: name.to_string(),
                value,
            });
        }
    }
    Ok(out)
}
