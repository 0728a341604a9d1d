//! What a filled response depends on, worked out from its relation, its query and its body.
//! Used by the edge after a miss and by the coordinator when it rehydrates.

use serde_json::Value;

use crate::extract::{list_window, record_ids};
use crate::key::CacheKey;
use crate::origin::ReadTarget;
use crate::planner::WriteImages;
use crate::predicate::{column_value, row_matches, Match};
use crate::protocol::{Dependent, Registration, ViewTarget};
use crate::query::ListQuery;
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

/// The answer to a list read (`GET /v1/<table>?…`) of the built-in D1 origin: the page's rows
/// and what was asked; what a write patches a cached page of (see [`patched_page`]).
pub fn list_body(rows: Vec<Row>, q: &ListQuery) -> Value {
    let count = rows.len();
    serde_json::json!({
        "data": rows,
        "meta": { "limit": q.limit, "offset": q.offset, "count": count },
    })
}

/// Whether a write leaves `q`'s pages holding the same rows in the same order, changing only
/// the written row's other columns: an update whose images both match `q` (as SQLite would
/// tell) and agree on the id and the order column. Such a write changes exactly the pages
/// showing the row, and each only there ([`patched_page`]).
pub fn keeps_place(q: &ListQuery, images: &WriteImages) -> bool {
    let (Some(before), Some(after)) = (&images.before, &images.after) else {
        return false;
    };
    let same = |column: &str| {
        let (b, a) = (column_value(before, column), column_value(after, column));
        b.is_some() && b == a
    };
    row_matches(q, before) == Match::Yes
        && row_matches(q, after) == Match::Yes
        && same(&images.id_column)
        && q.order.as_ref().is_none_or(|o| same(&o.column))
}

