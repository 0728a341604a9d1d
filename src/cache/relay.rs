//! The data centre's change relay, kept in the Cache API (per data centre): one coordinator's
//! latest `changes` answer that an isolate fetched, for the other isolates there to apply.
//! Why that is safe is in `edgecache_core::relay`; this is the storage. Best effort both ways:
//! a relay that cannot be read or written only means asking the coordinator.

use worker::{Cache, Headers, Response};

use crate::runtime::http::body_bytes;
use edgecache_core::relay::{RelayedChanges, RELAY_TTL_SECS};
use edgecache_core::CoordinatorId;

/// The Cache API's key for a coordinator's relayed answer, on a host nobody else uses.
fn url_for(id: &CoordinatorId) -> String {
    format!("https://relay.edgecache.internal/{}", id.as_str())
}

/// The relayed answer for `id`, if one is stored and readable.
pub async fn get(id: &CoordinatorId) -> Option<RelayedChanges> {
    serde_json::from_str(&get_text(&url_for(id)).await?).ok()
}

/// Stores `relayed` as the answer for `id`.
pub async fn put(id: &CoordinatorId, relayed: &RelayedChanges) {
    if let Ok(body) = serde_json::to_string(relayed) {
        put_text(&url_for(id), body, RELAY_TTL_SECS).await;
    }
}

/// The Cache API's key for an isolate's claim to be refreshing `id`'s relayed answer.
fn claim_url(id: &CoordinatorId) -> String {
    format!("https://relay.edgecache.internal/claim/{}", id.as_str())
}

/// Whether another isolate of this data centre claimed to be refreshing `id`'s relayed answer
/// less than `within_ms` before `now_ms`.
pub async fn claimed(id: &CoordinatorId, now_ms: u64, within_ms: u64) -> bool {
    let at: Option<u64> = get_text(&claim_url(id))
        .await
        .and_then(|t| t.trim().parse().ok());
    at.is_some_and(|at| now_ms.saturating_sub(at) < within_ms)
}

/// Claims the refresh of `id`'s relayed answer at `now_ms`. Two isolates claiming at once both
/// refresh: one extra coordinator call, nothing worse.
pub async fn claim(id: &CoordinatorId, now_ms: u64) {
    put_text(&claim_url(id), now_ms.to_string(), 5).await;
}

/// The text stored under `url`, if the Cache API has it and it reads.
async fn get_text(url: &str) -> Option<String> {
    let resp = Cache::default().get(url, true).await.ok()??;
    String::from_utf8(body_bytes(&resp).await.ok()?).ok()
}

/// Stores `body` under `url` for `max_age_secs`; failures are ignored (best effort).
async fn put_text(url: &str, body: String, max_age_secs: u64) {
    let headers = Headers::new();
    let set = headers
        .set("content-type", "application/json")
        .and_then(|_| headers.set("cache-control", &format!("max-age={max_age_secs}")));
    if let Ok(resp) = set
        .and_then(|_| Response::ok(body))
        .map(|r| r.with_headers(headers))
    {
        let _ = Cache::default().put(url, resp).await;
    }
}
