//! Learned write-through in the coordinator (the hypothesis and what counts as evidence are the
//! core's `edgecache_core::answer_through`): an HTTP write whose answer is the record leaves
//! that answer's digest for the record key's next refetch (a refill, or a shadow check) to be
//! compared with; a write route whose answers are confidently the record's `GET` has its
//! record key written through from the answer, as the D1 origin's is from its after image,
//! while one write in four is still verified; a counter-example revokes the route and
//! invalidates every key written through under it that no refetch has replaced since.

use super::graph::Graph;
use super::semantics::{invalidate_spared, learning_applies};
use super::store::{Store, StoreError};
use super::write::own_record_key;
use edgecache_core::answer_through::{answers_record, compare, Comparison, PendingAnswer, Since};
use edgecache_core::key::CacheKey;
use edgecache_core::origin::OriginWrite;
use edgecache_core::planner::{InvalidationReason, WriteImages};
use edgecache_core::protocol::{LearnContext, Registration, RouteHypotheses, WriteOp};
use edgecache_core::schema::Relation;
use edgecache_core::shadow::body_digest;

/// Whether a write of route `pattern` is written through from its answer: the tenant applies
/// what it learns, its learning is not frozen (a frozen tenant's writes are not verified, so
/// nothing may rest on a hypothesis about them) and the route's hypothesis is confident.
pub fn writes_through<S: Store>(
    graph: &Graph<S>,
    pattern: &str,
    learn: Option<&LearnContext>,
) -> Result<bool, StoreError> {
    if !learning_applies(learn) || learn.is_some_and(|l| l.learning.frozen) {
        return Ok(false);
    }
    Ok(graph
        .answer_hypothesis(pattern)?
        .is_some_and(|h| h.confident()))
}

/// The digest of an HTTP write's answer, where a refetch of the record can be compared with it
/// (`answers_record`) and the tenant learns (an HTTP origin, learning not frozen).
pub fn answer_digest(
    op: &WriteOp,
    learn: Option<&LearnContext>,
    forwarded: &OriginWrite,
    id_column: &str,
) -> Option<String> {
    let WriteOp::Forward { method, .. } = op else {
        return None;
    };
    let learns = learn.is_some_and(|l| !l.learning.frozen);
    let comparable = answers_record(
        method,
        forwarded.status,
        (&forwarded.id, id_column),
        forwarded.after.as_ref(),
    );
    (learns && comparable).then(|| body_digest(&forwarded.body))
}

/// The written record's own keys a refetch of which says what its `GET` answers, as registered
/// before the write is recorded (recording forgets the invalidated ones): refillable ones only.
pub fn own_keys<S: Store>(
    graph: &Graph<S>,
    relation: &Relation,
    images: &WriteImages,
) -> Result<Vec<CacheKey>, StoreError> {
    let mut out = Vec::new();
    for key in graph.keys_for_record(&images.id)? {
        let (Ok(parsed), Some(reg)) = (CacheKey::parse(&key), graph.registration(&key)?) else {
            continue;
        };
        if reg.refills() && own_record_key(&parsed, &reg, relation, images) {
            out.push(parsed);
        }
    }
    Ok(out)
}

/// After an HTTP write of `record` at `seq` is recorded (the same synchronous step): earlier
/// answers of the record are dropped (their refetches would show this write), and where the
/// write's `answer` (route pattern, digest) is comparable, each of `own` written through is
/// recorded as kept under the route (invalidated if it is revoked) and the answer is left for
/// the refetch of each own key that will come: its refill when it was invalidated, a
/// verification check when it was written through and `verify` picks it. Answers the
/// written-through registrations to verify.
pub fn note_answer<S: Store>(
    graph: &Graph<S>,
    (record, seq): (&str, u64),
    answer: Option<(&str, &str)>,
    own: &[CacheKey],
    verify: bool,
) -> Result<Vec<Registration>, StoreError> {
    graph.drop_pending_answers(record)?;
    let Some((pattern, digest)) = answer else {
        return Ok(Vec::new());
    };
    let pending = PendingAnswer {
        record: record.to_string(),
        pattern: pattern.to_string(),
        seq,
        digest: digest.to_string(),
        foreign: graph.writes_mark()?.1,
    };
    let mut to_verify = Vec::new();
    for key in own {
        let written_through = graph
            .registration(key.as_str())?
            .filter(|reg| reg.stamp == seq);
        if let Some(reg) = written_through {
            graph.add_learned_spared(pattern, key.as_str())?;
            if !verify {
                continue;
            }
            to_verify.push(reg);
        }
        graph.set_pending_answer(key.as_str(), &pending)?;
    }
    Ok(to_verify)
}

