//! Property-based fuzzing of every parser a client or an origin can reach: each returns a
//! value or a typed error for any input, never panics, and round-trips where it should.
//!
//! `npm test` runs proptest's default 256 cases per property; `PROPTEST_CASES=100000 cargo
//! test -p edgecache-core --test fuzz` runs as many as you like.

use edgecache_core::access::{authorize, presented_key, ApiKey, KeyScope, Need};
use edgecache_core::auth::{parse_bearer, sign, verify_signature, SignatureError};
use edgecache_core::cache_control::{request_forbids_cached, ResponseDirectives};
use edgecache_core::entry::{format_stamps, if_none_match, parse_stamps};
use edgecache_core::invalidation::{covering_prefixes, InvalidationSpec};
use edgecache_core::key::{normalise_base_url, CacheKey, DataSource};
use edgecache_core::protocol::{parse_header_line, CreateTenant, TenantSettings};
use edgecache_core::query::parse_list_query;
use edgecache_core::route::{address, resource};
use edgecache_core::rules::{
    check_rule, glob_match, parse_duration, validate_pattern, RoutePolicy, RouteRule,
};
use edgecache_core::shared_cache::{storable, OriginHeaders};
use edgecache_core::token::{parse_tokens, set_cookie};
use edgecache_core::vary::{normalise, parse_vary, VariantKeyer};
use edgecache_core::write_body::parse_object;
use proptest::prelude::*;

/// Strings an attacker would try: printable text, percent-escapes, separators and controls.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,64}",
        "[a-z0-9%/?&=*+.:,;_ -]{0,64}",
        proptest::collection::vec(any::<char>(), 0..32).prop_map(|c| c.into_iter().collect()),
        "(%[0-9A-Fa-f]{0,2}|/|\\.\\.|[a-z]){0,24}",
    ]
}

