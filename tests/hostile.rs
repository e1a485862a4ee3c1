//! Hostile and heavy clients (issue #12): every connection's memory bounded
//! in bytes, a client that never reads closed, redis-server's limits before
//! AUTH, no group hijack through a color, no secret in the log, a cap on
//! subscribers, and a process out of descriptors that still answers. Each
//! test asserts slots, replies and RSS bounds, never timings.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{dsn, seed_dsn, Client, Gateway, GatewayConfig, TestDb, WAIT};

/// Writes `bytes` from a thread, as fast as the gateway takes them, and
/// stops after `limit` bytes or a second without progress; returns how much
/// was written. The socket stays open.
fn flood(stream: &TcpStream, bytes: &[u8], limit: usize) -> usize {
    let mut stream = stream.try_clone().unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut written = 0;
    while written < limit {
        match stream.write(&bytes[written % bytes.len()..]) {
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => break,
        }
    }
    written
}

/// The gateway's peak RSS (KiB) while `work` runs, sampled every 20 ms: a
/// measurement, not a wait.
fn peak_rss_during<T>(gw: &Gateway, work: impl FnOnce() -> T) -> (T, u64) {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = gw.rss_kib();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(gw.rss_kib());
                std::thread::sleep(Duration::from_millis(20));
            }
            peak.max(gw.rss_kib())
        });
        let out = work();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (out, sampler.join().unwrap())
    })
}

/// Clients that pipeline and never read are closed after write_timeout, and
/// their slots freed: a real client is served again. Before AUTH (HELLO and
/// 16 KiB ECHOs) and after (16 KiB ECHOs): each costs the gateway its budget,
/// not what it sent.
#[test]
fn clients_that_never_read_are_closed_and_cost_their_budget_only() {
    const CLIENTS: usize = 20;
    let db = TestDb::new();
    let gw = GatewayConfig {
        server: "max_connections = 20\nwrite_timeout = \"1s\"",
        shards: 2,
        ..GatewayConfig::new(&db)
    }
    .start();
    let before = gw.rss_kib();
    let echo = common::encode(&[b"ECHO", &[b'e'; 16 * 1024]]);
    let hello = common::encode(&[b"HELLO", b"3"]);
    let clients: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            let mut c = gw.client();
            if i % 2 == 0 {
                c.auth_ok(&seed_dsn("pub"));
            }
            c
        })
        .collect();
    let (sent, peak) = peak_rss_during(&gw, || {
        std::thread::scope(|scope| {
            let floods: Vec<_> = clients
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let wire = if i % 4 == 1 { &hello } else { &echo };
                    scope.spawn(move || flood(&c.stream, wire, 64 << 20))
                })
                .collect();
            floods.into_iter().map(|t| t.join().unwrap()).sum::<usize>()
        })
    });
    eprintln!(
        "{CLIENTS} clients sent {} MiB unread; gateway RSS {before} KiB before, {peak} KiB then",
        sent >> 20
    );
    // Every slot is taken, and none was served past its budget: 20 clients
    // at a few hundred KiB each, not the gigabytes they sent.
    assert!(
        peak.saturating_sub(before) < 64 * 1024,
        "RSS grew {} KiB",
        peak - before
    );
    // The gateway closes them all (write_timeout) and frees their slots.
    gw.wait_for_metric("databus_connections", &[], |open| open == 0.0);
    let mut c = gw.client_with_a_slot(&["AUTH", &seed_dsn("pub")], "+OK\r\n");
    assert_eq!(c.call(&["PING"]), "+PONG\r\n");
}

