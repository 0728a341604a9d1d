//! Keys of answers that depend on request headers (RFC 9111 §4.1): the origin's `Vary`, the
//! request headers a rule names in `vary_by`, and credentials.
//!
//! A varied answer is stored under a *variant key*: its base key, `#`, and a tag made of keyed
//! hashes (HMAC-SHA256 with a deployment secret) of the request header values it depends on.
//! The values themselves, and unkeyed hashes of them (a bearer token's SHA-256 can be checked
//! against a guess offline), never appear in a key, a log or a header.
//!
//! Tags: `c<32 hex>` keys a request's credentials (`Authorization`, `Cookie`), so a credentialed
//! answer is never served to another user nor to a request without credentials; `v<32 hex>`
//! keys the values of the headers the origin's `Vary` named, and follows the `c` part if any.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The request headers that carry a user's credentials: a read carrying one is forwarded to an
/// HTTP origin with it and stored only under a key that includes its keyed hash.
pub const CREDENTIAL_HEADERS: [&str; 2] = ["authorization", "cookie"];

/// The request headers a read forwards to an HTTP origin (besides `accept`, which EdgeCache
/// sets): the credentials and the language, the headers an API's answer commonly varies by.
pub const FORWARDED_READ_HEADERS: [&str; 3] = ["authorization", "cookie", "accept-language"];

/// The header names a rule's `vary_by` may name.
pub const VARY_BY_HEADERS: [&str; 4] = ["authorization", "cookie", "accept", "accept-language"];

/// Most header names an origin's `Vary` may name for its answer to be stored.
pub const MAX_VARY_HEADERS: usize = 8;

/// Hex digits of each keyed hash in a tag (128 bits).
const TAG_HEX: usize = 32;

/// What an origin's `Vary` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vary {
    /// The answer depends on these request headers (lower-case, sorted, each once; empty
    /// when the origin sent no `Vary`).
    Headers(Vec<String>),
    /// `Vary: *`: it depends on something no request header shows; never stored.
    Any,
}

/// Parses a `Vary` value (the header's values joined by commas). Names are case-insensitive,
/// so they are lower-cased; a name that is not an HTTP token makes the whole value `Any`, since
/// a cache cannot tell what it means.
pub fn parse_vary(value: Option<&str>) -> Vary {
    let mut names = Vec::new();
    for name in value.unwrap_or("").split(',').map(str::trim) {
        if name.is_empty() {
            continue;
        }
        if name == "*" || !is_token(name) {
            return Vary::Any;
        }
        names.push(name.to_ascii_lowercase());
    }
    names.sort();
    names.dedup();
    Vary::Headers(names)
}

/// Whether `s` is an HTTP token (RFC 9110 §5.6.2), the syntax of a header name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a header's values compare case-insensitively (content negotiation headers).
fn case_insensitive(name: &str) -> bool {
    matches!(
        name,
        "accept" | "accept-language" | "accept-encoding" | "accept-charset"
    )
}

/// A request header value as a variant key compares it: list members trimmed, runs of
/// whitespace made one space, and lower-cased for content negotiation headers, so
/// `fr-FR,  en;q=0.5` and `fr-fr, en;q=0.5` share a variant. Credentials are compared exactly
/// (only trimmed): two tokens differing in case are two users.
pub fn normalise(name: &str, value: &str) -> String {
    if CREDENTIAL_HEADERS.contains(&name) {
        return value.trim().to_string();
    }
    let members: Vec<String> = value
        .split(',')
        .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|m| !m.is_empty())
        .collect();
    let joined = members.join(",");
    if case_insensitive(name) {
        joined.to_ascii_lowercase()
    } else {
        joined
    }
}

/// Makes variant tags: keyed hashes of header values under one deployment secret.
#[derive(Clone)]
pub struct VariantKeyer {
    key: [u8; 32],
}

impl std::fmt::Debug for VariantKeyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VariantKeyer(..)")
    }
}

