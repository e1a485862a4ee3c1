//! Subscribing (protocol.md §5): MGET long-polls, both encodings, commits,
//! consumer groups, colors. Records are produced through a publisher connection
//! and checked field by field, partition by partition.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    committed_offset, create_topic, describe_group, dsn, group_of, wait_for_commit_of,
    wait_for_empty_group, wait_for_group, Client, Gateway, GatewayConfig, TestDb, WAIT,
};
use databus::message::MessagePb;
use prost::Message;
use serde_json::Value;

/// A consumer-side view of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    key: String,
    value: String,
    partition: i32,
    offset: i64,
}

fn from_json(raw: &[u8]) -> Got {
    let v: Value = serde_json::from_slice(raw)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(raw)));
    Got {
        key: v["key"].as_str().unwrap().to_owned(),
        value: v["value"].to_string(),
        partition: v["partition"].as_i64().unwrap() as i32,
        offset: v["offset"].as_i64().unwrap(),
    }
}

/// Gateway for subscriber tests: new groups start at the beginning, so records
/// produced before the subscriber joined are seen; short polls keep tests fast.
/// The group session (45 s) outlasts every wait of a test (WAIT, 30 s): a
/// group the broker shows empty was left by its members, not expired.
fn gateway(db: &TestDb, poll_timeout: &str) -> Gateway {
    // Idle limit just above the long poll: it also bounds how long a rebalance
    // waits for a member that went away (max.poll.interval.ms).
    let poll = humantime::parse_duration(poll_timeout).unwrap();
    let idle = format!("{}ms", (poll + Duration::from_secs(5)).as_millis());
    gateway_idle(db, poll_timeout, &idle)
}

/// [`gateway`] with `sub_idle_timeout` = `idle`.
fn gateway_idle(db: &TestDb, poll_timeout: &str, idle: &str) -> Gateway {
    let consumer = format!(
        "session_timeout = \"45s\"\npoll_timeout = \"{poll_timeout}\"\nbatch_window = \"100ms\""
    );
    let server = format!("sub_idle_timeout = \"{idle}\"");
    GatewayConfig {
        server: &server,
        cluster: "auto_offset_reset = \"earliest\"",
        extra: &std::env::var("DATABUS_TEST_KAFKA").unwrap_or_default(),
        consumer: &consumer,
        ..GatewayConfig::new(db)
    }
    .start()
}

/// Publishes `n` records `{"i":<i>}` with keys k0..k9 through the gateway.
fn publish(gw: &Gateway, topic: &str, from: usize, n: usize) {
    let mut p = gw.publisher(&dsn(topic, "pub"));
    for i in from..from + n {
        let value = format!("{{\"i\":{i}}}");
        assert_eq!(p.call(&["SET", &format!("k{}", i % 10), &value]), "+OK\r\n");
    }
}

/// MGETs until `n` messages arrived (bounded by WAIT).
fn consume(c: &mut Client, n: usize) -> Vec<Got> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} messages",
            got.len()
        );
        got.extend(c.mget("json").iter().map(|m| from_json(m)));
    }
    got
}

/// One MGET on each of two connections at once, each answered empty (the
/// members' polls, inside which a classic-protocol rebalance completes).
fn poll_both_empty(subs: &mut [Client; 2]) {
    std::thread::scope(|s| {
        for c in subs.iter_mut() {
            s.spawn(move || assert!(c.mget("json").is_empty()));
        }
    })
}

/// MGETs on both connections at once until `n` messages arrived in all
/// (bounded by WAIT); what each connection got.
fn read_shares(subs: &mut [Client; 2], n: usize) -> [Vec<Got>; 2] {
    let mut shares: [Vec<Got>; 2] = [Vec::new(), Vec::new()];
    let deadline = Instant::now() + WAIT;
    while shares.iter().map(Vec::len).sum::<usize>() < n {
        assert!(
            Instant::now() < deadline,
            "only {:?} delivered",
            shares.each_ref().map(Vec::len)
        );
        std::thread::scope(|s| {
            for (c, share) in subs.iter_mut().zip(shares.iter_mut()) {
                s.spawn(move || share.extend(c.mget("json").iter().map(|m| from_json(m))));
            }
        });
    }
    shares
}

