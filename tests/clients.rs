//! The client matrix: real Redis clients in their default settings, each
//! publishing and consuming through the gateway: redis-cli (the seed's
//! walkthrough), redis-py, the `redis` crate, ioredis, node-redis, go-redis and
//! redigo. Every test checks the replies the library returned, the records read
//! back from Kafka and the commit in the group's committed offsets. Also here:
//! keys placed by the gateway where sarama's hash partitioner (the original Go
//! service's) puts them.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    create_topic, dsn, encode, group_of, read_topic, wait_for_commit, Gateway, GatewayConfig,
    TestDb, WAIT,
};
use databus::message::MessagePb;
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
    run_bounded_with(command, None, WAIT * 2)
}

/// Runs `command` to its exit, with `input` on its stdin (none: /dev/null),
/// and kills it if it is still running after `limit`.
fn run_bounded_with(command: &mut Command, input: Option<Vec<u8>>, limit: Duration) -> Output {
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e} (scripts/setup.sh installs it)"));
    if let Some(input) = input {
        // From a thread of its own: the child may fill its stdout before it
        // has read all of its input.
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || stdin.write_all(&input));
    }
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match finished.recv_timeout(limit) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{command:?} did not finish within {limit:?}");
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
    report_of(script, &out)
}

/// The JSON report a client program printed, after checking that it
/// succeeded.
fn report_of(program: &str, out: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} failed:\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{program} printed no JSON report ({e}):\n{}\n{stderr}",
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
    // The connection sees itself in CLIENT LIST, as redis-cli prints it.
    let out = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--no-auth-warning",
            "-a",
            &full,
        ])
        .args(["client", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let expected = format!(
        " cmd=client resp=2 user=default role=pub key={user} group={} topic={topic} color= commands=2 shard=0 lag=",
        group_of(&topic)
    );
    assert!(listed.trim_end().ends_with(&expected), "{listed}");
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

/// The Go programs of the matrix (`tests/clients/go`: go-redis, redigo and
/// sarama's partitioner), built once per test run into the target directory.
/// The modules come from the module cache that scripts/setup.sh filled
/// (`go mod download`): GOPROXY=off, so that a test never fetches, and
/// GOTOOLCHAIN=local, so that a `go` older than go.mod's `go` line fails
/// saying so instead of fetching another toolchain. Go's build cache makes a rebuild quick; the
/// first build on an empty cache compiles sarama and go-redis and takes about
/// two minutes on 2 cores, hence its own, longer bound.
fn go_clients() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/go");
        let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-clients/go-clients");
        let out = run_bounded_with(
            Command::new("go")
                .current_dir(&source)
                .env("GOPROXY", "off")
                .env("GOTOOLCHAIN", "local")
                .args(["build", "-mod=readonly", "-buildvcs=false", "-o"])
                .arg(&binary)
                .arg("."),
            None,
            WAIT * 10,
        );
        assert!(
            out.status.success(),
            "go build in {} failed (scripts/setup.sh installs Go and downloads the modules):\n{}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        binary
    })
}

