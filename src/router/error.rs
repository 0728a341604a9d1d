//! Every error a client can see, mapped to an HTTP status and a stable `code` in one place.

use serde_json::json;
use worker::Response;

use crate::config::ConfigError;
use crate::dependency::key::KeyError;
use crate::dependency::query::QueryError;
use crate::origin::OriginError;

/// An error answered as `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Stable, machine-readable code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// 404 for paths nothing serves.
    pub fn route_not_found(path: &str) -> Self {
        Self::new(
            404,
            "route_not_found",
            format!("nothing is served at `{path}`"),
        )
    }

    /// 405 with the methods the path accepts.
    pub fn method_not_allowed(method: &str, allowed: &str) -> Self {
        Self::new(
            405,
            "method_not_allowed",
            format!("{method} is not allowed here; allowed: {allowed}"),
        )
    }

    /// The JSON response. Errors are never cached: `cache-control: no-store`.
    pub fn to_response(&self) -> worker::Result<Response> {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp = Response::from_json(&body)?.with_status(self.status);
        resp.headers_mut().set("cache-control", "no-store")?;
        Ok(resp)
    }
}

impl From<OriginError> for ApiError {
    fn from(e: OriginError) -> Self {
        let message = e.to_string();
        match e {
            OriginError::UnknownRelation(_) => Self::new(404, "unknown_table", message),
            OriginError::NotFound { .. } => Self::new(404, "record_not_found", message),
            OriginError::ReadOnlyView(_) => Self::new(405, "read_only_view", message),
            OriginError::Query(q) => q.into(),
            OriginError::UnknownColumn { .. } => Self::new(400, "unknown_column", message),
            OriginError::BadBody(_) => Self::new(400, "bad_body", message),
            OriginError::BodyTooLarge { .. } => Self::new(413, "body_too_large", message),
            OriginError::Conflict { .. } => Self::new(409, "id_conflict", message),
            OriginError::Constraint(_) => Self::new(400, "constraint_failed", message),
            OriginError::Unavailable(_) => Self::new(502, "origin_unavailable", message),
            OriginError::Timeout(_) => Self::new(504, "origin_timeout", message),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let code = match e {
            QueryError::UnknownColumn(_) => "unknown_column",
            QueryError::BadLimit(_) => "bad_limit",
            QueryError::BadOffset(_) => "bad_offset",
            QueryError::BadOrder(_) => "bad_order",
            QueryError::Duplicate(_) => "duplicate_parameter",
        };
        Self::new(400, code, e.to_string())
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::TooLong { .. } => Self::new(414, "uri_too_long", e.to_string()),
            KeyError::BadTenant(_) => Self::new(404, "unknown_tenant", e.to_string()),
            KeyError::BadEncoding(_) | KeyError::BadPath(_) => {
                Self::new(400, "bad_request", e.to_string())
            }
        }
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        Self::new(500, "misconfigured", e.to_string())
    }
}

impl From<worker::Error> for ApiError {
    fn from(e: worker::Error) -> Self {
        Self::new(500, "internal", e.to_string())
    }
}
