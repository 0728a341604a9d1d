//! The write path: every write of a table goes through that table's coordinator, which
//! forwards it to the origin, numbers it and invalidates what it made stale.

use worker::{Env, Method, Request, Response};

use crate::cache::isolate::{Edge, Faults};
use crate::coordinator::client::Coordinator;
use crate::runtime::http::read_body;
use crate::runtime::platform;
use edgecache_core::codec::encode_component;
use edgecache_core::config::Config;
use edgecache_core::id_text;
use edgecache_core::origin::OriginError;
use edgecache_core::protocol::{OriginConfig, WriteOp, WriteRequest};
use edgecache_core::route::Resource;
use edgecache_core::schema::{Relation, RelationKind};
use edgecache_core::token::{set_cookie, SEQ_HEADER};
use edgecache_core::write_body::{check_id, parse_object, parse_row, MAX_BODY_BYTES};
use edgecache_core::{ApiError, CoordinatorId};

/// Serves POST/PUT/PATCH/DELETE.
pub async fn serve(
    req: &mut Request,
    env: &Env,
    config: &Config,
    tenant: &str,
    relation: &Relation,
    resource: &Resource,
    origin: &OriginConfig,
) -> Result<Response, ApiError> {
    let method = req.method();
    let op = match (&method, &resource.id, origin) {
        (Method::Post, None, OriginConfig::Http { .. })
        | (Method::Put | Method::Patch | Method::Delete, Some(_), OriginConfig::Http { .. }) => {
            let body = match method {
                Method::Delete => None,
                _ => Some(parse_object(&read_body(req, MAX_BODY_BYTES).await?)?),
            };
            let mut path = format!("/v1/{}", encode_component(&relation.name));
            if let Some(id) = &resource.id {
                path = format!("{path}/{}", encode_component(id));
            }
            WriteOp::Forward {
                method: method.to_string(),
                path,
                id: resource.id.clone(),
                body,
            }
        }
        (Method::Post, None, _) => {
            let mut row = parse_row(&read_body(req, MAX_BODY_BYTES).await?, relation)?;
            if row.get(&relation.id_column).and_then(id_text).is_none() {
                row.insert(relation.id_column.clone(), platform::new_id()?.into());
            }
            WriteOp::Create { row }
        }
        (Method::Put, Some(id), _) => {
            let row = parse_row(&read_body(req, MAX_BODY_BYTES).await?, relation)?;
            check_id(&row, relation, id)?;
            WriteOp::Replace {
                id: id.clone(),
                row,
            }
        }
        (Method::Patch, Some(id), _) => {
            let row = parse_row(&read_body(req, MAX_BODY_BYTES).await?, relation)?;
            check_id(&row, relation, id)?;
            WriteOp::Patch {
                id: id.clone(),
                row,
            }
        }
        (Method::Delete, Some(id), _) => WriteOp::Delete { id: id.clone() },
        (m, None, _) => return Err(ApiError::method_not_allowed(m.as_ref(), "GET, POST")),
        (m, Some(_), _) => {
            return Err(ApiError::method_not_allowed(
                m.as_ref(),
                "GET, PUT, PATCH, DELETE",
            ))
        }
    };
    if relation.kind == RelationKind::View {
        return Err(OriginError::ReadOnlyView(relation.name.clone()).into());
    }
    let table = relation.name.clone();
    let edge = Edge::new(config.l1_max_bytes);
    let faults = edge.faults(config);
    if faults.crash_next_write {
        edge.set_faults(Faults {
            crash_next_write: false,
            ..faults.clone()
        });
    }
    let written = Coordinator::of(env, tenant, &table)
        .with_origin(origin)
        .write(&WriteRequest {
            table: table.clone(),
            op,
            crash_after_forward: faults.crash_next_write,
        })
        .await?;
    // The next read of this table through this isolate asks the coordinator first.
    if !faults.keep_views_on_write {
        edge.expire_view(CoordinatorId::new(tenant, &table).as_str());
    }
    let mut resp = match &written.body {
        serde_json::Value::Null => Response::empty()?.with_status(written.status),
        body => Response::from_json(body)?.with_status(written.status),
    };
    let h = resp.headers_mut();
    h.set(SEQ_HEADER, &format!("{table}={}", written.seq))?;
    h.set(
        "set-cookie",
        &set_cookie(req.headers().get("cookie")?.as_deref(), &table, written.seq),
    )?;
    h.set("cache-control", "no-store")?;
    Ok(resp)
}
