//! The client matrix: real Redis clients in their default settings, each
//! publishing and consuming through the gateway: redis-cli (the seed's
//! walkthrough), redis-py, the `redis` crate, ioredis and node-redis. Every
//! test checks the replies the library returned, the records read back from
//! Kafka and the commit in the group's committed offsets.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::{
    create_topic, dsn, group_of, read_topic, wait_for_commit, Gateway, GatewayConfig, TestDb, WAIT,
};
use databus::kafka::message::MessagePb;
use prost::Message;
use serde_json::{json, Value};

/// A gateway whose new consumer groups start at the earliest offset, so that a
/// subscriber sees what was published before it joined. The long poll (10 s)
/// outlasts a group join on this broker (about 3 s), so that a single MGET
/// (all redis-cli can do) returns what is there.
fn gateway(db: &TestDb) -> Gateway {
    GatewayConfig {
        cluster: "auto_offset_reset = \"earliest\"",
        consumer: "session_timeout = \"6s\"\npoll_timeout = \"10s\"\nbatch_window = \"100ms\"",
        ..GatewayConfig::new(db)
    }
    .start()
}

/// A fresh one-partition topic, granted to publish and subscribe.
fn topic(db: &TestDb) -> String {
    let topic = create_topic(1);
    db.grant_topic(&topic, 3);
    topic
}

/// The (key, value) pairs of the first `count` records of `topic` in Kafka.
fn kafka_records(topic: &str, count: usize) -> Vec<(String, String)> {
    read_topic(topic, 1, count)
        .into_iter()
        .map(|r| {
            (
                String::from_utf8(r.key.unwrap()).unwrap(),
                String::from_utf8(r.value.unwrap()).unwrap(),
            )
        })
        .collect()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Asserts that `consumed`, the MGET json strings as a client library returned
/// them, are exactly `records` (key, JSON value) at offsets 0, 1, ... of
/// partition 0 of `topic`, byte for byte (protocol.md §5), with a timestamp
/// taken during the test (`since`, in seconds).
fn assert_json_messages(consumed: &[String], topic: &str, records: &[(&str, &str)], since: i64) {
    assert_eq!(consumed.len(), records.len(), "{consumed:#?}");
    for (offset, (raw, (key, value))) in consumed.iter().zip(records).enumerate() {
        let timestamp = serde_json::from_str::<Value>(raw).unwrap()["timestamp"]
            .as_i64()
            .unwrap_or_else(|| panic!("no timestamp in {raw}"));
        assert!(
            (since - 1..=now_secs() + 1).contains(&timestamp),
            "timestamp {timestamp} (seconds) not during the test, in {raw}"
        );
        assert_eq!(
            raw,
            &format!(
                r#"{{"key":"{key}","value":{value},"topic":"{topic}","partition":0,"offset":{offset},"timestamp":{timestamp},"metadata":null}}"#
            )
        );
    }
}

/// Runs `command` to its exit, at most 2 × WAIT: the client scripts bound their
/// own waits, this only keeps a hung client from hanging the test.
fn run_bounded(command: &mut Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e} (scripts/setup.sh installs it)"));
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match finished.recv_timeout(WAIT * 2) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{command:?} did not finish within {:?}", WAIT * 2);
        }
    }
}