/// Between two looks at the broker's group state while the gateway polls for
/// the member: a tenth of a second.
fn pause() {
    std::thread::sleep(Duration::from_millis(100));
}

fn assert_exactly_once_in_partition_order(got: &[Got], expected: impl Iterator<Item = usize>) {
    let values: Vec<i64> = got
        .iter()
        .map(|g| {
            serde_json::from_str::<Value>(&g.value).unwrap()["i"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let unique: HashSet<i64> = values.iter().copied().collect();
    assert_eq!(unique.len(), values.len(), "duplicates in {values:?}");
    let want: HashSet<i64> = expected.map(|i| i as i64).collect();
    assert_eq!(unique, want);
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for g in got {
        if let Some(previous) = last.insert(g.partition, g.offset) {
            assert!(
                previous < g.offset,
                "partition {} out of order",
                g.partition
            );
        }
    }
}

#[test]
fn redis_py_consumes_every_record_once_in_both_encodings() {
    const N: usize = 30;
    let db = TestDb::new();
    let topic = create_topic(3);
    db.grant_topic(&topic, 3);
    let json_group = format!("{}_json", group_of(&topic));
    db.add_grant(1, &json_group, 1, &topic);
    let gw = gateway(&db, "2s");
    publish(&gw, &topic, 0, N);

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/redis_py_consume.py"
    );
    let run = |group: &str, encoding: &str| -> Vec<Vec<u8>> {
        let dsn = format!("app_key1:app_secret1@{group}/topic={topic}&role=sub");
        let out = Command::new("python3")
            .args([
                script,
                &gw.addr.port().to_string(),
                &dsn,
                encoding,
                &N.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                (0..line.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
                    .collect()
            })
            .collect()
    };

    let pb: Vec<Got> = run(&group_of(&topic), "pb")
        .iter()
        .map(|raw| {
            let m = MessagePb::decode(raw.as_slice()).unwrap();
            assert_eq!(m.topic, topic);
            assert!(
                m.timestamp > 1_700_000_000 && m.timestamp < 4_000_000_000,
                "seconds: {}",
                m.timestamp
            );
            Got {
                key: m.key,
                value: String::from_utf8(m.value).unwrap(),
                partition: m.partition,
                offset: m.offset,
            }
        })
        .collect();
    assert_eq!(pb.len(), N);
    assert_exactly_once_in_partition_order(&pb, 0..N);

    let json: Vec<Got> = run(&json_group, "json")
        .iter()
        .map(|raw| from_json(raw))
        .collect();
    assert_eq!(json.len(), N);
    assert_exactly_once_in_partition_order(&json, 0..N);
    // Same records, same placement, whatever the encoding.
    let by_offset = |v: &[Got]| -> BTreeMap<(i32, i64), (String, String)> {
        v.iter()
            .map(|g| ((g.partition, g.offset), (g.key.clone(), g.value.clone())))
            .collect()
    };
    assert_eq!(by_offset(&pb), by_offset(&json));
}

#[test]
fn delivery_resumes_after_the_committed_offset() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = gateway(&db, "1s");
    publish(&gw, &topic, 0, 20);

    let mut first = gw.subscriber(&dsn(&topic, "sub"));
    let got = consume(&mut first, 20);
    assert_eq!(
        got.iter().map(|g| g.offset).collect::<Vec<_>>(),
        (0..20).collect::<Vec<_>>()
    );
    // Commit the first half: offset 9 makes the group's position 10.
    assert_eq!(first.call(&["SET", "0", "9"]), "+OK\r\n");
    assert_eq!(
        first.call(&["SET", "0", "3"]),
        "+OK\r\n",
        "backwards is accepted and ignored"
    );
    assert_eq!(first.call(&["QUIT"]), "+OK\r\n");
    first.expect_closed();

    let mut second = gw.subscriber(&dsn(&topic, "sub"));
    let got = consume(&mut second, 10);
    assert_eq!(
        got.iter().map(|g| g.offset).collect::<Vec<_>>(),
        (10..20).collect::<Vec<_>>()
    );
    assert_eq!(second.mget("json"), Vec::<Vec<u8>>::new(), "nothing more");
    // No commit this time: everything after 9 comes again.
    assert_eq!(second.call(&["QUIT"]), "+OK\r\n");
    second.expect_closed();
    let mut third = gw.subscriber(&dsn(&topic, "sub"));
    let got = consume(&mut third, 10);
    assert_eq!(
        got.iter().map(|g| g.offset).collect::<Vec<_>>(),
        (10..20).collect::<Vec<_>>()
    );
}

#[test]
fn commit_arguments_are_checked() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = gateway(&db, "1s");
    let mut c = gw.subscriber(&dsn(&topic, "sub"));
    for bad in [["x", "1"], ["0", "y"], ["-1", "0"], ["0", "1.5"]] {
        assert_eq!(
            c.call(&["SET", bad[0], bad[1]]),
            "-ERR commit offset params error\r\n"
        );
    }
    // Nothing was delivered on partition 7 (there is none): refused.
    assert_eq!(
        c.call(&["SET", "7", "1"]),
        "-ERR offset 1 of partition 7 was never delivered to this connection: nothing committed\r\n"
    );
    assert_eq!(
        c.call(&["MGET"]),
        "*0\r\n",
        "an empty poll answers an empty array"
    );
    assert_eq!(c.call(&["PING"]), "+PONG\r\n");
}

#[test]
fn two_subscribers_split_the_partitions_and_one_takes_over() {
    let db = TestDb::new();
    let topic = create_topic(4);
    db.grant_topic(&topic, 3);
    let gw = gateway(&db, "1s");
    let group = group_of(&topic);
    let sub = dsn(&topic, "sub");
    let mut subs = [gw.subscriber(&sub), gw.subscriber(&sub)];
    // Both members keep polling (a rebalance completes inside polls) until the
    // broker describes the group as stable, each member owning partitions.
    let members = wait_for_group(&group, 2, 4, || poll_both_empty(&mut subs));

    publish(&gw, &topic, 0, 40);
    let shares = read_shares(&mut subs, 40);
    // A stable group: each record once, each partition read by its owner only.
    assert_exactly_once_in_partition_order(&shares.concat(), 0..40);
    let partitions = |share: &[Got]| share.iter().map(|g| g.partition).collect::<HashSet<_>>();
    assert!(
        !shares[0].is_empty() && !shares[1].is_empty(),
        "both members get a share"
    );
    assert!(partitions(&shares[0]).is_disjoint(&partitions(&shares[1])));
    let owned: HashSet<i32> = members
        .iter()
        .flat_map(|m| m.partitions.iter().map(|(_, p)| *p))
        .collect();
    assert_eq!(
        owned,
        (0..4).collect(),
        "the broker's assignment covers the topic"
    );
    let now = describe_group(&group).1;
    let ids = |ms: &[common::GroupMember]| {
        let mut v: Vec<(String, Vec<(String, i32)>)> = ms
            .iter()
            .map(|m| (m.id.clone(), m.partitions.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ids(&now),
        ids(&members),
        "no rebalance while the group was read"
    );

    // Both commit what they got; then one leaves.
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    for (c, share) in subs.iter_mut().zip(&shares) {
        let mut last: BTreeMap<i32, i64> = BTreeMap::new();
        for g in share {
            last.insert(g.partition, g.offset);
        }
        for (p, o) in last {
            assert_eq!(c.call(&["SET", &p.to_string(), &o.to_string()]), "+OK\r\n");
            committed.insert(p, o + 1);
        }
    }
    let [mut leaving, mut staying] = subs;
    assert_eq!(leaving.call(&["QUIT"]), "+OK\r\n");
    leaving.expect_closed();
    // The takeover happens inside the remaining member's polls.
    wait_for_group(&group, 1, 4, || assert!(staying.mget("json").is_empty()));
    // Both members' commits reach Kafka (within a second, protocol.md §5).
    for (p, o) in &committed {
        wait_for_commit_of(&group, &topic, *p, *o);
    }
    publish(&gw, &topic, 40, 40);
    let rest = consume(&mut staying, 40);
    assert_eq!(
        partitions(&rest).len(),
        4,
        "the remaining member owns every partition"
    );
    // Every commit was applied before the takeover: nothing before 40 comes
    // again, and nothing is delivered twice.
    assert_exactly_once_in_partition_order(&rest, 40..80);
}

#[test]
fn colors_filter_and_skipped_records_do_not_hold_back_commits() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = gateway(&db, "1s");
    let base = dsn(&topic, "pub");
    for (color, value) in [("red", "1"), ("blue", "2"), ("", "3"), ("blue", "4")] {
        let auth = if color.is_empty() {
            base.clone()
        } else {
            format!("{base}&color={color}")
        };
        assert_eq!(gw.publisher(&auth).call(&["SET", "k", value]), "+OK\r\n");
    }
    let red = format!("{}&color=red", dsn(&topic, "sub"));
    let mut c = gw.subscriber(&red);
    let got = consume(&mut c, 2);
    assert_eq!(
        got.iter()
            .map(|g| (g.value.as_str(), g.offset))
            .collect::<Vec<_>>(),
        [("1", 0), ("3", 2)]
    );
    // Committing the last delivered record (offset 2) also moves past the
    // skipped blue record at 3: a reconnect finds nothing left.
    assert_eq!(c.call(&["SET", "0", "2"]), "+OK\r\n");
    assert_eq!(c.call(&["QUIT"]), "+OK\r\n");
    c.expect_closed();
    let mut again = gw.subscriber(&red);
    assert_eq!(again.mget("json"), Vec::<Vec<u8>>::new());
    assert_eq!(
        committed_offset(&format!("{}-red", group_of(&topic)), &topic),
        Some(4)
    );

    // Without a color, a member skips every colored record (protocol.md §5):
    // of the four it gets the uncolored one only. The four arrive in one fetch,
    // inside one batch window, so a blue record let through would be in this
    // MGET's answer too.
    let mut plain = gw.subscriber(&dsn(&topic, "sub"));
    let got = consume(&mut plain, 1);
    assert_eq!(
        got.iter()
            .map(|g| (g.value.as_str(), g.offset))
            .collect::<Vec<_>>(),
        [("3", 2)]
    );
}

#[test]
fn too_many_consumers_are_told_and_closed() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = gateway(&db, "1s");
    let mut subs = [
        gw.subscriber(&dsn(&topic, "sub")),
        gw.subscriber(&dsn(&topic, "sub")),
    ];
    let want = format!("-ERR too many consumers for topic {topic}\r\n");
    let deadline = Instant::now() + WAIT;
    let mut refused = None;
    while refused.is_none() {
        assert!(
            Instant::now() < deadline,
            "nobody was refused:\n{}",
            gw.log()
        );
        let replies: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = subs
                .iter_mut()
                .map(|c| s.spawn(move || c.call(&["MGET"])))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, reply) in replies.iter().enumerate() {
            if *reply == want {
                refused = Some(i);
            } else {
                assert_eq!(reply, "*0\r\n");
            }
        }
    }
    let i = refused.unwrap();
    subs[i].expect_closed();
    assert_eq!(subs[1 - i].call(&["PING"]), "+PONG\r\n");
}

