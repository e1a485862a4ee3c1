//! Publishing through the gateway, checked by reading Kafka back with an
//! independent consumer (protocol.md §4).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{create_topic, dsn, encode, read_topic, Gateway, GatewayConfig, TestDb};
use databus::message::Header;
use prost::Message;

#[test]
fn set_and_hset_records_carry_key_value_and_headers() {
    let db = TestDb::new();
    let topic = create_topic(3);
    db.grant_topic(&topic, 3);
    let gw = Gateway::start(&db);

    let mut plain = gw.publisher(&dsn(&topic, "pub"));
    assert_eq!(plain.call(&["SET", "user:42", "{\"n\":1}"]), "+OK\r\n");
    let mut red = gw.publisher(&format!("{}&color=red", dsn(&topic, "pub")));
    assert_eq!(
        red.call(&["HSET", "order-1001", r#"{"trace":"t1"}"#, "v2"]),
        "+OK\r\n"
    );
    let mut metadata = HashMap::new();
    metadata.insert("k".to_owned(), "v".to_owned());
    let protobuf = Header { metadata }.encode_to_vec();
    red.send_command(&[b"HSET", b"x", &protobuf, b"v3"]);
    assert_eq!(red.read_reply(), "+OK\r\n");

    let records = read_topic(&topic, 3, 3);
    assert_eq!(records.len(), 3);
    let by_key = |key: &[u8]| {
        records
            .iter()
            .find(|r| r.key.as_deref() == Some(key))
            .unwrap()
    };
    let (first, second, third) = (by_key(b"user:42"), by_key(b"order-1001"), by_key(b"x"));

    assert_eq!(first.key.as_deref(), Some(&b"user:42"[..]));
    assert_eq!(first.value.as_deref(), Some(&b"{\"n\":1}"[..]));
    assert_eq!(first.partition, 2, "user:42 goes to partition 2 of 3");
    assert_eq!(first.header("color"), Some(&b""[..]));
    assert_eq!(first.header("metadata"), None);

    assert_eq!(second.key.as_deref(), Some(&b"order-1001"[..]));
    assert_eq!(second.value.as_deref(), Some(&b"v2"[..]));
    assert_eq!(second.partition, 0);
    assert_eq!(second.header("color"), Some(&b"red"[..]));
    let header = Header::decode(second.header("metadata").unwrap()).unwrap();
    assert_eq!(header.metadata.get("trace").map(String::as_str), Some("t1"));

    assert_eq!(third.value.as_deref(), Some(&b"v3"[..]));
    assert_eq!(third.header("metadata"), Some(protobuf.as_slice()));
}

/// protocol.md §4: the placement of the original service's sarama hash
/// partitioner, for 3, 8 and 12 partitions.
#[test]
fn keys_land_where_sarama_put_them() {
    let vectors: [(&str, [i32; 3]); 6] = [
        ("", [0, 3, 3]),
        ("x", [1, 1, 1]),
        ("aaaa", [1, 1, 1]),
        ("user:42", [2, 2, 2]),
        ("order-1001", [0, 4, 0]),
        ("hello", [0, 3, 3]),
    ];
    let db = TestDb::new();
    // Grants first: the gateway loads them at start.
    let topics: Vec<(String, i32)> = [3, 8, 12]
        .into_iter()
        .map(|n| {
            let t = create_topic(n);
            db.grant_topic(&t, 2);
            (t, n)
        })
        .collect();
    let gw = Gateway::start(&db);
    for (column, (topic, partitions)) in topics.iter().enumerate() {
        let mut c = gw.publisher(&dsn(topic, "pub"));
        for (key, _) in &vectors {
            assert_eq!(c.call(&["SET", key, key]), "+OK\r\n");
        }
        let records = read_topic(topic, *partitions, vectors.len());
        assert_eq!(records.len(), vectors.len());
        for (key, want) in &vectors {
            let record = records
                .iter()
                .find(|r| r.value.as_deref() == Some(key.as_bytes()))
                .unwrap();
            assert_eq!(
                record.partition, want[column],
                "key {key:?} with {partitions} partitions"
            );
        }
    }
}

#[test]
fn ten_thousand_pipelined_sets_are_acknowledged_in_order_exactly_once() {
    const N: usize = 10_000;
    let db = TestDb::new();
    let topic = create_topic(3);
    db.grant_topic(&topic, 2);
    let gw = Gateway::start(&db);
    let mut c = gw.publisher(&dsn(&topic, "pub"));

    let mut batch = Vec::new();
    for i in 0..N {
        let key = format!("k{}", i % 10);
        let value = format!("v{i}");
        batch.extend_from_slice(&encode(&[b"SET", key.as_bytes(), value.as_bytes()]));
    }
    // Write from another thread: the gateway answers while we are still sending,
    // and a single-threaded client would deadlock on full socket buffers.
    let mut writer = c.stream.try_clone().unwrap();
    let sender =
        std::thread::spawn(move || std::io::Write::write_all(&mut writer, &batch).unwrap());
    for i in 0..N {
        assert_eq!(c.read_reply(), "+OK\r\n", "reply {i}");
    }
    sender.join().unwrap();
    assert_eq!(c.call(&["PING"]), "+PONG\r\n");

    let records = read_topic(&topic, 3, N);
    assert_eq!(records.len(), N, "every SET exactly once");
    let mut seen = vec![false; N];
    let mut last_in_key: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut by_offset = records.clone();
    by_offset.sort_by_key(|r| (r.partition, r.offset));
    for r in &by_offset {
        let i: usize = std::str::from_utf8(&r.value.as_ref().unwrap()[1..])
            .unwrap()
            .parse()
            .unwrap();
        assert!(!seen[i], "v{i} twice");
        seen[i] = true;
        let key = r.key.clone().unwrap();
        if let Some(previous) = last_in_key.insert(key, i) {
            assert!(previous < i, "v{previous} after v{i} for the same key");
        }
    }
}

#[test]
fn oversized_values_are_refused_and_not_produced() {
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 2);
    let gw = Gateway::with_server(&db, "max_value_bytes = 10");
    let mut c = gw.publisher(&dsn(&topic, "pub"));
    assert_eq!(
        c.call(&["SET", "k", "12345678901"]),
        "-ERR value exceeds max_value_bytes\r\n"
    );
    assert_eq!(c.call(&["SET", "k", "1234567890"]), "+OK\r\n");
    let records = read_topic(&topic, 1, 1);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value.as_deref(), Some(&b"1234567890"[..]));
}

