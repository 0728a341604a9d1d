//! Deployment configuration: one typed struct, read from the worker's vars and validated in one
//! place. The edge parses it once per isolate, each Durable Object once per object
//! (`runtime::env`); vars only change with a deploy, which starts new isolates.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::rules::{validate_pattern, RouteRule};
use crate::schema::ViewDecls;

/// Default L1 bound: a quarter of an isolate's 128 MB.
pub const DEFAULT_L1_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Default origin timeout; past it a read is served stale-if-error or answered 504.
pub const DEFAULT_ORIGIN_TIMEOUT_MS: u64 = 10_000;
/// Default bound of a coordinator's invalidation log (its write log keeps a quarter).
pub const DEFAULT_INVALIDATION_LOG: u64 = 4096;
/// Default bound of the keys one coordinator tracks; past it the least recently filled are
/// evicted (invalidated, so never served untracked).
pub const DEFAULT_MAX_REGISTRATIONS: u64 = 200_000;
/// Default budget of admin API calls per tenant per minute (per isolate).
pub const DEFAULT_ADMIN_CALLS_PER_MIN: u64 = 600;
/// Default budget of invalidations (webhook and admin API calls) per tenant per minute (per
/// isolate).
pub const DEFAULT_INVALIDATIONS_PER_MIN: u64 = 120;
/// Default budget of origin reads a coordinator makes to refill one tenant's keys (rehydrates
/// and stale-while-revalidate refreshes) per minute.
pub const DEFAULT_REFILLS_PER_MIN: u64 = 600;
/// Keys a coordinator shadow-checks per write it sees (its own table's, or another table's of
/// the same tenant), per tenant.
pub const DEFAULT_SHADOW_PER_WRITE: u64 = 3;
/// Shadow checks per tenant per second in one coordinator; past it a write's checks are
/// skipped (they are a sample).
pub const DEFAULT_SHADOW_PER_SEC: u64 = 20;
/// Default tenant for requests that name none (the demo works with no setup).
pub const DEFAULT_TENANT: &str = "local";
/// Default name of the website's demo tenant, whose data is the `demo_*` sandbox.
pub const DEFAULT_DEMO_TENANT: &str = "demo";

/// What is wrong with the deployment's configuration.
#[derive(Debug, Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
pub enum ConfigError {
    #[error(
        "EDGECACHE_VIEWS is not a JSON object of view name -> [tables] or {{\"bind\": {{table: column}}}}: {0}"
    )]
    Views(String),
    #[error("EDGECACHE_RULES is not a JSON array of valid route rules: {0}")]
    Rules(String),
    #[error("{name} must be a positive integer, got `{value}`")]
    Number { name: &'static str, value: String },
}

/// The worker's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Named views of the D1 origin: the tables each one reads and their bindings.
    pub views: ViewDecls,
    /// Route rules of the default tenant.
    pub rules: Vec<RouteRule>,
    /// Tenants are addressed as `<tenant>.<base_domain>`.
    pub base_domain: Option<String>,
    /// Tenant for requests that name none.
    pub default_tenant: String,
    /// The website demo's tenant: created on first use, sees only the `demo_*` tables.
    pub demo_tenant: String,
    /// L1 bound in bytes.
    pub l1_max_bytes: usize,
    /// How long a read waits for the origin.
    pub origin_timeout_ms: u64,
    /// Invalidations a coordinator remembers; entries filled before the oldest one it still
    /// remembers are treated as stale.
    pub invalidation_log: u64,
    /// Keys one coordinator tracks at most.
    pub max_registrations: u64,
    /// Admin API calls a tenant's token may make per minute in one isolate.
    pub admin_calls_per_min: u64,
    /// Invalidation calls (webhook, admin API) per tenant per minute in one isolate.
    pub invalidations_per_min: u64,
    /// Refills (origin reads for rehydrates and refreshes) per tenant per minute in one
    /// coordinator; past it a tenant's refills wait, and other tenants' go first.
    pub refills_per_min: u64,
    /// Shadow checks per write per coordinator (`EDGECACHE_SHADOW_PER_WRITE`), counted apart
    /// from refills.
    pub shadow_per_write: u64,
    /// Shadow checks per tenant per second per coordinator (`EDGECACHE_SHADOW_PER_SEC`).
    pub shadow_per_sec: u64,
    /// Enables the fault-injection hooks the integration tests use. Never set in production.
    pub test_hooks: bool,
}