#[test]
fn json_encoding_of_non_json_values_and_metadata() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = gateway(&db, "1s");
    let mut p = gw.publisher(&dsn(&topic, "pub"));
    assert_eq!(p.call(&["SET", "a", "plain \"text\""]), "+OK\r\n");
    assert_eq!(
        p.call(&["HSET", "b", r#"{"trace":"t1"}"#, "[1,2]"]),
        "+OK\r\n"
    );
    let mut c = gw.subscriber(&dsn(&topic, "sub"));
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(c.mget("json"));
    }
    let text: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8(m.clone()).unwrap())
        .collect();
    let split = |t: &str| -> (String, String) {
        let (head, tail) = t.split_once(",\"timestamp\":").unwrap();
        (head.to_owned(), tail.split_once(',').unwrap().1.to_owned())
    };
    assert_eq!(
        split(&text[0]),
        (
            format!(
                r#"{{"key":"a","value":"plain \"text\"","topic":"{topic}","partition":0,"offset":0"#
            ),
            r#""metadata":null}"#.to_owned()
        )
    );
    assert_eq!(
        split(&text[1]),
        (
            format!(r#"{{"key":"b","value":[1,2],"topic":"{topic}","partition":0,"offset":1"#),
            r#""metadata":{"trace":"t1"}}"#.to_owned()
        )
    );
}

