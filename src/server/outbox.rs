//! The ordered queue from a connection's reader to its writer.
//!
//! Replies that are ready when their command runs (PING, errors, commits, ...)
//! are encoded by the reader straight into a chunk, and a chunk travels the
//! channel as one item: one channel operation per read instead of one per
//! command, which is most of what a pipelined PING costs. A reply that is not
//! ready (a produce waiting for its acknowledgement) travels as itself, after
//! the chunk before it, so replies keep command order.
//!
//! Two budgets bound what a client can cost by not reading: every reply takes
//! a credit (`max_pipeline` replies at most), and every encoded reply takes
//! its size in bytes (`max_connection_bytes`; a reply larger than the whole
//! budget takes all of it). The writer gives both back once the replies are
//! in its write buffer. A reader out of either waits, and stops reading from
//! the socket meanwhile.

use std::rc::Rc;

use bytes::BytesMut;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::sync::Semaphore;

use crate::session::Reply;

/// A chunk is sent on once it holds this much, even mid-read: the writer can
/// start writing, and no chunk grows large.
const CHUNK_BYTES: usize = 16 * 1024;

/// One item of the queue.
pub enum Outgoing {
    /// Replies already encoded, in order, and what they hold of the budgets.
    Encoded { bytes: BytesMut, held: Held },
    /// A reply encoded by the writer: a deferred one once it completes, or one
    /// that ends the connection. It holds one credit.
    Reply { reply: Reply, resp3: bool },
}

/// What an item holds of the two budgets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub replies: u64,
    pub bytes: u64,
}

impl Outgoing {
    /// What this item holds, to give back once taken.
    pub fn held(&self) -> Held {
        match self {
            Outgoing::Encoded { held, .. } => *held,
            Outgoing::Reply { .. } => Held {
                replies: 1,
                bytes: 0,
            },
        }
    }
}

/// The writer went away: nothing more can be queued.
#[derive(Debug)]
pub struct WriterGone;

/// The reader's end.
pub struct Outbox {
    tx: LocalSender<Outgoing>,
    budgets: Rc<Budgets>,
    chunk: BytesMut,
    chunk_held: Held,
    /// The byte budget in force: no reply takes more than all of it.
    max_bytes: u64,
    /// What `grow` adds: the difference between the first budgets and the
    /// largest.
    reserve: Held,
}

struct Budgets {
    credits: Semaphore,
    bytes: Semaphore,
}

/// The writer's end.
pub struct Inbox {
    rx: LocalReceiver<Outgoing>,
    budgets: Rc<Budgets>,
}

/// A queue that holds, not yet taken by the writer, at most `first.replies`
/// replies and `first.bytes` of encoded replies; `grow` raises both to `most`.
pub fn new(first: Held, most: Held) -> (Outbox, Inbox) {
    let first = Held {
        replies: first.replies.min(most.replies),
        bytes: first.bytes.min(most.bytes),
    };
    let budgets = Rc::new(Budgets {
        credits: Semaphore::new(first.replies),
        bytes: Semaphore::new(first.bytes),
    });
    // Every item holds at least one credit, so the channel never fills first.
    let (tx, rx) = local_channel::new_bounded(most.replies as usize);
    (
        Outbox {
            tx,
            budgets: Rc::clone(&budgets),
            chunk: BytesMut::new(),
            chunk_held: Held::default(),
            max_bytes: first.bytes,
            reserve: Held {
                replies: most.replies - first.replies,
                bytes: most.bytes - first.bytes,
            },
        },
        Inbox { rx, budgets },
    )
}

impl Outbox {
    /// Raises the budgets to the largest (after AUTH: a client that proved
    /// who it is may pipeline more).
    pub fn grow(&mut self) {
        let reserve = std::mem::take(&mut self.reserve);
        self.budgets.credits.signal(reserve.replies);
        self.budgets.bytes.signal(reserve.bytes);
        self.max_bytes += reserve.bytes;
    }

