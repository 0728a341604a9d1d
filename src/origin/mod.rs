//! Origins: where data really lives. The embedded default is a REST API over a D1 database;
//! the other kind is the tenant's own HTTP API. What they are asked and how they fail is the
//! core's (`edgecache_core::origin`); this is how, behind one small trait, so the read path and
//! the coordinator never match on which origin a tenant has.

pub mod d1;
pub mod http;

use edgecache_core::key::CacheKey;
use edgecache_core::origin::{OriginError, OriginRead, OriginWrite, ReadTarget};
use edgecache_core::protocol::{OriginConfig, OriginHeader, WriteOp};
use edgecache_core::schema::Relation;
use worker::Env;

use self::d1::D1Origin;
use self::http::HttpOrigin;

/// What the edge and the coordinator ask of an origin.
#[allow(async_fn_in_trait)] // single-threaded runtime: no Send bound wanted
pub trait Origin {
    /// Reads what `key` names (`target` is its parsed form), sending the client's headers in
    /// `forward` along (an HTTP origin does; D1 ignores them: its answers never vary).
    async fn read(
        &self,
        relation: &Relation,
        target: &ReadTarget,
        key: &CacheKey,
        forward: &[OriginHeader],
    ) -> Result<OriginRead, OriginError>;

    /// Carries out a write, with the record's images where the origin can tell them.
    async fn write(&self, relation: &Relation, op: &WriteOp) -> Result<OriginWrite, OriginError>;
}

/// The origin a tenant's configuration names.
pub enum AnyOrigin {
    /// The deployment's D1 database.
    D1(D1Origin),
    /// The tenant's own HTTP API.
    Http(HttpOrigin),
}

impl AnyOrigin {
    /// Opens the origin `config` names (the D1 binding, or the HTTP API's base URL).
    pub fn open(env: &Env, config: &OriginConfig) -> Result<Self, OriginError> {
        match config {
            OriginConfig::D1 => Ok(AnyOrigin::D1(D1Origin::new(
                env.d1("DB")
                    .map_err(|e| OriginError::Unavailable(e.to_string()))?,
            ))),
            OriginConfig::Http { base_url, headers } => {
                Ok(AnyOrigin::Http(HttpOrigin::new(base_url, headers)))
            }
        }
    }
}

impl Origin for AnyOrigin {
    async fn read(
        &self,
        relation: &Relation,
        target: &ReadTarget,
        key: &CacheKey,
        forward: &[OriginHeader],
    ) -> Result<OriginRead, OriginError> {
        match self {
            AnyOrigin::D1(o) => o.read(relation, target, key, forward).await,
            AnyOrigin::Http(o) => o.read(relation, target, key, forward).await,
        }
    }

    async fn write(&self, relation: &Relation, op: &WriteOp) -> Result<OriginWrite, OriginError> {
        match self {
            AnyOrigin::D1(o) => o.write(relation, op).await,
            AnyOrigin::Http(o) => o.write(relation, op).await,
        }
    }
}
