//! Consumer-group members: one rdkafka consumer per subscriber connection
//! (protocol.md §5), each driven by a task on the control thread's tokio runtime.
//!
//! A shard holds a [`Member`] handle and sends it commands over a channel: a
//! commit as its command is read, a fetch once the connection's writer gets to
//! its MGET (so a client that stops reading stops the fetching); a fetch's
//! answer comes back on a oneshot. So a client's pipelined commits are applied
//! before the MGET behind them, and an idle member costs no CPU: its task
//! sleeps on the channel, and a fetch sleeps in the consumer until librdkafka
//! has a message or the poll times out.
//!
//! Commits are forward-only, sent to Kafka every second and when the member
//! leaves or loses a partition in a rebalance. A commit for a partition this
//! member does not own is dropped: the owner redelivers the data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{future, StreamExt};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::client_config;
use super::context::KafkaContext;
use crate::config::Config;
use crate::message::{Consumed, Encoding, Fetched};

/// Runs of skipped records (other colors) remembered per partition, waiting
/// for the client to commit the delivered record before them.
const MAX_SKIPPED_RUNS: usize = 10_000;

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

/// What a subscriber connection holds. Dropping it makes the member commit what
/// the client committed and leave the group.
pub struct Member {
    commands: mpsc::UnboundedSender<Command>,
    _gone: oneshot::Sender<()>,
    /// What the member delivered, shared with its task: a commit is checked
    /// against it before it is sent.
    state: Arc<Mutex<GroupState>>,
    /// `consumer.commit_undelivered`: accept commits of offsets never
    /// delivered, as the original service did.
    commit_undelivered: bool,
    /// The member's number, its key in `lags`.
    number: u64,
    lags: Arc<Lags>,
}

/// A commit of an offset this member never delivered on that partition.
#[derive(Debug, PartialEq, Eq)]
pub struct Undelivered;

enum Command {
    Fetch {
        encoding: Encoding,
        reply: oneshot::Sender<Fetched>,
    },
    Commit {
        partition: i32,
        offset: i64,
    },
}

/// Why a member could not be made.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("no such cluster in the configuration")]
    UnknownCluster,
    #[error("server.max_subscribers members are live")]
    Full,
    #[error("{0}")]
    Kafka(#[from] KafkaError),
}

impl ConsumerService {
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

