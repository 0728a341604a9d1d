//! Tenant configuration at the edge: fetched from the registry and kept in isolate memory for a
//! short bound, so rule changes and deletions take effect within seconds.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Env, Method, Request, RequestInit};

use super::error::ApiError;
use crate::durable::protocol::{ErrorBody, TenantRecord};
use crate::durable::registry::REGISTRY_NAME;
use crate::platform::now_ms;

/// How long an edge trusts its copy of a tenant's configuration.
pub const TENANT_CACHE_MS: u64 = 2_000;

thread_local! {
    static TENANTS: RefCell<HashMap<String, (TenantRecord, u64)>> = RefCell::new(HashMap::new());
}

/// A call to the registry object.
pub async fn registry<B: Serialize, T: DeserializeOwned>(
    env: &Env,
    method: Method,
    path_and_query: &str,
    body: Option<&B>,
) -> Result<T, ApiError> {
    let stub = env.durable_object("REGISTRY")?.get_by_name(REGISTRY_NAME)?;
    let mut init = RequestInit::new();
    init.with_method(method);
    if let Some(body) = body {
        let text = serde_json::to_string(body)
            .map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
        init.with_body(Some(text.into()));
    }
    let req = Request::new_with_init(&format!("https://registry{path_and_query}"), &init)?;
    let mut resp = stub
        .fetch_with_request(req)
        .await
        .map_err(|e| ApiError::new(503, "registry_unavailable", e.to_string()))?;
    let bytes = resp.bytes().await?;
    if resp.status_code() >= 400 {
        let err: ErrorBody = serde_json::from_slice(&bytes).map_err(|_| {
            ApiError::new(
                503,
                "registry_unavailable",
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })?;
        return Err(ApiError::new(
            resp.status_code(),
            &err.error.code,
            err.error.message,
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(502, "registry_protocol", e.to_string()))
}

/// The tenant's configuration (404 `unknown_tenant` if there is no such tenant).
pub async fn load(env: &Env, name: &str) -> Result<TenantRecord, ApiError> {
    let now = now_ms();
    if let Some((t, at)) = TENANTS.with(|c| c.borrow().get(name).cloned()) {
        if now.saturating_sub(at) < TENANT_CACHE_MS {
            return Ok(t);
        }
    }
    if !crate::durable::registry::valid_name(name) {
        return Err(unknown(name));
    }
    let record: TenantRecord =
        registry::<(), _>(env, Method::Get, &format!("/tenant?name={name}"), None)
            .await
            .map_err(|e| {
                if e.code == "tenant_not_found" {
                    unknown(name)
                } else {
                    e
                }
            })?;
    TENANTS.with(|c| {
        c.borrow_mut()
            .insert(name.to_string(), (record.clone(), now))
    });
    Ok(record)
}

/// Drops this isolate's copy after a change made through it.
pub fn forget(name: &str) {
    TENANTS.with(|c| {
        c.borrow_mut().remove(name);
    });
}

fn unknown(name: &str) -> ApiError {
    ApiError::new(404, "unknown_tenant", format!("no tenant named `{name}`"))
}
