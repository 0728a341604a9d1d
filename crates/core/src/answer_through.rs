//! Learned write-through for HTTP origins: the hypothesis, per write route of a table
//! (`PATCH /v1/items/{id}`), that the answer of a successful write of a record has the body a
//! `GET` of that record answers right after it. The D1 origin's write-through rebuilds the
//! record from the after image because the answer is known to be the row; an HTTP origin's
//! answer is only learned to be, and keeps being verified.
//!
//! **Evidence.** After such a write, the next time the coordinator reads the record from the
//! origin (its refill, or a shadow check) it compares the refetched body's digest with the
//! answer's ([`compare`]): agreement supports, disagreement is a counter-example. A refetch
//! tells nothing when something else may have changed the record in between: a later write of
//! it (in flight or recorded), or a write of another table this coordinator was told of.
//!
//! **Confidence.** [`CONFIDENT_AGREEMENTS`] agreeing comparisons and no counter-example. Why
//! ten: an API whose answer differs from its `GET` (an envelope, a field only one of them
//! carries, a server-side rendering) differs on every write and never gets there; one that
//! differs on a share `p` of writes survives ten comparisons with probability `(1 - p)^10`,
//! below 0.1 % for `p ≥ ½`. A rarer difference is what continuous verification is for: once
//! confident, one written-through write in [`VERIFY_ONE_IN`] (seeded by its seq, within the
//! tenant's shadow budget) is still refetched and compared, and the first counter-example
//! revokes the hypothesis for good and invalidates every key written through under it that no
//! refetch has replaced since.

use serde::{Deserialize, Serialize};

use crate::learned_rules::{Evidence, Verdict};
use crate::semantics::{HypothesisKind, HypothesisStatus};
use crate::shadow::SampleRng;
use crate::{id_text, Row};

/// Agreeing comparisons, with no counter-example, before writes are written through.
pub const CONFIDENT_AGREEMENTS: u64 = 10;
/// Once confident, one written-through write in this many is still verified by a refetch.
pub const VERIFY_ONE_IN: u64 = 4;

/// The hypothesis of one write route, with its evidence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnswerHypothesis {
    /// Comparisons that agreed and disagreed.
    pub evidence: Evidence,
}

impl AnswerHypothesis {
    /// Whether writes of its route may be written through.
    pub fn confident(&self) -> bool {
        self.evidence.counter == 0 && self.evidence.support >= CONFIDENT_AGREEMENTS
    }

    /// Counts one comparison at `now_ms`; answers whether the hypothesis is refuted now (keys
    /// written through under it must be invalidated). A counter-example is final: the route is
    /// never written through again, unless an operator forgets the hypothesis (`learn forget`).
    pub fn count(&mut self, verdict: Verdict, now_ms: u64) -> bool {
        self.evidence.count(verdict, now_ms);
        verdict == Verdict::Contradicts
    }

    /// The hypothesis as `learn status` shows it (next to the list routes' hypotheses).
    pub fn status(&self) -> HypothesisStatus {
        let supported = self.evidence.support > 0 && self.evidence.counter == 0;
        HypothesisStatus {
            id: String::new(),
            param: None,
            kind: HypothesisKind::WriteAnswer,
            field: None,
            descending: false,
            support: usize::try_from(self.evidence.support).unwrap_or(usize::MAX),
            counter_examples: u32::try_from(self.evidence.counter).unwrap_or(u32::MAX),
            confident: self.confident(),
            last_verified_ms: if supported {
                self.evidence.last_seen_ms
            } else {
                0
            },
        }
    }
}

/// A write's answer waiting to be compared with the next refetch of its record's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAnswer {
    /// The written record.
    pub record: String,
    /// The write's route pattern: the hypothesis it is evidence for.
    pub pattern: String,
    /// The write's seq.
    pub seq: u64,
    /// `shadow::body_digest` of the answer.
    pub digest: String,
    /// The coordinator's count of other tables' writes when the write was recorded.
    pub foreign: u64,
}

/// What happened between the write and a refetch of its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Since {
    /// The table's seq taken before the refetch (invariant 2's stamp).
    pub read_stamp: u64,
    /// The count of other tables' writes now.
    pub foreign: u64,
    /// A write of the same record has been forwarded and not yet recorded.
    pub record_in_flight: bool,
}

/// What a refetch says of a pending answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// Evidence for or against the hypothesis; the pending answer is used up.
    Evidence(Verdict),
    /// The refetch began before the write was recorded: keep the answer for a later one.
    Wait,
    /// Something else may have changed the record since: no evidence, the answer is dropped.
    Void,
}

