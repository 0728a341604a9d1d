//! The admin API client: one method per endpoint, every answer returned as the server's raw
//! JSON (for `--json`) and every failure mapped to a [`CliError`].

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::CliError;
use crate::model::{CreateKey, CreateTenant, ExplainWrite, InvalidationSpec, Rule, TenantSettings};
use crate::path::encode;

/// Base path of the admin API on the worker.
const ADMIN_BASE: &str = "/_edgecache/admin";

/// How long to wait for a TCP connection before calling the endpoint unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bound on one admin call; invalidations of large tables are the slowest.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest server error body quoted back when it is not the admin API's JSON error.
const MAX_QUOTED_BODY: usize = 200;

/// A blocking client for one endpoint and token.
pub struct AdminClient {
    agent: ureq::Agent,
    endpoint: String,
    token: String,
}

impl AdminClient {
    /// A client for `endpoint` (already normalised, no trailing slash) authenticating with `token`.
    pub fn new(endpoint: &str, token: &str) -> Self {
        Self {
            agent: agent(),
            endpoint: endpoint.to_string(),
            token: token.to_string(),
        }
    }

    /// `GET /whoami`.
    pub fn whoami(&self) -> Result<Value, CliError> {
        self.call("GET", "/whoami", None)
    }

    /// `POST /tenants`.
    pub fn create_tenant(&self, body: &CreateTenant) -> Result<Value, CliError> {
        self.call("POST", "/tenants", Some(to_json(body)))
    }

    /// `GET /tenants`.
    pub fn list_tenants(&self) -> Result<Value, CliError> {
        self.call("GET", "/tenants", None)
    }

    /// `GET /tenants/{name}`.
    pub fn get_tenant(&self, name: &str) -> Result<Value, CliError> {
        self.call("GET", &tenant_path(name, ""), None)
    }

    /// `PATCH /tenants/{name}`.
    pub fn update_tenant(&self, name: &str, body: &TenantSettings) -> Result<Value, CliError> {
        self.call("PATCH", &tenant_path(name, ""), Some(to_json(body)))
    }

    /// `DELETE /tenants/{name}`.
    pub fn delete_tenant(&self, name: &str) -> Result<Value, CliError> {
        self.call("DELETE", &tenant_path(name, ""), None)
    }

    /// `GET /tenants/{name}/keys`.
    pub fn list_keys(&self, tenant: &str) -> Result<Value, CliError> {
        self.call("GET", &tenant_path(tenant, "/keys"), None)
    }

    /// `POST /tenants/{name}/keys`.
    pub fn create_key(&self, tenant: &str, body: &CreateKey) -> Result<Value, CliError> {
        self.call("POST", &tenant_path(tenant, "/keys"), Some(to_json(body)))
    }

    /// `DELETE /tenants/{name}/keys/{key}`.
    pub fn revoke_key(&self, tenant: &str, key: &str) -> Result<Value, CliError> {
        let path = tenant_path(tenant, &format!("/keys/{}", encode(key)));
        self.call("DELETE", &path, None)
    }

    /// `GET /tenants/{name}/rules`.
    pub fn list_rules(&self, tenant: &str) -> Result<Value, CliError> {
        self.call("GET", &tenant_path(tenant, "/rules"), None)
    }

    /// `PUT /tenants/{name}/rules` (upsert by pattern).
    pub fn put_rule(&self, tenant: &str, rule: &Rule) -> Result<Value, CliError> {
        self.call("PUT", &tenant_path(tenant, "/rules"), Some(to_json(rule)))
    }

    /// `DELETE /tenants/{name}/rules?pattern=…`.
    pub fn delete_rule(&self, tenant: &str, pattern: &str) -> Result<Value, CliError> {
        let path = tenant_path(tenant, &format!("/rules?pattern={}", encode(pattern)));
        self.call("DELETE", &path, None)
    }

    /// `POST /tenants/{name}/invalidate`.
    pub fn invalidate(&self, tenant: &str, body: &InvalidationSpec) -> Result<Value, CliError> {
        let path = tenant_path(tenant, "/invalidate");
        self.call("POST", &path, Some(to_json(body)))
    }

