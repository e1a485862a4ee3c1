//! A shard: one glommio executor with its own listeners on the shared ports
//! (SO_REUSEPORT lets the kernel spread connections), serving every
//! connection it accepts until shutdown.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use futures_lite::future;
use futures_rustls::TlsAcceptor;
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Gate;
use tokio::sync::watch;

use super::connection;
use crate::clients::{Clients, Slot};
use crate::config::ServerConfig;
use crate::errors;
use crate::session::{self, Backend};

/// Where a shard listens: the plaintext address, and the TLS one if configured.
#[derive(Clone)]
pub struct Listen {
    pub plain: SocketAddr,
    pub tls: Option<(SocketAddr, TlsAcceptor)>,
}

/// What a shard and its connections are given.
pub struct ShardContext<B: Backend> {
    /// This shard's index, 0-based: which counters and producer it uses.
    pub index: usize,
    /// The `[server]` settings.
    pub server: ServerConfig,
    /// What every session of this shard is handed.
    pub sessions: Rc<session::Handles<B>>,
    /// The slots of `max_connections`.
    pub clients: Arc<Clients>,
    /// Turns true once when the process starts shutting down.
    pub shutdown: watch::Receiver<bool>,
}

/// Runs one shard to completion. `bound` hears once whether the listeners are
/// up, so the process can report readiness (or fail) only when every shard is.
pub async fn run<B: Backend + 'static>(
    shard: ShardContext<B>,
    listen: Listen,
    bound: mpsc::Sender<Result<()>>,
) {
    let bind = |addr: SocketAddr| {
        TcpListener::bind(addr).map_err(|e| anyhow!("cannot listen on {addr}: {e}"))
    };
    let listeners = bind(listen.plain).and_then(|plain| match &listen.tls {
        Some((addr, acceptor)) => Ok((plain, Some((bind(*addr)?, acceptor.clone())))),
        None => Ok((plain, None)),
    });
    let (plain, tls) = match listeners {
        Ok(listeners) => {
            let _ = bound.send(Ok(()));
            listeners
        }
        Err(e) => {
            let _ = bound.send(Err(e));
            return;
        }
    };
    let shard = Rc::new(shard);
    let connections = Gate::new();
    let plain_loop = accept_loop(&plain, None, &shard, &connections);
    let tls_loop = async {
        if let Some((listener, acceptor)) = &tls {
            accept_loop(listener, Some(acceptor), &shard, &connections).await;
        }
    };
    future::zip(plain_loop, tls_loop).await;
    drop((plain, tls));
    // Connections drain their in-flight produces on their own; this only bounds
    // how long the shard waits for the slowest one.
    let limit = shard.server.shutdown_timeout;
    let closed = future::or(async { connections.close().await.is_ok() }, async {
        glommio::timer::sleep(limit).await;
        false
    })
    .await;
    if !closed {
        tracing::warn!(?limit, "connections still open at the shutdown limit");
    }
}

/// Accepts on `listener` until shutdown; each connection runs in its own task
/// under `connections`.
async fn accept_loop<B: Backend + 'static>(
    listener: &TcpListener,
    tls: Option<&TlsAcceptor>,
    shard: &Rc<ShardContext<B>>,
    connections: &Gate,
) {
    let mut shutdown = shard.shutdown.clone();
    // A descriptor held in reserve: when the process runs out, it is let go
    // for long enough to accept one waiting client and tell it why.
    let mut reserve = std::fs::File::open("/dev/null").ok();
    let mut failures = AcceptFailures::default();
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(stream)) => {
                failures.succeeded();
                stream
            }
            Some(Err(e)) => {
                let e = std::io::Error::from(e);
                let out_of_descriptors =
                    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                // Logged at a bounded rate: a flood of clients must not
                // flood the log.
                let pause = failures.failed(&e);
                if out_of_descriptors {
                    shard.clients.out_of_descriptors();
                }
                if out_of_descriptors && reserve.take().is_some() {
                    refuse_one(listener, tls.is_some(), &shard.shutdown).await;
                    reserve = std::fs::File::open("/dev/null").ok();
                    // A client was answered: no reason to wait.
                    continue;
                }
                if reserve.is_none() {
                    reserve = std::fs::File::open("/dev/null").ok();
                }
                // Back off instead of spinning on a shortage; an error of one
                // connection (reset before it was taken) is no reason to.
                let shortage = out_of_descriptors
                    || matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::ENOMEM));
                if shortage {
                    glommio::timer::sleep(pause).await;
                }
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let shard = Rc::clone(shard);
        // Two task types, not one with a branch: a task is as large as its
        // largest state, and a TLS handshake's would make every plaintext
        // connection pay for it (about 5 KB each, measured at 10,000).
        let spawned = match tls {
            None => connections.spawn(plain_connection(stream, peer, shard)),
            Some(acceptor) => {
                connections.spawn(tls_connection(stream, peer, acceptor.clone(), shard))
            }
        };
        match spawned {
            Ok(task) => drop(task.detach()),
            Err(e) => tracing::warn!(error = %e, "cannot spawn connection task"),
        }
    }
}

