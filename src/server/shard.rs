//! A shard: one glommio executor pinned to the pool's placement, with its own
//! listener on the shared port (SO_REUSEPORT lets the kernel spread connections),
//! serving every connection it accepts until shutdown.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use futures_lite::future;
use glommio::net::TcpListener;
use glommio::sync::Gate;

use super::connection;
use crate::errors;
use crate::shared::Shared;

/// Runs one shard to completion. `bound` hears once whether the listener is up,
/// so the process can report readiness (or fail) only when every shard is.
pub async fn run(shared: Arc<Shared>, addr: SocketAddr, bound: mpsc::Sender<Result<()>>) {
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => {
            let _ = bound.send(Ok(()));
            listener
        }
        Err(e) => {
            let _ = bound.send(Err(anyhow!("cannot listen on {addr}: {e}")));
            return;
        }
    };
    let connections = Gate::new();
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
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
        let shared = Arc::clone(&shared);
        let spawned = connections.spawn(async move {
            match shared.try_connect() {
                Some(_slot) => connection::serve(stream, peer, Arc::clone(&shared)).await,
                None => connection::refuse(stream, errors::MAX_CLIENTS).await,
            }
        });
        match spawned {
            Ok(task) => drop(task.detach()),
            Err(e) => tracing::warn!(error = %e, "cannot spawn connection task"),
        }
    }
    drop(listener);
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
