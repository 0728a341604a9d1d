//! Origins: where data really lives. The embedded default is a REST API over a D1 database;
//! the other kind is the tenant's own HTTP API.

pub mod body;
pub mod catalog;
pub mod d1;
pub mod http;
pub mod schema;

use thiserror::Error;

use crate::dependency::query::{ListQuery, QueryError};

/// What a read asks of a relation.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadTarget {
    /// `GET /v1/<relation>?…`
    List(ListQuery),
    /// `GET /v1/<relation>/<id>`
    Record(String),
    /// A list of an HTTP origin: its query is passed through, and the planner cannot reason
    /// about it (every write of the table stales it).
    Opaque,
}

/// What an origin read produced.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginRead {
    /// Status for the client (200 from D1; the origin's own for HTTP).
    pub status: u16,
    /// Body bytes as served.
    pub body: Vec<u8>,
    /// The body parsed (`Null` if it is not JSON), for dependency extraction.
    pub json: serde_json::Value,
    /// `content-type` for the client.
    pub content_type: String,
    /// Why the origin does not let this answer be stored, if it does not.
    pub not_storable: Option<&'static str>,
}

/// Why an origin call failed. Mapped to HTTP in `router::error`.
#[derive(Debug, Error)]
pub enum OriginError {
    #[error("no table or view named `{0}`")]
    UnknownRelation(String),
    #[error("`{0}` is a view; views are read-only")]
    ReadOnlyView(String),
    #[error("no record `{id}` in `{relation}`")]
    NotFound { relation: String, id: String },
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("{0}")]
    BadBody(String),
    #[error("unknown column `{column}` in `{relation}`")]
    UnknownColumn { relation: String, column: String },
    #[error("the body is larger than {max} bytes")]
    BodyTooLarge { max: usize },
    #[error("a record `{id}` already exists in `{relation}`")]
    Conflict { relation: String, id: String },
    #[error("the database rejected the write: {0}")]
    Constraint(String),
    #[error("the origin failed: {0}")]
    Unavailable(String),
    #[error("the origin did not answer within {0} ms")]
    Timeout(u64),
}
