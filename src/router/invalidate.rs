//! Manual invalidation and dependency inspection, shared by the signed webhook and the admin API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::Env;

use super::error::ApiError;
use super::route;
use crate::cache::edge::Edge;
use crate::dependency::key::CacheKey;
use crate::durable::client::Coordinator;
use crate::durable::protocol::{Dependent, InvalidateRequest, Invalidated};
use crate::origin::catalog::Catalog;

/// Most items one invalidation request may name (each may fan out to several coordinators).
pub const MAX_ITEMS: usize = 1000;
/// Largest invalidation body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A record named by table and id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordRef {
    /// Table.
    pub table: String,
    /// Record id.
    pub id: String,
}

/// What to invalidate: any mix of URLs, records, whole tables and key prefixes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidationSpec {
    /// Paths with query (`/v1/users?limit=10`) or absolute URLs.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Records.
    #[serde(default)]
    pub records: Vec<RecordRef>,
    /// Whole tables.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Path prefixes (`/v1/users`): every cached key whose path starts with one.
    #[serde(default)]
    pub prefixes: Vec<String>,
}

impl InvalidationSpec {
    /// Parses and checks a request body.
    pub fn parse(bytes: &[u8]) -> Result<InvalidationSpec, ApiError> {
        let spec: InvalidationSpec = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::new(
                400,
                "bad_body",
                format!("expected {{\"urls\", \"records\", \"tables\", \"prefixes\"}}: {e}"),
            )
        })?;
        let n = spec.urls.len() + spec.records.len() + spec.tables.len() + spec.prefixes.len();
        if n == 0 {
            return Err(ApiError::new(
                400,
                "bad_body",
                "name at least one of urls, records, tables, prefixes",
            ));
        }
        if n > MAX_ITEMS {
            return Err(ApiError::new(
                413,
                "too_many_items",
                format!("at most {MAX_ITEMS} items per request"),
            ));
        }
        Ok(spec)
    }
}

/// Splits `/v1/users?limit=10` (or a full URL) into path and query.
fn split_url(url: &str) -> (String, Option<String>) {
    let rest = match url.find("://") {
        Some(i) => url[i + 3..]
            .find('/')
            .map(|j| &url[i + 3 + j..])
            .unwrap_or("/"),
        None => url,
    };
    let rest = rest.split('#').next().unwrap_or(rest);
    match rest.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (rest.to_string(), None),
    }
}

/// The cache key of a URL for a tenant, and the tables its relation reads.
pub fn key_of(
    tenant: &str,
    catalog: &Catalog,
    url: &str,
) -> Result<(CacheKey, Vec<String>), ApiError> {
    let (path, query) = split_url(url);
    let path = route::address("", &path, None, tenant).path;
    let key = CacheKey::from_request(tenant, &path, query.as_deref())?;
    let resource = route::resource(key.encoded_path())
        .ok_or_else(|| ApiError::new(400, "bad_url", format!("`{url}` is not a /v1/ URL")))?;
    let relation = catalog.relation(&resource.relation).ok_or_else(|| {
        ApiError::new(
            404,
            "unknown_table",
            format!("no table or view named `{}`", resource.relation),
        )
    })?;
    Ok((key, relation.tables.clone()))
}

/// Carries out an invalidation; answers what was invalidated and each table's new seq.
pub async fn invalidate(
    env: &Env,
    l1_max_bytes: usize,
    tenant: &str,
    catalog: &Catalog,
    spec: &InvalidationSpec,
) -> Result<Value, ApiError> {
    let mut per_table: BTreeMap<String, InvalidateRequest> = BTreeMap::new();
    for url in &spec.urls {
        let (key, tables) = key_of(tenant, catalog, url)?;
        for t in tables {
            per_table
                .entry(t)
                .or_default()
                .keys
                .push(key.as_str().to_string());
        }
    }
    for r in &spec.records {
        known_table(catalog, &r.table)?;
        per_table
            .entry(r.table.clone())
            .or_default()
            .records
            .push(r.id.clone());
    }
    for t in &spec.tables {
        known_table(catalog, t)?;
        per_table.entry(t.clone()).or_default().all = true;
    }
    for prefix in &spec.prefixes {
        if !prefix.starts_with("/v1/") {
            return Err(ApiError::new(
                400,
                "bad_prefix",
                format!("`{prefix}` must start with /v1/"),
            ));
        }
        for relation in catalog.relations_under(prefix) {
            {
                for t in &relation.tables {
                    per_table
                        .entry(t.clone())
                        .or_default()
                        .prefixes
                        .push(format!("{tenant}:{prefix}"));
                }
            }
        }
    }
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

fn known_table(catalog: &Catalog, table: &str) -> Result<(), ApiError> {
    match catalog.relation(table) {
        Some(r) if r.kind == crate::origin::schema::RelationKind::Table => Ok(()),
        _ => Err(ApiError::new(
            404,
            "unknown_table",
            format!("no table named `{table}`"),
        )),
    }
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
    known_table(catalog, table)?;
    let info = Coordinator::of(env, tenant, table)
        .inspect_record(id)
        .await?;
    Ok(json!({ "record": record, "keys": info.keys, "last_write": info.last_write }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_with_or_without_origin() {
        assert_eq!(
            split_url("/v1/users?limit=10"),
            ("/v1/users".into(), Some("limit=10".into()))
        );
        assert_eq!(
            split_url("https://x.example.com/v1/users#f"),
            ("/v1/users".into(), None)
        );
        assert_eq!(split_url("http://h"), ("/".into(), None));
    }

    #[test]
    fn specs_are_checked() {
        assert!(InvalidationSpec::parse(br#"{"tables":["users"]}"#).is_ok());
        assert_eq!(InvalidationSpec::parse(b"{}").unwrap_err().code, "bad_body");
        assert_eq!(
            InvalidationSpec::parse(br#"{"nope":1}"#).unwrap_err().code,
            "bad_body"
        );
        let many = format!(
            "{{\"tables\":[{}]}}",
            vec!["\"t\""; MAX_ITEMS + 1].join(",")
        );
        assert_eq!(
            InvalidationSpec::parse(many.as_bytes()).unwrap_err().status,
            413
        );
    }
}
