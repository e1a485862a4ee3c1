//! What a command answers, before it is encoded. A reply may be deferred (a
//! produce waiting for the broker's acknowledgement); the connection writes
//! replies in command order regardless.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};

use crate::resp::reply as resp;

pub enum Reply {
    Simple(&'static str),
    Error(Cow<'static, str>),
    Integer(i64),
    Bulk(Bytes),
    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    Null,
    Array(Vec<Reply>),
    /// Key/value pairs: a flat array in RESP2, a map in RESP3.
    Map(Vec<(Reply, Reply)>),
    /// An error after which the connection closes.
    ErrorThenClose(Cow<'static, str>),
    /// Answered later; the future never fails, it resolves to an error reply.
    Deferred(Pin<Box<dyn Future<Output = Reply>>>),
}

impl Reply {
    pub const OK: Reply = Reply::Simple("OK");

    pub fn error(text: impl Into<Cow<'static, str>>) -> Reply {
        Reply::Error(text.into())
    }

    /// Whether this is an error reply (a deferred one is not, yet).
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_) | Reply::ErrorThenClose(_))
    }

    /// Starts `work` now (its first poll runs synchronously, so a produce is
    /// enqueued before the next pipelined command is even parsed) and defers the
    /// rest. Returns the reply directly when it completed at once.
    pub fn start(work: impl Future<Output = Reply> + 'static) -> Reply {
        let mut work: Pin<Box<dyn Future<Output = Reply>>> = Box::pin(work);
        // A no-op waker is enough: whoever awaits the Deferred reply polls again
        // with a real one, and every future in here re-registers on each poll.
        match work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(reply) => reply,
            Poll::Pending => Reply::Deferred(work),
        }
    }

    /// Defers `work` without starting it: it starts when the connection's
    /// writer gets to this reply, after every reply before it. A client that
    /// stops reading stops the writer, and so the work.
    pub fn later(work: impl Future<Output = Reply> + 'static) -> Reply {
        Reply::Deferred(Box::pin(work))
    }

    /// Encodes a reply that is not deferred (those must be awaited first), in
    /// RESP3 when the client asked for it with `HELLO 3`.
    pub fn encode(&self, out: &mut BytesMut, resp3: bool) {
        match self {
            Reply::Simple(s) => resp::simple(out, s),
            Reply::Error(e) | Reply::ErrorThenClose(e) => resp::error(out, e),
            Reply::Integer(n) => resp::integer(out, *n),
            Reply::Bulk(b) => resp::bulk(out, b),
            Reply::Null if resp3 => resp::null(out),
            Reply::Null => resp::null_bulk(out),
            Reply::Array(items) => {
                resp::array_header(out, items.len());
                for item in items {
                    item.encode(out, resp3);
                }
            }
            Reply::Map(pairs) => {
                if resp3 {
                    resp::map_header(out, pairs.len());
                } else {
                    resp::array_header(out, pairs.len() * 2);
                }
                for (key, value) in pairs {
                    key.encode(out, resp3);
                    value.encode(out, resp3);
                }
            }
            Reply::Deferred(_) => {
                debug_assert!(false, "a deferred reply was encoded before it completed");
                resp::error(out, crate::errors::INTERNAL);
            }
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Deferred(_) => f.write_str("Deferred"),
            other => {
                let mut out = BytesMut::new();
                other.encode(&mut out, false);
                write!(f, "{:?}", String::from_utf8_lossy(&out))
            }
        }
    }
}
