//! A connection's session: what it has proven (AUTH) and what each command does
//! for it. Knows commands and roles, not sockets: the connection feeds it parsed
//! commands and writes the replies it returns, in order.
//!
//! One dispatch table (`Session::handle`) decides which commands exist and which
//! role may use them; `publisher` and `subscriber` hold the role-specific work.

mod info;
pub mod publisher;
pub mod reply;
pub mod subscriber;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::auth::{Denied, Dsn, DsnError, Role};
use crate::errors;
use crate::metrics::{AuthOutcome, CommandKind, ConnectionRole, ShardStats};
use crate::resp::Command;
use crate::shared::Shared;
use publisher::Publisher;
pub use reply::Reply;
use subscriber::Subscriber;

/// The result of one command: its reply, and what happens to the connection.
pub struct Step {
    pub reply: Reply,
    pub then: Then,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    Continue,
    Close,
    /// A failed AUTH: commands the client had already pipelined behind it are
    /// answered `NOAUTH` without running, then the connection closes. Client
    /// libraries pipeline AUTH with their setup commands, and a connection that
    /// closes before answering those shows them "end of file" instead of the
    /// reason.
    RefuseRestAndClose,
}

impl Step {
    fn reply(reply: Reply) -> Step {
        Step {
            reply,
            then: Then::Continue,
        }
    }

    fn close(reply: Reply) -> Step {
        Step {
            reply,
            then: Then::Close,
        }
    }

    fn auth_failed(reply: Reply) -> Step {
        Step {
            reply,
            then: Then::RefuseRestAndClose,
        }
    }
}

enum State {
    Anonymous,
    Publisher(Authenticated, Publisher),
    Subscriber(Authenticated, Subscriber),
}

struct Authenticated {
    /// The AUTH string exactly as sent, to tell a repeated AUTH from another one.
    raw: Bytes,
    dsn: Dsn,
}

pub struct Session {
    shared: Arc<Shared>,
    state: State,
    id: u64,
    name: Option<Bytes>,
    peer: SocketAddr,
    /// Set by `HELLO 3`: replies are then encoded in RESP3.
    resp3: bool,
    /// The shard's counters.
    stats: Arc<ShardStats>,
}