/// A refetch of `key` stamped `read_stamp` whose body has digest `fetched` (`None`: not
/// comparable), at `now_ms`: compared with the answer waiting for it, if any, and counted. A
/// counter-example revokes the route's hypothesis and invalidates every key written through
/// under it since (`semantics::invalidate_spared`, the mechanism revoked list semantics use);
/// answers how many keys.
pub fn compare_refetch<S: Store>(
    graph: &Graph<S>,
    key: &str,
    read_stamp: u64,
    fetched: Option<&str>,
    now_ms: u64,
) -> Result<usize, StoreError> {
    let (Some(pending), Some(fetched)) = (graph.pending_answer(key)?, fetched) else {
        return Ok(0);
    };
    let since = Since {
        read_stamp,
        foreign: graph.writes_mark()?.1,
        record_in_flight: graph.intent_open(&pending.record)?,
    };
    let verdict = match compare(&pending, since, fetched) {
        Comparison::Wait => return Ok(0),
        Comparison::Void => return graph.drop_pending_answer(key).map(|()| 0),
        Comparison::Evidence(verdict) => verdict,
    };
    graph.drop_pending_answer(key)?;
    let mut hypothesis = graph
        .answer_hypothesis(&pending.pattern)?
        .unwrap_or_default();
    let refuted = hypothesis.count(verdict, now_ms);
    graph.set_answer_hypothesis(&pending.pattern, &hypothesis)?;
    match refuted {
        true => invalidate_spared(
            graph,
            &pending.pattern,
            InvalidationReason::HypothesisRevoked,
        ),
        false => Ok(0),
    }
}

