//! An operator's `learn forget` of hypotheses and dependency candidates: one (by the name
//! `learn status` shows), or everything a table learned, at once and without waiting for a
//! counter-example (the API changed what a parameter means). Safe under the rule learning lives
//! by: every key kept or written through under a forgotten hypothesis and not replaced since is
//! invalidated through the revocation's own path (`semantics::invalidate_spared`, reason
//! `HypothesisForgotten`), and what is forgotten is learned again only from new evidence.
//! Forgetting one rule is `Graph::forget_rule`: a rule only adds invalidations, so forgetting it
//! invalidates nothing; nor does forgetting a candidate, which no plan ever used.

use super::graph::Graph;
use super::semantics::invalidate_spared;
use super::store::{Store, StoreError};
use edgecache_core::learned_ref::LearnedRef;
use edgecache_core::planner::InvalidationReason;
use edgecache_core::protocol::{
    CandidateView, ForgottenCandidates, ForgottenHypotheses, ForgottenLearning, RouteHypotheses,
};
use edgecache_core::semantics::HypothesisStatus;

const REASON: InvalidationReason = InvalidationReason::HypothesisForgotten;

/// Forgets the hypotheses named `target` (one, unless two of the table share the name) and
/// invalidates every key kept under their routes: the keys are recorded per route, not per
/// hypothesis, so a route's every kept key goes (more than needed is safe). Nothing named so:
/// an empty `forgotten`.
pub fn forget_hypothesis<S: Store>(
    graph: &Graph<S>,
    target: &LearnedRef,
) -> Result<ForgottenHypotheses, StoreError> {
    let named = |route: &str, h: &HypothesisStatus| {
        LearnedRef::hypothesis(&target.table, route, &h.hypothesis()) == *target
    };
    let mut forgotten = Vec::new();
    let mut invalidated = 0;
    for (route, mut state) in graph.learned_routes()? {
        let matching: Vec<HypothesisStatus> = state
            .status()
            .into_iter()
            .filter(|h| named(&route, h))
            .collect();
        if matching.is_empty() {
            continue;
        }
        for h in &matching {
            state.forget(&h.hypothesis());
        }
        graph.set_route_semantics(&route, &state)?;
        invalidated += invalidate_spared(graph, &route, REASON)?;
        forgotten.push(RouteHypotheses::new(&target.table, route, matching));
    }
    for (pattern, hypothesis) in graph.answer_hypotheses()? {
        let status = hypothesis.status();
        if !named(&pattern, &status) {
            continue;
        }
        graph.forget_answer_hypothesis(&pattern)?;
        invalidated += invalidate_spared(graph, &pattern, REASON)?;
        forgotten.push(RouteHypotheses::new(&target.table, pattern, vec![status]));
    }
    Ok(ForgottenHypotheses {
        id: target.to_string(),
        forgotten,
        invalidated: invalidated as u64,
        seq: graph.seq()?,
    })
}

/// Forgets the evidence of the dependency candidates named `target` (one, unless two of the
/// table share the name), so each is learned again only from new evidence. Nothing else
/// changes: a candidate is not a rule, so no plan used it and no key was kept or invalidated
/// under it; a rule's dependency is not a candidate (`learn forget` of the rule forgets its
/// evidence). Nothing named so: an empty `forgotten`.
pub fn forget_candidate<S: Store>(
    graph: &Graph<S>,
    target: &LearnedRef,
) -> Result<ForgottenCandidates, StoreError> {
    let mut forgotten = Vec::new();
    for (dependency, evidence) in graph.candidates()? {
        if LearnedRef::candidate(&target.table, &dependency) == *target {
            graph.forget_evidence(&dependency)?;
            forgotten.push(CandidateView::new(&target.table, &dependency, evidence));
        }
    }
    Ok(ForgottenCandidates {
        id: target.to_string(),
        forgotten,
        seq: graph.seq()?,
    })
}