#[test]
fn a_subscriber_killed_mid_mget_leaves_the_group() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = gateway(&db, "30s");
    let mut doomed = gw.subscriber(&dsn(&topic, "sub"));
    doomed.send_command(&[b"MGET"]);
    // The gateway polls for the member during its long poll.
    wait_for_group(&group_of(&topic), 1, 1, pause);
    // The client dies mid-MGET.
    drop(doomed);
    wait_for_empty_group(&group_of(&topic));
    // Had its member stayed in the group it would own the only partition and
    // this one would be refused as one consumer too many.
    let mut heir = gw.subscriber(&dsn(&topic, "sub"));
    publish(&gw, &topic, 0, 1);
    let got = consume(&mut heir, 1);
    assert_eq!(got[0].offset, 0);
}

#[test]
fn commits_pipelined_with_the_next_mget_are_applied() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = gateway(&db, "1s");
    publish(&gw, &topic, 0, 5);
    let mut c = gw.subscriber(&dsn(&topic, "sub"));
    assert_eq!(consume(&mut c, 5).last().map(|g| g.offset), Some(4));
    // What a consumer loop sends: its commits and the next MGET, in one write.
    let mut burst = common::encode(&[b"SET", b"0", b"2"]);
    burst.extend(common::encode(&[b"SET", b"0", b"4"]));
    burst.extend(common::encode(&[b"MGET", b"json"]));
    c.send(&burst);
    assert_eq!(c.read_reply(), "+OK\r\n");
    assert_eq!(c.read_reply(), "+OK\r\n");
    assert_eq!(c.read_reply(), "*0\r\n");
    assert_eq!(c.call(&["QUIT"]), "+OK\r\n");
    c.expect_closed();
    // Leaving commits synchronously, then leaves the group.
    wait_for_empty_group(&group_of(&topic));
    assert_eq!(committed_offset(&group_of(&topic), &topic), Some(5));
    let mut again = gw.subscriber(&dsn(&topic, "sub"));
    assert_eq!(
        again.mget("json"),
        Vec::<Vec<u8>>::new(),
        "nothing redelivered"
    );
}

