//! What every shard shares: configuration, the auth snapshot, the producers, the
//! metrics and a few process-wide counters. Everything here is `Send + Sync` and read-mostly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::watch;

use crate::auth::limiter::FailedAuthLimiter;
use crate::auth::AuthHub;
use crate::config::Config;
use crate::kafka::consumer::ConsumerService;
use crate::kafka::producer::Producers;
use crate::metrics::Metrics;

pub struct Shared {
    pub config: Config,
    pub auth: Arc<AuthHub>,
    pub producers: Producers,
    pub consumers: ConsumerService,
    /// Failed AUTHs per source address (`server.max_auth_failures`).
    pub auth_failures: FailedAuthLimiter,
    pub metrics: Metrics,
    /// The addresses the listeners bound, port 0 resolved: plaintext and TLS.
    /// Set once by the server before it accepts.
    pub listening: OnceLock<(SocketAddr, Option<SocketAddr>)>,
    /// Turns true once when the process starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    connections: AtomicUsize,
    next_client_id: AtomicU64,
}

/// A slot in `max_connections`; released when dropped.
pub struct ConnectionSlot {
    shared: Arc<Shared>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    pub fn new(
        config: Config,
        auth: Arc<AuthHub>,
        producers: Producers,
        consumers: ConsumerService,
        shutdown: watch::Receiver<bool>,
    ) -> Shared {
        let auth_failures = FailedAuthLimiter::new(
            config.server.max_auth_failures,
            config.server.auth_failure_window,
        );
        let metrics = Metrics::new(config.shard_count());
        Shared {
            config,
            auth_failures,
            metrics,
            listening: OnceLock::new(),
            auth,
            producers,
            consumers,
            shutdown,
            connections: AtomicUsize::new(0),
            next_client_id: AtomicU64::new(1),
        }
    }

    /// Takes a connection slot, or None when `max_connections` are open.
    pub fn try_connect(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.config.server.max_connections;
        let previous = self.connections.fetch_add(1, Ordering::Relaxed);
        let slot = ConnectionSlot {
            shared: Arc::clone(self),
        };
        (previous < max).then_some(slot)
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }
}
