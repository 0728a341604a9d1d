//! Test fixtures: a graph over an in-memory SQLite, a `users` table, and registrations made the
//! way edges and refills make them (`fill::registration`).

use serde_json::{json, Value};

use super::graph::Graph;
use super::store::memory::MemoryStore;
use super::write::{plan, record, Recorded, StepContext};
use edgecache_core::fill;
use edgecache_core::key::CacheKey;
use edgecache_core::origin::{read_target, ReadTarget};
use edgecache_core::planner::WriteImages;
use edgecache_core::protocol::{OriginConfig, Registration};
use edgecache_core::route;
use edgecache_core::rules::RoutePolicy;
use edgecache_core::schema::{Column, Relation, RelationKind};
use edgecache_core::shadow::body_digest;
use edgecache_core::Row;

/// The new table's seq (a coordinator is born at its creation time).
pub const BORN: u64 = 1_000;

/// A migrated graph over a fresh in-memory database.
pub fn graph() -> Graph<MemoryStore> {
    Graph::open(MemoryStore::default(), BORN, true).expect("migrated")
}

/// `users (id TEXT PRIMARY KEY, firstName TEXT, age INTEGER)`.
pub fn users() -> Relation {
    let column = |name: &str, decl_type: &str| Column {
        name: name.to_string(),
        decl_type: decl_type.to_string(),
        primary_key: name == "id",
        not_null: name == "id",
        has_default: false,
    };
    Relation {
        name: "users".into(),
        kind: RelationKind::Table,
        columns: vec![
            column("id", "TEXT"),
            column("firstName", "TEXT"),
            column("age", "INTEGER"),
        ],
        id_column: "id".into(),
        tables: vec!["users".into()],
        bind: Default::default(),
    }
}

/// The view `usersWithOrders (id, firstName, orderCount)`, its rows fed by `users.id` and
/// `orders.userId`.
pub fn users_with_orders() -> Relation {
    let column = |name: &str| Column {
        name: name.to_string(),
        decl_type: String::new(),
        primary_key: false,
        not_null: false,
        has_default: false,
    };
    Relation {
        name: "usersWithOrders".into(),
        kind: RelationKind::View,
        columns: ["id", "firstName", "orderCount"].map(column).to_vec(),
        id_column: "id".into(),
        tables: vec!["orders".into(), "users".into()],
        bind: [("orders", "userId"), ("users", "id")]
            .map(|(t, c)| (t.to_string(), c.to_string()))
            .into(),
    }
}

/// The registration of the view row `/v1/usersWithOrders/<id>` filled at `stamp` (the
/// registering table's), refilled after invalidation.
pub fn view_reg(id: &str, stamp: u64) -> Registration {
    let key = CacheKey::from_request("acme", &format!("/v1/usersWithOrders/{id}"), None)
        .expect("a valid key");
    let body = json!({"data": {"id": id, "firstName": "Ann", "orderCount": 1}});
    let policy = RoutePolicy {
        rehydrate: true,
        ..RoutePolicy::default()
    };
    let target = ReadTarget::Record(id.to_string());
    fill::registration(&key, &users_with_orders(), &target, &body, stamp, &policy)
}

/// A row from a JSON object.
pub fn row(v: Value) -> Row {
    v.as_object().expect("an object").clone()
}

/// The registration of `path?query` filled with `body` at `stamp`, refilled after invalidation,
/// with the body's digest an HTTP origin's fill carries (the shadow tests compare it).
pub fn registration(path_and_query: &str, body: Value, stamp: u64) -> Registration {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let key = CacheKey::from_request("acme", path, query).expect("a valid key");
    let resource = route::resource(key.encoded_path()).expect("a /v1 path");
    let relation = users();
    let target = read_target(&OriginConfig::D1, &relation, &resource, &key).expect("a target");
    let policy = RoutePolicy {
        rehydrate: true,
        ..RoutePolicy::default()
    };
    Registration {
        digest: Some(body_digest(&body)),
        ..fill::registration(&key, &relation, &target, &body, stamp, &policy)
    }
}

/// `/v1/users/<id>` showing the user.
pub fn user_reg(id: &str, first_name: &str, stamp: u64) -> Registration {
    registration(
        &format!("/v1/users/{id}"),
        json!({"data": {"id": id, "firstName": first_name, "age": 30}}),
        stamp,
    )
}

/// An update of user `id` from `before` to `after` first names.
pub fn rename(id: &str, before: &str, after: &str) -> WriteImages {
    WriteImages {
        table: "users".into(),
        id: id.into(),
        id_column: "id".into(),
        before: Some(row(json!({"id": id, "firstName": before, "age": 30}))),
        after: Some(row(json!({"id": id, "firstName": after, "age": 30}))),
    }
}

/// A step at time 0 on a D1 origin with a log of `log_limit` invalidations.
pub fn ctx(log_limit: u64) -> StepContext {
    StepContext {
        now_ms: 0,
        log_limit,
    }
}

/// Records a write the way the coordinator does once the origin accepted it.
pub fn write(graph: &Graph<MemoryStore>, images: &WriteImages) -> Recorded {
    let intent = graph.begin_intent(&images.id).expect("intent");
    let planned = plan(graph, images, &[]).expect("planned");
    record(graph, intent, images, &planned, ctx(1000), None).expect("recorded")
}

/// The key of a registration.
pub fn key_of(reg: &Registration) -> CacheKey {
    CacheKey::parse(&reg.key).expect("a valid key")
}
