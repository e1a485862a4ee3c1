//! The RESP server: a pool of shards (glommio executors, one per core by default)
//! that accept, parse and answer client connections.

pub mod connection;
mod outbox;
pub mod shard;
mod tls;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles};
use socket2::{Domain, Socket, Type};

use crate::shared::Shared;

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

impl Server {
    /// Starts the shards and returns once every one of them listens.
    pub fn start(shared: Arc<Shared>) -> Result<Server> {
        let shards = shared.config.shard_count();
        // Port 0: one port is picked here and held (bound, not listening, so it
        // takes no connections) while every shard binds it with SO_REUSEPORT.
        let (addr, placeholder) = resolve_port(shared.config.server.addr)?;
        let (tls, tls_placeholder) = match &shared.config.server.tls {
            Some(config) => {
                let acceptor = tls::acceptor(config)?;
                let (addr, placeholder) = resolve_port(config.addr)?;
                (Some((addr, acceptor)), placeholder)
            }
            None => (None, None),
        };
        let tls_addr = tls.as_ref().map(|(addr, _)| *addr);
        let _ = shared.listening.set((addr, tls_addr));
        let listen = shard::Listen { plain: addr, tls };
        let (bound_tx, bound_rx) = mpsc::channel();
        let handles = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(shards))
            .name("databus-shard")
            .io_memory(IO_MEMORY)
            .on_all_shards(move || {
                shard::run(Arc::clone(&shared), listen.clone(), bound_tx.clone())
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
