//! The write path: every write of a table goes through that table's coordinator, which
//! forwards it to the origin, numbers it and invalidates what it made stale. Here: parse the
//! write into a `WriteOp`, hand it to the coordinator, answer with the read-your-writes token.

use worker::{Env, Method, Request, Response};

use super::access::forwarded_headers;
use crate::cache::isolate::{Edge, Faults};
use crate::coordinator::client::Coordinator;
use crate::runtime::http::read_body;
use crate::runtime::platform::{self, within};
use edgecache_core::codec::encode_component;
use edgecache_core::config::Config;
use edgecache_core::entry::format_stamps;
use edgecache_core::id_text;
use edgecache_core::origin::OriginError;
use edgecache_core::protocol::{
    Access, LearnContext, OriginConfig, WriteOp, WriteRequest, WriteResponse,
};
use edgecache_core::route::Resource;
use edgecache_core::schema::{Relation, RelationKind};
use edgecache_core::token::{set_cookie, SEQ_HEADER};
use edgecache_core::write_body::{
    check_id, check_id_readable, parse_object, parse_row, MAX_BODY_BYTES,
};
use edgecache_core::{ApiError, CoordinatorId};

/// The methods a list accepts.
pub const LIST_METHODS: &str = "GET, HEAD, POST";
/// The methods a record accepts.
pub const RECORD_METHODS: &str = "GET, HEAD, PUT, PATCH, DELETE";

/// One write of one tenant's relation.
pub struct WriteContext<'a> {
    /// The worker's bindings.
    pub env: &'a Env,
    /// Configuration.
    pub config: &'a Config,
    /// The tenant.
    pub tenant: &'a str,
    /// The relation written.
    pub relation: &'a Relation,
    /// The resource addressed.
    pub resource: &'a Resource,
    /// The tenant's origin.
    pub origin: &'a OriginConfig,
    /// The tenant's access settings (which client headers its origin gets).
    pub access: &'a Access,
    /// What the coordinators may learn from the write (`Tenant::learn_context`).
    pub learn: Option<LearnContext>,
}

/// Serves POST/PUT/PATCH/DELETE (`method` is the request's, already checked to be known).
pub async fn serve(
    req: &mut Request,
    method: Method,
    wc: WriteContext<'_>,
) -> Result<Response, ApiError> {
    let started_ms = platform::now_ms();
    let op = parse_op(req, &method, &wc).await?;
    if wc.relation.kind == RelationKind::View {
        return Err(OriginError::ReadOnlyView(wc.relation.name.clone()).into());
    }
    let sent_ms = platform::now_ms();
    let written = send(&wc, op, false).await?;
    let mut resp = respond(req, &wc.relation.name, &written)?;
    if wc.config.test_hooks {
        // The writers' profile compares these with the client's time and the coordinator's.
        let now = platform::now_ms();
        let h = resp.headers_mut();
        h.set("x-edgecache-test-edge-at", &started_ms.to_string())?;
        h.set(
            "x-edgecache-test-edge-ms",
            &now.saturating_sub(started_ms).to_string(),
        )?;
        h.set(
            "x-edgecache-test-call-ms",
            &now.saturating_sub(sent_ms).to_string(),
        )?;
    }
    Ok(resp)
}

/// The write as the coordinator takes it: typed for D1, forwarded as it came for an HTTP origin.
/// Ids a read could never name (over the key limit) are refused here, before anything is written.
async fn parse_op(
    req: &mut Request,
    method: &Method,
    wc: &WriteContext<'_>,
) -> Result<WriteOp, ApiError> {
    let http = matches!(wc.origin, OriginConfig::Http { .. });
    match (method, &wc.resource.id) {
        (Method::Post, None) | (Method::Put | Method::Patch | Method::Delete, Some(_)) if http => {
            if let Some(id) = &wc.resource.id {
                check_id_readable(wc.tenant, &wc.relation.name, id)?;
            }
            forward_op(req, method, wc).await
        }
        (Method::Delete, _) => d1_op(method, wc, &[]),
        _ => {
            let body = read_body(req, MAX_BODY_BYTES).await?;
            d1_op(method, wc, &body)
        }
    }
}

