//! The admin API (`/_edgecache/admin/…`) and the operator endpoints that share its auth:
//! bearer tokens (the operator's, or a tenant's own admin token), JSON in and out.

use std::collections::BTreeMap;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Env, Method, Request, Response, Url};

use super::invalidate;
use super::learn;
use super::tenants::{self, catalog_of, registry};
use super::throttle::{self, Bucket};
use super::write::{self, WriteContext};
use crate::cache::isolate::Edge;
use crate::coordinator::client::Coordinator;
use crate::runtime::env::secret;
use crate::runtime::http::{json, query_param, read_body, read_json};
use edgecache_core::access::{CreateKey, CreatedKey, KeyInfo, KeyList};
use edgecache_core::auth::{constant_time_eq, hash_token, parse_bearer};
use edgecache_core::codec::encode_component;
use edgecache_core::config::Config;
use edgecache_core::explain::unsupported_origin;
use edgecache_core::invalidation::InvalidationSpec;
use edgecache_core::origin::OriginError;
use edgecache_core::protocol::{
    CreateTenant, CreatedTenant, EdgeCounters, ExplainRequest, ExplainWrite, InvalidateRequest,
    OriginConfig, RuleEnvelope, RuleList, Tenant, TenantEnvelope, TenantList, TenantRecord,
    TenantSettings, TenantStats, Whoami,
};
use edgecache_core::route;
use edgecache_core::rules::{check_rule, RouteRule};
use edgecache_core::schema::RelationKind;
use edgecache_core::{ApiError, CoordinatorId};

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
    let operator = secret(env, "EDGECACHE_OPERATOR_TOKEN");
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

/// Serves `/_edgecache/admin/…`; `rest` is the path after that prefix.
pub async fn serve(
    req: &mut Request,
    env: &Env,
    config: &Config,
    rest: &str,
) -> Result<Response, ApiError> {
    let p = authenticate(req, env).await?;
    // The operator is the deployment's owner; each tenant's token has a budget of its own.
    if let Principal::Tenant(tenant) = &p {
        throttle::check_for(tenant, config, Bucket::AdminCall)?;
    }
    let url = req.url()?;
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (Method::Get, ["whoami"]) => answer(&whoami(&p)),
        (Method::Get, ["tenants"]) => list_tenants(env, &p).await,
        (Method::Post, ["tenants"]) => create_tenant(req, env, &p).await,
        (Method::Get, ["tenants", name]) => show_tenant(env, &p, name).await,
        (Method::Patch, ["tenants", name]) => update_tenant(req, env, &p, name).await,
        (Method::Get, ["tenants", name, "keys"]) => list_keys(env, &p, name).await,
        (Method::Post, ["tenants", name, "keys"]) => create_key(req, env, &p, name).await,
        (Method::Delete, ["tenants", name, "keys", key]) => revoke_key(env, &p, name, key).await,
        (Method::Delete, ["tenants", name]) => delete_tenant(env, config, &p, name).await,
        (Method::Get, ["tenants", name, "rules"]) => list_rules(env, &p, name).await,
        (Method::Put, ["tenants", name, "rules"]) => put_rule(req, env, &p, name).await,
        (Method::Delete, ["tenants", name, "rules"]) => delete_rule(env, &p, name, &url).await,
        (Method::Post, ["tenants", name, "invalidate"]) => {
            invalidate(req, env, config, &p, name).await
        }
        (Method::Get, ["tenants", name, "deps"]) => deps(env, &p, name, &url).await,
        (Method::Post, ["tenants", name, "explain"]) => {
            explain_write(req, env, config, &p, name).await
        }
        (Method::Get, ["tenants", name, "stats"]) => stats(env, config, &p, name).await,
        (Method::Get, ["tenants", name, "learn"]) => learn::status(env, &p, name, &url).await,
        (Method::Delete, ["tenants", name, "learn", "rules", rule]) => {
            learn::forget(env, &p, name, rule).await
        }
        (Method::Delete, ["tenants", name, "learn", "hypotheses", id]) => {
            learn::forget_hypothesis(env, config.l1_max_bytes, &p, name, id).await
        }
        (Method::Delete, ["tenants", name, "learn", "candidates", id]) => {
            learn::forget_candidate(env, &p, name, id).await
        }
        (Method::Delete, ["tenants", name, "learn", "tables", table]) => {
            learn::forget_table(env, config.l1_max_bytes, &p, name, table).await
        }
        (Method::Get, ["beta"]) => {
            operator_only(&p)?;
            answer(&super::beta::list(env).await?)
        }
        _ => Err(ApiError::route_not_found(&format!(
            "/_edgecache/admin/{rest}"
        ))),
    }
}

