//! The cache policy of a request's route: the tenant's rules resolved against its path.

use crate::config::Config;
use crate::dependency::rules::{resolve, RoutePolicy};

/// The policy for `path` of `tenant`.
pub fn for_path(config: &Config, tenant: &str, path: &str) -> RoutePolicy {
    if tenant == config.default_tenant {
        resolve(&config.rules, path)
    } else {
        RoutePolicy::default()
    }
}
