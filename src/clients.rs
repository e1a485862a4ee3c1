//! Who is connected: the slots of `max_connections`, client ids, and one entry
//! per connection with what `CLIENT LIST` shows (Redis' `key=value` format,
//! plus the gateway's own fields: role, app key, group, topic, shard).
//!
//! An entry is written by its own connection only (relaxed atomics, and a
//! lock taken once at AUTH and at `CLIENT SETNAME`), and read when someone
//! lists: listing costs the listener, never the connections listed.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use crate::auth::Role;
use crate::command::CommandKind;

/// How long the cap set when descriptors ran out lasts without a new
/// shortage.
const DESCRIPTOR_CAP_FOR_MICROS: u64 = 1_000_000;

/// The longest a client-chosen value (name, color) is shown; longer ones are
/// cut, so a hostile client cannot make a listing huge.
const SHOWN_CHARS: usize = 64;

/// The process's client connections.
pub struct Clients {
    max: usize,
    /// Connections holding a slot, authenticated or not.
    open: AtomicUsize,
    /// A lower bound than `max` while the process is out of descriptors:
    /// the connections open when it ran out. A connection accepted with a
    /// descriptor another one just gave back is then refused (and its
    /// descriptor given back at once), rather than served while clients
    /// behind it wait unanswered.
    descriptor_cap: AtomicUsize,
    /// When the cap was last set (µs from `started`): it lapses after
    /// `DESCRIPTOR_CAP_FOR`, and the next shortage sets it again.
    descriptor_cap_at: AtomicU64,
    next_id: AtomicU64,
    entries: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
    started: Instant,
}

/// A slot in `max_connections`; given back when dropped.
pub struct Slot {
    clients: Arc<Clients>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let clients = &self.clients;
        let open = clients.open.fetch_sub(1, Ordering::Relaxed) - 1;
        let cap = clients.descriptor_cap.load(Ordering::Relaxed);
        if cap != usize::MAX && open < cap - cap / 10 {
            clients.descriptor_cap.store(usize::MAX, Ordering::Relaxed);
        }
    }
}

/// One connection as listed. Its connection updates it; listers read it.
pub struct ClientEntry {
    pub id: u64,
    addr: SocketAddr,
    shard: usize,
    connected: Instant,
    /// Microseconds from `Clients::started` to the last command.
    last_active_micros: AtomicU64,
    commands: AtomicU64,
    last_command: AtomicU8,
    resp3: AtomicBool,
    name: Mutex<Option<Bytes>>,
    identity: OnceLock<Identity>,
    /// A subscriber's total lag, kept by its consumer member (-1: unknown).
    lag: Arc<AtomicI64>,
}

/// What AUTH proved; set once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub role: Role,
    pub key: String,
    pub group: String,
    pub topic: String,
    pub color: String,
}

/// A connection's entry in the list, removed when dropped.
pub struct Registration {
    clients: Arc<Clients>,
    entry: Arc<ClientEntry>,
}

impl Clients {
    pub fn new(max_connections: usize) -> Clients {
        Clients {
            max: max_connections,
            open: AtomicUsize::new(0),
            descriptor_cap: AtomicUsize::new(usize::MAX),
            descriptor_cap_at: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            entries: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
        }
    }

    /// Takes a slot, or None when `max_connections` are open (or as many as
    /// were open when descriptors ran out).
    pub fn try_connect(self: &Arc<Self>) -> Option<Slot> {
        let previous = self.open.fetch_add(1, Ordering::Relaxed);
        let slot = Slot {
            clients: Arc::clone(self),
        };
        let mut cap = self.descriptor_cap.load(Ordering::Relaxed);
        if cap != usize::MAX {
            let set_at = self.descriptor_cap_at.load(Ordering::Relaxed);
            if self.micros_at(Instant::now()).saturating_sub(set_at) > DESCRIPTOR_CAP_FOR_MICROS {
                self.descriptor_cap.store(usize::MAX, Ordering::Relaxed);
                cap = usize::MAX;
            }
        }
        (previous < self.max.min(cap)).then_some(slot)
    }

    /// The process ran out of descriptors: no more connections than are open
    /// now, until a tenth of them have closed or a second has passed without
    /// running out again.
    pub fn out_of_descriptors(&self) {
        let open = self.open.load(Ordering::Relaxed).max(1);
        self.descriptor_cap_at
            .store(self.micros_at(Instant::now()), Ordering::Relaxed);
        self.descriptor_cap.fetch_min(open, Ordering::Relaxed);
    }

    /// Connections holding a slot.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Lists a new connection, giving it the next client id.
    pub fn register(self: &Arc<Self>, addr: SocketAddr, shard: usize) -> Registration {
        let now = Instant::now();
        let entry = Arc::new(ClientEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            addr,
            shard,
            connected: now,
            last_active_micros: AtomicU64::new(self.micros_at(now)),
            commands: AtomicU64::new(0),
            last_command: AtomicU8::new(CommandKind::Other as u8),
            resp3: AtomicBool::new(false),
            name: Mutex::new(None),
            identity: OnceLock::new(),
            lag: Arc::new(AtomicI64::new(-1)),
        });
        self.lock().insert(entry.id, Arc::clone(&entry));
        Registration {
            clients: Arc::clone(self),
            entry,
        }
    }

    /// `CLIENT LIST`'s text for the connections `shown` accepts, by id.
    pub fn list(&self, shown: impl Fn(&ClientEntry) -> bool) -> String {
        let entries: Vec<Arc<ClientEntry>> =
            self.lock().values().filter(|e| shown(e)).cloned().collect();
        let now = Instant::now();
        let mut out = String::with_capacity(entries.len() * 200);
        for entry in entries {
            entry.describe(&mut out, now, self);
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<ClientEntry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn micros_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_micros() as u64
    }
}

