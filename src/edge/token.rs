//! Read-your-writes tokens on requests (invariant 5); the grammar is the core's.

use std::collections::BTreeMap;

use edgecache_core::token::{parse_tokens, MIN_SEQ_HEADER};
use edgecache_core::ApiError;
use worker::Request;

/// The per-table minimum seqs a read asks for (header and cookie merged; the higher wins).
pub fn min_seqs(req: &Request) -> Result<BTreeMap<String, u64>, ApiError> {
    let header = req.headers().get(MIN_SEQ_HEADER)?;
    let cookie = req.headers().get("cookie")?;
    parse_tokens(header.as_deref(), cookie.as_deref())
}
