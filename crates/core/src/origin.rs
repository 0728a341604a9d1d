//! What the edge and the coordinator ask of an origin and what can go wrong, independent of
//! which origin it is (the built-in D1 database or the tenant's own HTTP API).

use thiserror::Error;

use crate::error::ApiError;
use crate::key::CacheKey;
use crate::outcome::NotStored;
use crate::protocol::OriginConfig;
use crate::query::{parse_list_query, ListQuery, QueryError};
use crate::route::Resource;
use crate::schema::Relation;

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
    /// Why this answer may not be stored whatever its headers say (not JSON), if so.
    pub not_storable: Option<NotStored>,
    /// The origin's `Cache-Control` (`None` from D1, which allows everything).
    pub cache_control: Option<String>,
    /// The origin's `Vary` (`None` from D1, whose answers never vary).
    pub vary: Option<String>,
}

/// A write as the origin carried it out: what the planner needs (the record's images) and what
/// the client gets.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginWrite {
    /// Whether the origin changed anything (a 4xx answer changes nothing).
    pub changed: bool,
    /// Status for the client.
    pub status: u16,
    /// The record written.
    pub id: String,
    /// The record before the write, when the origin can tell (D1); `None` for a create.
    pub before: Option<crate::Row>,
    /// The record after the write; `None` for a delete.
    pub after: Option<crate::Row>,
    /// The rows of views bound to the table that the write touched, read before and after it
    /// in its transaction (D1; none from an HTTP origin, so every view key is stale).
    pub views: Vec<crate::planner::ViewChanges>,
    /// The body for the client (`Null`: none).
    pub body: serde_json::Value,
}

/// Why an origin call failed. Mapped to HTTP in `error`.
#[derive(Debug, Clone, Error)]
#[allow(missing_docs)] // each variant's #[error] text is its documentation
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

/// What a GET asks for, with its query validated against the relation's columns (D1), or
/// passed through as it is (HTTP origins, whose columns EdgeCache does not know).
pub fn read_target(
    origin: &OriginConfig,
    relation: &Relation,
    resource: &Resource,
    key: &CacheKey,
) -> Result<ReadTarget, ApiError> {
    match (&resource.id, origin) {
        (Some(id), OriginConfig::Http { .. }) => Ok(ReadTarget::Record(id.clone())),
        (None, OriginConfig::Http { .. }) => Ok(ReadTarget::Opaque),
        (Some(id), OriginConfig::D1) => {
            if !key.query_pairs().is_empty() {
                return Err(ApiError::new(
                    400,
                    "bad_request",
                    "a record read takes no query parameters",
                ));
            }
            Ok(ReadTarget::Record(id.clone()))
        }
        (None, OriginConfig::D1) => Ok(ReadTarget::List(parse_list_query(
            key.query_pairs(),
            |c| relation.has_column(c),
        )?)),
    }
}
