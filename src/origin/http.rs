//! The HTTP origin: the tenant's own REST API. Reads and writes are forwarded to
//! `<base_url><path>?<canonical query>`; what the API answers is what clients get.

use worker::{Fetch, Headers, Method, Request, RequestInit};

use super::OriginError;

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
    /// The body.
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// Whether the origin forbids shared caching (`no-store` or `private`).
    pub fn forbids_caching(&self) -> bool {
        cache_control_forbids(self.cache_control.as_deref())
    }

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

/// `no-store` or `private` in a `Cache-Control` value.
pub fn cache_control_forbids(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        v.split(',')
            .map(|d| {
                d.trim()
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase()
            })
            .any(|d| d == "no-store" || d == "private")
    })
}

/// A tenant's REST API.
pub struct HttpOrigin<'a> {
    base_url: &'a str,
}

impl<'a> HttpOrigin<'a> {
    /// The API at `base_url` (no trailing slash needed).
    pub fn new(base_url: &'a str) -> Self {
        HttpOrigin { base_url }
    }

    /// Sends a request; network failures and 5xx answers are `Unavailable` (stale-if-error
    /// applies), anything else is returned as the origin's answer.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> Result<HttpAnswer, OriginError> {
        let url = format!("{}{}", self.base_url.trim_end_matches('/'), path_and_query);
        let headers = Headers::new();
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
        let mut resp = Fetch::Request(req).send().await.map_err(unavailable)?;
        let status = resp.status_code();
        let h = resp.headers();
        let content_type = h.get("content-type").ok().flatten();
        let cache_control = h.get("cache-control").ok().flatten();
        let body = resp.bytes().await.map_err(unavailable)?;
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
            body,
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
    fn cache_control_directives() {
        assert!(cache_control_forbids(Some("no-store")));
        assert!(cache_control_forbids(Some("max-age=60, Private")));
        assert!(cache_control_forbids(Some("private=\"set-cookie\"")));
        assert!(!cache_control_forbids(Some("public, max-age=60")));
        assert!(!cache_control_forbids(Some("no-cache")));
        assert!(!cache_control_forbids(None));
    }

    #[test]
    fn json_content_types() {
        let a = |ct: Option<&str>| HttpAnswer {
            status: 200,
            content_type: ct.map(String::from),
            cache_control: None,
            body: vec![],
        };
        assert!(a(Some("application/json; charset=utf-8")).is_json());
        assert!(!a(Some("text/html")).is_json());
        assert!(!a(None).is_json());
    }
}