/// Raw variable lookup, so parsing is testable without a `worker::Env`.
pub trait VarSource {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

impl Config {
    /// Reads and validates the configuration.
    pub fn from_vars(vars: &impl VarSource) -> Result<Config, ConfigError> {
        let views = match vars.var("EDGECACHE_VIEWS") {
            Some(raw) if !raw.trim().is_empty() => {
                serde_json::from_str(&raw).map_err(|e| ConfigError::Views(e.to_string()))?
            }
            _ => BTreeMap::new(),
        };
        let rules: Vec<RouteRule> = match vars.var("EDGECACHE_RULES") {
            Some(raw) if !raw.trim().is_empty() => {
                serde_json::from_str(&raw).map_err(|e| ConfigError::Rules(e.to_string()))?
            }
            _ => Vec::new(),
        };
        for rule in &rules {
            validate_pattern(&rule.pattern).map_err(|e| ConfigError::Rules(e.to_string()))?;
        }
        Ok(Config {
            views,
            rules,
            base_domain: vars
                .var("EDGECACHE_BASE_DOMAIN")
                .map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|d| !d.is_empty()),
            default_tenant: vars
                .var("EDGECACHE_DEFAULT_TENANT")
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| DEFAULT_TENANT.to_string()),
            demo_tenant: vars
                .var("EDGECACHE_DEMO_TENANT")
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| DEFAULT_DEMO_TENANT.to_string()),
            l1_max_bytes: number(vars, "EDGECACHE_L1_MAX_BYTES", DEFAULT_L1_MAX_BYTES as u64)?
                as usize,
            origin_timeout_ms: number(
                vars,
                "EDGECACHE_ORIGIN_TIMEOUT_MS",
                DEFAULT_ORIGIN_TIMEOUT_MS,
            )?,
            invalidation_log: number(vars, "EDGECACHE_INVALIDATION_LOG", DEFAULT_INVALIDATION_LOG)?,
            max_registrations: number(
                vars,
                "EDGECACHE_MAX_REGISTRATIONS",
                DEFAULT_MAX_REGISTRATIONS,
            )?,
            admin_calls_per_min: number(
                vars,
                "EDGECACHE_ADMIN_CALLS_PER_MIN",
                DEFAULT_ADMIN_CALLS_PER_MIN,
            )?,
            invalidations_per_min: number(
                vars,
                "EDGECACHE_INVALIDATIONS_PER_MIN",
                DEFAULT_INVALIDATIONS_PER_MIN,
            )?,
            refills_per_min: number(vars, "EDGECACHE_REFILLS_PER_MIN", DEFAULT_REFILLS_PER_MIN)?,
            shadow_per_write: number(vars, "EDGECACHE_SHADOW_PER_WRITE", DEFAULT_SHADOW_PER_WRITE)?,
            shadow_per_sec: number(vars, "EDGECACHE_SHADOW_PER_SEC", DEFAULT_SHADOW_PER_SEC)?,
            test_hooks: vars.var("EDGECACHE_TEST_HOOKS").as_deref() == Some("1"),
        })
    }
}

fn number(vars: &impl VarSource, name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match vars.var(name) {
        None => Ok(default),
        Some(value) => match value.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError::Number { name, value }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Vars(HashMap<&'static str, &'static str>);
    impl VarSource for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    #[test]
    fn defaults_apply_when_unset() {
        let c = Config::from_vars(&Vars(HashMap::new())).unwrap();
        assert_eq!(c.default_tenant, "local");
        assert_eq!(c.demo_tenant, "demo");
        assert_eq!(c.l1_max_bytes, DEFAULT_L1_MAX_BYTES);
        assert!(c.views.is_empty());
        assert!(!c.test_hooks);
    }

    #[test]
    fn views_and_numbers_are_parsed_and_checked() {
        let c = Config::from_vars(&Vars(HashMap::from([
            (
                "EDGECACHE_VIEWS",
                r#"{"usersWithOrders": ["users", "orders"]}"#,
            ),
            ("EDGECACHE_L1_MAX_BYTES", "1024"),
        ])))
        .unwrap();
        assert_eq!(c.views["usersWithOrders"].tables(), vec!["users", "orders"]);
        let bound = Config::from_vars(&Vars(HashMap::from([(
            "EDGECACHE_VIEWS",
            r#"{"usersWithOrders": {"bind": {"users": "id", "orders": "userId"}}}"#,
        )])))
        .unwrap();
        assert_eq!(
            bound.views["usersWithOrders"].bind()["orders"],
            "userId".to_string()
        );
        assert_eq!(c.l1_max_bytes, 1024);
        assert!(Config::from_vars(&Vars(HashMap::from([("EDGECACHE_VIEWS", "[1]")]))).is_err());
        assert!(
            Config::from_vars(&Vars(HashMap::from([("EDGECACHE_L1_MAX_BYTES", "0")]))).is_err()
        );
    }
}
