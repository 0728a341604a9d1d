//! The REST API over the origin: `GET/POST/PUT/PATCH/DELETE /v1/<relation>[/<id>]`.

use worker::{Context, Env, Method, Request, Response};

use super::error::ApiError;
use super::read::{self, ReadContext};
use super::route::{Addressed, Resource};
use super::write;
use crate::config::Config;
use crate::dependency::key::CacheKey;
use crate::dependency::query::parse_list_query;
use crate::origin::d1::D1Origin;
use crate::origin::schema::Relation;
use crate::origin::{OriginError, ReadTarget};

/// Serves one REST request.
pub async fn serve(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    config: &Config,
    addressed: &Addressed,
    resource: Resource,
) -> Result<Response, ApiError> {
    let tenant = addressed.tenant.as_str();
    if tenant != config.default_tenant {
        return Err(ApiError::new(
            404,
            "unknown_tenant",
            format!("no tenant named `{tenant}`"),
        ));
    }
    let origin = D1Origin::new(env.d1("DB")?);
    let schema = origin.schema(config).await?;
    let relation = schema
        .relation(&resource.relation)
        .ok_or_else(|| OriginError::UnknownRelation(resource.relation.clone()))?;
    if req.method() == Method::Get {
        let url = req.url()?;
        let rc = ReadContext {
            env,
            ctx,
            config,
            tenant,
            path: &addressed.path,
            query: url.query(),
            relation,
            resource: &resource,
        };
        return read::serve(&req, rc).await;
    }
    write::serve(&mut req, env, config, tenant, relation, &resource).await
}

/// What a GET asks for, with its query validated against the relation's columns.
pub fn read_target(
    relation: &Relation,
    resource: &Resource,
    key: &CacheKey,
) -> Result<ReadTarget, ApiError> {
    match &resource.id {
        Some(id) => {
            if !key.query_pairs().is_empty() {
                return Err(ApiError::new(
                    400,
                    "bad_request",
                    "a record read takes no query parameters",
                ));
            }
            Ok(ReadTarget::Record(id.clone()))
        }
        None => Ok(ReadTarget::List(parse_list_query(
            key.query_pairs(),
            |c| relation.has_column(c),
        )?)),
    }
}
