//! Test support: an in-memory SQLite playing D1, and generators of small tables, list queries
//! and writes whose values come from tiny alphabets so that equal values, shared prefixes,
//! NULLs and ties are common.

use proptest::prelude::*;
use rusqlite::types::{Value as DbValue, ValueRef};
use rusqlite::{params_from_iter, Connection};
use serde_json::{json, Value};

use super::key::CacheKey;
use super::planner::WriteImages;
use super::protocol::WriteOp;
use super::query::{list_sql, parse_list_query, Filter, ListQuery, Order, SqlValue};
use super::Row;

/// A value for the INTEGER column `b`: text that is not a number stays text there.
#[derive(Clone, Debug)]
pub enum BValue {
    Int(i64),
    Text(String),
}

/// One row of `t(id TEXT PRIMARY KEY, a TEXT, b INTEGER, c TEXT NULL)`.
#[derive(Clone, Debug)]
pub struct TestRow {
    pub id: String,
    pub a: Option<String>,
    pub b: Option<BValue>,
    pub c: Option<String>,
}

/// A write to `t`; indexes pick an existing row modulo the row count.
#[derive(Clone, Debug)]
pub enum TestWrite {
    /// Insert, or replace the row if the id exists.
    Upsert(TestRow),
    /// Give the `n`th row new column values.
    Update(usize, TestRow),
    /// Delete the `n`th row.
    Delete(usize),
}

/// A value for the REAL column `r` and the untyped column `u` of `n`.
#[derive(Clone, Debug)]
pub enum NumValue {
    Int(i64),
    Real(f64),
    Text(&'static str),
}

pub struct TestDb {
    conn: Connection,
}

fn bind(v: &SqlValue) -> DbValue {
    match v {
        SqlValue::Null => DbValue::Null,
        SqlValue::Integer(i) => DbValue::Integer(*i),
        SqlValue::Real(f) => DbValue::Real(*f),
        SqlValue::Text(s) => DbValue::Text(s.clone()),
    }
}

fn row_params(r: &TestRow) -> Vec<DbValue> {
    let text = |s: &Option<String>| s.clone().map_or(DbValue::Null, DbValue::Text);
    let b = match &r.b {
        None => DbValue::Null,
        Some(BValue::Int(i)) => DbValue::Integer(*i),
        Some(BValue::Text(s)) => DbValue::Text(s.clone()),
    };
    vec![DbValue::Text(r.id.clone()), text(&r.a), b, text(&r.c)]
}

/// JSON as D1 gives it: JavaScript numbers, so an integral REAL becomes a JSON integer.
fn to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(f) if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_991.0 => {
            json!(f as i64)
        }
        ValueRef::Real(f) => json!(f),
        ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => json!(b),
    }
}

