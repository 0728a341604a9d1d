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
use edgecache_core::access::{
    valid_key_name, ApiKey, CreateKey, CreatedKey, KeyInfo, KeyList, MAX_KEYS,
};
use edgecache_core::auth::{hash_token, token_from_bytes, TokenKind};
use edgecache_core::catalog::Catalog;
use edgecache_core::config::Config;
use edgecache_core::key::valid_tenant_name;
use edgecache_core::protocol::{
    check_header_name, check_headers, Access, CreateTenant, CreatedTenant, Learning, OriginConfig,
    Tenant, TenantRecord, TenantSettings, MAX_HTTP_TABLES, MAX_TENANT_HEADERS,
};
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
                access: Access::default(),
                tables: Vec::new(),
                learning: Learning::default(),
            },
            admin_token_hash: None,
            webhook_secret: None,
            api_keys: Vec::new(),
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
            // The whole record, secrets included: for edges only (the admin API never
            // forwards it).
            (Method::Get, "/tenant") => json(&self.tenant(&name)?),
            (Method::Get, "/tenants") => json(&self.list()?),
            (Method::Patch, "/tenant") => {
                let body: TenantSettings = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                json(&self.update(&name, body)?)
            }
            (Method::Get, "/keys") => json(&self.keys(&name)?),
            (Method::Post, "/keys") => {
                let body: CreateKey = read_json(&mut req, INTERNAL_MAX_BODY).await?;
                json(&self.create_key(&name, body)?)
            }
            (Method::Delete, "/keys") => {
                json(&self.revoke_key(&name, &param("key").unwrap_or_default())?)
            }
            (Method::Post, "/tables") => {
                json(&self.learn_table(&name, &param("table").unwrap_or_default())?)
            }
            (Method::Post, "/key-used") => {
                json(&self.key_used(&name, &param("key").unwrap_or_default())?)
            }
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
            .map(|r| r.tenant.redacted())
            .collect())
    }

    /// `DELETE /tenant`: the deleted tenant.
    fn delete(&self, name: &str) -> Result<Tenant, ApiError> {
        let existing = self.tenant(name)?;
        self.exec("DELETE FROM tenants WHERE name = ?", vec![name.into()])?;
        Ok(existing.tenant.redacted())
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
        Ok(record.tenant.redacted())
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
        Ok(record.tenant.redacted())
    }

    /// `POST /tenants`: a new tenant and its credentials, shown once.
    fn create(&self, body: CreateTenant) -> Result<CreatedTenant, ApiError> {
        self.check_new(&body.name)?;
        let mut origin = body.origin.ok_or_else(|| {
            ApiError::new(
                400,
                "origin_required",
                "name the tenant's origin: an HTTP API ({\"kind\":\"http\",\"base_url\":…}) or, \
                 to share the deployment's own D1 database on purpose, {\"kind\":\"d1\"}",
            )
        })?;
        check_origin(&mut origin)?;
        let mut access = body.access.unwrap_or_default();
        check_access(&mut access)?;
        let admin_token = token_from_bytes(TokenKind::Admin, &random_bytes::<32>()?);
        let webhook_secret = token_from_bytes(TokenKind::Webhook, &random_bytes::<32>()?);
        let record = TenantRecord {
            tenant: Tenant {
                name: body.name,
                origin,
                rules: Vec::new(),
                views: body.views.unwrap_or_default(),
                created_at: rfc3339(now_ms()),
                access,
                tables: check_tables(body.tables.unwrap_or_default())?,
                learning: Learning::default(),
            },
            admin_token_hash: Some(hash_token(&admin_token)),
            webhook_secret: Some(webhook_secret.clone()),
            api_keys: Vec::new(),
        };
        self.store(&record)?;
        Ok(CreatedTenant {
            tenant: record.tenant.redacted(),
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

/// Refuses an HTTP origin whose base URL is not an http(s) URL of reasonable length, or whose
/// credential headers are malformed (names are lowercased).
fn check_origin(origin: &mut OriginConfig) -> Result<(), ApiError> {
    if let OriginConfig::Http { base_url, headers } = origin {
        check_headers(headers)?;
        let base_url: &str = base_url;
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

/// Checks the forwarded header names (lowercased, `authorization` and `cookie` implied).
fn check_access(access: &mut Access) -> Result<(), ApiError> {
    if access.forward_headers.len() > MAX_TENANT_HEADERS {
        return Err(ApiError::new(
            400,
            "bad_header",
            format!("at most {MAX_TENANT_HEADERS} forwarded headers"),
        ));
    }
    access.forward_headers = access
        .forward_headers
        .iter()
        .map(|h| check_header_name(h))
        .collect::<Result<_, _>>()?;
    access.forward_headers.sort();
    access.forward_headers.dedup();
    Ok(())
}

impl TenantRegistry {
    /// `PATCH /tenant`: changes the settings named, keeps the rest.
    fn update(&self, name: &str, settings: TenantSettings) -> Result<Tenant, ApiError> {
        let mut record = self.tenant(name)?;
        let access = &mut record.tenant.access;
        if let Some(v) = settings.private_reads {
            access.private_reads = v;
        }
        if let Some(v) = settings.require_write_key {
            access.require_write_key = v;
        }
        if let Some(v) = settings.forward_headers {
            access.forward_headers = v;
        }
        check_access(access)?;
        if let Some(tables) = settings.tables {
            record.tenant.tables = check_tables(tables)?;
        }
        if let Some(mode) = settings.learning {
            record.tenant.learning.mode = mode;
        }
        if let Some(frozen) = settings.learning_frozen {
            record.tenant.learning.frozen = frozen;
        }
        if let Some(new_headers) = settings.origin_headers {
            match &mut record.tenant.origin {
                OriginConfig::Http { headers, .. } => *headers = new_headers,
                OriginConfig::D1 => {
                    return Err(ApiError::new(
                        400,
                        "bad_header",
                        "origin headers are for HTTP origins; this tenant uses the built-in D1 database",
                    ))
                }
            }
            check_origin(&mut record.tenant.origin)?;
        }
        self.store(&record)?;
        Ok(record.tenant.redacted())
    }

    /// `POST /tables`: an edge saw the tenant's HTTP origin answer a read of `table` with a 2xx;
    /// from now on the table may create state. Idempotent; refused past [`MAX_HTTP_TABLES`].
    fn learn_table(&self, name: &str, table: &str) -> Result<Tenant, ApiError> {
        let mut record = self.tenant(name)?;
        if record.tenant.knows_table(table) {
            return Ok(record.tenant.redacted());
        }
        let mut tables = record.tenant.tables.clone();
        tables.push(table.to_string());
        record.tenant.tables = check_tables(tables)?;
        self.store(&record)?;
        Ok(record.tenant.redacted())
    }

    /// `GET /keys`: the tenant's keys, without their hashes.
    fn keys(&self, name: &str) -> Result<KeyList, ApiError> {
        let record = self.tenant(name)?;
        Ok(KeyList {
            keys: record.api_keys.iter().map(KeyInfo::from).collect(),
        })
    }

    /// `POST /keys`: a new key, shown once; only its hash is kept.
    fn create_key(&self, name: &str, body: CreateKey) -> Result<CreatedKey, ApiError> {
        if !valid_key_name(&body.name) {
            return Err(ApiError::new(
                400,
                "bad_key_name",
                "a key name is 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit",
            ));
        }
        let mut record = self.tenant(name)?;
        if record.api_keys.iter().any(|k| k.name == body.name) {
            return Err(ApiError::new(
                409,
                "key_exists",
                format!("tenant `{name}` has a key named `{}`", body.name),
            ));
        }
        if record.api_keys.len() >= MAX_KEYS {
            return Err(ApiError::new(
                400,
                "too_many_keys",
                format!("a tenant holds at most {MAX_KEYS} keys"),
            ));
        }
        let key = token_from_bytes(TokenKind::ApiKey, &random_bytes::<32>()?);
        let stored = ApiKey {
            name: body.name,
            scope: body.scope,
            hash: hash_token(&key),
            created_at: rfc3339(now_ms()),
            last_used_at: None,
        };
        let info = KeyInfo::from(&stored);
        record.api_keys.push(stored);
        self.store(&record)?;
        Ok(CreatedKey { info, key })
    }

    /// `DELETE /keys`: the revoked key's description.
    fn revoke_key(&self, name: &str, key: &str) -> Result<KeyInfo, ApiError> {
        let mut record = self.tenant(name)?;
        let at = record
            .api_keys
            .iter()
            .position(|k| k.name == key)
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "key_not_found",
                    format!("tenant `{name}` has no key `{key}`"),
                )
            })?;
        let revoked = record.api_keys.remove(at);
        self.store(&record)?;
        Ok(KeyInfo::from(&revoked))
    }

    /// `POST /key-used`: an edge saw the key in use (at most once a minute per isolate).
    fn key_used(&self, name: &str, key: &str) -> Result<(), ApiError> {
        let mut record = self.tenant(name)?;
        if let Some(k) = record.api_keys.iter_mut().find(|k| k.name == key) {
            k.last_used_at = Some(rfc3339(now_ms()));
            self.store(&record)?;
        }
        Ok(())
    }
}

/// Checks an HTTP origin's table names (what `/v1/<table>` can name), deduplicated, at most
/// [`MAX_HTTP_TABLES`].
fn check_tables(mut tables: Vec<String>) -> Result<Vec<String>, ApiError> {
    tables.sort();
    tables.dedup();
    if tables.len() > MAX_HTTP_TABLES {
        return Err(ApiError::new(
            400,
            "too_many_tables",
            format!("a tenant's HTTP origin has at most {MAX_HTTP_TABLES} tables"),
        ));
    }
    let probe = Catalog::Http(String::new());
    if let Some(bad) = tables.iter().find(|t| probe.relation(t).is_none()) {
        return Err(ApiError::new(
            400,
            "bad_table_name",
            format!("`{bad}` cannot be a table name"),
        ));
    }
    Ok(tables)
}
