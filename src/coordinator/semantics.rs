//! Learned query semantics in the coordinator (the inference itself is the core's
//! `edgecache_core::semantics`): registrations of HTTP origins' lists teach their route, a write
//! plans the lists whose every parameter is learned like a D1 list, and a revoked hypothesis
//! invalidates every key its route's learned plans kept.

use std::collections::BTreeMap;

use super::answer_through;
use super::graph::Graph;
use super::object::TableCoordinator;
use super::queue::PendingWrite;
use super::store::{Store, StoreError};
use crate::origin::http::HttpOrigin;
use crate::origin::Origin;
use crate::runtime::platform::now_ms;
use edgecache_core::id_text;
use edgecache_core::key::CacheKey;
use edgecache_core::origin::{OriginError, OriginWrite};
use edgecache_core::planner::{InvalidationPlan, InvalidationReason, ListDependent, WriteImages};
use edgecache_core::predicate::column_value;
use edgecache_core::protocol::{LearnContext, LearningMode, WriteOp};
use edgecache_core::protocol::{Registration, RouteHypotheses};
use edgecache_core::query::ListQuery;
use edgecache_core::ratelimit::Verdict;
use edgecache_core::schema::Relation;
use edgecache_core::semantics::{LearnedList, RouteSemantics};
use edgecache_core::Row;

/// Whether learned semantics may keep keys the conservative plan would invalidate: only for a
/// tenant whose learning mode is `apply` (in `observe` hypotheses are learned and shown, and
/// nothing is skipped). Writes without a learning context (the D1 origin's) learn nothing.
pub fn learning_applies(learn: Option<&LearnContext>) -> bool {
    learn.is_some_and(|l| l.learning.mode == LearningMode::Apply)
}

/// Largest learned state kept per route (a statement takes at most 100 KB).
const MAX_ROUTE_STATE_BYTES: usize = 48 * 1024;

/// Why a route's hypotheses are revoked from outside the responses themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// A shadow check found a key kept under the route's semantics changed.
    ShadowMiss,
}

/// The route a list key teaches: its path (`/v1/<table>`), shared by every tenant of the
/// data source.
pub(super) fn route_of(key: &str) -> Option<String> {
    CacheKey::parse(key).ok().map(|k| k.path().to_string())
}

/// Folds an accepted registration's observation into its route's semantics at `now_ms`; if
/// that revokes a hypothesis, every key kept under the route is invalidated at once.
pub fn observe<S: Store>(
    graph: &Graph<S>,
    reg: &Registration,
    now_ms: u64,
) -> Result<(), StoreError> {
    let (Some(obs), Some(route)) = (&reg.observation, route_of(&reg.key)) else {
        return Ok(());
    };
    let mut state = graph.route_semantics(&route)?.unwrap_or_default();
    let revoked = state.observe(obs, now_ms);
    let size = serde_json::to_string(&state).map_or(usize::MAX, |s| s.len());
    if !revoked.is_empty() || size > MAX_ROUTE_STATE_BYTES {
        invalidate_spared(graph, &route)?;
    }
    if size > MAX_ROUTE_STATE_BYTES {
        // Too much to keep in one statement: forget the route's learning (safe, since every
        // key kept under it was just invalidated) and start again.
        state = RouteSemantics::default();
    }
    graph.set_route_semantics(&route, &state)?;
    Ok(())
}

/// Revokes every confident hypothesis of `route` (the shadow branch calls it on a shadow miss)
/// and invalidates the keys kept under them; answers how many keys.
pub fn revoke<S: Store>(
    graph: &Graph<S>,
    route: &str,
    _reason: RevokeReason,
) -> Result<usize, StoreError> {
    let Some(mut state) = graph.route_semantics(route)? else {
        return Ok(0);
    };
    state.revoke_all();
    graph.set_route_semantics(route, &state)?;
    invalidate_spared(graph, route)
}

/// Invalidates, at one new seq, every key kept under `route` (a list route's learned semantics,
/// or a write route's learned write-through) since it was filled; answers how many.
pub(super) fn invalidate_spared<S: Store>(
    graph: &Graph<S>,
    route: &str,
) -> Result<usize, StoreError> {
    let keys = graph.learned_spared(route)?;
    if keys.is_empty() {
        return Ok(0);
    }
    let seq = graph.bump()?;
    for key in &keys {
        graph.invalidate(key, seq, InvalidationReason::HypothesisRevoked)?;
    }
    Ok(keys.len())
}

