//! L2: the data centre's Cache API. An entry's metadata travels in headers so any isolate can
//! validate a copy against what it knows of the coordinator's invalidations.

use worker::{Cache, Headers, Response};

use super::lookup::Tier;
use crate::runtime::http::body_bytes;
use crate::runtime::platform::now_ms;
use edgecache_core::entry::{parse_stamps, CachedEntry, SharedEntry};
use edgecache_core::key::CacheKey;
use edgecache_core::outcome::Outcome;

const KEY: &str = "x-edgecache-key";
const STAMPS: &str = "x-edgecache-stamps";
const FILLED: &str = "x-edgecache-filled-at";
const EXPIRES: &str = "x-edgecache-expires-at";
/// On a variance record: the request headers its variants are keyed by.
const VARY: &str = "x-edgecache-vary";

/// The Cache API's key for an entry: an absolute URL on a host nobody else uses, per tenant.
/// A variant's tag goes after the tenant (`/acme~c0f…/v1/me`), never in a fragment, which the
/// Cache API would drop; tenant names have no `~`, so no other key is spelt the same.
pub fn url_for(key: &CacheKey) -> String {
    let variant = key.variant().map(|v| format!("~{v}")).unwrap_or_default();
    format!(
        "https://l2.edgecache.internal/{}{variant}{}",
        key.tenant(),
        key.path_and_query()
    )
}

/// Reads the copy of `key`, if the Cache API has one and its metadata is intact.
pub async fn get(key: &CacheKey) -> Option<CachedEntry> {
    let resp = Cache::default()
        .get(url_for(key).as_str(), true)
        .await
        .ok()??;
    let h = resp.headers();
    let stored_key = h.get(KEY).ok()??;
    if stored_key != key.as_str() {
        return None;
    }
    let stamps = parse_stamps(&h.get(STAMPS).ok()??)?;
    let filled_at_ms = h.get(FILLED).ok()??.parse().ok()?;
    let expires_at_ms = h.get(EXPIRES).ok()??.parse().ok()?;
    let etag = h.get("etag").ok()??;
    let vary = h
        .get(VARY)
        .ok()?
        .map(|v| v.split(',').map(str::to_string).collect());
    let body = body_bytes(&resp).await.ok()?;
    Some(CachedEntry {
        key: stored_key,
        body,
        etag,
        stamps,
        filled_at_ms,
        expires_at_ms,
        vary,
    })
}

/// Stores a copy until its TTL runs out.
pub async fn put(key: &CacheKey, entry: &CachedEntry) -> worker::Result<()> {
    let remaining_secs = entry.expires_at_ms.saturating_sub(now_ms()) / 1000;
    if remaining_secs == 0 {
        return Ok(());
    }
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("etag", &entry.etag)?;
    headers.set(
        "cache-control",
        &format!("public, max-age={remaining_secs}"),
    )?;
    headers.set(KEY, &entry.key)?;
    headers.set(STAMPS, &entry.stamps_header())?;
    headers.set(FILLED, &entry.filled_at_ms.to_string())?;
    headers.set(EXPIRES, &entry.expires_at_ms.to_string())?;
    if let Some(vary) = &entry.vary {
        headers.set(VARY, &vary.join(","))?;
    }
    let resp = Response::from_bytes(entry.body.clone())?.with_headers(headers);
    Cache::default().put(url_for(key).as_str(), resp).await
}

/// Deletes the copy of `key` in this data centre. Best effort: correctness never depends on a
/// purge (a stale copy fails validation), it only frees space early.
pub async fn purge(key: &CacheKey) {
    let _ = Cache::default().delete(url_for(key).as_str(), true).await;
}

/// L2 as a lookup tier.
pub struct L2Tier<'a> {
    /// The key being looked up.
    pub key: &'a CacheKey,
}

impl Tier for L2Tier<'_> {
    fn outcome(&self) -> Outcome {
        Outcome::HitL2
    }

    async fn get(&self, _key: &str) -> Option<SharedEntry> {
        get(self.key).await.map(SharedEntry::new)
    }

    async fn put(&self, entry: &SharedEntry) {
        let _ = put(self.key, entry).await;
    }
}