/// A write to the built-in D1 origin as the coordinator takes it, from its method and body
/// (read only where the method takes one); also what `explain` plans.
pub fn d1_op(method: &Method, wc: &WriteContext<'_>, body: &[u8]) -> Result<WriteOp, ApiError> {
    let relation = wc.relation;
    if let Some(id) = &wc.resource.id {
        check_id_readable(wc.tenant, &relation.name, id)?;
    }
    let op = match (method, &wc.resource.id) {
        (Method::Post, None) => {
            let mut row = parse_row(body, relation)?;
            match row.get(&relation.id_column).and_then(id_text) {
                Some(id) => check_id_readable(wc.tenant, &relation.name, &id)?,
                None => {
                    row.insert(relation.id_column.clone(), platform::new_id()?.into());
                }
            }
            WriteOp::Create { row }
        }
        (Method::Put | Method::Patch, Some(id)) => {
            let row = parse_row(body, relation)?;
            check_id(&row, relation, id)?;
            let id = id.clone();
            match method {
                Method::Put => WriteOp::Replace { id, row },
                _ => WriteOp::Patch { id, row },
            }
        }
        (Method::Delete, Some(id)) => WriteOp::Delete { id: id.clone() },
        (m, None) => return Err(ApiError::method_not_allowed(m.as_ref(), LIST_METHODS)),
        (m, Some(_)) => return Err(ApiError::method_not_allowed(m.as_ref(), RECORD_METHODS)),
    };
    Ok(op)
}

/// A write to an HTTP origin, forwarded to the canonical path with its JSON object body.
async fn forward_op(
    req: &mut Request,
    method: &Method,
    wc: &WriteContext<'_>,
) -> Result<WriteOp, ApiError> {
    let body = match method {
        Method::Delete => None,
        _ => Some(parse_object(&read_body(req, MAX_BODY_BYTES).await?)?),
    };
    let mut path = format!("/v1/{}", encode_component(&wc.relation.name));
    if let Some(id) = &wc.resource.id {
        path = format!("{path}/{}", encode_component(id));
    }
    Ok(WriteOp::Forward {
        method: method.to_string(),
        path,
        id: wc.resource.id.clone(),
        body,
        headers: forwarded_headers(req, wc.access)?,
    })
}

/// Hands the write to its table's coordinator; then this isolate's view of the table is due.
/// With `explain`, the answer lists the keys the write made stale and those it spared.
pub async fn send(
    wc: &WriteContext<'_>,
    op: WriteOp,
    explain: bool,
) -> Result<WriteResponse, ApiError> {
    let table = &wc.relation.name;
    let edge = Edge::new(wc.config.l1_max_bytes);
    let faults = edge.faults(wc.config);
    if faults.next_write_fault.is_some() {
        edge.set_faults(Faults {
            next_write_fault: None,
            ..faults.clone()
        });
    }
    let coordinator = CoordinatorId::new(&wc.origin.source(), table);
    let write = WriteRequest {
        table: table.clone(),
        op,
        fault: faults.next_write_fault,
        explain,
        learn: wc.learn.clone(),
        sent_ms: wc.config.test_hooks.then(platform::now_ms),
    };
    let client = Coordinator::of(wc.env, &coordinator).for_tenant(wc.tenant, wc.origin);
    let call = client.write(&write);
    // The client waits for its turn in the coordinator and for the origin, each at most the
    // origin timeout. Past that it is told the outcome is unknown; the coordinator still
    // records the write when the origin answers, so nothing it applied goes uninvalidated.
    let limit = 2 * wc.config.origin_timeout_ms;
    let written = match within(limit, call).await {
        Some(written) => written?,
        None => {
            edge.expire_view(&coordinator);
            return Err(ApiError::new(
                504,
                "write_outcome_unknown",
                format!(
                    "the write took over {limit} ms; it may or may not have been applied, and \
                     a read with `cache-control: no-cache` shows which"
                ),
            ));
        }
    };
    // The next read of this table through this isolate asks the coordinator first.
    if !faults.keep_views_on_write {
        edge.expire_view(&coordinator);
    }
    Ok(written)
}

/// The origin's answer with the write's token in a header and a cookie; never cached.
fn respond(req: &Request, table: &str, written: &WriteResponse) -> Result<Response, ApiError> {
    let mut resp = match &written.body {
        serde_json::Value::Null => Response::empty()?.with_status(written.status),
        body => Response::from_json(body)?.with_status(written.status),
    };
    let h = resp.headers_mut();
    // The token promises the written table and every table learned rules invalidated for it.
    let mut tokens = written.related.clone();
    tokens.insert(table.to_string(), written.seq);
    h.set(SEQ_HEADER, &format_stamps(&tokens))?;
    h.set(
        "set-cookie",
        &set_cookie(req.headers().get("cookie")?.as_deref(), &tokens),
    )?;
    h.set("cache-control", "no-store")?;
    Ok(resp)
}
