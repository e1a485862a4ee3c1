//! A connection's session: what it has proven (AUTH) and what each command does
//! for it. Knows commands and roles, not sockets: the connection feeds it parsed
//! commands and writes the replies it returns, in order.
//!
//! Dispatch follows the command table (`crate::command`): who may send a
//! command, how many arguments it takes. `auth` holds AUTH and the re-checks
//! after each refresh, `chatter` the setup commands of client libraries,
//! `publisher` and `subscriber` the role-specific work. A session reaches
//! the rest of the gateway only through its [`Handles`].

mod auth;
pub mod backend;
pub mod budget;
mod chatter;
#[cfg(test)]
pub(crate) mod fakes;
pub mod publisher;
pub mod reply;
pub mod subscriber;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::limiter::FailedAuthLimiter;
use crate::auth::{AuthHub, Dsn, Role};
use crate::clients::{Clients, Registration};
use crate::command::{Allowed, CommandKind};
use crate::errors;
use crate::metrics::{ConnectionRole, ShardStats};
use crate::quota::Admission;
use crate::resp::Command;
pub use backend::{Asker, Backend};
use publisher::Publisher;
pub use reply::Reply;
use subscriber::Subscriber;

/// What a shard's sessions are given: the only ways out of a session.
pub struct Handles<B> {
    /// Kafka (or a fake), and the INFO text.
    pub backend: B,
    /// The current grants, and the signal that they changed.
    pub auth: Arc<AuthHub>,
    /// Failed AUTHs per source address (`server.max_auth_failures`).
    pub auth_failures: Arc<FailedAuthLimiter>,
    /// Client ids and `CLIENT LIST`.
    pub clients: Arc<Clients>,
    /// This shard's counters.
    pub stats: Arc<ShardStats>,
    /// The process's budget for request bytes held (`max_buffered_bytes`).
    pub buffered: Arc<budget::ProcessBudget>,
    pub limits: Limits,
}

/// The `[server]` settings a session applies itself.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_value_bytes: usize,
    pub produce_timeout: Duration,
    /// Request bytes a connection may hold not yet handed to Kafka.
    pub max_connection_bytes: usize,
}

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

enum State<B: Backend> {
    Anonymous,
    Publisher(Authenticated, Publisher<B::Producer>),
    Subscriber(Authenticated, Subscriber<B::Member>),
}

struct Authenticated {
    /// The AUTH string exactly as sent, to tell a repeated AUTH from another one.
    raw: Bytes,
    dsn: Dsn,
    /// This connection, counted against its app's caps.
    admission: Admission,
}

pub struct Session<B: Backend> {
    handles: Rc<Handles<B>>,
    state: State<B>,
    /// This connection in `CLIENT LIST`; its id is the client id.
    client: Registration,
    /// Request bytes held by produces not yet handed to Kafka.
    budget: Rc<budget::ByteBudget>,
    peer: SocketAddr,
    /// Set by `HELLO 3`: replies are then encoded in RESP3.
    resp3: bool,
}

impl<B: Backend> Session<B> {
    pub fn new(handles: Rc<Handles<B>>, peer: SocketAddr, shard: usize) -> Session<B> {
        let client = handles.clients.register(peer, shard);
        handles.stats.connection_opened(ConnectionRole::Anonymous);
        let budget = budget::ByteBudget::new(
            handles.limits.max_connection_bytes,
            Arc::clone(&handles.buffered),
        );
        Session {
            handles,
            state: State::Anonymous,
            client,
            budget,
            peer,
            resp3: false,
        }
    }

    pub fn id(&self) -> u64 {
        self.client.entry().id
    }

    pub fn role(&self) -> Option<Role> {
        match self.state {
            State::Anonymous => None,
            State::Publisher(..) => Some(Role::Pub),
            State::Subscriber(..) => Some(Role::Sub),
        }
    }

    fn counted_role(&self) -> ConnectionRole {
        self.role()
            .map_or(ConnectionRole::Anonymous, ConnectionRole::from)
    }

    /// Whether replies are to be encoded in RESP3 (after `HELLO 3`).
    pub fn resp3(&self) -> bool {
        self.resp3
    }

    /// The connection read the client's last batch of commands at `at` (for
    /// `CLIENT LIST`'s idle time; one clock read per batch, not per command).
    pub fn active_at(&self, at: Instant) {
        self.client.active_at(at);
    }

