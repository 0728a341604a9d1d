//! Request paths: turning what the user typed into the path the cache keys on, and encoding
//! values that travel inside admin API URLs.

/// Turns a path (`/v1/users?limit=10`) or the full URL of a cached read
/// (`https://edge.example.com/t/acme/v1/users?limit=10`) into the path and query the tenant's
/// cache keys on. The `/t/{tenant}` prefix of the public read URL is removed, because keys are
/// per tenant already.
pub fn api_path(input: &str, tenant: &str) -> Result<String, String> {
    let trimmed = input.trim();
    let mut path = match strip_scheme(trimmed) {
        Some(rest) => match rest.find('/') {
            Some(slash) => rest[slash..].to_string(),
            None => "/".to_string(),
        },
        None => trimmed.to_string(),
    };
    // A fragment never reaches the server, so it cannot be part of a key.
    if let Some(hash) = path.find('#') {
        path.truncate(hash);
    }
    if !path.starts_with('/') {
        return Err(format!(
            "invalid path '{input}': expected a path starting with / (e.g. /v1/users?limit=10) \
             or an http(s) URL"
        ));
    }
    let tenant_prefix = format!("/t/{tenant}");
    if let Some(rest) = path.strip_prefix(&tenant_prefix) {
        if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') {
            let rest = if rest.starts_with('/') { rest } else { "/" };
            path = rest.to_string();
        }
    }
    Ok(path)
}

/// Validates a `--prefix` value: a path prefix, never a URL, because prefixes are matched against
/// keys.
pub fn parse_prefix(input: &str) -> Result<String, String> {
    if input.starts_with('/') {
        Ok(input.to_string())
    } else {
        Err(format!(
            "invalid prefix '{input}': expected a path prefix starting with / (e.g. /v1/users)"
        ))
    }
}

/// The part of an `http://` or `https://` URL after the scheme, or `None` for anything else.
pub fn strip_scheme(input: &str) -> Option<&str> {
    input
        .strip_prefix("http://")
        .or_else(|| input.strip_prefix("https://"))
}

/// Percent-encodes everything except RFC 3986 unreserved characters, so the value is safe both
/// as a path segment and as a query value: the worker's own encoder.
pub use edgecache_core::codec::encode_component as encode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_pass_through() {
        assert_eq!(
            api_path("/v1/users?limit=10", "acme").unwrap(),
            "/v1/users?limit=10"
        );
        assert_eq!(api_path("  /v1/users  ", "acme").unwrap(), "/v1/users");
    }

    #[test]
    fn full_urls_lose_origin_tenant_prefix_and_fragment() {
        assert_eq!(
            api_path(
                "https://edge.example.com/t/acme/v1/users?limit=10#x",
                "acme"
            )
            .unwrap(),
            "/v1/users?limit=10"
        );
        assert_eq!(
            api_path("http://127.0.0.1:8787/v1/orders/1", "acme").unwrap(),
            "/v1/orders/1"
        );
        assert_eq!(api_path("http://127.0.0.1:8787", "acme").unwrap(), "/");
        assert_eq!(api_path("/t/acme", "acme").unwrap(), "/");
    }

    #[test]
    fn other_tenants_and_lookalikes_are_kept() {
        assert_eq!(api_path("/t/acme2/v1/x", "acme").unwrap(), "/t/acme2/v1/x");
        assert_eq!(api_path("/t/other/v1/x", "acme").unwrap(), "/t/other/v1/x");
    }

    #[test]
    fn relative_paths_are_rejected() {
        let err = api_path("v1/users", "acme").unwrap_err();
        assert!(err.contains("starting with /"), "{err}");
        assert!(api_path("ftp://x/v1", "acme").is_err());
    }

    #[test]
    fn prefixes_must_be_paths() {
        assert_eq!(parse_prefix("/v1/users"), Ok("/v1/users".to_string()));
        assert!(parse_prefix("v1").is_err());
    }

    #[test]
    fn encodes_reserved_characters() {
        assert_eq!(encode("/v1/users*"), "%2Fv1%2Fusers%2A");
        assert_eq!(
            encode("/v1/users?limit=10&a=b c"),
            "%2Fv1%2Fusers%3Flimit%3D10%26a%3Db%20c"
        );
        assert_eq!(encode("users:123-abc"), "users%3A123-abc");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
    }
}