impl VariantKeyer {
    /// A keyer whose key is derived from `secret` (a deployment secret; a derived key, so the
    /// secret is used for nothing else through it).
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        mac.update(b"edgecache variant keys v1");
        VariantKeyer {
            key: mac.finalize().into_bytes().into(),
        }
    }

    /// The tag part for a request's credentials: `c` and the keyed hash of each credential
    /// header present (`None` if it carries none).
    pub fn credentials_tag(&self, value_of: impl Fn(&str) -> Option<String>) -> Option<String> {
        let values: Vec<(&str, Option<String>)> = CREDENTIAL_HEADERS
            .iter()
            .map(|&n| (n, value_of(n).map(|v| normalise(n, &v))))
            .collect();
        values
            .iter()
            .any(|(_, v)| v.is_some())
            .then(|| self.tag('c', &values))
    }

    /// The tag part for the values of the headers an answer varies by: `v` and their keyed
    /// hash. A header the request lacks differs from one sent empty.
    pub fn vary_tag(&self, names: &[String], value_of: impl Fn(&str) -> Option<String>) -> String {
        let values: Vec<(&str, Option<String>)> = names
            .iter()
            .map(|n| (n.as_str(), value_of(n).map(|v| normalise(n, &v))))
            .collect();
        self.tag('v', &values)
    }

    /// `kind` followed by the truncated HMAC of the pairs, each encoded unambiguously: name,
    /// NUL, then `0` for absent or `1`, the value's length and the value.
    fn tag(&self, kind: char, values: &[(&str, Option<String>)]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts 32-byte keys");
        mac.update(&[kind as u8]);
        for (name, value) in values {
            mac.update(name.as_bytes());
            mac.update(&[0]);
            match value {
                None => mac.update(&[0]),
                Some(v) => {
                    mac.update(&[1]);
                    mac.update(&(v.len() as u64).to_be_bytes());
                    mac.update(v.as_bytes());
                }
            }
        }
        let digest = hex::encode(mac.finalize().into_bytes());
        format!("{kind}{}", &digest[..TAG_HEX])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn vary_values() {
        assert_eq!(parse_vary(None), Vary::Headers(vec![]));
        assert_eq!(parse_vary(Some(" , ")), Vary::Headers(vec![]));
        assert_eq!(
            parse_vary(Some("Accept-Language, accept,ACCEPT-language")),
            Vary::Headers(names(&["accept", "accept-language"]))
        );
        assert_eq!(parse_vary(Some("*")), Vary::Any);
        assert_eq!(parse_vary(Some("accept, *")), Vary::Any);
        assert_eq!(parse_vary(Some("a b")), Vary::Any, "not a header name");
        assert_eq!(parse_vary(Some("x\u{e9}")), Vary::Any);
    }

    #[test]
    fn values_are_normalised_for_negotiation_and_exact_for_credentials() {
        assert_eq!(
            normalise("accept-language", "  fr-FR,\ten ;q=0.5 ,, "),
            "fr-fr,en ;q=0.5"
        );
        assert_eq!(normalise("x-thing", "A,  B"), "A,B");
        assert_eq!(normalise("authorization", "  Bearer AbC "), "Bearer AbC");
        assert_eq!(normalise("cookie", "a=1; b=2"), "a=1; b=2");
    }

    fn header<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |n| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn credential_tags() {
        let k = VariantKeyer::new(b"s3cr3t");
        assert_eq!(
            k.credentials_tag(header(&[("accept-language", "fr")])),
            None
        );
        let a = k
            .credentials_tag(header(&[("authorization", "Bearer a")]))
            .unwrap();
        let b = k
            .credentials_tag(header(&[("authorization", "Bearer b")]))
            .unwrap();
        let cookie_a = k
            .credentials_tag(header(&[("cookie", "Bearer a")]))
            .unwrap();
        assert!(a.starts_with('c') && a.len() == 1 + TAG_HEX);
        assert!(a[1..]
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert_ne!(a, cookie_a, "the header's name is part of the hash");
        assert_eq!(
            a,
            k.credentials_tag(header(&[("authorization", " Bearer a")]))
                .unwrap()
        );
        let other = VariantKeyer::new(b"other secret");
        assert_ne!(
            Some(a.clone()),
            other.credentials_tag(header(&[("authorization", "Bearer a")])),
            "keyed: another deployment's tag differs"
        );
        assert!(!a.contains("Bearer") && !format!("{k:?}").contains("s3cr3t"));
    }

    #[test]
    fn vary_tags_tell_absent_from_empty() {
        let k = VariantKeyer::new(b"s");
        let n = names(&["accept-language"]);
        let fr = k.vary_tag(&n, header(&[("accept-language", "fr")]));
        let fr2 = k.vary_tag(&n, header(&[("accept-language", " FR ")]));
        let de = k.vary_tag(&n, header(&[("accept-language", "de")]));
        let none = k.vary_tag(&n, header(&[]));
        let empty = k.vary_tag(&n, header(&[("accept-language", "")]));
        assert_eq!(fr, fr2);
        assert!(fr.starts_with('v'));
        let all = [&fr, &de, &none, &empty];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }

    proptest! {
        /// Two requests share a tag exactly when their normalised values (and presence) are
        /// equal: the encoding is injective (`("ab", "c")` and `("a", "bc")` never meet), so
        /// only an HMAC collision could merge two variants.
        #[test]
        fn tags_are_equal_iff_normalised_values_are(
            a in proptest::option::of("[aB ,]{0,3}"),
            b in proptest::option::of("[aB ,]{0,3}"),
            c in proptest::option::of("[aB ,]{0,3}"),
            d in proptest::option::of("[aB ,]{0,3}"),
        ) {
            let k = VariantKeyer::new(b"s");
            let n = names(&["accept", "x-a"]);
            let tag = |x: &Option<String>, y: &Option<String>| {
                k.vary_tag(&n, |h| if h == "accept" { x.clone() } else { y.clone() })
            };
            let norm = |h: &str, v: &Option<String>| v.as_ref().map(|s| normalise(h, s));
            let same = (norm("accept", &a), norm("x-a", &b)) == (norm("accept", &c), norm("x-a", &d));
            prop_assert_eq!(tag(&a, &b) == tag(&c, &d), same);
        }

        #[test]
        fn parse_vary_never_panics_and_is_sorted(v in "[ -~]{0,40}") {
            if let Vary::Headers(names) = parse_vary(Some(&v)) {
                prop_assert!(names.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(names.iter().all(|n| is_token(n) && *n == n.to_ascii_lowercase()));
            }
        }
    }
}
