//! One way to call a Durable Object: JSON over its stub's fetch, errors mapped back to
//! `ApiError` from the object's `{"error": {"code", "message"}}` answer.

use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Headers, Method, Request, RequestInit, Stub};

use super::http::body_bytes;
use edgecache_core::protocol::ErrorBody;
use edgecache_core::ApiError;

/// Calls `https://<object><path_and_query>` on the stub; `object` names it in errors
/// (`coordinator_unavailable`, `registry_protocol`, …).
pub async fn call<B: Serialize, T: DeserializeOwned>(
    stub: Stub,
    object: &str,
    method: Method,
    path_and_query: &str,
    headers: Headers,
    body: Option<&B>,
) -> Result<T, ApiError> {
    let unavailable = format!("{object}_unavailable");
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if let Some(body) = body {
        let text = serde_json::to_string(body)
            .map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
        init.with_body(Some(text.into()));
    }
    let req = Request::new_with_init(&format!("https://{object}{path_and_query}"), &init)?;
    let resp = stub
        .fetch_with_request(req)
        .await
        .map_err(|e| ApiError::new(503, &unavailable, e.to_string()))?;
    let bytes = body_bytes(&resp).await?;
    if resp.status_code() >= 400 {
        let err: ErrorBody = serde_json::from_slice(&bytes).map_err(|_| {
            ApiError::new(
                503,
                &unavailable,
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })?;
        return Err(ApiError::new(
            resp.status_code(),
            &err.error.code,
            err.error.message,
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(502, &format!("{object}_protocol"), e.to_string()))
}