/// With the reserve descriptor let go: accepts one waiting client and
/// answers it `max number of clients reached`. Bounded: a client that went
/// away meanwhile is not waited for.
async fn refuse_one(listener: &TcpListener, tls: bool, shutdown: &watch::Receiver<bool>) {
    let accept = async { listener.accept().await.ok() };
    let gone = async {
        glommio::timer::sleep(Duration::from_millis(100)).await;
        None
    };
    if let Some(stream) = future::or(accept, gone).await {
        // A TLS client would not understand plain RESP: it gets the close.
        if !tls && !*shutdown.borrow() {
            connection::refuse(stream, errors::MAX_CLIENTS).await;
        }
    }
}

/// Accept failures in a row: how long to pause, and when to log.
#[derive(Default)]
struct AcceptFailures {
    in_a_row: u32,
    last_logged: Option<std::time::Instant>,
    not_logged: u64,
}

/// Accept failures are logged at most this often.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl AcceptFailures {
    fn succeeded(&mut self) {
        self.in_a_row = 0;
    }

    /// Logs `error` unless one was logged within the interval; returns the
    /// pause before the next accept: 10 ms, doubling, at most 1 s.
    fn failed(&mut self, error: &std::io::Error) -> Duration {
        let now = std::time::Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_LOG_INTERVAL)
        {
            tracing::warn!(%error, not_logged = self.not_logged,
                "accept failed (when out of descriptors: raise RLIMIT_NOFILE or lower \
                 server.max_connections / server.max_subscribers)");
            self.last_logged = Some(now);
            self.not_logged = 0;
        } else {
            self.not_logged += 1;
        }
        self.in_a_row = self.in_a_row.saturating_add(1);
        (Duration::from_millis(10) * 2u32.saturating_pow(self.in_a_row - 1).min(100))
            .min(Duration::from_secs(1))
    }
}

/// Takes a slot in `max_connections`, counting the outcome; None when full.
fn take_slot<B: Backend>(shard: &ShardContext<B>) -> Option<Slot> {
    let slot = shard.clients.try_connect();
    let stats = &shard.sessions.stats;
    if slot.is_some() {
        stats.accepted();
    } else {
        stats.refused();
    }
    slot
}

/// One plaintext connection, from its slot in `max_connections` to its end.
async fn plain_connection<B: Backend>(
    stream: TcpStream,
    peer: SocketAddr,
    shard: Rc<ShardContext<B>>,
) {
    match take_slot(&shard) {
        Some(_slot) => connection::serve(stream, peer, shard).await,
        None => connection::refuse(stream, errors::MAX_CLIENTS).await,
    }
}

/// One TLS connection: its slot, its handshake, then the same as plaintext.
async fn tls_connection<B: Backend>(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shard: Rc<ShardContext<B>>,
) {
    let slot = take_slot(&shard);
    // The handshake counts against auth_timeout: a client that never
    // completes it is as slow as one that never sends AUTH.
    let limit = shard.server.auth_timeout;
    let handshake = future::or(async { Some(acceptor.accept(stream).await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await;
    match (handshake, slot) {
        (Some(Ok(stream)), Some(_slot)) => connection::serve(stream, peer, shard).await,
        (Some(Ok(stream)), None) => connection::refuse(stream, errors::MAX_CLIENTS).await,
        (Some(Err(e)), _) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        (None, _) => tracing::debug!(%peer, ?limit, "TLS handshake not completed in time"),
    }
}