/// `GET /whoami`.
fn whoami(p: &Principal) -> Whoami {
    match p {
        Principal::Operator => Whoami {
            role: "operator".into(),
            tenant: None,
        },
        Principal::Tenant(t) => Whoami {
            role: "tenant".into(),
            tenant: Some(t.clone()),
        },
    }
}

/// `GET /tenants`.
async fn list_tenants(env: &Env, p: &Principal) -> Result<Response, ApiError> {
    operator_only(p)?;
    let tenants: Vec<Tenant> = registry::<(), _>(env, Method::Get, "/tenants", None).await?;
    answer(&TenantList { tenants })
}

/// `POST /tenants`: 201 with the new tenant's credentials.
async fn create_tenant(req: &mut Request, env: &Env, p: &Principal) -> Result<Response, ApiError> {
    operator_only(p)?;
    let body: CreateTenant = read_json(req, MAX_ADMIN_BODY).await?;
    let created: CreatedTenant =
        change(env, Method::Post, "/tenants", Some(&body), &body.name).await?;
    Ok(Response::from_json(&created)?.with_status(201))
}

/// `GET /tenants/{name}`.
async fn show_tenant(env: &Env, p: &Principal, name: &str) -> Result<Response, ApiError> {
    authorize(p, name)?;
    let record = existing(env, name).await?;
    answer(&TenantEnvelope {
        tenant: record.tenant.redacted(),
    })
}

/// `PATCH /tenants/{name}`: access settings and origin credentials (a tenant's own admin may
/// change them: they protect its own API).
async fn update_tenant(
    req: &mut Request,
    env: &Env,
    p: &Principal,
    name: &str,
) -> Result<Response, ApiError> {
    authorize(p, name)?;
    let settings: TenantSettings = read_json(req, MAX_ADMIN_BODY).await?;
    existing(env, name).await?;
    let path = format!("/tenant?name={name}");
    let tenant: Tenant = change(env, Method::Patch, &path, Some(&settings), name).await?;
    answer(&TenantEnvelope { tenant })
}

/// `GET /tenants/{name}/keys`: names, scopes and times; never a key or its hash.
async fn list_keys(env: &Env, p: &Principal, name: &str) -> Result<Response, ApiError> {
    authorize(p, name)?;
    existing(env, name).await?;
    let keys: KeyList =
        registry::<(), _>(env, Method::Get, &format!("/keys?name={name}"), None).await?;
    answer(&keys)
}

/// `POST /tenants/{name}/keys`: 201 with the key, shown this once.
async fn create_key(
    req: &mut Request,
    env: &Env,
    p: &Principal,
    name: &str,
) -> Result<Response, ApiError> {
    authorize(p, name)?;
    let body: CreateKey = read_json(req, MAX_ADMIN_BODY).await?;
    existing(env, name).await?;
    let path = format!("/keys?name={name}");
    let created: CreatedKey = change(env, Method::Post, &path, Some(&body), name).await?;
    let mut resp = Response::from_json(&created)?.with_status(201);
    resp.headers_mut().set("cache-control", "no-store")?;
    Ok(resp)
}

/// `DELETE /tenants/{name}/keys/{key}`: the key stops working on every edge within the
/// tenant-configuration bound.
async fn revoke_key(env: &Env, p: &Principal, name: &str, key: &str) -> Result<Response, ApiError> {
    authorize(p, name)?;
    existing(env, name).await?;
    let path = format!("/keys?name={name}&key={}", encode_component(key));
    let _: KeyInfo = change::<(), _>(env, Method::Delete, &path, None, name).await?;
    Ok(Response::empty()?.with_status(204))
}

