//! `TenantRegistry`: one Durable Object holding every tenant, their rules and credentials.
//! A Durable Object rather than KV because changes must take effect at once: a deleted tenant
//! or a replaced token must stop working on the next request, not after KV's minute-long
//! propagation; edges still cache tenant configuration for a couple of seconds.

use std::cell::Cell;
use std::collections::BTreeMap;

use serde::Deserialize;
use worker::{
    durable_object, DurableObject, Env, Method, Request, Response, SqlStorageValue, State,
};

use crate::runtime::env::ObjectConfig;
use crate::runtime::http::{json, read_json, INTERNAL_MAX_BODY};
use crate::runtime::platform::{now_ms, random_bytes};
use edgecache_core::auth::{hash_token, token_from_bytes, TokenKind};
use edgecache_core::config::Config;
use edgecache_core::key::valid_tenant_name;
use edgecache_core::protocol::{CreateTenant, CreatedTenant, OriginConfig, Tenant, TenantRecord};
use edgecache_core::rules::{check_rule, RouteRule};
use edgecache_core::time::rfc3339;
use edgecache_core::ApiError;

/// Most tenants one deployment holds.
pub const MAX_TENANTS: usize = 1000;
/// Most rules one tenant holds.
pub const MAX_RULES: usize = 100;

/// The name every edge uses for the registry object.
pub const REGISTRY_NAME: &str = "registry";

/// The tenant registry.
#[durable_object]
pub struct TenantRegistry {
    state: State,
    env: Env,
    /// Vars, parsed once per object.
    config: ObjectConfig,
    migrated: Cell<bool>,
}

#[derive(Deserialize)]
struct Row {
    record: String,
}

impl DurableObject for TenantRegistry {
    fn new(state: State, env: Env) -> Self {
        TenantRegistry {
            state,
            env,
            config: ObjectConfig::default(),
            migrated: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        match self.serve(req).await {
            Ok(resp) => Ok(resp),
            Err(e) => crate::runtime::http::error_response(&e),
        }
    }
}

impl TenantRegistry {
    fn config(&self) -> Result<&Config, ApiError> {
        self.config.get(&self.env)
    }

    fn exec(&self, sql: &str, args: Vec<SqlStorageValue>) -> Result<Vec<Row>, ApiError> {
        Ok(self.state.storage().sql().exec(sql, args)?.to_array()?)
    }

    fn migrate(&self) -> Result<(), ApiError> {
        if !self.migrated.get() {
            self.exec("CREATE TABLE IF NOT EXISTS tenants (name TEXT PRIMARY KEY, token_hash TEXT, record TEXT NOT NULL)", vec![])?;
            self.exec(
                "CREATE INDEX IF NOT EXISTS tenants_by_token ON tenants (token_hash)",
                vec![],
            )?;
            self.migrated.set(true);
        }
        Ok(())
    }

    fn load(&self, name: &str) -> Result<Option<TenantRecord>, ApiError> {
        let rows = self.exec(
            "SELECT record FROM tenants WHERE name = ?",
            vec![name.into()],
        )?;
        Ok(rows
            .first()
            .and_then(|r| serde_json::from_str(&r.record).ok()))
    }

    fn store(&self, record: &TenantRecord) -> Result<(), ApiError> {
        let json = serde_json::to_string(record)
            .map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
        self.exec(
            "INSERT INTO tenants (name, token_hash, record) VALUES (?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET token_hash = excluded.token_hash, record = excluded.record",
            vec![record.tenant.name.as_str().into(), record.admin_token_hash.clone().into(), json.into()],
        )?;
        Ok(())
    }

    /// A tenant; the default tenant (with the configured rules and views) and the website
    /// demo's tenant (no rules, no views: its catalogue is the `demo_*` tables) are created on
    /// first use, so neither needs any setup.
    fn tenant(&self, name: &str) -> Result<TenantRecord, ApiError> {
        if let Some(t) = self.load(name)? {
            return Ok(t);
        }
        let config = self.config()?;
        let (rules, views) = if name == config.default_tenant {
            (config.rules.clone(), config.views.clone())
        } else if name == config.demo_tenant {
            (Vec::new(), BTreeMap::new())
        } else {
            return Err(ApiError::new(
                404,
                "tenant_not_found",
                format!("no tenant named `{name}`"),
            ));
        };
        let record = TenantRecord {
            tenant: Tenant {
                name: name.to_string(),
                origin: OriginConfig::D1,
                rules,
                views,
                created_at: rfc3339(now_ms()),
            },
            admin_token_hash: None,
            webhook_secret: None,
        };
        self.store(&record)?;
        Ok(record)
    }

    async fn serve(&self, mut req: Request) -> Result<Response, ApiError> {
        self.migrate()?;
        let url = req.url()?;
        let param = |name: &str| crate::runtime::http::query_param(&url, name);
        let name = param("name").unwrap_or_default();
        match (req.method(), url.path()) {
            (Method::Get, "/tenant") => json(&self.tenant(&name)?),
            (Method::Get, "/tenants") => json(&self.list()?),
            (Method::Post, "/tenants") => {
                let body: CreateTenant = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                json(&self.create(body)?)
            }
            (Method::Delete, "/tenant") => json(&self.delete(&name)?),
            (Method::Put, "/rules") => {
                let rule: RouteRule = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                json(&self.put_rule(&name, rule)?)
            }
            (Method::Delete, "/rules") => {
                json(&self.delete_rule(&name, &param("pattern").unwrap_or_default())?)
            }
            (Method::Get, "/auth") => json(&self.auth(&param("hash").unwrap_or_default())?),
            _ => Err(ApiError::route_not_found(url.path())),
        }
    }

