//! One client connection: read, parse, dispatch to the session, write replies.
//!
//! Two halves run concurrently in the connection's task. The reader parses
//! commands and hands the session's replies (some still deferred: produces waiting
//! for the broker) to a bounded FIFO (`outbox`); the writer takes them in order,
//! awaits the deferred ones and writes. So many produces are in flight per
//! connection while replies keep command order, and a client that stops reading
//! its replies stops the reader once the FIFO is full, instead of making the
//! gateway buffer.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::auth::Role;
use crate::errors;
use crate::metrics::ShardStats;
use crate::resp::{Limits, Parser};
use crate::session::{Backend, Reply, Session, Then};

use super::outbox::{self, Inbox, Outbox, Outgoing};
use super::shard::ShardContext;

/// Smallest and largest read; reads start small so that idle connections stay
/// cheap, and grow while the client keeps filling them.
const MIN_READ: usize = 1024;
const MAX_READ: usize = 64 * 1024;
/// A read buffer left larger than this after a big command is released.
const KEEP_BUFFER: usize = 256 * 1024;
/// Replies gathered before a write even if more are ready.
const WRITE_BATCH: usize = 64 * 1024;

/// A client's byte stream: a TCP socket, or a TLS session over one.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin {}
impl<S: AsyncRead + AsyncWrite + Unpin> ClientStream for S {}

/// Serves one client until it leaves or the gateway ends the connection.
pub async fn serve<S: ClientStream, B: Backend>(
    stream: S,
    peer: SocketAddr,
    shard: Rc<ShardContext<B>>,
) {
    let (reader, writer) = futures_lite::io::split(stream);
    // The connection ends when the reader returns: its outbox is dropped, and
    // the writer closes after the last queued reply.
    let (outbox, inbox) = outbox::new(shard.server.max_pipeline);
    let session = Session::new(Rc::clone(&shard.sessions), peer, shard.index);
    let stats = &shard.sessions.stats;
    let mut writing = std::pin::pin!(write_side(writer, inbox, stats));
    let reading = read_side(reader, session, outbox, &shard);
    // The writer ends first after a reply that closes the connection, or when
    // the client stopped taking replies; then reading stops too.
    let ended = future::or(
        async {
            (&mut writing).await;
            None
        },
        async { Some(reading.await) },
    )
    .await;
    // Otherwise the reader ended. Replies still pending are written unless the
    // client is gone: dropping them then cancels what waits for them (a
    // subscriber's long poll) at once.
    if ended == Some(ReadEnd::Finish) {
        writing.await;
    }
    tracing::debug!(%peer, "connection closed");
}

/// Why the reader stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadEnd {
    /// The client closed its side or the socket failed: nobody reads replies.
    ClientGone,
    /// The gateway ends the connection: pending replies are still written.
    Finish,
}

enum Event {
    Read(std::io::Result<usize>),
    Deadline,
    GrantsChanged,
    Shutdown,
}

async fn read_side<S: ClientStream, B: Backend>(
    reader: ReadHalf<S>,
    session: Session<B>,
    mut outbox: Outbox,
    shard: &ShardContext<B>,
) -> ReadEnd {
    let end = read_loop(reader, session, &mut outbox, shard).await;
    // Replies encoded but not yet handed over go out before the connection ends.
    let _ = outbox.flush().await;
    end
}

