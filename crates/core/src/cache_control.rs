//! `Cache-Control` (and `Pragma`) directives, parsed once for both directions: what a client's
//! request asks of the cache, and what an origin's answer allows a shared cache to do.

/// The directive names of a `Cache-Control` value, lower-cased, arguments dropped
/// (`max-age=60, Private` → `["max-age", "private"]`), with `max-age=0` kept whole because a
/// request's `max-age=0` means "revalidate".
fn directives(value: &str) -> impl Iterator<Item = String> + '_ {
    value.split(',').map(|d| {
        let d = d.trim().to_ascii_lowercase();
        if d == "max-age=0" {
            return d;
        }
        d.split('=').next().unwrap_or("").trim().to_string()
    })
}

/// Whether a request asks not to be answered from cache (`no-cache`, `max-age=0`, or
/// `Pragma: no-cache`).
pub fn request_forbids_cached(cache_control: Option<&str>, pragma: Option<&str>) -> bool {
    cache_control.is_some_and(|v| directives(v).any(|d| d == "no-cache" || d == "max-age=0"))
        || pragma.is_some_and(|p| p.to_ascii_lowercase().contains("no-cache"))
}

/// Whether an origin's answer forbids shared caching (`no-store` or `private`).
pub fn response_forbids_storing(cache_control: Option<&str>) -> bool {
    cache_control.is_some_and(|v| directives(v).any(|d| d == "no-store" || d == "private"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_directives() {
        assert!(response_forbids_storing(Some("no-store")));
        assert!(response_forbids_storing(Some("max-age=60, Private")));
        assert!(response_forbids_storing(Some("private=\"set-cookie\"")));
        assert!(!response_forbids_storing(Some("public, max-age=60")));
        assert!(!response_forbids_storing(Some("no-cache")));
        assert!(!response_forbids_storing(None));
    }

    #[test]
    fn request_directives() {
        assert!(request_forbids_cached(Some("no-cache"), None));
        assert!(request_forbids_cached(Some("Max-Age=0"), None));
        assert!(request_forbids_cached(None, Some("no-cache")));
        assert!(!request_forbids_cached(Some("max-age=60"), None));
        assert!(!request_forbids_cached(Some("no-store"), None));
        assert!(!request_forbids_cached(None, None));
    }
}
