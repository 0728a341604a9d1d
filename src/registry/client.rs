//! The one way to call the registry object.

use edgecache_core::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{Env, Headers, Method};

use super::object::REGISTRY_NAME;

/// A call to the registry object.
pub async fn registry<B: Serialize, T: DeserializeOwned>(
    env: &Env,
    method: Method,
    path_and_query: &str,
    body: Option<&B>,
) -> Result<T, ApiError> {
    let stub = env.durable_object("REGISTRY")?.get_by_name(REGISTRY_NAME)?;
    crate::runtime::stub::call(
        stub,
        "registry",
        method,
        path_and_query,
        Headers::new(),
        body,
    )
    .await
}