#[test]
fn idle_subscribers_are_closed_and_leave_their_group() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    // gateway() sets sub_idle_timeout to poll_timeout + 5 s.
    let gw = gateway(&db, "1s");
    let mut idle = gw.subscriber(&dsn(&topic, "sub"));
    // The member joins inside its MGETs; the broker must show it before it
    // can be seen leaving.
    wait_for_group(&group_of(&topic), 1, 1, || {
        assert_eq!(idle.mget("json"), Vec::<Vec<u8>>::new())
    });
    idle.expect_closed();
    wait_for_empty_group(&group_of(&topic));
}

#[test]
fn sigterm_during_a_long_poll_commits_leaves_and_exits_zero() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let mut gw = gateway(&db, "30s");
    publish(&gw, &topic, 0, 3);
    let mut c = gw.subscriber(&dsn(&topic, "sub"));
    assert_eq!(consume(&mut c, 3).len(), 3);
    assert_eq!(c.call(&["SET", "0", "2"]), "+OK\r\n");
    c.send_command(&[b"MGET"]);
    wait_for_group(&group_of(&topic), 1, 1, pause);
    let started = Instant::now();
    let status = gw.terminate();
    assert!(status.success(), "exit status {status}:\n{}", gw.log());
    // Not the 30 s poll: the member answers what it has and leaves.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(c.read_reply(), "*0\r\n");
    c.expect_closed();
    wait_for_empty_group(&group_of(&topic));
    assert_eq!(committed_offset(&group_of(&topic), &topic), Some(3));
}

