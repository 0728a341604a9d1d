//! Every way a command can fail, and the one place that maps each to an exit code and a hint.

use std::path::PathBuf;

/// Where the tool listens by default under `npm run dev`; quoted in hints.
const DEV_ENDPOINT: &str = "http://127.0.0.1:8787";

/// A setting every admin command needs, named in "missing setting" errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// The worker's base URL.
    Endpoint,
    /// The bearer token for the admin API.
    Token,
    /// The tenant a tenant-scoped command acts on.
    Tenant,
}

impl Setting {
    /// The command-line flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Endpoint => "--endpoint",
            Self::Token => "--token",
            Self::Tenant => "--tenant",
        }
    }

    /// The environment variable that sets it.
    pub fn env(self) -> &'static str {
        match self {
            Self::Endpoint => "EDGECACHE_ENDPOINT",
            Self::Token => "EDGECACHE_TOKEN",
            Self::Tenant => "EDGECACHE_TENANT",
        }
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The arguments make no sense together (beyond what clap checks).
    #[error("{0}")]
    Usage(String),

    /// A setting is neither in the config file, the environment, nor a flag.
    #[error("no {} configured", .0.flag().trim_start_matches("--"))]
    MissingSetting(Setting),

    /// The endpoint is not an http(s) URL.
    #[error("invalid endpoint '{0}': expected an http:// or https:// URL")]
    InvalidEndpoint(String),

    /// The config file exists but cannot be read or parsed.
    #[error("cannot read config file {}: {detail}", path.display())]
    ConfigRead { path: PathBuf, detail: String },

    /// The config file cannot be written.
    #[error("cannot write config file {}: {detail}", path.display())]
    ConfigWrite { path: PathBuf, detail: String },

    /// There is no per-user config directory and `EDGECACHE_CONFIG` is unset.
    #[error("cannot locate a config directory for this user")]
    NoConfigDir,

    /// `login --tenant X` with a token that belongs to tenant Y.
    #[error("the token belongs to tenant '{token_tenant}', not '{requested}'")]
    TenantMismatch {
        token_tenant: String,
        requested: String,
    },

    /// A destructive command was run without `--yes` where nobody can confirm it; holds what
    /// it would have done, e.g. `delete tenant 'acme'`.
    #[error("refusing to {0} without confirmation")]
    ConfirmationRequired(String),

    /// The user was asked to confirm and typed something other than this name.
    #[error("confirmation did not match '{0}'; nothing was changed")]
    ConfirmationMismatch(String),

    /// A local file (e.g. the warm list) cannot be read.
    #[error("cannot read {}: {detail}", path.display())]
    ReadFile { path: PathBuf, detail: String },

    /// Nothing answered at the endpoint (connection refused, DNS, timeout).
    #[error("cannot reach {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },

    /// The admin API answered with an error status.
    #[error("{message} ({status}{})", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Api {
        status: u16,
        /// The stable `error.code`, absent when the body was not the admin API's error shape.
        code: Option<String>,
        message: String,
    },

    /// The endpoint answered 2xx, but not with what the admin API sends.
    #[error("unexpected answer from {endpoint}: {detail}")]
    Protocol { endpoint: String, detail: String },

    /// Some `warm` requests failed (each was reported as it happened).
    #[error("{failed} of {total} warm requests failed")]
    WarmFailed { failed: usize, total: usize },
}

impl CliError {
    /// The process exit code: 1 the server said no or the operation failed, 2 usage or config
    /// error, 3 endpoint unreachable.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Api { .. } | Self::Protocol { .. } | Self::WarmFailed { .. } => 1,
            Self::Usage(_)
            | Self::MissingSetting(_)
            | Self::InvalidEndpoint(_)
            | Self::ConfigRead { .. }
            | Self::ConfigWrite { .. }
            | Self::NoConfigDir
            | Self::TenantMismatch { .. }
            | Self::ConfirmationRequired(_)
            | Self::ConfirmationMismatch(_)
            | Self::ReadFile { .. } => 2,
            Self::Unreachable { .. } => 3,
        }
    }

    /// What the user can do about it, when there is something useful to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::MissingSetting(Setting::Tenant) => Some(
                "pass --tenant NAME, set EDGECACHE_TENANT, or save one with \
                 `edgecache login --endpoint URL --token T --tenant NAME`"
                    .to_string(),
            ),
            Self::MissingSetting(setting) => Some(format!(
                "run `edgecache login --endpoint URL --token T`, or pass {} / set {}",
                setting.flag(),
                setting.env()
            )),
            Self::InvalidEndpoint(_) => Some(format!("e.g. --endpoint {DEV_ENDPOINT}")),
            Self::NoConfigDir => {
                Some("set EDGECACHE_CONFIG to the path of a config file".to_string())
            }
            Self::TenantMismatch { token_tenant, .. } => Some(format!(
                "use --tenant {token_tenant}, or the operator token to manage other tenants"
            )),
            Self::ConfirmationRequired(_) => {
                Some("pass --yes to go ahead without being asked".to_string())
            }
            Self::Unreachable { .. } => Some(format!(
                "is the worker running? `npm run dev` starts it on {DEV_ENDPOINT}"
            )),
            Self::Api { status, code, .. } => api_hint(*status, code.as_deref()),
            Self::Protocol { .. } => Some(
                "check that --endpoint points at an EdgeCache worker (its base URL, without a path)"
                    .to_string(),
            ),
            Self::Usage(_)
            | Self::ConfigRead { .. }
            | Self::ConfigWrite { .. }
            | Self::ConfirmationMismatch(_)
            | Self::ReadFile { .. }
            | Self::WarmFailed { .. } => None,
        }
    }
}

