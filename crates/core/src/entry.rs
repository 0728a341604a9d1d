//! A cached response and what invalidation needs to know about it: its key, the tables it
//! depends on with their fill stamps, and its expiry. Shared by L1, L2 and the coordinator's
//! rehydrate, so an entry means the same thing wherever it is stored.

use std::collections::BTreeMap;
use std::rc::Rc;

/// A cached response body with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEntry {
    /// The normalised cache key.
    pub key: String,
    /// The JSON body as served.
    pub body: Vec<u8>,
    /// Strong validator of `body`.
    pub etag: String,
    /// Fill stamp per table the entry depends on (invariant 2: taken before the origin fetch).
    pub stamps: BTreeMap<String, u64>,
    /// When the origin answered (ms since epoch).
    pub filled_at_ms: u64,
    /// When the route's TTL runs out.
    pub expires_at_ms: u64,
    /// `Some` for a variance record: the request headers the origin's `Vary` named, stored
    /// under the base key so a lookup knows which variant key to read. It has no body and is
    /// never served.
    pub vary: Option<Vec<String>>,
}

impl CachedEntry {
    /// A new entry; computes its etag.
    pub fn new(
        key: String,
        body: Vec<u8>,
        stamps: BTreeMap<String, u64>,
        now_ms: u64,
        ttl_secs: u64,
    ) -> Self {
        let etag = etag_of(&body);
        CachedEntry {
            key,
            body,
            etag,
            stamps,
            filled_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_secs.saturating_mul(1000)),
            vary: None,
        }
    }

    /// A variance record for `key`: its variants are keyed by the request headers `vary`
    /// names. It lives as long as the variant it was stored with.
    pub fn variance(variant: &CachedEntry, key: String, vary: Vec<String>) -> Self {
        CachedEntry {
            key,
            body: Vec::new(),
            etag: etag_of(&[]),
            stamps: variant.stamps.clone(),
            filled_at_ms: variant.filled_at_ms,
            expires_at_ms: variant.expires_at_ms,
            vary: Some(vary),
        }
    }

    /// Whether the TTL has run out.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// Seconds since the origin answered (the `age` header).
    pub fn age_secs(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.filled_at_ms) / 1000
    }

    /// Stamps as carried in a header: `orders=3,users=5`.
    pub fn stamps_header(&self) -> String {
        format_stamps(&self.stamps)
    }
}

/// `table=seq` pairs joined by commas.
pub fn format_stamps(stamps: &BTreeMap<String, u64>) -> String {
    stamps
        .iter()
        .map(|(t, s)| format!("{t}={s}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `table=seq,…` (also `table:seq`, the cookie form); `None` if any part is malformed.
pub fn parse_stamps(s: &str) -> Option<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (table, seq) = part.split_once(['=', ':'])?;
        let table = table.trim();
        if table.is_empty() {
            return None;
        }
        out.insert(table.to_string(), seq.trim().parse().ok()?);
    }
    Some(out)
}

/// Strong etag: 64-bit FNV-1a of the body and its length. Not cryptographic; it only has to
/// change when the body does.
pub fn etag_of(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("\"{h:016x}-{:x}\"", body.len())
}

/// Whether an `If-None-Match` header matches the etag (`*`, or one of a list; weak
/// comparison, as RFC 9110 asks for If-None-Match).
pub fn if_none_match(header: &str, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == bare)
}

/// An entry shared between L1 and the requests serving it, so a hit copies no body.
pub type SharedEntry = Rc<CachedEntry>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_reject_garbage() {
        let s = BTreeMap::from([("users".to_string(), 18), ("orders".to_string(), 3)]);
        assert_eq!(parse_stamps(&format_stamps(&s)), Some(s));
        assert_eq!(parse_stamps("users:18").unwrap()["users"], 18);
        for bad in ["users", "users=x", "=3", "users=-1"] {
            assert_eq!(parse_stamps(bad), None, "{bad}");
        }
    }

    #[test]
    fn etags_follow_the_body() {
        assert_eq!(etag_of(b"abc"), etag_of(b"abc"));
        assert_ne!(etag_of(b"abc"), etag_of(b"abd"));
        let e = etag_of(b"x");
        assert!(if_none_match(&e, &e));
        assert!(if_none_match(&format!("\"nope\", W/{e}"), &e));
        assert!(if_none_match("*", &e));
        assert!(!if_none_match("\"nope\"", &e));
    }

    #[test]
    fn ttl_and_age() {
        let e = CachedEntry::new("k".into(), b"{}".to_vec(), BTreeMap::new(), 1_000, 2);
        assert!(!e.is_expired(2_999));
        assert!(e.is_expired(3_000));
        assert_eq!(e.age_secs(2_500), 1);
    }
}