#[test]
fn a_group_resumes_inside_a_batch_of_pipelined_records() {
    const N: usize = 300;
    const COMMITTED: i64 = 117;
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = gateway(&db, "1s");
    // One write of N SETs: the producer sends them to Kafka in record batches
    // of many records each, so the committed offset falls inside a batch.
    let mut p = gw.publisher(&dsn(&topic, "pub"));
    let mut burst = Vec::new();
    for i in 0..N {
        burst.extend(common::encode(&[
            b"SET",
            b"k",
            format!("{{\"i\":{i}}}").as_bytes(),
        ]));
    }
    p.send(&burst);
    for _ in 0..N {
        assert_eq!(p.read_reply(), "+OK\r\n");
    }

    let mut first = gw.subscriber(&dsn(&topic, "sub"));
    let got = consume(&mut first, N);
    assert_eq!(
        got.iter().map(|g| g.offset).collect::<Vec<_>>(),
        (0..N as i64).collect::<Vec<_>>()
    );
    assert_eq!(first.call(&["SET", "0", &COMMITTED.to_string()]), "+OK\r\n");
    assert_eq!(first.call(&["QUIT"]), "+OK\r\n");
    first.expect_closed();
    wait_for_commit_of(&group_of(&topic), &topic, 0, COMMITTED + 1);

    let mut second = gw.subscriber(&dsn(&topic, "sub"));
    let got = consume(&mut second, N - COMMITTED as usize - 1);
    assert_eq!(
        got.iter().map(|g| g.offset).collect::<Vec<_>>(),
        (COMMITTED + 1..N as i64).collect::<Vec<_>>(),
        "resumed right after the committed offset, nothing skipped or repeated"
    );
    assert_exactly_once_in_partition_order(&got, COMMITTED as usize + 1..N);
    assert_eq!(second.mget("json"), Vec::<Vec<u8>>::new(), "nothing more");
}