/// A client that does not read holds off no deadline: an unauthenticated
/// one is closed at auth_timeout even while the gateway waits to write to it.
#[test]
fn a_client_that_never_reads_is_closed_at_auth_timeout() {
    let db = TestDb::new();
    let gw = Gateway::with_server(&db, "auth_timeout = \"1s\"\nwrite_timeout = \"60s\"");
    let c = gw.client();
    let echo = common::encode(&[b"ECHO", &[b'e'; 16 * 1024]]);
    let started = Instant::now();
    flood(&c.stream, &echo, 64 << 20);
    gw.wait_for_metric("databus_connections", &[], |open| open == 0.0);
    // Closed by the auth timeout, well before the 60 s write timeout.
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// redis-server's limits before AUTH; after it, the configured ones.
#[test]
fn unauthenticated_requests_are_small() {
    let db = TestDb::new();
    let gw = Gateway::start(&db);
    for (input, text) in [
        (&b"*11\r\n"[..], "unauthenticated multibulk length"),
        (
            b"*2\r\n$4\r\nAUTH\r\n$16385\r\n",
            "unauthenticated bulk length",
        ),
    ] {
        let mut c = gw.client();
        c.send(input);
        assert_eq!(c.read_reply(), format!("-ERR Protocol error: {text}\r\n"));
        c.expect_closed();
    }
    // 16 KiB is fine before AUTH; 100 KiB after.
    let mut c = gw.client();
    let small = "x".repeat(16 * 1024);
    assert_eq!(c.call(&["ECHO", &small]).len(), 16 * 1024 + 10);
    c.auth_ok(&seed_dsn("pub"));
    let large = "y".repeat(100 * 1024);
    assert_eq!(c.call(&["ECHO", &large]).len(), 100 * 1024 + 11);
}

/// A color that would put a subscriber in another app's group is refused;
/// so is a color outside the character set or over 64 characters.
#[test]
fn a_color_cannot_reach_another_apps_group() {
    let db = TestDb::new();
    let topic = common::create_topic(1);
    // App 2 owns group `G-eu`; the seed app (1) owns `G` on the same topic.
    db.add_grant(1, "G", 3, &topic);
    db.add_app(2, "app_b", "secret_b", "cluster1");
    db.add_grant(2, "G-eu", 3, &topic);
    let gw = Gateway::start(&db);
    let auth = |color: &str| {
        let mut c = gw.client();
        let reply = c.call(&[
            "AUTH",
            &format!("app_key1:app_secret1@G/topic={topic}&role=sub&color={color}"),
        ]);
        (reply, c)
    };
    let (reply, mut c) = auth("eu");
    assert_eq!(reply, "-NOPERM color eu is not allowed for group G\r\n");
    c.expect_closed();
    // `G` with color `eu-x` derives `G-eu-x`, which app B's colored
    // subscribers (`G-eu` with color `x`) derive too.
    let (reply, _) = auth("eu-x");
    assert_eq!(reply, "-NOPERM color eu-x is not allowed for group G\r\n");
    for bad in ["b!d", "a b", &"c".repeat(65)] {
        let (reply, mut c) = auth(bad);
        assert_eq!(reply, "-ERR invalid color\r\n", "{bad:?}");
        c.expect_closed();
    }
    // A color of its own is fine, and so is app B in its own group.
    let (reply, _) = auth("us");
    assert_eq!(reply, "+OK\r\n");
    let mut b = gw.client();
    assert_eq!(
        b.call(&[
            "AUTH",
            &format!("app_b:secret_b@G-eu/topic={topic}&role=sub")
        ]),
        "+OK\r\n"
    );
    assert_eq!(
        gw.metric("databus_auth_total", &[("outcome", "color_not_allowed")]),
        2.0
    );
    assert_eq!(
        gw.metric("databus_auth_total", &[("outcome", "bad_color")]),
        3.0
    );
}

/// A secret sent in the key's place is never logged; its fingerprint is.
#[test]
fn a_secret_in_the_keys_place_is_not_logged() {
    let db = TestDb::new();
    let gw = Gateway::start(&db);
    let mut c = gw.client();
    assert_eq!(
        c.call(&[
            "AUTH",
            "app_secret1:app_key1@group_name1/topic=test156&role=pub"
        ]),
        "-WRONGPASS invalid key, secret, group or topic\r\n"
    );
    // The claim is about the log itself: wait for the failure's line.
    let line = gw
        .wait_for_log("auth failed")
        .expect("the failure is logged");
    let log = gw.log();
    assert!(
        !log.contains("app_secret1"),
        "a secret reached the log:\n{log}"
    );
    assert!(line.contains("key=unknown:"), "{line}");
}

/// Past max_subscribers, AUTH as a subscriber says so; a slot comes back when
/// a subscriber leaves.
#[test]
fn subscribers_are_capped() {
    let db = TestDb::new();
    let topic = common::create_topic(2);
    db.grant_topic(&topic, 3);
    let gw = Gateway::with_server(&db, "max_subscribers = 2");
    let mut first = gw.subscriber(&dsn(&topic, "sub"));
    let _second = gw.subscriber(&dsn(&topic, "sub"));
    let mut third = gw.client();
    assert_eq!(
        third.call(&["AUTH", &dsn(&topic, "sub")]),
        "-ERR max number of subscribers reached\r\n"
    );
    third.expect_closed();
    // Publishers are not subscribers.
    gw.publisher(&dsn(&topic, "pub"));
    assert_eq!(first.call(&["QUIT"]), "+OK\r\n");
    gw.wait_for_metric("databus_consumer_members", &[], |live| live < 2.0);
    let mut again = gw.client();
    assert_eq!(again.call(&["AUTH", &dsn(&topic, "sub")]), "+OK\r\n");
}

/// Out of descriptors, new clients are told so (or closed), and existing
/// clients keep working. The gateway's limit is lowered while it runs.
#[test]
fn out_of_descriptors_new_clients_are_refused_and_others_served() {
    let db = TestDb::new();
    let topic = common::create_topic(1);
    db.grant_topic(&topic, 3);
    // Two shards: one shard's freed descriptor may be taken by the other's
    // accept, which must then refuse too.
    let gw = GatewayConfig {
        server: "max_connections = 1000\nauth_timeout = \"300s\"",
        shards: 2,
        ..GatewayConfig::new(&db)
    }
    .start();
    let mut existing = gw.publisher(&dsn(&topic, "pub"));
    // The producer's broker connections are made before the limit drops:
    // out of descriptors, nothing new can be opened, Kafka sockets included.
    assert_eq!(existing.call(&["SET", "k", "v"]), "+OK\r\n");
    let open_fds = std::fs::read_dir(format!("/proc/{}/fd", gw.pid()))
        .unwrap()
        .count();
    let limit = open_fds + 10;
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", gw.pid()))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit (util-linux) is installed");
    assert!(status.success());
    let mut served = 0;
    let mut refused = 0;
    let mut told = 0;
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut c = gw.client();
        c.stream.set_read_timeout(Some(WAIT)).unwrap();
        c.send(b"*1\r\n$4\r\nPING\r\n");
        match c.try_read_reply().as_deref() {
            Some("+PONG\r\n") => {
                served += 1;
                held.push(c);
            }
            Some("-ERR max number of clients reached\r\n") => {
                refused += 1;
                told += 1;
            }
            None => refused += 1,
            Some(other) => panic!("unexpected reply {other:?}"),
        }
    }
    eprintln!("with {limit} descriptors: {served} served, {refused} refused ({told} told why)");
    assert!(
        served >= 1 && refused >= 20,
        "{served} served, {refused} refused"
    );
    // The reserve descriptor tells most of them why, rather than a silence.
    assert!(
        told * 4 >= refused * 3,
        "{told} of {refused} refused were told why"
    );
    assert_eq!(existing.call(&["PING"]), "+PONG\r\n");
    assert_eq!(existing.call(&["SET", "k", "v"]), "+OK\r\n");
}

