//! Manual invalidation and dependency inspection, shared by the signed webhook and the admin API.

use std::collections::BTreeMap;

use worker::Env;

use super::tenants::catalog_of;
use crate::cache::isolate::Edge;
use crate::coordinator::client::Coordinator;
use edgecache_core::catalog::Catalog;
use edgecache_core::invalidation::{key_of, InvalidationSpec};
use edgecache_core::protocol::{
    DepEntry, Dependent, InvalidationResult, KeyAtTable, KeyDeps, LastInvalidation, RecordDeps,
    Registration, TenantRecord,
};
use edgecache_core::{ApiError, CoordinatorId};

/// Carries out an invalidation for tenant `name`; answers what was invalidated and each table's
/// new seq.
pub async fn invalidate(
    env: &Env,
    l1_max_bytes: usize,
    name: &str,
    tenant: &TenantRecord,
    spec: &InvalidationSpec,
) -> Result<InvalidationResult, ApiError> {
    let catalog = catalog_of(env, tenant).await?;
    let origin = &tenant.tenant.origin;
    let source = origin.source();
    let mut result = InvalidationResult::default();
    for (table, req) in spec.per_table(name, &catalog)? {
        let id = CoordinatorId::new(&source, &table);
        let resp = Coordinator::of(env, &id)
            .for_tenant(name, origin)
            .invalidate(&req)
            .await?;
        // What was invalidated through this isolate is gone from it at once; elsewhere within
        // the route's staleness bound, or at once for readers presenting `seqs` as a token.
        Edge::new(l1_max_bytes).expire_view(&id);
        result.seqs.insert(table, resp.seq);
        result.invalidated.extend(resp.invalidated);
    }
    result.invalidated.sort_by(|a, b| a.key.cmp(&b.key));
    result.invalidated.dedup_by(|a, b| a.key == b.key);
    Ok(result)
}

/// What a URL's key depends on, per table.
pub async fn deps_of_url(
    env: &Env,
    tenant: &TenantRecord,
    catalog: &Catalog,
    url: &str,
) -> Result<KeyDeps, ApiError> {
    let source = tenant.tenant.origin.source();
    let (key, tables) = key_of(&tenant.tenant.name, catalog, url)?;
    let mut deps = KeyDeps {
        key: key.as_str().to_string(),
        ..KeyDeps::default()
    };
    for table in &tables {
        let info = Coordinator::of(env, &CoordinatorId::new(&source, table))
            .inspect_key(key.as_str())
            .await?;
        if let Some(reg) = &info.entry {
            deps.entry
                .get_or_insert_with(|| entry_of(table, reg))
                .tables
                .insert(table.clone(), reg.stamp);
        }
        let at_table = KeyAtTable {
            registered_stamp: info.entry.as_ref().map(|r| r.stamp),
            last_invalidated: info
                .last_invalidated
                .map(|(seq, reason)| LastInvalidation { seq, reason }),
        };
        deps.coordinators.insert(table.clone(), at_table);
    }
    Ok(deps)
}

/// A key's entry as the first table that registered it describes it; stamps are added per table.
fn entry_of(table: &str, reg: &Registration) -> DepEntry {
    DepEntry {
        kind: reg.dependent.kind().to_string(),
        query: match &reg.dependent {
            Dependent::List { query, .. } => Some(query.clone()),
            _ => None,
        },
        records: reg.records.iter().map(|r| format!("{table}:{r}")).collect(),
        route: reg.route.clone(),
        rehydrate: reg.rehydrate,
        tables: BTreeMap::new(),
    }
}

/// Which of the tenant's cached keys contain a record (`users:123-abc`). Other tenants on the
/// same data source hold keys of it too; those are theirs to see.
pub async fn deps_of_record(
    env: &Env,
    tenant: &TenantRecord,
    catalog: &Catalog,
    record: &str,
) -> Result<RecordDeps, ApiError> {
    let (table, id) = record.split_once(':').ok_or_else(|| {
        ApiError::new(
            400,
            "bad_record",
            "a record is written `table:id`, e.g. users:123-abc",
        )
    })?;
    catalog.table(table)?;
    let source = tenant.tenant.origin.source();
    let info = Coordinator::of(env, &CoordinatorId::new(&source, table))
        .inspect_record(id)
        .await?;
    let own = format!("{}:", tenant.tenant.name);
    Ok(RecordDeps {
        record: record.to_string(),
        keys: info
            .keys
            .into_iter()
            .filter(|k| k.starts_with(&own))
            .collect(),
        last_write: info.last_write,
    })
}
