//! A first-come, first-served turn for a coordinator's writes, and group commit. Awaiting the
//! origin lets other requests of the object run in between, so writes must wait their turn
//! explicitly; a plain async mutex lets late arrivals overtake waiters, which showed up as
//! multi-second tails.
//!
//! Group commit: every write is submitted to [`WriteGroups`] before it waits for its turn. The
//! writer whose turn it is takes its own write and, on the built-in database, every write
//! queued behind it ([`MAX_GROUP`] at most), commits them as one batch and answers each; a
//! writer whose write an earlier group took finds its answer waiting when its turn comes. So
//! while one batch is in flight the next one gathers, and throughput grows with concurrent
//! writers instead of each waiting for a round trip of its own.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use futures_channel::oneshot;
use serde::Serialize;

use edgecache_core::protocol::{OriginConfig, WriteRequest, WriteResponse};
use edgecache_core::ApiError;

/// Most writes committed as one batch (two statements each in a D1 batch).
pub const MAX_GROUP: usize = 32;

/// A write's answer, as the group that committed it sends it.
pub type WriteOutcome = Result<WriteResponse, ApiError>;

/// When a write passed each point of the coordinator, in the runtime's milliseconds (real time
/// locally; in production the clock moves only between I/O events). Kept for the writers
/// bench, with the test hooks only (`GET /timings`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriteTiming {
    /// The edge sent the request (`WriteRequest::sent_ms`; 0 if it did not say).
    pub sent_ms: u64,
    /// The request reached the object.
    pub arrived_ms: u64,
    /// Its group started (the writer holding the turn took it).
    pub taken_ms: u64,
    /// The group's origin batch answered.
    pub forwarded_ms: u64,
    /// The group was recorded and its writers answered.
    pub answered_ms: u64,
    /// The writer had its turn and its answer left the object.
    pub responded_ms: u64,
    /// Writes in its group.
    pub group: usize,
}

/// What the group sends a writer: its outcome, and when the group passed each point.
pub struct Answer {
    /// The write's outcome.
    pub outcome: WriteOutcome,
    /// The group's times (`arrived_ms` is the writer's own, `responded_ms` not yet known).
    pub timing: WriteTiming,
}

/// Most timings kept between two reads of them.
const MAX_TIMINGS: usize = 50_000;

/// The last writes' timings, oldest first (bounded).
#[derive(Default)]
pub struct WriteTimings(RefCell<VecDeque<WriteTiming>>);

impl WriteTimings {
    /// Keeps a write's timing, forgetting the oldest past [`MAX_TIMINGS`].
    pub fn push(&self, timing: WriteTiming) {
        let mut kept = self.0.borrow_mut();
        if kept.len() == MAX_TIMINGS {
            kept.pop_front();
        }
        kept.push_back(timing);
    }

    /// The timings kept so far, which are then forgotten.
    pub fn take(&self) -> Vec<WriteTiming> {
        self.0.borrow_mut().drain(..).collect()
    }
}

/// A write waiting to be committed.
pub struct PendingWrite {
    ticket: u64,
    /// When the request reached the object.
    arrived_ms: u64,
    /// The write.
    pub req: WriteRequest,
    /// The tenant it came through.
    pub tenant: String,
    /// That tenant's origin.
    pub origin: OriginConfig,
    done: oneshot::Sender<Answer>,
}

impl PendingWrite {
    /// Answers the writer; `timing` is the group's.
    pub fn answer(self, outcome: WriteOutcome, timing: WriteTiming) {
        let timing = WriteTiming {
            sent_ms: self.req.sent_ms.unwrap_or_default(),
            arrived_ms: self.arrived_ms,
            ..timing
        };
        let _ = self.done.send(Answer { outcome, timing }); // a writer that went away needs no answer
    }

    /// Whether the writer went away before its write was taken (it is then never applied,
    /// as a request cancelled while it waited never was).
    fn abandoned(&self) -> bool {
        self.done.is_canceled()
    }
}

/// Writes submitted and not yet taken by a group, in arrival order.
#[derive(Default)]
pub struct WriteGroups {
    next_ticket: Cell<u64>,
    pending: RefCell<VecDeque<PendingWrite>>,
}

/// A submitted write: its place, and where its answer arrives.
pub struct Ticket {
    id: u64,
    /// The answer, sent by whichever group commits the write.
    pub outcome: oneshot::Receiver<Answer>,
}

impl WriteGroups {
    /// Queues a write that reached the object at `arrived_ms` for the next group.
    pub fn submit(
        &self,
        req: WriteRequest,
        tenant: String,
        origin: OriginConfig,
        arrived_ms: u64,
    ) -> Ticket {
        let id = self.next_ticket.get();
        self.next_ticket.set(id + 1);
        let (done, outcome) = oneshot::channel();
        self.pending.borrow_mut().push_back(PendingWrite {
            ticket: id,
            arrived_ms,
            req,
            tenant,
            origin,
            done,
        });
        Ticket { id, outcome }
    }

    /// The group to commit now, for the writer holding the turn with `ticket`: empty if an
    /// earlier group took its write; else its write and, if it is for the built-in database,
    /// the writes queued behind it that are too, in order. Writes whose writers went away are
    /// dropped unapplied.
    pub fn take(&self, ticket: &Ticket) -> Vec<PendingWrite> {
        let mut pending = self.pending.borrow_mut();
        pending.retain(|p| p.ticket == ticket.id || !p.abandoned());
        let Some(at) = pending.iter().position(|p| p.ticket == ticket.id) else {
            return Vec::new();
        };
        // Earlier writes still pending belong to writers still waiting for their turn (turns
        // are taken in submission order): they go first, in this group.
        let mut group: Vec<PendingWrite> = pending.drain(..=at).collect();
        let batchable = |p: &PendingWrite| p.origin == OriginConfig::D1;
        if group.iter().all(batchable) {
            while group.len() < MAX_GROUP && pending.front().is_some_and(batchable) {
                group.extend(pending.pop_front());
            }
        }
        group
    }
}

