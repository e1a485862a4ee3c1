//! Shared test harness: the real stack (MariaDB and a Kafka broker started by
//! `scripts/test.sh`), a fresh database and fresh topics per test, the gateway as
//! a child process, a raw RESP client that asserts exact bytes, and an independent
//! rdkafka consumer to read back what the gateway produced.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// How long any single wait in a test may take before it fails. Generous: the
/// machine is small and tests run in parallel.
pub const WAIT: Duration = Duration::from_secs(30);

const STACK_HINT: &str =
    "the integration tests need MariaDB and a Kafka broker: run them with scripts/test.sh \
     (or `scripts/stack.sh start DIR` and source DIR/env)";

pub fn mysql_port() -> u16 {
    std::env::var("DATABUS_TEST_MYSQL_PORT")
        .expect(STACK_HINT)
        .parse()
        .expect("DATABUS_TEST_MYSQL_PORT is a port")
}

pub fn brokers() -> String {
    std::env::var("DATABUS_TEST_BROKERS").expect(STACK_HINT)
}

/// A name unique to this test process and call: tests run in parallel and share
/// one MariaDB and one broker.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------- MySQL

/// A database of its own for one test, with the schema and sample rows of
/// `config/schema.sql`.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let name = unique("databus_test");
        let schema = include_str!("../../config/schema.sql").replace("databus_db", &name);
        mysql(&schema);
        TestDb { name }
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/{}", mysql_port(), self.name)
    }

    pub fn exec(&self, sql: &str) {
        mysql(&format!("USE `{}`; {sql}", self.name));
    }

    /// Grants the seed's sample app (`app_key1`) `topic`, under the group
    /// [`group_of`] that topic.
    pub fn grant_topic(&self, topic: &str, operation: u8) {
        self.add_grant(1, &group_of(topic), operation, topic);
    }

    /// Adds an app.
    pub fn add_app(&self, id: u32, key: &str, secret: &str, cluster: &str) {
        self.exec(&format!(
            "INSERT INTO app (id, app_key, app_secret, cluster) VALUES ({id}, '{key}', '{secret}', '{cluster}')"
        ));
    }

    /// Grants an app's group a topic with the `operation` bits (1 sub, 2 pub).
    pub fn add_grant(&self, app_id: u32, group: &str, operation: u8, topic: &str) {
        self.exec(&format!(
            "INSERT INTO auth (app_id, group_name, operation, topic) VALUES ({app_id}, '{group}', {operation}, '{topic}')"
        ));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        mysql(&format!("DROP DATABASE IF EXISTS `{}`", self.name));
    }
}

