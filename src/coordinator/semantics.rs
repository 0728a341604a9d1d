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

/// Whether a write may be planned under learned semantics: only where its images place the
/// row before and after the write as the origin held it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnedPlanning {
    /// Every opaque list stays conservative: learning does not apply (`observe`, or no learning
    /// context), or the images cannot place the row (an update whose before image was not read
    /// or whose answer was not the row; a create answered with no row carrying its id).
    Off,
    /// The images are the record before and after the write (`None`: no row): an update or
    /// delete whose before image was read, or a create, whose before is `None` by definition.
    Images,
}

impl LearnedPlanning {
    /// What learned planning `op` allows, given the images the write produced
    /// ([`TableCoordinator::learned_write`] keeps a before image only when the answer is the
    /// same row). A create is a `POST` to the collection (no id in the path) whose answer is a
    /// row carrying its id; an id some cached response already shows is not new (the `POST`
    /// may have overwritten it), so that write is planned conservatively.
    pub fn of<S: Store>(
        graph: &Graph<S>,
        learn: Option<&LearnContext>,
        op: &WriteOp,
        images: &WriteImages,
    ) -> Result<LearnedPlanning, StoreError> {
        if !learning_applies(learn) {
            return Ok(LearnedPlanning::Off);
        }
        let placed = match op {
            WriteOp::Forward {
                method, id: None, ..
            } if method == "POST" => {
                let answered_id = images
                    .after
                    .as_ref()
                    .and_then(|row| column_value(row, &images.id_column))
                    .and_then(id_text);
                images.before.is_none()
                    && !images.id.is_empty()
                    && answered_id.as_deref() == Some(images.id.as_str())
                    && graph.keys_for_record(&images.id)?.is_empty()
            }
            _ => images.before.is_some(),
        };
        Ok(match placed {
            true => LearnedPlanning::Images,
            false => LearnedPlanning::Off,
        })
    }
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
        invalidate_spared(graph, &route, InvalidationReason::HypothesisRevoked)?;
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
    invalidate_spared(graph, route, InvalidationReason::HypothesisRevoked)
}

/// Invalidates, at one new seq, every key kept under `route` (a list route's learned semantics,
/// or a write route's learned write-through) since it was filled, for `reason` (its hypotheses
/// were revoked, or forgotten); answers how many.
pub(super) fn invalidate_spared<S: Store>(
    graph: &Graph<S>,
    route: &str,
    reason: InvalidationReason,
) -> Result<usize, StoreError> {
    let keys = graph.learned_spared(route)?;
    if keys.is_empty() {
        return Ok(0);
    }
    let seq = graph.bump()?;
    for key in &keys {
        graph.invalidate(key, seq, reason)?;
    }
    Ok(keys.len())
}