/// Writers waiting for their turn, in arrival order.
#[derive(Default)]
pub struct WriteQueue {
    busy: Cell<bool>,
    waiting: RefCell<VecDeque<oneshot::Sender<()>>>,
}

/// Holding this is having the turn; dropping it hands the turn to the next writer.
pub struct Turn<'a> {
    queue: &'a WriteQueue,
    /// Whether an earlier writer held the turn when this one asked (writes are contending).
    pub waited: bool,
}

impl WriteQueue {
    /// Waits until every earlier writer is done.
    pub async fn turn(&self) -> Turn<'_> {
        let waited = self.busy.replace(true);
        if waited {
            let (tx, rx) = oneshot::channel();
            self.waiting.borrow_mut().push_back(tx);
            // The turn is handed over with `busy` still set; a dropped sender cannot happen
            // while the queue lives, and if it did, going ahead is no worse than a lock.
            let _ = rx.await;
        }
        Turn {
            queue: self,
            waited,
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        loop {
            let next = self.queue.waiting.borrow_mut().pop_front();
            match next {
                // A waiter whose request went away drops its receiver: skip it.
                Some(tx) => {
                    if tx.send(()).is_ok() {
                        return;
                    }
                }
                None => {
                    self.queue.busy.set(false);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgecache_core::protocol::{WriteOp, WriteRequest};
    use futures_util::FutureExt;

    fn write(id: &str) -> WriteRequest {
        WriteRequest {
            table: "users".into(),
            op: WriteOp::Delete { id: id.into() },
            fault: None,
            explain: false,
            learn: None,
            sent_ms: None,
        }
    }

    fn ids(group: &[PendingWrite]) -> Vec<String> {
        group
            .iter()
            .map(|p| p.req.op.id().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn the_writer_with_the_turn_takes_everything_queued_behind_it() {
        let g = WriteGroups::default();
        let a = g.submit(write("a"), "t".into(), OriginConfig::D1, 0);
        let b = g.submit(write("b"), "t".into(), OriginConfig::D1, 0);
        let c = g.submit(write("c"), "u".into(), OriginConfig::D1, 0);
        let group = g.take(&a);
        assert_eq!(ids(&group), ["a", "b", "c"]);
        assert!(
            g.take(&b).is_empty() && g.take(&c).is_empty(),
            "already taken"
        );
        for p in group {
            let id = p.req.op.id().unwrap_or_default().to_string();
            p.answer(Err(ApiError::internal(id)), WriteTiming::default());
        }
        let answered = |t: Ticket| {
            t.outcome
                .now_or_never()
                .unwrap()
                .unwrap()
                .outcome
                .unwrap_err()
        };
        assert_eq!(answered(b).message, "b");
        assert_eq!(answered(c).message, "c");
    }

    #[test]
    fn groups_are_bounded_and_http_writes_go_alone() {
        let g = WriteGroups::default();
        let tickets: Vec<Ticket> = (0..MAX_GROUP + 5)
            .map(|i| g.submit(write(&i.to_string()), "t".into(), OriginConfig::D1, 0))
            .collect();
        assert_eq!(g.take(&tickets[0]).len(), MAX_GROUP);
        assert_eq!(g.take(&tickets[MAX_GROUP]).len(), 5);
        let http = OriginConfig::Http {
            base_url: "https://api.example".into(),
            headers: vec![],
        };
        let h1 = g.submit(write("h1"), "t".into(), http.clone(), 0);
        let _h2 = g.submit(write("h2"), "t".into(), http, 0);
        let _d = g.submit(write("d"), "t".into(), OriginConfig::D1, 0);
        assert_eq!(ids(&g.take(&h1)), ["h1"]);
    }

    #[test]
    fn abandoned_writes_are_dropped_unapplied() {
        let g = WriteGroups::default();
        let gone = g.submit(write("gone"), "t".into(), OriginConfig::D1, 0);
        let mine = g.submit(write("mine"), "t".into(), OriginConfig::D1, 0);
        drop(gone);
        assert_eq!(ids(&g.take(&mine)), ["mine"]);
    }

    #[test]
    fn turns_are_taken_in_arrival_order() {
        let q = WriteQueue::default();
        let first = q.turn().now_or_never().expect("free queue: immediate turn");
        assert!(!first.waited, "nobody held the turn");
        let mut second = Box::pin(q.turn());
        let mut third = Box::pin(q.turn());
        assert!(second.as_mut().now_or_never().is_none());
        assert!(third.as_mut().now_or_never().is_none());
        drop(first);
        assert!(
            third.as_mut().now_or_never().is_none(),
            "the third may not overtake the second"
        );
        let second = second.now_or_never().expect("second's turn");
        assert!(
            second.waited,
            "the first held the turn when the second asked"
        );
        drop(second);
        assert!(third.now_or_never().is_some_and(|t| t.waited));
        assert!(
            q.turn().now_or_never().is_some_and(|t| !t.waited),
            "free again"
        );
    }

    #[test]
    fn an_abandoned_waiter_is_skipped() {
        let q = WriteQueue::default();
        let first = q.turn().now_or_never().unwrap();
        let mut gone = Box::pin(q.turn());
        assert!(gone.as_mut().now_or_never().is_none());
        drop(gone);
        let mut next = Box::pin(q.turn());
        assert!(next.as_mut().now_or_never().is_none());
        drop(first);
        assert!(next.now_or_never().is_some());
    }
}