/// `DELETE /tenants/{name}`: every tenant but the default one.
async fn delete_tenant(
    env: &Env,
    config: &Config,
    p: &Principal,
    name: &str,
) -> Result<Response, ApiError> {
    operator_only(p)?;
    if name == config.default_tenant {
        return Err(ApiError::new(
            400,
            "default_tenant",
            "the default tenant cannot be deleted",
        ));
    }
    let record = existing(env, name).await?;
    // Drop the tenant's keys from its coordinators (which other tenants of its data source
    // share), so a tenant re-created under the same name starts from a clean slate.
    if let Ok(catalog) = catalog_of(env, &record).await {
        let own = InvalidateRequest {
            prefixes: vec![format!("{name}:")],
            ..Default::default()
        };
        let source = record.tenant.origin.source();
        for table in catalog.tables() {
            Coordinator::of(env, &CoordinatorId::new(&source, &table))
                .invalidate(&own)
                .await?;
        }
    }
    let path = format!("/tenant?name={name}");
    let _: Tenant = change::<(), _>(env, Method::Delete, &path, None, name).await?;
    Ok(Response::empty()?.with_status(204))
}

/// `GET /tenants/{name}/rules`.
async fn list_rules(env: &Env, p: &Principal, name: &str) -> Result<Response, ApiError> {
    authorize(p, name)?;
    let record = existing(env, name).await?;
    answer(&RuleList {
        rules: record.tenant.rules.clone(),
    })
}

/// `PUT /tenants/{name}/rules`: adds the rule, or replaces the one with its pattern.
async fn put_rule(
    req: &mut Request,
    env: &Env,
    p: &Principal,
    name: &str,
) -> Result<Response, ApiError> {
    authorize(p, name)?;
    // A body that is not a rule is the rule's fault; one that is too large stays a 413.
    let rule: RouteRule = read_json(req, MAX_ADMIN_BODY)
        .await
        .map_err(|e| match e.status {
            400 => ApiError::new(400, "invalid_rule", e.message),
            _ => e,
        })?;
    check_rule(&rule)?;
    let path = format!("/rules?name={name}");
    let rule: RouteRule = change(env, Method::Put, &path, Some(&rule), name).await?;
    answer(&RuleEnvelope { rule })
}

/// `DELETE /tenants/{name}/rules?pattern=`.
async fn delete_rule(
    env: &Env,
    p: &Principal,
    name: &str,
    url: &Url,
) -> Result<Response, ApiError> {
    authorize(p, name)?;
    let pattern = query_param(url, "pattern")
        .ok_or_else(|| ApiError::new(400, "bad_request", "give ?pattern="))?;
    let path = format!("/rules?name={name}&pattern={}", encode_component(&pattern));
    let _: Tenant = change::<(), _>(env, Method::Delete, &path, None, name).await?;
    Ok(Response::empty()?.with_status(204))
}

/// `POST /tenants/{name}/invalidate`: the admin API's twin of the signed webhook.
async fn invalidate(
    req: &mut Request,
    env: &Env,
    config: &Config,
    p: &Principal,
    name: &str,
) -> Result<Response, ApiError> {
    authorize(p, name)?;
    if let Principal::Tenant(tenant) = p {
        throttle::check_for(tenant, config, Bucket::Invalidation)?;
    }
    let bytes = read_body(req, MAX_ADMIN_BODY).await?;
    let spec = InvalidationSpec::parse(&bytes)?;
    let record = existing(env, name).await?;
    answer(&invalidate::invalidate(env, config.l1_max_bytes, name, &record, &spec).await?)
}

/// `GET …/deps?url=<path>` (or `?key=`): what a URL depends on; `?record=<table:id>`: which
/// keys hold a record.
pub async fn deps(env: &Env, p: &Principal, tenant: &str, url: &Url) -> Result<Response, ApiError> {
    authorize(p, tenant)?;
    let param = |name: &str| query_param(url, name);
    let record = tenants::load(env, tenant).await?;
    let catalog = catalog_of(env, &record).await?;
    match (param("url").or_else(|| param("key")), param("record")) {
        (Some(u), None) => answer(&invalidate::deps_of_url(env, &record, &catalog, &u).await?),
        (None, Some(r)) => answer(&invalidate::deps_of_record(env, &record, &catalog, &r).await?),
        _ => Err(ApiError::new(
            400,
            "bad_request",
            "give exactly one of ?url=<path> or ?record=<table:id>",
        )),
    }
}