/// Hints for admin API errors, by status and stable error code.
fn api_hint(status: u16, code: Option<&str>) -> Option<String> {
    let hint = match (status, code) {
        (401, _) => "the token was rejected; run `edgecache login`",
        (403, _) => {
            "the token belongs to another tenant (a tenant's admin token manages only that \
             tenant; creating, listing and deleting tenants needs the operator token)"
        }
        (404, Some("tenant_not_found")) => "`edgecache tenant list` shows the tenants that exist",
        (404, Some("rule_not_found")) => "`edgecache rules list` shows the tenant's rules",
        (404, Some("key_not_found")) => "`edgecache keys list` shows the tenant's keys",
        (404, Some("learned_rule_not_found" | "hypothesis_not_found" | "candidate_not_found"))
        | (400, Some("bad_rule_id" | "bad_hypothesis_id" | "bad_candidate_id")) => {
            "`edgecache learn status` shows the learned rules, candidates and hypotheses and              their ids"
        }
        (409, Some("key_exists")) => {
            "pick another name, or revoke the old key first with `edgecache keys revoke NAME`"
        }
        (400, Some("too_many_keys")) => {
            "revoke keys that are no longer used (`edgecache keys list` shows when each was last \
             used)"
        }
        (404, None) => {
            "is the endpoint an EdgeCache worker? its admin API lives under /_edgecache/admin"
        }
        (409, Some("tenant_exists")) => {
            "pick another name, or see the existing one with `edgecache tenant show NAME`"
        }
        (413, _) => "the request is too large; split it into several smaller ones",
        _ => return None,
    };
    Some(hint.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: Option<&str>) -> CliError {
        CliError::Api {
            status,
            code: code.map(str::to_string),
            message: "nope".to_string(),
        }
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(api(404, Some("tenant_not_found")).exit_code(), 1);
        assert_eq!(
            CliError::WarmFailed {
                failed: 1,
                total: 2
            }
            .exit_code(),
            1
        );
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::MissingSetting(Setting::Token).exit_code(), 2);
        assert_eq!(CliError::ConfirmationRequired("a".into()).exit_code(), 2);
        let unreachable = CliError::Unreachable {
            endpoint: "http://127.0.0.1:1".into(),
            detail: "refused".into(),
        };
        assert_eq!(unreachable.exit_code(), 3);
        assert!(unreachable.hint().unwrap().contains("npm run dev"));
    }

    #[test]
    fn api_errors_read_well() {
        assert_eq!(
            api(404, Some("tenant_not_found")).to_string(),
            "nope (404 tenant_not_found)"
        );
        assert_eq!(api(502, None).to_string(), "nope (502)");
    }

    #[test]
    fn hints_by_status_and_code() {
        assert!(api(401, Some("unauthorized"))
            .hint()
            .unwrap()
            .contains("edgecache login"));
        assert!(api(403, None).hint().unwrap().contains("another tenant"));
        assert!(api(404, Some("tenant_not_found"))
            .hint()
            .unwrap()
            .contains("`edgecache tenant list`"));
        assert!(api(409, Some("tenant_exists")).hint().is_some());
        assert!(api(400, Some("invalid_rule")).hint().is_none());
        assert!(api(404, Some("key_not_found"))
            .hint()
            .unwrap()
            .contains("`edgecache keys list`"));
        assert!(api(409, Some("key_exists"))
            .hint()
            .unwrap()
            .contains("keys revoke"));
        assert!(api(400, Some("too_many_keys")).hint().is_some());
        assert!(CliError::MissingSetting(Setting::Tenant)
            .hint()
            .unwrap()
            .contains("EDGECACHE_TENANT"));
        assert!(CliError::MissingSetting(Setting::Endpoint)
            .hint()
            .unwrap()
            .contains("EDGECACHE_ENDPOINT"));
    }
}
