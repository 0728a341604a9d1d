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

/// What an origin's `Cache-Control` says to a shared cache (RFC 9111 §5.2.2). Unknown
/// directives are ignored; a malformed or repeated age keeps the smallest value read, so a
/// garbled header never lengthens a TTL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// `no-store`: never stored.
    pub no_store: bool,
    /// `private` (also with a field list, read as the whole response): never stored by a
    /// shared cache.
    pub private: bool,
    /// `public`: may be stored even for a request with credentials.
    pub public: bool,
    /// `max-age=N`, in seconds.
    pub max_age: Option<u64>,
    /// `s-maxage=N`, in seconds: for shared caches, in place of `max-age`; like `public`, it
    /// allows storing an answer to a request with credentials.
    pub s_maxage: Option<u64>,
}

impl ResponseDirectives {
    /// Parses a `Cache-Control` value (`None`: no header, no directives).
    pub fn parse(cache_control: Option<&str>) -> Self {
        let mut d = ResponseDirectives::default();
        for part in cache_control.unwrap_or("").split(',') {
            let (name, arg) = match part.split_once('=') {
                Some((n, a)) => (n, Some(a.trim().trim_matches('"'))),
                None => (part, None),
            };
            let age = || Some(arg.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0));
            match name.trim().to_ascii_lowercase().as_str() {
                "no-store" => d.no_store = true,
                "private" => d.private = true,
                "public" => d.public = true,
                "max-age" => d.max_age = min_age(d.max_age, age()),
                "s-maxage" => d.s_maxage = min_age(d.s_maxage, age()),
                _ => {}
            }
        }
        d
    }

    /// The freshness lifetime a shared cache gets from the origin: `s-maxage`, else `max-age`.
    pub fn shared_max_age(&self) -> Option<u64> {
        self.s_maxage.or(self.max_age)
    }
}

/// The smaller of two ages, where `None` is "not given".
fn min_age(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    #[test]
    fn response_directives() {
        let p = |v| ResponseDirectives::parse(Some(v));
        assert!(p("no-store").no_store);
        assert!(p("max-age=60, Private").private);
        assert!(p("private=\"set-cookie\"").private);
        let public = p("Public, S-MaxAge=2, max-age=60");
        assert!(public.public && !public.private && !public.no_store);
        assert_eq!((public.s_maxage, public.max_age), (Some(2), Some(60)));
        assert_eq!(
            public.shared_max_age(),
            Some(2),
            "s-maxage wins for a shared cache"
        );
        assert_eq!(p("max-age=1").shared_max_age(), Some(1));
        assert_eq!(p("max-age=\"30\"").max_age, Some(30));
        assert_eq!(p("no-cache"), ResponseDirectives::default());
        assert_eq!(
            ResponseDirectives::parse(None),
            ResponseDirectives::default()
        );
    }

    #[test]
    fn garbled_ages_never_lengthen() {
        let p = |v| ResponseDirectives::parse(Some(v));
        assert_eq!(p("max-age=abc").max_age, Some(0));
        assert_eq!(p("max-age").max_age, Some(0));
        assert_eq!(p("max-age=-5").max_age, Some(0));
        assert_eq!(p("max-age=60, max-age=5").max_age, Some(5));
        assert_eq!(p("max-age=99999999999999999999999").max_age, Some(0));
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_keeps_the_smallest_age(v in "[a-zA-Z0-9=,\" -]{0,40}", a in 0u64..10_000, b in 0u64..10_000) {
            let _ = ResponseDirectives::parse(Some(&v));
            let d = ResponseDirectives::parse(Some(&format!("{v}, max-age={a}, max-age={b}")));
            prop_assert!(d.max_age.is_some_and(|m| m <= a.min(b)));
        }
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