/// Moves the opaque entries whose list is fully learned from `opaque` to `lists`, so the
/// planner evaluates them; answers them with their routes. Only with both images of an update
/// or delete: without the before image a moved row would look like an insert.
pub fn plan_learned<S: Store>(
    graph: &Graph<S>,
    images: &WriteImages,
    lists: &mut Vec<ListDependent>,
    opaque: &mut Vec<CacheKey>,
) -> Result<Vec<(CacheKey, String)>, StoreError> {
    if images.before.is_none() {
        return Ok(Vec::new());
    }
    let mut routes: BTreeMap<String, Option<RouteSemantics>> = BTreeMap::new();
    let mut learned = Vec::new();
    let mut still_opaque = Vec::new();
    for key in opaque.drain(..) {
        let Some(list) = learned_list(graph, &key, &mut routes)?
            .filter(|(l, _)| images_show_fields(&l.query, images))
        else {
            still_opaque.push(key);
            continue;
        };
        learned.push((key.clone(), list.1));
        lists.push(ListDependent {
            key,
            query: list.0.query,
            window: Some(list.0.window),
        });
    }
    *opaque = still_opaque;
    Ok(learned)
}

/// Whether every image holds the fields the list filters and sorts by: a record whose
/// representation lacks one cannot be placed (a missing field would read as NULL).
fn images_show_fields(query: &ListQuery, images: &WriteImages) -> bool {
    let fields = query
        .filters
        .iter()
        .map(|f| f.column())
        .chain(query.order.as_ref().map(|o| o.column.as_str()))
        .chain([images.id_column.as_str()]);
    let images = [&images.before, &images.after];
    fields
        .flat_map(|f| images.iter().map(move |i| (f, i)))
        .all(|(f, image)| {
            image
                .as_ref()
                .is_none_or(|row| column_value(row, f).is_some())
        })
}

fn learned_list<S: Store>(
    graph: &Graph<S>,
    key: &CacheKey,
    routes: &mut BTreeMap<String, Option<RouteSemantics>>,
) -> Result<Option<(LearnedList, String)>, StoreError> {
    let Some(reg) = graph.registration(key.as_str())? else {
        return Ok(None);
    };
    let (Some(obs), Some(route)) = (reg.observation, route_of(key.as_str())) else {
        return Ok(None);
    };
    if !routes.contains_key(&route) {
        routes.insert(route.clone(), graph.route_semantics(&route)?);
    }
    let list = routes
        .get(&route)
        .and_then(Option::as_ref)
        .and_then(|s| s.learned_list(&obs));
    Ok(list.map(|l| (l, route)))
}

/// Records the learned lists `plan` keeps: they are invalidated if their route's semantics are
/// revoked.
pub fn record_spared<S: Store>(
    graph: &Graph<S>,
    learned: &[(CacheKey, String)],
    plan: &InvalidationPlan,
) -> Result<(), StoreError> {
    for (key, route) in learned {
        if plan.reason_for(key).is_none() {
            graph.add_learned_spared(route, key.as_str())?;
        }
    }
    Ok(())
}

/// Whether any route of the table has a confident hypothesis: only then is a write's before
/// image worth an origin read.
pub fn any_confident<S: Store>(graph: &Graph<S>) -> Result<bool, StoreError> {
    Ok(graph
        .learned_routes()?
        .iter()
        .any(|(_, s)| s.status().iter().any(|h| h.confident)))
}

/// The hypotheses of every route, for stats: the list routes' and then the write routes'
/// (learned write-through, `answer_through`).
pub fn hypotheses<S: Store>(graph: &Graph<S>) -> Result<Vec<RouteHypotheses>, StoreError> {
    let lists = graph
        .learned_routes()?
        .into_iter()
        .map(|(route, s)| RouteHypotheses {
            route,
            hypotheses: s.status(),
        });
    Ok(lists.chain(answer_through::hypotheses(graph)?).collect())
}

