//! One subscriber connection's consumer-group member: the handle its shard
//! holds ([`Member`]) and the task on the consumer runtime that owns the
//! librdkafka consumer ([`MemberTask`]): made there, fetching there, leaving
//! there.
//!
//! A commit is applied to the shared [`GroupState`] by the handle, on the
//! shard, as its command is read: so a client's pipelined commits are in
//! place before the MGET behind them, with no queue to fill. A fetch goes to
//! the task once the connection's writer gets to its MGET (so a client that
//! stops reading stops the fetching) over a channel of one; its answer comes
//! back on a oneshot. An idle member costs no CPU of ours: its task sleeps on
//! the channel and the commit tick, a fetch sleeps until librdkafka has a
//! message or the poll times out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_lite::{future, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message, OwnedMessage};
use rdkafka::Offset;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::group::{self, send_commits, GroupState, MemberContext};
use super::{ConsumerStats, FetchSettings, Lags, MemberLag, Undelivered, COMMIT_INTERVAL};
use crate::message::{Consumed, Fetched, Pick};

/// Fetches queued to a member: its connection's writer awaits one MGET's
/// answer before it asks for the next, so one is all it ever needs.
pub(super) const FETCHES_QUEUED: usize = 1;

/// What a subscriber connection holds. Dropping it makes the member commit what
/// the client committed and leave the group.
pub struct Member {
    pub(super) fetches: mpsc::Sender<FetchRequest>,
    pub(super) _gone: oneshot::Sender<()>,
    /// What the member owns and delivered, shared with its task: a commit is
    /// checked against it and applied to it.
    pub(super) state: Arc<Mutex<GroupState>>,
    /// `consumer.commit_undelivered`: accept commits of offsets never
    /// delivered, as the original service did.
    pub(super) commit_undelivered: bool,
    /// The member's number, its key in `lags`.
    pub(super) number: u64,
    pub(super) stats: Arc<ConsumerStats>,
    pub(super) lags: Arc<Lags>,
}

pub(super) struct FetchRequest {
    pick: Pick,
    reply: oneshot::Sender<Fetched>,
}

