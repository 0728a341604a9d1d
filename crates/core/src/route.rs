//! Which handler a request goes to. Pure: parsed from the host and path only.

/// Where a request is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressed {
    /// Tenant named by the host or the `/t/<tenant>` prefix, else the default.
    pub tenant: String,
    /// The path with any `/t/<tenant>` prefix removed.
    pub path: String,
}

/// Maps a request to its tenant: `<tenant>.<base domain>` first, then `/t/<tenant>/…`, then the
/// default tenant.
pub fn address(
    host: &str,
    path: &str,
    base_domain: Option<&str>,
    default_tenant: &str,
) -> Addressed {
    // `/t//…` names no tenant: it is an ordinary path (and no route), not tenant "".
    let named = |rest: &&str| !rest.is_empty() && !rest.starts_with('/');
    if let Some(rest) = path.strip_prefix("/t/").filter(named) {
        let (tenant, tail) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        return Addressed {
            tenant: tenant.to_string(),
            path: tail.to_string(),
        };
    }
    let host = host.split(':').next().unwrap_or("").to_ascii_lowercase();
    if let Some(base) = base_domain {
        if let Some(sub) = host.strip_suffix(base).and_then(|s| s.strip_suffix('.')) {
            if !sub.is_empty() && !sub.contains('.') {
                return Addressed {
                    tenant: sub.to_string(),
                    path: path.to_string(),
                };
            }
        }
    }
    Addressed {
        tenant: default_tenant.to_string(),
        path: path.to_string(),
    }
}

/// The REST resource a `/v1/…` path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Table or view name.
    pub relation: String,
    /// Record id (percent-decoded) for `/v1/<relation>/<id>`.
    pub id: Option<String>,
}

/// Parses `/v1/<relation>` or `/v1/<relation>/<id>`; `None` for anything else.
pub fn resource(path: &str) -> Option<Resource> {
    let rest = path.strip_prefix("/v1/")?;
    let mut parts = rest.split('/');
    let relation = decode(parts.next()?)?;
    let id = match parts.next() {
        None => None,
        Some("") if parts.next().is_none() => None,
        Some(id) => Some(decode(id)?),
    };
    if relation.is_empty() || parts.next().is_some() || id.as_deref() == Some("") {
        return None;
    }
    Some(Resource { relation, id })
}

/// Percent-decodes one path segment; `None` on bad escapes or invalid UTF-8.
fn decode(segment: &str) -> Option<String> {
    crate::codec::decode(segment, false).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_from_path_prefix_host_or_default() {
        let base = Some("edgecache.example.com");
        assert_eq!(
            address("x", "/t/acme/v1/users", base, "local"),
            Addressed {
                tenant: "acme".into(),
                path: "/v1/users".into()
            }
        );
        assert_eq!(
            address("acme.edgecache.example.com", "/v1/users", base, "local").tenant,
            "acme"
        );
        assert_eq!(
            address("a.b.edgecache.example.com", "/v1/u", base, "local").tenant,
            "local"
        );
        assert_eq!(
            address("localhost:8787", "/v1/users", base, "local").tenant,
            "local"
        );
        assert_eq!(
            address("evil.com", "/v1/users", base, "local").tenant,
            "local"
        );
        // An empty tenant segment names no tenant: the path stays whole (and routes nowhere).
        for path in ["/t//v1/users", "/t/"] {
            let addressed = address("x", path, base, "local");
            assert_eq!(
                (addressed.tenant.as_str(), addressed.path.as_str()),
                ("local", path)
            );
        }
    }

    #[test]
    fn resources() {
        assert_eq!(
            resource("/v1/users"),
            Some(Resource {
                relation: "users".into(),
                id: None
            })
        );
        assert_eq!(
            resource("/v1/users/"),
            Some(Resource {
                relation: "users".into(),
                id: None
            })
        );
        assert_eq!(
            resource("/v1/users/123-abc"),
            Some(Resource {
                relation: "users".into(),
                id: Some("123-abc".into())
            })
        );
        assert_eq!(
            resource("/v1/users/a%20b").unwrap().id.as_deref(),
            Some("a b")
        );
        for bad in [
            "/v1/",
            "/v1",
            "/v2/users",
            "/v1/users/1/2",
            "/v1/users/%zz",
            "/v1//1",
        ] {
            assert_eq!(resource(bad), None, "{bad}");
        }
    }
}
