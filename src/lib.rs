//! databus: a gateway that lets any Redis client publish to and consume from
//! Apache Kafka. Clients speak RESP; `AUTH` is checked against app credentials in
//! MySQL; `SET` becomes a Kafka produce and `MGET` a consumer-group fetch.
//!
//! # Layout
//!
//! ```text
//! main.rs          CLI (-conf / --config), logging, start and stop
//! config.rs        TOML → typed config with defaults and validation
//! errors.rs        every reply text a client can see
//! resp/            request parser (limits, inline commands) and reply encoding
//! auth/            dsn.rs (AUTH grammar), snapshot.rs (grants), mysql.rs (loader)
//! server/          shard.rs (executor, listener), connection.rs (read/dispatch/write)
//! session/         what a connection may do: publisher.rs, subscriber.rs, reply.rs
//! kafka/           producer.rs (produce path), message.rs (wire types)
//! metrics/         per-shard counters; exposition.rs (Prometheus), http.rs (/metrics,
//!                  /healthz, /readyz on the control thread)
//! control.rs       the control thread: MySQL refresh, signals
//! shared.rs        what all shards share: config, snapshot, producers, counters
//! ```
//!
//! Threads: one glommio executor per core (shards) accepts on the same port with
//! SO_REUSEPORT and owns its connections; librdkafka's threads deliver produces;
//! one control thread runs tokio for mysql_async and signal handling.

pub mod auth;
pub mod config;
pub mod control;
pub mod errors;
pub mod kafka;
pub mod metrics;
pub mod resp;
pub mod server;
pub mod session;
pub mod shared;
pub mod startup;
