//! Everything that talks to Kafka. Knows nothing about sockets or RESP.

pub mod client_config;
pub mod consumer;
pub mod context;
pub mod producer;
pub mod slot;