#[test]
fn unreachable_kafka_answers_an_error_within_produce_timeout() {
    let db = TestDb::new();
    db.add_app(2, "lost", "s", "dead");
    db.add_grant(2, "g", 2, "t");
    // Port 1 on loopback: nothing listens there, connections are refused.
    let gw = GatewayConfig {
        server: "produce_timeout = \"1s\"",
        extra: "[clusters.dead]\nbrokers = \"127.0.0.1:1\"\n",
        ..GatewayConfig::new(&db)
    }
    .start();
    let mut c = gw.publisher("lost:s@g/topic=t&role=pub");
    let started = Instant::now();
    let reply = c.call(&["SET", "k", "v"]);
    assert!(reply.starts_with("-ERR kafka: "), "{reply}");
    // Bounded, not a timing claim: the reply must not wait for much longer than
    // produce_timeout (the client's own limit is 30 s).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        c.call(&["PING"]),
        "+PONG\r\n",
        "the connection stays usable"
    );
}

#[test]
fn sigterm_drains_in_flight_produces_and_exits_zero() {
    const N: usize = 2_000;
    let db = TestDb::new();
    let topic = create_topic(1);
    db.grant_topic(&topic, 2);
    let mut gw = Gateway::start(&db);
    let mut c = gw.publisher(&dsn(&topic, "pub"));
    let mut batch = Vec::new();
    for i in 0..N {
        batch.extend_from_slice(&encode(&[b"SET", b"k", format!("v{i}").as_bytes()]));
    }
    c.send(&batch);
    // Wait for the first acknowledgement, so produces are surely in flight.
    assert_eq!(c.read_reply(), "+OK\r\n");
    let status = gw.terminate();
    assert!(status.success(), "exit status {status}:\n{}", gw.log());

    // Every reply that came is +OK, and every acknowledged value is in Kafka.
    let mut acknowledged = 1;
    while let Some(reply) = c.try_read_reply() {
        assert_eq!(reply, "+OK\r\n");
        acknowledged += 1;
    }
    let records = read_topic(&topic, 1, acknowledged);
    for (i, r) in records.iter().take(acknowledged).enumerate() {
        assert_eq!(r.value.as_deref(), Some(format!("v{i}").as_bytes()));
    }
}