    /// `GET /tenants`: every tenant, the default one included, by name.
    fn list(&self) -> Result<Vec<Tenant>, ApiError> {
        self.tenant(&self.config()?.default_tenant)?;
        let rows = self.exec("SELECT record FROM tenants ORDER BY name", vec![])?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str::<TenantRecord>(&r.record).ok())
            .map(|r| r.tenant)
            .collect())
    }

    /// `DELETE /tenant`: the deleted tenant.
    fn delete(&self, name: &str) -> Result<Tenant, ApiError> {
        let existing = self.tenant(name)?;
        self.exec("DELETE FROM tenants WHERE name = ?", vec![name.into()])?;
        Ok(existing.tenant)
    }

    /// `PUT /rules`: adds a rule or replaces the one with its pattern.
    fn put_rule(&self, name: &str, rule: RouteRule) -> Result<RouteRule, ApiError> {
        check_rule(&rule)?;
        let mut record = self.tenant(name)?;
        record.tenant.rules.retain(|r| r.pattern != rule.pattern);
        if record.tenant.rules.len() >= MAX_RULES {
            return Err(ApiError::new(
                400,
                "invalid_rule",
                format!("a tenant holds at most {MAX_RULES} rules"),
            ));
        }
        record.tenant.rules.push(rule.clone());
        self.store(&record)?;
        Ok(rule)
    }

    /// `DELETE /rules`: the tenant without the rule with `pattern`.
    fn delete_rule(&self, name: &str, pattern: &str) -> Result<Tenant, ApiError> {
        let mut record = self.tenant(name)?;
        let before = record.tenant.rules.len();
        record.tenant.rules.retain(|r| r.pattern != pattern);
        if record.tenant.rules.len() == before {
            return Err(ApiError::new(
                404,
                "rule_not_found",
                format!("no rule with pattern `{pattern}`"),
            ));
        }
        self.store(&record)?;
        Ok(record.tenant)
    }

    /// `GET /auth`: the tenant whose admin token hashes to `hash`.
    fn auth(&self, hash: &str) -> Result<Tenant, ApiError> {
        let rows = self.exec(
            "SELECT record FROM tenants WHERE token_hash = ?",
            vec![hash.into()],
        )?;
        let record: TenantRecord = rows
            .first()
            .and_then(|r| serde_json::from_str(&r.record).ok())
            .ok_or_else(|| ApiError::new(401, "unauthorized", "the token was not recognised"))?;
        Ok(record.tenant)
    }

    /// `POST /tenants`: a new tenant and its credentials, shown once.
    fn create(&self, body: CreateTenant) -> Result<CreatedTenant, ApiError> {
        self.check_new(&body.name)?;
        let origin = body.origin.unwrap_or(OriginConfig::D1);
        check_origin(&origin)?;
        let admin_token = token_from_bytes(TokenKind::Admin, &random_bytes::<32>()?);
        let webhook_secret = token_from_bytes(TokenKind::Webhook, &random_bytes::<32>()?);
        let record = TenantRecord {
            tenant: Tenant {
                name: body.name,
                origin,
                rules: Vec::new(),
                views: body.views.unwrap_or_default(),
                created_at: rfc3339(now_ms()),
            },
            admin_token_hash: Some(hash_token(&admin_token)),
            webhook_secret: Some(webhook_secret.clone()),
        };
        self.store(&record)?;
        Ok(CreatedTenant {
            tenant: record.tenant,
            admin_token,
            webhook_secret,
        })
    }

    /// Refuses a name that is invalid or taken, or a tenant too many.
    fn check_new(&self, name: &str) -> Result<(), ApiError> {
        if !valid_tenant_name(name) {
            return Err(ApiError::new(
                400,
                "bad_tenant_name",
                "a tenant name is 1-63 lowercase letters, digits or '-', starting with a letter or digit",
            ));
        }
        let config = self.config()?;
        if name == config.default_tenant || name == config.demo_tenant || self.load(name)?.is_some()
        {
            return Err(ApiError::new(
                409,
                "tenant_exists",
                format!("a tenant named `{name}` exists"),
            ));
        }
        let count = self
            .exec("SELECT name AS record FROM tenants", vec![])?
            .len();
        if count >= MAX_TENANTS {
            return Err(ApiError::new(
                400,
                "too_many_tenants",
                format!("at most {MAX_TENANTS} tenants"),
            ));
        }
        Ok(())
    }
}

/// Refuses an HTTP origin whose base URL is not an http(s) URL of reasonable length.
fn check_origin(origin: &OriginConfig) -> Result<(), ApiError> {
    if let OriginConfig::Http { base_url } = origin {
        if !(base_url.starts_with("https://") || base_url.starts_with("http://"))
            || base_url.len() > 2048
        {
            return Err(ApiError::new(
                400,
                "bad_origin",
                "base_url must be an http(s) URL",
            ));
        }
    }
    Ok(())
}
