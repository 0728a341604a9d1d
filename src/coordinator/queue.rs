//! A first-come, first-served turn for a coordinator's writes. Awaiting the origin lets other
//! requests of the object run in between, so writes must wait their turn explicitly; a plain
//! async mutex lets late arrivals overtake waiters, which showed up as multi-second tails.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use futures_channel::oneshot;

/// Writers waiting for their turn, in arrival order.
#[derive(Default)]
pub struct WriteQueue {
    busy: Cell<bool>,
    waiting: RefCell<VecDeque<oneshot::Sender<()>>>,
}

/// Holding this is having the turn; dropping it hands the turn to the next writer.
pub struct Turn<'a> {
    queue: &'a WriteQueue,
}

impl WriteQueue {
    /// Waits until every earlier writer is done.
    pub async fn turn(&self) -> Turn<'_> {
        if self.busy.replace(true) {
            let (tx, rx) = oneshot::channel();
            self.waiting.borrow_mut().push_back(tx);
            // The turn is handed over with `busy` still set; a dropped sender cannot happen
            // while the queue lives, and if it did, going ahead is no worse than a lock.
            let _ = rx.await;
        }
        Turn { queue: self }
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
    use futures_util::FutureExt;

    #[test]
    fn turns_are_taken_in_arrival_order() {
        let q = WriteQueue::default();
        let first = q.turn().now_or_never().expect("free queue: immediate turn");
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
        drop(second);
        assert!(third.now_or_never().is_some());
        assert!(q.turn().now_or_never().is_some(), "free again");
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
