//! The SQL of `query.rs`, evaluated in Rust on JSON rows: which rows a list query selects and in
//! what order.
//!
//! The planner asks these functions about a written row's before and after images. Where the
//! JSON a row arrives as cannot say what SQLite would compute (a float's text, a JSON integer
//! that may be stored as a REAL), the answer is [`Match::Unknown`], which the planner treats as a
//! match: a wrong "no" would serve stale data, a wrong "yes" only costs a refill.

use std::cmp::Ordering;

use serde_json::Value;

use super::query::{Filter, ListQuery, Order};
use super::Row;

/// Whether a row satisfies a query's filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// SQLite would select the row.
    Yes,
    /// SQLite would not select the row.
    No,
    /// The JSON value cannot tell; callers that must be safe treat it as `Yes`.
    Unknown,
}

impl Match {
    /// True unless the row certainly does not match.
    pub fn may_match(self) -> bool {
        self != Match::No
    }

    /// Conjunction: `No` wins over `Unknown`, which wins over `Yes`.
    fn and(self, other: Match) -> Match {
        match (self, other) {
            (Match::No, _) | (_, Match::No) => Match::No,
            (Match::Unknown, _) | (_, Match::Unknown) => Match::Unknown,
            _ => Match::Yes,
        }
    }
}

/// What `CAST(value AS TEXT)` gives in SQLite for a value D1 returned as JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlText<'a> {
    /// SQL NULL (or a missing column): matches no filter.
    Null,
    /// TEXT: the string itself.
    Text(&'a str),
    /// A JSON integer: its decimal text if SQLite stored an INTEGER, but a REAL column holding
    /// an integral value (`5.0`) arrives as the same JSON and casts to `"5.0"`.
    Integer(i64),
    /// A float, boolean, array or object: SQLite's text is not known here.
    Unknown,
}

/// The text SQLite's `CAST(v AS TEXT)` would give for a JSON value, as far as it is known.
pub fn sql_text(v: &Value) -> SqlText<'_> {
    match v {
        Value::Null => SqlText::Null,
        Value::String(s) => SqlText::Text(s),
        // Floats are rendered with SQLite's own `%!.15g`; not guessed here.
        Value::Number(n) => n.as_i64().map_or(SqlText::Unknown, SqlText::Integer),
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => SqlText::Unknown,
    }
}

/// Integers at least this large render in exponent form when stored as REAL, where rounding to
/// 15 significant digits may even change the leading digit.
const REAL_EXPONENT_FORM: u64 = 1_000_000_000_000_000;

/// Whether one filter holds for a column value.
fn filter_matches(filter: &Filter, value: &Value) -> Match {
    let yes = |b: bool| if b { Match::Yes } else { Match::No };
    match (sql_text(value), filter) {
        (SqlText::Null, _) => Match::No,
        (SqlText::Unknown, _) => Match::Unknown,
        (SqlText::Text(s), Filter::Eq { value, .. }) => yes(s == value),
        (SqlText::Text(s), Filter::Prefix { prefix, .. }) => yes(s.starts_with(prefix.as_str())),
        (SqlText::Integer(n), Filter::Eq { value, .. }) => {
            if n.to_string() == *value {
                Match::Yes
            } else if value.contains('.') {
                // A REAL's text always has a '.', so only such a value could equal "n.0".
                Match::Unknown
            } else {
                Match::No
            }
        }
        (SqlText::Integer(n), Filter::Prefix { prefix, .. }) => {
            if n.to_string().starts_with(prefix.as_str()) {
                Match::Yes
            } else if prefix.contains('.') || n.unsigned_abs() >= REAL_EXPONENT_FORM {
                Match::Unknown
            } else {
                // Below 1e15 a REAL renders as "n.0": its prefixes without '.' are n's prefixes.
                Match::No
            }
        }
    }
}

/// A row's value for a column, matching the name exactly or else ASCII-case-insensitively as
/// SQLite resolves identifiers; `None` when the row lacks the column.
pub fn column_value<'a>(row: &'a Row, column: &str) -> Option<&'a Value> {
    row.get(column).or_else(|| {
        row.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(column))
            .map(|(_, v)| v)
    })
}

/// Whether SQLite would select `row` for the filters of `q` (a missing column is NULL).
pub fn row_matches(q: &ListQuery, row: &Row) -> Match {
    q.filters.iter().fold(Match::Yes, |acc, filter| {
        let value = column_value(row, filter.column()).unwrap_or(&Value::Null);
        acc.and(filter_matches(filter, value))
    })
}

