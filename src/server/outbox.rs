//! The ordered queue from a connection's reader to its writer.
//!
//! Replies that are ready when their command runs (PING, errors, commits, ...)
//! are encoded by the reader straight into a chunk, and a chunk travels the
//! channel as one item: one channel operation per read instead of one per
//! command, which is most of what a pipelined PING costs. A reply that is not
//! ready (a produce waiting for its acknowledgement) travels as itself, after
//! the chunk before it, so replies keep command order.
//!
//! Credits bound the memory a client can cost by not reading: every command
//! takes one credit before its reply is queued, and the writer gives the
//! credits back once the replies are in its write buffer. A reader out of
//! credits waits, and stops reading from the socket meanwhile.

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
    /// Replies already encoded, in order; `replies` credits to give back.
    Encoded { bytes: BytesMut, replies: u64 },
    /// A reply encoded by the writer: a deferred one once it completes, or one
    /// that ends the connection.
    Reply { reply: Reply, resp3: bool },
}

impl Outgoing {
    /// The credits this item holds.
    pub fn credits(&self) -> u64 {
        match self {
            Outgoing::Encoded { replies, .. } => *replies,
            Outgoing::Reply { .. } => 1,
        }
    }
}

/// The writer went away: nothing more can be queued.
#[derive(Debug)]
pub struct WriterGone;

/// The reader's end.
pub struct Outbox {
    tx: LocalSender<Outgoing>,
    credits: Rc<Semaphore>,
    chunk: BytesMut,
    chunk_replies: u64,
}

/// The writer's end.
pub struct Inbox {
    rx: LocalReceiver<Outgoing>,
    credits: Rc<Semaphore>,
}

/// A queue that holds at most `max_unanswered` replies not yet taken by the
/// writer.
pub fn new(max_unanswered: usize) -> (Outbox, Inbox) {
    let credits = Rc::new(Semaphore::new(max_unanswered as u64));
    // Every item holds at least one credit, so the channel never fills first.
    let (tx, rx) = local_channel::new_bounded(max_unanswered);
    (
        Outbox {
            tx,
            credits: Rc::clone(&credits),
            chunk: BytesMut::new(),
            chunk_replies: 0,
        },
        Inbox { rx, credits },
    )
}

impl Outbox {
    /// Queues the reply of one command.
    pub async fn push(&mut self, reply: Reply, resp3: bool) -> Result<(), WriterGone> {
        if !self.credits.try_acquire(1).map_err(|_| WriterGone)? {
            // The writer is behind: let it have what is encoded so far.
            self.flush().await?;
            self.credits.acquire(1).await.map_err(|_| WriterGone)?;
        }
        match reply {
            Reply::Deferred(_) | Reply::ErrorThenClose(_) => {
                self.flush().await?;
                self.send(Outgoing::Reply { reply, resp3 }).await
            }
            ready => {
                ready.encode(&mut self.chunk, resp3);
                self.chunk_replies += 1;
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
        if self.chunk_replies == 0 {
            return Ok(());
        }
        let item = Outgoing::Encoded {
            bytes: self.chunk.split(),
            replies: std::mem::take(&mut self.chunk_replies),
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

    /// The writer took the replies of `item` into its write buffer.
    pub fn taken(&self, credits: u64) {
        self.credits.signal(credits);
    }
}

impl Drop for Inbox {
    /// A reader waiting for credits learns that nobody writes any more.
    fn drop(&mut self) {
        self.credits.close();
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

    fn bytes(item: &Outgoing) -> Vec<u8> {
        match item {
            Outgoing::Encoded { bytes, .. } => bytes.to_vec(),
            Outgoing::Reply { reply, .. } => format!("{reply:?}").into_bytes(),
        }
    }

    #[test]
    fn a_reader_out_of_credits_waits_for_the_writer() {
        on_executor(async {
            let (mut outbox, inbox) = new(2);
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
                inbox.taken(item.credits());
                third.await.unwrap();
            }
            // The third reply waits encoded until the reader flushes.
            outbox.flush().await.unwrap();
            let item = inbox.recv().await.unwrap();
            assert_eq!((bytes(&item), item.credits()), (b":2\r\n".to_vec(), 1));
        });
    }

    #[test]
    fn a_deferred_reply_keeps_its_place() {
        on_executor(async {
            let (mut outbox, inbox) = new(8);
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
            let (mut outbox, inbox) = new(1);
            outbox.push(Reply::OK, false).await.unwrap();
            let mut second = std::pin::pin!(outbox.push(Reply::OK, false));
            assert!(future::poll_once(&mut second).await.is_none());
            drop(inbox);
            assert!(second.await.is_err());
        });
    }
}
