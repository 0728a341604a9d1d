//! List queries (`GET /v1/<table>?limit=&offset=&order=&<column>=<value>`) and the one SQL
//! statement each becomes.
//!
//! The filter semantics are deliberately text-based (`CAST(col AS TEXT)` compared bytewise) so
//! that `predicate.rs` can mirror them exactly in Rust: the planner decides whether a written row
//! belongs to a cached list by evaluating the same predicate the database evaluated.

use serde::{Deserialize, Serialize};

/// Page size when the request gives no `limit`.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest accepted `limit`.
pub const MAX_LIMIT: u32 = 1000;
/// Largest accepted `offset`.
pub const MAX_OFFSET: u32 = 1_000_000;
/// SQLite in D1 and in Durable Objects takes at most 100 bound parameters per statement; a
/// statement built from a list binds at most this many.
pub const MAX_BOUND: usize = 90;

/// One column condition of a list query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// `column=value`: the column's text equals `value`.
    Eq {
        /// The filtered column.
        column: String,
        /// The text the column must equal.
        value: String,
    },
    /// `column=prefix*`: the column's text starts with `prefix`.
    Prefix {
        /// The filtered column.
        column: String,
        /// The text the column must start with (without the `*`).
        prefix: String,
    },
}

impl Filter {
    /// The column the filter reads.
    pub fn column(&self) -> &str {
        match self {
            Filter::Eq { column, .. } | Filter::Prefix { column, .. } => column,
        }
    }
}

/// The sort requested with `order=col` or `order=-col`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The column sorted on.
    pub column: String,
    /// True for `order=-col`.
    pub descending: bool,
}

/// A parsed, validated list query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    /// Column conditions, all of which must hold, sorted by column.
    pub filters: Vec<Filter>,
    /// The requested sort; the id column always breaks ties.
    pub order: Option<Order>,
    /// Page size, 1..=[`MAX_LIMIT`].
    pub limit: u32,
    /// Rows skipped, 0..=[`MAX_OFFSET`].
    pub offset: u32,
}

/// Why a list query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A filter names a column the table does not have.
    #[error("unknown column `{0}`")]
    UnknownColumn(String),
    /// `limit` is not an integer from 1 to [`MAX_LIMIT`].
    #[error("limit must be an integer from 1 to {MAX_LIMIT}, got `{0}`")]
    BadLimit(String),
    /// `offset` is not an integer from 0 to [`MAX_OFFSET`].
    #[error("offset must be an integer from 0 to {MAX_OFFSET}, got `{0}`")]
    BadOffset(String),
    /// `order` is not a known column, optionally prefixed by `-`.
    #[error("order must be a known column, optionally prefixed by '-' for descending, got `{0}`")]
    BadOrder(String),
    /// A parameter appears more than once.
    #[error("parameter `{0}` is given more than once")]
    Duplicate(String),
}

/// A value bound to a `?` placeholder.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text.
    Text(String),
}

/// Parses a key's decoded, sorted query pairs into a list query, validating columns with
/// `has_column`.
pub fn parse_list_query(
    pairs: &[(String, String)],
    has_column: impl Fn(&str) -> bool,
) -> Result<ListQuery, QueryError> {
    let mut query = ListQuery {
        filters: Vec::new(),
        order: None,
        limit: DEFAULT_LIMIT,
        offset: 0,
    };
    let mut seen: Vec<&str> = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        // A repeated parameter has no single meaning; refusing it keeps one key, one query.
        if seen.contains(&name.as_str()) {
            return Err(QueryError::Duplicate(name.clone()));
        }
        seen.push(name);
        match name.as_str() {
            "limit" => {
                query.limit = parse_bounded(value, 1, MAX_LIMIT)
                    .ok_or_else(|| QueryError::BadLimit(value.clone()))?;
            }
            "offset" => {
                query.offset = parse_bounded(value, 0, MAX_OFFSET)
                    .ok_or_else(|| QueryError::BadOffset(value.clone()))?;
            }
            "order" => {
                let (column, descending) = match value.strip_prefix('-') {
                    Some(column) => (column, true),
                    None => (value.as_str(), false),
                };
                if column.is_empty() || !has_column(column) {
                    return Err(QueryError::BadOrder(value.clone()));
                }
                query.order = Some(Order {
                    column: column.to_string(),
                    descending,
                });
            }
            column => {
                if !has_column(column) {
                    return Err(QueryError::UnknownColumn(column.to_string()));
                }
                let filter = match value.strip_suffix('*') {
                    Some(prefix) => Filter::Prefix {
                        column: column.to_string(),
                        prefix: prefix.to_string(),
                    },
                    None => Filter::Eq {
                        column: column.to_string(),
                        value: value.clone(),
                    },
                };
                query.filters.push(filter);
            }
        }
    }
    // Pairs normally arrive sorted; sorting again keeps equal queries equal whatever the caller.
    query.filters.sort_by(|a, b| a.column().cmp(b.column()));
    Ok(query)
}

/// Parses plain decimal digits (no sign, no spaces) within `min..=max`.
fn parse_bounded(s: &str, min: u32, max: u32) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = s.parse().ok()?;
    u32::try_from(n).ok().filter(|n| (min..=max).contains(n))
}