/// Two gateway processes on one database and one cluster: the members of one
/// group connected through either split the partitions, and when one gateway
/// stops (SIGTERM) the other's member takes every partition over, resuming at
/// the committed offsets with nothing skipped and nothing repeated.
#[test]
fn two_gateways_share_a_group_and_one_takes_over_when_the_other_stops() {
    let db = TestDb::new();
    let topic = create_topic(4);
    db.grant_topic(&topic, 3);
    let group = group_of(&topic);
    // Idle limit far above the waits between the survivor's MGETs (commits
    // reaching Kafka, the other gateway's SIGTERM).
    let mut stopping = gateway_idle(&db, "1s", "60s");
    let staying_gw = gateway_idle(&db, "1s", "60s");
    let sub = dsn(&topic, "sub");
    let mut subs = [stopping.subscriber(&sub), staying_gw.subscriber(&sub)];
    wait_for_group(&group, 2, 4, || poll_both_empty(&mut subs));

    publish(&stopping, &topic, 0, 20);
    publish(&staying_gw, &topic, 20, 20);
    let shares = read_shares(&mut subs, 40);
    assert_exactly_once_in_partition_order(&shares.concat(), 0..40);
    let partitions = |share: &[Got]| share.iter().map(|g| g.partition).collect::<HashSet<_>>();
    assert!(
        !shares[0].is_empty() && !shares[1].is_empty(),
        "both gateways' members get a share"
    );
    assert!(partitions(&shares[0]).is_disjoint(&partitions(&shares[1])));

    // Each commits the middle of what it got on each partition: what follows
    // must come again, through the other gateway.
    let mut resume_at: BTreeMap<i32, i64> = BTreeMap::new();
    for (c, share) in subs.iter_mut().zip(&shares) {
        let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for g in share {
            offsets.entry(g.partition).or_default().push(g.offset);
        }
        for (p, list) in offsets {
            let middle = list[(list.len() - 1) / 2];
            assert_eq!(
                c.call(&["SET", &p.to_string(), &middle.to_string()]),
                "+OK\r\n"
            );
            resume_at.insert(p, middle + 1);
        }
    }
    for (p, o) in &resume_at {
        wait_for_commit_of(&group, &topic, *p, *o);
    }

    let [mut orphan, mut survivor] = subs;
    let status = stopping.terminate();
    assert!(status.success(), "exit status {status}");
    orphan.expect_closed();
    // The takeover happens inside the survivor's polls; what they deliver
    // meanwhile counts.
    let mut rest: Vec<Got> = Vec::new();
    wait_for_group(&group, 1, 4, || {
        rest.extend(survivor.mget("json").iter().map(|m| from_json(m)))
    });
    publish(&staying_gw, &topic, 40, 20);
    let value = |g: &Got| {
        serde_json::from_str::<Value>(&g.value).unwrap()["i"]
            .as_i64()
            .unwrap()
    };
    let after_commit = |share: &[Got]| -> HashSet<i64> {
        share
            .iter()
            .filter(|g| g.offset >= resume_at[&g.partition])
            .map(value)
            .collect()
    };
    // Must come: what the stopped gateway's member had not committed, and
    // everything new. May come again: what the survivor had not committed (an
    // eager rebalance revokes its partitions too, and it resumes them at its
    // own commits).
    let must: HashSet<i64> = after_commit(&shares[0]).into_iter().chain(40..60).collect();
    let may: HashSet<i64> = after_commit(&shares[1]);
    let deadline = Instant::now() + WAIT;
    while !must.is_subset(&rest.iter().map(value).collect()) {
        assert!(
            Instant::now() < deadline,
            "only {} delivered after the takeover",
            rest.len()
        );
        rest.extend(survivor.mget("json").iter().map(|m| from_json(m)));
    }
    let got: Vec<i64> = rest.iter().map(value).collect();
    let unique: HashSet<i64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "nothing repeated: {got:?}");
    assert!(
        unique.is_subset(&must.union(&may).copied().collect()),
        "nothing before a committed offset: {got:?}"
    );
    let mut first_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for g in rest
        .iter()
        .filter(|g| partitions(&shares[0]).contains(&g.partition))
    {
        first_offset.entry(g.partition).or_insert(g.offset);
    }
    let orphaned: BTreeMap<i32, i64> = resume_at
        .iter()
        .filter(|(p, _)| partitions(&shares[0]).contains(p))
        .map(|(p, o)| (*p, *o))
        .collect();
    assert_eq!(
        first_offset, orphaned,
        "each taken-over partition resumes at committed + 1"
    );
}

