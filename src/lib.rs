//! databus: a gateway that lets any Redis client publish to and consume from
//! Apache Kafka. Clients speak RESP; `AUTH` is checked against app credentials in
//! MySQL; `SET` becomes a Kafka produce and `MGET` a consumer-group fetch.
//!
//! # Layout
//!
//! ```text
//! main.rs             CLI (-conf / --config), logging, exit status
//! startup.rs          start and stop order: config, limits, control thread, shards
//! config.rs           TOML → typed config with defaults and validation
//! errors.rs           every reply text a client can see
//! resp/               parser.rs (limits), inline.rs (telnet-style lines), reply.rs (encoding)
//! auth/               dsn.rs (AUTH grammar), snapshot.rs (grants), mysql.rs (loader),
//!                     limiter.rs (failed-AUTH bound per address)
//! server/             shard.rs (executor, listener), connection.rs (read/dispatch/write),
//!                     outbox.rs (ordered replies, credits), tls.rs (rustls listener)
//! session/            what a connection may do: mod.rs (dispatch, AUTH), publisher.rs,
//!                     subscriber.rs, reply.rs, info.rs (INFO)
//! kafka/              producer.rs (produce path), consumer.rs (group members),
//!                     message.rs (wire types), client_config.rs (shared librdkafka
//!                     settings), context.rs (librdkafka logs and errors)
//! metrics/            per-shard counters; exposition.rs (Prometheus), http.rs (/metrics,
//!                     /healthz, /readyz on the control thread)
//! control.rs          the control thread: MySQL refresh, signals
//! shared.rs           what all shards share: config, snapshot, producers, counters
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
