//! The setup chatter of client libraries, answered before and after AUTH:
//! `HELLO`, `CLIENT`, `PING`, `ECHO`, `SELECT`, `COMMAND`. None of it may break
//! a connection; the answers follow redis-server's.

use bytes::Bytes;

use super::backend::Backend;
use super::{Reply, Session, Step, Then};
use crate::errors;

/// The longest client name (`CLIENT SETNAME`, `HELLO ... SETNAME`).
const MAX_CLIENT_NAME: usize = 128;

/// Why a client name is refused, as redis-server says it (plus a length
/// bound of ours: a name is shown in every `CLIENT LIST`).
fn client_name_error(name: &[u8]) -> Option<&'static str> {
    if name.len() > MAX_CLIENT_NAME {
        Some(errors::CLIENT_NAME_TOO_LONG)
    } else if name.iter().any(|b| !(b'!'..=b'~').contains(b)) {
        Some(errors::CLIENT_NAME_INVALID)
    } else {
        None
    }
}

/// `PING [message]`; a message is echoed up to `max` bytes.
pub(super) fn ping(args: &[Bytes], max: usize) -> Reply {
    match args {
        [message] => echo(std::slice::from_ref(message), max),
        _ => Reply::Simple("PONG"),
    }
}

/// `ECHO message`, up to `max` bytes: a reply is a copy, and a client that
/// does not read its replies must not make the gateway hold large ones.
pub(super) fn echo(args: &[Bytes], max: usize) -> Reply {
    if args[0].len() > max {
        return Reply::error(errors::MESSAGE_TOO_LONG);
    }
    Reply::Bulk(args[0].clone())
}

/// `SELECT 0`: there is one database.
pub(super) fn select(args: &[Bytes]) -> Reply {
    if args[0].as_ref() == b"0" {
        Reply::OK
    } else {
        Reply::error(errors::SELECT_NONZERO)
    }
}

/// `COMMAND`, `COMMAND DOCS`, `COMMAND COUNT`, ...: redis-cli asks for command docs
/// to show hints; an empty answer is valid and cheap.
pub(super) fn command_introspection(args: &[Bytes]) -> Reply {
    match args.first() {
        Some(sub) if sub.eq_ignore_ascii_case(b"COUNT") => Reply::Integer(0),
        _ => Reply::Array(Vec::new()),
    }
}

impl<B: Backend> Session<B> {
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`. RESP3 is accepted
    /// because current client libraries (redis-py 8) ask for it by default and do
    /// not fall back; every reply the gateway sends is the same in both versions
    /// except this map and the null.
    pub(super) fn hello(&mut self, args: &[Bytes]) -> Step {
        let mut resp3 = self.resp3;
        if let Some(version) = args.first() {
            match std::str::from_utf8(version)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
            {
                Some(2) => resp3 = false,
                Some(3) => resp3 = true,
                Some(_) => return Step::reply(Reply::error(errors::NOPROTO)),
                None => return Step::reply(Reply::error(errors::PROTOCOL_VERSION)),
            }
        }
        let mut auth = None;
        let mut setname = None;
        let mut options = args.iter().skip(1);
        while let Some(option) = options.next() {
            if option.eq_ignore_ascii_case(b"AUTH") {
                match (options.next(), options.next()) {
                    (Some(user), Some(pass)) => auth = Some([user.clone(), pass.clone()]),
                    _ => return Step::reply(Reply::error(errors::SYNTAX)),
                }
            } else if option.eq_ignore_ascii_case(b"SETNAME") {
                match options.next() {
                    Some(name) => match client_name_error(name) {
                        None => setname = Some(Bytes::copy_from_slice(name)),
                        Some(error) => return Step::reply(Reply::error(error)),
                    },
                    None => return Step::reply(Reply::error(errors::SYNTAX)),
                }
            } else {
                return Step::reply(Reply::error(errors::hello_option(option)));
            }
        }
        if let Some(credentials) = auth {
            let step = self.auth_command(&credentials);
            if step.then != Then::Continue || step.reply.is_error() {
                return step;
            }
        }
        if setname.is_some() {
            self.client.set_name(setname);
        }
        self.resp3 = resp3;
        self.client.set_resp3(resp3);
        let bulk = |s: &'static str| Reply::Bulk(Bytes::from_static(s.as_bytes()));
        Step::reply(Reply::Map(vec![
            (bulk("server"), bulk("databus")),
            (bulk("version"), bulk(env!("CARGO_PKG_VERSION"))),
            (bulk("proto"), Reply::Integer(if resp3 { 3 } else { 2 })),
            (bulk("id"), Reply::Integer(self.id() as i64)),
            (bulk("mode"), bulk("standalone")),
            (bulk("role"), bulk("master")),
            (bulk("modules"), Reply::Array(Vec::new())),
        ]))
    }

    /// `CLIENT SETNAME|GETNAME|ID|SETINFO|INFO|LIST`: what client libraries
    /// send on connect, and what an app may see of its own connections.
    pub(super) fn client(&mut self, args: &[Bytes]) -> Reply {
        let (sub, rest) = (&args[0], &args[1..]);
        let is = |name: &str| sub.eq_ignore_ascii_case(name.as_bytes());
        let arity = |n: usize| rest.len() == n;
        if is("SETNAME") && arity(1) {
            let name = &rest[0];
            if let Some(error) = client_name_error(name) {
                return Reply::error(error);
            }
            // A copy: a slice would keep its read buffer alive.
            self.client
                .set_name((!name.is_empty()).then(|| Bytes::copy_from_slice(name)));
            Reply::OK
        } else if is("GETNAME") && arity(0) {
            self.client.name().map_or(Reply::Null, Reply::Bulk)
        } else if is("ID") && arity(0) {
            Reply::Integer(self.id() as i64)
        } else if is("SETINFO") && arity(2) {
            Reply::OK
        } else if is("INFO") && arity(0) {
            let id = self.id();
            Reply::Bulk(Bytes::from(self.handles.clients.list(|c| c.id == id)))
        } else if is("LIST") && arity(0) {
            self.client_list()
        } else if ["SETNAME", "GETNAME", "ID", "SETINFO", "INFO", "LIST"]
            .iter()
            .any(|name| is(name))
        {
            let mut name = b"client|".to_vec();
            name.extend_from_slice(&sub.to_ascii_lowercase());
            Reply::error(errors::wrong_arity(&name))
        } else {
            Reply::error(errors::unknown_subcommand("client", sub))
        }
    }

    /// `CLIENT LIST`: the connections of this connection's app, and nobody
    /// else's (apps share the gateway and must not see each other's
    /// addresses, groups or topics). Unauthenticated, nothing.
    fn client_list(&self) -> Reply {
        let Some(me) = self.client.entry().identity() else {
            return Reply::error(errors::NOAUTH);
        };
        let key = me.key.clone();
        let listed = self
            .handles
            .clients
            .list(|c| c.identity().is_some_and(|i| i.key == key));
        Reply::Bulk(Bytes::from(listed))
    }
}
