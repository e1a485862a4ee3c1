//! Per-app quotas on the real stack: a capped app publishes at its cap
//! (records/s, bytes/s, within 10%) while an uncapped app on the same gateway
//! keeps its speed; nothing is refused or dropped, every SET answered +OK is
//! in Kafka; the connection cap refuses AUTH; INFO and /metrics show the
//! caps and the pauses. Caps are set with `databus admin apps quota`.

mod common;

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Replies are counted from this long after the start (the burst and the
/// connection's first pipeline are behind) until the end.
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURED: Duration = Duration::from_secs(3);

/// An app with one grant (pub) on a topic of its own; returns its AUTH
/// string and topic.
fn app_with_topic(db: &TestDb, key: &str) -> (String, String) {
    let topic = create_topic(1);
    let group = group_of(&topic);
    let run = admin(db, &["--json", "apps", "add", key]).json();
    let secret = run["secret"].as_str().unwrap().to_owned();
    admin(db, &["grants", "add", key, &group, &topic, "pub"]).ok();
    (
        format!("{key}:{secret}@{group}/topic={topic}&role=pub"),
        topic,
    )
}

/// What one publishing connection got: SETs answered +OK in all, and
/// those answered within the measured window.
struct Published {
    acked: usize,
    in_window: usize,
}

/// Publishes batches of `batch` pipelined SETs of `value_len`-byte values
/// from one connection, from `start` until the window ends.
fn publish(
    addr: SocketAddr,
    dsn: &str,
    batch: usize,
    value_len: usize,
    start: Instant,
) -> Published {
    let mut client = Client::connect(addr);
    client.auth_ok(dsn);
    let value = "v".repeat(value_len);
    let (from, to) = (start + WARM_UP, start + WARM_UP + MEASURED);
    let mut published = Published {
        acked: 0,
        in_window: 0,
    };
    let mut n = 0usize;
    while Instant::now() < to {
        let mut wire = Vec::new();
        for _ in 0..batch {
            let key = format!("k{n:08}");
            n += 1;
            wire.extend(encode(&[b"SET", key.as_bytes(), value.as_bytes()]));
        }
        client.send(&wire);
        for _ in 0..batch {
            assert_eq!(client.read_reply(), "+OK\r\n");
        }
        published.acked += batch;
        let now = Instant::now();
        if now > from && now <= to {
            published.in_window += batch;
        }
    }
    published
}

/// Runs `publish` on `connections` connections at once; the summed figures.
fn publish_on(
    addr: SocketAddr,
    dsn: &str,
    connections: usize,
    batch: usize,
    value_len: usize,
    start: Instant,
) -> thread::JoinHandle<Published> {
    let dsn = dsn.to_owned();
    thread::spawn(move || {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                let dsn = dsn.clone();
                thread::spawn(move || publish(addr, &dsn, batch, value_len, start))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).fold(
            Published {
                acked: 0,
                in_window: 0,
            },
            |a, b| Published {
                acked: a.acked + b.acked,
                in_window: a.in_window + b.in_window,
            },
        )
    })
}

fn per_second(published: &Published) -> f64 {
    published.in_window as f64 / MEASURED.as_secs_f64()
}

fn assert_within_10_percent(what: &str, got: f64, cap: f64) {
    eprintln!("{what}: {got:.0}/s for a cap of {cap:.0}/s");
    assert!(
        (got - cap).abs() <= cap * 0.10,
        "{what}: {got:.0}/s for a cap of {cap:.0}/s"
    );
}

