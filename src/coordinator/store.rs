//! The SQL a coordinator's graph runs, behind one small trait: the object's SQLite
//! (`worker::SqlStorage`) in production, and an in-memory SQLite (`rusqlite`) in native tests,
//! so the graph and the coordinator's synchronous steps are tested without the runtime.

use serde::de::DeserializeOwned;
use worker::{SqlStorage, SqlStorageValue};

/// A value bound to a `?` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// SQL NULL.
    Null,
    /// An INTEGER.
    Integer(i64),
    /// A TEXT.
    Text(String),
}

impl From<u64> for Param {
    fn from(v: u64) -> Self {
        Param::Integer(v as i64)
    }
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Integer(v)
    }
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(v.to_string())
    }
}

impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        v.map_or(Param::Null, Param::Text)
    }
}

/// A statement the store could not run, or a row it could not read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl From<worker::Error> for StoreError {
    fn from(e: worker::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// Synchronous SQL over one database. Statements run with no `.await` between them are
/// atomic in a Durable Object, which is what the graph relies on; there is no transaction API.
pub trait Store {
    /// Runs a statement and reads every row it returns (numbers as SQLite gives them; the
    /// graph's row types read them as `f64`, as the object's storage hands them over).
    fn exec<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Vec<T>, StoreError>;

    /// Runs a statement whose rows, if any, are not wanted.
    fn run(&self, sql: &str, params: Vec<Param>) -> Result<(), StoreError>;
}

impl From<Param> for SqlStorageValue {
    fn from(p: Param) -> Self {
        match p {
            Param::Null => SqlStorageValue::Null,
            Param::Integer(i) => SqlStorageValue::Integer(i),
            Param::Text(s) => SqlStorageValue::String(s),
        }
    }
}

fn bindings(params: Vec<Param>) -> Vec<SqlStorageValue> {
    params.into_iter().map(SqlStorageValue::from).collect()
}

/// The Durable Object's own SQLite.
impl Store for SqlStorage {
    fn exec<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Vec<T>, StoreError> {
        // Never `SqlCursor::one()`: it throws on zero rows and kills the instance.
        Ok(SqlStorage::exec(self, sql, bindings(params))?.to_array()?)
    }

    fn run(&self, sql: &str, params: Vec<Param>) -> Result<(), StoreError> {
        SqlStorage::exec(self, sql, bindings(params))?;
        Ok(())
    }
}

#[cfg(test)]
pub mod memory {
    //! An in-memory SQLite store for native tests.

    use rusqlite::types::{Value, ValueRef};
    use rusqlite::Connection;
    use serde::de::DeserializeOwned;

    use super::{Param, Store, StoreError};

    /// A fresh in-memory database.
    pub struct MemoryStore(Connection);

    /// An empty database.
    impl Default for MemoryStore {
        fn default() -> Self {
            MemoryStore(Connection::open_in_memory().expect("in-memory SQLite"))
        }
    }

    fn err(e: impl std::fmt::Display) -> StoreError {
        StoreError(e.to_string())
    }

    fn value(p: Param) -> Value {
        match p {
            Param::Null => Value::Null,
            Param::Integer(i) => Value::Integer(i),
            Param::Text(s) => Value::Text(s),
        }
    }

    fn json(v: ValueRef<'_>) -> serde_json::Value {
        match v {
            ValueRef::Null => serde_json::Value::Null,
            ValueRef::Integer(i) => i.into(),
            ValueRef::Real(f) => f.into(),
            ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
            ValueRef::Blob(b) => b.to_vec().into(),
        }
    }

    impl Store for MemoryStore {
        fn exec<T: DeserializeOwned>(
            &self,
            sql: &str,
            params: Vec<Param>,
        ) -> Result<Vec<T>, StoreError> {
            let mut stmt = self.0.prepare(sql).map_err(err)?;
            let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
            let params = rusqlite::params_from_iter(params.into_iter().map(value));
            let mut rows = stmt.query(params).map_err(err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(err)? {
                let mut obj = serde_json::Map::new();
                for (i, name) in names.iter().enumerate() {
                    obj.insert(name.clone(), json(row.get_ref(i).map_err(err)?));
                }
                out.push(serde_json::from_value(obj.into()).map_err(err)?);
            }
            Ok(out)
        }

        fn run(&self, sql: &str, params: Vec<Param>) -> Result<(), StoreError> {
            self.exec::<serde::de::IgnoredAny>(sql, params).map(drop)
        }
    }
}
