//! Everything that talks to Kafka. Knows nothing about sockets or RESP.

pub mod message;
pub mod producer;