/// Moves the opaque entries whose list is fully learned from `opaque` to `lists`, so the
/// planner evaluates them; answers them with their routes. Only for images that place the row
/// ([`LearnedPlanning::Images`]): an update without its before image would look like an insert.
pub fn plan_learned<S: Store>(
    graph: &Graph<S>,
    images: &WriteImages,
    lists: &mut Vec<ListDependent>,
    opaque: &mut Vec<CacheKey>,
) -> Result<Vec<(CacheKey, String)>, StoreError> {
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

/// The hypotheses of every route of `table`, named, for stats: the list routes' and then the
/// write routes' (learned write-through, `answer_through`).
pub fn hypotheses<S: Store>(
    graph: &Graph<S>,
    table: &str,
) -> Result<Vec<RouteHypotheses>, StoreError> {
    let lists = graph
        .learned_routes()?
        .into_iter()
        .map(|(route, s)| RouteHypotheses::new(table, route, s.status()));
    Ok(lists
        .chain(answer_through::hypotheses(graph, table)?)
        .collect())
}

impl TableCoordinator {
    /// An HTTP origin's write, with its before image when learned planning can use it
    /// ([`TableCoordinator::before_image`]) and the origin's answer is the written row (same
    /// id, same fields), or the write deleted it: any other answer cannot say where the row
    /// went, so the write is planned conservatively. A create has no before image to read
    /// ([`LearnedPlanning::of`] decides whether its answer places the row).
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
    use edgecache_core::learned_ref::{LearnedKind, LearnedRef};
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

    /// Unsorted names, so that no page of two or more rows looks ordered by name both ways.
    const NAMES: [&str; 8] = ["q", "d", "x", "b", "m", "a", "z", "c"];

    /// `/v1/users?city=&limit=` for three cities and limits 2 to 5 over thirty users (city by
    /// id modulo 3, rows by id), registered and observed at one stamp: twelve full pages make
    /// `city` an equality on `city`, `limit` a page size and the id the default order.
    fn learned_city_pages(
        g: &Graph<crate::coordinator::store::memory::MemoryStore>,
    ) -> Vec<Registration> {
        let users: Vec<Value> = (0..30)
            .map(|i| {
                let city = ["a", "b", "c"][i % 3];
                json!({"id": format!("u{i:02}"), "city": city, "name": NAMES[i % 8]})
            })
            .collect();
        let mut regs = Vec::new();
        for city in ["a", "b", "c"] {
            for limit in 2..=5 {
                let rows: Vec<Value> = users
                    .iter()
                    .filter(|u| u["city"] == city)
                    .take(limit)
                    .cloned()
                    .collect();
                let params = [
                    ("city".to_string(), city.to_string()),
                    ("limit".to_string(), limit.to_string()),
                ];
                let reg = observed(&params, Value::Array(rows));
                g.register(&reg).unwrap();
                observe(g, &reg, 0).unwrap();
                regs.push(reg);
            }
        }
        regs
    }

    fn apply() -> LearnContext {
        LearnContext {
            siblings: Vec::new(),
            learning: edgecache_core::protocol::Learning::default(),
        }
    }

    fn post() -> WriteOp {
        WriteOp::Forward {
            method: "POST".into(),
            path: "/v1/users".into(),
            id: None,
            body: None,
            headers: Vec::new(),
        }
    }

    /// A create of `id` in `city`, as an HTTP origin's answer gives it.
    fn created(id: &str, city: &str) -> WriteImages {
        WriteImages {
            table: "users".into(),
            id: id.into(),
            id_column: "id".into(),
            before: None,
            after: Some(crate::coordinator::fixtures::row(
                json!({"id": id, "city": city, "name": "k"}),
            )),
        }
    }

    /// The pages (as `city=…&limit=…`) a plan stales.
    fn staled(plan: &InvalidationPlan, regs: &[Registration]) -> Vec<String> {
        regs.iter()
            .filter(|r| plan.reason_for(&CacheKey::parse(&r.key).unwrap()).is_some())
            .map(|r| {
                CacheKey::parse(&r.key)
                    .unwrap()
                    .query_pairs()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&")
            })
            .collect()
    }

    #[test]
    fn a_create_under_confident_semantics_stales_only_the_pages_its_row_joins() {
        let g = graph();
        let regs = learned_city_pages(&g);
        let confident: Vec<String> = hypotheses(&g, "users").unwrap()[0]
            .hypotheses
            .iter()
            .filter(|h| h.confident)
            .map(|h| format!("{:?} {}", h.param, h.kind.as_str()))
            .collect();
        assert_eq!(
            confident,
            [
                "None default_order",
                "Some(\"city\") equals",
                "Some(\"limit\") limit"
            ]
        );
        // u045 sorts between u04 and u05: in city b (u01, u04, u07…) it becomes the third row.
        let images = created("u045", "b");
        let learned = LearnedPlanning::of(&g, Some(&apply()), &post(), &images).unwrap();
        assert_eq!(learned, LearnedPlanning::Images);
        let candidates = g.candidate_keys(&[&images]).unwrap().remove(0);
        let (plan, spared) =
            crate::coordinator::write::plan_among(&g, &images, &candidates, &[], learned).unwrap();
        assert_eq!(
            staled(&plan, &regs),
            ["city=b&limit=3", "city=b&limit=4", "city=b&limit=5"],
            "the pages of its city it lands in; city b's first two rows and the other cities stay"
        );
        assert_eq!(
            spared.len(),
            12,
            "every page was planned under learned semantics"
        );
        record_spared(&g, &spared, &plan).unwrap();
        let route = route_of(&regs[0].key).unwrap();
        assert_eq!(g.learned_spared(&route).unwrap().len(), 9, "the kept pages");
        // A shadow miss on any of them revokes the route and invalidates the nine.
        assert_eq!(revoke(&g, &route, RevokeReason::ShadowMiss).unwrap(), 9);
        assert!(hypotheses(&g, "users").unwrap()[0]
            .hypotheses
            .iter()
            .all(|h| !h.confident));
    }

    #[test]
    fn a_forgotten_hypothesis_invalidates_what_its_route_kept_and_is_learned_again_only_anew() {
        let g = graph();
        let regs = learned_city_pages(&g);
        let route = route_of(&regs[0].key).unwrap();
        let plan_create = || {
            let images = created("u045", "b");
            let learned = LearnedPlanning::of(&g, Some(&apply()), &post(), &images).unwrap();
            let candidates = g.candidate_keys(&[&images]).unwrap().remove(0);
            crate::coordinator::write::plan_among(&g, &images, &candidates, &[], learned).unwrap()
        };
        let (plan, spared) = plan_create();
        record_spared(&g, &spared, &plan).unwrap();
        assert_eq!(g.learned_spared(&route).unwrap().len(), 9, "the kept pages");
        // `city equals city` under the name `learn status` shows.
        let city = |g: &Graph<_>| {
            hypotheses(g, "users").unwrap()[0]
                .hypotheses
                .iter()
                .find(|h| {
                    let equals = h.kind.as_str() == "equals";
                    equals
                        && h.param.as_deref() == Some("city")
                        && h.field.as_deref() == Some("city")
                })
                .cloned()
        };
        let named = city(&g).expect("learned");
        assert!(
            named.confident && named.id.starts_with("users:h"),
            "{named:?}"
        );
        let target = LearnedRef::parse(&named.id, LearnedKind::Hypothesis).unwrap();

        let answer = crate::coordinator::forget::forget_hypothesis(&g, &target).unwrap();
        assert_eq!(answer.invalidated, 9);
        assert_eq!(answer.forgotten[0].route, route);
        assert_eq!(answer.forgotten[0].hypotheses[0].id, named.id);
        let kept: Vec<&Registration> = regs
            .iter()
            .filter(|r| plan.reason_for(&CacheKey::parse(&r.key).unwrap()).is_none())
            .collect();
        for reg in &kept {
            assert_eq!(
                g.last_invalidation(&reg.key).unwrap().map(|(_, r)| r),
                Some(InvalidationReason::HypothesisForgotten),
                "{}",
                reg.key
            );
        }
        assert!(city(&g).is_none(), "gone from status");
        assert!(
            crate::coordinator::forget::forget_hypothesis(&g, &target)
                .unwrap()
                .forgotten
                .is_empty(),
            "nothing left to forget under that name"
        );

        // Filled again: `city` is unresolved, so the create stales every page it spared.
        for reg in &kept {
            g.register(reg).unwrap();
        }
        let (plan, spared) = plan_create();
        assert_eq!(staled(&plan, &regs).len(), 12, "every page");
        assert!(spared.iter().all(|(k, _)| !k.as_str().contains("city")));
        // Only responses observed from now on teach it again.
        for reg in &regs {
            observe(&g, reg, 5).unwrap();
        }
        assert_eq!(
            city(&g).map(|h| (h.id, h.confident)),
            Some((named.id, true))
        );
    }

    #[test]
    fn a_write_whose_images_cannot_place_the_row_stays_conservative() {
        let g = graph();
        let regs = learned_city_pages(&g);
        let off = |images: &WriteImages, op: &WriteOp, learn: Option<&LearnContext>| {
            let learned = LearnedPlanning::of(&g, learn, op, images).unwrap();
            assert_eq!(learned, LearnedPlanning::Off, "{op:?} {images:?}");
            let candidates = g.candidate_keys(&[images]).unwrap().remove(0);
            let (plan, spared) =
                crate::coordinator::write::plan_among(&g, images, &candidates, &[], learned)
                    .unwrap();
            assert!(spared.is_empty());
            assert_eq!(staled(&plan, &regs).len(), 12, "every page");
        };
        let images = created("u045", "b");
        // Learning in `observe`, or no learning context (the D1 origin's writes).
        let observe_only = LearnContext {
            learning: edgecache_core::protocol::Learning {
                mode: LearningMode::Observe,
                frozen: false,
            },
            ..apply()
        };
        off(&images, &post(), Some(&observe_only));
        off(&images, &post(), None);
        // An answer without the id, or with another one.
        let mut no_id = images.clone();
        no_id.after.as_mut().unwrap().remove("id");
        off(&no_id, &post(), Some(&apply()));
        let mut other = images.clone();
        other.id = "u046".into();
        off(&other, &post(), Some(&apply()));
        // An id some cached page shows already: the POST overwrote a known record.
        off(&created("u04", "b"), &post(), Some(&apply()));
        // An update whose before image was not read looks like a create, and is not one.
        let patch = WriteOp::Forward {
            method: "PATCH".into(),
            path: "/v1/users/u04".into(),
            id: Some("u04".into()),
            body: None,
            headers: Vec::new(),
        };
        let mut unread = created("u04x", "b");
        unread.id = "u04x".into();
        off(&unread, &patch, Some(&apply()));
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
