//! Tenant configuration at the edge: fetched from the registry and kept in isolate memory for a
//! short bound, so rule changes and deletions take effect within seconds.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use worker::{Env, Method};

use crate::origin::d1::D1Origin;
pub use crate::registry::client::registry;
use crate::runtime::env::with_isolate_config;
use crate::runtime::platform::now_ms;
use edgecache_core::catalog::Catalog;
use edgecache_core::protocol::{OriginConfig, TenantRecord};
use edgecache_core::schema::Scope;
use edgecache_core::ApiError;

/// How long an edge trusts its copy of a tenant's configuration (or of its absence).
pub const TENANT_CACHE_MS: u64 = 2_000;
/// Names an isolate remembers; past it the memory starts over (it is only a cache).
const MAX_CACHED_TENANTS: usize = 4096;

/// A tenant's record as this isolate last fetched it (`None`: no such tenant), and when.
type CachedTenant = (Option<Rc<TenantRecord>>, u64);

thread_local! {
    // `None` remembers that a name is no tenant, so a flood of requests for made-up tenants
    // does not become a flood of registry calls. Shared (`Rc`): every request reads the
    // record, and copying its rules, views and key hashes was a measurable part of a hit.
    static TENANTS: RefCell<HashMap<String, CachedTenant>> =
        RefCell::new(HashMap::new());
}

/// The tenant's configuration (404 `unknown_tenant` if there is no such tenant).
pub async fn load(env: &Env, name: &str) -> Result<Rc<TenantRecord>, ApiError> {
    let now = now_ms();
    if let Some((t, at)) = TENANTS.with(|c| c.borrow().get(name).cloned()) {
        if now.saturating_sub(at) < TENANT_CACHE_MS {
            return t.ok_or_else(|| unknown(name));
        }
    }
    if !edgecache_core::key::valid_tenant_name(name) {
        return Err(unknown(name));
    }
    let found =
        match registry::<(), _>(env, Method::Get, &format!("/tenant?name={name}"), None).await {
            Ok(record) => Some(Rc::new(record)),
            Err(e) if e.code == "tenant_not_found" => None,
            Err(e) => return Err(e),
        };
    TENANTS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= MAX_CACHED_TENANTS {
            c.clear();
        }
        c.insert(name.to_string(), (found.clone(), now))
    });
    found.ok_or_else(|| unknown(name))
}

/// Drops this isolate's copy after a change made through it.
pub fn forget(name: &str) {
    TENANTS.with(|c| {
        c.borrow_mut().remove(name);
    });
}

/// What a tenant's requests are checked against.
/// On the D1 origin that is the schema in the tenant's scope: the demo tenant's `demo_*` tables
/// only, every other table for the others.
pub async fn catalog_of(env: &Env, tenant: &TenantRecord) -> Result<Catalog, ApiError> {
    match tenant.tenant.origin {
        OriginConfig::D1 => {
            let name = &tenant.tenant.name;
            let scope = with_isolate_config(env, |c| Scope::of(name, &c.demo_tenant))?;
            let views = &tenant.tenant.views;
            match D1Origin::cached_schema(views, scope) {
                Some(schema) => Ok(Catalog::D1(schema)),
                None => Ok(Catalog::D1(
                    D1Origin::new(env.d1("DB")?).schema(views, scope).await?,
                )),
            }
        }
        OriginConfig::Http { ref base_url, .. } => Ok(Catalog::Http(base_url.clone())),
    }
}

fn unknown(name: &str) -> ApiError {
    ApiError::new(404, "unknown_tenant", format!("no tenant named `{name}`"))
}
