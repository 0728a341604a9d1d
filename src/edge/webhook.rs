//! `POST /_edgecache/invalidate`: the origin's signed invalidation webhook.

use super::throttle::{self, Bucket};
use worker::{Env, Request, Response};

use super::admin::answer;
use super::{invalidate, tenants};
use crate::runtime::env::secret;
use crate::runtime::http::read_body;
use crate::runtime::platform::now_ms;
use edgecache_core::auth;
use edgecache_core::config::Config;
use edgecache_core::invalidation::{self, InvalidationSpec};
use edgecache_core::ApiError;

/// Checks the signature, then invalidates what the body names. The body is signed with the
/// tenant's webhook secret (`x-edgecache-signature: t=<unix secs>,v1=<hex hmac-sha256>`);
/// signatures older than five minutes are refused, so a captured request cannot be replayed.
pub async fn serve(
    req: &mut Request,
    env: &Env,
    config: &Config,
    tenant: &str,
) -> Result<Response, ApiError> {
    let record = tenants::load(env, tenant).await?;
    let secret = match record.webhook_secret.clone() {
        Some(s) => s,
        None => secret(env, "EDGECACHE_WEBHOOK_SECRET").ok_or_else(|| {
            ApiError::new(
                503,
                "webhook_not_configured",
                "set the EDGECACHE_WEBHOOK_SECRET secret",
            )
        })?,
    };
    let bytes = read_body(req, invalidation::MAX_BODY_BYTES).await?;
    let header = req.headers().get(auth::SIGNATURE_HEADER)?;
    let now_secs = (now_ms() / 1000) as i64;
    auth::verify_signature(
        secret.as_bytes(),
        header.as_deref(),
        &bytes,
        now_secs,
        auth::SIGNATURE_TOLERANCE_SECS,
    )
    .map_err(|e| ApiError::new(401, e.code(), e.to_string()))?;
    // Counted once signed: a forger cannot spend the tenant's budget.
    throttle::check_for(tenant, config, Bucket::Invalidation)?;
    let spec = InvalidationSpec::parse(&bytes)?;
    answer(&invalidate::invalidate(env, config.l1_max_bytes, tenant, &record, &spec).await?)
}