impl TestDb {
    /// A fresh `t` holding `rows` (later duplicates of an id replace earlier ones).
    pub fn new(rows: &[TestRow]) -> TestDb {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id TEXT PRIMARY KEY, a TEXT, b INTEGER, c TEXT NULL);
             CREATE TABLE n (id TEXT PRIMARY KEY, r REAL, u);
             CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT, city TEXT);
             CREATE TABLE orders (id TEXT PRIMARY KEY, userId TEXT, cents INTEGER, status TEXT);
             CREATE VIEW v AS SELECT u.id AS id, u.name AS name, COUNT(o.id) AS n,
                    COALESCE(SUM(o.cents), 0) AS cents
               FROM users u LEFT JOIN orders o ON o.userId = u.id GROUP BY u.id;",
        )
        .unwrap();
        let db = TestDb { conn };
        for r in rows {
            db.upsert(r);
        }
        db
    }

    /// A fresh `n` whose rows hold each value in both `r` and `u`.
    pub fn numeric(values: &[Option<NumValue>]) -> TestDb {
        let db = TestDb::new(&[]);
        for (i, v) in values.iter().enumerate() {
            let v = match v {
                None => DbValue::Null,
                Some(NumValue::Int(i)) => DbValue::Integer(*i),
                Some(NumValue::Real(f)) => DbValue::Real(*f),
                Some(NumValue::Text(s)) => DbValue::Text(s.to_string()),
            };
            db.conn
                .execute(
                    "INSERT INTO n (id, r, u) VALUES (?, ?, ?)",
                    params_from_iter([DbValue::Text(format!("{i:02}")), v.clone(), v]),
                )
                .unwrap();
        }
        db
    }

    fn upsert(&self, r: &TestRow) {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO t (id, a, b, c) VALUES (?, ?, ?, ?)",
                params_from_iter(row_params(r)),
            )
            .unwrap();
    }

    /// The rows `sql` answers with `params` bound as text (as the D1 origin binds ids).
    pub fn select_text(&self, sql: &str, params: &[String]) -> Vec<Row> {
        self.select(sql, params.iter().cloned().map(DbValue::Text).collect())
    }

    fn select(&self, sql: &str, params: Vec<DbValue>) -> Vec<Row> {
        let mut stmt = self.conn.prepare(sql).unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let mut rows = stmt.query(params_from_iter(params)).unwrap();
        let mut out = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let mut json_row = Row::new();
            for (i, name) in names.iter().enumerate() {
                json_row.insert(name.clone(), to_json(row.get_ref(i).unwrap()));
            }
            out.push(json_row);
        }
        out
    }

    /// Every row of `t`.
    pub fn all_rows(&self) -> Vec<Row> {
        self.all_rows_in("t")
    }

    /// Every row of `table`.
    pub fn all_rows_in(&self, table: &str) -> Vec<Row> {
        self.select(&format!("SELECT * FROM {table}"), Vec::new())
    }

    /// The ids of `t`, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.select("SELECT id FROM t ORDER BY id", Vec::new())
            .into_iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// The row of `t` with this id.
    pub fn get(&self, id: &str) -> Option<Row> {
        self.select(
            "SELECT * FROM t WHERE id = ?",
            vec![DbValue::Text(id.into())],
        )
        .pop()
    }

    /// What `q` returns on `t`.
    pub fn list(&self, q: &ListQuery) -> Vec<Row> {
        self.list_in("t", q)
    }

    /// What `q` returns on `table`.
    pub fn list_in(&self, table: &str, q: &ListQuery) -> Vec<Row> {
        let (sql, params) = list_sql(table, "id", q);
        self.select(&sql, params.iter().map(bind).collect())
    }

    /// Applies a write and returns its before and after images, as a coordinator reads them.
    pub fn apply(&self, write: &TestWrite) -> WriteImages {
        let ids = self.ids();
        let id = match write {
            TestWrite::Upsert(r) => r.id.clone(),
            TestWrite::Update(n, _) | TestWrite::Delete(n) if !ids.is_empty() => {
                ids[n % ids.len()].clone()
            }
            // Nothing to update or delete: a write to a missing id changes nothing.
            TestWrite::Update(_, r) => r.id.clone(),
            TestWrite::Delete(_) => "zz".to_string(),
        };
        let before = self.get(&id);
        match write {
            TestWrite::Upsert(r) => self.upsert(r),
            TestWrite::Update(_, r) => {
                let mut params = row_params(r);
                params[0] = DbValue::Text(id.clone());
                params.rotate_left(1);
                self.conn
                    .execute(
                        "UPDATE t SET a = ?, b = ?, c = ? WHERE id = ?",
                        params_from_iter(params),
                    )
                    .unwrap();
            }
            TestWrite::Delete(_) => {
                self.conn
                    .execute("DELETE FROM t WHERE id = ?", [&id])
                    .unwrap();
            }
        }
        WriteImages {
            table: "t".into(),
            id: id.clone(),
            id_column: "id".into(),
            before,
            after: self.get(&id),
        }
    }
}

