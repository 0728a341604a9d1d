//! Cache keys: one canonical string per distinct request, so that every spelling of the same
//! request shares one cache entry and one set of dependencies, and no two different requests
//! ever share one.
//!
//! Canonical form: `{tenant}:{path}` or `{tenant}:{path}?{query}`. The path is split on `/`,
//! each segment percent-decoded and re-encoded; the query is decoded with form rules (`+` is a
//! space), its pairs sorted by (name, value) and re-encoded. Re-encoding escapes every byte
//! except the unreserved `A-Za-z0-9-._~` and `*`, with upper-case hex, so `%41`, `%61`-vs-`a`
//! spellings and pair order never split a key.
//!
//! A *variant* key is a base key followed by `#` and a variant tag of `[0-9a-z]` (keyed hashes
//! of request header values, see `vary`): `acme:/v1/me#c3f…`. `#` never occurs in a canonical
//! path or query (it is always escaped), so a variant key starts with `<base>#` and no request
//! can spell it; invalidating a base key invalidates its variants (`freshness`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::{self, encode_key_component_into, DecodeError};

/// Longest canonical path-plus-query a key may have, in bytes.
pub const MAX_PATH_AND_QUERY: usize = 2048;

/// Longest tenant name, in bytes.
pub const MAX_TENANT: usize = 63;

/// Separates a variant key's tag from its base key.
pub const VARIANT_SEPARATOR: char = '#';

/// Longest variant tag, in bytes (room for a few 33-byte parts).
pub const MAX_VARIANT: usize = 100;

/// The base key of a key string: everything before the variant separator (all of it for a
/// base key).
pub fn base_of(key: &str) -> &str {
    key.split_once(VARIANT_SEPARATOR)
        .map_or(key, |(base, _)| base)
}

/// Why a request cannot be turned into a cache key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A percent-escape is malformed or the decoded bytes are not UTF-8.
    #[error("bad URL encoding: {0}")]
    BadEncoding(String),
    /// The canonical path and query are longer than the limit.
    #[error("path and query are {len} bytes once canonicalised; the limit is {max}")]
    TooLong {
        /// Canonical length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The tenant name is not `[a-z0-9][a-z0-9-]{0,62}`.
    #[error("bad tenant name `{0}`: use 1 to 63 of a-z, 0-9 and '-', not starting with '-'")]
    BadTenant(String),
    /// The path does not start with `/` or contains `?` or `#`.
    #[error("bad path: {0}")]
    BadPath(String),
    /// A variant tag is empty, too long, or not `[0-9a-z]`.
    #[error("bad variant tag `{0}`")]
    BadVariant(String),
}

/// A canonical cache key; equal keys mean equal requests.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct CacheKey {
    /// The whole canonical key string.
    full: String,
    /// Byte length of the tenant prefix (the `:` follows it).
    tenant_len: usize,
    /// Byte length of the canonical encoded path inside `full`, after the `:`.
    path_len: usize,
    /// Byte length of the base key (all of `full` unless it has a variant tag).
    base_len: usize,
    /// The decoded path.
    path: String,
    /// The decoded query pairs, sorted by (name, value).
    pairs: Vec<(String, String)>,
}

