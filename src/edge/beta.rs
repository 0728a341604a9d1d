//! Beta sign-ups: the website's form posts here; each address is one row of the
//! `edgecache_beta_signups` D1 table (a table no tenant can read through `/v1`), repeated
//! sign-ups merged into it. The operator lists them with `GET /_edgecache/admin/beta`.

use serde::Deserialize;
use worker::wasm_bindgen::JsValue;
use worker::{Env, Request, Response};

use super::site;
use super::throttle::{self, Bucket};
use crate::runtime::env::isolate_config;
use crate::runtime::http::read_body;
use crate::runtime::platform::now_ms;
use edgecache_core::beta::{
    email_field, normalise_email, BetaJoined, BetaList, BetaSignup, EmailError, MAX_SIGNUP_BODY,
};
use edgecache_core::time::rfc3339;
use edgecache_core::ApiError;

/// Sign-ups listed at most (newest first).
const MAX_LISTED: usize = 10_000;

/// `POST /_edgecache/beta`, from the page's form (answered with a page) or as JSON (answered
/// with JSON, as is every error of a JSON caller).
pub async fn sign_up(req: &mut Request, env: &Env) -> Result<Response, ApiError> {
    let wants_html = site::wants_html(req);
    match join(req, env).await {
        Ok(joined) if wants_html => site::beta_page(201, Ok(&joined)),
        Ok(joined) => {
            let mut resp = Response::from_json(&joined)?.with_status(201);
            resp.headers_mut().set("cache-control", "no-store")?;
            Ok(resp)
        }
        Err(e) if wants_html => site::beta_page(e.status, Err(&e)),
        Err(e) => Err(e),
    }
}

async fn join(req: &mut Request, env: &Env) -> Result<BetaJoined, ApiError> {
    throttle::check(req, &isolate_config(env)?, Bucket::BetaSignup)?;
    let json = req
        .headers()
        .get("content-type")?
        .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
    let body = read_body(req, MAX_SIGNUP_BODY).await?;
    let raw = email_field(&body, json).unwrap_or_default();
    let email = normalise_email(&raw).map_err(invalid)?;
    let now = rfc3339(now_ms());
    #[derive(Deserialize)]
    struct Count {
        count: f64,
    }
    let db = env.d1("DB")?;
    let row: Option<Count> = db
        .prepare(
            "INSERT INTO edgecache_beta_signups (email, created_at, updated_at, count) \
             VALUES (?1, ?2, ?2, 1) \
             ON CONFLICT(email) DO UPDATE SET count = count + 1, updated_at = excluded.updated_at \
             RETURNING count",
        )
        .bind(&[JsValue::from_str(&email), JsValue::from_str(&now)])?
        .first(None)
        .await
        .map_err(unavailable)?;
    Ok(BetaJoined {
        email,
        duplicate: row.is_some_and(|r| r.count > 1.0),
    })
}

/// `GET /_edgecache/admin/beta` (operator only; checked by the caller): newest first.
pub async fn list(env: &Env) -> Result<BetaList, ApiError> {
    let db = env.d1("DB")?;
    let result = db
        .prepare(format!(
            "SELECT email, created_at, updated_at, count FROM edgecache_beta_signups \
             ORDER BY updated_at DESC, email LIMIT {MAX_LISTED}"
        ))
        .all()
        .await
        .map_err(unavailable)?;
    #[derive(Deserialize)]
    struct Stored {
        email: String,
        created_at: String,
        updated_at: String,
        count: f64,
    }
    let rows: Vec<Stored> = result.results().map_err(unavailable)?;
    Ok(BetaList {
        signups: rows
            .into_iter()
            .map(|r| BetaSignup {
                email: r.email,
                created_at: r.created_at,
                updated_at: r.updated_at,
                count: r.count as u64,
            })
            .collect(),
    })
}

fn invalid(e: EmailError) -> ApiError {
    ApiError::new(400, "invalid_email", e.to_string())
}

fn unavailable(e: worker::Error) -> ApiError {
    ApiError::new(502, "origin_unavailable", e.to_string())
}
