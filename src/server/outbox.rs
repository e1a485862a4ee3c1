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