    /// `GET /tenants/{name}/deps?url=…`.
    pub fn deps_of_url(&self, tenant: &str, url: &str) -> Result<Value, CliError> {
        let path = tenant_path(tenant, &format!("/deps?url={}", encode(url)));
        self.call("GET", &path, None)
    }

    /// `GET /tenants/{name}/deps?record=…`.
    pub fn deps_of_record(&self, tenant: &str, record: &str) -> Result<Value, CliError> {
        let path = tenant_path(tenant, &format!("/deps?record={}", encode(record)));
        self.call("GET", &path, None)
    }

    /// `POST /tenants/{name}/explain`.
    pub fn explain(&self, tenant: &str, body: &ExplainWrite) -> Result<Value, CliError> {
        self.call(
            "POST",
            &tenant_path(tenant, "/explain"),
            Some(to_json(body)),
        )
    }

    /// `GET /tenants/{name}/stats`.
    pub fn stats(&self, tenant: &str) -> Result<Value, CliError> {
        self.call("GET", &tenant_path(tenant, "/stats"), None)
    }

    /// `GET /tenants/{name}/learn[?table=]`.
    pub fn learn_status(&self, tenant: &str, table: Option<&str>) -> Result<Value, CliError> {
        let query = table
            .map(|t| format!("?table={}", encode(t)))
            .unwrap_or_default();
        self.call("GET", &tenant_path(tenant, &format!("/learn{query}")), None)
    }

    /// `DELETE /tenants/{name}/learn/rules/{id}`.
    pub fn forget_rule(&self, tenant: &str, rule: &str) -> Result<Value, CliError> {
        let path = format!("/learn/rules/{}", encode(rule));
        self.call("DELETE", &tenant_path(tenant, &path), None)
    }

    /// `DELETE /tenants/{name}/learn/hypotheses/{id}`.
    pub fn forget_hypothesis(&self, tenant: &str, id: &str) -> Result<Value, CliError> {
        let path = format!("/learn/hypotheses/{}", encode(id));
        self.call("DELETE", &tenant_path(tenant, &path), None)
    }

    /// `DELETE /tenants/{name}/learn/candidates/{id}`.
    pub fn forget_candidate(&self, tenant: &str, id: &str) -> Result<Value, CliError> {
        let path = format!("/learn/candidates/{}", encode(id));
        self.call("DELETE", &tenant_path(tenant, &path), None)
    }

    /// `DELETE /tenants/{name}/learn/tables/{table}`.
    pub fn forget_table(&self, tenant: &str, table: &str) -> Result<Value, CliError> {
        let path = format!("/learn/tables/{}", encode(table));
        self.call("DELETE", &tenant_path(tenant, &path), None)
    }

    /// `GET /beta`.
    pub fn beta_signups(&self) -> Result<Value, CliError> {
        self.call("GET", "/beta", None)
    }

    /// Decodes a raw answer into the shape the human renderers use.
    pub fn decode<T: DeserializeOwned>(&self, value: Value) -> Result<T, CliError> {
        serde_json::from_value(value).map_err(|err| CliError::Protocol {
            endpoint: self.endpoint.clone(),
            detail: format!("the answer does not have the expected shape ({err})"),
        })
    }