impl Member {
    /// Asks for the next batch when the returned future is first polled, not
    /// before; it resolves when the batch is ready. The connection's writer
    /// polls an MGET's reply only when it gets to it, after the replies
    /// before it, so a client that pipelines MGETs and stops reading stops
    /// the fetching too: batches do not pile up in the gateway.
    /// `pick` decides which records the client gets and encodes them.
    pub fn fetch(&self, pick: Pick) -> impl std::future::Future<Output = Fetched> {
        let fetches = self.fetches.clone();
        async move {
            let (reply, answer) = oneshot::channel();
            if fetches.send(FetchRequest { pick, reply }).await.is_err() {
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
    /// becomes `offset + 1` (never backwards), sent to Kafka within a second.
    /// Refused, changing nothing, when this member never delivered that
    /// offset on that partition (it is past the last one delivered): such a
    /// commit would skip records nobody read. Dropped when a rebalance gave
    /// the partition to another member: its new owner redelivers the data.
    pub fn commit(&self, partition: i32, offset: i64) -> Result<(), Undelivered> {
        let mut state = group::lock(&self.state);
        if !self.commit_undelivered && !state.was_delivered(partition, offset) {
            return Err(Undelivered);
        }
        let counter = if state.client_commit(partition, offset) {
            &self.stats.commits_applied
        } else {
            tracing::debug!(
                member = self.number,
                partition,
                offset,
                "commit dropped: partition not owned by this member"
            );
            &self.stats.commits_dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// How to make a member's consumer, on the consumer runtime.
pub(super) struct Recipe {
    pub(super) config: ClientConfig,
    pub(super) context: MemberContext,
}

impl Recipe {
    /// Makes the consumer and subscribes it; the group join goes on in
    /// librdkafka's threads. Called on the consumer runtime: the
    /// `StreamConsumer` starts its wake-up task there.
    pub(super) fn make(self) -> Result<StreamConsumer<MemberContext>, KafkaError> {
        let topic = self.context.topic.clone();
        let consumer: StreamConsumer<MemberContext> =
            self.config.create_with_context(self.context)?;
        consumer.subscribe(&[&topic])?;
        Ok(consumer)
    }
}

/// Answers every fetch of a member whose consumer could not be made with
/// why, until its connection closes (the answer closes it).
pub(super) async fn refuse_fetches(mut fetches: mpsc::Receiver<FetchRequest>, why: KafkaError) {
    let why = why.to_string();
    while let Some(request) = fetches.recv().await {
        let _ = request.reply.send(Fetched::Failed(why.clone()));
    }
}

pub(super) struct MemberTask {
    /// The same state as the member's context holds.
    pub(super) state: Arc<Mutex<GroupState>>,
    pub(super) settings: FetchSettings,
    pub(super) stats: Arc<ConsumerStats>,
    /// The member's total lag, for its connection's `CLIENT LIST` line (-1:
    /// not known yet).
    pub(super) lag: Arc<AtomicI64>,
    /// Where every member's lag is kept, for `/metrics` and INFO.
    pub(super) lags: Arc<Lags>,
}

/// A live member: its task's settings and its consumer.
struct Running {
    task: MemberTask,
    consumer: StreamConsumer<MemberContext>,
    /// A message that did not fit the last MGET's byte cap: the next MGET's
    /// first. Already accepted (its color checked, its offset delivered).
    carried: Option<OwnedMessage>,
}

/// An MGET's batch as it fills.
#[derive(Default)]
struct Batch {
    messages: Vec<Bytes>,
    bytes: usize,
}

impl MemberTask {
    /// Serves fetches and sends commits until the member's handle is
    /// dropped, then commits and leaves the group.
    pub(super) async fn run(
        self,
        consumer: StreamConsumer<MemberContext>,
        mut fetches: mpsc::Receiver<FetchRequest>,
        gone: oneshot::Receiver<()>,
    ) {
        let mut member = Running {
            task: self,
            consumer,
            carried: None,
        };
        let context = member.consumer.context();
        let (number, group) = (context.member, context.group.clone());
        tracing::debug!(member = number, %group, topic = %context.topic, "consumer member joining");
        let mut gone = Some(gone);
        let mut commit_tick = tokio::time::interval(COMMIT_INTERVAL);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                request = fetches.recv() => match request {
                    None => break,
                    Some(FetchRequest { pick, reply }) => {
                        member.fetch(&pick, reply, &mut gone).await;
                    }
                },
                _ = commit_tick.tick() => {
                    send_commits(&member.consumer, CommitMode::Async);
                    member.update_lag();
                }
            }
        }
        member
            .task
            .lags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&number);
        // Leaving blocks in librdkafka (final commit, LeaveGroup): on a
        // blocking thread, so no other member waits for it.
        let consumer = member.consumer;
        let left = tokio::task::spawn_blocking(move || {
            send_commits(&consumer, CommitMode::Sync);
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
        if let Err(e) = left {
            tracing::warn!(member = number, %group, error = %e, "consumer member did not close cleanly");
        }
        tracing::debug!(member = number, %group, "consumer member left");
    }
}

impl Running {
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
        self.task.lag.store(
            if lag.partitions.is_empty() {
                -1
            } else {
                lag.total()
            },
            Ordering::Relaxed,
        );
        self.task
            .lags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(context.member, lag);
    }

    /// One MGET: up to `batch` messages; once one arrived, at most `batch_window`
    /// more waiting; nothing for `poll_timeout` answers an empty batch.
    async fn fetch(
        &mut self,
        pick: &Pick,
        mut reply: oneshot::Sender<Fetched>,
        gone: &mut Option<oneshot::Receiver<()>>,
    ) {
        let settings = self.task.settings.clone();
        let poll_deadline = Instant::now() + settings.poll_timeout;
        let mut deadline = poll_deadline;
        let mut batch = Batch::default();
        // A rebalance since may have moved its partition: then its new owner
        // delivers it, and so must not this member.
        let consumer = &self.consumer;
        let context = consumer.context();
        let carried = self
            .carried
            .take()
            .filter(|m| context.lock().owns(m.partition()));
        // Picked already, with the same color: the pick only encodes it.
        if let Some((encoded, _)) = carried.as_ref().and_then(|m| pick(&consumed(m))) {
            batch.bytes += encoded.len();
            batch.messages.push(encoded);
            deadline = (Instant::now() + settings.batch_window).min(poll_deadline);
        }
        // One stream for the whole fetch: it registers with the consumer once.
        let mut messages = consumer.stream();
        let mut carry = None;
        'fetch: loop {
            if settings.full(&batch) {
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
                        if self.task.take(&message, pick, &mut batch, &mut carry) {
                            break 'fetch;
                        }
                        // The batch window starts with the first message for
                        // the client (not with a skipped one).
                        if deadline == poll_deadline && !batch.messages.is_empty() {
                            deadline = (Instant::now() + settings.batch_window).min(poll_deadline);
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
                        if self.task.take(&message, pick, &mut batch, &mut carry) {
                            break;
                        }
                        if deadline == poll_deadline && !batch.messages.is_empty() {
                            deadline = (Instant::now() + settings.batch_window).min(poll_deadline);
                        }
                    }
                },
            }
        }
        drop(messages);
        self.carried = carry;
        self.task
            .stats
            .messages_delivered
            .fetch_add(batch.messages.len() as u64, Ordering::Relaxed);
        let _ = reply.send(Fetched::Messages(batch.messages));
        self.update_lag();
    }
}

impl FetchSettings {
    fn full(&self, batch: &Batch) -> bool {
        batch.messages.len() >= self.batch || batch.bytes >= self.max_batch_bytes
    }
}

impl MemberTask {
    /// Adds `message` to `batch` unless `pick` skips it; true when the batch
    /// is full: `batch` messages, or `max_batch_bytes`. A message that would
    /// take a batch past its bytes waits in `carry` for the next MGET
    /// instead; alone, it goes whatever its size.
    fn take(
        &self,
        message: &BorrowedMessage<'_>,
        pick: &Pick,
        batch: &mut Batch,
        carry: &mut Option<OwnedMessage>,
    ) -> bool {
        if let Some(encoded) = self.accept(message, pick) {
            if !batch.messages.is_empty()
                && batch.bytes + encoded.len() > self.settings.max_batch_bytes
            {
                *carry = Some(message.detach());
                return true;
            }
            batch.bytes += encoded.len();
            batch.messages.push(encoded);
        }
        self.settings.full(batch)
    }

    /// The message as `pick` encodes it, noted as delivered; or None, noted
    /// as skipped (its commit rides along with the delivered one before it).
    fn accept(&self, message: &BorrowedMessage<'_>, pick: &Pick) -> Option<Bytes> {
        let (partition, offset) = (message.partition(), message.offset());
        let picked = pick(&consumed(message));
        let mut state = group::lock(&self.state);
        let Some((encoded, notes)) = picked else {
            self.stats.messages_skipped.fetch_add(1, Ordering::Relaxed);
            state.skipped(partition, offset);
            return None;
        };
        state.delivered(partition, offset);
        drop(state);
        if notes.value_not_json {
            self.stats.values_not_json.fetch_add(1, Ordering::Relaxed);
        }
        Some(encoded)
    }
}

/// A Kafka message as the subscriber's rules see it.
fn consumed<M: Message>(message: &M) -> Consumed<'_> {
    let (color, metadata) = headers_of(message);
    Consumed {
        key: message.key(),
        value: message.payload(),
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        metadata,
        color,
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