/// A JSON number, kept exact: integers as `i128`, the rest as `f64`.
enum Num {
    Int(i128),
    Real(f64),
}

fn num(n: &serde_json::Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        Num::Int(i128::from(u))
    } else {
        Num::Real(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Compares an integer with a float exactly, as SQLite compares INTEGER with REAL.
fn cmp_int_real(i: i128, f: f64) -> Ordering {
    // Casting rounds monotonically, so a strict order of the cast is the true order; when they
    // are equal `f` is integral and small enough to compare as an integer.
    match (i as f64).partial_cmp(&f) {
        Some(Ordering::Equal) => i.cmp(&(f as i128)),
        Some(ord) => ord,
        None => Ordering::Less,
    }
}

fn cmp_num(a: &serde_json::Number, b: &serde_json::Number) -> Ordering {
    match (num(a), num(b)) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Real(x), Num::Real(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Num::Int(x), Num::Real(y)) => cmp_int_real(x, y),
        (Num::Real(x), Num::Int(y)) => cmp_int_real(y, x).reverse(),
    }
}

/// Rank of a value's storage class in SQLite's sort order; JSON kinds D1 never returns for a
/// column sort last so the order stays total.
fn class(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Number(_) => 1,
        Value::String(_) => 2,
        Value::Bool(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// SQLite's `ORDER BY … COLLATE BINARY` order: NULL < numbers (numerically) < text (bytewise).
pub fn sqlite_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_num(x, y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ if class(a) != class(b) => class(a).cmp(&class(b)),
        // Same non-scalar kind: an arbitrary but total order.
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// The order `list_sql` sorts rows in: the order column, then the id, both reversed when
/// descending.
pub fn cmp_rows(order: Option<&Order>, id_column: &str, a: &Row, b: &Row) -> Ordering {
    let get = |row: &Row, column: &str| column_value(row, column).cloned().unwrap_or(Value::Null);
    let by_column = order.map_or(Ordering::Equal, |o| {
        sqlite_cmp(&get(a, &o.column), &get(b, &o.column))
    });
    let ord = by_column.then_with(|| sqlite_cmp(&get(a, id_column), &get(b, id_column)));
    if order.is_some_and(|o| o.descending) {
        ord.reverse()
    } else {
        ord
    }
}

#[cfg(test)]
mod tests {
    use super::super::query::{list_sql, Filter, ListQuery, Order};
    use super::super::testdb::{self, TestDb};
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        v.as_object().unwrap().clone()
    }

    fn query(filters: Vec<Filter>) -> ListQuery {
        ListQuery {
            filters,
            order: None,
            limit: 10,
            offset: 0,
        }
    }

    fn eq(column: &str, value: &str) -> Filter {
        Filter::Eq {
            column: column.into(),
            value: value.into(),
        }
    }

    fn prefix(column: &str, prefix: &str) -> Filter {
        Filter::Prefix {
            column: column.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn text_of_json_values() {
        assert_eq!(sql_text(&json!("x")), SqlText::Text("x"));
        assert_eq!(sql_text(&json!(-7)), SqlText::Integer(-7));
        assert_eq!(sql_text(&json!(null)), SqlText::Null);
        assert_eq!(sql_text(&json!(1.5)), SqlText::Unknown);
        assert_eq!(sql_text(&json!(u64::MAX)), SqlText::Unknown);
        assert_eq!(sql_text(&json!(true)), SqlText::Unknown);
        assert_eq!(sql_text(&json!([1])), SqlText::Unknown);
    }

    #[test]
    fn filters() {
        let lane = row(json!({"id": "1", "firstName": "Lane", "age": 30, "score": 1.5}));
        let m = |filters| row_matches(&query(filters), &lane);
        assert_eq!(m(vec![eq("firstName", "Lane")]), Match::Yes);
        assert_eq!(m(vec![eq("firstName", "lane")]), Match::No);
        assert_eq!(m(vec![prefix("firstName", "La")]), Match::Yes);
        assert_eq!(m(vec![prefix("firstName", "")]), Match::Yes);
        assert_eq!(m(vec![eq("age", "30")]), Match::Yes);
        assert_eq!(m(vec![prefix("age", "3")]), Match::Yes);
        assert_eq!(m(vec![eq("age", "31")]), Match::No);
        // A REAL column holding 30.0 arrives as JSON 30 too.
        assert_eq!(m(vec![eq("age", "30.0")]), Match::Unknown);
        assert_eq!(m(vec![prefix("age", "30.")]), Match::Unknown);
        assert_eq!(m(vec![eq("score", "1.5")]), Match::Unknown);
        // Missing columns are NULL, which matches nothing, not even an empty prefix.
        assert_eq!(m(vec![prefix("missing", "")]), Match::No);
        // Identifiers resolve case-insensitively, as in SQLite.
        assert_eq!(m(vec![eq("FIRSTNAME", "Lane")]), Match::Yes);
        // No beats Unknown beats Yes.
        assert_eq!(
            m(vec![eq("score", "1.5"), eq("firstName", "Bob")]),
            Match::No
        );
        assert_eq!(
            m(vec![eq("score", "1.5"), eq("firstName", "Lane")]),
            Match::Unknown
        );
        assert_eq!(m(vec![]), Match::Yes);
    }

    #[test]
    fn sqlite_order_of_values() {
        let ordered = [
            json!(null),
            json!(-2),
            json!(-1.5),
            json!(1),
            json!(1.0000001),
            json!(9007199254740993_i64),
            json!(1e300),
            json!(""),
            json!("B"),
            json!("a"),
            json!("é"),
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(sqlite_cmp(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        // 2^53 + 1 is not representable as f64; the comparison must still be exact.
        assert_eq!(
            sqlite_cmp(&json!(9007199254740993_i64), &json!(9007199254740992.0)),
            Ordering::Greater
        );
        assert_eq!(sqlite_cmp(&json!(3), &json!(3.0)), Ordering::Equal);
    }

    #[test]
    fn row_order_breaks_ties_by_id() {
        let a = row(json!({"id": "a", "n": 1}));
        let b = row(json!({"id": "b", "n": 1}));
        let c = row(json!({"id": "c"}));
        let asc = Order {
            column: "n".into(),
            descending: false,
        };
        let desc = Order {
            column: "n".into(),
            descending: true,
        };
        assert_eq!(cmp_rows(Some(&asc), "id", &a, &b), Ordering::Less);
        assert_eq!(cmp_rows(Some(&desc), "id", &a, &b), Ordering::Greater);
        assert_eq!(cmp_rows(Some(&asc), "id", &c, &a), Ordering::Less);
        assert_eq!(cmp_rows(None, "id", &c, &a), Ordering::Greater);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Filtering and ordering in Rust select exactly the rows, in exactly the order, that
        /// SQLite returns for the same query.
        #[test]
        fn mirrors_sqlite(rows in testdb::rows(), queries in proptest::collection::vec(testdb::query(), 1..6)) {
            let db = TestDb::new(&rows);
            let all = db.all_rows();
            for q in &queries {
                let mut expected: Vec<&Row> = Vec::new();
                for r in &all {
                    let m = row_matches(q, r);
                    // This schema has no REAL values, so nothing is unknown.
                    prop_assert_ne!(m, Match::Unknown);
                    if m == Match::Yes {
                        expected.push(r);
                    }
                }
                expected.sort_by(|a, b| cmp_rows(q.order.as_ref(), "id", a, b));
                let expected: Vec<&Row> = expected
                    .into_iter()
                    .skip(q.offset as usize)
                    .take(q.limit as usize)
                    .collect();
                let actual = db.list(q);
                let actual: Vec<&Row> = actual.iter().collect();
                prop_assert_eq!(expected, actual, "query {:?}, sql {}", q, list_sql("t", "id", q).0);
            }
        }

        /// With REAL and untyped columns, where JSON loses the storage class, Rust never says
        /// `No` for a row SQLite selects, and orders rows as SQLite does.
        #[test]
        fn safe_for_reals(
            values in proptest::collection::vec(testdb::numeric(), 1..8),
            filter in testdb::numeric_filter(),
            descending in any::<bool>(),
        ) {
            let db = TestDb::numeric(&values);
            for column in ["r", "u"] {
                let f = match &filter {
                    Filter::Eq { value, .. } => eq(column, value),
                    Filter::Prefix { prefix: p, .. } => prefix(column, p),
                };
                let q = ListQuery {
                    filters: vec![f],
                    order: Some(Order { column: column.into(), descending }),
                    limit: 100,
                    offset: 0,
                };
                let selected = db.list_in("n", &q);
                let all = db.all_rows_in("n");
                for r in &all {
                    let in_sqlite = selected.iter().any(|s| s["id"] == r["id"]);
                    if in_sqlite {
                        prop_assert!(row_matches(&q, r).may_match(), "{:?} on {:?}", q, r);
                    }
                }
                for pair in selected.windows(2) {
                    prop_assert_ne!(cmp_rows(q.order.as_ref(), "id", &pair[0], &pair[1]), Ordering::Greater);
                }
            }
        }
    }
}
