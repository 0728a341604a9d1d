//! Every error a client can see, mapped to an HTTP status and a stable `code` in one place.

use std::any::Any;

use crate::access::AccessError;
use crate::config::ConfigError;
use crate::key::KeyError;
use crate::origin::OriginError;
use crate::query::QueryError;
use crate::rules::RuleError;

/// An error answered as `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Stable, machine-readable code.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// For a 405: the methods the resource accepts (the `allow` header RFC 9110 asks for).
    pub allow: Option<String>,
    /// For a 429: seconds until the client may try again (the `retry-after` header).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            allow: None,
            retry_after: None,
        }
    }

    /// 500: something that is not the client's fault.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
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
        ApiError {
            allow: Some(allowed.to_string()),
            ..Self::new(
                405,
                "method_not_allowed",
                format!("{method} is not allowed here; allowed: {allowed}"),
            )
        }
    }

    /// 429 for a client over a rate limit, retrying after `secs`.
    pub fn rate_limited(secs: u64) -> Self {
        ApiError {
            retry_after: Some(secs),
            ..Self::new(
                429,
                "rate_limited",
                format!("too many requests from this client; try again in {secs} s"),
            )
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "code": self.code, "message": self.message } })
    }
}

/// Every typed error of the core maps to its status and code here; any other error (the
/// runtime's, serde's) is an internal one. One conversion for all, so `?` works on each of
/// them and the mapping cannot be written twice.
impl<E: std::error::Error + 'static> From<E> for ApiError {
    fn from(e: E) -> Self {
        let message = e.to_string();
        let any: Box<dyn Any> = Box::new(e);
        let any = match any.downcast::<OriginError>() {
            Ok(e) => return origin(*e, message),
            Err(any) => any,
        };
        let any = match any.downcast::<QueryError>() {
            Ok(e) => return query(&e, message),
            Err(any) => any,
        };
        let any = match any.downcast::<KeyError>() {
            Ok(e) => return key(&e, message),
            Err(any) => any,
        };
        if let Some(e) = any.downcast_ref::<AccessError>() {
            let (status, code) = match e {
                AccessError::Missing(_) => (401, "missing_key"),
                AccessError::Unknown => (401, "bad_key"),
                AccessError::ReadOnly(_) => (403, "read_only_key"),
            };
            return Self::new(status, code, message);
        }
        if any.is::<RuleError>() {
            return Self::new(400, "invalid_rule", message);
        }
        if any.is::<ConfigError>() {
            return Self::new(500, "misconfigured", message);
        }
        Self::internal(message)
    }
}

fn origin(e: OriginError, message: String) -> ApiError {
    let (status, code) = match e {
        OriginError::Query(q) => return query(&q, message),
        OriginError::UnknownRelation(_) => (404, "unknown_table"),
        OriginError::NotFound { .. } => (404, "record_not_found"),
        OriginError::ReadOnlyView(_) => (405, "read_only_view"),
        OriginError::UnknownColumn { .. } => (400, "unknown_column"),
        OriginError::BadBody(_) => (400, "bad_body"),
        OriginError::BodyTooLarge { .. } => (413, "body_too_large"),
        OriginError::Conflict { .. } => (409, "id_conflict"),
        OriginError::Constraint(_) => (400, "constraint_failed"),
        OriginError::Unavailable(_) => (502, "origin_unavailable"),
        OriginError::Timeout(_) => (504, "origin_timeout"),
    };
    ApiError::new(status, code, message)
}

fn query(e: &QueryError, message: String) -> ApiError {
    let code = match e {
        QueryError::UnknownColumn(_) => "unknown_column",
        QueryError::BadLimit(_) => "bad_limit",
        QueryError::BadOffset(_) => "bad_offset",
        QueryError::BadOrder(_) => "bad_order",
        QueryError::Duplicate(_) => "duplicate_parameter",
    };
    ApiError::new(400, code, message)
}

fn key(e: &KeyError, message: String) -> ApiError {
    let (status, code) = match e {
        KeyError::TooLong { .. } => (414, "uri_too_long"),
        KeyError::BadTenant(_) => (404, "unknown_tenant"),
        KeyError::BadEncoding(_) | KeyError::BadPath(_) | KeyError::BadVariant(_) => {
            (400, "bad_request")
        }
    };
    ApiError::new(status, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_errors_keep_their_status_and_code() {
        let e: ApiError = OriginError::Timeout(5).into();
        assert_eq!((e.status, e.code.as_str()), (504, "origin_timeout"));
        let e: ApiError = OriginError::Query(QueryError::BadLimit("x".into())).into();
        assert_eq!((e.status, e.code.as_str()), (400, "bad_limit"));
        let e: ApiError = KeyError::TooLong { len: 3, max: 2 }.into();
        assert_eq!((e.status, e.code.as_str()), (414, "uri_too_long"));
        let e: ApiError = serde_json::from_str::<u8>("x").unwrap_err().into();
        assert_eq!((e.status, e.code.as_str()), (500, "internal"));
    }
}
