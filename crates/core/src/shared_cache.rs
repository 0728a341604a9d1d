//! What a shared cache may store of an origin's answer, and for how long (RFC 9111 §3, §3.5,
//! §4.1, §4.2.1). One function decides, from the answer's `Cache-Control` and `Vary`, the
//! credentials the request carried and the route's policy; every "no" is a `NotStored` reason.

use crate::cache_control::ResponseDirectives;
use crate::outcome::NotStored;
use crate::rules::RoutePolicy;
use crate::vary::{parse_vary, Vary, CREDENTIAL_HEADERS, MAX_VARY_HEADERS};

/// An answer that may be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storable {
    /// How long the entry lives.
    pub ttl_secs: u64,
    /// The request headers its variant key covers (the origin's `Vary` and the rule's
    /// `vary_by`, credentials aside: the request's key already covers those); empty: the entry
    /// is stored under the request's key itself.
    pub vary: Vec<String>,
}

/// What the origin said about its answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct OriginHeaders<'a> {
    /// Its `Cache-Control`.
    pub cache_control: Option<&'a str>,
    /// Its `Vary`.
    pub vary: Option<&'a str>,
}

/// Whether an answer may be stored, and how. `credentials` names the credential headers the
/// request carried (`authorization`, `cookie`): such an answer is stored only if the origin
/// says `public` or `s-maxage`, or the route's `vary_by` names every one of them (the key then
/// includes their keyed hash either way). `private`, `no-store` and `Vary: *` are never stored.
pub fn storable(
    origin: OriginHeaders<'_>,
    credentials: &[&str],
    policy: &RoutePolicy,
) -> Result<Storable, NotStored> {
    let d = ResponseDirectives::parse(origin.cache_control);
    if d.no_store {
        return Err(NotStored::OriginNoStore);
    }
    if d.private {
        return Err(NotStored::OriginPrivate);
    }
    let mut vary = match parse_vary(origin.vary) {
        Vary::Any => return Err(NotStored::VaryAny),
        Vary::Headers(names) => names,
    };
    vary.extend(
        policy
            .vary_by
            .iter()
            .filter(|h| !CREDENTIAL_HEADERS.contains(&h.as_str()))
            .cloned(),
    );
    vary.sort();
    vary.dedup();
    if vary.len() > MAX_VARY_HEADERS {
        return Err(NotStored::VaryTooWide);
    }
    let shareable = d.public || d.s_maxage.is_some();
    let declared = credentials
        .iter()
        .all(|c| policy.vary_by.iter().any(|v| v == c));
    if !credentials.is_empty() && !shareable && !declared {
        return Err(NotStored::Credentialed);
    }
    match ttl_secs(policy, &d) {
        0 => Err(NotStored::OriginExpired),
        ttl_secs => Ok(Storable { ttl_secs, vary }),
    }
}

