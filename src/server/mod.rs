//! The RESP server: a pool of shards (glommio executors, one per core by default)
//! that accept, parse and answer client connections.

pub mod connection;
mod outbox;
pub mod shard;
#[cfg(test)]
mod tests;
mod tls;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Context, Result};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles};
use socket2::{Domain, Socket, Type};
use tokio::sync::watch;

use crate::auth::limiter::FailedAuthLimiter;
use crate::auth::AuthHub;
use crate::clients::Clients;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::session::{self, Backend};
use shard::ShardContext;

/// Registered io_uring buffers per executor: a network server reads into its own
/// buffers, so glommio's minimum is plenty.
const IO_MEMORY: usize = 64 * 1024;

/// The running shards.
pub struct Server {
    handles: PoolThreadHandles<()>,
    pub addr: SocketAddr,
    /// The TLS listener's address, when `[server.tls]` is configured.
    pub tls_addr: Option<SocketAddr>,
    pub shards: usize,
}

/// What the shards are made of; each shard adds its own `Backend`.
#[derive(Clone)]
pub struct Parts {
    pub server: ServerConfig,
    pub shards: usize,
    pub auth: Arc<AuthHub>,
    pub auth_failures: Arc<FailedAuthLimiter>,
    pub clients: Arc<Clients>,
    pub metrics: Arc<Metrics>,
    /// The process's budget for request bytes held (`max_buffered_bytes`).
    pub buffered: Arc<session::budget::ProcessBudget>,
    pub shutdown: watch::Receiver<bool>,
    /// Set to the bound addresses (port 0 resolved) before any shard accepts.
    pub listening: Arc<OnceLock<(SocketAddr, Option<SocketAddr>)>>,
}

impl Server {
    /// Starts the shards and returns once every one of them listens.
    /// `backend` makes each shard's way to Kafka, given the shard's index.
    pub fn start<B, F>(parts: Parts, backend: F) -> Result<Server>
    where
        B: Backend + 'static,
        F: Fn(usize) -> B + Clone + Send + Sync + 'static,
    {
        let shards = parts.shards;
        // Port 0: one port is picked here and held (bound, not listening, so it
        // takes no connections) while every shard binds it with SO_REUSEPORT.
        let (addr, placeholder) = resolve_port(parts.server.addr)?;
        let (tls, tls_placeholder) = match &parts.server.tls {
            Some(config) => {
                let acceptor = tls::acceptor(config)?;
                let (addr, placeholder) = resolve_port(config.addr)?;
                (Some((addr, acceptor)), placeholder)
            }
            None => (None, None),
        };
        let tls_addr = tls.as_ref().map(|(addr, _)| *addr);
        let _ = parts.listening.set((addr, tls_addr));
        let listen = shard::Listen { plain: addr, tls };
        let (bound_tx, bound_rx) = mpsc::channel();
        // Each shard takes the next index as it starts: the index, not
        // glommio's executor id, names a shard's counters and producer.
        let next_index = Arc::new(AtomicUsize::new(0));
        // Unbound: the kernel schedules the shards. librdkafka's threads and
        // the control thread share the same cores. Pinning each shard to a
        // CPU (MaxSpread) measured no different on 2 cores (docs/benchmarks.md,
        // "Shard placement"), so the simpler placement stays.
        let handles = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(shards))
            .name("databus-shard")
            .io_memory(IO_MEMORY)
            .on_all_shards(move || {
                let index = next_index.fetch_add(1, Ordering::Relaxed);
                let context = shard_context(&parts, index, backend(index));
                shard::run(context, listen.clone(), bound_tx.clone())
            })
            .map_err(|e| anyhow!("cannot start the shard executors: {e}"))?;
        for _ in 0..shards {
            bound_rx
                .recv()
                .map_err(|_| anyhow!("a shard stopped before it could listen"))??;
        }
        drop((placeholder, tls_placeholder));
        Ok(Server {
            handles,
            addr,
            tls_addr,
            shards,
        })
    }

    /// Waits for every shard to finish (after shutdown was signalled).
    pub fn join(self) {
        for result in self.handles.join_all() {
            if let Err(e) = result {
                tracing::error!(error = %e, "shard ended with an error");
            }
        }
    }
}

fn shard_context<B: Backend>(parts: &Parts, index: usize, backend: B) -> ShardContext<B> {
    let sessions = session::Handles {
        backend,
        auth: Arc::clone(&parts.auth),
        auth_failures: Arc::clone(&parts.auth_failures),
        clients: Arc::clone(&parts.clients),
        stats: parts.metrics.for_shard(index),
        buffered: Arc::clone(&parts.buffered),
        limits: session::Limits {
            max_value_bytes: parts.server.max_value_bytes,
            produce_timeout: parts.server.produce_timeout,
            max_connection_bytes: parts.server.max_connection_bytes,
        },
    };
    ShardContext {
        index,
        server: parts.server.clone(),
        sessions: Rc::new(sessions),
        clients: Arc::clone(&parts.clients),
        shutdown: parts.shutdown.clone(),
    }
}

fn resolve_port(addr: SocketAddr) -> Result<(SocketAddr, Option<Socket>)> {
    if addr.port() != 0 {
        return Ok((addr, None));
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind {addr}"))?;
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| anyhow!("bound address is not an IP address"))?;
    Ok((local, Some(socket)))
}
