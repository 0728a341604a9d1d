//! Manual invalidation and dependency inspection, shared by the signed webhook and the admin API.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use worker::Env;

use crate::cache::isolate::Edge;
use crate::coordinator::client::Coordinator;
use edgecache_core::catalog::Catalog;
use edgecache_core::invalidation::{key_of, InvalidationSpec};
use edgecache_core::protocol::{Dependent, Invalidated};
use edgecache_core::ApiError;

/// Carries out an invalidation; answers what was invalidated and each table's new seq.
pub async fn invalidate(
    env: &Env,
    l1_max_bytes: usize,
    tenant: &str,
    catalog: &Catalog,
    spec: &InvalidationSpec,
) -> Result<Value, ApiError> {
    let per_table = spec.per_table(tenant, catalog)?;
    let mut invalidated: Vec<Invalidated> = Vec::new();
    let mut seqs = BTreeMap::new();
    for (table, req) in per_table {
        let resp = Coordinator::of(env, tenant, &table)
            .with_origin(&catalog.origin())
            .invalidate(&req)
            .await?;
        // What was invalidated through this isolate is gone from it at once; elsewhere within
        // the route's staleness bound, or at once for readers presenting `seqs` as a token.
        Edge::new(l1_max_bytes).expire_view(&format!("{tenant}:{table}"));
        seqs.insert(table, resp.seq);
        invalidated.extend(resp.invalidated);
    }
    invalidated.sort_by(|a, b| a.key.cmp(&b.key));
    invalidated.dedup_by(|a, b| a.key == b.key);
    Ok(json!({ "invalidated": invalidated, "seqs": seqs }))
}

/// What a URL's key depends on, per table.
pub async fn deps_of_url(
    env: &Env,
    tenant: &str,
    catalog: &Catalog,
    url: &str,
) -> Result<Value, ApiError> {
    let (key, tables) = key_of(tenant, catalog, url)?;
    let mut entry = Value::Null;
    let mut per_table = serde_json::Map::new();
    for table in &tables {
        let info = Coordinator::of(env, tenant, table)
            .inspect_key(key.as_str())
            .await?;
        if let Some(reg) = &info.entry {
            if entry.is_null() {
                entry = json!({
                    "kind": reg.dependent.kind(),
                    "query": match &reg.dependent {
                        Dependent::List { query, .. } => json!(query),
                        _ => Value::Null,
                    },
                    "records": reg.records.iter().map(|r| format!("{table}:{r}")).collect::<Vec<_>>(),
                    "route": reg.route,
                    "rehydrate": reg.rehydrate,
                    "tables": {},
                });
            }
            entry["tables"][table] = json!(reg.stamp);
        }
        per_table.insert(
            table.clone(),
            json!({
                "registered_stamp": info.entry.as_ref().map(|r| r.stamp),
                "last_invalidated": info.last_invalidated.map(|(seq, reason)| json!({"seq": seq, "reason": reason})),
            }),
        );
    }
    Ok(json!({ "key": key.as_str(), "entry": entry, "coordinators": per_table }))
}

/// Which cached keys contain a record (`users:123-abc`).
pub async fn deps_of_record(
    env: &Env,
    tenant: &str,
    catalog: &Catalog,
    record: &str,
) -> Result<Value, ApiError> {
    let (table, id) = record.split_once(':').ok_or_else(|| {
        ApiError::new(
            400,
            "bad_record",
            "a record is written `table:id`, e.g. users:123-abc",
        )
    })?;
    catalog.table(table)?;
    let info = Coordinator::of(env, tenant, table)
        .inspect_record(id)
        .await?;
    Ok(json!({ "record": record, "keys": info.keys, "last_write": info.last_write }))
}