/// Runs a client script (`tests/clients/<script>`) with `interpreter` against
/// the gateway and returns the JSON report it prints.
fn run_script(interpreter: &str, script: &str, gw: &Gateway, topic: &str, extra: &[&str]) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let out = run_bounded(
        Command::new(interpreter)
            .arg(&path)
            .args([
                &gw.addr.port().to_string(),
                &dsn(topic, "pub"),
                &dsn(topic, "sub"),
            ])
            .args(extra),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON report ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The strings of a JSON array in a script's report.
fn strings(report: &Value, field: &str) -> Vec<String> {
    report[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {report}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Runs a Node.js script (`tests/clients/node/<script>`) with the library
/// `package` (its npm name, or the alias of another major in package.json) and
/// checks the run: three SETs answered OK, the three records back from MGET
/// json, the commit OK and in Kafka, the records in the topic.
fn assert_node_run(script: &str, package: &str) {
    let node_modules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/node/node_modules"
    );
    assert!(
        Path::new(node_modules).is_dir(),
        "{node_modules} is missing: run scripts/setup.sh (npm ci in tests/clients/node)"
    );
    let db = TestDb::new();
    let topic = topic(&db);
    let gw = gateway(&db);
    let since = now_secs();
    let report = run_script("node", &format!("node/{script}"), &gw, &topic, &[package]);
    let (password, username) = (format!("{package}-password"), format!("{package}-username"));
    let records = [
        (password.as_str(), r#"{"n":1}"#),
        (password.as_str(), r#"{"n":2}"#),
        (username.as_str(), r#"{"n":3}"#),
    ];
    assert_eq!(report["published"], json!(["OK", "OK", "OK"]), "{report}");
    assert_json_messages(&strings(&report, "consumed"), &topic, &records, since);
    assert_eq!(report["commit"], "OK", "{report}");
    wait_for_commit(&group_of(&topic), &topic, 3);
    assert_eq!(
        kafka_records(&topic, 3),
        records.map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

/// redis-cli fed `script` on stdin, as typed at its prompt; its output.
fn redis_cli(gw: &Gateway, script: &str) -> Vec<u8> {
    let mut cli = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &gw.addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli is installed (scripts/setup.sh)");
    cli.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = cli.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn redis_cli_runs_the_seed_walkthrough() {
    let db = TestDb::new();
    let topic = topic(&db);
    let gw = gateway(&db);
    let since = now_secs();
    // As typed at the redis-cli prompt in the seed's walkthrough: publish...
    let out = redis_cli(
        &gw,
        &format!("auth {}\nping\nset x '\"xx\"'\n", dsn(&topic, "pub")),
    );
    assert_eq!(String::from_utf8_lossy(&out), "OK\nPONG\nOK\n");
    assert_eq!(
        kafka_records(&topic, 1),
        [("x".to_owned(), "\"xx\"".to_owned())]
    );

    // ...then consume in protobuf and commit (`set <partition> <offset>`).
    // Piped, redis-cli prints replies raw, one per line: the one message's
    // protobuf bytes sit between the two OKs.
    let out = redis_cli(
        &gw,
        &format!("auth {}\nmget pb\nset 0 0\n", dsn(&topic, "sub")),
    );
    let message = out
        .strip_prefix(b"OK\n")
        .and_then(|rest| rest.strip_suffix(b"\nOK\n"))
        .unwrap_or_else(|| panic!("{:?}", String::from_utf8_lossy(&out)));
    let m = MessagePb::decode(message).unwrap();
    assert!((since - 1..=now_secs() + 1).contains(&m.timestamp), "{m:?}");
    assert_eq!(
        m,
        MessagePb {
            key: "x".into(),
            value: b"\"xx\"".to_vec(),
            topic: topic.clone(),
            partition: 0,
            offset: 0,
            timestamp: m.timestamp,
            metadata: Default::default(),
        }
    );
    wait_for_commit(&group_of(&topic), &topic, 1);
}

#[test]
fn redis_cli_with_dash_a_and_user() {
    let db = TestDb::new();
    let topic = topic(&db);
    let gw = Gateway::start(&db);
    let port = gw.addr.port().to_string();
    let full = dsn(&topic, "pub");
    let (user, rest) = full.split_once(':').unwrap();
    for args in [
        vec!["-a", full.as_str()],
        vec!["--user", user, "--pass", rest],
    ] {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port, "--no-auth-warning"])
            .args(&args)
            .args(["set", "k", "\"v\""])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n", "{args:?}");
    }
    let v = ("k".to_owned(), "\"v\"".to_owned());
    assert_eq!(kafka_records(&topic, 2), [v.clone(), v]);
}

#[test]
fn redis_py_publishes_and_consumes() {
    let db = TestDb::new();
    let topic = topic(&db);
    let gw = gateway(&db);
    let since = now_secs();
    let report = run_script("python3", "redis_py_pubsub.py", &gw, &topic, &[]);
    let records = [
        ("redis-py-password", r#"{"n":1}"#),
        ("redis-py-username", r#"{"n":2}"#),
        ("redis-py-resp2", r#"{"n":3}"#),
    ];
    assert_eq!(report["ping"], true, "{report}");
    assert_eq!(report["published"], json!([true, true, true]), "{report}");
    assert_eq!(
        report["bad_auth"], "invalid key, secret, group or topic",
        "{report}"
    );
    assert_json_messages(&strings(&report, "consumed"), &topic, &records, since);
    assert_eq!(report["commit"], true, "{report}");
    wait_for_commit(&group_of(&topic), &topic, 3);
    assert_eq!(
        kafka_records(&topic, 3),
        records.map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

#[test]
fn the_redis_crate_publishes_and_consumes() {
    let db = TestDb::new();
    let topic = topic(&db);
    let gw = gateway(&db);
    let since = now_secs();
    let full = dsn(&topic, "pub");
    let (user, rest) = full.split_once(':').unwrap();
    let connect = |username: Option<&str>, password: &str| {
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp("127.0.0.1".into(), gw.addr.port()),
            redis: redis::RedisConnectionInfo {
                username: username.map(Into::into),
                password: Some(password.into()),
                ..Default::default()
            },
        };
        redis::Client::open(info).unwrap().get_connection()
    };
    let mut conn = connect(None, &full).unwrap();
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");
    let () = redis::cmd("SET")
        .arg("rs")
        .arg(r#"{"n":1}"#)
        .query(&mut conn)
        .unwrap();
    let mut conn = connect(Some(user), rest).unwrap();
    let () = redis::cmd("SET")
        .arg("rs")
        .arg(r#"{"n":2}"#)
        .query(&mut conn)
        .unwrap();
    let err = connect(None, &full.replace("app_secret1", "nope"))
        .err()
        .unwrap();
    // Before the gateway answered commands pipelined behind a failed AUTH, this
    // was "unexpected end of file".
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
    let records = [("rs", r#"{"n":1}"#), ("rs", r#"{"n":2}"#)];
    assert_eq!(
        kafka_records(&topic, 2),
        records.map(|(k, v)| (k.to_owned(), v.to_owned()))
    );

    let mut sub = connect(None, &dsn(&topic, "sub")).unwrap();
    let mut consumed: Vec<String> = Vec::new();
    // Each MGET is a long poll of at most poll_timeout; WAIT bounds the loop.
    let deadline = Instant::now() + WAIT;
    while consumed.len() < records.len() && Instant::now() < deadline {
        let batch: Vec<String> = redis::cmd("MGET").arg("json").query(&mut sub).unwrap();
        consumed.extend(batch);
    }
    assert_json_messages(&consumed, &topic, &records, since);
    let () = redis::cmd("SET").arg("0").arg("1").query(&mut sub).unwrap();
    wait_for_commit(&group_of(&topic), &topic, 2);
}

/// ioredis 6: `HELLO 3 AUTH ...`, then `INFO` as its ready check.
#[test]
fn ioredis_publishes_and_consumes() {
    assert_node_run("ioredis_pubsub.js", "ioredis");
}

/// ioredis 5: `AUTH ...` in RESP2, then `INFO` as its ready check.
#[test]
fn ioredis_5_publishes_and_consumes() {
    assert_node_run("ioredis_pubsub.js", "ioredis5");
}

/// node-redis 6: `HELLO 3 AUTH ...`.
#[test]
fn node_redis_publishes_and_consumes() {
    assert_node_run("node_redis_pubsub.js", "redis");
}

/// node-redis 5: `AUTH ...` in RESP2.
#[test]
fn node_redis_5_publishes_and_consumes() {
    assert_node_run("node_redis_pubsub.js", "redis5");
}
