//! One client connection: read, parse, dispatch to the session, write replies.
//!
//! Two halves run concurrently in the connection's task. The reader parses
//! commands and hands the session's replies (some still deferred: produces waiting
//! for the broker) to a bounded FIFO (`outbox`); the writer takes them in order,
//! awaits the deferred ones and writes. So many produces are in flight per
//! connection while replies keep command order, and a client that stops reading
//! its replies stops the reader once the FIFO is full, instead of making the
//! gateway buffer.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use tokio::sync::watch;

use crate::auth::Role;
use crate::config::ServerConfig;
use crate::errors;
use crate::metrics::ShardStats;
use crate::resp::{Limits, Parser};
use crate::session::budget::{HeldBytes, PROCESS_RECHECK};
use crate::session::{Backend, Reply, Session, Then};

use super::outbox::{self, Held, Inbox, Outbox, Outgoing, WriterGone};
use super::shard::ShardContext;

/// Smallest and largest read; reads start small so that idle connections stay
/// cheap, and grow while the client keeps filling them.
const MIN_READ: usize = 1024;
const MAX_READ: usize = 64 * 1024;
/// The bytes of an unfinished request a connection holds without counting
/// them against the process's budget (`max_buffered_bytes`).
const UNCOUNTED_REQUEST_BYTES: usize = 64 * 1024;
/// A read buffer left larger than this after a big command is released.
const KEEP_BUFFER: usize = 256 * 1024;
/// Replies gathered before a write even if more are ready.
const WRITE_BATCH: usize = 64 * 1024;
/// What replies a client may leave unread before AUTH: the setup chatter of
/// client libraries is a handful of short replies.
const UNAUTHENTICATED_REPLIES: Held = Held {
    replies: 16,
    bytes: 64 * 1024,
};

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
    let server = &shard.server;
    let (outbox, inbox) = outbox::new(
        UNAUTHENTICATED_REPLIES,
        Held {
            replies: server.max_pipeline as u64,
            bytes: server.max_connection_bytes as u64,
        },
    );
    let session = Session::new(Rc::clone(&shard.sessions), peer, shard.index);
    let stats = &shard.sessions.stats;
    let mut writing = std::pin::pin!(write_side(writer, inbox, stats, server.write_timeout));
    let reading = read_side(reader, session, outbox, &shard);
    // The writer ends first after a reply that closes the connection, or when
    // the client stopped taking replies (write_timeout); then reading stops too.
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
    // subscriber's long poll) at once. Bounded as a whole, not only per
    // write: a client reading a trickle must not keep its slot for hours.
    if ended == Some(ReadEnd::Finish) {
        let drained = async {
            (&mut writing).await;
        };
        future::or(
            drained,
            glommio::timer::sleep(shard.server.shutdown_timeout),
        )
        .await;
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

/// What ends a wait of the reader, besides what it waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interrupt {
    Deadline,
    GrantsChanged,
    Shutdown,
}

/// The reader's deadline and the signals that end its waits.
struct Watch {
    deadline: Instant,
    /// Only an authenticated connection has a grant to lose.
    authenticated: bool,
    grants: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
}

