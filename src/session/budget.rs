//! Budgets for the request bytes the gateway holds. Per connection: the keys
//! and values of produces not yet handed to Kafka (waiting for room in a full
//! producer queue); past it, the connection reads nothing more until they are
//! handed over. For the whole process: those, plus large requests being read.
//! A request is admitted whole: the bytes it needs past a connection's first
//! 64 KiB are reserved at once, or the connection waits holding none of them,
//! so readers never wait on each other's half-read requests.

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// How often a connection waiting for the process's budget looks again. The
/// budget is given back on other threads, which cannot wake this one; the
/// wait only happens with a large request while the whole process is at its
/// bound.
pub const PROCESS_RECHECK: Duration = Duration::from_millis(5);

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

    /// Takes `bytes` if they fit under the limit (or nothing else is held:
    /// one request of any allowed size always gets through).
    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used == 0 || used + bytes <= self.limit).then_some(used + bytes)
            })
            .is_ok()
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

    /// Reserves `bytes` of the process's budget for a request being read, if
    /// they fit; the connection's own budget does not apply (the request
    /// could never complete).
    pub fn try_take_for_reading(self: &Rc<Self>, bytes: usize) -> Option<HeldBytes> {
        self.process.try_take(bytes).then(|| HeldBytes {
            budget: Rc::clone(self),
            bytes,
            connection: false,
        })
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

    /// Whether the connection may read now: under its limit.
    pub fn has_room(&self) -> bool {
        self.held.get() < self.limit
    }

    /// Resolves once less than the connection's limit is held.
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
        let reading = budget.try_take_for_reading(50).unwrap();
        assert_eq!((budget.held(), process.used()), (12, 62));
        assert!(budget.try_take_for_reading(50).is_none(), "62 + 50 > 100");
        let mut cx = std::task::Context::from_waker(Waker::noop());
        {
            let mut room = std::pin::pin!(budget.room());
            assert!(room.as_mut().poll(&mut cx).is_pending());
            drop(a);
            assert!(room.as_mut().poll(&mut cx).is_ready());
        }
        drop((b, reading));
        assert_eq!((budget.held(), process.used()), (0, 0));
        // Alone, a request of any size is admitted.
        let big = budget.try_take_for_reading(500).unwrap();
        assert!(budget.try_take_for_reading(1).is_none());
        drop(big);
    }
}