    /// Makes a new member of consumer group `group` subscribed to `topic`. It joins
    /// the group in the background; its first fetch waits for the assignment.
    pub fn join(
        &self,
        cluster: &str,
        group: &str,
        topic: &str,
        color: &str,
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
        let context = MemberContext {
            log: KafkaContext {
                cluster: cluster.to_owned(),
            },
            member: number,
            group: group.to_owned(),
            topic: topic.to_owned(),
            state: Arc::clone(&state),
            rebalanced: Notify::new(),
        };
        // StreamConsumer starts a wake-up task on the current tokio runtime.
        let _runtime = self.runtime.enter();
        let consumer: StreamConsumer<MemberContext> = config.create_with_context(context)?;
        consumer.subscribe(&[topic])?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let (gone, gone_signal) = oneshot::channel();
        let task = MemberTask {
            consumer,
            settings: self.settings.clone(),
            color: color.to_owned(),
            stats: Arc::clone(&self.stats),
            carried: Mutex::new(None),
            lag,
            lags: Arc::clone(&self.lags),
        };
        self.runtime.spawn(async move {
            task.run(receiver, gone_signal).await;
            drop(slot);
        });
        Ok(Member {
            commands,
            _gone: gone,
            state,
            commit_undelivered: self.settings.commit_undelivered,
            number,
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
    /// shutdown, after the connections closed, while the control thread runs.
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

impl Member {
    /// Asks for the next batch when the returned future is first polled, not
    /// before (after any commit queued by then); it resolves when the batch is
    /// ready. The connection's writer polls an MGET's reply only when it gets
    /// to it, after the replies before it, so a client that pipelines MGETs
    /// and stops reading stops the fetching too: batches do not pile up in the
    /// gateway.
    pub fn fetch(&self, encoding: Encoding) -> impl std::future::Future<Output = Fetched> {
        let commands = self.commands.clone();
        async move {
            let (reply, answer) = oneshot::channel();
            if commands.send(Command::Fetch { encoding, reply }).is_err() {
                return Fetched::Gone;
            }
            answer.await.unwrap_or(Fetched::Gone)
        }
    }

    /// Partition end minus position, per partition this member owns (as of
    /// its last refresh, at most a second old).
    pub fn lag(&self) -> Vec<(i32, i64)> {
        let lags = self.lags.lock().unwrap_or_else(|e| e.into_inner());
        lags.get(&self.number)
            .map(|lag| lag.partitions.iter().map(|(p, l)| (*p, *l)).collect())
            .unwrap_or_default()
    }

    /// The client committed `offset` on `partition`: the group's position
    /// becomes `offset + 1` (never backwards). Refused, changing nothing, when
    /// this member never delivered that offset on that partition (it is past
    /// the last one delivered): such a commit would skip records nobody read.
    pub fn commit(&self, partition: i32, offset: i64) -> Result<(), Undelivered> {
        if !self.commit_undelivered {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !state.was_delivered(partition, offset) {
                return Err(Undelivered);
            }
        }
        let _ = self.commands.send(Command::Commit { partition, offset });
        Ok(())
    }
}

struct MemberTask {
    consumer: StreamConsumer<MemberContext>,
    settings: FetchSettings,
    color: String,
    stats: Arc<ConsumerStats>,
    /// A message that did not fit the last MGET's byte cap: the next MGET's
    /// first. Already accepted (its color checked, its offset delivered).
    carried: Mutex<Option<OwnedMessage>>,
    /// The member's total lag, for its connection's `CLIENT LIST` line (-1:
    /// not known yet).
    lag: Arc<AtomicI64>,
    /// Where every member's lag is kept, for `/metrics` and INFO.
    lags: Arc<Lags>,
}

/// An MGET's batch as it fills.
#[derive(Default)]
struct Batch {
    messages: Vec<Bytes>,
    bytes: usize,
}

impl MemberTask {
    async fn run(
        self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        gone: oneshot::Receiver<()>,
    ) {
        let context = self.consumer.context();
        tracing::debug!(member = context.member, group = %context.group, topic = %context.topic,
            "consumer member joining");
        let mut gone = Some(gone);
        let mut commit_tick = tokio::time::interval(COMMIT_INTERVAL);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None => break,
                    Some(Command::Commit { partition, offset }) => self.apply_commit(partition, offset),
                    Some(Command::Fetch { encoding, reply }) => {
                        self.fetch(encoding, reply, &mut gone).await;
                    }
                },
                _ = commit_tick.tick() => {
                    self.send_commits(CommitMode::Async);
                    self.update_lag();
                }
            }
        }
        self.lags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&context.member);
        // Leaving blocks in librdkafka (final commit, LeaveGroup), so it runs off
        // the control thread's only worker.
        let (member, group) = (context.member, context.group.clone());
        let consumer = self.consumer;
        let left = tokio::task::spawn_blocking(move || {
            send_commits(&consumer, CommitMode::Sync);
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
        if let Err(e) = left {
            tracing::warn!(member, %group, error = %e, "consumer member did not close cleanly");
        }
        tracing::debug!(member, %group, "consumer member left");
    }

    /// Partition end minus position, for each partition this member owns and
    /// has a position on. Both are librdkafka's local knowledge (the end from
    /// its last fetch response): no request to the broker.
    fn update_lag(&self) {
        let context = self.consumer.context();
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let Ok(topic) = std::ffi::CString::new(context.topic.as_str()) else {
            return;
        };
        let mut partitions = BTreeMap::new();
        for element in positions.elements_for_topic(&context.topic) {
            let Offset::Offset(position) = element.offset() else {
                continue;
            };
            let (mut low, mut high) = (-1i64, -1i64);
            // SAFETY: a live client handle, a NUL-terminated topic name, and
            // two i64s for librdkafka to write.
            let code = unsafe {
                rdkafka::bindings::rd_kafka_get_watermark_offsets(
                    self.consumer.client().native_ptr(),
                    topic.as_ptr(),
                    element.partition(),
                    &mut low,
                    &mut high,
                )
            };
            if code == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0 {
                partitions.insert(element.partition(), (high - position).max(0));
            }
        }
        let lag = MemberLag {
            group: context.group.clone(),
            topic: context.topic.clone(),
            partitions,
        };
        self.lag.store(
            if lag.partitions.is_empty() {
                -1
            } else {
                lag.total()
            },
            Ordering::Relaxed,
        );
        self.lags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(context.member, lag);
    }

    fn apply_commit(&self, partition: i32, offset: i64) {
        let context = self.consumer.context();
        let mut state = context.lock();
        if !state.assigned.contains(&partition) {
            self.stats.commits_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(member = context.member, group = %context.group, partition, offset,
                "commit dropped: partition not owned by this member");
            return;
        }
        self.stats.commits_applied.fetch_add(1, Ordering::Relaxed);
        state
            .offsets
            .entry(partition)
            .or_default()
            .client_commit(offset);
    }

    fn send_commits(&self, mode: CommitMode) {
        send_commits(&self.consumer, mode);
    }

    /// One MGET: up to `batch` messages; once one arrived, at most `batch_window`
    /// more waiting; nothing for `poll_timeout` answers an empty batch.
    async fn fetch(
        &self,
        encoding: Encoding,
        mut reply: oneshot::Sender<Fetched>,
        gone: &mut Option<oneshot::Receiver<()>>,
    ) {
        let context = self.consumer.context();
        let poll_deadline = Instant::now() + self.settings.poll_timeout;
        let mut deadline = poll_deadline;
        let mut batch = Batch::default();
        let carried = self
            .carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // A rebalance since may have moved its partition: then its new owner
        // delivers it, and so must not this member.
        let carried = carried.filter(|m| context.lock().assigned.contains(&m.partition()));
        if let Some(message) = carried {
            let metadata = headers_of(&message).1;
            let encoded = self.encode(&message, metadata, encoding);
            batch.bytes += encoded.len();
            batch.messages.push(encoded);
            deadline = (Instant::now() + self.settings.batch_window).min(poll_deadline);
        }
        // One stream for the whole fetch: it registers with the consumer once.
        let mut messages = self.consumer.stream();
        'fetch: loop {
            if self.full(&batch) {
                break;
            }
            if context.lock().starved {
                let _ = reply.send(Fetched::TooManyConsumers);
                return;
            }
            // What librdkafka already holds is taken with one poll a message;
            // the select! below (four futures and a timer) runs only to wait.
            while let Some(next) = future::poll_once(messages.next()).await {
                match next {
                    Some(Ok(message)) => {
                        if self.take(&message, encoding, &mut batch) {
                            break 'fetch;
                        }
                        // The batch window starts with the first message for
                        // the client (not with a skipped one).
                        if deadline == poll_deadline && !batch.messages.is_empty() {
                            deadline =
                                (Instant::now() + self.settings.batch_window).min(poll_deadline);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(group = %context.group, error = %e, "consumer error");
                    }
                    None => break,
                }
            }
            tokio::select! {
                // The client went away mid-MGET: nobody to answer.
                _ = reply.closed() => return,
                // The connection is closing: answer with what there is.
                _ = connection_closed(gone) => break,
                // A rebalance finished: check for starvation again.
                _ = context.rebalanced.notified() => continue,
                received = tokio::time::timeout_at(deadline, messages.next()) => match received {
                    Err(_elapsed) => break,
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        tracing::warn!(group = %context.group, error = %e, "consumer error");
                    }
                    Ok(Some(Ok(message))) => {
                        if self.take(&message, encoding, &mut batch) {
                            break;
                        }
                        // The batch window starts with the first message for
                        // the client (not with a skipped one).
                        if deadline == poll_deadline && !batch.messages.is_empty() {
                            deadline = (Instant::now() + self.settings.batch_window).min(poll_deadline);
                        }
                    }
                },
            }
        }
        self.stats
            .messages_delivered
            .fetch_add(batch.messages.len() as u64, Ordering::Relaxed);
        let _ = reply.send(Fetched::Messages(batch.messages));
        self.update_lag();
    }

    /// Adds `message` to `batch` unless its color skips it; true when the batch
    /// is full: `batch` messages, or `max_batch_bytes`. A message that would
    /// take a batch past its bytes waits for the next MGET instead; alone, it
    /// goes whatever its size.
    fn take(&self, message: &BorrowedMessage<'_>, encoding: Encoding, batch: &mut Batch) -> bool {
        let max_bytes = self.settings.max_batch_bytes;
        if let Some(encoded) = self.accept(message, encoding) {
            if !batch.messages.is_empty() && batch.bytes + encoded.len() > max_bytes {
                *self.carried.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.detach());
                return true;
            }
            batch.bytes += encoded.len();
            batch.messages.push(encoded);
        }
        self.full(batch)
    }

