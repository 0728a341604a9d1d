//! Reading requests and answering JSON (errors included), the same way on every endpoint and
//! object.

use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{js_sys, web_sys, Method, Request, Response, ResponseBody};

use edgecache_core::ApiError;

/// Bodies between the edge and its Durable Objects (registration batches, writes).
pub const INTERNAL_MAX_BODY: usize = 16 * 1024 * 1024;

/// The body, refused with 413 when it is (or says it is) larger than `max` bytes.
pub async fn read_body(req: &mut Request, max: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            413,
            "body_too_large",
            format!("the body is larger than {max} bytes"),
        )
    };
    let declared = req
        .headers()
        .get("content-length")?
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let bytes = req.bytes().await?;
    if bytes.len() > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// A response's whole body, in one `arrayBuffer()` call. `Response::bytes` reads a streamed body
/// chunk by chunk, each read a trip across the JS boundary: about 0.4 ms per coordinator answer
/// when measured under concurrent writers.
pub async fn body_bytes(resp: &Response) -> worker::Result<Vec<u8>> {
    match resp.body() {
        ResponseBody::Empty => Ok(Vec::new()),
        ResponseBody::Body(bytes) => Ok(bytes.clone()),
        ResponseBody::Stream(stream) => {
            let whole = web_sys::Response::new_with_opt_readable_stream(Some(stream))?;
            let buffer = JsFuture::from(whole.array_buffer()?).await?;
            Ok(js_sys::Uint8Array::new(&buffer).to_vec())
        }
    }
}

/// The body as JSON of type `T` (400 `bad_body` otherwise).
pub async fn read_json<T: DeserializeOwned>(req: &mut Request, max: usize) -> Result<T, ApiError> {
    let bytes = read_body(req, max).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::new(400, "bad_body", e.to_string()))
}

/// A 200 JSON answer.
pub fn json<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    Ok(Response::from_json(value)?)
}

/// The request's method. `worker::Method` reads any verb it does not know (`PROPFIND`,
/// `PURGE`, `QUERY`…) as GET, so the raw verb is checked first: an unknown one is refused with
/// 405 and the methods `allowed`, never served as a read.
pub fn method_of(req: &Request, allowed: &str) -> Result<Method, ApiError> {
    let raw = req.inner().method();
    let method = Method::from(raw.clone());
    if method.as_ref().eq_ignore_ascii_case(&raw) {
        Ok(method)
    } else {
        Err(ApiError::method_not_allowed(&raw, allowed))
    }
}

/// The first value of a query parameter, decoded.
pub fn query_param(url: &worker::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The error as its JSON response. Errors are never cached: `cache-control: no-store`.
pub fn error_response(e: &ApiError) -> worker::Result<Response> {
    let mut resp = Response::from_json(&e.body())?.with_status(e.status);
    resp.headers_mut().set("cache-control", "no-store")?;
    if let Some(allow) = &e.allow {
        resp.headers_mut().set("allow", allow)?;
    }
    if let Some(secs) = e.retry_after {
        resp.headers_mut().set("retry-after", &secs.to_string())?;
    }
    Ok(resp)
}
