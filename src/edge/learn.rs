//! The admin API's learning endpoints: what each of a tenant's tables has learned (shadow
//! counts, learned rules, dependency candidates, hypotheses), and forgetting a rule, a
//! hypothesis, a candidate or all of a table's learning. The learning setting itself is a
//! tenant setting (`PATCH /tenants/{name}`: `learning`, `learning_frozen`).

use worker::{Env, Response, Url};

use super::admin::{answer, authorize, Principal};
use super::tenants::{self, catalog_of};
use crate::cache::isolate::Edge;
use crate::coordinator::client::Coordinator;
use crate::runtime::http::query_param;
use edgecache_core::catalog::Catalog;
use edgecache_core::codec::decode;
use edgecache_core::learned_ref::{LearnedKind, LearnedRef};
use edgecache_core::protocol::{LearnStatus, OriginConfig, Tenant};
use edgecache_core::{ApiError, CoordinatorId};

/// `GET /tenants/{name}/learn[?table=T]`: each table's learning (one table with `?table=`).
pub async fn status(
    env: &Env,
    p: &Principal,
    tenant: &str,
    url: &Url,
) -> Result<Response, ApiError> {
    authorize(p, tenant)?;
    let record = tenants::load(env, tenant).await?;
    let catalog = catalog_of(env, &record).await?;
    let only = query_param(url, "table");
    let tables = tables_of(&record.tenant, &catalog);
    if let Some(table) = only.as_ref().filter(|t| !tables.contains(t)) {
        return Err(unknown_table(table));
    }
    let source = record.tenant.origin.source();
    let mut status = LearnStatus {
        tenant: tenant.to_string(),
        learning: record.tenant.learning,
        tables: Vec::new(),
    };
    for table in tables
        .iter()
        .filter(|t| only.as_ref().is_none_or(|o| o == *t))
    {
        let id = CoordinatorId::new(&source, table);
        status
            .tables
            .push(Coordinator::of(env, &id).learning().await?);
    }
    answer(&status)
}

/// `DELETE /tenants/{name}/learn/rules/{id}` (`id`: `<table>:<n>`): forgets a learned rule and
/// the evidence it was learned from.
pub async fn forget(
    env: &Env,
    p: &Principal,
    tenant: &str,
    rule: &str,
) -> Result<Response, ApiError> {
    authorize(p, tenant)?;
    let rule = &path_segment(rule);
    let bad = || {
        ApiError::new(
            400,
            "bad_rule_id",
            format!("a learned rule's id looks like `users:3`, not `{rule}`"),
        )
    };
    let (table, n) = rule.rsplit_once(':').ok_or_else(bad)?;
    let n: u64 = n.parse().map_err(|_| bad())?;
    let (_, coordinator) = coordinator_of(env, tenant, table).await?;
    answer(&coordinator.forget_rule(n).await?)
}

/// `DELETE /tenants/{name}/learn/hypotheses/{id}` (`id`: `<table>:h<8 hex>`, as `learn status`
/// shows it): forgets a learned hypothesis (list semantics or write-through) and invalidates
/// every key kept under its route.
pub async fn forget_hypothesis(
    env: &Env,
    l1_max_bytes: usize,
    p: &Principal,
    tenant: &str,
    id: &str,
) -> Result<Response, ApiError> {
    authorize(p, tenant)?;
    let target = learned_ref(id, LearnedKind::Hypothesis)?;
    let (id, coordinator) = coordinator_of(env, tenant, &target.table).await?;
    let gone = coordinator.forget_hypothesis(&target.to_string()).await?;
    // As after a manual invalidation: what it invalidated is gone from this isolate at once,
    // elsewhere within the route's staleness bound, or at once for a read presenting `seq`.
    Edge::new(l1_max_bytes).expire_view(&id);
    answer(&gone)
}

/// `DELETE /tenants/{name}/learn/candidates/{id}` (`id`: `<table>:c<8 hex>`, as `learn status`
/// shows it): forgets a dependency candidate's evidence. Unlike a hypothesis's, this
/// invalidates nothing and leaves the edge's view alone: a candidate is not a rule, so no plan
/// ever used it and no key was kept or invalidated under it.
pub async fn forget_candidate(
    env: &Env,
    p: &Principal,
    tenant: &str,
    id: &str,
) -> Result<Response, ApiError> {
    authorize(p, tenant)?;
    let target = learned_ref(id, LearnedKind::Candidate)?;
    let (_, coordinator) = coordinator_of(env, tenant, &target.table).await?;
    answer(&coordinator.forget_candidate(&target.to_string()).await?)
}

/// `DELETE /tenants/{name}/learn/tables/{table}`: forgets everything the table learned (rules,
/// dependency evidence, list semantics, write-through) and invalidates every key kept under it.
pub async fn forget_table(
    env: &Env,
    l1_max_bytes: usize,
    p: &Principal,
    tenant: &str,
    table: &str,
) -> Result<Response, ApiError> {
    authorize(p, tenant)?;
    let (id, coordinator) = coordinator_of(env, tenant, &path_segment(table)).await?;
    let gone = coordinator.forget_all().await?;
    Edge::new(l1_max_bytes).expire_view(&id);
    answer(&gone)
}

/// A path segment as sent: clients may percent-encode the `:` of an id.
fn path_segment(segment: &str) -> String {
    decode(segment, false).unwrap_or_else(|_| segment.to_string())
}

/// The path segment `id` as the name of a `kind` of learning: `400 bad_<kind>_id` otherwise.
fn learned_ref(id: &str, kind: LearnedKind) -> Result<LearnedRef, ApiError> {
    let id = path_segment(id);
    LearnedRef::parse(&id, kind)
        .ok_or_else(|| ApiError::new(400, &format!("bad_{}_id", kind.as_str()), kind.bad_id(&id)))
}

/// The coordinator of `tenant`'s `table` with its id, if the tenant has the table (the caller
/// is authorized first).
async fn coordinator_of<'a>(
    env: &'a Env,
    tenant: &str,
    table: &str,
) -> Result<(CoordinatorId, Coordinator<'a>), ApiError> {
    let record = tenants::load(env, tenant).await?;
    let catalog = catalog_of(env, &record).await?;
    if !tables_of(&record.tenant, &catalog)
        .iter()
        .any(|t| t == table)
    {
        return Err(unknown_table(table));
    }
    let id = CoordinatorId::new(&record.tenant.origin.source(), table);
    let coordinator = Coordinator::of(env, &id);
    Ok((id, coordinator))
}

/// The tenant's tables: its HTTP origin's known ones, or the D1 schema's.
fn tables_of(tenant: &Tenant, catalog: &Catalog) -> Vec<String> {
    match tenant.origin {
        OriginConfig::D1 => catalog.tables(),
        OriginConfig::Http { .. } => tenant.tables.clone(),
    }
}

fn unknown_table(table: &str) -> ApiError {
    ApiError::new(
        404,
        "table_not_found",
        format!("the tenant has no table `{table}`"),
    )
}