    fn full(&self, batch: &Batch) -> bool {
        batch.messages.len() >= self.settings.batch || batch.bytes >= self.settings.max_batch_bytes
    }

    /// Encodes a message for the client, or skips it when it carries another
    /// color (protocol.md §5).
    fn accept(&self, message: &BorrowedMessage<'_>, encoding: Encoding) -> Option<Bytes> {
        let (partition, offset) = (message.partition(), message.offset());
        let (color, metadata) = headers_of(message);
        let mut state = self.consumer.context().lock();
        let offsets = state.offsets.entry(partition).or_default();
        if color.is_some_and(|c| !c.is_empty() && c != self.color.as_bytes()) {
            self.stats.messages_skipped.fetch_add(1, Ordering::Relaxed);
            offsets.skipped(offset);
            return None;
        }
        offsets.delivered(offset);
        state.delivered(partition, offset);
        drop(state);
        Some(self.encode(message, metadata, encoding))
    }

    fn encode<M: Message>(
        &self,
        message: &M,
        metadata: Option<&[u8]>,
        encoding: Encoding,
    ) -> Bytes {
        let (encoded, notes) = Consumed {
            key: message.key(),
            value: message.payload(),
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            metadata,
        }
        .encode(encoding);
        if notes.value_not_json {
            self.stats.values_not_json.fetch_add(1, Ordering::Relaxed);
        }
        encoded
    }
}

