//! What the gateway counts about itself, for `/metrics` (Prometheus), `/readyz`
//! and `INFO`.
//!
//! Counters on the hot path (commands, bytes, produces, connections) are
//! per shard: each shard adds to its own cache-line-aligned block of atomics, so
//! two cores never contend for one counter, and a scrape or an `INFO` adds the
//! blocks up ([`Metrics::totals`]). Counters that other parts already keep (the
//! consumer members', the auth refresh's) are read where they live at scrape
//! time.

pub mod exposition;
pub mod http;
pub mod info;
mod sources;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{Denied, Role};
pub use crate::command::CommandKind;
pub use sources::Sources;

/// How an AUTH ended. Labels name the precise reason, which the client never
/// sees (it gets one text for all wrong credentials); none holds a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    Ok,
    Malformed,
    BadRole,
    BadColor,
    UnknownKey,
    UnknownGroup,
    WrongTopic,
    WrongSecret,
    NoPermission,
    ColorNotAllowed,
    ClusterNotConfigured,
    RateLimited,
    SubscribersFull,
    AppConnectionsFull,
}

impl AuthOutcome {
    pub const ALL: [AuthOutcome; 14] = [
        AuthOutcome::Ok,
        AuthOutcome::Malformed,
        AuthOutcome::BadRole,
        AuthOutcome::BadColor,
        AuthOutcome::UnknownKey,
        AuthOutcome::UnknownGroup,
        AuthOutcome::WrongTopic,
        AuthOutcome::WrongSecret,
        AuthOutcome::NoPermission,
        AuthOutcome::ColorNotAllowed,
        AuthOutcome::ClusterNotConfigured,
        AuthOutcome::RateLimited,
        AuthOutcome::SubscribersFull,
        AuthOutcome::AppConnectionsFull,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AuthOutcome::Ok => "ok",
            AuthOutcome::Malformed => "malformed",
            AuthOutcome::BadRole => "bad_role",
            AuthOutcome::BadColor => "bad_color",
            AuthOutcome::UnknownKey => "unknown_key",
            AuthOutcome::UnknownGroup => "unknown_group",
            AuthOutcome::WrongTopic => "wrong_topic",
            AuthOutcome::WrongSecret => "wrong_secret",
            AuthOutcome::NoPermission => "no_permission",
            AuthOutcome::ColorNotAllowed => "color_not_allowed",
            AuthOutcome::ClusterNotConfigured => "cluster_not_configured",
            AuthOutcome::RateLimited => "rate_limited",
            AuthOutcome::SubscribersFull => "subscribers_full",
            AuthOutcome::AppConnectionsFull => "app_connections_full",
        }
    }
}

impl From<&Denied> for AuthOutcome {
    fn from(reason: &Denied) -> AuthOutcome {
        match reason {
            Denied::UnknownKey => AuthOutcome::UnknownKey,
            Denied::UnknownGroup => AuthOutcome::UnknownGroup,
            Denied::WrongTopic => AuthOutcome::WrongTopic,
            Denied::WrongSecret => AuthOutcome::WrongSecret,
            Denied::NoPermission => AuthOutcome::NoPermission,
            Denied::ColorNotAllowed => AuthOutcome::ColorNotAllowed,
        }
    }
}

/// A connection's role as counted in `databus_connections`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionRole {
    Anonymous,
    Pub,
    Sub,
}

impl ConnectionRole {
    pub const ALL: [ConnectionRole; 3] = [
        ConnectionRole::Anonymous,
        ConnectionRole::Pub,
        ConnectionRole::Sub,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ConnectionRole::Anonymous => "none",
            ConnectionRole::Pub => "pub",
            ConnectionRole::Sub => "sub",
        }
    }
}

impl From<Role> for ConnectionRole {
    fn from(role: Role) -> ConnectionRole {
        match role {
            Role::Pub => ConnectionRole::Pub,
            Role::Sub => ConnectionRole::Sub,
        }
    }
}

/// Upper bounds (seconds) of the produce latency histogram's buckets: from a
/// fast local broker's sub-millisecond acks to the 10 s `produce_timeout`.
pub const PRODUCE_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const COMMANDS: usize = CommandKind::COUNT;
const AUTHS: usize = AuthOutcome::ALL.len();
const ROLES: usize = ConnectionRole::ALL.len();

/// One shard's counters. Aligned to two cache lines so that neighbouring
/// shards' blocks never share one (adjacent-line prefetch included).
#[repr(align(128))]
#[derive(Default)]
pub struct ShardStats {
    /// Open connections by role; a shard's own count may go below zero when a
    /// connection it counted moves role elsewhere, never the sum.
    connections: [AtomicI64; ROLES],
    accepted: AtomicU64,
    refused: AtomicU64,
    /// By command: [ok, error].
    commands: [[AtomicU64; 2]; COMMANDS],
    auth: [AtomicU64; AUTHS],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Produce latencies, one count per bucket (not cumulative); the last slot
    /// is above the largest bound.
    produce_buckets: [AtomicU64; PRODUCE_BUCKETS.len() + 1],
    produce_sum_micros: AtomicU64,
    produce_errors: AtomicU64,
}

