//! The admin API's JSON shapes. Reading is lenient (unknown fields ignored, optional ones
//! defaulted) because the server may grow fields the CLI does not know yet; `--json` prints the
//! server's own JSON, so nothing is lost there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::RecordRef;

/// `GET /whoami`.
#[derive(Clone, Debug, Deserialize)]
pub struct Whoami {
    /// `operator` or `tenant`.
    pub role: String,
    /// The tenant a tenant token belongs to.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// Where a tenant's cache misses are served from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// `d1` (the built-in origin) or `http`.
    pub kind: String,
    /// The tenant's API for `http` origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

/// One tenant.
#[derive(Clone, Debug, Deserialize)]
pub struct Tenant {
    /// The tenant's name, also its URL segment (`/t/{name}`).
    pub name: String,
    /// Where its misses go.
    #[serde(default)]
    pub origin: Origin,
    /// Its cache rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Named views and the tables each depends on.
    #[serde(default)]
    pub views: BTreeMap<String, Vec<String>>,
    /// When it was created (RFC 3339), shown as given.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// `POST /tenants` request body.
#[derive(Clone, Debug, Serialize)]
pub struct CreateTenant {
    /// The new tenant's name.
    pub name: String,
    /// Its origin.
    pub origin: Origin,
}

/// `POST /tenants` answer: the only time the secrets are shown.
#[derive(Clone, Debug, Deserialize)]
pub struct CreatedTenant {
    /// The tenant as created.
    pub tenant: Tenant,
    /// The tenant's admin token.
    pub admin_token: String,
    /// The secret the origin signs invalidation webhooks with.
    pub webhook_secret: String,
}

/// `GET /tenants`.
#[derive(Clone, Debug, Deserialize)]
pub struct TenantList {
    /// Every tenant.
    pub tenants: Vec<Tenant>,
}

/// `GET /tenants/{name}`.
#[derive(Clone, Debug, Deserialize)]
pub struct TenantEnvelope {
    /// The tenant.
    pub tenant: Tenant,
}

/// A cache rule, as the worker defines it; absent optional fields mean "the server's default".
pub use edgecache_core::rules::RouteRule as Rule;

/// `GET /tenants/{name}/rules`.
#[derive(Clone, Debug, Deserialize)]
pub struct RuleList {
    /// The tenant's rules.
    pub rules: Vec<Rule>,
}

/// `PUT /tenants/{name}/rules` answer.
#[derive(Clone, Debug, Deserialize)]
pub struct RuleEnvelope {
    /// The rule as stored.
    pub rule: Rule,
}

/// `POST /tenants/{name}/invalidate` request body; every list is sent, empty or not.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InvalidateRequest {
    /// Exact paths with query.
    pub urls: Vec<String>,
    /// Records whose keys are purged.
    pub records: Vec<RecordRef>,
    /// Tables whose every key is purged.
    pub tables: Vec<String>,
    /// Key path prefixes.
    pub prefixes: Vec<String>,
}

/// `POST /tenants/{name}/invalidate` answer.
#[derive(Clone, Debug, Deserialize)]
pub struct InvalidateResponse {
    /// Every key purged, with why.
    #[serde(default)]
    pub invalidated: Vec<Invalidated>,
    /// Each touched table's sequence number after the invalidation.
    #[serde(default)]
    pub seqs: BTreeMap<String, u64>,
}

/// One purged key.
#[derive(Clone, Debug, Deserialize)]
pub struct Invalidated {
    /// The cache key.
    pub key: String,
    /// Why it was purged (`manual`, `record_written`, …).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET /tenants/{name}/deps?url=…`.
#[derive(Clone, Debug, Deserialize)]
pub struct KeyDeps {
    /// The cache key the path maps to.
    pub key: String,
    /// Its dependencies, or `None` when the key is not cached.
    #[serde(default)]
    pub entry: Option<DepEntry>,
}

/// What one cached key was built from.
#[derive(Clone, Debug, Deserialize)]
pub struct DepEntry {
    /// Tables it depends on, with the seq it was filled at.
    #[serde(default)]
    pub tables: BTreeMap<String, u64>,
    /// Records it contains, `table:id`.
    #[serde(default)]
    pub records: Vec<String>,
    /// `record`, `list`, `view`…
    #[serde(default)]
    pub kind: Option<String>,
    /// The route it was served for.
    #[serde(default)]
    pub route: Option<String>,
}

/// `GET /tenants/{name}/deps?record=…`.
#[derive(Clone, Debug, Deserialize)]
pub struct RecordDeps {
    /// The record asked about.
    pub record: String,
    /// Cached keys that contain it.
    #[serde(default)]
    pub keys: Vec<String>,
}

/// `GET /tenants/{name}/stats`; every counter defaults to 0 when absent.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// This edge's counters.
    pub edge: Option<EdgeStats>,
    /// Per-table coordinator state.
    pub coordinators: BTreeMap<String, CoordinatorStats>,
}

/// Counters of the edge that answered.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct EdgeStats {
    /// Served from isolate memory.
    pub hits_l1: u64,
    /// Served from the Cache API.
    pub hits_l2: u64,
    /// Fetched from the origin.
    pub misses: u64,
    /// Served stale (origin failing).
    pub stale: u64,
    /// Not cacheable.
    pub bypass: u64,
    /// Misses that waited on another request's origin fetch.
    pub coalesced: u64,
    /// Isolate memory tier.
    pub l1: Option<L1Stats>,
    /// Per-route counters.
    pub routes: BTreeMap<String, RouteStats>,
}

/// The isolate memory tier.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct L1Stats {
    /// Entries held.
    pub entries: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Byte budget.
    pub max_bytes: u64,
    /// Entries evicted to stay within budget.
    pub evictions: u64,
}

/// One route's counters.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RouteStats {
    /// Hits at any tier.
    pub hits: u64,
    /// Origin fetches.
    pub misses: u64,
}

/// One table coordinator.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CoordinatorStats {
    /// The table's write sequence number.
    pub seq: u64,
    /// Cached keys it tracks.
    pub keys: u64,
    /// Keys waiting to be re-fetched.
    pub pending_rehydrates: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rule_body_omits_defaults() {
        let rule = Rule {
            pattern: "/v1/users*".into(),
            ttl_secs: None,
            no_store: false,
            max_staleness_ms: None,
            rehydrate: None,
        };
        assert_eq!(
            serde_json::to_value(&rule).unwrap(),
            json!({"pattern": "/v1/users*", "no_store": false})
        );
    }

    #[test]
    fn tenants_tolerate_missing_and_unknown_fields() {
        let tenant: Tenant =
            serde_json::from_value(json!({"name": "acme", "future": 1, "origin": {"kind": "d1"}}))
                .unwrap();
        assert_eq!(tenant.name, "acme");
        assert!(tenant.rules.is_empty() && tenant.created_at.is_none());
    }

    #[test]
    fn stats_tolerate_missing_and_unknown_fields() {
        let stats: Stats = serde_json::from_value(json!({
            "edge": {"hits_l1": 3, "new_counter": 9, "routes": {"/v1/users": {"hits": 1}}},
            "coordinators": {"users": {"seq": 17}}
        }))
        .unwrap();
        let edge = stats.edge.unwrap();
        assert_eq!((edge.hits_l1, edge.misses), (3, 0));
        assert_eq!(edge.routes["/v1/users"].misses, 0);
        assert_eq!(stats.coordinators["users"].seq, 17);
        let empty: Stats = serde_json::from_value(json!({})).unwrap();
        assert!(empty.edge.is_none());
    }
}
