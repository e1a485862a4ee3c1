//! Consumer-group members: one rdkafka consumer per subscriber connection
//! (protocol.md §5), each made, driven and closed by a task on the consumer
//! runtime: tokio worker threads of their own (`consumer.threads`), never a
//! shard's and never the control thread's.
//!
//! - `mod.rs` (this file): the service that makes members, counts them
//!   against `server.max_subscribers`, and keeps their lags and counters;
//! - `member.rs`: a member's handle (on the shard) and task (on the runtime);
//! - `group.rs`: what a member owns, delivered and must commit, and the
//!   rebalance callbacks that keep it;
//! - `offsets.rs`: one partition's commit position.
//!
//! Commits are forward-only, sent to Kafka every second and when the member
//! leaves or loses a partition in a rebalance. A commit for a partition this
//! member does not own is dropped: the owner redelivers the data. The
//! synchronous commits (a rebalance's, a leave's) wait off the runtime's
//! workers, so one member's slow broker round trip delays no other member.

mod group;
mod member;
mod offsets;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use rdkafka::config::ClientConfig;
use tokio::sync::{mpsc, oneshot, Notify};

use super::client_config;
use super::context::KafkaContext;
use crate::config::Config;
use group::{GroupState, MemberContext};
pub use member::Member;
use member::{refuse_fetches, MemberTask, Recipe, FETCHES_QUEUED};

/// How often a member sends the client's commits to Kafka.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// MGET's batching settings (`[consumer]`).
#[derive(Clone, Debug)]
pub struct FetchSettings {
    /// Accept commits of offsets never delivered (`consumer.commit_undelivered`).
    pub commit_undelivered: bool,
    pub batch: usize,
    pub max_batch_bytes: usize,
    pub batch_window: Duration,
    pub poll_timeout: Duration,
}

/// Counters across all members, for metrics and INFO.
#[derive(Default, Debug)]
pub struct ConsumerStats {
    pub messages_delivered: AtomicU64,
    pub messages_skipped: AtomicU64,
    pub values_not_json: AtomicU64,
    pub commits_applied: AtomicU64,
    pub commits_dropped: AtomicU64,
}

/// A member's lag: partition end (high watermark) minus its position, per
/// partition it owns; refreshed every second and after each fetch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberLag {
    pub group: String,
    pub topic: String,
    pub partitions: BTreeMap<i32, i64>,
}

impl MemberLag {
    pub fn total(&self) -> i64 {
        self.partitions.values().sum()
    }
}

/// Every live member's lag, by member number.
pub type Lags = Mutex<BTreeMap<u64, MemberLag>>;

/// A commit of an offset this member never delivered on that partition.
#[derive(Debug, PartialEq, Eq)]
pub struct Undelivered;

/// Why a member could not be made.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("no such cluster in the configuration")]
    UnknownCluster,
    #[error("server.max_subscribers members are live")]
    Full,
}

/// The consumer runtime: `threads` tokio workers named `databus-consumer`.
/// Its owner shuts it down after the members left (see `startup`).
pub fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("databus-consumer")
        .enable_all()
        .build()
        .context("cannot start the consumer runtime")
}

/// Creates members and keeps count of the live ones.
pub struct ConsumerService {
    runtime: tokio::runtime::Handle,
    /// Per cluster, the consumer configuration minus `group.id`.
    clusters: HashMap<String, ClientConfig>,
    settings: FetchSettings,
    live: Arc<LiveMembers>,
    /// `server.max_subscribers`.
    max_members: usize,
    lags: Arc<Lags>,
    pub stats: Arc<ConsumerStats>,
    /// Numbers members in logs, so one member's story can be followed.
    next_member: AtomicU64,
}

impl ConsumerService {
    /// Members will run on `runtime`, a multi-threaded one (see [`runtime`]):
    /// their synchronous commits hand their worker's other tasks over.
    pub fn new(config: &Config, runtime: tokio::runtime::Handle) -> ConsumerService {
        let clusters = config
            .clusters
            .iter()
            .map(|(name, cluster)| {
                let mut c = client_config::base(cluster);
                c.set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.offset.reset", &cluster.auto_offset_reset)
                    .set(
                        "session.timeout.ms",
                        config.consumer.session_timeout.as_millis().to_string(),
                    )
                    .set(
                        "max.poll.interval.ms",
                        max_poll_interval(config).as_millis().to_string(),
                    );
                prefetch_limits(&mut c, config.consumer.batch);
                (
                    name.clone(),
                    client_config::with_operator_properties(c, cluster),
                )
            })
            .collect();
        ConsumerService {
            runtime,
            clusters,
            settings: FetchSettings {
                commit_undelivered: config.consumer.commit_undelivered,
                batch: config.consumer.batch,
                max_batch_bytes: config.consumer.max_batch_bytes,
                batch_window: config.consumer.batch_window,
                poll_timeout: config.consumer.poll_timeout,
            },
            live: Arc::new(LiveMembers::default()),
            max_members: config.server.max_subscribers,
            lags: Arc::new(Lags::default()),
            stats: Arc::new(ConsumerStats::default()),
            next_member: AtomicU64::new(1),
        }
    }

