//! The data centre's change relay, kept in the Cache API (per data centre): one coordinator's
//! latest `changes` answer that an isolate fetched, for the other isolates there to apply.
//! Why that is safe is in `edgecache_core::relay`; this is the storage. Best effort both ways:
//! a relay that cannot be read or written only means asking the coordinator.

use worker::{Cache, Headers, Response};

use edgecache_core::relay::{RelayedChanges, RELAY_TTL_SECS};
use edgecache_core::CoordinatorId;

/// The Cache API's key for a coordinator's relayed answer, on a host nobody else uses.
fn url_for(id: &CoordinatorId) -> String {
    format!("https://relay.edgecache.internal/{}", id.as_str())
}

/// The relayed answer for `id`, if one is stored and readable.
pub async fn get(id: &CoordinatorId) -> Option<RelayedChanges> {
    let mut resp = Cache::default()
        .get(url_for(id).as_str(), true)
        .await
        .ok()??;
    let text = resp.text().await.ok()?;
    serde_json::from_str(&text).ok()
}

/// Stores `relayed` as the answer for `id`.
pub async fn put(id: &CoordinatorId, relayed: &RelayedChanges) {
    let Ok(body) = serde_json::to_string(relayed) else {
        return;
    };
    let headers = Headers::new();
    let set = headers
        .set("content-type", "application/json")
        .and_then(|_| headers.set("cache-control", &format!("max-age={RELAY_TTL_SECS}")));
    let Ok(resp) = set
        .and_then(|_| Response::ok(body))
        .map(|r| r.with_headers(headers))
    else {
        return;
    };
    let _ = Cache::default().put(url_for(id).as_str(), resp).await;
}