/// Each write route's hypothesis in `table`, named, for stats (`learn status` lists them with
/// the list routes').
pub fn hypotheses<S: Store>(
    graph: &Graph<S>,
    table: &str,
) -> Result<Vec<RouteHypotheses>, StoreError> {
    Ok(graph
        .answer_hypotheses()?
        .into_iter()
        .map(|(route, h)| RouteHypotheses::new(table, route, vec![h.status()]))
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::coordinator::fixtures::{ctx, graph, registration, rename, users, BORN};
    use crate::coordinator::store::memory::MemoryStore;
    use crate::coordinator::write::{plan, record, Through};
    use edgecache_core::answer_through::CONFIDENT_AGREEMENTS;
    use edgecache_core::learned_ref::{LearnedKind, LearnedRef};
    use edgecache_core::protocol::{Learning, LearningMode};

    const PATTERN: &str = "PATCH /v1/users/{id}";

    fn learn(mode: LearningMode) -> LearnContext {
        LearnContext {
            siblings: Vec::new(),
            learning: Learning {
                mode,
                frozen: false,
            },
        }
    }

    fn answer(name: &str) -> Value {
        json!({"data": {"id": "1", "firstName": name, "age": 30}})
    }

    /// An HTTP write renaming user 1 to `name`, answered with the record, recorded as the
    /// coordinator records it (written through when the route is confident in `mode`); answers
    /// the key, the write's seq and the registrations to verify (`verify`).
    fn patch(
        g: &Graph<MemoryStore>,
        name: &str,
        mode: LearningMode,
        verify: bool,
    ) -> (String, u64, Vec<Registration>) {
        let relation = users();
        let images = rename("1", "Ann", name);
        let body = answer(name);
        let through = writes_through(g, PATTERN, Some(&learn(mode)))
            .unwrap()
            .then_some(Through::Answer(&relation, &body));
        let own = own_keys(g, &relation, &images).unwrap();
        let intent = g.begin_intent("1").unwrap();
        let planned = plan(g, &images, &[]).unwrap();
        let recorded = record(g, intent, &images, &planned, ctx(1000), through).unwrap();
        let digest = body_digest(&body);
        let answer = Some((PATTERN, digest.as_str()));
        let to_verify = note_answer(g, ("1", recorded.seq), answer, &own, verify).unwrap();
        (own[0].as_str().to_string(), recorded.seq, to_verify)
    }

    /// The origin's `GET` of user 1 after the write, as a refill reads and registers it.
    fn refill(g: &Graph<MemoryStore>, key: &str, get: &Value) -> usize {
        let stamp = g.seq().unwrap();
        let n = compare_refetch(g, key, stamp, Some(&body_digest(get)), 5).unwrap();
        g.finish_rehydrate(key).unwrap();
        g.register(&registration("/v1/users/1", get.clone(), stamp))
            .unwrap();
        n
    }

    fn confident(g: &Graph<MemoryStore>) -> bool {
        writes_through(g, PATTERN, Some(&learn(LearningMode::Apply))).unwrap()
    }

    #[test]
    fn agreeing_refills_make_a_route_written_through_and_a_counter_example_revokes_it() {
        let g = graph();
        g.register(&registration("/v1/users/1", answer("Ann"), BORN))
            .unwrap();
        for n in 0..CONFIDENT_AGREEMENTS {
            assert!(!confident(&g), "after {n}");
            let name = format!("Ann{n}");
            let (key, _, _) = patch(&g, &name, LearningMode::Apply, false);
            assert!(g.registration(&key).unwrap().is_none(), "invalidated");
            assert_eq!(refill(&g, &key, &answer(&name)), 0);
        }
        assert!(confident(&g));
        assert!(
            !writes_through(&g, PATTERN, Some(&learn(LearningMode::Observe))).unwrap(),
            "observe skips nothing"
        );

        // Confident: the key is rebuilt from the answer at the write's seq, no refill queued.
        let (key, seq, to_verify) = patch(&g, "Bea", LearningMode::Apply, true);
        let copy = g.registration(&key).unwrap().expect("written through");
        assert_eq!(copy.stamp, seq);
        assert_eq!(copy.digest, Some(body_digest(&answer("Bea"))));
        assert_eq!(to_verify, vec![copy]);
        assert_eq!(g.learned_spared(PATTERN).unwrap(), vec![key.clone()]);
        assert!(g.due_rehydrates(u64::MAX >> 12, 10).unwrap().is_empty());

        // The verification finds the origin's GET different: revoked, and the written-through
        // copy is invalidated.
        let n = compare_refetch(&g, &key, seq, Some("another body"), 9).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            g.last_invalidation(&key).unwrap().map(|(_, r)| r),
            Some(InvalidationReason::HypothesisRevoked)
        );
        assert!(!confident(&g));
        let status = hypotheses(&g, "users").unwrap();
        assert_eq!(status[0].route, PATTERN);
        assert_eq!(
            (
                status[0].hypotheses[0].support,
                status[0].hypotheses[0].counter_examples
            ),
            (CONFIDENT_AGREEMENTS as usize, 1)
        );

        // Never written through again, whatever agrees later.
        g.register(&registration(
            "/v1/users/1",
            answer("Bea"),
            g.seq().unwrap(),
        ))
        .unwrap();
        for n in 0..CONFIDENT_AGREEMENTS {
            let name = format!("Cy{n}");
            let (key, _, _) = patch(&g, &name, LearningMode::Apply, true);
            assert!(
                g.registration(&key).unwrap().is_none(),
                "not written through"
            );
            refill(&g, &key, &answer(&name));
        }
        assert!(!confident(&g));
    }

    /// Ten agreeing PATCHes of user 1, each refilled: the route becomes confident.
    fn learned(g: &Graph<MemoryStore>, name: &str) {
        for n in 0..CONFIDENT_AGREEMENTS {
            let name = format!("{name}{n}");
            let (key, _, _) = patch(g, &name, LearningMode::Apply, false);
            refill(g, &key, &answer(&name));
        }
        assert!(confident(g));
    }

    #[test]
    fn a_forgotten_write_answer_invalidates_what_was_written_through_and_is_learned_afresh() {
        let g = graph();
        g.register(&registration("/v1/users/1", answer("Ann"), BORN))
            .unwrap();
        learned(&g, "Ann");
        // Written through, and picked for verification: its answer waits for the check.
        let (key, seq, _) = patch(&g, "Bea", LearningMode::Apply, true);
        assert_eq!(g.registration(&key).unwrap().map(|r| r.stamp), Some(seq));
        assert!(g.pending_answer(&key).unwrap().is_some());

        let id = hypotheses(&g, "users").unwrap()[0].hypotheses[0].id.clone();
        let target = LearnedRef::parse(&id, LearnedKind::Hypothesis).unwrap();
        let gone = crate::coordinator::forget::forget_hypothesis(&g, &target).unwrap();
        assert_eq!(
            (gone.forgotten[0].route.as_str(), gone.invalidated),
            (PATTERN, 1)
        );
        assert_eq!(
            g.last_invalidation(&key).unwrap().map(|(_, r)| r),
            Some(InvalidationReason::HypothesisForgotten),
            "the written-through copy"
        );
        assert!(hypotheses(&g, "users").unwrap().is_empty());
        assert!(
            g.pending_answer(&key).unwrap().is_none(),
            "an answer from before counts for nothing"
        );
        assert!(!confident(&g));

        // Refilled: the next PATCH is invalidated, not written through, and unlike a revoked
        // route this one is learned again, from new comparisons only.
        refill(&g, &key, &answer("Bea"));
        let (key, _, _) = patch(&g, "Cy", LearningMode::Apply, false);
        assert!(g.registration(&key).unwrap().is_none(), "invalidated");
        refill(&g, &key, &answer("Cy"));
        learned(&g, "Dee");
        let status = hypotheses(&g, "users").unwrap();
        assert_eq!(status[0].hypotheses[0].id, id, "under the same name");
    }

    #[test]
    fn a_refetch_that_cannot_tell_counts_nothing() {
        let g = graph();
        g.register(&registration("/v1/users/1", answer("Ann"), BORN))
            .unwrap();
        let (key, seq, _) = patch(&g, "Bea", LearningMode::Apply, false);
        let other = Some("another body");
        // Stamped before the write: kept for a later refetch.
        assert_eq!(compare_refetch(&g, &key, seq - 1, other, 5).unwrap(), 0);
        assert!(g.pending_answer(&key).unwrap().is_some());
        // A later write of the record is in flight: dropped, no evidence.
        let intent = g.begin_intent("1").unwrap();
        assert_eq!(compare_refetch(&g, &key, seq, other, 5).unwrap(), 0);
        assert!(g.pending_answer(&key).unwrap().is_none());
        g.end_intent(intent).unwrap();
        // A write of another table this coordinator heard of came between: no evidence.
        refill(&g, &key, &answer("Bea"));
        let (key, seq, _) = patch(&g, "Cy", LearningMode::Apply, false);
        g.note_foreign_write().unwrap();
        assert_eq!(compare_refetch(&g, &key, seq, other, 5).unwrap(), 0);
        assert!(
            hypotheses(&g, "users").unwrap().is_empty(),
            "no evidence at all"
        );
        // A later write of the record whose answer is not comparable drops the answer: its
        // refetch shows the later write.
        refill(&g, &key, &answer("Cy"));
        let (key, _, _) = patch(&g, "Dee", LearningMode::Apply, false);
        let recorded = crate::coordinator::fixtures::write(&g, &rename("1", "Dee", "Eve"));
        note_answer(&g, ("1", recorded.seq), None, &[], false).unwrap();
        assert_eq!(refill(&g, &key, &answer("Eve")), 0);
        assert!(
            hypotheses(&g, "users").unwrap().is_empty(),
            "no evidence at all"
        );
        // A later comparable write replaces it.
        patch(&g, "Fay", LearningMode::Apply, false);
        g.register(&registration(
            "/v1/users/1",
            answer("Fay"),
            g.seq().unwrap(),
        ))
        .unwrap();
        let (key, _, _) = patch(&g, "Gus", LearningMode::Apply, false);
        assert_eq!(refill(&g, &key, &answer("Gus")), 0);
        let status = hypotheses(&g, "users").unwrap();
        assert_eq!(
            (
                status[0].hypotheses[0].support,
                status[0].hypotheses[0].counter_examples
            ),
            (1, 0)
        );
    }
}