/// Quotes an SQLite identifier (`"` doubled inside double quotes).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQL and bound values that answer `q` on `table`.
///
/// Comparisons and ordering use `COLLATE BINARY` explicitly: `CAST(col AS TEXT)` keeps a
/// column's declared collation (e.g. `NOCASE`), which the Rust mirror could not reproduce.
pub fn list_sql(table: &str, id_column: &str, q: &ListQuery) -> (String, Vec<SqlValue>) {
    let mut sql = format!("SELECT * FROM {}", quote_ident(table));
    let mut params = Vec::new();
    for (i, filter) in q.filters.iter().enumerate() {
        sql.push_str(if i == 0 { " WHERE " } else { " AND " });
        let text = format!("CAST({} AS TEXT)", quote_ident(filter.column()));
        match filter {
            Filter::Eq { value, .. } => {
                sql.push_str(&format!("{text} COLLATE BINARY = ?"));
                params.push(SqlValue::Text(value.clone()));
            }
            Filter::Prefix { prefix, .. } => {
                // substr counts characters on text, so bind the length in characters.
                sql.push_str(&format!("substr({text}, 1, ?) COLLATE BINARY = ?"));
                let chars = i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX);
                params.push(SqlValue::Integer(chars));
                params.push(SqlValue::Text(prefix.clone()));
            }
        }
    }
    let (column, descending) = match &q.order {
        Some(order) => (Some(order.column.as_str()), order.descending),
        None => (None, false),
    };
    let dir = if descending { "DESC" } else { "ASC" };
    sql.push_str(" ORDER BY ");
    if let Some(column) = column.filter(|c| *c != id_column) {
        sql.push_str(&format!("{} COLLATE BINARY {dir}, ", quote_ident(column)));
    }
    sql.push_str(&format!(
        "{} COLLATE BINARY {dir} LIMIT ? OFFSET ?",
        quote_ident(id_column)
    ));
    params.push(SqlValue::Integer(i64::from(q.limit)));
    params.push(SqlValue::Integer(i64::from(q.offset)));
    (sql, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn columns(c: &str) -> bool {
        ["id", "firstName", "age", "we\"ird"].contains(&c)
    }

    #[test]
    fn parses_filters_order_limit_offset() {
        let q = parse_list_query(
            &pairs(&[
                ("age", "3"),
                ("firstName", "La*"),
                ("limit", "10"),
                ("offset", "20"),
                ("order", "-age"),
            ]),
            columns,
        )
        .unwrap();
        assert_eq!(
            q,
            ListQuery {
                filters: vec![
                    Filter::Eq {
                        column: "age".into(),
                        value: "3".into()
                    },
                    Filter::Prefix {
                        column: "firstName".into(),
                        prefix: "La".into()
                    },
                ],
                order: Some(Order {
                    column: "age".into(),
                    descending: true
                }),
                limit: 10,
                offset: 20,
            }
        );
    }

    #[test]
    fn defaults() {
        let q = parse_list_query(&[], columns).unwrap();
        assert_eq!(
            (q.limit, q.offset, q.order, q.filters.len()),
            (DEFAULT_LIMIT, 0, None, 0)
        );
    }

    #[test]
    fn rejects_bad_parameters() {
        let err = |list: &[(&str, &str)]| parse_list_query(&pairs(list), columns).unwrap_err();
        assert_eq!(
            err(&[("nope", "1")]),
            QueryError::UnknownColumn("nope".into())
        );
        for bad in [
            "0",
            "1001",
            "-1",
            "+5",
            " 5",
            "",
            "1e3",
            "99999999999999999999",
        ] {
            assert_eq!(
                err(&[("limit", bad)]),
                QueryError::BadLimit(bad.into()),
                "{bad}"
            );
        }
        assert!(parse_list_query(&pairs(&[("limit", "1000")]), columns).is_ok());
        for bad in ["-1", "1000001", "x"] {
            assert_eq!(err(&[("offset", bad)]), QueryError::BadOffset(bad.into()));
        }
        for bad in ["", "-", "nope", "--age"] {
            assert_eq!(err(&[("order", bad)]), QueryError::BadOrder(bad.into()));
        }
        assert_eq!(
            err(&[("age", "1"), ("age", "2")]),
            QueryError::Duplicate("age".into())
        );
        assert_eq!(
            err(&[("limit", "1"), ("limit", "1")]),
            QueryError::Duplicate("limit".into())
        );
        assert_eq!(
            QueryError::BadLimit("0".into()).to_string(),
            "limit must be an integer from 1 to 1000, got `0`"
        );
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("users"), "\"users\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn builds_parameterised_sql() {
        let q = parse_list_query(
            &pairs(&[
                ("firstName", "Lé*"),
                ("we\"ird", "x"),
                ("order", "-age"),
                ("limit", "5"),
            ]),
            columns,
        )
        .unwrap();
        let (sql, params) = list_sql("users", "id", &q);
        assert_eq!(
            sql,
            "SELECT * FROM \"users\" WHERE substr(CAST(\"firstName\" AS TEXT), 1, ?) COLLATE BINARY = ? \
             AND CAST(\"we\"\"ird\" AS TEXT) COLLATE BINARY = ? \
             ORDER BY \"age\" COLLATE BINARY DESC, \"id\" COLLATE BINARY DESC LIMIT ? OFFSET ?"
        );
        assert_eq!(
            params,
            vec![
                SqlValue::Integer(2),
                SqlValue::Text("Lé".into()),
                SqlValue::Text("x".into()),
                SqlValue::Integer(5),
                SqlValue::Integer(0),
            ]
        );
        let (sql, _) = list_sql("users", "id", &parse_list_query(&[], columns).unwrap());
        assert_eq!(
            sql,
            "SELECT * FROM \"users\" ORDER BY \"id\" COLLATE BINARY ASC LIMIT ? OFFSET ?"
        );
    }
}
