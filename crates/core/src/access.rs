//! Tenant API keys and what a request may do with them. Keys are random tokens (`eck_` + 64 hex
//! digits) shown once and stored only as SHA-256 hashes; a request presents one as
//! `Authorization: Bearer <key>` or `x-edgecache-key: <key>`.

use serde::{Deserialize, Serialize};

use crate::auth::{parse_bearer, token_matches_hash};

/// The header that carries a key where `Authorization` belongs to the origin.
pub const KEY_HEADER: &str = "x-edgecache-key";
/// Most keys one tenant holds.
pub const MAX_KEYS: usize = 50;

/// What a key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Reads (of a tenant with private reads).
    Read,
    /// Reads and writes.
    Write,
}

impl KeyScope {
    /// `read` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Read => "read",
            KeyScope::Write => "write",
        }
    }
}

/// A key as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The operator's name for it (`[a-z0-9][a-z0-9_-]{0,62}`), unique per tenant.
    pub name: String,
    /// What it allows.
    pub scope: KeyScope,
    /// Lowercase hex SHA-256 of the key.
    pub hash: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 time of its last use, to the minute (see [`USE_REPORT_MS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

/// How often one isolate reports a key's use to the registry: `last_used_at` is exact to this.
pub const USE_REPORT_MS: u64 = 60_000;

/// A key as `keys list` shows it: everything but its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Name.
    pub name: String,
    /// Scope.
    pub scope: KeyScope,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 time of its last use, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

impl From<&ApiKey> for KeyInfo {
    fn from(k: &ApiKey) -> Self {
        KeyInfo {
            name: k.name.clone(),
            scope: k.scope,
            created_at: k.created_at.clone(),
            last_used_at: k.last_used_at.clone(),
        }
    }
}

/// `POST /tenants/{name}/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Name.
    pub name: String,
    /// Scope.
    pub scope: KeyScope,
}

/// A created key: the only time the key itself is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    /// The key's description.
    #[serde(flatten)]
    pub info: KeyInfo,
    /// The key.
    pub key: String,
}

/// `GET /tenants/{name}/keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    /// Every key of the tenant.
    pub keys: Vec<KeyInfo>,
}

/// Whether a key name is acceptable.
pub fn valid_key_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_'))
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A read or write key.
    Read,
    /// A write key.
    Write,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// No key was presented.
    #[error(
        "this {0} needs an API key: send `Authorization: Bearer <key>` or `x-edgecache-key: <key>`"
    )]
    Missing(&'static str),
    /// The key is no key of this tenant (never was, or was revoked).
    #[error("the API key was not recognised (unknown or revoked)")]
    Unknown,
    /// A read key was presented for a write.
    #[error("the API key `{0}` has read scope; writes need a key with write scope")]
    ReadOnly(String),
}

/// The key a request presents. `authorization` is taken only where it is EdgeCache's (the
/// built-in origin); for an HTTP origin it belongs to the origin and only `x-edgecache-key`
/// counts.
pub fn presented_key<'a>(
    authorization: Option<&'a str>,
    key_header: Option<&'a str>,
    authorization_is_ours: bool,
) -> Option<&'a str> {
    key_header
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .or_else(|| {
            authorization_is_ours
                .then(|| parse_bearer(authorization))
                .flatten()
        })
}