#[test]
fn a_capped_app_gets_its_rate_and_an_uncapped_one_keeps_its_speed() {
    let db = TestDb::new();
    let (records_dsn, records_topic) = app_with_topic(&db, "capped_records");
    let (bytes_dsn, bytes_topic) = app_with_topic(&db, "capped_bytes");
    let (free_dsn, free_topic) = app_with_topic(&db, "free");
    admin(
        &db,
        &[
            "apps",
            "quota",
            "capped_records",
            "--records-per-sec",
            "1000",
        ],
    )
    .ok();
    // 1,000-byte records (a 9-byte key and a 991-byte value): 100 a second.
    admin(
        &db,
        &["apps", "quota", "capped_bytes", "--bytes-per-sec", "100000"],
    )
    .ok();
    let gateway = GatewayConfig {
        refresh_interval: "500ms",
        shards: 2,
        ..GatewayConfig::new(&db)
    }
    .start();
    let addr = gateway.addr;

    // The uncapped app alone, then beside the capped ones.
    let alone = publish_on(addr, &free_dsn, 4, 20, 100, Instant::now())
        .join()
        .unwrap();
    let start = Instant::now();
    // Two connections each: the cap is the app's, not a connection's.
    let records = publish_on(addr, &records_dsn, 2, 20, 100, start);
    let bytes = publish_on(addr, &bytes_dsn, 2, 2, 991, start);
    let beside = publish_on(addr, &free_dsn, 4, 20, 100, start);
    let (records, bytes, beside) = (
        records.join().unwrap(),
        bytes.join().unwrap(),
        beside.join().unwrap(),
    );

    assert_within_10_percent("records/s cap", per_second(&records), 1000.0);
    assert_within_10_percent(
        "bytes/s cap (1,000-byte records)",
        per_second(&bytes),
        100.0,
    );
    let (alone, beside) = (per_second(&alone), per_second(&beside));
    eprintln!("uncapped: {alone:.0}/s alone, {beside:.0}/s beside the capped apps");
    assert!(
        beside >= alone * 0.5 && beside > 3000.0,
        "the uncapped app went from {alone:.0}/s alone to {beside:.0}/s beside the capped ones"
    );

    // Nothing was dropped: every +OK is in Kafka, once.
    for (topic, published) in [(&records_topic, &records), (&bytes_topic, &bytes)] {
        assert_eq!(
            read_topic_to_end(topic, 1).len(),
            published.acked,
            "{topic}"
        );
    }
    assert!(read_topic_to_end(&free_topic, 1).len() >= beside as usize);

    // The pauses are shown: /metrics per capped app, INFO to the app itself.
    let capped = [("app", "capped_records")];
    assert_eq!(
        gateway.metric(
            "databus_quota_limit",
            &[("app", "capped_records"), ("kind", "records_per_sec")]
        ),
        1000.0
    );
    assert!(gateway.metric("databus_quota_throttled_seconds_total", &capped) > 1.0);
    assert_eq!(
        gateway.metric("databus_quota_records_total", &capped),
        records.acked as f64
    );
    assert_eq!(
        gateway.metric("databus_quota_limit", &[("app", "free")]),
        0.0
    );
    let mut client = gateway.client();
    client.auth_ok(&records_dsn);
    let info = client.call(&["INFO", "quota"]);
    assert!(
        info.contains(
            "# Quota\r\nquota_records_per_sec:1000\r\nquota_bytes_per_sec:0\r\n\
                       quota_connections:0\r\napp_connections:1\r\napp_throttled_seconds:"
        ),
        "{info}"
    );
}

#[test]
fn over_its_connection_cap_an_app_is_refused_at_auth() {
    let db = TestDb::new();
    let (dsn, _) = app_with_topic(&db, "few");
    let gateway = GatewayConfig {
        refresh_interval: "200ms",
        ..GatewayConfig::new(&db)
    }
    .start();
    let mut first = gateway.client();
    first.auth_ok(&dsn);
    let mut second = gateway.client();
    second.auth_ok(&dsn);
    // Lowered while both are open: they stay; a third is refused.
    let shown = admin(&db, &["apps", "quota", "few", "--connections", "2"]).ok();
    assert_eq!(
        shown,
        "app \"few\": no cap on records/s, no cap on bytes/s, 2 connections\n"
    );
    gateway.wait_for_metric(
        "databus_quota_limit",
        &[("app", "few"), ("kind", "connections")],
        |n| n == 2.0,
    );
    let mut third = gateway.client();
    assert_eq!(
        third.call(&["AUTH", &dsn]),
        "-ERR max number of connections for this app reached (2)\r\n"
    );
    third.expect_closed();
    assert_eq!(
        gateway.metric("databus_auth_total", &[("outcome", "app_connections_full")]),
        1.0
    );
    assert_eq!(
        gateway.metric("databus_quota_connections", &[("app", "few")]),
        2.0
    );
    // A closed connection gives its place back.
    drop(second);
    gateway.wait_for_metric("databus_quota_connections", &[("app", "few")], |n| n == 1.0);
    gateway.client().auth_ok(&dsn);
    assert_eq!(first.call(&["SET", "k", "v"]), "+OK\r\n");
}
