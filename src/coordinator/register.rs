//! Registration of filled entries, checked against the writes since their fill stamp
//! (invariant 3): a registration arriving after a write that touched the entry is refused and
//! the key invalidated, so no copy filled before that write is ever served.

use worker::SqlStorage;

use super::graph::Graph;
use super::object::TableCoordinator;
use super::semantics;
use super::store::{Store, StoreError};
use edgecache_core::freshness::ALL_KEYS;
use edgecache_core::key::CacheKey;
use edgecache_core::planner::{plan_write, InvalidationReason};
use edgecache_core::protocol::{RegisterRequest, RegisterResponse, Registration};
use edgecache_core::schema::Relation;
use edgecache_core::ApiError;

impl TableCoordinator {
    /// `POST /register`.
    pub(super) async fn register(
        &self,
        graph: &Graph<SqlStorage>,
        req: RegisterRequest,
    ) -> Result<RegisterResponse, ApiError> {
        let relation = self.relation(&self.table()?).await?;
        let cap = self.config()?.max_registrations;
        let resp = register(graph, &req.entries, &relation)?;
        evict_over_cap(graph, cap)?;
        Ok(resp)
    }
}

/// Evictions one registration call does at most; each call registers few keys, so this keeps
/// pace while bounding the work of one request.
const MAX_EVICTIONS_PER_CALL: usize = 64;

/// Forgets the least recently filled keys beyond `cap`, invalidating each at one new seq: a key
/// the coordinator no longer tracks would miss later writes, so its copies must not be served.
pub fn evict_over_cap<S: Store>(graph: &Graph<S>, cap: u64) -> Result<usize, StoreError> {
    let evicted = graph.over_cap(cap, MAX_EVICTIONS_PER_CALL)?;
    if evicted.is_empty() {
        return Ok(0);
    }
    let seq = graph.bump()?;
    for key in &evicted {
        graph.unregister(key)?;
        graph.invalidate(key, seq, InvalidationReason::Evicted)?;
    }
    Ok(evicted.len())
}

/// Registers each fresh entry and invalidates each late one, answering which were accepted.
/// Synchronous: the checks and the inserts are one atomic step against writes.
pub fn register<S: Store>(
    graph: &Graph<S>,
    entries: &[Registration],
    relation: &Relation,
) -> Result<RegisterResponse, StoreError> {
    let seq = graph.seq()?;
    let mut accepted = Vec::with_capacity(entries.len());
    for reg in entries {
        let ok = registration_is_fresh(graph, reg, seq, relation)?;
        if ok {
            graph.register(reg)?;
            semantics::observe(graph, reg, graph.opened_ms())?;
        } else {
            let at = graph.bump()?;
            graph.invalidate(&reg.key, at, InvalidationReason::LateRegistration)?;
        }
        accepted.push(ok);
    }
    Ok(RegisterResponse {
        seq: graph.seq()?,
        accepted,
    })
}

