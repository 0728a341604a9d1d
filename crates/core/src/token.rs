//! Read-your-writes tokens (invariant 5): a write answers `x-edgecache-seq: users=18` and sets
//! the same in a cookie; a read presenting either is never served from an older view.

use std::collections::BTreeMap;

use crate::entry::{format_stamps, parse_stamps};
use crate::error::ApiError;

/// Request header carrying a token.
pub const MIN_SEQ_HEADER: &str = "x-edgecache-min-seq";
/// Response header of writes.
pub const SEQ_HEADER: &str = "x-edgecache-seq";
/// Cookie carrying the tokens of a client's recent writes.
pub const COOKIE: &str = "edgecache_seq";
/// How long the cookie lives: longer than any sane `max_staleness_ms`.
const COOKIE_MAX_AGE_SECS: u64 = 600;

/// The per-table minimum seqs a read asks for, from its header and cookie (the higher wins).
pub fn parse_tokens(
    header: Option<&str>,
    cookie: Option<&str>,
) -> Result<BTreeMap<String, u64>, ApiError> {
    let mut out = match header {
        Some(h) => parse_stamps(h).ok_or_else(|| {
            ApiError::new(
                400,
                "bad_consistency_token",
                format!("{MIN_SEQ_HEADER} must look like `users=18,orders=3`"),
            )
        })?,
        None => BTreeMap::new(),
    };
    // A malformed cookie is ignored rather than failing reads: the client may not control it.
    if let Some(tokens) = cookie_value(cookie).and_then(|v| parse_stamps(&v.replace('|', ","))) {
        for (table, seq) in tokens {
            let e = out.entry(table).or_insert(0);
            *e = (*e).max(seq);
        }
    }
    Ok(out)
}

fn cookie_value(cookie: Option<&str>) -> Option<String> {
    cookie?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The `set-cookie` after a write: the request's tokens merged with the write's (its table's,
/// and any other table learned rules invalidated for it). Cookie values may not contain
/// commas, so pairs are joined with `|` and written `table:seq`.
pub fn set_cookie(request_cookie: Option<&str>, written: &BTreeMap<String, u64>) -> String {
    let mut tokens = cookie_value(request_cookie)
        .and_then(|v| parse_stamps(&v.replace('|', ",")))
        .unwrap_or_default();
    for (table, seq) in written {
        tokens.insert(table.clone(), *seq);
    }
    let value = format_stamps(&tokens).replace(',', "|").replace('=', ":");
    format!("{COOKIE}={value}; Path=/; Max-Age={COOKIE_MAX_AGE_SECS}; SameSite=Lax; HttpOnly")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_cookie_merge_highest_wins() {
        let t = parse_tokens(
            Some("users=18"),
            Some("a=b; edgecache_seq=users:20|orders:3"),
        )
        .unwrap();
        assert_eq!(t["users"], 20);
        assert_eq!(t["orders"], 3);
    }

    #[test]
    fn malformed_header_is_an_error_malformed_cookie_is_ignored() {
        assert_eq!(
            parse_tokens(Some("users"), None).unwrap_err().code,
            "bad_consistency_token"
        );
        assert!(parse_tokens(None, Some("edgecache_seq=garbage"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn set_cookie_merges_and_round_trips() {
        let c = set_cookie(
            Some("edgecache_seq=orders:3"),
            &BTreeMap::from([("users".to_string(), 18)]),
        );
        assert!(c.starts_with("edgecache_seq=orders:3|users:18;"), "{c}");
        let value = c.split(';').next().unwrap();
        let t = parse_tokens(None, Some(value)).unwrap();
        assert_eq!((t["users"], t["orders"]), (18, 3));
    }
}