impl Watch {
    /// The first of: the deadline, a change of the grants, shutdown.
    async fn interrupt(&mut self) -> Interrupt {
        let deadline = self.deadline;
        let timer = async {
            glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
            Interrupt::Deadline
        };
        let authenticated = self.authenticated;
        let grants = &mut self.grants;
        let grants_changed = async {
            if !authenticated || grants.changed().await.is_err() {
                future::pending::<()>().await;
            }
            Interrupt::GrantsChanged
        };
        let shutdown = &mut self.shutdown;
        let stop = async {
            if shutdown.wait_for(|stopping| *stopping).await.is_err() {
                future::pending::<()>().await;
            }
            Interrupt::Shutdown
        };
        future::or(timer, future::or(grants_changed, stop)).await
    }
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

/// The parser limits once authenticated. A whole command may be one largest
/// argument plus 64 KiB (the key, the metadata, the framing): what a request
/// costs in the read buffer is bounded by what a SET needs.
fn authenticated_limits(server: &ServerConfig) -> Limits {
    Limits {
        max_args: server.max_args,
        max_bulk_len: server.max_bulk_len,
        max_request_len: server.max_bulk_len + 64 * 1024,
        ..Limits::default()
    }
}

async fn read_loop<S: ClientStream, B: Backend>(
    mut reader: ReadHalf<S>,
    mut session: Session<B>,
    outbox: &mut Outbox,
    shard: &ShardContext<B>,
) -> ReadEnd {
    let server = &shard.server;
    let stats = &shard.sessions.stats;
    let mut parser = Parser::new(authenticated_limits(server).before_auth());
    let connected = Instant::now();
    let mut watch = Watch {
        deadline: connected + server.auth_timeout,
        authenticated: false,
        grants: shard.sessions.auth.watch(),
        shutdown: shard.shutdown.clone(),
    };
    let mut last_command = connected;
    let mut buf = BytesMut::new();
    let mut read_size = MIN_READ;
    // What the request being read needs past its first 64 KiB, reserved in
    // the process's budget (`max_buffered_bytes`) until it is parsed.
    let mut reserved: Option<(usize, HeldBytes)> = None;

    loop {
        // Everything already buffered is dispatched before reading more,
        // unless the app's rate cap pauses the connection.
        let mut commands = 0usize;
        let mut paused_with_commands = false;
        loop {
            // Paused (by this batch, or still, after an interrupt): nothing
            // more is dispatched until the pause ends.
            if session.is_paused() {
                paused_with_commands = true;
                break;
            }
            match parser.parse(&mut buf) {
                Ok(Some(command)) => {
                    commands += 1;
                    let step = session.handle(command);
                    if !watch.authenticated && session.role().is_some() {
                        // Authenticated by this command: the limits of a client
                        // that proved who it is, from the next command on.
                        watch.authenticated = true;
                        parser.set_limits(authenticated_limits(server));
                        outbox.grow();
                        // The auth timeout no longer applies; the idle one
                        // runs from now.
                        watch.deadline = idle_deadline(server, session.role(), Instant::now());
                    }
                    let resp3 = session.resp3();
                    if let Err(end) =
                        push(outbox, step.reply, resp3, &mut session, &mut watch).await
                    {
                        return end;
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
                    last_word(outbox, Reply::error(errors::protocol(&e)), session.resp3()).await;
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
        if buf.is_empty() {
            reserved = None;
        }
        watch.deadline = match session.role() {
            None => connected + server.auth_timeout,
            role => idle_deadline(server, role, last_command),
        };
        // A connection paused by its app's rate cap is not idle: its idle
        // time starts when the pause ends.
        if let Some(until) = session.paused_until() {
            watch.deadline = watch
                .deadline
                .max(idle_deadline(server, session.role(), until));
        }
        // Produces not yet handed to Kafka hold their bytes: past the
        // connection's budget, nothing more is read until they are.
        let room = if session.has_room_to_read() {
            Ok(())
        } else {
            until(session.room_to_read(), &mut watch).await
        };
        // The pause is over: the commands it held go first, then reading.
        if paused_with_commands && room.is_ok() {
            continue;
        }
        // A request that needs more than 64 KiB is admitted whole, or waits
        // holding none of it.
        let needs = buf
            .len()
            .max(parser.bytes_needed())
            .saturating_sub(UNCOUNTED_REQUEST_BYTES);
        if needs == 0 {
            reserved = None;
        }
        let room = match room {
            Ok(()) if needs > reserved.as_ref().map_or(0, |(n, _)| *n) => {
                reserved = None;
                until(admit(&session, needs), &mut watch)
                    .await
                    .map(|held| reserved = Some((needs, held)))
            }
            other => other,
        };
        let event = match room {
            Err(interrupt) => interrupt,
            Ok(()) => {
                let start = buf.len();
                let want = read_size.max(parser.bytes_needed().saturating_sub(start).min(MAX_READ));
                buf.resize(start + want, 0);
                match until(reader.read(&mut buf[start..]), &mut watch).await {
                    Ok(Ok(n)) if n > 0 => {
                        stats.bytes_in(n);
                        buf.truncate(start + n);
                        read_size = if n == want {
                            (read_size * 2).min(MAX_READ)
                        } else {
                            MIN_READ
                        };
                        continue;
                    }
                    Ok(_) => return ReadEnd::ClientGone,
                    Err(interrupt) => {
                        buf.truncate(start);
                        interrupt
                    }
                }
            }
        };
        match event {
            Interrupt::Deadline => {
                if session.role().is_none() {
                    last_word(outbox, Reply::error(errors::AUTH_TIMEOUT), false).await;
                }
                return ReadEnd::Finish;
            }
            Interrupt::GrantsChanged => {
                if let Some(error) = session.recheck() {
                    last_word(outbox, error, session.resp3()).await;
                    return ReadEnd::Finish;
                }
            }
            Interrupt::Shutdown => return ReadEnd::Finish,
        }
    }
}

/// Reserves `bytes` of the process's budget for a request being read,
/// waiting (looking again every few milliseconds: the budget is given back
/// on other threads) until they fit.
async fn admit<B: Backend>(session: &Session<B>, bytes: usize) -> HeldBytes {
    loop {
        if let Some(held) = session.try_hold_for_reading(bytes) {
            return held;
        }
        glommio::timer::sleep(PROCESS_RECHECK).await;
    }
}

/// When an authenticated connection idle since `since` is closed.
fn idle_deadline(server: &ServerConfig, role: Option<Role>, since: Instant) -> Instant {
    match role {
        Some(Role::Sub) => since + server.sub_idle_timeout,
        _ => since + server.pub_idle_timeout,
    }
}

/// Waits for `work`, unless the deadline, a change of the grants or
/// shutdown comes first.
async fn until<T>(work: impl Future<Output = T>, watch: &mut Watch) -> Result<T, Interrupt> {
    future::or(async { Ok(work.await) }, async {
        Err(watch.interrupt().await)
    })
    .await
}

/// Queues one reply. A client that does not read its replies makes this wait
/// for credits or bytes; the connection's deadline, a revocation and shutdown
/// still end the wait, and with it the connection.
async fn push<B: Backend>(
    outbox: &mut Outbox,
    reply: Reply,
    resp3: bool,
    session: &mut Session<B>,
    watch: &mut Watch,
) -> Result<(), ReadEnd> {
    let mut pushing = std::pin::pin!(outbox.push(reply, resp3));
    // Nearly always there is room: no timer is armed for that.
    if let Some(pushed) = future::poll_once(&mut pushing).await {
        return pushed.map_err(|WriterGone| ReadEnd::Finish);
    }
    loop {
        match until(&mut pushing, watch).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(WriterGone)) => return Err(ReadEnd::Finish),
            // A grant that still holds: keep waiting. One that is gone ends
            // the connection; its error cannot be queued (no room), the close
            // says it.
            Err(Interrupt::GrantsChanged) if session.recheck().is_none() => {}
            // Shutting down: the replies already queued (acknowledged
            // produces among them) are still written, within the shutdown
            // and write timeouts.
            Err(Interrupt::Shutdown) => return Err(ReadEnd::Finish),
            // The deadline passed, or the grant is gone, with the client not
            // reading: nothing more is owed to it.
            Err(_) => return Err(ReadEnd::ClientGone),
        }
    }
}

/// Queues the reply a connection ends with, if there is room for it now: a
/// client that does not read its replies gets the close without it, not a
/// wait.
async fn last_word(outbox: &mut Outbox, reply: Reply, resp3: bool) {
    let _ = future::poll_once(outbox.push(reply, resp3)).await;
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

/// The writer's half: its socket, what is ready to write, and how long a
/// write may go without progress.
struct Writer<'a, S> {
    socket: WriteHalf<S>,
    out: BytesMut,
    stats: &'a ShardStats,
    timeout: Duration,
}

/// The client took nothing for write_timeout.
#[derive(Debug)]
struct WriteStalled;

async fn write_side<S: ClientStream>(
    socket: WriteHalf<S>,
    inbox: Inbox,
    stats: &ShardStats,
    timeout: Duration,
) {
    let mut w = Writer {
        socket,
        out: BytesMut::new(),
        stats,
        timeout,
    };
    loop {
        // Wait for the next reply only when nothing is waiting to be written;
        // otherwise write what is ready first, so a slow produce never holds back
        // the replies before it.
        let next = if w.out.is_empty() {
            inbox.recv().await
        } else {
            match future::poll_once(inbox.recv()).await {
                Some(next) => next,
                None => {
                    if w.flush().await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        };
        let Some(item) = next else {
            break;
        };
        let held = item.held();
        match item {
            Outgoing::Encoded { bytes, .. } if w.out.is_empty() => w.out = bytes,
            Outgoing::Encoded { bytes, .. } => w.out.extend_from_slice(&bytes),
            Outgoing::Reply { reply, resp3 } => {
                let reply = match reply {
                    Reply::Deferred(mut pending) => match future::poll_once(&mut pending).await {
                        Some(reply) => reply,
                        None => {
                            if w.flush().await.is_err() {
                                return;
                            }
                            pending.await
                        }
                    },
                    ready => ready,
                };
                reply.encode(&mut w.out, resp3);
                if matches!(reply, Reply::ErrorThenClose(_)) {
                    break;
                }
            }
        }
        inbox.taken(held);
        if w.out.len() >= WRITE_BATCH && w.flush().await.is_err() {
            return;
        }
    }
    if w.flush().await.is_ok() {
        // A TLS close_notify is a write too: bounded the same way.
        let close = async {
            let _ = w.socket.close().await;
        };
        let _ = future::or(close, glommio::timer::sleep(w.timeout)).await;
    }
}

impl<S: ClientStream> Writer<'_, S> {
    /// Writes everything ready. Fails when the client took nothing for
    /// `timeout` (it does not read its replies) or the socket failed.
    async fn flush(&mut self) -> Result<(), WriteStalled> {
        let mut written = 0;
        while written < self.out.len() {
            let write = async { self.socket.write(&self.out[written..]).await.ok() };
            let stalled = async {
                glommio::timer::sleep(self.timeout).await;
                None
            };
            match future::or(write, stalled).await {
                Some(n) if n > 0 => written += n,
                _ => return Err(WriteStalled),
            }
        }
        // TLS sessions flush their records here; plain sockets have nothing
        // buffered.
        let flush = async { self.socket.flush().await.is_ok() };
        let stalled = async {
            glommio::timer::sleep(self.timeout).await;
            false
        };
        if !future::or(flush, stalled).await {
            return Err(WriteStalled);
        }
        self.stats.bytes_out(self.out.len());
        self.out.clear();
        if self.out.capacity() > KEEP_BUFFER {
            self.out = BytesMut::new();
        }
        Ok(())
    }
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
