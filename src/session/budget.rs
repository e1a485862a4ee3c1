//! Budgets for the request bytes the gateway holds. Per connection: the keys
//! and values of produces not yet handed to Kafka (waiting for room in a full
//! producer queue). For the whole process: those, plus requests not yet read
//! to their end beyond a connection's first 64 KiB. Past either, a
//! connection reads nothing more until bytes are given back, so publishers
//! pipelining large values into a stalled broker cost at most the budgets,
//! not what they send.

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// How often a connection waiting for the process's budget looks again. The
/// budget is given back on other threads, which cannot wake this one; the
/// wait only happens with the whole process at its bound.
const PROCESS_RECHECK: Duration = Duration::from_millis(5);

/// The whole process's budget, shared by every shard.
pub struct ProcessBudget {
    limit: usize,
    used: AtomicUsize,
}

impl ProcessBudget {
    pub fn new(limit: usize) -> Arc<ProcessBudget> {
        Arc::new(ProcessBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn has_room(&self) -> bool {
        self.used() < self.limit
    }
}

/// A connection's budget, and its share of the process's.
pub struct ByteBudget {
    limit: usize,
    held: Cell<usize>,
    process: Arc<ProcessBudget>,
    /// The reader, waiting for room.
    waiting: Cell<Option<Waker>>,
}

/// Bytes taken from a budget; given back when dropped.
pub struct HeldBytes {
    budget: Rc<ByteBudget>,
    bytes: usize,
    /// Counted against the connection's budget too, not only the process's.
    connection: bool,
}

impl ByteBudget {
    pub fn new(limit: usize, process: Arc<ProcessBudget>) -> Rc<ByteBudget> {
        Rc::new(ByteBudget {
            limit,
            held: Cell::new(0),
            process,
            waiting: Cell::new(None),
        })
    }

    /// Takes `bytes` of both budgets, even past their limits: what is already
    /// read is dispatched; the limits stop the reading of more
    /// ([`ByteBudget::room`]).
    pub fn take(self: &Rc<Self>, bytes: usize) -> HeldBytes {
        self.held.set(self.held.get() + bytes);
        self.take_of_process(bytes, true)
    }

    /// Takes `bytes` of the process's budget only: a request being read, which
    /// the connection's own budget must not stop (it could never complete).
    pub fn take_for_reading(self: &Rc<Self>, bytes: usize) -> HeldBytes {
        self.take_of_process(bytes, false)
    }

    fn take_of_process(self: &Rc<Self>, bytes: usize, connection: bool) -> HeldBytes {
        self.process.used.fetch_add(bytes, Ordering::Relaxed);
        HeldBytes {
            budget: Rc::clone(self),
            bytes,
            connection,
        }
    }

    pub fn held(&self) -> usize {
        self.held.get()
    }

    /// Whether the connection may read now: under its limit, and the
    /// process under its own.
    pub fn has_room(&self) -> bool {
        self.held.get() < self.limit && self.process.has_room()
    }

    /// Resolves once less than the connection's limit is held and the
    /// process is under its own.
    pub async fn room(&self) {
        poll_fn(|cx| {
            if self.held.get() < self.limit {
                Poll::Ready(())
            } else {
                self.waiting.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        while !self.process.has_room() {
            glommio::timer::sleep(PROCESS_RECHECK).await;
        }
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        let budget = &self.budget;
        budget.process.used.fetch_sub(self.bytes, Ordering::Relaxed);
        if !self.connection {
            return;
        }
        budget.held.set(budget.held.get() - self.bytes);
        if budget.held.get() < budget.limit {
            if let Some(reader) = budget.waiting.take() {
                reader.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    #[test]
    fn room_comes_back_when_bytes_are_given_back() {
        let process = ProcessBudget::new(100);
        let budget = ByteBudget::new(10, Arc::clone(&process));
        let a = budget.take(6);
        let b = budget.take(6);
        let reading = budget.take_for_reading(50);
        assert_eq!((budget.held(), process.used()), (12, 62));
        let mut cx = std::task::Context::from_waker(Waker::noop());
        {
            let mut room = std::pin::pin!(budget.room());
            assert!(room.as_mut().poll(&mut cx).is_pending());
            drop(a);
            assert!(room.as_mut().poll(&mut cx).is_ready());
        }
        drop((b, reading));
        assert_eq!((budget.held(), process.used()), (0, 0));
    }
}
