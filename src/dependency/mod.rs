//! The dependency core: everything EdgeCache needs to decide *what* a cached response is and
//! *which* cached responses a write makes stale — cache-key normalisation, route rules, list
//! queries and their SQL, a Rust mirror of that SQL's filtering and ordering, extraction of record
//! ids and list windows from responses, and the invalidation planner. It is pure Rust with no I/O
//! so that it compiles and is tested natively against a real SQLite; it must never import the
//! `worker` crate (the edge and the coordinator call into it, never the other way round).

#![warn(missing_docs)]

pub mod extract;
pub mod freshness;
pub mod key;
pub mod planner;
pub mod predicate;
pub mod query;
pub mod rules;
#[cfg(test)]
mod testdb;

/// A database row as D1 returns it: column name to JSON value.
pub type Row = serde_json::Map<String, serde_json::Value>;

pub use extract::{list_window, record_ids, ListWindow};
pub use key::{CacheKey, KeyError};
pub use planner::{
    list_index_term, plan_write, row_index_terms, row_unindexed_columns, InvalidationPlan,
    InvalidationReason, ListDependent, PlannedInvalidation, WriteImages,
};
pub use predicate::{cmp_rows, row_matches, sql_text, sqlite_cmp, Match, SqlText};
pub use query::{
    list_sql, parse_list_query, quote_ident, Filter, ListQuery, Order, QueryError, SqlValue,
};
pub use rules::{parse_duration, resolve, validate_pattern, RoutePolicy, RouteRule, RuleError};
