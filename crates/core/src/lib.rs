//! EdgeCache's pure core: everything that decides *what* a cached response is and *which*
//! cached responses a write makes stale, and the types every part of the system speaks.
//!
//! Cache keys and coordinator ids, the one URL codec, route rules, list queries and their SQL, a
//! Rust mirror of that SQL's filtering and ordering, extraction of record ids and list windows
//! from responses, the invalidation planner, edge views (freshness), cache entries and fill
//! registrations, the reasons enums, what a shared cache may store and variant keys, the wire types between edges, coordinators, the registry and
//! the CLI, configuration, and the error type with its one HTTP mapping.
//!
//! No I/O and no `worker` import (the layout check in `scripts/check-layout.mjs` keeps it so): it
//! compiles natively and is tested against a real SQLite. Everything else depends on it.

#![warn(missing_docs)]

pub mod access;
pub mod answer_through;
pub mod auth;
pub mod beta;
pub mod cache_control;
pub mod catalog;
pub mod codec;
pub mod config;
pub mod entry;
pub mod error;
pub mod explain;
pub mod extract;
pub mod fill;
pub mod freshness;
pub mod group_read;
pub mod invalidation;
pub mod key;
pub mod lag;
pub mod learned_ref;
pub mod learned_rules;
pub mod origin;
pub mod outcome;
pub mod planner;
pub mod predicate;
pub mod protocol;
pub mod query;
pub mod ratelimit;
pub mod relay;
pub mod route;
pub mod rules;
pub mod schema;
pub mod semantics;
pub mod shadow;
pub mod shared_cache;
#[cfg(test)]
mod testdb;
pub mod time;
pub mod timing;
pub mod token;
pub mod vary;
pub mod write_body;

/// A database row as D1 returns it: column name to JSON value.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// The text form of a scalar id value (`"7"` for `7`); `None` for anything that cannot be an id.
pub fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

pub use error::ApiError;
pub use key::{CacheKey, CoordinatorId, DataSource};