    /// Queues the reply of one command.
    pub async fn push(&mut self, reply: Reply, resp3: bool) -> Result<(), WriterGone> {
        let credits = &self.budgets.credits;
        if !credits.try_acquire(1).map_err(|_| WriterGone)? {
            // The writer is behind: let it have what is encoded so far.
            self.flush().await?;
            self.budgets
                .credits
                .acquire(1)
                .await
                .map_err(|_| WriterGone)?;
        }
        match reply {
            Reply::Deferred(_) | Reply::ErrorThenClose(_) => {
                self.flush().await?;
                self.send(Outgoing::Reply { reply, resp3 }).await
            }
            ready => {
                let before = self.chunk.len();
                ready.encode(&mut self.chunk, resp3);
                let size = ((self.chunk.len() - before) as u64).min(self.max_bytes);
                let bytes = &self.budgets.bytes;
                if !bytes.try_acquire(size).map_err(|_| WriterGone)? {
                    // Over the byte budget: hand the writer the replies before
                    // this one, and wait for it to take some.
                    let last = self.chunk.split_off(before);
                    self.flush().await?;
                    let bytes = &self.budgets.bytes;
                    bytes.acquire(size).await.map_err(|_| WriterGone)?;
                    self.chunk.unsplit(last);
                }
                self.chunk_held.replies += 1;
                self.chunk_held.bytes += size;
                if self.chunk.len() >= CHUNK_BYTES {
                    self.flush().await?;
                }
                Ok(())
            }
        }
    }

    /// Sends the replies encoded so far to the writer. The reader calls this
    /// before it waits for more input.
    pub async fn flush(&mut self) -> Result<(), WriterGone> {
        if self.chunk_held.replies == 0 {
            return Ok(());
        }
        let item = Outgoing::Encoded {
            bytes: self.chunk.split(),
            held: std::mem::take(&mut self.chunk_held),
        };
        self.send(item).await
    }

    async fn send(&self, item: Outgoing) -> Result<(), WriterGone> {
        self.tx.send(item).await.map_err(|_| WriterGone)
    }
}
impl Inbox {
    /// The next item; None once the reader is gone and everything was taken.
    pub async fn recv(&self) -> Option<Outgoing> {
        self.rx.recv().await
    }

    /// The writer took an item's replies into its write buffer.
    pub fn taken(&self, held: Held) {
        self.budgets.credits.signal(held.replies);
        self.budgets.bytes.signal(held.bytes);
    }
}

