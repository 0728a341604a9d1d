//! The REST API over the origin: `GET/POST/PUT/PATCH/DELETE /v1/<relation>[/<id>]`.

use worker::{Context, Env, Method, Request, Response};

use super::access;
use super::read::{self, ReadContext};
use super::tenants;
use super::write::{self, WriteContext};
use crate::runtime::http::method_of;
use edgecache_core::access::Need;
use edgecache_core::config::Config;
use edgecache_core::origin::OriginError;
use edgecache_core::route::{Addressed, Resource};
use edgecache_core::ApiError;

/// Serves one REST request.
pub async fn serve(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    config: &Config,
    url: &worker::Url,
    addressed: &Addressed,
    resource: Resource,
) -> Result<Response, ApiError> {
    let tenant = addressed.tenant.as_str();
    let record = tenants::load(env, tenant).await?;
    let catalog = tenants::catalog_of(env, &record).await?;
    let relation = &catalog
        .relation(&resource.relation)
        .ok_or_else(|| OriginError::UnknownRelation(resource.relation.clone()))?;
    let allowed = match resource.id {
        Some(_) => write::RECORD_METHODS,
        None => write::LIST_METHODS,
    };
    let method = method_of(&req, allowed)?;
    let need = match method {
        Method::Get | Method::Head => Need::Read,
        _ => Need::Write,
    };
    access::check(&req, env, ctx, config, &record, need)?;
    let known_table = record.tenant.knows_table(&relation.name);
    if need == Need::Write && !known_table {
        return Err(ApiError::new(
            404,
            "unknown_table",
            format!(
                "`{}` is not a table EdgeCache knows of this tenant's API yet: read it once \
                 (a 2xx from the API teaches it), or declare it with `edgecache tenant set \
                 {tenant} --table {}`",
                relation.name, relation.name
            ),
        ));
    }
    if method == Method::Get || method == Method::Head {
        let rc = ReadContext {
            env,
            ctx,
            config,
            tenant,
            rules: &record.tenant.rules,
            path: &addressed.path,
            query: url.query(),
            relation,
            origin: &record.tenant.origin,
            resource: &resource,
            head: method == Method::Head,
            known_table,
        };
        return read::serve(&req, rc).await;
    }
    let wc = WriteContext {
        env,
        config,
        tenant,
        relation,
        resource: &resource,
        origin: &record.tenant.origin,
        access: &record.tenant.access,
        learn: record.tenant.learn_context(&relation.name),
    };
    write::serve(&mut req, method, wc).await
}