async fn read_loop<S: ClientStream, B: Backend>(
    mut reader: ReadHalf<S>,
    mut session: Session<B>,
    outbox: &mut Outbox,
    shard: &ShardContext<B>,
) -> ReadEnd {
    let server = &shard.server;
    let stats = &shard.sessions.stats;
    let mut parser = Parser::new(Limits {
        max_args: server.max_args,
        max_bulk_len: server.max_bulk_len,
        ..Limits::default()
    });
    let mut grants = shard.sessions.auth.watch();
    let mut shutdown = shard.shutdown.clone();
    let connected = Instant::now();
    let mut last_command = connected;
    let mut buf = BytesMut::new();
    let mut read_size = MIN_READ;

    loop {
        // Everything already buffered is dispatched before reading more.
        let mut commands = 0usize;
        loop {
            match parser.parse(&mut buf) {
                Ok(Some(command)) => {
                    commands += 1;
                    let step = session.handle(command);
                    let resp3 = session.resp3();
                    if outbox.push(step.reply, resp3).await.is_err() {
                        return ReadEnd::Finish;
                    }
                    match step.then {
                        Then::Continue => {}
                        Then::Close => return ReadEnd::Finish,
                        Then::RefuseRestAndClose => {
                            refuse_buffered(&mut parser, &mut buf, outbox, resp3).await;
                            return ReadEnd::Finish;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = outbox
                        .push(Reply::error(errors::protocol(&e)), session.resp3())
                        .await;
                    return ReadEnd::Finish;
                }
            }
        }
        // One clock read per batch of pipelined commands, not per command.
        if commands > 0 {
            last_command = Instant::now();
            session.active_at(last_command);
        }
        if outbox.flush().await.is_err() {
            return ReadEnd::Finish;
        }
        if buf.is_empty() && buf.capacity() > KEEP_BUFFER {
            buf = BytesMut::new();
        }

        let deadline = match session.role() {
            None => connected + server.auth_timeout,
            Some(Role::Pub) => last_command + server.pub_idle_timeout,
            Some(Role::Sub) => last_command + server.sub_idle_timeout,
        };
        let start = buf.len();
        let want = read_size.max(parser.bytes_needed().saturating_sub(start).min(MAX_READ));
        buf.resize(start + want, 0);
        let event = {
            let read = async { Event::Read(reader.read(&mut buf[start..]).await) };
            let timer = async {
                glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
                Event::Deadline
            };
            let grants_changed = async {
                // Only an authenticated connection has a grant to lose.
                if session.role().is_none() || grants.changed().await.is_err() {
                    future::pending::<()>().await;
                }
                Event::GrantsChanged
            };
            let stop = async {
                if shutdown.wait_for(|stopping| *stopping).await.is_err() {
                    future::pending::<()>().await;
                }
                Event::Shutdown
            };
            future::or(future::or(read, timer), future::or(grants_changed, stop)).await
        };
        match event {
            Event::Read(Ok(n)) if n > 0 => {
                stats.bytes_in(n);
                buf.truncate(start + n);
                read_size = if n == want {
                    (read_size * 2).min(MAX_READ)
                } else {
                    MIN_READ
                };
            }
            Event::Read(_) => return ReadEnd::ClientGone,
            Event::Deadline => {
                if session.role().is_none() {
                    let _ = outbox.push(Reply::error(errors::AUTH_TIMEOUT), false).await;
                }
                return ReadEnd::Finish;
            }
            Event::GrantsChanged => {
                buf.truncate(start);
                if let Some(error) = session.recheck() {
                    let _ = outbox.push(error, session.resp3()).await;
                    return ReadEnd::Finish;
                }
            }
            Event::Shutdown => return ReadEnd::Finish,
        }
    }
}

/// Answers `NOAUTH` to every complete command already received; nothing more
/// is read.
async fn refuse_buffered(
    parser: &mut Parser,
    buf: &mut BytesMut,
    outbox: &mut Outbox,
    resp3: bool,
) {
    while let Ok(Some(_)) = parser.parse(buf) {
        if outbox
            .push(Reply::error(errors::NOAUTH), resp3)
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn write_side<S: ClientStream>(mut writer: WriteHalf<S>, inbox: Inbox, stats: &ShardStats) {
    let mut out = BytesMut::new();
    loop {
        // Wait for the next reply only when nothing is waiting to be written;
        // otherwise write what is ready first, so a slow produce never holds back
        // the replies before it.
        let next = if out.is_empty() {
            inbox.recv().await
        } else {
            match future::poll_once(inbox.recv()).await {
                Some(next) => next,
                None => {
                    if flush(&mut writer, &mut out, stats).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        };
        let Some(item) = next else {
            break;
        };
        let credits = item.credits();
        match item {
            Outgoing::Encoded { bytes, .. } if out.is_empty() => out = bytes,
            Outgoing::Encoded { bytes, .. } => out.extend_from_slice(&bytes),
            Outgoing::Reply { reply, resp3 } => {
                let reply = match reply {
                    Reply::Deferred(mut pending) => match future::poll_once(&mut pending).await {
                        Some(reply) => reply,
                        None => {
                            if flush(&mut writer, &mut out, stats).await.is_err() {
                                return;
                            }
                            pending.await
                        }
                    },
                    ready => ready,
                };
                reply.encode(&mut out, resp3);
                if matches!(reply, Reply::ErrorThenClose(_)) {
                    break;
                }
            }
        }
        inbox.taken(credits);
        if out.len() >= WRITE_BATCH && flush(&mut writer, &mut out, stats).await.is_err() {
            return;
        }
    }
    let _ = flush(&mut writer, &mut out, stats).await;
    let _ = writer.close().await;
}

async fn flush<S: ClientStream>(
    writer: &mut WriteHalf<S>,
    out: &mut BytesMut,
    stats: &ShardStats,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    writer.write_all(out).await?;
    // TLS sessions flush their records here; plain sockets have nothing buffered.
    writer.flush().await?;
    stats.bytes_out(out.len());
    out.clear();
    if out.capacity() > KEEP_BUFFER {
        *out = BytesMut::new();
    }
    Ok(())
}

/// Refuses a connection over `max_connections`: one error line, then close.
pub async fn refuse<S: ClientStream>(mut stream: S, text: &str) {
    let mut out = BytesMut::new();
    crate::resp::reply::error(&mut out, text);
    let write = async {
        let _ = stream.write_all(&out).await;
        let _ = stream.close().await;
    };
    // Bounded: a refused client gets no more of our time than this.
    let _ = future::or(
        async {
            write.await;
            true
        },
        async {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            false
        },
    )
    .await;
}
