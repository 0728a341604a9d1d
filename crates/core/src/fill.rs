//! What a filled response depends on, worked out from its relation, its query and its body.
//! Used by the edge after a miss and by the coordinator when it rehydrates.

use serde_json::Value;

use crate::extract::{list_window, record_ids};
use crate::key::CacheKey;
use crate::origin::ReadTarget;
use crate::protocol::{Dependent, Registration};
use crate::rules::RoutePolicy;
use crate::schema::{Relation, RelationKind};
use crate::semantics::observe_list;
use crate::Row;

/// The answer to a record read (`GET /v1/<table>/<id>`) of the built-in D1 origin: what the
/// origin answers, and what a write rebuilds the record's copy from (its after image), so the
/// two are the same bytes.
pub fn record_body(row: &Row) -> Value {
    serde_json::json!({ "data": row })
}

/// The registration of `key` with the coordinator of one of `relation.tables`, whose fill
/// stamp is `stamp`.
pub fn registration(
    key: &CacheKey,
    relation: &Relation,
    target: &ReadTarget,
    body: &Value,
    stamp: u64,
    policy: &RoutePolicy,
) -> Registration {
    let dependent = match (relation.kind, target) {
        (RelationKind::View, _) | (_, ReadTarget::Opaque) => Dependent::Opaque,
        (RelationKind::Table, ReadTarget::Record(_)) => Dependent::Record,
        (RelationKind::Table, ReadTarget::List(query)) => Dependent::List {
            query: query.clone(),
            window: list_window(query, &relation.id_column, body),
        },
    };
    // A view's rows carry ids of its first table only by convention; it is opaque anyway.
    let records = match relation.kind {
        RelationKind::Table => record_ids(body, &relation.id_column),
        RelationKind::View => Vec::new(),
    };
    Registration {
        key: key.as_str().to_string(),
        stamp,
        dependent,
        records,
        tables: relation.tables.clone(),
        route: key.path_and_query().to_string(),
        rehydrate: policy.rehydrate && relation.kind == RelationKind::Table,
        ttl_secs: policy.ttl_secs,
        digest: Some(crate::shadow::body_digest(body)),
        // Only an HTTP origin's lists are opaque tables; what they show teaches their route.
        observation: match (relation.kind, target) {
            (RelationKind::Table, ReadTarget::Opaque) => {
                observe_list(key.query_pairs(), body, &relation.id_column, stamp)
            }
            _ => None,
        },
    }
}