    /// Sends one request; a 2xx answer's JSON body is returned (`Null` for an empty body, e.g.
    /// 204), anything else becomes an error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, CliError> {
        let url = format!("{}{ADMIN_BASE}{path}", self.endpoint);
        let request = self
            .agent
            .request(method, &url)
            .set("authorization", &format!("Bearer {}", self.token))
            .set("accept", "application/json");
        let result = match body {
            Some(json) => request
                .set("content-type", "application/json")
                .send_string(&json.to_string()),
            None => request.call(),
        };
        match result {
            // A 204 has no body; reading one anyway fails on some servers' framing.
            Ok(response) if response.status() == 204 => Ok(Value::Null),
            Ok(response) => {
                let text = response
                    .into_string()
                    .map_err(|err| self.unreachable(&err))?;
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                serde_json::from_str(&text).map_err(|_| CliError::Protocol {
                    endpoint: self.endpoint.clone(),
                    detail: format!("the answer is not JSON: {}", quote(&text)),
                })
            }
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                Err(api_error(status, &text))
            }
            Err(ureq::Error::Transport(transport)) => Err(self.transport_error(&transport)),
        }
    }

    fn transport_error(&self, transport: &ureq::Transport) -> CliError {
        use ureq::ErrorKind;
        match transport.kind() {
            ErrorKind::InvalidUrl | ErrorKind::UnknownScheme => {
                CliError::InvalidEndpoint(self.endpoint.clone())
            }
            ErrorKind::Dns | ErrorKind::ConnectionFailed | ErrorKind::Io => {
                self.unreachable(&describe(transport))
            }
            _ => CliError::Protocol {
                endpoint: self.endpoint.clone(),
                detail: describe(transport),
            },
        }
    }

    fn unreachable(&self, err: &dyn std::fmt::Display) -> CliError {
        CliError::Unreachable {
            endpoint: self.endpoint.clone(),
            detail: err.to_string(),
        }
    }
}

/// The HTTP agent shared by the admin client and `warm`. Proxies from the environment are not
/// used (ureq's default), so a local worker on 127.0.0.1 is always reached directly.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("edgecache-cli/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A transport error without the request URL, which ureq's `Display` leads with: the error
/// messages here already name the endpoint or URL.
pub fn describe(transport: &ureq::Transport) -> String {
    let mut text = transport.kind().to_string();
    if let Some(message) = transport.message() {
        text.push_str(": ");
        text.push_str(message);
    }
    if let Some(source) = std::error::Error::source(transport) {
        text.push_str(": ");
        text.push_str(&source.to_string());
    }
    text
}

/// `/tenants/{name}{rest}` with the name encoded as a path segment.
fn tenant_path(name: &str, rest: &str) -> String {
    format!("/tenants/{}{rest}", encode(name))
}

fn to_json(body: &impl Serialize) -> Value {
    serde_json::to_value(body).expect("request bodies are plain structs that always serialise")
}

/// Maps an error answer to [`CliError::Api`], reading `{"error":{"code","message"}}` when the
/// body has that shape and quoting the body otherwise (a proxy's HTML page, say).
pub fn api_error(status: u16, body: &str) -> CliError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let code = field("code");
    let message = field("message")
        .or_else(|| code.clone())
        .unwrap_or_else(|| {
            if body.trim().is_empty() {
                format!("the server answered HTTP {status}")
            } else {
                format!("the server answered HTTP {status}: {}", quote(body))
            }
        });
    CliError::Api {
        status,
        code,
        message,
    }
}

/// A body shortened to one line for an error message.
fn quote(body: &str) -> String {
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > MAX_QUOTED_BODY {
        let cut: String = one_line.chars().take(MAX_QUOTED_BODY).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_error_envelope() {
        let err = api_error(
            404,
            r#"{"error":{"code":"tenant_not_found","message":"no tenant 'x'"}}"#,
        );
        match err {
            CliError::Api {
                status,
                code,
                message,
            } => {
                assert_eq!(status, 404);
                assert_eq!(code.as_deref(), Some("tenant_not_found"));
                assert_eq!(message, "no tenant 'x'");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quotes_foreign_error_bodies() {
        let err = api_error(502, "<html>\n<body>Bad gateway</body></html>");
        assert_eq!(
            err.to_string(),
            "the server answered HTTP 502: <html> <body>Bad gateway</body></html> (502)"
        );
        let long = "x".repeat(500);
        assert!(api_error(500, &long).to_string().contains("…"));
        assert_eq!(
            api_error(401, "").to_string(),
            "the server answered HTTP 401 (401)"
        );
    }

    #[test]
    fn tenant_names_are_path_segments() {
        assert_eq!(tenant_path("acme", "/rules"), "/tenants/acme/rules");
        assert_eq!(tenant_path("a/b", ""), "/tenants/a%2Fb");
    }
}