/// An MGET reply is bounded in bytes: large records come a few per MGET,
/// in order, every one of them.
#[test]
fn mget_replies_are_bounded_in_bytes() {
    const RECORDS: usize = 12;
    const VALUE: usize = 300 * 1024;
    let db = TestDb::new();
    let topic = common::create_topic(1);
    db.grant_topic(&topic, 3);
    let gw = GatewayConfig {
        cluster: "auto_offset_reset = \"earliest\"",
        consumer: "session_timeout = \"45s\"\npoll_timeout = \"2s\"\nbatch = 100\n\
                   max_batch_bytes = 1048576",
        ..GatewayConfig::new(&db)
    }
    .start();
    let mut p = gw.publisher(&dsn(&topic, "pub"));
    for i in 0..RECORDS {
        let value = format!("\"{}{}\"", i % 10, "v".repeat(VALUE));
        assert_eq!(p.call(&["SET", &format!("k{i}"), &value]), "+OK\r\n");
    }
    let mut s = gw.subscriber(&dsn(&topic, "sub"));
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < RECORDS {
        assert!(Instant::now() < deadline, "got {} of {RECORDS}", got.len());
        let batch = s.mget("pb");
        let bytes: usize = batch.iter().map(Vec::len).sum();
        assert!(
            batch.len() <= 1 || bytes <= 1 << 20,
            "{} messages, {bytes} bytes",
            batch.len()
        );
        got.extend(batch);
    }
    use prost::Message;
    let offsets: Vec<i64> = got
        .iter()
        .map(|m| databus::message::MessagePb::decode(&m[..]).unwrap().offset)
        .collect();
    assert_eq!(offsets, (0..RECORDS as i64).collect::<Vec<_>>());
}