/// A cached page of `q` (`body`, as [`list_body`] renders it) rebuilt for a write that
/// [`keeps_place`] in its list: the written row replaced by the after image, nothing else
/// touched. `None` where that cannot be shown to be the origin's answer after the write: the
/// body is not such a page, or does not show the row exactly as the before image has it (a
/// copy filled after the write, or of another page).
pub fn patched_page(body: &Value, q: &ListQuery, images: &WriteImages) -> Option<Value> {
    if !keeps_place(q, images) {
        return None;
    }
    let (before, after) = (images.before.as_ref()?, images.after.as_ref()?);
    let rows = body.get("data")?.as_array()?;
    let shows = |row: &Value| {
        row.as_object()
            .and_then(|r| column_value(r, &images.id_column))
            .and_then(crate::id_text)
            .is_some_and(|id| id == images.id)
    };
    let mut at = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| shows(r))
        .map(|(i, _)| i);
    let (Some(i), None) = (at.next(), at.next()) else {
        return None;
    };
    if rows[i].as_object() != Some(before) || rows.len() > q.limit as usize {
        return None;
    }
    let mut rows = rows.clone();
    rows[i] = Value::Object(after.clone());
    let patched = serde_json::json!({ "data": rows, "meta": body.get("meta")? });
    // Only a body in exactly the origin's shape is patched: anything else is refilled.
    let page: Vec<Row> = rows
        .into_iter()
        .map(|r| match r {
            Value::Object(r) => Some(r),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (list_body(page, q) == patched).then_some(patched)
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
        (_, ReadTarget::Opaque) => Dependent::Opaque,
        (RelationKind::View, ReadTarget::Record(id)) => Dependent::View {
            view: relation.name.clone(),
            bind: relation.bind.clone(),
            target: ViewTarget::Record { id: id.clone() },
        },
        (RelationKind::View, ReadTarget::List(query)) => Dependent::View {
            view: relation.name.clone(),
            bind: relation.bind.clone(),
            target: ViewTarget::List {
                query: query.clone(),
                window: list_window(query, &relation.id_column, body),
            },
        },
        (RelationKind::Table, ReadTarget::Record(_)) => Dependent::Record,
        (RelationKind::Table, ReadTarget::List(query)) => Dependent::List {
            query: query.clone(),
            window: list_window(query, &relation.id_column, body),
        },
    };
    // A view's ids are not its tables' record ids: its rows are found through its bindings.
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
        rehydrate: policy.rehydrate,
        ttl_secs: policy.ttl_secs,
        // Set by the caller where the origin is shadow-checked (`shadow::shadow_digest`).
        digest: None,
        // Only an HTTP origin's lists are opaque tables; what they show teaches their route.
        observation: match (relation.kind, target) {
            (RelationKind::Table, ReadTarget::Opaque) => {
                observe_list(key.query_pairs(), body, &relation.id_column, stamp)
            }
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::testdb::{self, TestDb};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    /// Against the real database: a page patched for an update is, byte for byte, the origin's
    /// answer after it; and every page showing the row of an update that keeps its place
    /// whose body is the origin's is patched.
    #[test]
    fn patched_pages_are_the_origins_answer() {
        let (patched, showing) = (Cell::new(0), Cell::new(0));
        let strategy = (testdb::rows(), testdb::query(), testdb::write());
        TestRunner::new(Config {
            cases: 600,
            failure_persistence: None,
            ..Config::default()
        })
        .run(&strategy, |(rows, q, write)| {
            let db = TestDb::new(&rows);
            let body = list_body(db.list(&q), &q);
            let images = db.apply(&write);
            let now = list_body(db.list(&q), &q);
            let shown = body["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == images.id.as_str());
            match patched_page(&body, &q, &images) {
                Some(p) => {
                    patched.set(patched.get() + 1);
                    prop_assert_eq!(
                        serde_json::to_vec(&p).unwrap(),
                        serde_json::to_vec(&now).unwrap(),
                        "{:?} on {:?}",
                        images,
                        q
                    );
                }
                None => prop_assert!(
                    !(shown && keeps_place(&q, &images)),
                    "a page showing a row that kept its place was not patched: {:?} {:?}",
                    images,
                    q
                ),
            }
            showing.set(showing.get() + usize::from(shown));
            Ok(())
        })
        .unwrap();
        eprintln!(
            "patched {} of {} pages showing the written row",
            patched.get(),
            showing.get()
        );
        assert!(patched.get() > 0, "the generator reaches patchable pages");
    }

    /// A view's response is refilled like a table's when its route asks: the coordinator that
    /// invalidates it stamps every table the view reads. An opaque one of several tables is not.
    #[test]
    fn a_views_registration_is_refilled_when_its_route_asks() {
        let view = Relation {
            name: "usersWithOrders".into(),
            kind: RelationKind::View,
            columns: Vec::new(),
            id_column: "id".into(),
            tables: vec!["orders".into(), "users".into()],
            bind: Default::default(),
        };
        let key = CacheKey::from_request("acme", "/v1/usersWithOrders/1", None).unwrap();
        let body = serde_json::json!({"data": {"id": "1"}});
        let refills = |target: &ReadTarget, rehydrate: bool| {
            let policy = RoutePolicy {
                rehydrate,
                ..RoutePolicy::default()
            };
            registration(&key, &view, target, &body, 7, &policy).refills()
        };
        let record = ReadTarget::Record("1".into());
        assert!(refills(&record, true));
        assert!(!refills(&record, false));
        assert!(!refills(&ReadTarget::Opaque, true));
    }

    #[test]
    fn a_copy_that_does_not_show_the_before_image_is_not_patched() {
        let q = ListQuery {
            filters: vec![],
            order: None,
            limit: 2,
            offset: 0,
        };
        let row = |v: Value| v.as_object().unwrap().clone();
        let images = WriteImages {
            table: "t".into(),
            id: "1".into(),
            id_column: "id".into(),
            before: Some(row(serde_json::json!({"id": "1", "a": "x"}))),
            after: Some(row(serde_json::json!({"id": "1", "a": "y"}))),
        };
        let page = |a: &str| list_body(vec![row(serde_json::json!({"id": "1", "a": a}))], &q);
        assert_eq!(patched_page(&page("x"), &q, &images), Some(page("y")));
        // Filled after the write, or from another state: not the page the write changed.
        assert_eq!(patched_page(&page("z"), &q, &images), None);
        let mut truncated = page("x");
        truncated["meta"]["count"] = serde_json::json!(5);
        assert_eq!(patched_page(&truncated, &q, &images), None);
    }
}