/// The entry's TTL: a rule's explicit `ttl_secs` wins; otherwise the origin's `s-maxage`, else
/// its `max-age`, caps the default.
pub fn ttl_secs(policy: &RoutePolicy, d: &ResponseDirectives) -> u64 {
    match (policy.ttl_from_rule, d.shared_max_age()) {
        (false, Some(origin)) => policy.ttl_secs.min(origin),
        _ => policy.ttl_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::DEFAULT_TTL_SECS;
    use proptest::prelude::*;

    fn headers<'a>(cc: Option<&'a str>, vary: Option<&'a str>) -> OriginHeaders<'a> {
        OriginHeaders {
            cache_control: cc,
            vary,
        }
    }

    fn vary_by(names: &[&str]) -> RoutePolicy {
        RoutePolicy {
            vary_by: names.iter().map(|s| s.to_string()).collect(),
            ..RoutePolicy::default()
        }
    }

    #[test]
    fn never_stored() {
        let p = vary_by(&["authorization", "cookie"]);
        for (cc, vary, reason) in [
            (Some("no-store"), None, NotStored::OriginNoStore),
            (Some("public, no-store"), None, NotStored::OriginNoStore),
            (Some("private, max-age=60"), None, NotStored::OriginPrivate),
            (Some("s-maxage=60, private"), None, NotStored::OriginPrivate),
            (Some("public"), Some("*"), NotStored::VaryAny),
            (None, Some("accept, *"), NotStored::VaryAny),
            (None, Some("a,b,c,d,e,f,g,h,i"), NotStored::VaryTooWide),
            (Some("max-age=0"), None, NotStored::OriginExpired),
            (
                Some("public, s-maxage=0, max-age=9"),
                None,
                NotStored::OriginExpired,
            ),
        ] {
            for creds in [&[][..], &["authorization"][..]] {
                assert_eq!(
                    storable(headers(cc, vary), creds, &p),
                    Err(reason),
                    "{cc:?} {vary:?}"
                );
            }
        }
    }

    #[test]
    fn credentials_need_public_s_maxage_or_a_rule_naming_them() {
        let default = RoutePolicy::default();
        let auth = ["authorization"];
        assert_eq!(
            storable(headers(None, None), &auth, &default),
            Err(NotStored::Credentialed)
        );
        assert_eq!(
            storable(headers(Some("max-age=60"), None), &["cookie"], &default),
            Err(NotStored::Credentialed)
        );
        for cc in ["public", "s-maxage=30", "public, max-age=5"] {
            assert!(
                storable(headers(Some(cc), None), &auth, &default).is_ok(),
                "{cc}"
            );
        }
        assert!(storable(headers(None, None), &auth, &vary_by(&["authorization"])).is_ok());
        assert_eq!(
            storable(
                headers(None, None),
                &["authorization", "cookie"],
                &vary_by(&["authorization"])
            ),
            Err(NotStored::Credentialed),
            "a cookie the rule does not name"
        );
        assert!(storable(headers(None, None), &[], &default).is_ok());
    }

    #[test]
    fn vary_names_are_kept() {
        let s = storable(
            headers(None, Some("Accept-Language")),
            &[],
            &RoutePolicy::default(),
        );
        assert_eq!(
            s,
            Ok(Storable {
                ttl_secs: DEFAULT_TTL_SECS,
                vary: vec!["accept-language".into()]
            })
        );
    }

    #[test]
    fn a_rules_vary_by_joins_the_origins_vary_credentials_aside() {
        let p = vary_by(&["authorization", "accept-language"]);
        let s = storable(headers(None, Some("Accept, accept-language")), &[], &p).unwrap();
        assert_eq!(s.vary, vec!["accept", "accept-language"]);
        let s = storable(headers(None, None), &["authorization"], &p).unwrap();
        assert_eq!(s.vary, vec!["accept-language"]);
    }

    #[test]
    fn ttl_precedence() {
        let p = |cc| ResponseDirectives::parse(Some(cc));
        let default = RoutePolicy::default();
        assert_eq!(ttl_secs(&default, &p("max-age=1")), 1);
        assert_eq!(ttl_secs(&default, &p("max-age=60, s-maxage=2")), 2);
        assert_eq!(ttl_secs(&default, &p("s-maxage=120, max-age=2")), 120);
        assert_eq!(ttl_secs(&default, &p("max-age=999999")), DEFAULT_TTL_SECS);
        assert_eq!(ttl_secs(&default, &p("public")), DEFAULT_TTL_SECS);
        let explicit = RoutePolicy {
            ttl_secs: 600,
            ttl_from_rule: true,
            ..RoutePolicy::default()
        };
        assert_eq!(
            ttl_secs(&explicit, &p("max-age=1")),
            600,
            "an explicit rule wins"
        );
        assert_eq!(ttl_secs(&explicit, &p("")), 600);
    }

    proptest! {
        /// Whatever the headers: private, no-store and `Vary: *` are never stored, a
        /// credentialed request is stored only with public/s-maxage or a rule naming its
        /// credentials, and the TTL never exceeds the policy's nor, without an explicit rule,
        /// the origin's shared max-age.
        #[test]
        fn storing_is_never_more_permissive_than_the_rfc(
            dirs in proptest::collection::vec(prop::sample::select(vec![
                "public", "private", "no-store", "no-cache", "max-age=0", "max-age=3",
                "s-maxage=7", "s-maxage=0", "must-revalidate", "private=\"x\"", "junk",
            ]), 0..4),
            vary in prop::sample::select(vec!["", "*", "accept-language", "Cookie, accept", "bad name"]),
            creds in prop::sample::subsequence(vec!["authorization", "cookie"], 0..=2),
            rule in prop::sample::subsequence(vec!["authorization", "cookie"], 0..=2),
            explicit in any::<bool>(),
        ) {
            let cc = dirs.join(", ");
            let policy = RoutePolicy {
                ttl_secs: 100,
                ttl_from_rule: explicit,
                ..vary_by(&rule)
            };
            let d = ResponseDirectives::parse(Some(&cc));
            let result = storable(headers(Some(&cc), Some(vary)), &creds, &policy);
            if let Ok(s) = result {
                prop_assert!(!d.private && !d.no_store);
                prop_assert!(vary != "*" && vary != "bad name");
                prop_assert!(creds.is_empty() || d.public || d.s_maxage.is_some()
                    || creds.iter().all(|c| rule.contains(c)));
                prop_assert!(s.ttl_secs > 0 && s.ttl_secs <= 100);
                if !explicit {
                    prop_assert!(d.shared_max_age().is_none_or(|m| s.ttl_secs <= m));
                }
            }
        }
    }
}