/// A publisher pipelining large values into a broker that does not answer
/// costs the gateway its byte budgets, not what it sends: the broker is a
/// librdkafka mock cluster in this process, its round trip set to a minute.
#[test]
fn a_stalled_broker_costs_the_in_flight_budget_not_what_clients_send() {
    use rdkafka::mocking::MockCluster;
    const VALUE: usize = 900 * 1000;
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("test156", 1, 1).unwrap();
    let db = TestDb::new();
    let gw = GatewayConfig {
        server: "max_in_flight_bytes = 33554432\nmax_connection_bytes = 1048576\n\
                 produce_timeout = \"60s\"\ndelivery_timeout = \"60s\"\nwrite_timeout = \"60s\"",
        brokers: &mock.bootstrap_servers(),
        ..GatewayConfig::new(&db)
    }
    .start();
    let mut warm = gw.publisher(&seed_dsn("pub"));
    assert_eq!(warm.call(&["SET", "k", "v"]), "+OK\r\n");
    mock.broker_round_trip_time(1, Duration::from_secs(60))
        .unwrap();
    let before = gw.rss_kib();
    let set = common::encode(&[b"SET", b"k", &vec![b'v'; VALUE]]);
    let publishers: Vec<Client> = (0..4).map(|_| gw.publisher(&seed_dsn("pub"))).collect();
    let (sent, peak) = peak_rss_during(&gw, || {
        std::thread::scope(|scope| {
            let floods: Vec<_> = publishers
                .iter()
                .map(|p| scope.spawn(|| flood(&p.stream, &set, 2_000 * VALUE)))
                .collect();
            floods.into_iter().map(|t| t.join().unwrap()).sum::<usize>()
        })
    });
    eprintln!(
        "4 publishers sent {} MiB into a stalled broker; RSS {before} KiB before, {peak} KiB then",
        sent >> 20
    );
    // 32 MiB in flight, 4 × (1 MiB held + one request), and librdkafka's
    // copy of what is in flight: well under 200 MiB, against the gigabytes
    // sent (it stops being read).
    assert!(
        peak.saturating_sub(before) < 200 * 1024,
        "RSS grew {} KiB",
        peak - before
    );
    assert!(sent < 1 << 30, "the gateway read {} MiB", sent >> 20);
}