fn mysql(sql: &str) {
    let mut child = Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            &format!("-P{}", mysql_port()),
            "-uroot",
            "--batch",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mariadb client is installed (scripts/setup.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "SQL failed: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- Kafka

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

/// Reads every record of `topic` from the beginning until `count` were read (or
/// fails after WAIT), then keeps reading briefly to catch duplicates.
pub fn read_topic(topic: &str, partitions: i32, count: usize) -> Vec<Record> {
    // After the expected count, a short extra read shows any duplicate.
    let mut extra_until: Option<Instant> = None;
    read_topic_until(topic, partitions, |records| {
        if let Some(until) = extra_until {
            return Instant::now() >= until;
        }
        if records.len() >= count {
            extra_until = Some(Instant::now() + Duration::from_millis(500));
        }
        false
    })
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
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    match committed.find_partition(topic, 0).map(|p| p.offset()) {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    }
}

/// Waits until `group`'s committed offset for partition 0 of `topic` is
/// `expected`. The gateway sends a client's commits to Kafka within a second
/// (protocol.md §5) and nothing announces that they arrived: asked every 100 ms,
/// for at most WAIT.
pub fn wait_for_commit(group: &str, topic: &str, expected: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let committed = committed_offset(group, topic);
        if committed == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{group} committed {committed:?} in {topic}, not {expected}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------- gateway

/// The gateway binary running with a config of its own. Killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<(Mutex<String>, Condvar)>,
    _dir: tempfile::TempDir,
}

pub struct GatewayConfig<'a> {
    pub db: &'a TestDb,
    /// Extra keys for `[server]`.
    pub server: &'a str,
    /// Extra sections appended verbatim.
    pub extra: &'a str,
    pub refresh_interval: &'a str,
    pub shards: usize,
    /// Extra keys for `[clusters.cluster1]`.
    pub cluster: &'a str,
    /// Keys for `[consumer]`.
    pub consumer: &'a str,
    /// `[metrics] addr`; empty (no endpoint) by default.
    pub metrics_addr: &'a str,
}

impl<'a> GatewayConfig<'a> {
    pub fn new(db: &'a TestDb) -> Self {
        GatewayConfig {
            db,
            server: "",
            extra: "",
            refresh_interval: "60s",
            shards: 1,
            cluster: "",
            // A short session: group joins take half of it on this broker.
            consumer: "session_timeout = \"6s\"",
            metrics_addr: "",
        }
    }

    pub fn toml(&self) -> String {
        format!(
            "[server]\naddr = \"127.0.0.1:0\"\nshards = {}\n{}\n\n[auth]\nmysql_url = \"{}\"\nrefresh_interval = \"{}\"\n\n\
             [clusters.cluster1]\nbrokers = \"{}\"\n{}\n\n[consumer]\n{}\n\n[metrics]\naddr = \"{}\"\n\n{}\n",
            self.shards,
            self.server,
            self.db.url(),
            self.refresh_interval,
            brokers(),
            self.cluster,
            self.consumer,
            self.metrics_addr,
            self.extra
        )
    }

    pub fn start(&self) -> Gateway {
        Gateway::start_with(&self.toml())
    }
}

impl Gateway {
    pub fn start(db: &TestDb) -> Gateway {
        GatewayConfig::new(db).start()
    }

    /// A gateway with extra `[server]` keys, e.g. `auth_timeout = "300ms"`.
    pub fn with_server(db: &TestDb, keys: &str) -> Gateway {
        GatewayConfig {
            server: keys,
            ..GatewayConfig::new(db)
        }
        .start()
    }

    pub fn start_with(toml: &str) -> Gateway {
        let (child, dir, log) = spawn_gateway(toml);
        let mut gateway = Gateway {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
            _dir: dir,
        };
        let line = gateway
            .wait_for_log("databus ready on ")
            .unwrap_or_else(|| panic!("gateway did not start:\n{}", gateway.log()));
        gateway.addr = address_after(&line, "databus ready on ");
        gateway
    }

    /// The address of the metrics endpoint (`metrics_addr` set).
    pub fn metrics_addr(&self) -> SocketAddr {
        let line = self
            .wait_for_log("metrics endpoint on http://")
            .expect("the metrics endpoint is configured");
        address_after(&line, "metrics endpoint on http://")
    }

    /// The address of the TLS listener (`[server.tls]` configured).
    pub fn tls_addr(&self) -> SocketAddr {
        let line = self
            .wait_for_log("TLS listener on ")
            .expect("[server.tls] is configured");
        address_after(&line, "TLS listener on ")
    }

    pub fn log(&self) -> String {
        self.log.0.lock().unwrap().clone()
    }

    /// Waits (up to WAIT) for a log line containing `needle` and returns it.
    pub fn wait_for_log(&self, needle: &str) -> Option<String> {
        self.wait_for_log_count(needle, 1)
    }

    /// Waits (up to WAIT) until `needle` appeared `count` times in the log.
    pub fn wait_for_log_count(&self, needle: &str, count: usize) -> Option<String> {
        let (lock, changed) = &*self.log;
        let deadline = Instant::now() + WAIT;
        let mut log = lock.lock().unwrap();
        loop {
            let hits: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
            if hits.len() >= count {
                return hits.last().map(|l| l.to_string());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            log = changed.wait_timeout(log, left).unwrap().0;
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn subscriber(&self, dsn: &str) -> Client {
        self.publisher(dsn)
    }

    pub fn publisher(&self, dsn: &str) -> Client {
        let mut c = self.client();
        c.auth_ok(dsn);
        c
    }

    /// The gateway's process id (to read its /proc entries).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies at once, with no chance to flush or answer.
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill().unwrap();
        self.child.wait().unwrap()
    }

    /// SIGTERM, then the exit status (bounded by WAIT).
    pub fn terminate(&mut self) -> ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gateway ignored SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // A failing test shows what the gateway was doing.
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(300)..];
            eprintln!(
                "--- gateway log (last {} lines) ---\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `ip:port` that follows `marker` in a log line, text or JSON.
fn address_after(line: &str, marker: &str) -> SocketAddr {
    let rest = line.split(marker).nth(1).unwrap();
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || ".:[]".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().unwrap()
}

/// A GET over HTTP/1.1: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

fn unsafe_kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

type SharedLog = Arc<(Mutex<String>, Condvar)>;

fn spawn_gateway(toml: &str) -> (Child, tempfile::TempDir, SharedLog) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("databus.toml");
    std::fs::write(&path, toml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_databus"))
        .arg(format!("-conf={}", path.display()))
        // DATABUS_TEST_LOG replaces the filter when debugging a test, e.g.
        // `info,databus=debug,librdkafka=debug` (with `debug = "cgrp,fetch"`
        // in DATABUS_TEST_KAFKA for the subscribe tests).
        .env(
            "RUST_LOG",
            std::env::var("DATABUS_TEST_LOG")
                .unwrap_or_else(|_| "info,databus=debug,librdkafka=warn,rdkafka=warn".into()),
        )
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start databus");
    let log: SharedLog = Arc::new((Mutex::new(String::new()), Condvar::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let line = strip_ansi(&line);
            let (lock, changed) = &*sink;
            let mut log = lock.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
            changed.notify_all();
        }
    });
    (child, dir, log)
}

/// Runs the binary with a config and returns its exit status and output, for
/// start-up failures.
pub fn run_gateway_to_exit(toml: &str) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("databus.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_databus"))
        .arg("--config")
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status, strip_ansi(&text))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------- raw client

/// A client that speaks raw RESP and asserts exact replies.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send_command(&mut self, args: &[&[u8]]) {
        let bytes = encode(args);
        self.send(&bytes);
    }

    /// Sends a command and returns its whole reply as raw RESP text.
    pub fn call(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send_command(&args);
        self.read_reply()
    }

    pub fn auth_ok(&mut self, dsn: &str) {
        assert_eq!(self.call(&["AUTH", dsn]), "+OK\r\n");
    }

    /// Reads one complete reply (any type, nested arrays included) as raw text.
    pub fn read_reply(&mut self) -> String {
        let mut out = String::new();
        self.read_into(&mut out);
        out
    }

    /// Like `read_reply`, but None when the server closed the connection.
    pub fn try_read_reply(&mut self) -> Option<String> {
        let buffered = self
            .reader
            .fill_buf()
            .map(|b| !b.is_empty())
            .unwrap_or(false);
        buffered.then(|| self.read_reply())
    }

    fn read_into(&mut self, out: &mut String) {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("reply within WAIT");
        assert!(
            n > 0,
            "connection closed while a reply was expected (so far: {out:?})"
        );
        out.push_str(&line);
        let body = line.trim_end();
        match body.as_bytes().first() {
            Some(b'$') => {
                let len: i64 = body[1..].parse().unwrap();
                if len >= 0 {
                    let mut data = vec![0; len as usize + 2];
                    self.reader.read_exact(&mut data).unwrap();
                    out.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Some(b'*') => {
                let len: i64 = body[1..].parse().unwrap();
                for _ in 0..len.max(0) {
                    self.read_into(out);
                }
            }
            // RESP3 map: key and value per entry.
            Some(b'%') => {
                let len: i64 = body[1..].parse().unwrap();
                for _ in 0..len.max(0) * 2 {
                    self.read_into(out);
                }
            }
            _ => {}
        }
    }

    /// Sends `MGET [encoding]` and returns the bulk strings of the array reply,
    /// byte for byte.
    pub fn mget(&mut self, encoding: &str) -> Vec<Vec<u8>> {
        self.try_mget(encoding)
            .unwrap_or_else(|line| panic!("MGET answered {line:?}"))
    }

    /// Like [`Client::mget`], but a reply that is not an array comes back as
    /// `Err(first line)`.
    pub fn try_mget(&mut self, encoding: &str) -> Result<Vec<Vec<u8>>, String> {
        self.send_command(&[b"MGET", encoding.as_bytes()]);
        self.read_mget()
    }

    /// Reads the reply of an MGET sent earlier, like [`Client::try_mget`].
    pub fn read_mget(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let mut header = String::new();
        self.reader
            .read_line(&mut header)
            .expect("MGET reply within WAIT");
        if !header.starts_with('*') {
            return Err(header);
        }
        let count: usize = header[1..].trim_end().parse().unwrap();
        Ok((0..count)
            .map(|_| {
                let mut line = String::new();
                self.reader.read_line(&mut line).unwrap();
                assert!(line.starts_with('$'), "{line:?}");
                let len: usize = line[1..].trim_end().parse().unwrap();
                let mut data = vec![0; len + 2];
                self.reader.read_exact(&mut data).unwrap();
                data.truncate(len);
                data
            })
            .collect())
    }

    /// Asserts that the server closes the connection (EOF) with nothing more sent.
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "unexpected bytes before close: {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The group [`TestDb::grant_topic`] grants a topic to. One group per topic,
/// because a consumer group is the broker's, not the test database's: tests
/// that shared one group name across their topics all joined the same group
/// and kept rebalancing each other's members.
pub fn group_of(topic: &str) -> String {
    format!("g_{topic}")
}

/// The seed's own sample grant: `app_key1`, group `group_name1`, topic
/// `test156` (config/schema.sql), with `role`.
pub fn seed_dsn(role: &str) -> String {
    format!("app_key1:app_secret1@group_name1/topic=test156&role={role}")
}

/// The seed's sample credentials for `topic` (granted by
/// [`TestDb::grant_topic`]) with `role`.
pub fn dsn(topic: &str, role: &str) -> String {
    format!(
        "app_key1:app_secret1@{}/topic={topic}&role={role}",
        group_of(topic)
    )
}
