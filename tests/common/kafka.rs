//! The broker side of a test: fresh topics, an independent consumer that reads
//! back what the gateway produced, and the group state the broker holds
//! (committed offsets, members and their assignments).

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{brokers, unique, WAIT};

pub fn create_topic(partitions: i32) -> String {
    let name = unique("topic");
    create_named_topic(&name, partitions);
    name
}

pub fn create_named_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = futures_executor::block_on(
        admin.create_topics([&topic], &AdminOptions::new().operation_timeout(Some(WAIT))),
    )
    .expect("create_topics");
    for result in results {
        result.unwrap_or_else(|(topic, e)| panic!("cannot create topic {topic}: {e}"));
    }
    // Metadata reaches the broker's clients asynchronously; wait (bounded) until
    // the topic is visible with all its partitions before producing to it.
    let consumer = plain_consumer();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(md) = consumer.fetch_metadata(Some(name), Duration::from_secs(5)) {
            if md
                .topics()
                .iter()
                .any(|t| t.error().is_none() && t.partitions().len() == partitions as usize)
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "topic {name} never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn plain_consumer() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer")
}

/// One record as read back from Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Reads every record of `topic`, each partition from its start to its end as
/// the broker has it now (the high watermark: every record acknowledged under
/// acks=all is below it), and asserts that there are exactly `count`. Nothing
/// is waited for: records the gateway acknowledged are in Kafka already.
pub fn read_topic(topic: &str, partitions: i32, count: usize) -> Vec<Record> {
    let records = read_topic_to_end(topic, partitions);
    assert_eq!(
        records.len(),
        count,
        "{topic} holds {} records, not {count}",
        records.len()
    );
    records
}

/// The high watermark (end offset) of each partition of `topic`.
pub fn end_offsets(topic: &str, partitions: i32) -> Vec<i64> {
    let consumer = plain_consumer();
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"))
                .1
        })
        .collect()
}

/// Every record of `topic`, each partition read from its start to its current
/// end (bounded by WAIT).
pub fn read_topic_to_end(topic: &str, partitions: i32) -> Vec<Record> {
    let ends = end_offsets(topic, partitions);
    let total: i64 = ends.iter().sum();
    let mut next = vec![0i64; partitions as usize];
    let records = read_topic_until(topic, partitions, |records| {
        if let Some(r) = records.last() {
            next[r.partition as usize] = r.offset + 1;
        }
        next.iter().zip(&ends).all(|(n, e)| n >= e)
    });
    assert_eq!(
        records.len() as i64,
        total,
        "{topic}: offsets do not match record counts (ends {ends:?})"
    );
    records
}

/// Reads every record of `topic` from the beginning until `done` says so (it
/// sees all records read so far, after each poll), or fails after WAIT.
pub fn read_topic_until(
    topic: &str,
    partitions: i32,
    mut done: impl FnMut(&[Record]) -> bool,
) -> Vec<Record> {
    let consumer = plain_consumer();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        if done(&records) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gave up reading {topic}: {} records in {WAIT:?}",
            records.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => records.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    records
}

/// `group`'s committed offset for partition 0 of `topic`, as the broker has it;
/// None when the group committed nothing there.
pub fn committed_offset(group: &str, topic: &str) -> Option<i64> {
    committed_offset_of(group, topic, 0)
}

/// `group`'s committed offset for `partition` of `topic`, as the broker has
/// it; None when the group committed nothing there.
pub fn committed_offset_of(group: &str, topic: &str, partition: i32) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    match committed
        .find_partition(topic, partition)
        .map(|p| p.offset())
    {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    }
}

/// Waits until `group`'s committed offset for partition 0 of `topic` is
/// `expected`. The gateway sends a client's commits to Kafka within a second
/// (protocol.md §5) and nothing announces that they arrived: asked every 100 ms,
/// for at most WAIT.
pub fn wait_for_commit(group: &str, topic: &str, expected: i64) {
    wait_for_commit_of(group, topic, 0, expected)
}

/// Like [`wait_for_commit`], for `partition`.
pub fn wait_for_commit_of(group: &str, topic: &str, partition: i32, expected: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let committed = committed_offset_of(group, topic, partition);
        if committed == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{group} committed {committed:?} in {topic}/{partition}, not {expected}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A member of a consumer group as the broker describes it (DescribeGroups),
/// with the partitions its assignment gives it.
#[derive(Clone, Debug)]
pub struct GroupMember {
    pub id: String,
    pub client_id: String,
    pub partitions: Vec<(String, i32)>,
}

/// The state of `group` (`Stable`, `PreparingRebalance`, `Empty`, `Dead`, ...)
/// and its members, as the broker has them.
pub fn describe_group(group: &str) -> (String, Vec<GroupMember>) {
    let consumer = plain_consumer();
    let list = consumer
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("describing group {group}: {e}"));
    let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
        return ("Dead".into(), Vec::new());
    };
    let members = info
        .members()
        .iter()
        .map(|m| GroupMember {
            id: m.id().to_owned(),
            client_id: m.client_id().to_owned(),
            partitions: m.assignment().map(parse_assignment).unwrap_or_default(),
        })
        .collect();
    (info.state().to_owned(), members)
}

/// Waits (up to WAIT) until the broker describes `group` as Stable with
/// `members` members, each owning at least one partition, and all of them
/// together `partitions` partitions; returns the members. Each member's
/// connection must keep polling meanwhile (`poll` is called between looks):
/// a classic-protocol group completes a rebalance only inside its members'
/// polls.
pub fn wait_for_group(
    group: &str,
    members: usize,
    partitions: usize,
    mut poll: impl FnMut(),
) -> Vec<GroupMember> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (state, got) = describe_group(group);
        let owned: usize = got.iter().map(|m| m.partitions.len()).sum();
        if state == "Stable"
            && got.len() == members
            && owned == partitions
            && got.iter().all(|m| !m.partitions.is_empty())
        {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} is {state} with {got:?}, not {members} members owning {partitions} partitions"
        );
        poll();
    }
}

/// Waits (up to WAIT) until `group` has no member left (the broker calls it
/// Empty once a member left and nobody else is in it).
pub fn wait_for_empty_group(group: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (state, members) = describe_group(group);
        if members.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} still {state} with {members:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Decodes a classic consumer-protocol assignment (ConsumerProtocolAssignment:
/// version i16, then topics [name i16-string, partitions [i32]], user data).
/// Bytes that are not one fail the test with their hex.
fn parse_assignment(bytes: &[u8]) -> Vec<(String, i32)> {
    decode_assignment(bytes).unwrap_or_else(|| {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        panic!("not a consumer-protocol assignment: {hex}")
    })
}

fn decode_assignment(bytes: &[u8]) -> Option<Vec<(String, i32)>> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let slice = bytes.get(at..at.checked_add(n)?)?;
        at += n;
        Some(slice)
    };
    let int32 = |b: &[u8]| i32::from_be_bytes(b.try_into().unwrap());
    if bytes.is_empty() {
        return Some(Vec::new()); // a member not assigned yet
    }
    take(2)?; // version
    let topics = int32(take(4)?);
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = i16::from_be_bytes(take(2)?.try_into().unwrap());
        let name = String::from_utf8_lossy(take(usize::try_from(len).ok()?)?).into_owned();
        let count = int32(take(4)?);
        for _ in 0..count.max(0) {
            out.push((name.clone(), int32(take(4)?)));
        }
    }
    Some(out)
}
