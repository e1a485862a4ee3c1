//! What a session asks of the rest of the gateway, as narrow traits: a
//! cluster's producer, a consumer-group member, the INFO text. The real ones
//! (Kafka's) are wired in `crate::wiring`; the session's own tests hand it
//! fakes, so a session runs in-process without a broker or a database.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::message::{Fetched, Pick, Record};
pub use crate::metrics::info::Asker;

/// Everything outside the session that its commands reach, for one shard.
pub trait Backend {
    type Producer: Produce + Clone + 'static;
    type Member: Membership + 'static;

    /// The producer this shard uses for `cluster`; None when the cluster is
    /// not configured.
    fn producer(&self, cluster: &str) -> Option<Self::Producer>;

    /// A new member of consumer group `group` on `cluster`, subscribed to
    /// `topic`. It keeps its total lag in `lag` (-1 while unknown).
    fn join(
        &self,
        cluster: &str,
        group: &str,
        topic: &str,
        lag: Arc<AtomicI64>,
    ) -> Result<Self::Member, JoinError>;

    /// The INFO text for the sections asked for, with what the asking
    /// connection may see of its own.
    fn info(&self, sections: &[Bytes], asker: &Asker) -> String;
}

/// Why a subscriber could not join its group. A consumer Kafka's client
/// refuses to make is not known yet at AUTH: it is made off the shard, and
/// the first MGET answers why ([`Fetched::Failed`]).
#[derive(Debug)]
pub enum JoinError {
    /// The app's cluster is not in the configuration.
    UnknownCluster,
    /// `max_subscribers` members are live.
    Full,
}

/// A cluster's producer, as a publisher uses it.
pub trait Produce {
    type Error: Display;
    /// Resolves when the broker acknowledged the record, or it failed.
    type Delivery: Future<Output = Result<(), Self::Error>> + 'static;

    /// Hands `record` to the producer, which copies it. The future's first
    /// poll does so when the producer has room, so pipelined SETs are all in
    /// flight at once; while its queue is full, it waits, until `deadline`.
    fn enqueue<'a>(
        &'a self,
        record: &'a Record<'a>,
        deadline: Instant,
    ) -> impl Future<Output = Result<Self::Delivery, Self::Error>> + 'a;
}

/// A subscriber's consumer-group member.
pub trait Membership {
    /// The next batch of the records `pick` takes, as it encodes them; asked
    /// for when the future is first polled (after any commit sent before),
    /// not when it is made.
    fn fetch(&self, pick: Pick) -> impl Future<Output = Fetched> + 'static;

    /// The client committed `offset` on `partition`; refused when the member
    /// never delivered that offset there.
    fn commit(&self, partition: i32, offset: i64) -> Result<(), Undelivered>;

    /// Partition end minus position, per partition the member owns.
    fn lag(&self) -> Vec<(i32, i64)>;
}

/// A commit of an offset the member never delivered on that partition.
#[derive(Debug, PartialEq, Eq)]
pub struct Undelivered;
