//! The command table: every command the gateway knows, with its name, how many
//! arguments it takes, who may send it and its label in `/metrics`. The
//! session dispatches on it and the metrics count by it, so a command exists
//! in one place.

/// A command the gateway knows; `Other` stands for every name it does not.
/// A subscriber's commit is `SET`, like a publisher's produce: the role tells
/// them apart (`databus_connections`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandKind {
    Auth,
    Hello,
    Ping,
    Echo,
    Quit,
    Client,
    Select,
    Command,
    Info,
    Set,
    Hset,
    Mget,
    Other,
}

/// Who may send a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// Any connection, authenticated or not: the setup chatter of client
    /// libraries, which must never break a connection.
    Anyone,
    /// Any authenticated connection.
    Authenticated,
    /// Publishers only.
    Publishers,
    /// Subscribers only.
    Subscribers,
    /// Publishers and subscribers, each with its own meaning (`SET`).
    Both,
}

/// How many arguments (after the name) a command takes, bounds included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arity {
    pub min: usize,
    pub max: usize,
}

impl Arity {
    const fn exactly(n: usize) -> Arity {
        Arity { min: n, max: n }
    }

    const fn between(min: usize, max: usize) -> Arity {
        Arity { min, max }
    }

    const fn at_least(min: usize) -> Arity {
        Arity {
            min,
            max: usize::MAX,
        }
    }

    pub fn accepts(self, args: usize) -> bool {
        (self.min..=self.max).contains(&args)
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub kind: CommandKind,
    /// Upper case, as matched (case-insensitively) against what clients send.
    pub name: &'static [u8],
    /// Lower case: the metrics label, and the name in error replies.
    pub label: &'static str,
    pub arity: Arity,
    pub allowed: Allowed,
}

const fn spec(
    kind: CommandKind,
    name: &'static [u8],
    label: &'static str,
    arity: Arity,
    allowed: Allowed,
) -> Spec {
    Spec {
        kind,
        name,
        label,
        arity,
        allowed,
    }
}

use Allowed::{Anyone, Authenticated, Both, Publishers, Subscribers};
use CommandKind as K;

/// The table, in `CommandKind` order (a unit test holds it to that).
/// Arities follow redis-server where it has the command; HELLO, CLIENT and
/// COMMAND check their options themselves.
pub const TABLE: [Spec; 13] = [
    spec(K::Auth, b"AUTH", "auth", Arity::between(1, 2), Anyone),
    spec(K::Hello, b"HELLO", "hello", Arity::at_least(0), Anyone),
    spec(K::Ping, b"PING", "ping", Arity::between(0, 1), Anyone),
    spec(K::Echo, b"ECHO", "echo", Arity::exactly(1), Anyone),
    spec(K::Quit, b"QUIT", "quit", Arity::at_least(0), Anyone),
    spec(K::Client, b"CLIENT", "client", Arity::at_least(1), Anyone),
    spec(K::Select, b"SELECT", "select", Arity::exactly(1), Anyone),
    spec(
        K::Command,
        b"COMMAND",
        "command",
        Arity::at_least(0),
        Anyone,
    ),
    spec(K::Info, b"INFO", "info", Arity::at_least(0), Authenticated),
    // SET is `SET key value` for a publisher, `SET partition offset` for a
    // subscriber: two arguments either way.
    spec(K::Set, b"SET", "set", Arity::exactly(2), Both),
    spec(K::Hset, b"HSET", "hset", Arity::exactly(3), Publishers),
    // `MGET [pb|json]`; extra arguments are ignored, as the original did.
    spec(K::Mget, b"MGET", "mget", Arity::at_least(0), Subscribers),
    spec(K::Other, b"", "other", Arity::at_least(0), Authenticated),
];

/// The longest command name, for case-folding without allocating.
const LONGEST_NAME: usize = 8;

impl CommandKind {
    pub const COUNT: usize = TABLE.len();

    /// Every kind, in table order.
    pub fn all() -> impl Iterator<Item = CommandKind> {
        TABLE.iter().map(|s| s.kind)
    }

    /// The kind of a command name as a client sent it (any case).
    pub fn lookup(name: &[u8]) -> CommandKind {
        if name.len() > LONGEST_NAME {
            return CommandKind::Other;
        }
        let mut upper = [0u8; LONGEST_NAME];
        let upper = &mut upper[..name.len()];
        upper.copy_from_slice(name);
        upper.make_ascii_uppercase();
        TABLE
            .iter()
            .find(|s| s.kind != CommandKind::Other && s.name == &*upper)
            .map_or(CommandKind::Other, |s| s.kind)
    }

    pub fn spec(self) -> &'static Spec {
        &TABLE[self as usize]
    }

    pub fn label(self) -> &'static str {
        self.spec().label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_kind_order_and_names_fit() {
        for (i, s) in TABLE.iter().enumerate() {
            assert_eq!(s.kind as usize, i, "{s:?}");
            assert!(s.name.len() <= LONGEST_NAME, "{s:?}");
            if s.kind != CommandKind::Other {
                assert_eq!(s.label.as_bytes(), s.name.to_ascii_lowercase(), "{s:?}");
            }
        }
        assert_eq!(CommandKind::all().last(), Some(CommandKind::Other));
    }

    #[test]
    fn names_are_matched_in_any_case() {
        assert_eq!(CommandKind::lookup(b"mget"), CommandKind::Mget);
        assert_eq!(CommandKind::lookup(b"hSeT"), CommandKind::Hset);
        assert_eq!(CommandKind::lookup(b"FLUSHALL"), CommandKind::Other);
        assert_eq!(CommandKind::lookup(b"SETTINGSX"), CommandKind::Other);
        // "other" is a label, not a command.
        assert_eq!(CommandKind::lookup(b""), CommandKind::Other);
        assert_eq!(CommandKind::lookup(b"OTHER"), CommandKind::Other);
    }

    #[test]
    fn arities_bound_both_ends() {
        assert!(CommandKind::Set.spec().arity.accepts(2));
        assert!(!CommandKind::Set.spec().arity.accepts(1));
        assert!(!CommandKind::Set.spec().arity.accepts(3));
        assert!(CommandKind::Ping.spec().arity.accepts(0));
        assert!(!CommandKind::Ping.spec().arity.accepts(2));
        assert!(CommandKind::Mget.spec().arity.accepts(5));
    }
}