proptest! {
    /// Any path and query is a key or a typed error; a key re-parses to itself, and its
    /// spelling is canonical (re-reading its own path and query gives the same key).
    #[test]
    fn cache_keys(path in hostile(), query in proptest::option::of(hostile())) {
        let path = format!("/{path}");
        if let Ok(key) = CacheKey::from_request("acme", &path, query.as_deref()) {
            let reparsed = CacheKey::parse(key.as_str()).expect("a key parses");
            prop_assert_eq!(reparsed.as_str(), key.as_str());
            let (p, q) = match key.path_and_query().split_once('?') {
                Some((p, q)) => (p.to_string(), Some(q.to_string())),
                None => (key.path_and_query().to_string(), None),
            };
            let again = CacheKey::from_request("acme", &p, q.as_deref()).expect("canonical");
            prop_assert_eq!(again.as_str(), key.as_str());
        }
        let _ = CacheKey::parse(&path);
        // A variant key is its base, `#` and a tag; any other text after a `#` is refused.
        if let Ok(key) = CacheKey::from_request("acme", &path, None) {
            if let Ok(variant) = key.with_variant(&query.clone().unwrap_or_default()) {
                let reparsed = CacheKey::parse(variant.as_str()).expect("a variant key parses");
                prop_assert_eq!(reparsed.as_str(), variant.as_str());
                prop_assert_eq!(variant.base(), key.as_str());
            }
        }
    }

    /// Routing and list queries accept anything without panicking.
    #[test]
    fn routes_and_list_queries(host in hostile(), path in hostile(), pairs in proptest::collection::vec((hostile(), hostile()), 0..6)) {
        let addressed = address(&host, &format!("/{path}"), Some("edge.example"), "local");
        prop_assert!(!addressed.tenant.is_empty());
        let _ = resource(&addressed.path);
        let _ = parse_list_query(&pairs, |c| c == "name" || c == "age");
    }

    /// Consistency tokens: header and cookie parse or fail with a 400; a formatted token
    /// parses back to itself.
    #[test]
    fn tokens(header in proptest::option::of(hostile()), cookie in proptest::option::of(hostile()),
              stamps in proptest::collection::btree_map("[a-z][a-zA-Z0-9_]{0,12}", 0u64..u64::MAX >> 12, 0..4)) {
        if let Err(e) = parse_tokens(header.as_deref(), cookie.as_deref()) {
            prop_assert_eq!(e.status, 400);
        }
        let text = format_stamps(&stamps);
        prop_assert_eq!(parse_stamps(&text).unwrap_or_default(), stamps.clone());
        let c = set_cookie(cookie.as_deref(), &stamps);
        prop_assert!(!c.contains('\n') && !c.contains('\r'));
    }

    /// Webhook signatures: a garbled header is refused with a typed error; a genuine one
    /// verifies, and verifies for no other body.
    #[test]
    fn signatures(header in hostile(), body in proptest::collection::vec(any::<u8>(), 0..64), t in 0i64..4_000_000_000) {
        let secret = b"ecw_secret";
        if verify_signature(secret, Some(&header), &body, t, 300).is_ok() {
            prop_assert!(false, "a forged header verified: {header}");
        }
        let genuine = sign(secret, t, &body);
        prop_assert_eq!(verify_signature(secret, Some(&genuine), &body, t, 300), Ok(()));
        let mut other = body.clone();
        other.push(b'x');
        prop_assert_eq!(
            verify_signature(secret, Some(&genuine), &other, t, 300),
            Err(SignatureError::Mismatch)
        );
    }

    /// Credentials: bearer headers and API keys never panic and never admit a wrong key.
    #[test]
    fn credentials(auth in hostile(), key in proptest::option::of(hostile())) {
        let _ = parse_bearer(Some(&auth));
        let stored = [ApiKey {
            name: "w".into(),
            scope: KeyScope::Write,
            hash: edgecache_core::auth::hash_token("eck_right"),
            created_at: String::new(),
            last_used_at: None,
        }];
        let presented = presented_key(Some(&auth), key.as_deref(), true);
        let admitted = authorize(Need::Write, presented, &stored, &[]).is_ok();
        prop_assert_eq!(admitted, presented == Some("eck_right"));
    }

    /// Request bodies: writes, invalidations and admin inputs are a value or a typed 4xx.
    #[test]
    fn bodies(bytes in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..128),
        hostile().prop_map(String::into_bytes),
        "\\{\"(urls|records|tables|prefixes|name|origin|scope)\":(\\[\"[a-z/:*]{0,8}\"\\]|\"[a-z]{0,5}\"|1|null|\\{\\})\\}".prop_map(String::into_bytes),
    ]) {
        if let Err(e) = parse_object(&bytes) {
            let e: edgecache_core::ApiError = e.into();
            prop_assert!((400..500).contains(&e.status), "{:?}", e);
        }
        if let Err(e) = InvalidationSpec::parse(&bytes) {
            prop_assert!((400..500).contains(&e.status), "{:?}", e);
        }
        let _ = serde_json::from_slice::<RouteRule>(&bytes).map(|r| check_rule(&r));
        let _ = serde_json::from_slice::<CreateTenant>(&bytes);
        let _ = serde_json::from_slice::<TenantSettings>(&bytes);
    }

    /// Rule patterns and durations: validated or refused; a valid pattern matches itself
    /// (its literal text, with `*` standing for itself).
    #[test]
    fn rules(pattern in hostile(), path in hostile(), duration in hostile()) {
        let pattern = format!("/{pattern}");
        if validate_pattern(&pattern).is_ok() {
            prop_assert!(glob_match(&pattern, &pattern.replace('*', "")));
        }
        let _ = glob_match(&pattern, &format!("/{path}"));
        let _ = parse_duration(&duration);
    }

    /// Origin and client headers: Cache-Control, Pragma and If-None-Match never panic;
    /// header lines for origin credentials are refused or well-formed.
    #[test]
    fn headers(value in hostile(), etag in "\"[0-9a-f]{0,16}\"") {
        let _ = request_forbids_cached(Some(&value), Some(&value));
        let _ = ResponseDirectives::parse(Some(&value));
        let _ = parse_vary(Some(&value));
        let _ = normalise("accept-language", &value);
        let keyer = VariantKeyer::new(value.as_bytes());
        let _ = keyer.credentials_tag(|_| Some(value.clone()));
        let origin = OriginHeaders { cache_control: Some(&value), vary: Some(&value) };
        let _ = storable(origin, &["authorization"], &RoutePolicy::default());
        let _ = if_none_match(&value, &etag);
        prop_assert!(if_none_match(&etag, &etag) || etag == "\"\"");
        if let Ok(h) = parse_header_line(&value) {
            prop_assert!(!h.name.is_empty() && h.name == h.name.to_ascii_lowercase());
        }
    }

    /// Invalidation prefixes: the cover is a subset of the input that matches exactly what
    /// the input matches.
    #[test]
    fn prefixes(prefixes in proptest::collection::vec("/v1/[a-c]{0,3}", 0..8), probe in "/v1/[a-c]{0,4}") {
        let cover = covering_prefixes(prefixes.clone());
        prop_assert!(cover.iter().all(|p| prefixes.contains(p)));
        let matched = |set: &[String]| set.iter().any(|p| probe.starts_with(p.as_str()));
        prop_assert_eq!(matched(&cover), matched(&prefixes));
    }

    /// Origin base URLs: normalising is idempotent, and equal normal forms are one source.
    #[test]
    fn origin_urls(url in hostile()) {
        let once = normalise_base_url(&url);
        prop_assert_eq!(normalise_base_url(&once), once.clone());
        prop_assert_eq!(DataSource::http(&url), DataSource::http(&once));
    }
}
