//! Manual invalidation requests (webhook and admin API): what they may name, how they are
//! checked, and how a URL they name becomes a cache key.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::key::CacheKey;
use crate::protocol::InvalidateRequest;
use crate::route;

/// Most items one invalidation request may name (each may fan out to several coordinators).
pub const MAX_ITEMS: usize = 1000;
/// Largest invalidation body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A record named by table and id: `{"table","id"}` on the wire, `table:id` as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    /// Table.
    pub table: String,
    /// Record id.
    pub id: String,
}

impl FromStr for RecordRef {
    type Err = String;

    /// Parses `table:id`; only the first `:` separates, so ids may contain colons.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| {
            format!("invalid record '{input}': {why}; expected TABLE:ID, e.g. users:123-abc")
        };
        let (table, id) = input
            .split_once(':')
            .ok_or_else(|| invalid("there is no ':'"))?;
        check_table_name(table).map_err(|why| invalid(&why))?;
        if id.is_empty() {
            return Err(invalid("the id is empty"));
        }
        if id.chars().any(char::is_whitespace) {
            return Err(invalid("the id contains whitespace"));
        }
        Ok(Self {
            table: table.to_string(),
            id: id.to_string(),
        })
    }
}

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.table, self.id)
    }
}

/// Why `table` cannot name a table: only letters, digits, `_` and `-` can, so a pasted
/// `users:123` is caught before it reaches a server.
pub fn check_table_name(table: &str) -> Result<(), String> {
    if table.is_empty() {
        return Err("the table name is empty".to_string());
    }
    if let Some(bad) = table
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "the table name contains '{bad}' (allowed: letters, digits, _ and -)"
        ));
    }
    Ok(())
}

/// Most distinct prefixes one request may name, once those another covers are dropped: each is
/// a scan of a coordinator's keys.
pub const MAX_PREFIXES: usize = 100;

/// The prefixes that cover all of `prefixes`: duplicates and any prefix that a shorter one
/// already covers are dropped (`/v1/users` is inside `/v1/u`).
pub fn covering_prefixes(mut prefixes: Vec<String>) -> Vec<String> {
    // Sorted, a prefix comes before everything it covers, and so does everything between them.
    prefixes.sort();
    let mut out: Vec<String> = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        if out.last().is_none_or(|kept| !p.starts_with(kept.as_str())) {
            out.push(p);
        }
    }
    out
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
        let mut spec: InvalidationSpec = serde_json::from_slice(bytes).map_err(|e| {
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
        // Each prefix is a scan of a coordinator's keys: the same one named twice, or one
        // another already covers, would only repeat work.
        spec.prefixes = covering_prefixes(std::mem::take(&mut spec.prefixes));
        if spec.prefixes.len() > MAX_PREFIXES {
            return Err(ApiError::new(
                413,
                "too_many_items",
                format!("at most {MAX_PREFIXES} distinct prefixes per request"),
            ));
        }
        spec.urls.sort();
        spec.urls.dedup();
        spec.tables.sort();
        spec.tables.dedup();
        spec.records
            .sort_by(|a, b| (&a.table, &a.id).cmp(&(&b.table, &b.id)));
        spec.records.dedup();
        Ok(spec)
    }

    /// The request to send each table's coordinator: URLs become keys of every table their
    /// relation reads, records and tables go to their own table, prefixes to every table whose
    /// relations they can cover.
    pub fn per_table(
        &self,
        tenant: &str,
        catalog: &Catalog,
    ) -> Result<BTreeMap<String, InvalidateRequest>, ApiError> {
        let mut per_table: BTreeMap<String, InvalidateRequest> = BTreeMap::new();
        for url in &self.urls {
            let (key, tables) = key_of(tenant, catalog, url)?;
            for t in tables {
                per_table
                    .entry(t)
                    .or_default()
                    .keys
                    .push(key.as_str().to_string());
            }
        }
        for r in &self.records {
            catalog.table(&r.table)?;
            per_table
                .entry(r.table.clone())
                .or_default()
                .records
                .push(r.id.clone());
        }
        for t in &self.tables {
            catalog.table(t)?;
            per_table.entry(t.clone()).or_default().all = true;
        }
        for prefix in &self.prefixes {
            if !prefix.starts_with("/v1/") {
                return Err(ApiError::new(
                    400,
                    "bad_prefix",
                    format!("`{prefix}` must start with /v1/"),
                ));
            }
            for relation in catalog.relations_under(prefix) {
                for t in &relation.tables {
                    per_table
                        .entry(t.clone())
                        .or_default()
                        .prefixes
                        .push(format!("{tenant}:{prefix}"));
                }
            }
        }
        Ok(per_table)
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
    fn records_parse_from_table_and_id() {
        let record: RecordRef = "users:123-abc".parse().unwrap();
        assert_eq!(record.table, "users");
        assert_eq!(record.id, "123-abc");
        assert_eq!(record.to_string(), "users:123-abc");
        // Only the first ':' separates, so ids may contain colons.
        let record: RecordRef = "events:2026:01".parse().unwrap();
        assert_eq!(record.id, "2026:01");
    }

    #[test]
    fn malformed_records_are_refused() {
        for (bad, why) in [
            ("users", "no ':'"),
            (":123", "table name is empty"),
            ("users:", "id is empty"),
            ("us ers:1", "contains ' '"),
            ("users:1 2", "whitespace"),
        ] {
            let err = bad.parse::<RecordRef>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("expected TABLE:ID"), "{bad}: {err}");
        }
    }

    #[test]
    fn records_serialise_as_the_api_expects() {
        let record: RecordRef = "users:1".parse().unwrap();
        assert_eq!(
            serde_json::to_value(&record).unwrap(),
            serde_json::json!({"table": "users", "id": "1"})
        );
    }

    #[test]
    fn repeated_and_covered_prefixes_are_one_scan() {
        let same = format!(
            "{{\"prefixes\":[{}]}}",
            vec!["\"/v1/u\""; MAX_ITEMS].join(",")
        );
        assert_eq!(
            InvalidationSpec::parse(same.as_bytes()).unwrap().prefixes,
            vec!["/v1/u"]
        );
        assert_eq!(
            covering_prefixes(vec![
                "/v1/users?limit=1".into(),
                "/v1/orders".into(),
                "/v1/u".into(),
                "/v1/users".into(),
                "/v1/orders".into(),
            ]),
            vec!["/v1/orders", "/v1/u"]
        );
        let distinct: Vec<String> = (0..=MAX_PREFIXES)
            .map(|i| format!("\"/v1/users?offset={i:04}\""))
            .collect();
        let body = format!("{{\"prefixes\":[{}]}}", distinct.join(","));
        assert_eq!(
            InvalidationSpec::parse(body.as_bytes()).unwrap_err().code,
            "too_many_items"
        );
    }

    proptest::proptest! {
        #[test]
        fn covering_prefixes_cover_exactly_what_the_input_covers(
            prefixes in proptest::collection::vec("/v1/[ab]{0,3}", 0..12),
            key in "/v1/[ab]{0,4}",
        ) {
            let covered = |ps: &[String]| ps.iter().any(|p| key.starts_with(p.as_str()));
            let cover = covering_prefixes(prefixes.clone());
            proptest::prop_assert_eq!(covered(&cover), covered(&prefixes));
            proptest::prop_assert!(cover.len() <= prefixes.len());
        }
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