impl Session {
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, stats: Arc<ShardStats>) -> Session {
        let id = shared.next_client_id();
        stats.connection_opened(ConnectionRole::Anonymous);
        Session {
            shared,
            state: State::Anonymous,
            id,
            name: None,
            peer,
            resp3: false,
            stats,
        }
    }

    fn counted_role(&self) -> ConnectionRole {
        self.role()
            .map_or(ConnectionRole::Anonymous, ConnectionRole::from)
    }

    pub fn role(&self) -> Option<Role> {
        match self.state {
            State::Anonymous => None,
            State::Publisher(..) => Some(Role::Pub),
            State::Subscriber(..) => Some(Role::Sub),
        }
    }

    /// Whether replies are to be encoded in RESP3 (after `HELLO 3`).
    pub fn resp3(&self) -> bool {
        self.resp3
    }

    pub fn handle(&mut self, command: Command) -> Step {
        let mut upper = [0u8; 16];
        let name = uppercase(command.name(), &mut upper);
        let mut step = self.dispatch(name, &command);
        step.reply = counted(step.reply, CommandKind::of(name), &self.stats);
        step
    }

    /// Runs one command; `name` is its upper-cased name.
    fn dispatch(&mut self, name: &[u8], command: &Command) -> Step {
        let args = command.args();
        // Commands every connection may send, authenticated or not: the setup
        // chatter of client libraries must never break a connection.
        match name {
            b"AUTH" => return self.auth_command(args),
            b"HELLO" => return self.hello(args),
            b"PING" => {
                return Step::reply(match args {
                    [] => Reply::Simple("PONG"),
                    [message] => Reply::Bulk(message.clone()),
                    _ => Reply::error(errors::wrong_arity(b"ping")),
                })
            }
            b"ECHO" => {
                return Step::reply(match args {
                    [message] => Reply::Bulk(message.clone()),
                    _ => Reply::error(errors::wrong_arity(b"echo")),
                })
            }
            b"QUIT" => return Step::close(Reply::OK),
            b"CLIENT" => return Step::reply(self.client(args)),
            b"SELECT" => {
                return Step::reply(match args {
                    [db] if db.as_ref() == b"0" => Reply::OK,
                    [_] => Reply::error(errors::SELECT_NONZERO),
                    _ => Reply::error(errors::wrong_arity(b"select")),
                })
            }
            b"COMMAND" => return Step::reply(command_introspection(args)),
            _ => {}
        }
        let role_name = match &self.state {
            State::Anonymous => return Step::reply(Reply::error(errors::NOAUTH)),
            State::Publisher(..) => "pub",
            State::Subscriber(..) => "sub",
        };
        let reply = match (&mut self.state, name) {
            (State::Publisher(_, p), b"SET") => match args {
                [key, value] => p.set(key.clone(), value.clone()),
                _ => Reply::error(errors::wrong_arity(command.name())),
            },
            (State::Publisher(_, p), b"HSET") => match args {
                [key, metadata, value] => p.hset(key.clone(), metadata, value.clone()),
                _ => Reply::error(errors::wrong_arity(command.name())),
            },
            (State::Subscriber(_, s), b"MGET") => s.mget(args),
            (State::Subscriber(_, s), b"SET") => match args {
                [partition, offset] => s.commit(partition, offset),
                _ => Reply::error(errors::wrong_arity(command.name())),
            },
            (_, b"INFO") => Reply::Bulk(Bytes::from(info::render(&self.shared, args))),
            (_, b"SET" | b"HSET" | b"MGET") => {
                Reply::error(errors::not_allowed(command.name(), role_name))
            }
            _ => Reply::error(errors::unknown_command(command.name())),
        };
        Step::reply(reply)
    }

    fn auth_command(&mut self, args: &[Bytes]) -> Step {
        let raw = match args {
            [dsn] => dsn.clone(),
            // Clients given only a password send it as user `default`'s
            // (redis-py does with RESP3); a whole AUTH string is never a password
            // of its own, since it has its own ':'.
            [user, pass] if user.as_ref() == b"default" && pass.contains(&b':') => pass.clone(),
            // The username/password form client libraries send: `AUTH key rest`
            // is `AUTH key:rest`.
            [user, pass] => {
                let mut joined = BytesMut::with_capacity(user.len() + 1 + pass.len());
                joined.extend_from_slice(user);
                joined.extend_from_slice(b":");
                joined.extend_from_slice(pass);
                joined.freeze()
            }
            _ => return Step::reply(Reply::error(errors::wrong_arity(b"auth"))),
        };
        self.authenticate(raw)
    }

    /// Checks an AUTH string and, on success, gives the connection its role.
    /// Every failure closes the connection (protocol.md §1.3).
    fn authenticate(&mut self, raw: Bytes) -> Step {
        match &self.state {
            State::Anonymous => {}
            State::Publisher(a, _) | State::Subscriber(a, _) => {
                return Step::reply(if a.raw == raw {
                    Reply::OK
                } else {
                    Reply::error(errors::ALREADY_AUTHENTICATED)
                });
            }
        }
        if !self
            .shared
            .auth_failures
            .allows(self.peer.ip(), Instant::now())
        {
            tracing::info!(peer = %self.peer, "auth refused: too many failures from this address");
            self.stats.auth(AuthOutcome::RateLimited);
            return Step::auth_failed(Reply::error(errors::TOO_MANY_AUTH_FAILURES));
        }
        let dsn = match Dsn::parse(&raw) {
            Ok(dsn) => dsn,
            Err(DsnError::Malformed) => {
                tracing::info!(peer = %self.peer, "auth failed: malformed auth string");
                return self.wrong_credentials(
                    &raw,
                    AuthOutcome::Malformed,
                    errors::INVALID_AUTH_STRING,
                );
            }
            Err(DsnError::BadRole) => {
                tracing::info!(peer = %self.peer, "auth failed: bad role");
                return self.wrong_credentials(&raw, AuthOutcome::BadRole, errors::BAD_ROLE);
            }
        };
        let grant = match self.shared.auth.current().authenticate(&dsn) {
            Ok(grant) => grant,
            Err(reason) => {
                tracing::info!(peer = %self.peer, key = %dsn.key, group = %dsn.group,
                    topic = %dsn.topic, role = dsn.role.as_str(), %reason, "auth failed");
                let text = denied_text(&reason, &dsn);
                return self.wrong_credentials(&raw, AuthOutcome::from(&reason), text);
            }
        };
        let Some(producer) = self.shared.producers.get(&grant.cluster) else {
            tracing::warn!(peer = %self.peer, key = %dsn.key, cluster = %grant.cluster,
                "auth failed: the app's cluster is not configured");
            self.stats.auth(AuthOutcome::ClusterNotConfigured);
            return Step::auth_failed(Reply::error(errors::cluster_not_configured(&grant.cluster)));
        };
        tracing::debug!(peer = %self.peer, id = self.id, key = %dsn.key, group = %dsn.group,
            topic = %dsn.topic, role = dsn.role.as_str(), "authenticated");
        let server = &self.shared.config.server;
        self.state = match dsn.role {
            Role::Pub => {
                let publisher = Publisher::new(
                    &dsn,
                    grant.cluster,
                    producer.clone(),
                    server.max_value_bytes,
                    server.produce_timeout,
                    Arc::clone(&self.stats),
                );
                State::Publisher(Authenticated { raw, dsn }, publisher)
            }
            Role::Sub => {
                let group = Subscriber::group_name(&dsn);
                let joined =
                    self.shared
                        .consumers
                        .join(&grant.cluster, &group, &dsn.topic, &dsn.color);
                let member = match joined {
                    Ok(member) => member,
                    Err(e) => {
                        tracing::warn!(peer = %self.peer, %group, error = %e, "cannot create consumer");
                        self.stats.auth(AuthOutcome::ConsumerFailed);
                        return Step::auth_failed(Reply::error(errors::kafka(&e)));
                    }
                };
                let subscriber = Subscriber::new(&dsn, grant.cluster, member);
                State::Subscriber(Authenticated { raw, dsn }, subscriber)
            }
        };
        self.stats.auth(AuthOutcome::Ok);
        self.stats.connection_closed(ConnectionRole::Anonymous);
        self.stats.connection_opened(self.counted_role());
        Step::reply(Reply::OK)
    }

    /// A failed AUTH that was the client's doing: `attempt` (the AUTH string)
    /// counts against the client's address (`max_auth_failures`), and the
    /// outcome in metrics.
    fn wrong_credentials(
        &self,
        attempt: &[u8],
        outcome: AuthOutcome,
        text: impl Into<Cow<'static, str>>,
    ) -> Step {
        self.shared
            .auth_failures
            .failed(self.peer.ip(), attempt, Instant::now());
        self.stats.auth(outcome);
        Step::auth_failed(Reply::error(text))
    }

    /// Re-checks this connection's grant against a new auth snapshot. Returns the
    /// error to send before closing when the grant is gone (protocol.md §3).
    pub fn recheck(&mut self) -> Option<Reply> {
        let snapshot = self.shared.auth.current();
        let (auth, current_cluster) = match &self.state {
            State::Anonymous => return None,
            State::Publisher(a, p) => (a, &p.cluster),
            State::Subscriber(a, s) => (a, &s.cluster),
        };
        let grant = match snapshot.authenticate(&auth.dsn) {
            Ok(grant) => grant,
            Err(reason) => {
                tracing::info!(peer = %self.peer, key = %auth.dsn.key, group = %auth.dsn.group,
                    %reason, "closing connection: credentials revoked");
                return Some(Reply::error(errors::CREDENTIALS_REVOKED));
            }
        };
        if grant.cluster == *current_cluster {
            return None;
        }
        tracing::info!(peer = %self.peer, key = %auth.dsn.key, from = %current_cluster,
            to = %grant.cluster, "app moved to another cluster");
        match &mut self.state {
            State::Publisher(_, publisher) => match self.shared.producers.get(&grant.cluster) {
                Some(producer) => {
                    publisher.switch_cluster(grant.cluster, producer.clone());
                    None
                }
                None => Some(Reply::error(errors::cluster_not_configured(&grant.cluster))),
            },
            // A consumer group member cannot move; the client reconnects.
            _ => Some(Reply::error(errors::CLUSTER_CHANGED)),
        }
    }

    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`. RESP3 is accepted
    /// because current client libraries (redis-py 8) ask for it by default and do
    /// not fall back; every reply the gateway sends is the same in both versions
    /// except this map and the null.
    fn hello(&mut self, args: &[Bytes]) -> Step {
        let mut resp3 = self.resp3;
        if let Some(version) = args.first() {
            match std::str::from_utf8(version)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
            {
                Some(2) => resp3 = false,
                Some(3) => resp3 = true,
                Some(_) => return Step::reply(Reply::error(errors::NOPROTO)),
                None => {
                    return Step::reply(Reply::error(
                        "ERR Protocol version is not an integer or out of range",
                    ))
                }
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
                    Some(name) => setname = Some(name.clone()),
                    None => return Step::reply(Reply::error(errors::SYNTAX)),
                }
            } else {
                return Step::reply(Reply::error(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(option)
                )));
            }
        }
        if let Some(credentials) = auth {
            let step = self.auth_command(&credentials);
            if step.then != Then::Continue || matches!(step.reply, Reply::Error(_)) {
                return step;
            }
        }
        if setname.is_some() {
            self.name = setname;
        }
        self.resp3 = resp3;
        let bulk = |s: &'static str| Reply::Bulk(Bytes::from_static(s.as_bytes()));
        Step::reply(Reply::Map(vec![
            (bulk("server"), bulk("databus")),
            (bulk("version"), bulk(env!("CARGO_PKG_VERSION"))),
            (bulk("proto"), Reply::Integer(if resp3 { 3 } else { 2 })),
            (bulk("id"), Reply::Integer(self.id as i64)),
            (bulk("mode"), bulk("standalone")),
            (bulk("role"), bulk("master")),
            (bulk("modules"), Reply::Array(Vec::new())),
        ]))
    }

    /// `CLIENT SETNAME|GETNAME|ID|SETINFO`: what client libraries send on connect.
    fn client(&mut self, args: &[Bytes]) -> Reply {
        let Some((sub, rest)) = args.split_first() else {
            return Reply::error(errors::wrong_arity(b"client"));
        };
        let mut upper = [0u8; 16];
        match (uppercase(sub, &mut upper), rest) {
            (b"SETNAME", [name]) => {
                self.name = (!name.is_empty()).then(|| name.clone());
                Reply::OK
            }
            (b"GETNAME", []) => self.name.clone().map_or(Reply::Null, Reply::Bulk),
            (b"ID", []) => Reply::Integer(self.id as i64),
            (b"SETINFO", [_, _]) => Reply::OK,
            (b"SETNAME" | b"GETNAME" | b"ID" | b"SETINFO", _) => {
                let mut name = b"client|".to_vec();
                name.extend_from_slice(&sub.to_ascii_lowercase());
                Reply::error(errors::wrong_arity(&name))
            }
            _ => Reply::error(errors::unknown_subcommand("client", sub)),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stats.connection_closed(self.counted_role());
    }
}

/// Counts a command by its outcome: at once, or when a deferred reply (a
/// produce, an MGET) completes.
fn counted(reply: Reply, kind: CommandKind, stats: &Arc<ShardStats>) -> Reply {
    match reply {
        Reply::Deferred(work) => {
            let stats = Arc::clone(stats);
            Reply::Deferred(Box::pin(async move {
                let reply = work.await;
                stats.command(kind, reply.is_error());
                reply
            }))
        }
        ready => {
            stats.command(kind, ready.is_error());
            ready
        }
    }
}

/// `COMMAND`, `COMMAND DOCS`, `COMMAND COUNT`, ...: redis-cli asks for command docs
/// to show hints; an empty answer is valid and cheap.
fn command_introspection(args: &[Bytes]) -> Reply {
    match args.first() {
        Some(sub) if sub.eq_ignore_ascii_case(b"COUNT") => Reply::Integer(0),
        _ => Reply::Array(Vec::new()),
    }
}

fn denied_text(reason: &Denied, dsn: &Dsn) -> String {
    match (reason, dsn.role) {
        (Denied::NoPermission, Role::Pub) => errors::may_not_publish(&dsn.group),
        (Denied::NoPermission, Role::Sub) => errors::may_not_subscribe(&dsn.group),
        _ => errors::WRONGPASS.to_owned(),
    }
}

/// ASCII-uppercases a command name into `buf`; names longer than any command we
/// know become empty, which matches nothing.
fn uppercase<'a>(name: &[u8], buf: &'a mut [u8; 16]) -> &'a [u8] {
    if name.len() > buf.len() {
        return &[];
    }
    let out = &mut buf[..name.len()];
    out.copy_from_slice(name);
    out.make_ascii_uppercase();
    out
}