impl Registration {
    pub fn entry(&self) -> &ClientEntry {
        &self.entry
    }

    /// The client sent a command of `kind`.
    pub fn command(&self, kind: CommandKind) {
        // Only this connection writes its entry: a load and a store, not a
        // locked read-modify-write, on every command.
        let commands = &self.entry.commands;
        commands.store(commands.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.entry.last_command.store(kind as u8, Ordering::Relaxed);
    }

    /// The client's last batch of commands was read at `at`.
    pub fn active_at(&self, at: Instant) {
        self.entry
            .last_active_micros
            .store(self.clients.micros_at(at), Ordering::Relaxed);
    }

    pub fn set_resp3(&self, resp3: bool) {
        self.entry.resp3.store(resp3, Ordering::Relaxed);
    }

    pub fn set_name(&self, name: Option<Bytes>) {
        *lock(&self.entry.name) = name;
    }

    pub fn name(&self) -> Option<Bytes> {
        lock(&self.entry.name).clone()
    }

    /// Where a subscriber's member keeps its lag for the listing.
    pub fn lag(&self) -> Arc<AtomicI64> {
        Arc::clone(&self.entry.lag)
    }

    pub fn authenticated(&self, identity: Identity) {
        let _ = self.entry.identity.set(identity);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.clients.lock().remove(&self.entry.id);
    }
}

impl ClientEntry {
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.get()
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    /// One `CLIENT LIST` line. Redis' fields first, in Redis' order, for tools
    /// that read them; then the gateway's own.
    fn describe(&self, out: &mut String, now: Instant, clients: &Clients) {
        let idle_since = clients.started
            + std::time::Duration::from_micros(self.last_active_micros.load(Ordering::Relaxed));
        let kind = CommandKind::all()
            .nth(usize::from(self.last_command.load(Ordering::Relaxed)))
            .unwrap_or(CommandKind::Other);
        let name = lock(&self.name).clone().unwrap_or_default();
        let identity = self.identity.get();
        let field = |f: fn(&Identity) -> &str| identity.map_or("", f).to_owned();
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "id={} addr={} name={} age={} idle={} db=0 cmd={} resp={} user={} \
             role={} key={} group={} topic={} color={} commands={} shard={} lag={}",
            self.id,
            self.addr,
            shown(&name),
            now.saturating_duration_since(self.connected).as_secs(),
            now.saturating_duration_since(idle_since).as_secs(),
            kind.label(),
            if self.resp3.load(Ordering::Relaxed) {
                3
            } else {
                2
            },
            if identity.is_some() { "default" } else { "" },
            identity.map_or("none", |i| i.role.as_str()),
            shown(field(|i| &i.key).as_bytes()),
            shown(field(|i| &i.group).as_bytes()),
            shown(field(|i| &i.topic).as_bytes()),
            shown(field(|i| &i.color).as_bytes()),
            self.commands.load(Ordering::Relaxed),
            self.shard,
            match self.lag.load(Ordering::Relaxed) {
                -1 => String::new(),
                lag => lag.to_string(),
            },
        );
    }
}

/// A value as listed: at most `SHOWN_CHARS` characters, anything that would
/// break the `key=value` line (space, `=`, control characters) as `?`.
fn shown(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .chars()
        .take(SHOWN_CHARS)
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == '=' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    #[test]
    fn slots_stop_at_max_and_come_back() {
        let clients = Arc::new(Clients::new(2));
        let a = clients.try_connect();
        let b = clients.try_connect();
        assert!(a.is_some() && b.is_some());
        assert!(clients.try_connect().is_none());
        drop(a);
        assert!(clients.try_connect().is_some());
        assert_eq!(clients.open(), 1);
    }

    #[test]
    fn a_listing_shows_each_connection_until_it_leaves() {
        let clients = Arc::new(Clients::new(10));
        let anonymous = clients.register(addr(), 0);
        let publisher = clients.register(addr(), 1);
        publisher.authenticated(Identity {
            role: Role::Pub,
            key: "k".into(),
            group: "g".into(),
            topic: "t".into(),
            color: "a b=c".into(),
        });
        publisher.command(CommandKind::Set);
        publisher.command(CommandKind::Set);
        publisher.set_name(Some(Bytes::from_static(b"worker\n1")));
        let list = clients.list(|_| true);
        let lines: Vec<&str> = list.lines().collect();
        assert_eq!(lines.len(), 2, "{list}");
        assert!(
            lines[0].starts_with(&format!(
                "id={} addr=127.0.0.1:4000 name= age=0 idle=0 db=0 cmd=other resp=2 user= role=none key= ",
                anonymous.entry().id
            )),
            "{list}"
        );
        assert!(
            lines[1].ends_with(
                "cmd=set resp=2 user=default role=pub key=k group=g topic=t color=a?b?c commands=2 shard=1 lag="
            ),
            "{list}"
        );
        assert!(lines[1].contains(" name=worker?1 "), "{list}");
        drop(anonymous);
        assert_eq!(clients.list(|_| true).lines().count(), 1);
        assert_eq!(clients.list(|e| e.identity().is_none()), "");
    }
}
