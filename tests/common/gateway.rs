//! The gateway binary as a child process with a config of its own: start,
//! addresses, signals, and its log (for tests about the log itself).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{brokers, Client, TestDb, WAIT};

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
    /// `[metrics] addr`; a free loopback port by default, "" for none.
    pub metrics_addr: &'a str,
    /// `cluster1`'s brokers; "" for the stack's.
    pub brokers: &'a str,
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
            // Tests observe the gateway through /metrics (Gateway::metric).
            metrics_addr: "127.0.0.1:0",
            brokers: "",
        }
    }

    pub fn toml(&self) -> String {
        // Fewer descriptors than the defaults need (about 15,000), so that
        // test gateways start under a modest RLIMIT_NOFILE; a test that
        // wants more says so.
        let mut server = self.server.to_owned();
        for (key, value) in [("max_connections", "2000"), ("max_subscribers", "100")] {
            if !server.contains(key) {
                server.push_str(&format!("\n{key} = {value}"));
            }
        }
        format!(
            "[server]\naddr = \"127.0.0.1:0\"\nshards = {}\n{}\n\n[auth]\nmysql_url = \"{}\"\nrefresh_interval = \"{}\"\n\n\
             [clusters.cluster1]\nbrokers = \"{}\"\n{}\n\n[consumer]\n{}\n\n[metrics]\naddr = \"{}\"\n\n{}\n",
            self.shards,
            server,
            self.db.url(),
            self.refresh_interval,
            if self.brokers.is_empty() {
                brokers()
            } else {
                self.brokers.to_owned()
            },
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

    /// The sum of every sample of `family` on /metrics whose labels include
    /// all of `labels` (e.g. `("databus_connections", &[])` counts open
    /// connections of every role); 0 when there is none.
    pub fn metric(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let (status, text) = http_get(self.metrics_addr(), "/metrics");
        assert_eq!(status, 200, "{text}");
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (sample, value) = line.rsplit_once(' ')?;
                let (name, rest) = sample.split_once('{').unwrap_or((sample, "}"));
                let wanted = name == family
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
                wanted.then(|| value.parse::<f64>().ok()).flatten()
            })
            .sum()
    }

    /// Waits (up to WAIT, looking every 50 ms: a counter announces nothing)
    /// until `metric(family, labels)` satisfies `want`; returns the value.
    pub fn wait_for_metric(
        &self,
        family: &str,
        labels: &[(&str, &str)],
        want: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.metric(family, labels);
            if want(value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{family}{labels:?} is still {value}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The address of the TLS listener (`[server.tls]` configured).
    pub fn tls_addr(&self) -> SocketAddr {
        let line = self
            .wait_for_log("TLS listener on ")
            .expect("[server.tls] is configured");
        address_after(&line, "TLS listener on ")
    }

    /// The gateway's resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
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

    /// A client that got a slot in `max_connections`, with `first` answered
    /// `reply`. A slot is released when its connection's task ends, just after
    /// the closed client saw its end of file: connections refused meanwhile
    /// are retried (every 50 ms, for at most WAIT; a slot never released
    /// fails the test).
    pub fn client_with_a_slot(&self, first: &[&str], reply: &str) -> Client {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut c = self.client();
            let got = c.call(first);
            if got == reply {
                return c;
            }
            assert_eq!(got, "-ERR max number of clients reached\r\n");
            assert!(Instant::now() < deadline, "no slot was released");
            std::thread::sleep(Duration::from_millis(50));
        }
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
