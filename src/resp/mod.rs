//! RESP request parsing and reply encoding. Knows nothing about Kafka or sockets.
//!
//! - `parser`: splits complete commands (RESP arrays of bulk strings, or inline lines) off the
//!   front of a read buffer, enforcing [`Limits`] so a client can never make the buffer grow
//!   past a known bound.
//! - `inline`: redis-server's word splitting and quoting rules for inline commands.
//! - `reply`: RESP2 reply encoding appended to an output buffer.
mod inline;
pub mod parser;
pub mod reply;
pub use parser::{Command, Limits, Parser, ProtocolError};
