//! Every reply text a client can see, in one place (protocol.md §1, §2, §4, §6).
//!
//! Texts are the whole RESP error line without the leading `-`, so the error code
//! (`ERR`, `NOAUTH`, `WRONGPASS`, ...) is part of the constant. Functions build the
//! few texts that carry a name; nothing here may ever include a secret.

pub const NOAUTH: &str = "NOAUTH Authentication required.";
pub const AUTH_TIMEOUT: &str = "ERR auth timeout";
pub const ALREADY_AUTHENTICATED: &str = "ERR already authenticated";
pub const INVALID_AUTH_STRING: &str =
    "ERR invalid auth string: expected key:secret@group/topic=T&role=pub|sub";
pub const WRONGPASS: &str = "WRONGPASS invalid key, secret, group or topic";
pub const BAD_ROLE: &str = "ERR role must be pub or sub";
pub const INVALID_COLOR: &str = "ERR invalid color";
pub const TOO_MANY_AUTH_FAILURES: &str =
    "ERR too many failed AUTH attempts from this address, retry later";
pub const CREDENTIALS_REVOKED: &str = "ERR credentials revoked";
pub const CLUSTER_CHANGED: &str = "ERR cluster changed, reconnect";
pub const MAX_CLIENTS: &str = "ERR max number of clients reached";
pub const MAX_SUBSCRIBERS: &str = "ERR max number of subscribers reached";
pub const VALUE_TOO_LARGE: &str = "ERR value exceeds max_value_bytes";
pub const NOPROTO: &str = "NOPROTO unsupported protocol version";
pub const PROTOCOL_VERSION: &str = "ERR Protocol version is not an integer or out of range";
pub const SELECT_NONZERO: &str = "ERR DB index is out of range";
pub const SYNTAX: &str = "ERR syntax error";
pub const MESSAGE_TOO_LONG: &str = "ERR message exceeds max_connection_bytes";
pub const CLIENT_NAME_INVALID: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";
pub const CLIENT_NAME_TOO_LONG: &str = "ERR Client names are at most 128 bytes";
pub const INVALID_METADATA: &str =
    "ERR invalid metadata: expected a JSON object of strings or a protobuf Header";
pub const SHUTTING_DOWN: &str = "ERR server is shutting down";
pub const COMMIT_PARAMS: &str = "ERR commit offset params error";
/// A reply the gateway failed to compute; a bug, never the client's doing.
pub const INTERNAL: &str = "ERR internal error";

pub fn may_not_publish(group: &str) -> String {
    format!("NOPERM group {group} may not publish")
}

pub fn may_not_subscribe(group: &str) -> String {
    format!("NOPERM group {group} may not subscribe")
}

pub fn color_not_allowed(color: &str, group: &str) -> String {
    format!("NOPERM color {color} is not allowed for group {group}")
}

pub fn commit_not_delivered(partition: i32, offset: i64) -> String {
    format!(
        "ERR offset {offset} of partition {partition} was never delivered to this connection: \
         nothing committed"
    )
}

pub fn too_many_consumers(topic: &str) -> String {
    format!("ERR too many consumers for topic {topic}")
}

/// AUTH of an app whose connections are at its cap (`app_quota`).
pub fn app_connections_full(cap: u64) -> String {
    format!("ERR max number of connections for this app reached ({cap})")
}

pub fn cluster_not_configured(cluster: &str) -> String {
    format!("ERR cluster {cluster} is not configured")
}

pub fn unknown_command(name: &[u8]) -> String {
    format!("ERR unknown command '{}'", printable(name))
}

pub fn not_allowed(name: &[u8], role: &str) -> String {
    format!(
        "ERR '{}' is not allowed for a {role} connection",
        printable(name).to_ascii_lowercase()
    )
}

pub fn wrong_arity(name: &[u8]) -> String {
    format!(
        "ERR wrong number of arguments for '{}' command",
        printable(name).to_ascii_lowercase()
    )
}

pub fn protocol(what: &dyn std::fmt::Display) -> String {
    format!("ERR Protocol error: {what}")
}

pub fn kafka(reason: &dyn std::fmt::Display) -> String {
    format!("ERR kafka: {reason}")
}

/// A produce the broker did not acknowledge within `produce_timeout`.
pub fn produce_timed_out(timeout: std::time::Duration) -> String {
    kafka(&format_args!("not acknowledged within {timeout:?}"))
}

pub fn hello_option(option: &[u8]) -> String {
    format!("ERR Syntax error in HELLO option '{}'", printable(option))
}

pub fn unknown_subcommand(command: &str, sub: &[u8]) -> String {
    format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        printable(sub),
        command.to_ascii_uppercase()
    )
}

/// A client-supplied name echoed in an error: lossy UTF-8, at most 128 characters,
/// so that a hostile name cannot make the reply huge or break the line.
fn printable(name: &[u8]) -> String {
    String::from_utf8_lossy(name)
        .chars()
        .take(128)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