/// The bytes of a lowercase hex string.
fn unhex(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd hex {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|e| panic!("{hex:?}: {e}")))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the Go program for `library` (`go-redis` or `redigo`) against a fresh
/// gateway and checks its report: three SETs answered OK (two with the whole
/// AUTH string as the password, one with the username/password form), a wrong
/// secret surfacing as `bad_auth`, the three records back from `MGET json`
/// (byte for byte) in the topic's group and from `MGET pb` (field by field)
/// in a second group, each group's commit in Kafka (the last record for
/// json, the first for pb), and the records in the topic.
fn assert_go_run(library: &str, bad_auth: &str) {
    let program = go_clients();
    let db = TestDb::new();
    let topic = topic(&db);
    // A second group for the same topic, to consume the records again in pb.
    let pb_group = format!("{}_pb", group_of(&topic));
    db.add_grant(1, &pb_group, 1, &topic);
    let pb_dsn = format!("app_key1:app_secret1@{pb_group}/topic={topic}&role=sub");
    let gw = gateway(&db);
    let since = now_secs();
    let out = run_bounded(Command::new(program).args([
        library,
        &gw.addr.port().to_string(),
        &dsn(&topic, "pub"),
        &dsn(&topic, "sub"),
        &pb_dsn,
    ]));
    let report = report_of(library, &out);
    let (password, username) = (format!("{library}-password"), format!("{library}-username"));
    let records = [
        (password.as_str(), r#"{"n":1}"#),
        (password.as_str(), r#"{"n":2}"#),
        (username.as_str(), r#"{"n":3}"#),
    ];
    assert_eq!(report["published"], json!(["OK", "OK", "OK"]), "{report}");
    assert_eq!(report["bad_auth"], bad_auth, "{report}");

    let json_messages: Vec<String> = strings(&report["json"], "consumed")
        .iter()
        .map(|m| String::from_utf8(unhex(m)).unwrap())
        .collect();
    assert_json_messages(&json_messages, &topic, &records, since);
    assert_eq!(report["json"]["commit"], "OK", "{report}");
    wait_for_commit(&group_of(&topic), &topic, 3);

    let pb_messages = strings(&report["pb"], "consumed");
    assert_eq!(pb_messages.len(), records.len(), "{report}");
    for (offset, (m, (key, value))) in pb_messages.iter().zip(&records).enumerate() {
        let m = MessagePb::decode(unhex(m).as_slice()).unwrap();
        assert!((since - 1..=now_secs() + 1).contains(&m.timestamp), "{m:?}");
        assert_eq!(
            m,
            MessagePb {
                key: (*key).into(),
                value: value.as_bytes().to_vec(),
                topic: topic.clone(),
                partition: 0,
                offset: offset as i64,
                timestamp: m.timestamp,
                metadata: Default::default(),
            }
        );
    }
    assert_eq!(report["pb"]["commit"], "OK", "{report}");
    wait_for_commit(&pb_group, &topic, 1);

    assert_eq!(
        kafka_records(&topic, 3),
        records.map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

/// go-redis v9: `HELLO 3 AUTH ...`, then `CLIENT MAINT_NOTIFICATIONS` and
/// `CLIENT SETINFO` ×2.
///
/// A wrong secret surfaces as `EOF`, not as the WRONGPASS reason: go-redis
/// takes any error reply to `HELLO 3 AUTH` for a server without HELLO and
/// sends a plain `AUTH` on the same connection, which the gateway closed after
/// answering `-WRONGPASS` (protocol.md §2). It then retries the whole
/// connection three times (its default MaxRetries), the same string each time.
#[test]
fn go_redis_publishes_and_consumes() {
    assert_go_run("go-redis", "EOF");
}

/// redigo: `AUTH ...` in RESP2 while dialing, nothing else.
#[test]
fn redigo_publishes_and_consumes() {
    assert_go_run("redigo", "WRONGPASS invalid key, secret, group or topic");
}

/// The keys of the placement test: protocol.md's vectors (the empty key among
/// them), short ASCII keys, binary keys that are not UTF-8, Unicode keys and
/// long keys of 1 to 10 KB. Made by a fixed generator, so every run places
/// the same keys; all distinct.
fn placement_keys() -> Vec<Vec<u8>> {
    // xorshift64*: a fixed pseudo-random byte source, no crate needed.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut keys: Vec<Vec<u8>> = ["", "x", "aaaa", "user:42", "order-1001", "hello"]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
    for i in 100..200 {
        keys.push(format!("user:{i}").into_bytes());
    }
    for i in 0..40 {
        keys.push(format!("order-{}", 1000 + i * 37).into_bytes());
    }
    for k in [
        " ",
        "  ",
        "a b",
        "\r\n",
        "\"quoted\"",
        "\\",
        "*1\r\n$1\r\nx",
        "0",
        "-1",
    ] {
        keys.push(k.as_bytes().to_vec());
    }
    // Binary: single bytes at the edges, broken UTF-8, then random bytes with
    // a 0xff somewhere (never valid UTF-8).
    for k in [
        &[0x00][..],
        &[0xff],
        &[0x80],
        &[0x00, 0x00],
        &[0xc3],             // a 2-byte sequence cut short
        &[0xed, 0xa0, 0x80], // a UTF-16 surrogate
        &[0xf8, 0x88, 0x80, 0x80, 0x80],
        &[0xfe, 0xff],
    ] {
        keys.push(k.to_vec());
    }
    for i in 0..64 {
        let len = 3 + (next() % 46) as usize;
        let mut k: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        k[i % len] = 0xff;
        keys.push(k);
    }
    // Unicode: several scripts, combining marks, emoji, a BOM.
    for (i, k) in [
        "ключ",
        "鍵",
        "キー",
        "열쇠",
        "κλειδί",
        "مفتاح",
        "מפתח",
        "चाबी",
        "café",
        "cafe\u{301}",
        "🔑",
        "👩‍👩‍👧‍👦",
        "👍🏽",
        "\u{feff}bom",
        "\u{10ffff}",
        "Ω≈ç√∫",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "ß",
        "ǅ",
        "\u{200b}",
    ]
    .iter()
    .enumerate()
    {
        keys.push(k.as_bytes().to_vec());
        keys.push(format!("{k}:{i}").into_bytes());
    }
    // Long: 1 to 10 KB, in ASCII and in random bytes.
    for kb in 1..=10 {
        let len = kb * 1024;
        keys.push(
            (0..len)
                .map(|j| b"abcdefghijklmnopqrstuvwxyz0123456789"[(j * kb) % 36])
                .collect(),
        );
        keys.push((0..len + kb).map(|_| next() as u8).collect());
    }
    let distinct: HashSet<&Vec<u8>> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "placement keys repeat");
    keys
}

/// The partition sarama's hash partitioner (the original Go service's,
/// `sarama.NewHashPartitioner`) picks for each key, for each of `counts`
/// partitions: one row per key. The keys go to the Go program hex-encoded,
/// one per line, so that any byte gets through.
fn sarama_partitions(keys: &[Vec<u8>], counts: &[i32]) -> Vec<Vec<i32>> {
    let input: String = keys.iter().map(|k| hex(k) + "\n").collect();
    let out = run_bounded_with(
        Command::new(go_clients())
            .arg("sarama-partitions")
            .args(counts.iter().map(i32::to_string)),
        Some(input.into_bytes()),
        WAIT * 2,
    );
    assert!(
        out.status.success(),
        "sarama-partitions failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<i32>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split(' ').map(|p| p.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), keys.len(), "one line per key");
    for (key, row) in keys.iter().zip(&rows) {
        assert_eq!(row.len(), counts.len(), "key {}", hex(key));
        for (p, n) in row.iter().zip(counts) {
            assert!((0..*n).contains(p), "sarama put {} on {p} of {n}", hex(key));
        }
    }
    rows
}

/// The gateway places every key where sarama's hash partitioner does, for 3,
/// 8 and 12 partitions: a few hundred keys, among them the empty key, binary
/// keys that are not UTF-8, Unicode keys and keys of 1 to 10 KB, each published
/// with SET and read back from Kafka with the independent consumer. Sarama is
/// deterministic for all of them, the empty key included (see
/// tests/clients/go/sarama.go): it places at random only a message with no key
/// at all, which a SET cannot send.
#[test]
fn keys_land_where_sarama_puts_them() {
    const COUNTS: [i32; 3] = [3, 8, 12];
    let keys = placement_keys();
    let sarama = sarama_partitions(&keys, &COUNTS);
    // protocol.md §4's vectors, which the first six keys are: sarama agrees.
    assert_eq!(
        sarama[..6],
        [
            [0, 3, 3],
            [1, 1, 1],
            [1, 1, 1],
            [2, 2, 2],
            [0, 4, 0],
            [0, 3, 3]
        ]
    );

    let db = TestDb::new();
    // Grants first: the gateway loads them at start.
    let topics: Vec<String> = COUNTS
        .iter()
        .map(|&n| {
            let t = create_topic(n);
            db.grant_topic(&t, 2);
            t
        })
        .collect();
    let gw = Gateway::start(&db);
    for (column, (topic, &partitions)) in topics.iter().zip(&COUNTS).enumerate() {
        // Every SET pipelined (the value is the key's index), written from a
        // thread of its own while the replies are read.
        let mut c = gw.publisher(&dsn(topic, "pub"));
        let batch: Vec<u8> = keys
            .iter()
            .enumerate()
            .flat_map(|(i, k)| encode(&[b"SET", k, i.to_string().as_bytes()]))
            .collect();
        let mut writer = c.stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || writer.write_all(&batch).unwrap());
        for i in 0..keys.len() {
            assert_eq!(c.read_reply(), "+OK\r\n", "SET of key {i} to {topic}");
        }
        sender.join().unwrap();

        let records = read_topic(topic, partitions, keys.len());
        let mut seen = vec![false; keys.len()];
        let mut misplaced = Vec::new();
        for r in &records {
            let i: usize = std::str::from_utf8(r.value.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            assert!(!seen[i], "key {i} twice in {topic}");
            seen[i] = true;
            // The key exactly as sent: bytes, and the empty key empty, not null.
            assert_eq!(r.key.as_deref(), Some(keys[i].as_slice()), "key {i}");
            if r.partition != sarama[i][column] {
                misplaced.push(format!(
                    "key {i} ({} bytes, {}...): partition {} of {partitions}, sarama {}",
                    keys[i].len(),
                    hex(&keys[i][..keys[i].len().min(16)]),
                    r.partition,
                    sarama[i][column]
                ));
            }
        }
        assert!(
            misplaced.is_empty(),
            "{} of {} keys not where sarama puts them:\n{}",
            misplaced.len(),
            keys.len(),
            misplaced.join("\n")
        );
    }
}