/// A message's `color` and `metadata` headers.
fn headers_of<M: Message>(message: &M) -> (Option<&[u8]>, Option<&[u8]>) {
    let (mut color, mut metadata) = (None, None);
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            match header.key {
                "color" => color = header.value,
                "metadata" => metadata = header.value,
                _ => {}
            }
        }
    }
    (color, metadata)
}

/// Resolves once the member's connection is closing, and at once after that.
async fn connection_closed(gone: &mut Option<oneshot::Receiver<()>>) {
    if let Some(signal) = gone {
        let _ = signal.await;
        *gone = None;
    }
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

/// Sends the commits the client made since the last call. Works with the
/// member's `StreamConsumer` and with the `BaseConsumer` a rebalance callback gets.
fn send_commits(consumer: &impl Consumer<MemberContext>, mode: CommitMode) {
    let context = consumer.context();
    let Some(list) = context.lock().offsets_to_commit(&context.topic) else {
        return;
    };
    if let Err(e) = consumer.commit(&list, mode) {
        tracing::warn!(group = %context.group, error = %e, "offset commit failed");
    }
}

/// Per-member state shared between the member's task and librdkafka's rebalance
/// callbacks (which run inside the task's `recv`).
struct MemberContext {
    log: KafkaContext,
    member: u64,
    group: String,
    topic: String,
    state: Arc<Mutex<GroupState>>,
    rebalanced: Notify,
}

#[derive(Default)]
struct GroupState {
    assigned: HashSet<i32>,
    /// A completed rebalance left this member without partitions.
    starved: bool,
    offsets: HashMap<i32, PartitionOffsets>,
    /// The highest offset ever delivered per partition, kept across
    /// rebalances (one entry per partition of the topic): the commit check
    /// reads it. A rebalance (a coordinator that failed over revokes and
    /// assigns everything again) clears `offsets`, but the client still
    /// commits what it was delivered before, and that commit is valid.
    highest_delivered: HashMap<i32, i64>,
}

impl GroupState {
    fn delivered(&mut self, partition: i32, offset: i64) {
        let highest = self.highest_delivered.entry(partition).or_insert(offset);
        *highest = (*highest).max(offset);
    }

    /// Whether this member ever delivered `offset` or a later one on
    /// `partition`, before a rebalance or since.
    fn was_delivered(&self, partition: i32, offset: i64) -> bool {
        self.highest_delivered
            .get(&partition)
            .is_some_and(|highest| offset <= *highest)
    }

    fn revoke(&mut self, partition: i32) {
        self.assigned.remove(&partition);
        self.offsets.remove(&partition);
    }

    fn offsets_to_commit(&mut self, topic: &str) -> Option<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for (partition, offsets) in &mut self.offsets {
            if let Some(next) = offsets.take_dirty() {
                // Only fails for an invalid offset, which `next` never is.
                let _ = list.add_partition_offset(topic, *partition, Offset::Offset(next));
            }
        }
        (list.count() > 0).then_some(list)
    }
}