impl ShardStats {
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_opened(&self, role: ConnectionRole) {
        self.connections[role as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self, role: ConnectionRole) {
        self.connections[role as usize].fetch_sub(1, Ordering::Relaxed);
    }

    pub fn command(&self, kind: CommandKind, failed: bool) {
        self.commands[kind as usize][failed as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn auth(&self, outcome: AuthOutcome) {
        self.auth[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn bytes_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn bytes_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// One produce finished after `latency`, acknowledged or not.
    pub fn produced(&self, latency: Duration, ok: bool) {
        let seconds = latency.as_secs_f64();
        let bucket = PRODUCE_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(PRODUCE_BUCKETS.len());
        self.produce_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.produce_sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        if !ok {
            self.produce_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Every shard's counters.
pub struct Metrics {
    shards: Box<[Arc<ShardStats>]>,
    started: Instant,
}

/// The shards' counters added up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub connections: [i64; ROLES],
    pub accepted: u64,
    pub refused: u64,
    pub commands: [[u64; 2]; COMMANDS],
    pub auth: [u64; AUTHS],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub produce_buckets: [u64; PRODUCE_BUCKETS.len() + 1],
    pub produce_sum: Duration,
    pub produce_errors: u64,
}

impl Totals {
    pub fn connections(&self, role: ConnectionRole) -> i64 {
        self.connections[role as usize]
    }

    pub fn commands(&self, kind: CommandKind, failed: bool) -> u64 {
        self.commands[kind as usize][failed as usize]
    }

    pub fn commands_processed(&self) -> u64 {
        self.commands.iter().flatten().sum()
    }

    pub fn auth(&self, outcome: AuthOutcome) -> u64 {
        self.auth[outcome as usize]
    }

    pub fn auth_failures(&self) -> u64 {
        self.auth.iter().sum::<u64>() - self.auth(AuthOutcome::Ok)
    }

    pub fn produces(&self) -> u64 {
        self.produce_buckets.iter().sum()
    }
}

impl Metrics {
    pub fn new(shards: usize) -> Metrics {
        Metrics {
            shards: (0..shards.max(1)).map(|_| Arc::default()).collect(),
            started: Instant::now(),
        }
    }

    /// The block of shard `shard` (0-based).
    pub fn for_shard(&self, shard: usize) -> Arc<ShardStats> {
        Arc::clone(&self.shards[shard % self.shards.len()])
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for s in self.shards.iter() {
            for (sum, a) in t.connections.iter_mut().zip(&s.connections) {
                *sum += a.load(Ordering::Relaxed);
            }
            t.accepted += load(&s.accepted);
            t.refused += load(&s.refused);
            for (sums, counters) in t.commands.iter_mut().zip(&s.commands) {
                for (sum, a) in sums.iter_mut().zip(counters) {
                    *sum += load(a);
                }
            }
            for (sum, a) in t.auth.iter_mut().zip(&s.auth) {
                *sum += load(a);
            }
            t.bytes_in += load(&s.bytes_in);
            t.bytes_out += load(&s.bytes_out);
            for (sum, a) in t.produce_buckets.iter_mut().zip(&s.produce_buckets) {
                *sum += load(a);
            }
            t.produce_sum += Duration::from_micros(load(&s.produce_sum_micros));
            t.produce_errors += load(&s.produce_errors);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_every_shard() {
        let metrics = Metrics::new(2);
        let (a, b) = (&metrics.shards[0], &metrics.shards[1]);
        a.connection_opened(ConnectionRole::Anonymous);
        // A connection counted anonymous on one block, then as a publisher
        // on the other: each block alone is off, the sum is right.
        b.connection_closed(ConnectionRole::Anonymous);
        b.connection_opened(ConnectionRole::Pub);
        a.command(CommandKind::Set, false);
        b.command(CommandKind::Set, true);
        b.command(CommandKind::Set, false);
        a.auth(AuthOutcome::Ok);
        b.auth(AuthOutcome::WrongSecret);
        a.bytes_in(10);
        b.bytes_out(7);
        let t = metrics.totals();
        assert_eq!(t.connections(ConnectionRole::Anonymous), 0);
        assert_eq!(t.connections(ConnectionRole::Pub), 1);
        assert_eq!(t.commands(CommandKind::Set, false), 2);
        assert_eq!(t.commands(CommandKind::Set, true), 1);
        assert_eq!(t.commands_processed(), 3);
        assert_eq!(t.auth_failures(), 1);
        assert_eq!((t.bytes_in, t.bytes_out), (10, 7));
    }

    #[test]
    fn produce_latencies_land_in_their_bucket() {
        let metrics = Metrics::new(1);
        let s = &metrics.shards[0];
        s.produced(Duration::from_micros(400), true); // ≤ 0.5 ms
        s.produced(Duration::from_millis(1), true); // ≤ 1 ms: bounds are inclusive
        s.produced(Duration::from_secs(11), false); // above every bound
        let t = metrics.totals();
        assert_eq!(t.produce_buckets[0], 1);
        assert_eq!(t.produce_buckets[1], 1);
        assert_eq!(t.produce_buckets[PRODUCE_BUCKETS.len()], 1);
        assert_eq!(t.produces(), 3);
        assert_eq!(t.produce_errors, 1);
        assert_eq!(t.produce_sum, Duration::from_micros(11_001_400));
    }

    #[test]
    fn outcomes_are_in_label_order() {
        for outcome in AuthOutcome::ALL {
            assert_eq!(AuthOutcome::ALL[outcome as usize], outcome);
        }
    }
}