impl CacheKey {
    /// Builds the canonical key of a request; `path` and `raw_query` are as they appear in the URL.
    pub fn from_request(
        tenant: &str,
        path: &str,
        raw_query: Option<&str>,
    ) -> Result<CacheKey, KeyError> {
        check_tenant(tenant)?;
        let rest = path.strip_prefix('/').ok_or_else(|| {
            KeyError::BadPath(format!("`{}` does not start with '/'", clip(path)))
        })?;
        if path.contains(['?', '#']) {
            return Err(KeyError::BadPath(format!(
                "`{}` contains '?' or '#'",
                clip(path)
            )));
        }

        let mut canonical = String::with_capacity(path.len() + raw_query.map_or(0, str::len) + 1);
        let mut decoded_path = String::with_capacity(path.len());
        // Segments are decoded one by one so that an escaped `/` (`%2F`) stays inside its
        // segment: `/a%2Fb` and `/a/b` are different resources to the origin.
        for segment in rest.split('/') {
            let segment = percent_decode(segment, false)?;
            canonical.push('/');
            encode_key_component_into(&mut canonical, &segment);
            decoded_path.push('/');
            decoded_path.push_str(&segment);
        }
        let path_len = canonical.len();

        let mut pairs = Vec::new();
        for piece in raw_query.unwrap_or("").split('&') {
            // Empty pieces (`a=1&&b=2`, a trailing `&`) carry no pair, as in form decoding.
            if piece.is_empty() {
                continue;
            }
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            pairs.push((percent_decode(name, true)?, percent_decode(value, true)?));
        }
        pairs.sort();
        for (i, (name, value)) in pairs.iter().enumerate() {
            canonical.push(if i == 0 { '?' } else { '&' });
            encode_key_component_into(&mut canonical, name);
            canonical.push('=');
            encode_key_component_into(&mut canonical, value);
        }
        if canonical.len() > MAX_PATH_AND_QUERY {
            return Err(KeyError::TooLong {
                len: canonical.len(),
                max: MAX_PATH_AND_QUERY,
            });
        }

        let full = format!("{tenant}:{canonical}");
        Ok(CacheKey {
            base_len: full.len(),
            full,
            tenant_len: tenant.len(),
            path_len,
            path: decoded_path,
            pairs,
        })
    }

    /// This key with `tag` appended to its variant tag (`base#tag`, or `base#oldtag` + `tag`).
    pub fn with_variant(&self, tag: &str) -> Result<CacheKey, KeyError> {
        let old = self.variant().unwrap_or("");
        let valid = |t: &str| {
            t.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        };
        if tag.is_empty() || old.len() + tag.len() > MAX_VARIANT || !valid(tag) {
            return Err(KeyError::BadVariant(clip(tag).to_string()));
        }
        let mut key = self.clone();
        if old.is_empty() {
            key.full.push(VARIANT_SEPARATOR);
        }
        key.full.push_str(tag);
        Ok(key)
    }

    /// The variant tag, if this is a variant key.
    pub fn variant(&self) -> Option<&str> {
        self.full[self.base_len..].strip_prefix(VARIANT_SEPARATOR)
    }

    /// The base key: the key of the request without any variant tag.
    pub fn base(&self) -> &str {
        &self.full[..self.base_len]
    }

    /// Parses a key string produced by [`CacheKey::as_str`]; non-canonical strings are rejected.
    pub fn parse(s: &str) -> Result<CacheKey, KeyError> {
        if let Some((base, tag)) = s.split_once(VARIANT_SEPARATOR) {
            return CacheKey::parse(base)?.with_variant(tag);
        }
        let (tenant, path_and_query) = s
            .split_once(':')
            .ok_or_else(|| KeyError::BadTenant(clip(s).to_string()))?;
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let key = CacheKey::from_request(tenant, path, query)?;
        // Accepting a non-canonical spelling would let two strings name one entry.
        if key.full != s {
            return Err(KeyError::BadEncoding(format!(
                "`{}` is not a canonical key (canonical: `{}`)",
                clip(s),
                clip(&key.full)
            )));
        }
        Ok(key)
    }

    /// The canonical key string.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The tenant the key belongs to.
    pub fn tenant(&self) -> &str {
        &self.full[..self.tenant_len]
    }

    /// The decoded path; an escaped `/` inside a segment shows as `/`, so route on
    /// [`CacheKey::encoded_path`] when segments matter.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The canonical percent-encoded path, without the query.
    pub fn encoded_path(&self) -> &str {
        let start = self.tenant_len + 1;
        &self.full[start..start + self.path_len]
    }

    /// The decoded query pairs, sorted by (name, value).
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The canonical encoded path and query, for rebuilding the request URL (a variant tag is
    /// not part of it).
    pub fn path_and_query(&self) -> &str {
        &self.full[self.tenant_len + 1..self.base_len]
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        // Every other field is a function of the canonical string.
        self.full == other.full
    }
}

impl Eq for CacheKey {}

impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.full.hash(state);
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl From<CacheKey> for String {
    fn from(key: CacheKey) -> String {
        key.full
    }
}

impl TryFrom<String> for CacheKey {
    type Error = KeyError;