/// Checks a presented key against a tenant's keys (and `also`, extra keys the deployment
/// configures, each `(name, scope, hash)`); answers the name of the key that allowed it.
pub fn authorize<'k>(
    need: Need,
    presented: Option<&str>,
    keys: &'k [ApiKey],
    also: &'k [ApiKey],
) -> Result<&'k ApiKey, AccessError> {
    let what = match need {
        Need::Read => "read",
        Need::Write => "write",
    };
    let presented = presented.ok_or(AccessError::Missing(what))?;
    // Every stored hash is compared, so the time taken says nothing about which one matched.
    let found = keys
        .iter()
        .chain(also)
        .fold(None, |found, k| {
            match token_matches_hash(presented, &k.hash) {
                true => Some(k),
                false => found,
            }
        })
        .ok_or(AccessError::Unknown)?;
    match (need, found.scope) {
        (Need::Write, KeyScope::Read) => Err(AccessError::ReadOnly(found.name.clone())),
        _ => Ok(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash_token;
    use proptest::prelude::*;

    fn key(name: &str, scope: KeyScope, secret: &str) -> ApiKey {
        ApiKey {
            name: name.into(),
            scope,
            hash: hash_token(secret),
            created_at: "2026-01-01T00:00:00Z".into(),
            last_used_at: None,
        }
    }

    #[test]
    fn scopes_decide_what_a_key_allows() {
        let keys = [
            key("reader", KeyScope::Read, "eck_r"),
            key("writer", KeyScope::Write, "eck_w"),
        ];
        assert_eq!(
            authorize(Need::Read, Some("eck_r"), &keys, &[])
                .unwrap()
                .name,
            "reader"
        );
        assert_eq!(
            authorize(Need::Write, Some("eck_w"), &keys, &[])
                .unwrap()
                .name,
            "writer"
        );
        assert_eq!(
            authorize(Need::Read, Some("eck_w"), &keys, &[])
                .unwrap()
                .name,
            "writer"
        );
        assert_eq!(
            authorize(Need::Write, Some("eck_r"), &keys, &[]),
            Err(AccessError::ReadOnly("reader".into()))
        );
        assert_eq!(
            authorize(Need::Write, None, &keys, &[]),
            Err(AccessError::Missing("write"))
        );
        assert_eq!(
            authorize(Need::Write, Some("eck_x"), &keys, &[]),
            Err(AccessError::Unknown)
        );
        let env = [key("env", KeyScope::Write, "eck_env")];
        assert_eq!(
            authorize(Need::Write, Some("eck_env"), &keys, &env)
                .unwrap()
                .name,
            "env"
        );
        use crate::error::ApiError;
        let e: ApiError = AccessError::ReadOnly("r".into()).into();
        assert_eq!((e.status, e.code.as_str()), (403, "read_only_key"));
        let e: ApiError = AccessError::Missing("write").into();
        assert_eq!((e.status, e.code.as_str()), (401, "missing_key"));
    }

    #[test]
    fn where_a_key_is_taken_from() {
        assert_eq!(
            presented_key(Some("Bearer eck_a"), None, true),
            Some("eck_a")
        );
        assert_eq!(presented_key(Some("Bearer eck_a"), None, false), None);
        assert_eq!(
            presented_key(Some("Bearer user"), Some(" eck_b "), false),
            Some("eck_b")
        );
        assert_eq!(presented_key(Some("Basic abc"), None, true), None);
        assert_eq!(presented_key(None, Some(""), true), None);
    }

    #[test]
    fn key_names() {
        assert!(valid_key_name("ci-deploy_1"));
        assert!(!valid_key_name("-x") && !valid_key_name("") && !valid_key_name("A"));
        assert!(!valid_key_name(&"a".repeat(64)));
    }

    proptest! {
        /// No string but the key itself opens a key: every other presented value is refused.
        #[test]
        fn only_the_key_opens(presented in "\\PC{0,80}") {
            let keys = [key("w", KeyScope::Write, "eck_secret")];
            let got = authorize(Need::Write, Some(&presented), &keys, &[]);
            prop_assert_eq!(got.is_ok(), presented == "eck_secret");
        }

        /// Header parsing never panics and never invents a key.
        #[test]
        fn presented_key_is_a_substring(auth in "\\PC{0,60}", hdr in proptest::option::of("\\PC{0,60}")) {
            if let Some(k) = presented_key(Some(&auth), hdr.as_deref(), true) {
                prop_assert!(auth.contains(k) || hdr.as_deref().is_some_and(|h| h.contains(k)));
                prop_assert!(!k.is_empty());
            }
        }
    }
}
