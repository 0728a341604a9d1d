//! The admin API (`/_edgecache/admin/…`) and the operator endpoints that share its auth:
//! bearer tokens (the operator's, or a tenant's own admin token), JSON in and out.

use std::collections::BTreeMap;

use serde_json::json;
use worker::{Env, Method, Request, Response};

use super::invalidate;
use super::tenants::{self, registry};
use crate::cache::isolate::Edge;
use crate::coordinator::client::Coordinator;
use crate::origin::d1::D1Origin;
use crate::runtime::http::{json, read_body, read_json};
use edgecache_core::auth::{constant_time_eq, hash_token, parse_bearer};
use edgecache_core::catalog::Catalog;
use edgecache_core::config::Config;
use edgecache_core::invalidation::InvalidationSpec;
use edgecache_core::protocol::{
    CreateTenant, CreatedTenant, InvalidateRequest, OriginConfig, Tenant, TenantRecord,
};
use edgecache_core::rules::check_rule;
use edgecache_core::rules::RouteRule;
use edgecache_core::ApiError;

/// Largest admin request body.
pub const MAX_ADMIN_BODY: usize = 64 * 1024;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The deployment's operator: every tenant.
    Operator,
    /// A tenant's admin: that tenant only.
    Tenant(String),
}

/// Identifies the caller from `Authorization: Bearer …`.
pub async fn authenticate(req: &Request, env: &Env) -> Result<Principal, ApiError> {
    let header = req.headers().get("authorization")?;
    let token = parse_bearer(header.as_deref()).ok_or_else(|| {
        ApiError::new(401, "unauthorized", "send `Authorization: Bearer <token>`")
    })?;
    let operator = env
        .secret("EDGECACHE_OPERATOR_TOKEN")
        .map(|s| s.to_string())
        .or_else(|_| env.var("EDGECACHE_OPERATOR_TOKEN").map(|v| v.to_string()))
        .ok()
        .filter(|t| !t.is_empty());
    if operator.is_some_and(|op| constant_time_eq(op.as_bytes(), token.as_bytes())) {
        return Ok(Principal::Operator);
    }
    let tenant: Tenant = registry::<(), _>(
        env,
        Method::Get,
        &format!("/auth?hash={}", hash_token(token)),
        None,
    )
    .await?;
    Ok(Principal::Tenant(tenant.name))
}

/// Refuses a tenant token used on another tenant.
pub fn authorize(p: &Principal, tenant: &str) -> Result<(), ApiError> {
    match p {
        Principal::Operator => Ok(()),
        Principal::Tenant(own) if own == tenant => Ok(()),
        Principal::Tenant(_) => Err(ApiError::new(
            403,
            "forbidden",
            "this token belongs to another tenant",
        )),
    }
}

fn operator_only(p: &Principal) -> Result<(), ApiError> {
    match p {
        Principal::Operator => Ok(()),
        Principal::Tenant(_) => Err(ApiError::new(
            403,
            "forbidden",
            "only the operator token manages tenants",
        )),
    }
}

/// What a tenant's requests are checked against.
pub async fn catalog_of(env: &Env, tenant: &TenantRecord) -> Result<Catalog, ApiError> {
    match tenant.tenant.origin {
        OriginConfig::D1 => match D1Origin::cached_schema(&tenant.tenant.views) {
            Some(schema) => Ok(Catalog::D1(schema)),
            None => Ok(Catalog::D1(
                D1Origin::new(env.d1("DB")?)
                    .schema(&tenant.tenant.views)
                    .await?,
            )),
        },
        OriginConfig::Http { ref base_url } => Ok(Catalog::Http(base_url.clone())),
    }
}