    fn try_from(s: String) -> Result<CacheKey, KeyError> {
        CacheKey::parse(&s)
    }
}

/// Where data lives, as far as invalidation is concerned: the built-in D1 database, or one HTTP
/// API (its base URL, normalised). Tenants on one source share its tables' coordinators, so a
/// write through any of them invalidates what every one of them cached, and a read-your-writes
/// token means the same for all of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataSource(String);

impl DataSource {
    /// The deployment's D1 database.
    pub fn d1() -> Self {
        DataSource("d1".to_string())
    }

    /// The HTTP API at `base_url`: spellings of one URL that differ only in the case of the
    /// scheme and host, a default port or trailing slashes are one source. Named by a digest,
    /// so the name is short and holds no `:`.
    pub fn http(base_url: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(normalise_base_url(base_url).as_bytes());
        DataSource(format!("h{}", &hex::encode(digest)[..24]))
    }

    /// `d1` or `h<digest>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the built-in D1 database.
    pub fn is_d1(&self) -> bool {
        self.0 == "d1"
    }
}

/// `scheme://host[:port]/path` with the scheme and host lowercased, the scheme's default port and
/// trailing slashes dropped.
pub fn normalise_base_url(base_url: &str) -> String {
    let trailing = |c: char| c == '/' || c.is_whitespace();
    let url = base_url.trim().trim_end_matches(trailing);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut authority = authority.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => "",
    };
    if !default_port.is_empty() && authority.ends_with(default_port) {
        authority.truncate(authority.len() - default_port.len());
    }
    format!("{scheme}://{authority}{path}")
}

/// The name of a table's coordinator Durable Object, `source:table`: the one place that
/// spelling is made, so edges' views, stubs and the object itself always agree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoordinatorId(String);

impl CoordinatorId {
    /// The coordinator of `table` of the data source `source`.
    pub fn new(source: &DataSource, table: &str) -> Self {
        CoordinatorId(format!("{}:{table}", source.as_str()))
    }

    /// Reads a name made by [`CoordinatorId::new`] (the object's own name).
    pub fn parse(name: &str) -> Option<Self> {
        let (source, table) = name.split_once(':')?;
        (!source.is_empty() && !table.is_empty()).then(|| CoordinatorId(name.to_string()))
    }

    /// `source:table`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The data source.
    pub fn source(&self) -> DataSource {
        DataSource(self.0.split_once(':').map_or("", |(s, _)| s).to_string())
    }

    /// The table.
    pub fn table(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, t)| t)
    }
}

impl fmt::Display for CoordinatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a tenant name is acceptable: `[a-z0-9][a-z0-9-]{0,62}`. It is also a host label
/// and the first part of every cache key, so the registry and the keys check the same rule.
pub fn valid_tenant_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TENANT
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn check_tenant(tenant: &str) -> Result<(), KeyError> {
    if valid_tenant_name(tenant) {
        Ok(())
    } else {
        Err(KeyError::BadTenant(clip(tenant).to_string()))
    }
}

/// Decodes one component, naming the offending input in the error.
fn percent_decode(raw: &str, plus_is_space: bool) -> Result<String, KeyError> {
    codec::decode(raw, plus_is_space).map_err(|e| match e {
        DecodeError::BadEscape => {
            KeyError::BadEncoding(format!("malformed percent-escape in `{}`", clip(raw)))
        }
        DecodeError::NotUtf8 => {
            KeyError::BadEncoding(format!("`{}` does not decode to UTF-8", clip(raw)))
        }
    })
}