/// `POST /tenants/{name}/explain` `{"method","path","body"}`: which of the tenant's cached keys
/// the write would invalidate, refresh or spare, and why, without writing (D1 origins).
async fn explain_write(
    req: &mut Request,
    env: &Env,
    config: &Config,
    p: &Principal,
    name: &str,
) -> Result<Response, ApiError> {
    authorize(p, name)?;
    let record = existing(env, name).await?;
    let asked: ExplainWrite = read_json(req, MAX_ADMIN_BODY).await?;
    let method = match asked.method.to_ascii_uppercase().as_str() {
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        other => {
            return Err(ApiError::new(
                400,
                "bad_method",
                format!("`{other}` is not a write: explain POST, PUT, PATCH or DELETE"),
            ))
        }
    };
    let origin = &record.tenant.origin;
    if !matches!(origin, OriginConfig::D1) {
        return Err(unsupported_origin());
    }
    let path = asked.path.split('?').next().unwrap_or_default();
    let resource = route::resource(path).ok_or_else(|| ApiError::route_not_found(path))?;
    let catalog = catalog_of(env, &record).await?;
    let relation = catalog
        .relation(&resource.relation)
        .ok_or_else(|| OriginError::UnknownRelation(resource.relation.clone()))?;
    if relation.kind == RelationKind::View {
        return Err(OriginError::ReadOnlyView(relation.name.clone()).into());
    }
    let wc = WriteContext {
        env,
        config,
        tenant: name,
        relation: &relation,
        resource: &resource,
        origin,
        access: &record.tenant.access,
        learn: None,
    };
    let body = match &asked.body {
        Some(body) => serde_json::to_vec(body).map_err(|e| ApiError::internal(e.to_string()))?,
        None => Vec::new(),
    };
    let op = write::d1_op(&method, &wc, &body)?;
    let id = CoordinatorId::new(&origin.source(), &relation.name);
    let explained = Coordinator::of(env, &id)
        .for_tenant(name, origin)
        .explain(&ExplainRequest {
            table: relation.name.clone(),
            op,
        })
        .await?;
    answer(&explained)
}

/// `GET …/stats`: this isolate's counters for the tenant, L1's, and each table coordinator's.
pub async fn stats(
    env: &Env,
    config: &Config,
    p: &Principal,
    tenant: &str,
) -> Result<Response, ApiError> {
    authorize(p, tenant)?;
    let record = tenants::load(env, tenant).await?;
    let edge = Edge::new(config.l1_max_bytes);
    let l1 = edge.l1_stats();
    let (mut coordinators, mut views) = (BTreeMap::new(), BTreeMap::new());
    if let Ok(catalog) = catalog_of(env, &record).await {
        let source = record.tenant.origin.source();
        // An HTTP origin's tables are the tenant's declared and learned ones.
        let tables = match catalog.tables() {
            t if t.is_empty() => record.tenant.tables.clone(),
            t => t,
        };
        for table in tables {
            let id = CoordinatorId::new(&source, &table);
            let stats = Coordinator::of(env, &id).stats().await?;
            views.insert(table.clone(), edge.lag_summary(&id));
            coordinators.insert(table, stats);
        }
    }
    let counters = EdgeCounters {
        l1: Some(l1.clone()),
        ..edge.counters(tenant)
    };
    answer(&TenantStats {
        tenant: tenant.to_string(),
        edge: counters,
        l1,
        coordinators,
        views,
    })
}

/// The tenant behind an admin path (404 `tenant_not_found` if there is none).
async fn existing(env: &Env, name: &str) -> Result<Rc<TenantRecord>, ApiError> {
    tenants::load(env, name).await.map_err(|e| {
        if e.code == "unknown_tenant" {
            ApiError::new(404, "tenant_not_found", e.message)
        } else {
            e
        }
    })
}

/// Changes a tenant in the registry, then drops this isolate's copy of it.
async fn change<B: Serialize, T: DeserializeOwned>(
    env: &Env,
    method: Method,
    path: &str,
    body: Option<&B>,
    tenant: &str,
) -> Result<T, ApiError> {
    let changed = registry(env, method, path, body).await?;
    tenants::forget(tenant);
    Ok(changed)
}

/// A 200 JSON answer with every object's keys sorted: the order the admin API's answers have
/// always had.
pub fn answer<T: Serialize>(body: &T) -> Result<Response, ApiError> {
    json(&to_value(body)?)
}

fn to_value<T: Serialize>(value: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::internal(e.to_string()))
}
