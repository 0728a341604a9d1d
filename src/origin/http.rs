//! The HTTP origin: the tenant's own REST API. Reads and writes are forwarded to
//! `<base_url><path>?<canonical query>`; what the API answers is what clients get. Reads carry
//! the client's credentials and language (`vary::FORWARDED_READ_HEADERS`); whether the answer
//! may be stored is the read path's decision (`shared_cache`), from the `Cache-Control` and
//! `Vary` returned here.

use worker::{Fetch, Headers, Method, Request, RequestInit};

use crate::runtime::http::body_bytes;
use edgecache_core::id_text;
use edgecache_core::key::CacheKey;
use edgecache_core::origin::{OriginError, OriginRead, OriginWrite, ReadTarget};
use edgecache_core::outcome::NotStored;
use edgecache_core::protocol::{OriginHeader, WriteOp};
use edgecache_core::schema::Relation;

use super::Origin;

/// Largest origin response body the edge reads (and caches).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// An origin answer, read whole.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// `content-type`, if any.
    pub content_type: Option<String>,
    /// `cache-control`, if any.
    pub cache_control: Option<String>,
    /// `vary`, if any.
    pub vary: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// Whether the body is JSON (the only kind EdgeCache caches).
    pub fn is_json(&self) -> bool {
        self.content_type.as_deref().is_some_and(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
    }
}

/// A tenant's REST API.
pub struct HttpOrigin {
    base_url: String,
    /// The tenant's credentials for it, sent on every request.
    credentials: Vec<OriginHeader>,
}

impl HttpOrigin {
    /// The API at `base_url` (no trailing slash needed), called with `credentials`.
    pub fn new(base_url: &str, credentials: &[OriginHeader]) -> Self {
        HttpOrigin {
            base_url: base_url.to_string(),
            credentials: credentials.to_vec(),
        }
    }

    /// Sends a request with the client headers `forward` and the tenant's credentials;
    /// network failures and 5xx answers are `Unavailable` (stale-if-error applies), anything
    /// else is returned as the origin's answer.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&[u8]>,
        forward: &[OriginHeader],
    ) -> Result<HttpAnswer, OriginError> {
        let url = format!("{}{}", self.base_url.trim_end_matches('/'), path_and_query);
        let headers = Headers::new();
        // Client headers first, so a client can never override the tenant's credentials.
        for h in forward.iter().chain(&self.credentials) {
            headers.set(&h.name, &h.value).map_err(unavailable)?;
        }
        headers
            .set("accept", "application/json")
            .map_err(unavailable)?;
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(headers.clone());
        if let Some(body) = body {
            headers
                .set("content-type", "application/json")
                .map_err(unavailable)?;
            init.with_headers(headers)
                .with_body(Some(worker::js_sys::Uint8Array::from(body).into()));
        }
        let req = Request::new_with_init(&url, &init).map_err(unavailable)?;
        let resp = Fetch::Request(req).send().await.map_err(unavailable)?;
        let status = resp.status_code();
        let h = resp.headers();
        let content_type = h.get("content-type").ok().flatten();
        let cache_control = h.get("cache-control").ok().flatten();
        let vary = h.get("vary").ok().flatten();
        let body = body_bytes(&resp).await.map_err(unavailable)?;
        if status >= 500 {
            return Err(OriginError::Unavailable(format!(
                "the origin answered {status}"
            )));
        }
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(OriginError::Unavailable(format!(
                "the origin's answer is over {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        Ok(HttpAnswer {
            status,
            content_type,
            cache_control,
            vary,
            body,
        })
    }
}

impl HttpOrigin {
    /// The record at `path` (its query dropped) as the API answers a read of it now, with
    /// the client headers `forward`: a write's before image. `None` when the answer is not a
    /// 200 JSON object (a missing record, a refusal).
    pub async fn read_record(
        &self,
        path: &str,
        forward: &[OriginHeader],
    ) -> Result<Option<edgecache_core::Row>, OriginError> {
        let path = path.split('?').next().unwrap_or(path);
        let answer = self.send(Method::Get, path, None, forward).await?;
        if answer.status != 200 || !answer.is_json() {
            return Ok(None);
        }
        let json: serde_json::Value =
            serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
        Ok(record_row(&json))
    }
}

/// The record an answer carries: `{"data": {row}}` or the bare row.
fn record_row(json: &serde_json::Value) -> Option<edgecache_core::Row> {
    match json.get("data").unwrap_or(json) {
        serde_json::Value::Object(m) => Some(m.clone()),
        _ => None,
    }
}

impl Origin for HttpOrigin {
    async fn read(
        &self,
        _relation: &Relation,
        _target: &ReadTarget,
        key: &CacheKey,
        forward: &[OriginHeader],
    ) -> Result<OriginRead, OriginError> {
        let answer = self
            .send(Method::Get, key.path_and_query(), None, forward)
            .await?;
        let json = serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
        let not_storable = (!answer.is_json()).then_some(NotStored::NotJson);
        Ok(OriginRead {
            status: answer.status,
            content_type: answer
                .content_type
                .unwrap_or_else(|| "application/octet-stream".into()),
            body: answer.body,
            json,
            not_storable,
            cache_control: answer.cache_control,
            vary: answer.vary,
        })
    }

    /// The before image is not read here (the coordinator reads it with [`HttpOrigin::read_record`]
    /// when learned list semantics can use it). Only a 2xx answer changed anything.
    async fn write(&self, relation: &Relation, op: &WriteOp) -> Result<OriginWrite, OriginError> {
        let WriteOp::Forward {
            method,
            path,
            id,
            body,
            headers,
        } = op
        else {
            return Err(OriginError::BadBody(
                "a typed write reached an HTTP origin".into(),
            ));
        };
        let method = match method.as_str() {
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            other => return Err(OriginError::BadBody(format!("cannot forward {other}"))),
        };
        let bytes = body.as_ref().map(|b| {
            serde_json::Value::Object(b.clone())
                .to_string()
                .into_bytes()
        });
        let is_delete = method == Method::Delete;
        let answer = self.send(method, path, bytes.as_deref(), headers).await?;
        let json: serde_json::Value =
            serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
        let changed = (200..300).contains(&answer.status);
        let row = record_row(&json);
        let id = id
            .clone()
            .or_else(|| {
                row.as_ref()
                    .and_then(|r| r.get(&relation.id_column))
                    .and_then(id_text)
            })
            .unwrap_or_default();
        Ok(OriginWrite {
            changed,
            status: answer.status,
            id,
            before: None,
            after: if is_delete { None } else { row },
            views: Vec::new(),
            body: json,
        })
    }
}

fn unavailable(e: worker::Error) -> OriginError {
    OriginError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let a = |ct: Option<&str>| HttpAnswer {
            status: 200,
            content_type: ct.map(String::from),
            cache_control: None,
            vary: None,
            body: vec![],
        };
        assert!(a(Some("application/json; charset=utf-8")).is_json());
        assert!(!a(Some("text/html")).is_json());
        assert!(!a(None).is_json());
    }
}