/// A commit past what the connection received would make its group skip
/// records nobody read: refused, changing nothing at the broker. The
/// original service's accept-anything is a switch away.
#[test]
fn a_commit_of_an_undelivered_offset_is_refused_unless_switched_on() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let group = common::group_of(&topic);
    let gw = gateway(&db, "1s");
    let mut c = gw.subscriber(&dsn(&topic, "sub"));
    assert_eq!(
        c.call(&["SET", "0", "0"]),
        "-ERR offset 0 of partition 0 was never delivered to this connection: nothing committed\r\n"
    );
    publish(&gw, &topic, 0, 3);
    let got = consume(&mut c, 3);
    assert_eq!(got.last().map(|g| g.offset), Some(2));
    // Delivered: fine, up to the last one received; past it, refused.
    assert_eq!(c.call(&["SET", "0", "1"]), "+OK\r\n");
    assert_eq!(
        c.call(&["SET", "0", "3"]),
        "-ERR offset 3 of partition 0 was never delivered to this connection: nothing committed\r\n"
    );
    common::wait_for_commit(&group, &topic, 2);
    drop(c);
    common::wait_for_empty_group(&group);
    assert_eq!(
        common::committed_offset(&group, &topic),
        Some(2),
        "the refused commit changed nothing"
    );

    // consumer.commit_undelivered = true: the original service's behaviour.
    let gw = GatewayConfig {
        cluster: "auto_offset_reset = \"earliest\"",
        consumer: "session_timeout = \"45s\"\npoll_timeout = \"1s\"\ncommit_undelivered = true",
        ..GatewayConfig::new(&db)
    }
    .start();
    let mut c = gw.subscriber(&dsn(&topic, "sub"));
    // It resumes after the committed offset: record 2 only.
    let got = consume(&mut c, 1);
    assert_eq!(got[0].offset, 2);
    assert_eq!(c.call(&["SET", "0", "9"]), "+OK\r\n");
    common::wait_for_commit(&group, &topic, 10);
}

/// A subscriber's lag (partition end minus its position) where operators
/// look: CLIENT LIST, INFO and /metrics, against the broker's own end offset.
#[test]
fn consumer_lag_is_shown_and_matches_the_broker() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = GatewayConfig {
        cluster: "auto_offset_reset = \"earliest\"",
        consumer: "session_timeout = \"45s\"\npoll_timeout = \"1s\"\nbatch = 4",
        ..GatewayConfig::new(&db)
    }
    .start();
    publish(&gw, &topic, 0, 10);
    let mut c = gw.subscriber(&dsn(&topic, "sub"));
    let got = consume(&mut c, 4);
    let position = got.last().unwrap().offset + 1;
    let end = common::end_offsets(&topic, 1)[0];
    assert_eq!(end, 10);
    let expected = end - position;
    // Refreshed every second by the member: bounded by WAIT.
    let deadline = Instant::now() + WAIT;
    loop {
        let line = c
            .client_list()
            .into_iter()
            .find(|l| l["role"] == "sub")
            .unwrap();
        if line["lag"] == expected.to_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lag {:?}, expected {expected}",
            line["lag"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let info = c.call(&["INFO", "consumers"]);
    assert!(
        info.contains(&format!(
            "\r\nlag:{expected}\r\nlag_partitions:0={expected}\r\n"
        )),
        "{info}"
    );
    let group = group_of(&topic);
    assert_eq!(
        gw.metric(
            "databus_consumer_lag",
            &[("group", group.as_str()), ("topic", topic.as_str())]
        ),
        expected as f64
    );
}

/// The consumer is made off the shard, after AUTH: when librdkafka refuses
/// to make it (here `group.protocol = "consumer"`, which refuses the
/// `session.timeout.ms` the gateway sets; a producer ignores it), the first
/// MGET says why and closes, and the member's slot is free again.
#[test]
fn a_consumer_kafka_refuses_to_make_answers_the_mget_with_why() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = GatewayConfig {
        cluster: "auto_offset_reset = \"earliest\"",
        extra: "[clusters.cluster1.kafka]\n\"group.protocol\" = \"consumer\"",
        ..GatewayConfig::new(&db)
    }
    .start();
    let mut sub = gw.subscriber(&dsn(&topic, "sub"));
    assert_eq!(
        sub.call(&["MGET"]),
        "-ERR kafka: Client creation error: `session.timeout.ms` is not supported for \
         `group.protocol=consumer`. It is defined broker side\r\n"
    );
    sub.expect_closed();
    // The slot goes when the member's task ends, just after it answered.
    gw.wait_for_metric("databus_consumer_members", &[], |v| v == 0.0);
    // The producer side of the same cluster works.
    let mut p = gw.publisher(&dsn(&topic, "pub"));
    assert_eq!(p.call(&["SET", "k", "v"]), "+OK\r\n");
}