impl MemberContext {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn partitions(&self, list: &TopicPartitionList) -> Vec<i32> {
        list.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            // The next owner starts after what this client committed.
            send_commits(consumer, CommitMode::Sync);
            let revoked = self.partitions(list);
            let mut state = self.lock();
            for partition in revoked {
                state.revoke(partition);
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let assigned = self.partitions(list);
            tracing::debug!(member = self.member, group = %self.group, topic = %self.topic, ?assigned,
                "partitions assigned");
            let mut state = self.lock();
            state.starved = assigned.is_empty();
            state.assigned = assigned.into_iter().collect();
            drop(state);
            self.rebalanced.notify_one();
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(group = %self.group, error = %e, "offset commit failed");
        }
    }
}

/// One partition's commit position, as the client moved it.
///
/// Records skipped for their color are never shown to the client, so the client
/// never commits them; they must not hold the position back. A skipped record
/// right after a delivered one rides along with that one's commit; one with no
/// uncommitted delivery before it is committed at once.
#[derive(Default, Debug)]
struct PartitionOffsets {
    /// The next offset to read, as far as commits go.
    next: Option<i64>,
    /// `next` changed since it was last sent to Kafka.
    dirty: bool,
    last_delivered: Option<i64>,
    /// Delivered offset → the last skipped offset that followed it.
    skipped_after: BTreeMap<i64, i64>,
}

impl PartitionOffsets {
    fn delivered(&mut self, offset: i64) {
        self.last_delivered = Some(offset);
    }

    fn skipped(&mut self, offset: i64) {
        match self.last_delivered {
            Some(delivered) if self.next.is_none_or(|next| next <= delivered) => {
                // Bounded for a client that never commits: the oldest entry
                // goes (its skipped records are then read and skipped again
                // after a restart, nothing lost).
                if self.skipped_after.len() >= MAX_SKIPPED_RUNS
                    && !self.skipped_after.contains_key(&delivered)
                {
                    self.skipped_after.pop_first();
                }
                self.skipped_after.insert(delivered, offset);
            }
            _ => self.advance(offset + 1),
        }
    }

    fn client_commit(&mut self, offset: i64) {
        let through = self.skipped_after.get(&offset).copied().unwrap_or(offset);
        self.skipped_after = self.skipped_after.split_off(&offset.saturating_add(1));
        self.advance(through.saturating_add(1));
    }

    fn advance(&mut self, next: i64) {
        if self.next.is_none_or(|current| next > current) {
            self.next = Some(next);
            self.dirty = true;
        }
    }

    fn take_dirty(&mut self) -> Option<i64> {
        std::mem::take(&mut self.dirty)
            .then_some(self.next)
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::{GroupState, PartitionOffsets};

    #[test]
    fn a_commit_of_what_was_delivered_before_a_rebalance_stays_valid() {
        // chaos.sh's leader-kill: the coordinator failed over, the member's
        // partitions were revoked and assigned again, and the subscriber's
        // commit of a record delivered before was refused as undelivered.
        let mut state = GroupState::default();
        state.assigned.insert(4);
        state.offsets.entry(4).or_default().delivered(3839);
        state.delivered(4, 3839);
        state.revoke(4);
        assert!(state.was_delivered(4, 3839));
        assert!(!state.was_delivered(4, 3840), "still nothing past it");
        assert!(!state.was_delivered(5, 0), "nor on another partition");
    }

    #[test]
    fn commits_store_offset_plus_one_forward_only() {
        let mut p = PartitionOffsets::default();
        p.delivered(5);
        p.client_commit(5);
        assert_eq!(p.take_dirty(), Some(6));
        assert_eq!(p.take_dirty(), None, "sent once");
        p.client_commit(3);
        assert_eq!(p.take_dirty(), None, "never backwards");
        p.client_commit(9);
        assert_eq!(p.take_dirty(), Some(10));
    }

    #[test]
    fn skipped_records_never_hold_back_commits() {
        let mut p = PartitionOffsets::default();
        // Nothing delivered yet: a skipped record is committed past at once.
        p.skipped(0);
        assert_eq!(p.take_dirty(), Some(1));
        // 1 delivered, 2 and 3 skipped: committing 1 moves past 3.
        p.delivered(1);
        p.skipped(2);
        p.skipped(3);
        assert_eq!(p.take_dirty(), None, "2 and 3 wait for 1's commit");
        p.client_commit(1);
        assert_eq!(p.take_dirty(), Some(4));
        // 4 delivered and committed, then 5 skipped: straight past it.
        p.delivered(4);
        p.client_commit(4);
        p.skipped(5);
        assert_eq!(p.take_dirty(), Some(6));
    }
}