/// Whether an entry stamped `reg.stamp` is still fresh at `seq`: not stamped in the future,
/// not invalidated since (itself or the whole table), within the retained write log, and
/// untouched by every write the log holds since its stamp.
pub fn registration_is_fresh<S: Store>(
    graph: &Graph<S>,
    reg: &Registration,
    seq: u64,
    relation: &Relation,
) -> Result<bool, StoreError> {
    if reg.stamp > seq {
        return Ok(false);
    }
    let invalidated_since = |key: &str| -> Result<bool, StoreError> {
        Ok(graph
            .last_invalidation(key)?
            .is_some_and(|(at, _)| at > reg.stamp))
    };
    if invalidated_since(&reg.key)? || invalidated_since(ALL_KEYS)? {
        return Ok(false);
    }
    let Some(writes) = graph.writes_since(reg.stamp, &relation.name, &relation.id_column)? else {
        return Ok(false); // the log no longer reaches back to the stamp
    };
    let Ok(key) = CacheKey::parse(&reg.key) else {
        return Ok(false);
    };
    let (mut lists, mut views, mut opaque) = (Vec::new(), Vec::new(), Vec::new());
    reg.dependent
        .plan_into(key.clone(), &mut lists, &mut views, &mut opaque);
    for (_, write) in writes {
        let record_keys = if reg.records.contains(&write.id) {
            vec![key.clone()]
        } else {
            vec![]
        };
        // The log keeps no view rows, so a view's response is held stale after any write
        // since its stamp that changed a row.
        if !plan_write(&write, &record_keys, &lists, &views, &[], &opaque)
            .entries
            .is_empty()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::coordinator::fixtures::{
        self, graph, registration, rename, user_reg, users, view_reg, BORN,
    };

    fn accepted<S: Store>(graph: &Graph<S>, reg: &Registration) -> bool {
        let resp = register(graph, std::slice::from_ref(reg), &users()).unwrap();
        resp.accepted == [true]
    }

    #[test]
    fn past_the_cap_the_least_recently_filled_keys_are_forgotten_and_invalidated() {
        let g = graph();
        let ids: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        for id in &ids {
            assert!(accepted(&g, &user_reg(id, "Ann", BORN)));
        }
        // Refilling key 0 makes it the most recently filled.
        assert!(accepted(&g, &user_reg("0", "Ann", BORN)));
        assert_eq!(evict_over_cap(&g, 100).unwrap(), 0, "under the cap");
        let before = g.seq().unwrap();
        assert_eq!(evict_over_cap(&g, 4).unwrap(), 6);
        let kept: Vec<&String> = ids
            .iter()
            .filter(|id| {
                g.registration(&user_reg(id, "Ann", BORN).key)
                    .unwrap()
                    .is_some()
            })
            .collect();
        assert_eq!(kept, ["0", "7", "8", "9"], "the four most recently filled");
        for id in ["1", "6"] {
            let key = user_reg(id, "Ann", BORN).key;
            assert_eq!(
                g.last_invalidation(&key).unwrap(),
                Some((before + 1, InvalidationReason::Evicted)),
                "an evicted key is invalidated, so its copies are never served untracked"
            );
            assert!(g.keys_for_record(id).unwrap().is_empty());
        }
        assert_eq!(g.counts().unwrap().0, 4);
    }

    #[test]
    fn a_registration_with_no_write_since_its_stamp_is_accepted() {
        let g = graph();
        let reg = user_reg("1", "Ann", BORN);
        assert!(accepted(&g, &reg));
        assert_eq!(g.registration(&reg.key).unwrap(), Some(reg.clone()));
        assert_eq!(g.keys_for_record("1").unwrap(), vec![reg.key]);
    }

    #[test]
    fn a_late_registration_after_a_write_of_its_record_is_refused_and_invalidated() {
        let g = graph();
        let stamp = g.seq().unwrap();
        let written = fixtures::write(&g, &rename("1", "Ann", "Bea"));
        // The fill read Ann before the write; its registration arrives after it.
        let reg = user_reg("1", "Ann", stamp);
        let resp = register(&g, std::slice::from_ref(&reg), &users()).unwrap();
        assert_eq!(resp.accepted, vec![false]);
        assert!(resp.seq > written.seq);
        assert_eq!(g.registration(&reg.key).unwrap(), None);
        assert_eq!(
            g.last_invalidation(&reg.key).unwrap(),
            Some((resp.seq, InvalidationReason::LateRegistration))
        );
        let changes = g.changes_since(written.seq).unwrap();
        assert_eq!(changes.keys, vec![(reg.key, resp.seq)]);
    }

    #[test]
    fn a_write_of_another_record_leaves_a_late_registration_fresh() {
        let g = graph();
        let stamp = g.seq().unwrap();
        fixtures::write(&g, &rename("2", "Bob", "Carl"));
        assert!(accepted(&g, &user_reg("1", "Ann", stamp)));
    }

    #[test]
    fn a_late_list_registration_is_refused_only_if_a_write_could_change_the_list() {
        let g = graph();
        let stamp = g.seq().unwrap();
        fixtures::write(&g, &rename("2", "Bob", "Carl"));
        let lanes = registration("/v1/users?firstName=Lane", json!({"data": []}), stamp);
        assert!(accepted(&g, &lanes), "neither image is a Lane");
        let stamp = g.seq().unwrap();
        fixtures::write(&g, &rename("3", "Dora", "Lane"));
        let lanes = registration("/v1/users?firstName=Lane", json!({"data": []}), stamp);
        assert!(!accepted(&g, &lanes), "a new Lane lands in the list");
    }

    /// What keeps a view's refill by another table's coordinator from storing a copy a write
    /// of this table overtook: its registration here, stamped before that write, is refused.
    #[test]
    fn a_views_copy_stamped_before_a_write_of_this_table_is_refused() {
        let g = graph();
        let stamp = g.seq().unwrap();
        fixtures::write(&g, &rename("1", "Ann", "Bea"));
        assert!(!accepted(&g, &view_reg("1", stamp)));
        assert!(accepted(&g, &view_reg("1", g.seq().unwrap())));
    }

    #[test]
    fn a_stamp_from_the_future_is_refused() {
        let g = graph();
        assert!(!accepted(&g, &user_reg("1", "Ann", BORN + 1)));
    }

    #[test]
    fn a_stamp_before_a_table_wide_invalidation_is_refused() {
        let g = graph();
        let seq = g.bump().unwrap();
        g.invalidate_all(seq, InvalidationReason::Manual).unwrap();
        assert!(!accepted(&g, &user_reg("1", "Ann", seq - 1)));
        assert!(accepted(&g, &user_reg("2", "Bob", seq)));
    }

    #[test]
    fn the_log_floor_makes_stamps_before_the_retained_log_stale() {
        let g = graph();
        let old = g.seq().unwrap();
        // Logs of 16 invalidations and 16 writes: 40 writes of other records prune both.
        for i in 0..40 {
            let id = format!("w{i}");
            g.register(&user_reg(&id, "Ann", g.seq().unwrap())).unwrap();
            fixtures::write(&g, &rename(&id, "Ann", "Bea"));
            g.prune(16).unwrap();
        }
        // Record 1 was never written, but the log no longer shows what happened since `old`.
        assert!(!accepted(&g, &user_reg("1", "Ann", old)));
        let changes = g.changes_since(old).unwrap();
        assert!(
            changes.floor > old,
            "edges treat entries below the floor as stale"
        );
        assert!(changes.keys.iter().all(|(_, seq)| *seq > changes.floor));
    }

    #[test]
    fn registering_after_a_prune_is_accepted_and_still_invalidated_by_writes() {
        let g = graph();
        for i in 0..40 {
            fixtures::write(&g, &rename(&format!("w{i}"), "Ann", "Bea"));
            g.prune(64).unwrap();
        }
        let reg = user_reg("1", "Ann", g.seq().unwrap());
        assert!(accepted(&g, &reg));
        let written = fixtures::write(&g, &rename("1", "Ann", "Bea"));
        assert_eq!(written.invalidated, 1);
        assert_eq!(
            g.last_invalidation(&reg.key).unwrap(),
            Some((written.seq, InvalidationReason::RecordWritten))
        );
    }
}
