//! The REST API over the origin: `GET/POST/PUT/PATCH/DELETE /v1/<relation>[/<id>]`.

use worker::{Context, Env, Method, Request, Response};

use super::admin;
use super::error::ApiError;
use super::read::{self, ReadContext};
use super::route::{Addressed, Resource};
use super::tenants;
use super::write;
use crate::config::Config;
use crate::dependency::key::CacheKey;
use crate::dependency::query::parse_list_query;
use crate::durable::protocol::OriginConfig;
use crate::origin::schema::Relation;
use crate::origin::{OriginError, ReadTarget};

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
    let catalog = admin::catalog_of(env, &record).await?;
    let relation = catalog
        .relation(&resource.relation)
        .ok_or_else(|| OriginError::UnknownRelation(resource.relation.clone()))?;
    let relation = &relation;
    if req.method() == Method::Get {
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
        };
        return read::serve(&req, rc).await;
    }
    write::serve(
        &mut req,
        env,
        config,
        tenant,
        relation,
        &resource,
        &record.tenant.origin,
    )
    .await
}

/// What a GET asks for, with its query validated against the relation's columns (D1), or
/// passed through as it is (HTTP origins, whose columns EdgeCache does not know).
pub fn read_target(
    origin: &OriginConfig,
    relation: &Relation,
    resource: &Resource,
    key: &CacheKey,
) -> Result<ReadTarget, ApiError> {
    match (&resource.id, origin) {
        (Some(id), OriginConfig::Http { .. }) => Ok(ReadTarget::Record(id.clone())),
        (None, OriginConfig::Http { .. }) => Ok(ReadTarget::Opaque),
        (Some(id), OriginConfig::D1) => {
            if !key.query_pairs().is_empty() {
                return Err(ApiError::new(
                    400,
                    "bad_request",
                    "a record read takes no query parameters",
                ));
            }
            Ok(ReadTarget::Record(id.clone()))
        }
        (None, OriginConfig::D1) => Ok(ReadTarget::List(parse_list_query(
            key.query_pairs(),
            |c| relation.has_column(c),
        )?)),
    }
}