/// Serves `/_edgecache/admin/…`; `rest` is the path after that prefix.
pub async fn serve(
    req: &mut Request,
    env: &Env,
    config: &Config,
    rest: &str,
) -> Result<Response, ApiError> {
    let principal = authenticate(req, env).await?;
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let url = req.url()?;
    let param = |name: &str| crate::runtime::http::query_param(&url, name);
    match (req.method(), segments.as_slice()) {
        (Method::Get, ["whoami"]) => match &principal {
            Principal::Operator => json(&json!({ "role": "operator" })),
            Principal::Tenant(t) => json(&json!({ "role": "tenant", "tenant": t })),
        },
        (Method::Get, ["tenants"]) => {
            operator_only(&principal)?;
            let list: Vec<Tenant> = registry::<(), _>(env, Method::Get, "/tenants", None).await?;
            json(&json!({ "tenants": list }))
        }
        (Method::Post, ["tenants"]) => {
            operator_only(&principal)?;
            let body: CreateTenant = read_json(req, MAX_ADMIN_BODY).await?;
            let created: CreatedTenant =
                registry(env, Method::Post, "/tenants", Some(&body)).await?;
            tenants::forget(&created.tenant.name);
            Ok(Response::from_json(&created)?.with_status(201))
        }
        (Method::Get, ["tenants", name]) => {
            authorize(&principal, name)?;
            let t = tenants::load(env, name).await.map_err(not_found_tenant)?;
            json(&json!({ "tenant": t.tenant }))
        }
        (Method::Delete, ["tenants", name]) => {
            operator_only(&principal)?;
            if *name == config.default_tenant {
                return Err(ApiError::new(
                    400,
                    "default_tenant",
                    "the default tenant cannot be deleted",
                ));
            }
            let record = tenants::load(env, name).await.map_err(not_found_tenant)?;
            // Drop what the tenant's coordinators know, so a tenant re-created under the same
            // name starts from a clean slate.
            if let Ok(catalog) = catalog_of(env, &record).await {
                for table in catalog.tables() {
                    Coordinator::of(env, name, &table)
                        .invalidate(&InvalidateRequest {
                            all: true,
                            ..Default::default()
                        })
                        .await?;
                }
            }
            let _: Tenant =
                registry::<(), _>(env, Method::Delete, &format!("/tenant?name={name}"), None)
                    .await?;
            tenants::forget(name);
            Ok(Response::empty()?.with_status(204))
        }
        (Method::Get, ["tenants", name, "rules"]) => {
            authorize(&principal, name)?;
            let t = tenants::load(env, name).await.map_err(not_found_tenant)?;
            json(&json!({ "rules": t.tenant.rules }))
        }
        (Method::Put, ["tenants", name, "rules"]) => {
            authorize(&principal, name)?;
            let rule: RouteRule = read_json(req, MAX_ADMIN_BODY)
                .await
                .map_err(|e| ApiError::new(400, "invalid_rule", e.message))?;
            check_rule(&rule)?;
            let saved: RouteRule = registry(
                env,
                Method::Put,
                &format!("/rules?name={name}"),
                Some(&rule),
            )
            .await?;
            tenants::forget(name);
            json(&json!({ "rule": saved }))
        }
        (Method::Delete, ["tenants", name, "rules"]) => {
            authorize(&principal, name)?;
            let pattern = param("pattern")
                .ok_or_else(|| ApiError::new(400, "bad_request", "give ?pattern="))?;
            let q = format!(
                "/rules?name={name}&pattern={}",
                edgecache_core::codec::encode_component(&pattern)
            );
            let _: Tenant = registry::<(), _>(env, Method::Delete, &q, None).await?;
            tenants::forget(name);
            Ok(Response::empty()?.with_status(204))
        }
        (Method::Post, ["tenants", name, "invalidate"]) => {
            authorize(&principal, name)?;
            let bytes = read_body(req, MAX_ADMIN_BODY).await?;
            let spec = InvalidationSpec::parse(&bytes)?;
            let t = tenants::load(env, name).await.map_err(not_found_tenant)?;
            let catalog = catalog_of(env, &t).await?;
            json(&invalidate::invalidate(env, config.l1_max_bytes, name, &catalog, &spec).await?)
        }
        (Method::Get, ["tenants", name, "deps"]) => {
            authorize(&principal, name)?;
            deps(
                env,
                name,
                param("url").or_else(|| param("key")),
                param("record"),
            )
            .await
        }
        (Method::Get, ["tenants", name, "stats"]) => {
            authorize(&principal, name)?;
            stats(env, config, name).await
        }
        _ => Err(ApiError::route_not_found(&format!(
            "/_edgecache/admin/{rest}"
        ))),
    }
}

/// What a URL depends on, or which keys hold a record.
pub async fn deps(
    env: &Env,
    tenant: &str,
    url: Option<String>,
    record: Option<String>,
) -> Result<Response, ApiError> {
    let t = tenants::load(env, tenant).await?;
    let catalog = catalog_of(env, &t).await?;
    let body = match (url, record) {
        (Some(u), None) => invalidate::deps_of_url(env, tenant, &catalog, &u).await?,
        (None, Some(r)) => invalidate::deps_of_record(env, tenant, &catalog, &r).await?,
        _ => {
            return Err(ApiError::new(
                400,
                "bad_request",
                "give exactly one of ?url=<path> or ?record=<table:id>",
            ))
        }
    };
    json(&body)
}

/// This isolate's counters for the tenant, L1's, and each table coordinator's.
pub async fn stats(env: &Env, config: &Config, tenant: &str) -> Result<Response, ApiError> {
    let t = tenants::load(env, tenant).await?;
    let edge = Edge::new(config.l1_max_bytes);
    let l1 = edge.l1_stats();
    let mut coordinators = BTreeMap::new();
    if let Ok(catalog) = catalog_of(env, &t).await {
        for table in catalog.tables() {
            let stats = Coordinator::of(env, tenant, &table).stats().await?;
            coordinators.insert(table, stats);
        }
    }
    let mut edge_json = serde_json::to_value(edge.counters(tenant))
        .map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
    edge_json["l1"] = json!({
        "entries": l1.entries,
        "bytes": l1.bytes,
        "max_bytes": l1.max_bytes,
        "evictions": l1.evictions,
        "rejections": l1.rejections,
    });
    json(
        &json!({ "tenant": tenant, "edge": edge_json, "l1": edge_json["l1"].clone(), "coordinators": coordinators }),
    )
}

fn not_found_tenant(e: ApiError) -> ApiError {
    if e.code == "unknown_tenant" {
        ApiError::new(404, "tenant_not_found", e.message)
    } else {
        e
    }
}