/// Compares a refetch of the record's key, whose body has digest `fetched`, with the pending
/// answer. (A later write of the same record replaces or drops the pending answer when it is
/// recorded; one still in flight is `since.record_in_flight`.)
pub fn compare(pending: &PendingAnswer, since: Since, fetched: &str) -> Comparison {
    if since.read_stamp < pending.seq {
        return Comparison::Wait;
    }
    if since.foreign != pending.foreign || since.record_in_flight {
        return Comparison::Void;
    }
    Comparison::Evidence(match fetched == pending.digest {
        true => Verdict::Supports,
        false => Verdict::Contradicts,
    })
}

/// Whether a forwarded write's answer can be compared with a `GET` of its record: a `PUT` or
/// `PATCH` the origin answered `200` with the record itself (its id is the written one). A
/// create, a delete or any other answer says nothing about the record's `GET`.
pub fn answers_record(
    method: &str,
    status: u16,
    (id, id_column): (&str, &str),
    after: Option<&Row>,
) -> bool {
    matches!(method, "PUT" | "PATCH")
        && status == 200
        && after
            .and_then(|row| row.get(id_column))
            .and_then(id_text)
            .is_some_and(|answered| answered == id)
}

/// Whether the written-through write at `seq` is one of those still verified (one in
/// [`VERIFY_ONE_IN`], deterministic given the seq).
pub fn verify(seq: u64) -> bool {
    SampleRng::new(seq).below(VERIFY_ONE_IN) == 0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pending() -> PendingAnswer {
        PendingAnswer {
            record: "i1".into(),
            pattern: "PATCH /v1/items/{id}".into(),
            seq: 10,
            digest: "answer".into(),
            foreign: 2,
        }
    }

    fn since(read_stamp: u64) -> Since {
        Since {
            read_stamp,
            foreign: 2,
            record_in_flight: false,
        }
    }

    #[test]
    fn ten_agreements_make_it_confident_and_one_counter_example_revokes_it_for_good() {
        let mut h = AnswerHypothesis::default();
        for at in 1..CONFIDENT_AGREEMENTS {
            assert!(!h.count(Verdict::Supports, at));
            assert!(!h.confident(), "{at} agreements");
        }
        assert!(!h.count(Verdict::Supports, 100));
        assert!(h.confident());
        assert!(h.status().confident && h.status().last_verified_ms == 100);
        assert!(h.count(Verdict::Contradicts, 200), "refuted");
        assert!(!h.confident());
        for at in 300..400 {
            h.count(Verdict::Supports, at);
        }
        assert!(!h.confident(), "never again");
        let s = h.status();
        assert_eq!(
            (s.kind, s.counter_examples, s.confident),
            (HypothesisKind::WriteAnswer, 1, false)
        );
    }

    #[test]
    fn a_counter_example_before_confidence_keeps_it_from_ever_being_confident() {
        let mut h = AnswerHypothesis::default();
        h.count(Verdict::Contradicts, 1);
        for at in 2..50 {
            h.count(Verdict::Supports, at);
        }
        assert!(!h.confident());
    }

    #[test]
    fn only_a_refetch_after_the_write_with_nothing_else_between_is_evidence() {
        let p = pending();
        assert_eq!(
            compare(&p, since(9), "answer"),
            Comparison::Wait,
            "read before"
        );
        assert_eq!(
            compare(&p, since(10), "answer"),
            Comparison::Evidence(Verdict::Supports)
        );
        assert_eq!(
            compare(&p, since(12), "other"),
            Comparison::Evidence(Verdict::Contradicts)
        );
        let foreign = Since {
            foreign: 3,
            ..since(12)
        };
        assert_eq!(compare(&p, foreign, "other"), Comparison::Void);
        let in_flight = Since {
            record_in_flight: true,
            ..since(12)
        };
        assert_eq!(compare(&p, in_flight, "other"), Comparison::Void);
    }

    #[test]
    fn only_a_put_or_patch_answered_with_the_record_can_be_compared() {
        let row = |v: serde_json::Value| v.as_object().cloned().unwrap();
        let written = row(json!({"id": "i1", "name": "x"}));
        let other = row(json!({"id": "i2", "name": "x"}));
        assert!(answers_record("PATCH", 200, ("i1", "id"), Some(&written)));
        assert!(answers_record("PUT", 200, ("i1", "id"), Some(&written)));
        assert!(!answers_record("POST", 200, ("i1", "id"), Some(&written)));
        assert!(!answers_record("DELETE", 200, ("i1", "id"), None));
        assert!(!answers_record("PATCH", 201, ("i1", "id"), Some(&written)));
        assert!(!answers_record("PATCH", 200, ("i1", "id"), Some(&other)));
        assert!(!answers_record("PATCH", 200, ("i1", "id"), None));
    }

    #[test]
    fn about_one_write_in_four_is_verified() {
        let verified = (0..4_000).filter(|&seq| verify(seq)).count();
        assert!((800..1_200).contains(&verified), "{verified}");
        assert_eq!(verify(17), verify(17), "deterministic");
    }
}