/// The users/orders pair behind the view `v` (`users LEFT JOIN orders GROUP BY users.id`):
/// a write to one of them, indexes picking an existing row modulo the row count.
#[derive(Clone, Debug)]
pub enum JoinWrite {
    /// Insert a row into `table`, or replace the row with its id.
    Upsert(&'static str, Row),
    /// Set some columns of the `n`th row of `table` (id order).
    Update(&'static str, usize, Row),
    /// Delete the `n`th row of `table`.
    Delete(&'static str, usize),
}

impl JoinWrite {
    /// The written table.
    pub fn table(&self) -> &'static str {
        match self {
            JoinWrite::Upsert(t, _) | JoinWrite::Update(t, _, _) | JoinWrite::Delete(t, _) => t,
        }
    }
}

fn json_param(v: &Value) -> DbValue {
    match v {
        Value::Null => DbValue::Null,
        Value::Number(n) => DbValue::Integer(n.as_i64().unwrap_or(0)),
        Value::String(s) => DbValue::Text(s.clone()),
        other => DbValue::Text(other.to_string()),
    }
}

impl TestDb {
    /// The record id a [`JoinWrite`] addresses, and the row its body names (what the
    /// coordinator sees of the write before it runs).
    pub fn join_target(&self, write: &JoinWrite) -> (String, Option<Row>) {
        let nth = |table: &str, n: usize| {
            let ids: Vec<String> = self
                .select(&format!("SELECT id FROM {table} ORDER BY id"), Vec::new())
                .into_iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect();
            match ids.is_empty() {
                true => "zz".to_string(),
                false => ids[n % ids.len()].clone(),
            }
        };
        match write {
            JoinWrite::Upsert(_, row) => {
                (row["id"].as_str().unwrap().to_string(), Some(row.clone()))
            }
            JoinWrite::Update(t, n, row) => (nth(t, *n), Some(row.clone())),
            JoinWrite::Delete(t, n) => (nth(t, *n), None),
        }
    }

    /// Runs a [`JoinWrite`] on the record `id` (from [`TestDb::join_target`]) and returns its
    /// images.
    pub fn join_apply(&self, write: &JoinWrite, id: &str) -> WriteImages {
        let table = write.table();
        let get = || {
            self.select(
                &format!("SELECT * FROM {table} WHERE id = ?"),
                vec![DbValue::Text(id.into())],
            )
            .pop()
        };
        let before = get();
        match write {
            JoinWrite::Upsert(_, row) => {
                let columns: Vec<&String> = row.keys().collect();
                let marks = vec!["?"; columns.len()].join(", ");
                let names: Vec<&str> = columns.iter().map(|c| c.as_str()).collect();
                self.conn
                    .execute(
                        &format!(
                            "INSERT OR REPLACE INTO {table} ({}) VALUES ({marks})",
                            names.join(", ")
                        ),
                        params_from_iter(row.values().map(json_param)),
                    )
                    .unwrap();
            }
            JoinWrite::Update(_, _, row) if !row.is_empty() => {
                let sets: Vec<String> = row.keys().map(|c| format!("{c} = ?")).collect();
                let mut params: Vec<DbValue> = row.values().map(json_param).collect();
                params.push(DbValue::Text(id.into()));
                self.conn
                    .execute(
                        &format!("UPDATE {table} SET {} WHERE id = ?", sets.join(", ")),
                        params_from_iter(params),
                    )
                    .unwrap();
            }
            JoinWrite::Update(..) => {}
            JoinWrite::Delete(..) => {
                self.conn
                    .execute(&format!("DELETE FROM {table} WHERE id = ?"), [id])
                    .unwrap();
            }
        }
        WriteImages {
            table: table.into(),
            id: id.into(),
            id_column: "id".into(),
            before,
            after: get(),
        }
    }
}

fn join_user() -> impl Strategy<Value = Row> {
    (
        "u[ab]",
        proptest::option::weighted(0.8, "[xy]{0,1}"),
        proptest::option::of("[pq]"),
    )
        .prop_map(|(id, name, city)| {
            json!({"id": id, "name": name, "city": city})
                .as_object()
                .unwrap()
                .clone()
        })
}

fn join_order() -> impl Strategy<Value = Row> {
    (
        "o[ab1]",
        proptest::option::weighted(0.9, "u[abc]"),
        proptest::option::weighted(0.9, 0i64..4),
        "[pq]",
    )
        .prop_map(|(id, user, cents, status)| {
            json!({"id": id, "userId": user, "cents": cents, "status": status})
                .as_object()
                .unwrap()
                .clone()
        })
}

/// Some columns of a row: what a PATCH names.
fn some_columns(row: impl Strategy<Value = Row>) -> impl Strategy<Value = Row> {
    (row, any::<u8>()).prop_map(|(row, mask)| {
        row.into_iter()
            .enumerate()
            .filter(|(i, (c, _))| c != "id" && mask & (1 << i) != 0)
            .map(|(_, kv)| kv)
            .collect()
    })
}

/// Users and orders to start a [`TestDb`] with (inserted through [`JoinWrite::Upsert`]).
pub fn join_rows() -> impl Strategy<Value = Vec<JoinWrite>> {
    proptest::collection::vec(
        prop_oneof![
            join_user().prop_map(|r| JoinWrite::Upsert("users", r)),
            join_order().prop_map(|r| JoinWrite::Upsert("orders", r)),
        ],
        0..10,
    )
}

/// A random write to users or orders.
pub fn join_write() -> impl Strategy<Value = JoinWrite> {
    prop_oneof![
        join_user().prop_map(|r| JoinWrite::Upsert("users", r)),
        join_order().prop_map(|r| JoinWrite::Upsert("orders", r)),
        (any::<usize>(), some_columns(join_user()))
            .prop_map(|(n, r)| JoinWrite::Update("users", n, r)),
        (any::<usize>(), some_columns(join_order()))
            .prop_map(|(n, r)| JoinWrite::Update("orders", n, r)),
        any::<usize>().prop_map(|n| JoinWrite::Delete("users", n)),
        any::<usize>().prop_map(|n| JoinWrite::Delete("orders", n)),
    ]
}

/// A random list query on the view `v`.
pub fn view_query() -> impl Strategy<Value = ListQuery> {
    let filter = prop_oneof![
        "[xy]{0,1}".prop_map(|v| Filter::Eq {
            column: "name".into(),
            value: v
        }),
        "[xy]{0,1}".prop_map(|v| Filter::Prefix {
            column: "name".into(),
            prefix: v
        }),
        (0i64..3).prop_map(|v| Filter::Eq {
            column: "n".into(),
            value: v.to_string()
        }),
    ];
    let order = proptest::option::weighted(
        0.7,
        (
            prop::sample::select(vec!["id", "name", "n", "cents"]),
            any::<bool>(),
        )
            .prop_map(|(column, descending)| Order {
                column: column.into(),
                descending,
            }),
    );
    (
        proptest::option::weighted(0.4, filter),
        order,
        1u32..=4,
        0u32..=3,
    )
        .prop_map(|(filter, order, limit, offset)| {
            let mut filters: Vec<Filter> = filter.into_iter().collect();
            filters.sort_by(|a, b| a.column().cmp(b.column()));
            ListQuery {
                filters,
                order,
                limit,
                offset,
            }
        })
}

/// The record id `write` addresses on `db` (as [`TestDb::apply`] picks it) and the write as
/// the coordinator would send it to the D1 origin: an upsert is a PUT of every column.
pub fn op_of(db: &TestDb, write: &TestWrite) -> (String, WriteOp) {
    let ids = db.ids();
    let body = |r: &TestRow| {
        let text = |s: &Option<String>| s.clone().map_or(Value::Null, Value::String);
        let b = match &r.b {
            None => Value::Null,
            Some(BValue::Int(i)) => json!(i),
            Some(BValue::Text(s)) => json!(s),
        };
        json!({"a": text(&r.a), "b": b, "c": text(&r.c)})
            .as_object()
            .unwrap()
            .clone()
    };
    let nth = |n: usize, fallback: &str| match ids.is_empty() {
        true => fallback.to_string(),
        false => ids[n % ids.len()].clone(),
    };
    match write {
        TestWrite::Upsert(r) => (
            r.id.clone(),
            WriteOp::Replace {
                id: r.id.clone(),
                row: body(r),
            },
        ),
        TestWrite::Update(n, r) => {
            let id = nth(*n, &r.id);
            (id.clone(), WriteOp::Patch { id, row: body(r) })
        }
        TestWrite::Delete(n) => {
            let id = nth(*n, "zz");
            (id.clone(), WriteOp::Delete { id })
        }
    }
}

/// The query string of `q`, as a client would send it.
fn query_string(q: &ListQuery) -> String {
    let mut params: Vec<String> = q
        .filters
        .iter()
        .map(|f| match f {
            Filter::Eq { column, value } => format!("{column}={value}"),
            Filter::Prefix { column, prefix } => format!("{column}={prefix}*"),
        })
        .collect();
    if let Some(o) = &q.order {
        params.push(format!(
            "order={}{}",
            if o.descending { "-" } else { "" },
            o.column
        ));
    }
    params.push(format!("limit={}", q.limit));
    params.push(format!("offset={}", q.offset));
    params.join("&")
}

/// The cache key of `q` on `/v1/<relation>` (columns `columns`), built through the real key
/// and query parsers.
fn key_on(relation: &str, columns: &[&str], q: &ListQuery) -> CacheKey {
    let path = format!("/v1/{relation}");
    let key = CacheKey::from_request("acme", &path, Some(&query_string(q))).unwrap();
    let parsed = parse_list_query(key.query_pairs(), |c| columns.contains(&c));
    assert_eq!(parsed.as_ref(), Ok(q), "query survives the key");
    key
}

/// The cache key of `q` on `/v1/t`.
pub fn key_for(q: &ListQuery) -> CacheKey {
    key_on("t", &["id", "a", "b", "c"], q)
}

/// The cache key of `q` on `/v1/v` (the join view).
pub fn view_key_for(q: &ListQuery) -> CacheKey {
    key_on("v", &["id", "name", "n", "cents"], q)
}

fn small_text() -> impl Strategy<Value = String> {
    "[xyX]{0,2}"
}

fn b_value() -> impl Strategy<Value = BValue> {
    prop_oneof![
        4 => (-2i64..12).prop_map(BValue::Int),
        1 => "[x1]{1,2}".prop_map(BValue::Text),
    ]
}

fn id() -> impl Strategy<Value = String> {
    "[ab1]{1,2}"
}

/// A row with random values.
pub fn row() -> impl Strategy<Value = TestRow> {
    (
        id(),
        proptest::option::weighted(0.8, small_text()),
        proptest::option::weighted(0.8, b_value()),
        proptest::option::of("[xy1]{0,2}"),
    )
        .prop_map(|(id, a, b, c)| TestRow { id, a, b, c })
}

/// A small table.
pub fn rows() -> impl Strategy<Value = Vec<TestRow>> {
    proptest::collection::vec(row(), 0..10)
}

/// A random list query on `t`: filters on any of its columns, any order, small pages.
pub fn query() -> impl Strategy<Value = ListQuery> {
    let filter = |column: &'static str| {
        proptest::option::weighted(
            0.35,
            (any::<bool>(), "[abxyX1-]{0,2}").prop_map(move |(prefix, v)| {
                if prefix {
                    Filter::Prefix {
                        column: column.into(),
                        prefix: v,
                    }
                } else {
                    Filter::Eq {
                        column: column.into(),
                        value: v,
                    }
                }
            }),
        )
    };
    let order = proptest::option::weighted(
        0.7,
        (
            prop::sample::select(vec!["id", "a", "b", "c"]),
            any::<bool>(),
        )
            .prop_map(|(column, descending)| Order {
                column: column.into(),
                descending,
            }),
    );
    (
        filter("a"),
        filter("b"),
        filter("c"),
        filter("id"),
        order,
        1u32..=5,
        0u32..=4,
    )
        .prop_map(|(a, b, c, id, order, limit, offset)| ListQuery {
            filters: [a, b, c, id].into_iter().flatten().collect(),
            order,
            limit,
            offset,
        })
}

/// A random write.
pub fn write() -> impl Strategy<Value = TestWrite> {
    prop_oneof![
        row().prop_map(TestWrite::Upsert),
        (any::<usize>(), row()).prop_map(|(n, r)| TestWrite::Update(n, r)),
        any::<usize>().prop_map(TestWrite::Delete),
    ]
}

/// A value for the numeric table: integers and reals near the edges of SQLite's formatting.
pub fn numeric() -> impl Strategy<Value = Option<NumValue>> {
    proptest::option::weighted(
        0.9,
        prop_oneof![
            prop::sample::select(vec![
                0i64,
                1,
                5,
                10,
                15,
                -5,
                1_000_000_000_000_000,
                9_999_999_999_999_999
            ])
            .prop_map(NumValue::Int),
            prop::sample::select(vec![
                0.0,
                1.5,
                5.0,
                -0.5,
                0.1,
                1e15,
                1e16,
                9_999_999_999_999_998.0
            ])
            .prop_map(NumValue::Real),
            prop::sample::select(vec!["5", "5.0", "x", "1.5"]).prop_map(NumValue::Text),
        ],
    )
}

/// A filter value aimed at the texts of the values of [`numeric`] (the column is set later).
pub fn numeric_filter() -> impl Strategy<Value = Filter> {
    let values = vec![
        "5", "5.0", "5.", "1", "1.", "1.5", "1.0e+15", "1.0e+16", "9", "10", "0", "0.0", "-0.5",
        "", "0.1",
    ];
    (any::<bool>(), prop::sample::select(values)).prop_map(|(prefix, v)| {
        if prefix {
            Filter::Prefix {
                column: String::new(),
                prefix: v.into(),
            }
        } else {
            Filter::Eq {
                column: String::new(),
                value: v.into(),
            }
        }
    })
}