/// Forgets everything `table`'s coordinator learned: its rules and dependency evidence, its
/// list routes' semantics and its write routes' write-through, with every key kept under any
/// of them invalidated. Shadow counts stay: they measure the plans made, they are not learning.
pub fn forget_all<S: Store>(
    graph: &Graph<S>,
    table: &str,
) -> Result<ForgottenLearning, StoreError> {
    let semantics: usize = graph
        .learned_routes()?
        .iter()
        .map(|(_, state)| state.status().len())
        .sum::<usize>()
        + graph.answer_hypotheses()?.len();
    let (rules, candidates) = graph.forget_rules()?;
    let mut invalidated = 0;
    for route in graph.spared_routes()? {
        invalidated += invalidate_spared(graph, &route, REASON)?;
    }
    graph.forget_semantics()?;
    Ok(ForgottenLearning {
        table: table.to_string(),
        rules,
        hypotheses: candidates + semantics as u64,
        invalidated: invalidated as u64,
        seq: graph.seq()?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::coordinator::fixtures::{graph, registration, user_reg, BORN};
    use edgecache_core::answer_through::{AnswerHypothesis, PendingAnswer};
    use edgecache_core::key::CacheKey;
    use edgecache_core::learned_rules::{Dependency, Evidence, RuleTarget, Verdict};
    use edgecache_core::semantics::{observe_list, RouteSemantics};

    /// A dependency of `users` on writes of `write_table`.
    fn dependency(write_table: &str) -> Dependency {
        Dependency {
            write_table: write_table.into(),
            write_pattern: format!("POST /v1/{write_table}"),
            target_table: "users".into(),
            target: RuleTarget::Table,
        }
    }

    #[test]
    fn forgetting_a_candidate_forgets_exactly_its_evidence_and_invalidates_nothing() {
        let g = graph();
        // A rule (with its evidence) and two candidates, one also contradicted.
        let e = g
            .count_evidence(&dependency("orders"), Verdict::Supports, 5)
            .unwrap();
        g.add_rule(&dependency("orders"), e, 5).unwrap();
        for verdict in [Verdict::Supports, Verdict::Supports, Verdict::Contradicts] {
            g.count_evidence(&dependency("carts"), verdict, 6).unwrap();
        }
        g.count_evidence(&dependency("wishes"), Verdict::Supports, 7)
            .unwrap();
        let seq = g.seq().unwrap();
        let carts = LearnedRef::candidate("users", &dependency("carts"));

        let gone = forget_candidate(&g, &carts).unwrap();
        let was = Evidence {
            support: 2,
            counter: 1,
            first_seen_ms: 6,
            last_seen_ms: 6,
        };
        assert_eq!(
            gone,
            ForgottenCandidates {
                id: carts.to_string(),
                forgotten: vec![CandidateView::new("users", &dependency("carts"), was)],
                seq,
            }
        );
        assert!(gone.forgotten[0].id.starts_with("users:c"), "{gone:?}");
        let left: Vec<Dependency> = g.evidence().unwrap().into_iter().map(|(d, _)| d).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&dependency("orders")) && left.contains(&dependency("wishes")));
        assert_eq!(g.rules().unwrap().len(), 1);
        assert_eq!(g.seq().unwrap(), seq, "nothing invalidated");

        // Gone once, and a rule's dependency is not a candidate: nothing under either name.
        assert!(forget_candidate(&g, &carts).unwrap().forgotten.is_empty());
        let rule = LearnedRef::candidate("users", &dependency("orders"));
        assert!(forget_candidate(&g, &rule).unwrap().forgotten.is_empty());
        assert_eq!(g.evidence().unwrap().len(), 2, "the rule's evidence stays");
        // Learned again only from new evidence.
        let again = g
            .count_evidence(&dependency("carts"), Verdict::Supports, 8)
            .unwrap();
        assert_eq!((again.support, again.counter), (1, 0));
    }

    #[test]
    fn forgetting_a_table_forgets_every_kind_of_learning_and_invalidates_what_it_kept() {
        let g = graph();
        // A rule and a dependency candidate short of one.
        let e = g
            .count_evidence(&dependency("orders"), Verdict::Supports, 5)
            .unwrap();
        g.add_rule(&dependency("orders"), e, 5).unwrap();
        g.count_evidence(&dependency("carts"), Verdict::Supports, 5)
            .unwrap();
        // A list route's semantics with a page kept under them.
        let list = registration("/v1/users?limit=2", json!({"data": []}), BORN);
        g.register(&list).unwrap();
        let rows = json!({"data": [{"id": "1", "name": "a"}, {"id": "2", "name": "b"}]});
        let key = CacheKey::parse(&list.key).unwrap();
        let obs = observe_list(key.query_pairs(), &rows, "id", BORN).unwrap();
        let mut state = RouteSemantics::default();
        state.observe(&obs, 0);
        let list_hypotheses = state.status().len() as u64;
        assert!(list_hypotheses > 0);
        g.set_route_semantics("/v1/users", &state).unwrap();
        g.add_learned_spared("/v1/users", &list.key).unwrap();
        // A write route's write-through with a record written through and its answer waiting.
        let pattern = "PATCH /v1/users/{id}";
        let mut answer = AnswerHypothesis::default();
        answer.count(Verdict::Supports, 5);
        g.set_answer_hypothesis(pattern, &answer).unwrap();
        let record = user_reg("1", "Ann", BORN);
        g.register(&record).unwrap();
        g.add_learned_spared(pattern, &record.key).unwrap();
        let pending = PendingAnswer {
            record: "1".into(),
            pattern: pattern.into(),
            seq: 1,
            digest: "d".into(),
            foreign: 0,
        };
        g.set_pending_answer(&record.key, &pending).unwrap();

        let gone = forget_all(&g, "users").unwrap();
        assert_eq!(
            gone,
            ForgottenLearning {
                table: "users".into(),
                rules: 1,
                hypotheses: 1 + list_hypotheses + 1,
                invalidated: 2,
                seq: g.seq().unwrap(),
            }
        );
        for key in [&list.key, &record.key] {
            assert_eq!(
                g.last_invalidation(key).unwrap().map(|(_, r)| r),
                Some(REASON),
                "{key}"
            );
        }
        assert!(g.rules().unwrap().is_empty() && g.evidence().unwrap().is_empty());
        assert!(g.learned_routes().unwrap().is_empty());
        assert!(g.answer_hypotheses().unwrap().is_empty());
        assert!(g.pending_answer(&record.key).unwrap().is_none());
        assert!(g.spared_routes().unwrap().is_empty());
    }
}
