//! The admin API's JSON shapes. Requests and most answers are the worker's own types from
//! `edgecache-core`. Defined here are lenient views of a tenant (the core's `Tenant` needs every
//! field) and of the edge's counters (their type lives in the worker, outside the core): unknown
//! fields are ignored and absent ones defaulted, because the server may grow fields the CLI does
//! not know yet. `--json` prints the server's own JSON, so nothing is lost there.

use serde::Deserialize;

pub use edgecache_core::access::CreateKey;
pub use edgecache_core::beta::BetaList;
pub use edgecache_core::invalidation::InvalidationSpec;
pub use edgecache_core::protocol::{
    Access, CoordinatorStats, CreateTenant, ExplainResponse, ExplainWrite, ForgottenCandidates,
    ForgottenHypotheses, ForgottenLearning, ForgottenRule, InvalidationResult, KeyDeps,
    LearnStatus, Learning, OriginConfig, PatternCounts, RecordDeps, RuleEnvelope, RuleList,
    TableLearning, TenantSettings, Whoami,
};

/// A cache rule, as the worker defines it; absent optional fields mean "the server's default".
pub use edgecache_core::rules::RouteRule as Rule;

/// One tenant, every field but the name optional.
#[derive(Clone, Debug, Deserialize)]
pub struct Tenant {
    /// The tenant's name, also its URL segment (`/t/{name}`).
    pub name: String,
    /// Where its misses go.
    #[serde(default)]
    pub origin: Option<OriginConfig>,
    /// Its cache rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Named views: the tables each depends on, and their bindings.
    #[serde(default)]
    pub views: edgecache_core::schema::ViewDecls,
    /// When it was created (RFC 3339), shown as given.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Who may read and write; the defaults (public reads, no extra write key, nothing
    /// forwarded) when a server does not say.
    #[serde(default)]
    pub access: Access,
    /// The HTTP origin's known tables (declared or learned).
    #[serde(default)]
    pub tables: Vec<String>,
    /// What EdgeCache may learn (`learn status`).
    #[serde(default)]
    pub learning: Option<Learning>,
}

/// One API key as listed: never the key or its hash. The scope is kept as text so a scope
/// newer than this CLI is still shown.
#[derive(Clone, Debug, Deserialize)]
pub struct Key {
    /// The key's name.
    pub name: String,
    /// `read` or `write`.
    #[serde(default)]
    pub scope: String,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    /// When it was last used (RFC 3339, to the minute); `None` if never.
    #[serde(default)]
    pub last_used_at: Option<String>,
}

/// `POST /tenants/{name}/keys` answer: the only time the key itself is shown.
#[derive(Clone, Debug, Deserialize)]
pub struct CreatedKey {
    /// The key's description.
    #[serde(flatten)]
    pub info: Key,
    /// The key (`eck_…`).
    pub key: String,
}

/// `GET /tenants/{name}/keys`.
#[derive(Clone, Debug, Deserialize)]
pub struct KeyList {
    /// Every key of the tenant.
    #[serde(default)]
    pub keys: Vec<Key>,
}

/// `POST /tenants` answer: the only time the secrets are shown.
pub type CreatedTenant = edgecache_core::protocol::CreatedTenant<Tenant>;
/// `GET /tenants`.
pub type TenantList = edgecache_core::protocol::TenantList<Tenant>;
/// `GET /tenants/{name}`.
pub type TenantEnvelope = edgecache_core::protocol::TenantEnvelope<Tenant>;
/// `GET /tenants/{name}/stats`.
pub type Stats = edgecache_core::protocol::TenantStats;
/// The answering edge's counters.
pub use edgecache_core::protocol::EdgeCounters as EdgeStats;

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
            vary_by: Vec::new(),
            swr_secs: None,
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
        assert_eq!(tenant.access, Access::default());
    }

    #[test]
    fn keys_tolerate_missing_and_unknown_fields() {
        let created: CreatedKey = serde_json::from_value(json!({
            "name": "ci", "scope": "write", "created_at": "2026-01-01T00:00:00Z",
            "key": "eck_1", "future": true
        }))
        .unwrap();
        assert_eq!(
            (created.info.name.as_str(), created.key.as_str()),
            ("ci", "eck_1")
        );
        let list: KeyList =
            serde_json::from_value(json!({"keys": [{"name": "r", "scope": "admin"}]})).unwrap();
        assert_eq!(list.keys[0].scope, "admin");
        assert!(list.keys[0].last_used_at.is_none());
    }

    #[test]
    fn stats_tolerate_missing_and_unknown_fields() {
        let stats: Stats = serde_json::from_value(json!({
            "edge": {"hits_l1": 3, "new_counter": 9, "routes": {"/v1/users": {"hits": 1}}},
            "coordinators": {"users": {"seq": 17}}
        }))
        .unwrap();
        let edge = stats.edge;
        assert_eq!((edge.hits_l1, edge.misses), (3, 0));
        assert_eq!(edge.routes["/v1/users"].misses, 0);
        assert_eq!(stats.coordinators["users"].seq, 17);
        let empty: Stats = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty.edge, EdgeStats::default());
    }
}
