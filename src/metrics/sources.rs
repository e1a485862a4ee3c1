//! Where the numbers of `/metrics`, `/readyz` and `INFO` are read from: the
//! shards' counters and the parts that keep their own (auth refresh, Kafka
//! clients, client slots). Read-only handles; nothing here is written.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio::sync::watch;

use super::Metrics;
use crate::auth::AuthHub;
use crate::clients::Clients;
use crate::config::Config;
use crate::kafka::consumer::ConsumerService;
use crate::kafka::producer::Producers;

pub struct Sources {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<AuthHub>,
    pub producers: Arc<Producers>,
    pub consumers: Arc<ConsumerService>,
    pub clients: Arc<Clients>,
    /// The addresses the listeners bound, port 0 resolved: plaintext and TLS.
    /// Set once by the server before it accepts.
    pub listening: Arc<OnceLock<(SocketAddr, Option<SocketAddr>)>>,
    /// Turns true once when the process starts shutting down.
    pub shutdown: watch::Receiver<bool>,
}