impl TableCoordinator {
    /// An HTTP origin's write, with its before image when learned planning can use it
    /// ([`TableCoordinator::before_image`]) and the origin's answer is the written row (same
    /// id, same fields), or the write deleted it: any other answer cannot say where the row
    /// went, so the write is planned conservatively.
    pub(super) async fn learned_write(
        &self,
        http: &HttpOrigin,
        relation: &Relation,
        pending: &PendingWrite,
    ) -> Result<OriginWrite, OriginError> {
        let before = self.before_image(http, pending).await;
        let mut write = http.write(relation, &pending.req.op).await?;
        let deleted =
            matches!(&pending.req.op, WriteOp::Forward { method, .. } if method == "DELETE");
        let same_row = |before: &Row| match &write.after {
            None => deleted,
            Some(after) => {
                column_value(after, &relation.id_column)
                    .and_then(id_text)
                    .as_deref()
                    == Some(write.id.as_str())
                    && before.keys().all(|k| after.contains_key(k))
                    && after.keys().all(|k| before.contains_key(k))
            }
        };
        write.before = before.filter(same_row);
        Ok(write)
    }

    /// A write's before image for learned planning: the record as the origin answers it now,
    /// read with the writer's headers before the write is forwarded, when some route of the
    /// table has a confident hypothesis, the write names a record it changes or deletes, and
    /// the tenant's before-image budget allows one more origin read. `None` otherwise (the write is
    /// then planned conservatively).
    pub(super) async fn before_image(
        &self,
        http: &HttpOrigin,
        pending: &PendingWrite,
    ) -> Option<Row> {
        let WriteOp::Forward {
            method,
            path,
            id: Some(_),
            headers,
            ..
        } = &pending.req.op
        else {
            return None;
        };
        if !learning_applies(pending.req.learn.as_ref())
            || !matches!(method.as_str(), "PUT" | "PATCH" | "DELETE")
        {
            return None;
        }
        let graph = self.graph().ok()?;
        if !any_confident(&graph).ok()? {
            return None;
        }
        let allowed = self
            .before_image_budget_check(&pending.tenant, now_ms())
            .ok()?;
        if !matches!(allowed, Verdict::Allowed) {
            return None;
        }
        http.read_record(path, headers).await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};

    use super::*;
    use crate::coordinator::fixtures::{graph, registration, BORN};
    use edgecache_core::semantics::observe_list;

    /// A registration of `/v1/users?<params>` showing `rows`, with its observation.
    fn observed(params: &[(String, String)], rows: Value) -> Registration {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let key = CacheKey::from_request("acme", "/v1/users", Some(&query.join("&"))).unwrap();
        let body = json!({ "data": rows });
        // An HTTP origin's list: its parameters are its own, unknown to any schema.
        Registration {
            key: key.as_str().to_string(),
            dependent: edgecache_core::protocol::Dependent::Opaque,
            observation: observe_list(key.query_pairs(), &body, "id", BORN),
            ..registration("/v1/users", body, BORN)
        }
    }

    #[test]
    fn a_route_state_too_large_to_keep_is_forgotten_and_its_kept_keys_invalidated() {
        let g = graph();
        let small = observed(
            &[("limit".into(), "2".into())],
            json!([{"id": "1"}, {"id": "2"}]),
        );
        g.register(&small).unwrap();
        observe(&g, &small, 0).unwrap();
        let route = route_of(&small.key).unwrap();
        assert!(g.route_semantics(&route).unwrap().is_some());
        g.add_learned_spared(&route, &small.key).unwrap();
        // Sixteen parameters over rows of thirty fields: hundreds of hypotheses.
        let params: Vec<(String, String)> =
            (0..16).map(|i| (format!("p{i:02}"), "v".into())).collect();
        let rows: Vec<Value> = (0..3)
            .map(|r| {
                let mut row: Map<String, Value> = (0..30)
                    .map(|f| (format!("f{f:02}"), json!(format!("{r}{f}"))))
                    .collect();
                row.insert("id".into(), json!(r.to_string()));
                Value::Object(row)
            })
            .collect();
        let wide = observed(&params, Value::Array(rows));
        assert!(wide.observation.is_some());
        observe(&g, &wide, 0).unwrap();
        assert_eq!(
            g.route_semantics(&route).unwrap(),
            Some(RouteSemantics::default()),
            "forgotten"
        );
        assert_eq!(
            g.last_invalidation(&small.key).unwrap().map(|(_, r)| r),
            Some(InvalidationReason::HypothesisRevoked)
        );
    }
}