/// Shortens user input quoted in an error message, so errors stay small.
fn clip(s: &str) -> &str {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_api_is_one_data_source_however_its_url_is_spelled() {
        let a = DataSource::http("https://API.Acme.example:443/v2/");
        assert_eq!(a, DataSource::http("https://api.acme.example/v2"));
        assert_eq!(a, DataSource::http(" https://api.acme.example/v2// "));
        assert_ne!(a, DataSource::http("https://api.acme.example/v3"));
        assert_ne!(a, DataSource::http("http://api.acme.example/v2"));
        assert_ne!(a, DataSource::http("https://api.acme.example:8443/v2"));
        assert_ne!(a, DataSource::d1());
        assert!(DataSource::d1().is_d1() && !a.is_d1());
        let id = CoordinatorId::new(&a, "users");
        assert_eq!(CoordinatorId::parse(id.as_str()), Some(id.clone()));
        assert_eq!((id.source(), id.table()), (a, "users"));
        assert_eq!(CoordinatorId::new(&DataSource::d1(), "a:b").table(), "a:b");
    }

    #[test]
    fn tenant_names() {
        for ok in ["local", "acme", "a1-b2", "9lives"] {
            assert!(valid_tenant_name(ok), "{ok}");
        }
        for bad in ["", "-x", "Acme", "a.b", "a_b", &"x".repeat(64)] {
            assert!(!valid_tenant_name(bad), "{bad}");
        }
    }
    use proptest::prelude::*;

    fn key(path: &str, query: Option<&str>) -> CacheKey {
        CacheKey::from_request("acme", path, query).unwrap()
    }

    #[test]
    fn canonical_form() {
        let k = key("/v1/users", Some("b=2&a=x+y&a=%41"));
        assert_eq!(k.as_str(), "acme:/v1/users?a=A&a=x%20y&b=2");
        assert_eq!(k.tenant(), "acme");
        assert_eq!(k.path(), "/v1/users");
        assert_eq!(k.encoded_path(), "/v1/users");
        assert_eq!(k.path_and_query(), "/v1/users?a=A&a=x%20y&b=2");
        let pairs: Vec<(&str, &str)> = k
            .query_pairs()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(pairs, [("a", "A"), ("a", "x y"), ("b", "2")]);
    }

    #[test]
    fn empty_query_is_no_query() {
        let none = key("/v1/users", None);
        assert_eq!(none, key("/v1/users", Some("")));
        assert_eq!(none, key("/v1/users", Some("&&")));
        assert_eq!(none.as_str(), "acme:/v1/users");
        assert!(none.query_pairs().is_empty());
    }

    #[test]
    fn path_escapes_are_canonical() {
        assert_eq!(
            key("/v1/users/123-abc", None),
            key("/v1/users/%31%323-abc", None)
        );
        assert_eq!(key("/v1/a%2a", None).as_str(), "acme:/v1/a*");
        assert_eq!(key("/v1/a b", None).as_str(), "acme:/v1/a%20b");
        // '+' is only a space in the query.
        assert_eq!(key("/v1/a+b", None).path(), "/v1/a+b");
        assert_eq!(key("/v1/x", Some("q=a+b")).query_pairs()[0].1, "a b");
        assert_eq!(key("/v1/x", Some("q=a%2Bb")).query_pairs()[0].1, "a+b");
    }

    #[test]
    fn escaped_slash_is_a_different_resource() {
        let escaped = key("/v1/users/a%2Fb", None);
        let split = key("/v1/users/a/b", None);
        assert_ne!(escaped, split);
        assert_eq!(escaped.encoded_path(), "/v1/users/a%2Fb");
        assert_eq!(escaped.path(), "/v1/users/a/b");
    }

    #[test]
    fn pair_without_equals_is_empty_value() {
        assert_eq!(key("/v1/t", Some("a")), key("/v1/t", Some("a=")));
        assert_eq!(key("/v1/t", Some("a")).as_str(), "acme:/v1/t?a=");
    }

    #[test]
    fn rejects_bad_input() {
        let err = |t: &str, p: &str, q: Option<&str>| CacheKey::from_request(t, p, q).unwrap_err();
        assert!(matches!(
            err("acme", "/v1/%zz", None),
            KeyError::BadEncoding(_)
        ));
        assert!(matches!(
            err("acme", "/v1/%4", None),
            KeyError::BadEncoding(_)
        ));
        assert!(matches!(
            err("acme", "/v1/x", Some("a=%ff")),
            KeyError::BadEncoding(_)
        ));
        assert!(matches!(
            err("acme", "/v1/x", Some("a=%")),
            KeyError::BadEncoding(_)
        ));
        assert!(matches!(err("acme", "v1/x", None), KeyError::BadPath(_)));
        assert!(matches!(err("acme", "", None), KeyError::BadPath(_)));
        assert!(matches!(err("acme", "/v1/x?a", None), KeyError::BadPath(_)));
        assert!(matches!(err("acme", "/v1/x#a", None), KeyError::BadPath(_)));
        for tenant in ["", "-acme", "Acme", "ac_me", "ac:me", &"a".repeat(64)] {
            assert!(
                matches!(err(tenant, "/", None), KeyError::BadTenant(_)),
                "{tenant}"
            );
        }
        assert!(CacheKey::from_request(&"a".repeat(63), "/", None).is_ok());
        assert!(CacheKey::from_request("0-a", "/", None).is_ok());
    }

    #[test]
    fn length_limit_is_on_the_canonical_form() {
        // 2040 bytes of path plus "?a=" and 5 bytes: exactly 2048.
        let path = format!("/{}", "p".repeat(2039));
        assert!(CacheKey::from_request("t", &path, Some("a=12345")).is_ok());
        let over = CacheKey::from_request("t", &path, Some("a=123456")).unwrap_err();
        assert_eq!(
            over,
            KeyError::TooLong {
                len: 2049,
                max: MAX_PATH_AND_QUERY
            }
        );
        // A space costs three bytes once encoded.
        let spaces = format!("/{}", " ".repeat(683));
        assert!(matches!(
            CacheKey::from_request("t", &spaces, None),
            Err(KeyError::TooLong { len: 2050, .. })
        ));
    }

    #[test]
    fn parse_rejects_non_canonical_strings() {
        for s in [
            "acme:/v1/x?b=1&a=2",
            "acme:/v1/%41",
            "acme:/v1/x?",
            "acme/v1",
            "acme:/v1/x?a=+",
        ] {
            assert!(CacheKey::parse(s).is_err(), "{s}");
        }
        assert_eq!(
            CacheKey::parse("acme:/v1/x?a=1").unwrap(),
            key("/v1/x", Some("a=1"))
        );
    }

    #[test]
    fn variants_extend_the_base_key_and_parse_back() {
        let base = key("/v1/me", Some("a=1"));
        assert_eq!((base.variant(), base.base()), (None, base.as_str()));
        let c = base.with_variant("c0a1").unwrap();
        assert_eq!(c.as_str(), "acme:/v1/me?a=1#c0a1");
        assert_eq!(c.base(), base.as_str());
        assert_eq!(
            c.path_and_query(),
            "/v1/me?a=1",
            "the origin never sees the tag"
        );
        assert_eq!(
            (c.path(), c.query_pairs()),
            (base.path(), base.query_pairs())
        );
        let cv = c.with_variant("v9f").unwrap();
        assert_eq!(cv.as_str(), "acme:/v1/me?a=1#c0a1v9f");
        assert_eq!(cv.variant(), Some("c0a1v9f"));
        assert_eq!(base_of(cv.as_str()), base.as_str());
        assert_eq!(base_of(base.as_str()), base.as_str());
        for k in [&c, &cv] {
            assert_eq!(&CacheKey::parse(k.as_str()).unwrap(), k);
        }
        for bad in ["", "C0", "a#b", "a b", &"a".repeat(MAX_VARIANT + 1)] {
            assert!(
                matches!(base.with_variant(bad), Err(KeyError::BadVariant(_))),
                "{bad}"
            );
        }
        for s in [
            "acme:/v1/me#",
            "acme:/v1/me#X",
            "acme:/v1/me#a#b",
            "acme:/v1/%41#a",
        ] {
            assert!(CacheKey::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn serde_is_the_plain_string() {
        let k = key("/v1/users", Some("limit=5"));
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, "\"acme:/v1/users?limit=5\"");
        assert_eq!(serde_json::from_str::<CacheKey>(&json).unwrap(), k);
        assert!(serde_json::from_str::<CacheKey>("\"acme:/v1/x?b=1&a=1\"").is_err());
    }

    /// Characters chosen to collide with the syntax: separators, escapes, spaces and non-ASCII.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('a'),
                Just('b'),
                Just('A'),
                Just(' '),
                Just('+'),
                Just('%'),
                Just('&'),
                Just('='),
                Just('*'),
                Just('/'),
                Just('?'),
                Just('#'),
                Just('é'),
            ],
            0..3,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec((text(), text()), 0..4)
    }

    /// Form-encodes one string; `style` picks among the equivalent spellings per byte.
    fn form_encode(s: &str, style: &[bool], space_as_plus: bool) -> String {
        let mut out = String::new();
        for (i, &b) in s.as_bytes().iter().enumerate() {
            let escape_anyway = style.get(i % style.len().max(1)).copied().unwrap_or(false);
            match b {
                b' ' if space_as_plus => out.push('+'),
                b'a' | b'b' | b'A' | b'*' if !escape_anyway => out.push(b as char),
                _ => out.push_str(&format!("%{b:02x}")),
            }
        }
        out
    }

    fn query_string(pairs: &[(String, String)], style: &[bool], plus: bool) -> String {
        pairs
            .iter()
            .map(|(n, v)| {
                format!(
                    "{}={}",
                    form_encode(n, style, plus),
                    form_encode(v, style, !plus)
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    fn path_string(segments: &[String], style: &[bool]) -> String {
        segments
            .iter()
            .map(|s| format!("/{}", form_encode(s, style, false)))
            .collect()
    }

    fn sorted(mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
        pairs.sort();
        pairs
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn order_and_spelling_do_not_matter(
            (pairs, permuted) in pairs().prop_flat_map(|p| (Just(p.clone()), Just(p).prop_shuffle())),
            style_a in proptest::collection::vec(any::<bool>(), 1..4),
            style_b in proptest::collection::vec(any::<bool>(), 1..4),
        ) {
            let a = key("/v1/t", Some(&query_string(&pairs, &style_a, true)));
            let b = key("/v1/t", Some(&query_string(&permuted, &style_b, false)));
            prop_assert_eq!(&a, &b);
            let expected = sorted(pairs);
            prop_assert_eq!(a.query_pairs(), expected.as_slice());
        }

        #[test]
        fn different_pairs_never_share_a_key(
            a in pairs(),
            b in prop_oneof![pairs(), pairs().prop_map(|p| p.into_iter().rev().collect())],
            style in proptest::collection::vec(any::<bool>(), 1..4),
        ) {
            let ka = key("/v1/t", Some(&query_string(&a, &style, true)));
            let kb = key("/v1/t", Some(&query_string(&b, &[false], false)));
            prop_assert_eq!(ka == kb, sorted(a) == sorted(b));
        }

        #[test]
        fn different_paths_never_share_a_key(
            a in proptest::collection::vec(text(), 0..3),
            b in proptest::collection::vec(text(), 0..3),
            style in proptest::collection::vec(any::<bool>(), 1..4),
        ) {
            let ka = key(&format!("/v1{}", path_string(&a, &style)), None);
            let kb = key(&format!("/v1{}", path_string(&b, &[true])), None);
            prop_assert_eq!(ka == kb, a == b);
            let decoded: String = a.iter().map(|s| format!("/{s}")).collect();
            prop_assert_eq!(ka.path(), format!("/v1{decoded}"));
        }

        #[test]
        fn parse_round_trips(
            segments in proptest::collection::vec(text(), 0..3),
            pairs in pairs(),
            tenant in "[a-z0-9][a-z0-9-]{0,10}",
        ) {
            let path = format!("/v1{}", path_string(&segments, &[false]));
            let query = query_string(&pairs, &[true], true);
            let k = CacheKey::from_request(&tenant, &path, Some(&query)).unwrap();
            let back = CacheKey::parse(k.as_str()).unwrap();
            prop_assert_eq!(back.as_str(), k.as_str());
            prop_assert_eq!(back.tenant(), tenant.as_str());
            prop_assert_eq!(back.path(), k.path());
            prop_assert_eq!(back.query_pairs(), k.query_pairs());
            prop_assert_eq!(back.path_and_query(), k.path_and_query());
            // Rebuilding the request from the key gives the key back.
            let (p, q) = match k.path_and_query().split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (k.path_and_query(), None),
            };
            prop_assert_eq!(CacheKey::from_request(&tenant, p, q).unwrap(), k);
        }
    }
}
