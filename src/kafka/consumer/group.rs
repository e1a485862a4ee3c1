//! A member's place in its consumer group: which partitions it owns, what it
//! delivered and what the client committed (`GroupState`), and the librdkafka
//! context whose rebalance callbacks keep that state and send the commits
//! (`MemberContext`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;

use super::offsets::PartitionOffsets;
use crate::kafka::context::KafkaContext;

/// What a member owns, delivered and was asked to commit; shared by the
/// member's handle (commits, on the shard), its task and librdkafka's
/// rebalance callbacks (on the consumer runtime).
#[derive(Default)]
pub(super) struct GroupState {
    assigned: HashSet<i32>,
    /// A completed rebalance left this member without partitions.
    pub(super) starved: bool,
    offsets: HashMap<i32, PartitionOffsets>,
    /// The highest offset ever delivered per partition, kept across
    /// rebalances (one entry per partition of the topic): the commit check
    /// reads it. A rebalance (a coordinator that failed over revokes and
    /// assigns everything again) clears `offsets`, but the client still
    /// commits what it was delivered before, and that commit is valid.
    highest_delivered: HashMap<i32, i64>,
}

impl GroupState {
    pub(super) fn owns(&self, partition: i32) -> bool {
        self.assigned.contains(&partition)
    }

    /// The client was handed `offset` of `partition`.
    pub(super) fn delivered(&mut self, partition: i32, offset: i64) {
        self.offsets.entry(partition).or_default().delivered(offset);
        let highest = self.highest_delivered.entry(partition).or_insert(offset);
        *highest = (*highest).max(offset);
    }

    /// `offset` of `partition` was not for this client (another color).
    pub(super) fn skipped(&mut self, partition: i32, offset: i64) {
        self.offsets.entry(partition).or_default().skipped(offset);
    }

    /// Whether this member ever delivered `offset` or a later one on
    /// `partition`, before a rebalance or since.
    pub(super) fn was_delivered(&self, partition: i32, offset: i64) -> bool {
        self.highest_delivered
            .get(&partition)
            .is_some_and(|highest| offset <= *highest)
    }

    /// The client committed `offset`; false (nothing changed) when this
    /// member does not own `partition`: its owner redelivers the data.
    pub(super) fn client_commit(&mut self, partition: i32, offset: i64) -> bool {
        if !self.owns(partition) {
            return false;
        }
        self.offsets
            .entry(partition)
            .or_default()
            .client_commit(offset);
        true
    }

    fn assign(&mut self, partitions: Vec<i32>) {
        self.starved = partitions.is_empty();
        self.assigned = partitions.into_iter().collect();
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

/// Per-member state shared between the member's task and librdkafka's
/// rebalance callbacks (which run inside the task's poll).
pub(super) struct MemberContext {
    pub(super) log: KafkaContext,
    pub(super) member: u64,
    pub(super) group: String,
    pub(super) topic: String,
    pub(super) state: Arc<Mutex<GroupState>>,
    /// Signalled after each assignment: a waiting fetch checks starvation.
    pub(super) rebalanced: Notify,
}

impl MemberContext {
    pub(super) fn lock(&self) -> MutexGuard<'_, GroupState> {
        lock(&self.state)
    }

    fn partitions(&self, list: &TopicPartitionList) -> Vec<i32> {
        list.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }
}

pub(super) fn lock(state: &Mutex<GroupState>) -> MutexGuard<'_, GroupState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends the commits the client made since the last call. Works with the
/// member's `StreamConsumer` and with the `BaseConsumer` a rebalance callback
/// gets. A synchronous commit waits for the broker: on the consumer runtime
/// it first hands the worker's other members to another thread, so that none
/// of them waits with it.
pub(super) fn send_commits(consumer: &impl Consumer<MemberContext>, mode: CommitMode) {
    let context = consumer.context();
    let Some(list) = context.lock().offsets_to_commit(&context.topic) else {
        return;
    };
    let commit = || consumer.commit(&list, mode);
    let result = match mode {
        CommitMode::Sync => tokio::task::block_in_place(commit),
        CommitMode::Async => commit(),
    };
    if let Err(e) = result {
        tracing::warn!(group = %context.group, error = %e, "offset commit failed");
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
            self.lock().assign(assigned);
            self.rebalanced.notify_one();
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(group = %self.group, error = %e, "offset commit failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GroupState;

    #[test]
    fn a_commit_of_what_was_delivered_before_a_rebalance_stays_valid() {
        // chaos.sh's leader-kill: the coordinator failed over, the member's
        // partitions were revoked and assigned again, and the subscriber's
        // commit of a record delivered before was refused as undelivered.
        let mut state = GroupState::default();
        state.assign(vec![4]);
        state.delivered(4, 3839);
        state.revoke(4);
        assert!(state.was_delivered(4, 3839));
        assert!(!state.was_delivered(4, 3840), "still nothing past it");
        assert!(!state.was_delivered(5, 0), "nor on another partition");
    }

    #[test]
    fn a_commit_on_a_partition_not_owned_changes_nothing() {
        let mut state = GroupState::default();
        state.assign(vec![1]);
        state.delivered(1, 7);
        assert!(
            !state.client_commit(2, 7),
            "partition 2 is another member's"
        );
        assert!(state.offsets_to_commit("t").is_none());
        assert!(state.client_commit(1, 7));
        let list = state.offsets_to_commit("t").expect("one commit");
        assert_eq!(
            list.find_partition("t", 1).map(|e| e.offset()),
            Some(rdkafka::Offset::Offset(8))
        );
    }
}