impl Drop for Inbox {
    /// A reader waiting for credits or bytes learns that nobody writes any more.
    fn drop(&mut self) {
        self.budgets.credits.close();
        self.budgets.bytes.close();
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future;

    use super::*;

    fn on_executor<T>(work: impl std::future::Future<Output = T>) -> T {
        glommio::LocalExecutorBuilder::default()
            .make()
            .expect("a glommio executor (io_uring, RLIMIT_MEMLOCK >= 512 KiB)")
            .run(work)
    }

    fn budget(replies: u64, bytes: u64) -> Held {
        Held { replies, bytes }
    }

    fn bytes(item: &Outgoing) -> Vec<u8> {
        match item {
            Outgoing::Encoded { bytes, .. } => bytes.to_vec(),
            Outgoing::Reply { reply, .. } => format!("{reply:?}").into_bytes(),
        }
    }

    #[test]
    fn a_reader_out_of_credits_waits_for_the_writer() {
        on_executor(async {
            let (mut outbox, inbox) = new(budget(2, 1 << 20), budget(2, 1 << 20));
            outbox.push(Reply::OK, false).await.unwrap();
            outbox.push(Reply::Integer(1), false).await.unwrap();
            // The third reply has no credit: it hands over what is encoded
            // and waits.
            {
                let mut third = std::pin::pin!(outbox.push(Reply::Integer(2), false));
                assert!(future::poll_once(&mut third).await.is_none());
                let item = inbox.recv().await.unwrap();
                assert_eq!(bytes(&item), b"+OK\r\n:1\r\n");
                assert!(
                    future::poll_once(&mut third).await.is_none(),
                    "not taken yet"
                );
                inbox.taken(item.held());
                third.await.unwrap();
            }
            // The third reply waits encoded until the reader flushes.
            outbox.flush().await.unwrap();
            let item = inbox.recv().await.unwrap();
            assert_eq!(
                (bytes(&item), item.held()),
                (
                    b":2\r\n".to_vec(),
                    Held {
                        replies: 1,
                        bytes: 4
                    }
                )
            );
        });
    }

    #[test]
    fn a_deferred_reply_keeps_its_place() {
        on_executor(async {
            let (mut outbox, inbox) = new(budget(8, 1 << 20), budget(8, 1 << 20));
            outbox.push(Reply::OK, false).await.unwrap();
            outbox
                .push(Reply::later(async { Reply::Integer(7) }), false)
                .await
                .unwrap();
            outbox.push(Reply::Integer(8), false).await.unwrap();
            outbox.flush().await.unwrap();
            assert_eq!(bytes(&inbox.recv().await.unwrap()), b"+OK\r\n");
            let Outgoing::Reply { reply, .. } = inbox.recv().await.unwrap() else {
                panic!("the deferred reply travels as itself");
            };
            assert!(matches!(reply, Reply::Deferred(_)));
            assert_eq!(bytes(&inbox.recv().await.unwrap()), b":8\r\n");
        });
    }

    #[test]
    fn a_reader_waiting_for_credits_learns_the_writer_is_gone() {
        on_executor(async {
            let (mut outbox, inbox) = new(budget(1, 1 << 20), budget(1, 1 << 20));
            outbox.push(Reply::OK, false).await.unwrap();
            let mut second = std::pin::pin!(outbox.push(Reply::OK, false));
            assert!(future::poll_once(&mut second).await.is_none());
            drop(inbox);
            assert!(second.await.is_err());
        });
    }

    #[test]
    fn replies_are_bounded_in_bytes_too() {
        on_executor(async {
            // Plenty of credits, 20 bytes: two 8-byte replies fit, a third waits.
            let (mut outbox, inbox) = new(budget(100, 20), budget(100, 20));
            let bulk = || Reply::Bulk(bytes::Bytes::from_static(b"ab"));
            outbox.push(bulk(), false).await.unwrap();
            outbox.push(bulk(), false).await.unwrap();
            {
                let mut third = std::pin::pin!(outbox.push(bulk(), false));
                assert!(future::poll_once(&mut third).await.is_none());
                // What was encoded before it went to the writer.
                let item = inbox.recv().await.unwrap();
                assert_eq!(bytes(&item), b"$2\r\nab\r\n$2\r\nab\r\n");
                assert_eq!(
                    item.held(),
                    Held {
                        replies: 2,
                        bytes: 16
                    }
                );
                inbox.taken(item.held());
                third.await.unwrap();
            }
            // A reply larger than the whole budget takes all of it, and goes.
            let big = Reply::Bulk(bytes::Bytes::from(vec![b'x'; 100]));
            outbox.flush().await.unwrap();
            let item = inbox.recv().await.unwrap();
            inbox.taken(item.held());
            outbox.push(big, false).await.unwrap();
            outbox.flush().await.unwrap();
            let item = inbox.recv().await.unwrap();
            assert_eq!(
                item.held(),
                Held {
                    replies: 1,
                    bytes: 20
                }
            );
        });
    }

    #[test]
    fn a_connection_may_pipeline_more_once_it_grows() {
        on_executor(async {
            let (mut outbox, inbox) = new(budget(1, 1 << 20), budget(3, 1 << 20));
            outbox.push(Reply::OK, false).await.unwrap();
            {
                let mut second = std::pin::pin!(outbox.push(Reply::OK, false));
                assert!(future::poll_once(&mut second).await.is_none());
            }
            outbox.grow();
            outbox.push(Reply::OK, false).await.unwrap();
            outbox.push(Reply::OK, false).await.unwrap();
            drop(inbox);
        });
    }
}
