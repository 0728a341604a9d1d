//! Invalidation by name (admin API, signed webhook, learned rules, shadow checks): exact keys,
//! a record's keys, prefixes, or the whole table, each at one new seq and with one reason
//! (`manual` from the admin API and webhook).

use worker::SqlStorage;

use super::graph::Graph;
use super::object::TableCoordinator;
use super::store::{Store, StoreError};
use super::write::StepContext;
use crate::runtime::platform::now_ms;
use edgecache_core::freshness::ALL_KEYS;
use edgecache_core::planner::InvalidationReason;
use edgecache_core::protocol::{InvalidateRequest, InvalidateResponse, Invalidated};
use edgecache_core::ApiError;

impl TableCoordinator {
    /// `POST /invalidate`: invalidates, then schedules the refills it queued.
    pub(super) async fn invalidate(
        &self,
        graph: &Graph<SqlStorage>,
        req: InvalidateRequest,
    ) -> Result<InvalidateResponse, ApiError> {
        let ctx = StepContext {
            now_ms: now_ms(),
            log_limit: self.config()?.invalidation_log,
        };
        let resp = invalidate(graph, &req, ctx, InvalidationReason::Manual)?;
        self.schedule_rehydrate(graph).await?;
        Ok(resp)
    }
}

/// Invalidates what `req` names at one new seq for `reason`, queueing refills for the keys
/// that get one.
pub fn invalidate<S: Store>(
    graph: &Graph<S>,
    req: &InvalidateRequest,
    ctx: StepContext,
    reason: InvalidationReason,
) -> Result<InvalidateResponse, StoreError> {
    let seq = graph.bump()?;
    let named = |key: String| Invalidated { key, reason };
    let mut invalidated = Vec::new();
    if req.all {
        graph.invalidate_all(seq, reason)?;
        invalidated.push(named(ALL_KEYS.to_string()));
    } else {
        for key in named_keys(graph, req)? {
            let reg = graph.registration(&key)?;
            graph.invalidate(&key, seq, reason)?;
            if let Some(reg) = reg.filter(|r| r.refills()) {
                graph.enqueue_rehydrate(&reg, ctx.now_ms)?;
            }
            invalidated.push(named(key));
        }
    }
    graph.prune(ctx.log_limit)?;
    Ok(InvalidateResponse { seq, invalidated })
}

/// The keys `req` names, each once: its exact keys, its records' keys and its prefixes' keys.
fn named_keys<S: Store>(
    graph: &Graph<S>,
    req: &InvalidateRequest,
) -> Result<Vec<String>, StoreError> {
    let mut keys: Vec<String> = req.keys.clone();
    for record in &req.records {
        keys.extend(graph.keys_for_record(record)?);
    }
    for prefix in &req.prefixes {
        keys.extend(graph.keys_with_prefix(prefix)?);
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::coordinator::fixtures::{ctx, graph, registration, user_reg, BORN};

    #[test]
    fn named_keys_records_and_prefixes_are_invalidated_once_and_refilled() {
        let g = graph();
        let ann = user_reg("1", "Ann", BORN);
        let bob = user_reg("2", "Bob", BORN);
        let list = registration("/v1/users?limit=5", json!({"data": []}), BORN);
        for reg in [&ann, &bob, &list] {
            g.register(reg).unwrap();
        }
        let req = InvalidateRequest {
            keys: vec![ann.key.clone()],
            records: vec!["1".into()],
            prefixes: vec!["acme:/v1/users?".into()],
            all: false,
        };
        let resp = invalidate(&g, &req, ctx(1000), InvalidationReason::Manual).unwrap();
        assert_eq!(resp.seq, BORN + 1);
        let mut keys: Vec<&str> = resp.invalidated.iter().map(|i| i.key.as_str()).collect();
        keys.sort();
        let mut expected = vec![ann.key.as_str(), list.key.as_str()];
        expected.sort();
        assert_eq!(keys, expected);
        assert!(resp
            .invalidated
            .iter()
            .all(|i| i.reason == InvalidationReason::Manual));
        assert_eq!(g.registration(&bob.key).unwrap(), Some(bob));
        assert_eq!(g.counts().unwrap(), (1, 2), "both refills queued");
    }

    #[test]
    fn all_invalidates_the_table_at_one_seq() {
        let g = graph();
        g.register(&user_reg("1", "Ann", BORN)).unwrap();
        let req = InvalidateRequest {
            all: true,
            ..InvalidateRequest::default()
        };
        let resp = invalidate(&g, &req, ctx(1000), InvalidationReason::Manual).unwrap();
        assert_eq!(resp.invalidated.len(), 1);
        assert_eq!(resp.invalidated[0].key, ALL_KEYS);
        assert_eq!(
            g.last_invalidation(ALL_KEYS).unwrap(),
            Some((resp.seq, InvalidationReason::Manual))
        );
        assert_eq!(g.counts().unwrap(), (0, 0));
    }
}