    /// A new member of consumer group `group` subscribed to `topic`. Returns
    /// at once: the consumer is made on the consumer runtime, and joins the
    /// group in the background; its first fetch waits for the assignment. A
    /// consumer librdkafka refuses to make (the cluster's settings were
    /// already accepted by its producer at start) answers that fetch with why.
    pub fn join(
        &self,
        cluster: &str,
        group: &str,
        topic: &str,
        lag: Arc<AtomicI64>,
    ) -> Result<Member, JoinError> {
        let base = self
            .clusters
            .get(cluster)
            .ok_or(JoinError::UnknownCluster)?;
        // The slot is taken before the consumer is made: its threads and
        // descriptors are what the cap bounds.
        let slot = MemberSlot::take(&self.live, self.max_members).ok_or(JoinError::Full)?;
        let mut config = base.clone();
        config.set("group.id", group);
        let state = Arc::new(Mutex::new(GroupState::default()));
        let number = self.next_member.fetch_add(1, Ordering::Relaxed);
        let recipe = Recipe {
            config,
            context: MemberContext {
                log: KafkaContext {
                    cluster: cluster.to_owned(),
                },
                member: number,
                group: group.to_owned(),
                topic: topic.to_owned(),
                state: Arc::clone(&state),
                rebalanced: Notify::new(),
            },
        };
        let task = MemberTask {
            state: Arc::clone(&state),
            settings: self.settings.clone(),
            stats: Arc::clone(&self.stats),
            lag,
            lags: Arc::clone(&self.lags),
        };
        let (fetches, requests) = mpsc::channel(FETCHES_QUEUED);
        let (gone, gone_signal) = oneshot::channel();
        self.runtime.spawn(async move {
            match recipe.make() {
                Ok(consumer) => task.run(consumer, requests, gone_signal).await,
                Err(e) => {
                    tracing::warn!(member = number, error = %e, "cannot create consumer");
                    refuse_fetches(requests, e).await;
                }
            }
            drop(slot);
        });
        Ok(Member {
            fetches,
            _gone: gone,
            state,
            commit_undelivered: self.settings.commit_undelivered,
            number,
            stats: Arc::clone(&self.stats),
            lags: Arc::clone(&self.lags),
        })
    }

    /// Every live member's lag, by member number.
    pub fn lags(&self) -> BTreeMap<u64, MemberLag> {
        self.lags.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Members still live (joined and not yet closed).
    pub fn live_members(&self) -> usize {
        *self.live.lock()
    }

    /// Waits, up to `limit`, for every member to have left its group; called at
    /// shutdown, after the connections closed, while the consumer runtime runs.
    pub fn wait_until_all_left(&self, limit: Duration) -> bool {
        let guard = self.live.lock();
        let (guard, _) = self
            .live
            .all_left
            .wait_timeout_while(guard, limit, |live| *live > 0)
            .unwrap_or_else(|e| e.into_inner());
        *guard == 0
    }
}

/// How long a member may go without polling before it leaves its group; it is
/// also the rebalance timeout: how long the coordinator waits for members to
/// rejoin. A member polls only during MGET, and a healthy client is never away
/// longer than `sub_idle_timeout` plus one long poll (its connection is closed
/// then). librdkafka's 5-minute default would let one vanished member stall a
/// group's rebalance that long.
fn max_poll_interval(config: &Config) -> Duration {
    (config.server.sub_idle_timeout + config.consumer.poll_timeout)
        .max(config.consumer.session_timeout)
}

/// How much each member prefetches. librdkafka's defaults suit one consumer
/// per process: up to 64 MiB and 100,000 messages per partition queued, and
/// once past that, no fetch for a second. A gateway holds a member per
/// subscriber connection, and the second without a fetch showed as a 0.6 s
/// stall in the middle of every drain (benches/loadgen.rs consume-gateway).
/// So: about a hundred MGETs' worth queued, at most 16 MiB, and a short
/// backoff. Operators can still override each in `[clusters.<n>.kafka]`.
fn prefetch_limits(config: &mut ClientConfig, batch: usize) {
    let messages = (batch * 100).clamp(1_000, 100_000);
    config
        .set("queued.min.messages", messages.to_string())
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.queue.backoff.ms", "20");
}

#[derive(Default)]
struct LiveMembers {
    count: Mutex<usize>,
    all_left: Condvar,
}

impl LiveMembers {
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.count.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn leave(&self) {
        let mut count = self.lock();
        *count -= 1;
        if *count == 0 {
            self.all_left.notify_all();
        }
    }
}

/// A member's place among the live ones; left when dropped (the member's task
/// ended, or it could not be made).
struct MemberSlot(Arc<LiveMembers>);

impl MemberSlot {
    /// A slot, unless `max` members are live.
    fn take(live: &Arc<LiveMembers>, max: usize) -> Option<MemberSlot> {
        let mut count = live.lock();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(MemberSlot(Arc::clone(live)))
    }
}

impl Drop for MemberSlot {
    fn drop(&mut self) {
        self.0.leave();
    }
}