#[test]
fn a_producer_per_shard_delivers_every_set() {
    let db = TestDb::new();
    let topic = create_topic(3);
    db.grant_topic(&topic, 2);
    let gw = GatewayConfig {
        server: "producers = \"per_shard\"",
        shards: 2,
        ..GatewayConfig::new(&db)
    }
    .start();
    // Sixteen connections: the kernel spreads them over both shards'
    // listeners (all on one shard: a 2^-15 chance).
    let mut values = Vec::new();
    let mut publishers = Vec::new();
    for c in 0..16 {
        let mut p = gw.publisher(&dsn(&topic, "pub"));
        for i in 0..3 {
            let value = format!("\"c{c}-{i}\"");
            assert_eq!(p.call(&["SET", "k", &value]), "+OK\r\n");
            values.push(value);
        }
        publishers.push(p);
    }
    // Both shards served SETs, each with its own producer.
    let shards: std::collections::BTreeSet<String> = publishers[0]
        .client_list()
        .into_iter()
        .map(|line| line["shard"].clone())
        .collect();
    assert_eq!(shards, ["0", "1"].map(String::from).into());
    let mut got: Vec<String> = read_topic(&topic, 3, values.len())
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
        .collect();
    got.sort();
    values.sort();
    assert_eq!(got, values);
}

/// Every codec of `compression.type` works when set through
/// `[clusters.NAME.kafka]`: records pipelined through the gateway (so that
/// librdkafka compresses whole batches) read back intact. zstd needs rdkafka's
/// `zstd` feature; a codec librdkafka was built without fails the producer's
/// creation, and with it the gateway's start.
#[test]
fn every_compression_codec_round_trips() {
    const N: usize = 200;
    let db = TestDb::new();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = create_topic(3);
        db.grant_topic(&topic, 2);
        let kafka = format!("[clusters.cluster1.kafka]\n\"compression.type\" = \"{codec}\"\n");
        let gw = GatewayConfig {
            extra: &kafka,
            ..GatewayConfig::new(&db)
        }
        .start();
        let mut p = gw.publisher(&dsn(&topic, "pub"));
        let mut burst = Vec::new();
        let mut sent = Vec::new();
        for i in 0..N {
            let key = format!("key-{i}");
            // Repetitive JSON: what compression is for.
            let value = format!(
                r#"{{"codec":"{codec}","i":{i},"pad":"{}"}}"#,
                "ab".repeat(i)
            );
            burst.extend(encode(&[b"SET", key.as_bytes(), value.as_bytes()]));
            sent.push((key.into_bytes(), value.into_bytes()));
        }
        p.send(&burst);
        for _ in 0..N {
            assert_eq!(p.read_reply(), "+OK\r\n", "codec {codec}");
        }
        let mut got: Vec<(Vec<u8>, Vec<u8>)> = read_topic(&topic, 3, N)
            .into_iter()
            .map(|r| (r.key.unwrap(), r.value.unwrap()))
            .collect();
        got.sort();
        sent.sort();
        assert!(got == sent, "codec {codec}: records differ");
    }
    // The property reaches librdkafka: a codec it does not know stops the
    // start, naming the property.
    let toml = GatewayConfig {
        extra: "[clusters.cluster1.kafka]\n\"compression.type\" = \"brotli\"\n",
        ..GatewayConfig::new(&db)
    }
    .toml();
    let (status, output) = common::run_gateway_to_exit(&toml);
    assert!(!status.success(), "{output}");
    assert!(output.contains("compression.type"), "{output}");
}