    /// Resolves when the connection may read more: the request bytes it
    /// holds are under its budget, and its app's rate cap no longer pauses
    /// it.
    pub async fn room_to_read(&self) {
        self.budget.room().await;
        if let Some(until) = self.paused_until() {
            glommio::timer::sleep(until.saturating_duration_since(Instant::now())).await;
        }
    }

    /// Whether the connection may read more now (`room_to_read` would
    /// resolve at once).
    pub fn has_room_to_read(&self) -> bool {
        self.budget.has_room() && !self.is_paused()
    }

    /// Whether the app's rate cap pauses this connection: commands already
    /// read wait too, so that a large pipeline keeps to the cap.
    pub fn is_paused(&self) -> bool {
        self.paused_until().is_some()
    }

    /// Until when the app's rate cap pauses this connection, if it does.
    pub fn paused_until(&self) -> Option<Instant> {
        match &self.state {
            State::Publisher(_, publisher) => publisher.paused_until(),
            _ => None,
        }
    }

    /// Reserves `bytes` of the process's budget for a request being read,
    /// until the guard is dropped; None when they do not fit now.
    pub fn try_hold_for_reading(&self, bytes: usize) -> Option<budget::HeldBytes> {
        self.budget.try_take_for_reading(bytes)
    }

    pub fn handle(&mut self, command: Command) -> Step {
        let kind = CommandKind::lookup(command.name());
        self.client.command(kind);
        let mut step = self.dispatch(kind, &command);
        step.reply = counted(step.reply, kind, &self.handles.stats);
        step
    }

    /// Runs one command: who may send it and its arity first, from the table.
    fn dispatch(&mut self, kind: CommandKind, command: &Command) -> Step {
        let spec = kind.spec();
        let args = command.args();
        if spec.allowed != Allowed::Anyone {
            let Some(role) = self.role() else {
                return Step::reply(Reply::error(errors::NOAUTH));
            };
            if kind == CommandKind::Other {
                return Step::reply(Reply::error(errors::unknown_command(command.name())));
            }
            if !allows(spec.allowed, role) {
                return Step::reply(Reply::error(errors::not_allowed(
                    spec.label.as_bytes(),
                    role.as_str(),
                )));
            }
        }
        if !spec.arity.accepts(args.len()) {
            return Step::reply(Reply::error(errors::wrong_arity(spec.label.as_bytes())));
        }
        let reply = match (kind, &mut self.state) {
            (CommandKind::Auth, _) => return self.auth_command(args),
            (CommandKind::Hello, _) => return self.hello(args),
            (CommandKind::Quit, _) => return Step::close(Reply::OK),
            (CommandKind::Ping, _) => chatter::ping(args, self.handles.limits.max_connection_bytes),
            (CommandKind::Echo, _) => chatter::echo(args, self.handles.limits.max_connection_bytes),
            (CommandKind::Select, _) => chatter::select(args),
            (CommandKind::Command, _) => chatter::command_introspection(args),
            (CommandKind::Client, _) => self.client(args),
            (CommandKind::Info, state) => {
                let (lag, quota) = match state {
                    State::Anonymous => (None, None),
                    State::Publisher(a, _) => (None, Some(a.admission.quota().figures())),
                    State::Subscriber(a, s) => (Some(s.lag()), Some(a.admission.quota().figures())),
                };
                let asker = Asker {
                    lag: lag.as_deref(),
                    quota,
                };
                Reply::Bulk(Bytes::from(self.handles.backend.info(args, &asker)))
            }
            (CommandKind::Set, State::Publisher(_, p)) => p.set(args[0].clone(), args[1].clone()),
            (CommandKind::Hset, State::Publisher(_, p)) => {
                p.hset(args[0].clone(), &args[1], args[2].clone())
            }
            (CommandKind::Set, State::Subscriber(_, s)) => s.commit(&args[0], &args[1]),
            (CommandKind::Mget, State::Subscriber(_, s)) => s.mget(args),
            // The table let nothing else through.
            _ => Reply::error(errors::unknown_command(command.name())),
        };
        Step::reply(reply)
    }
}

impl<B: Backend> Drop for Session<B> {
    fn drop(&mut self) {
        self.handles.stats.connection_closed(self.counted_role());
    }
}

fn allows(allowed: Allowed, role: Role) -> bool {
    match allowed {
        Allowed::Anyone | Allowed::Authenticated | Allowed::Both => true,
        Allowed::Publishers => role == Role::Pub,
        Allowed::Subscribers => role == Role::Sub,
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
