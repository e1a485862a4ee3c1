//! A shard: one glommio executor pinned to the pool's placement, with its own
//! listeners on the shared ports (SO_REUSEPORT lets the kernel spread
//! connections), serving every connection it accepts until shutdown.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use futures_lite::future;
use futures_rustls::TlsAcceptor;
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Gate;

use super::connection;
use crate::errors;
use crate::metrics::ShardStats;
use crate::shared::{ConnectionSlot, Shared};

/// Where a shard listens: the plaintext address, and the TLS one if configured.
#[derive(Clone)]
pub struct Listen {
    pub plain: SocketAddr,
    pub tls: Option<(SocketAddr, TlsAcceptor)>,
}

/// Runs one shard to completion. `bound` hears once whether the listeners are
/// up, so the process can report readiness (or fail) only when every shard is.
pub async fn run(shared: Arc<Shared>, listen: Listen, bound: mpsc::Sender<Result<()>>) {
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
    let connections = Gate::new();
    let stats = shared.metrics.for_this_shard();
    let plain_loop = accept_loop(&plain, None, &shared, &connections, &stats);
    let tls_loop = async {
        if let Some((listener, acceptor)) = &tls {
            accept_loop(listener, Some(acceptor), &shared, &connections, &stats).await;
        }
    };
    future::zip(plain_loop, tls_loop).await;
    drop((plain, tls));
    // Connections drain their in-flight produces on their own; this only bounds
    // how long the shard waits for the slowest one.
    let limit = shared.config.server.shutdown_timeout;
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
async fn accept_loop(
    listener: &TcpListener,
    tls: Option<&TlsAcceptor>,
    shared: &Arc<Shared>,
    connections: &Gate,
    stats: &Arc<ShardStats>,
) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                // Typically EMFILE: back off instead of spinning on the error.
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let (shared, stats) = (Arc::clone(shared), Arc::clone(stats));
        // Two task types, not one with a branch: a task is as large as its
        // largest state, and a TLS handshake's would make every plaintext
        // connection pay for it (about 5 KB each, measured at 10,000).
        let spawned = match tls {
            None => connections.spawn(plain_connection(stream, peer, shared, stats)),
            Some(acceptor) => connections.spawn(tls_connection(
                stream,
                peer,
                acceptor.clone(),
                shared,
                stats,
            )),
        };
        match spawned {
            Ok(task) => drop(task.detach()),
            Err(e) => tracing::warn!(error = %e, "cannot spawn connection task"),
        }
    }
}

/// Takes a slot in `max_connections`, counting the outcome; None when full.
fn take_slot(shared: &Arc<Shared>, stats: &ShardStats) -> Option<ConnectionSlot> {
    let slot = shared.try_connect();
    if slot.is_some() {
        stats.accepted();
    } else {
        stats.refused();
    }
    slot
}

/// One plaintext connection, from its slot in `max_connections` to its end.
async fn plain_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stats: Arc<ShardStats>,
) {
    match take_slot(&shared, &stats) {
        Some(_slot) => connection::serve(stream, peer, shared, stats).await,
        None => connection::refuse(stream, errors::MAX_CLIENTS).await,
    }
}

/// One TLS connection: its slot, its handshake, then the same as plaintext.
async fn tls_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    stats: Arc<ShardStats>,
) {
    let slot = take_slot(&shared, &stats);
    // The handshake counts against auth_timeout: a client that never
    // completes it is as slow as one that never sends AUTH.
    let limit = shared.config.server.auth_timeout;
    let handshake = future::or(async { Some(acceptor.accept(stream).await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await;
    match (handshake, slot) {
        (Some(Ok(stream)), Some(_slot)) => connection::serve(stream, peer, shared, stats).await,
        (Some(Ok(stream)), None) => connection::refuse(stream, errors::MAX_CLIENTS).await,
        (Some(Err(e)), _) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        (None, _) => tracing::debug!(%peer, ?limit, "TLS handshake not completed in time"),
    }
}
