//! Load generator for databus's end-to-end benchmark.
//!
//! A `harness = false` bench target, so `cargo bench --bench loadgen -- <mode> ...`
//! builds it with optimizations and runs it. Each mode drives one side of a
//! comparison and ends by printing one machine-readable line
//! (`result mode=<mode> key=value ...`) that `scripts/bench.sh` collects into
//! its side-by-side table of gateway versus direct Kafka (and versus
//! redis-server for PING):
//!
//! ```text
//! produce-gateway --addr A --dsn DSN [-c 50] [-p 64] [-s 100] [-t 20] [--rate R]
//!     C connections, each keeping P pipelined `SET key value` in flight (S-byte
//!     values) for T seconds; latency is per SET, send → its `+OK`.
//! produce-direct  --brokers B --topic T [-c 50] [-p 64] [-s 100] [-t 20] [--rate R]
//!     the baseline: an rdkafka FutureProducer with the gateway's producer
//!     settings, C tasks each keeping P sends in flight.
//! ping-gateway    --addr A [--dsn DSN] [-c 50] [-p 64] [-t 10]
//!     pipelined PING. It is answered before AUTH, but the gateway closes
//!     connections not authenticated within `auth_timeout` (5 s): give a DSN
//!     for longer runs (also works against redis-server without one).
//! consume-gateway --addr A --dsn DSN(role=sub) [-k 4] [-m 100000] [--timeout 60]
//!     K subscriber connections of one group drain M records with `MGET pb`,
//!     committing the last offset per partition of each batch (pipelined with
//!     the next MGET).
//! consume-direct  --brokers B --topic T [-k 4] [-m 100000] [--timeout 60]
//!     K rdkafka consumers of one new group (manual commit, earliest) drain M.
//! preload         --brokers B --topic T [-m 100000] [-s 100]
//!     produces M records directly, for the consume modes.
//! idle-conns      --addr A [--dsn DSN] [-c 10000] [-t 20]
//!     opens C connections (authenticated when given a DSN), prints
//!     `ready conns=C` once all are open, holds them idle for T seconds; the
//!     caller reads the server's RSS meanwhile.
//! mock-broker     --topic T1,T2,... [--partitions 6]
//!     the `--broker mock` side: a librdkafka MockCluster with those topics.
//!     Prints `bootstrap=<servers>` and serves until killed.
//! ```
//!
//! `--rate R` paces the produce modes to R messages/s in total (evenly spread
//! over the connections), for latency at a fixed rate. Every wait is bounded:
//! produce modes give in-flight requests 30 s after T, consume modes stop at
//! `--timeout` seconds. Unknown `--bench` (added by `cargo bench`) is ignored.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use databus::kafka::message::MessagePb;
use hdrhistogram::Histogram;
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, BoxError>;

/// How long in-flight requests may take after the measured period ends.
const DRAIN: Duration = Duration::from_secs(30);
/// Bound for connecting, AUTH and the warm-up request.
const SETUP: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- arguments

#[derive(Clone, Debug)]
struct Args {
    mode: String,
    addr: String,
    dsn: String,
    brokers: String,
    topic: String,
    conns: usize,
    pipeline: usize,
    size: usize,
    secs: f64,
    rate: Option<f64>,
    consumers: usize,
    messages: u64,
    timeout: f64,
    partitions: i32,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen <produce-gateway|produce-direct|ping-gateway|consume-gateway|consume-direct|preload\
         |idle-conns|mock-broker> [--addr A] [--dsn DSN] [--brokers B] [--topic T] [-c C] [-p P] [-s S] \
         [-t SECS] [--rate R] [-k K] [-m M] [--timeout SECS] [--partitions N]\n(see the module doc of benches/loadgen.rs)"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        mode: String::new(),
        addr: String::new(),
        dsn: String::new(),
        brokers: String::new(),
        topic: String::new(),
        conns: 50,
        pipeline: 64,
        size: 100,
        secs: 20.0,
        rate: None,
        consumers: 4,
        messages: 100_000,
        timeout: 60.0,
        partitions: 6,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value");
                usage()
            })
        };
        fn num<T: std::str::FromStr>(name: &str, v: String) -> T {
            v.parse().unwrap_or_else(|_| {
                eprintln!("{name}: not a number: {v}");
                usage()
            })
        }
        match arg.as_str() {
            "--bench" => {}
            "--addr" => args.addr = value("--addr"),
            "--dsn" => args.dsn = value("--dsn"),
            "--brokers" => args.brokers = value("--brokers"),
            "--topic" => args.topic = value("--topic"),
            "-c" => args.conns = num("-c", value("-c")),
            "-p" => args.pipeline = num("-p", value("-p")),
            "-s" => args.size = num("-s", value("-s")),
            "-t" => args.secs = num("-t", value("-t")),
            "--rate" => args.rate = Some(num("--rate", value("--rate"))),
            "-k" => args.consumers = num("-k", value("-k")),
            "-m" => args.messages = num("-m", value("-m")),
            "--timeout" => args.timeout = num("--timeout", value("--timeout")),
            "--partitions" => args.partitions = num("--partitions", value("--partitions")),
            "-h" | "--help" => usage(),
            s if s.starts_with('-') => {
                eprintln!("unknown option {s}");
                usage()
            }
            s if args.mode.is_empty() => args.mode = s.to_owned(),
            s => {
                eprintln!("unexpected argument {s}");
                usage()
            }
        }
    }
    let need = |v: &str, name: &str| {
        if v.is_empty() {
            eprintln!("{} needs {name}", args.mode);
            usage()
        }
    };
    match args.mode.as_str() {
        "produce-gateway" | "consume-gateway" => {
            need(&args.addr, "--addr");
            need(&args.dsn, "--dsn");
        }
        "ping-gateway" | "idle-conns" => need(&args.addr, "--addr"),
        "mock-broker" => need(&args.topic, "--topic"),
        "produce-direct" | "consume-direct" | "preload" => {
            need(&args.brokers, "--brokers");
            need(&args.topic, "--topic");
        }
        "" => usage(),
        m => {
            eprintln!("unknown mode {m}");
            usage()
        }
    }
    if args.conns == 0 || args.pipeline == 0 || args.consumers == 0 || args.secs <= 0.0 {
        eprintln!("-c, -p, -k and -t must be positive");
        usage()
    }
    args
}

fn main() {
    // `cargo test --all-targets` (CI) runs every bench binary with no mode (or
    // just `--bench`): building and starting is all there is to check then.
    if std::env::args()
        .skip(1)
        .all(|a| a == "--bench" || a == "--test")
    {
        eprintln!("loadgen: no mode given; scripts/bench.sh runs the modes");
        return;
    }
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        match args.mode.as_str() {
            "produce-gateway" => pipelined(&args, Command::Set).await,
            "ping-gateway" => pipelined(&args, Command::Ping).await,
            "produce-direct" => produce_direct(&args).await,
            "consume-gateway" => consume_gateway(&args).await,
            "consume-direct" => consume_direct(&args).await,
            "preload" => preload(&args).await,
            "idle-conns" => idle_conns(&args).await,
            "mock-broker" => mock_broker(&args).await,
            _ => unreachable!("checked by parse_args"),
        }
    });
    // Exit at once: closing rdkafka clients and connections stuck in a long
    // poll would only add unbounded waits after the result is known.
    match outcome {
        Ok(line) => {
            println!("{line}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("loadgen {}: {e}", args.mode);
            std::process::exit(1)
        }
    }
}

// ---------------------------------------------------------------- reporting

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

/// What one connection (or producer task) measured.
struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    hist: Histogram<u64>,
    finished: Instant,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            ok: 0,
            errors: 0,
            first_error: None,
            hist: new_histogram(),
            finished: Instant::now(),
        }
    }

    fn error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }

    fn ok_after(&mut self, sent: Instant, now: Instant) {
        self.ok += 1;
        let us = now.saturating_duration_since(sent).as_micros() as u64;
        self.hist.saturating_record(us.max(1));
    }
}

/// Sums the tallies and formats the result line of a throughput/latency mode.
fn report(mode: &str, start: Instant, tallies: Vec<Tally>, size: usize, extra: &str) -> String {
    let mut hist = new_histogram();
    let (mut ok, mut errors, mut first_error, mut end) = (0, 0, None, start);
    for t in tallies {
        ok += t.ok;
        errors += t.errors;
        if first_error.is_none() {
            first_error = t.first_error;
        }
        end = end.max(t.finished);
        hist.add(&t.hist).expect("same histogram bounds");
    }
    if let Some(e) = &first_error {
        eprintln!("loadgen {mode}: first error: {e}");
    }
    let secs = end.duration_since(start).as_secs_f64().max(1e-9);
    let rate = ok as f64 / secs;
    format!(
        "result mode={mode} msgs={ok} secs={secs:.2} msgs_per_s={rate:.0} mb_per_s={:.2} \
         p50_us={} p99_us={} p999_us={} max_us={} errors={errors}{extra}",
        rate * size as f64 / 1e6,
        hist.value_at_quantile(0.50),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max(),
    )
}

/// Send instant of the next message for a paced sender (`--rate`): `interval`
/// apart per sender, senders staggered across the first interval.
struct Pacer {
    next: Instant,
    interval: Duration,
}

impl Pacer {
    fn new(args: &Args, start: Instant, index: usize, senders: usize) -> Option<Pacer> {
        let rate = args.rate.filter(|r| *r > 0.0)?;
        let interval = Duration::from_secs_f64(senders as f64 / rate);
        Some(Pacer {
            next: start + interval.mul_f64(index as f64 / senders as f64),
            interval,
        })
    }

    /// True (and advances) if a message is due at `now`.
    fn due(pacer: &mut Option<Pacer>, now: Instant) -> bool {
        match pacer {
            None => true,
            Some(p) if p.next <= now => {
                p.next += p.interval;
                true
            }
            Some(_) => false,
        }
    }
}

// ---------------------------------------------------------------- RESP

/// Length of the first complete RESP reply in `buf`, `None` if incomplete.
fn reply_len(buf: &[u8]) -> std::result::Result<Option<usize>, String> {
    let Some(cr) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let after = cr + 2;
    let number = || -> std::result::Result<i64, String> {
        std::str::from_utf8(&buf[1..cr])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad RESP length line {:?}", lossy(&buf[..cr])))
    };
    match buf.first() {
        Some(b'+' | b'-' | b':' | b'_' | b'#' | b',') => Ok(Some(after)),
        Some(b'$') => {
            let n = number()?;
            if n < 0 {
                return Ok(Some(after));
            }
            let end = after + n as usize + 2;
            Ok((buf.len() >= end).then_some(end))
        }
        Some(kind @ (b'*' | b'%' | b'~')) => {
            let n = number()?.max(0) * if *kind == b'%' { 2 } else { 1 };
            let mut pos = after;
            for _ in 0..n {
                match reply_len(&buf[pos..])? {
                    Some(len) => pos += len,
                    None => return Ok(None),
                }
            }
            Ok(Some(pos))
        }
        _ => Err(format!("bad RESP reply {:?}", lossy(&buf[..cr]))),
    }
}

/// The bulk strings of an array reply (`-ERR ...` and the like as `Err`).
fn array_items(reply: &[u8]) -> std::result::Result<Vec<&[u8]>, String> {
    if reply.first() != Some(&b'*') {
        return Err(lossy(reply).trim_end().to_owned());
    }
    let cr = reply.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
    let n: usize = lossy(&reply[1..cr]).parse().unwrap_or(0);
    let mut pos = cr + 2;
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        let rest = &reply[pos..];
        let cr = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated array")?;
        if rest.first() != Some(&b'$') {
            return Err(format!("array item {:?}", lossy(&rest[..cr])));
        }
        let len: usize = lossy(&rest[1..cr]).parse().map_err(|_| "bad bulk length")?;
        items.push(&rest[cr + 2..cr + 2 + len]);
        pos += cr + 2 + len + 2;
    }
    Ok(items)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads one complete reply (bounded by `deadline`), leaving what follows it
/// in `rbuf`.
async fn read_reply(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    deadline: tokio::time::Instant,
) -> Result<BytesMut> {
    loop {
        if let Some(n) = reply_len(rbuf)? {
            return Ok(rbuf.split_to(n));
        }
        let n = timeout_at(deadline, stream.read_buf(rbuf))
            .await
            .map_err(|_| "timed out waiting for a reply")??;
        if n == 0 {
            return Err("connection closed by the gateway".into());
        }
    }
}

/// Connects and, with a DSN, authenticates.
async fn connect(addr: &str, dsn: Option<&str>) -> Result<(TcpStream, BytesMut)> {
    let deadline = tokio::time::Instant::now() + SETUP;
    let mut stream = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timeout"))??;
    stream.set_nodelay(true)?;
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    if let Some(dsn) = dsn {
        let mut cmd = Vec::new();
        encode(&mut cmd, &[b"AUTH", dsn.as_bytes()]);
        stream.write_all(&cmd).await?;
        let reply = read_reply(&mut stream, &mut rbuf, deadline).await?;
        if &reply[..] != b"+OK\r\n" {
            return Err(format!("AUTH answered {:?}", lossy(&reply)).into());
        }
    }
    Ok((stream, rbuf))
}

// ---------------------------------------------------------------- pipelined gateway modes

#[derive(Clone, Copy)]
enum Command {
    Set,
    Ping,
}

impl Command {
    fn encode(self, out: &mut Vec<u8>, conn: usize, seq: u64, value: &[u8]) {
        match self {
            Command::Set => {
                let key = format!("k{conn}:{seq}");
                encode(out, &[b"SET", key.as_bytes(), value]);
            }
            Command::Ping => out.extend_from_slice(b"*1\r\n$4\r\nPING\r\n"),
        }
    }

    fn expected(self) -> &'static [u8] {
        match self {
            Command::Set => b"+OK\r\n",
            Command::Ping => b"+PONG\r\n",
        }
    }
}

/// produce-gateway and ping-gateway.
async fn pipelined(args: &Args, command: Command) -> Result<String> {
    let value = vec![b'x'; args.size];
    // PING needs no AUTH, but the gateway closes unauthenticated connections
    // after `auth_timeout` (5 s): ping-gateway authenticates when given --dsn.
    let dsn = (!args.dsn.is_empty()).then_some(args.dsn.as_str());
    // Connect, authenticate and warm up (one request each, so that the
    // gateway's producer exists and knows the topic) before the clock starts.
    let mut setups = Vec::new();
    for i in 0..args.conns {
        let (addr, dsn, value) = (args.addr.clone(), dsn.map(str::to_owned), value.clone());
        setups.push(tokio::spawn(async move {
            let (mut stream, mut rbuf) = connect(&addr, dsn.as_deref()).await?;
            let mut cmd = Vec::new();
            command.encode(&mut cmd, i, u64::MAX, &value);
            stream.write_all(&cmd).await?;
            let deadline = tokio::time::Instant::now() + SETUP;
            let reply = read_reply(&mut stream, &mut rbuf, deadline).await?;
            if &reply[..] != command.expected() {
                return Err(format!("warm-up answered {:?}", lossy(&reply)).into());
            }
            Ok::<_, BoxError>((stream, rbuf))
        }));
    }
    let mut conns = Vec::new();
    for s in setups {
        conns.push(s.await??);
    }

    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.secs);
    let value: Arc<[u8]> = value.into();
    let mut tasks = Vec::new();
    for (i, (stream, rbuf)) in conns.into_iter().enumerate() {
        let pacer = Pacer::new(args, start, i, args.conns);
        let (value, p) = (Arc::clone(&value), args.pipeline);
        tasks.push(tokio::spawn(pipelined_conn(
            stream, rbuf, command, i, p, value, deadline, pacer,
        )));
    }
    let mut tallies = Vec::new();
    for t in tasks {
        tallies.push(t.await?);
    }
    let mode = match command {
        Command::Set => "produce-gateway",
        Command::Ping => "ping-gateway",
    };
    let size = match command {
        Command::Set => args.size,
        Command::Ping => 0,
    };
    Ok(report(mode, start, tallies, size, ""))
}

/// One connection: keeps up to `p` commands outstanding until `deadline`,
/// then collects the remaining replies (for at most DRAIN).
#[allow(clippy::too_many_arguments)]
async fn pipelined_conn(
    mut stream: TcpStream,
    mut rbuf: BytesMut,
    command: Command,
    conn: usize,
    p: usize,
    value: Arc<[u8]>,
    deadline: Instant,
    mut pacer: Option<Pacer>,
) -> Tally {
    let mut tally = Tally::new();
    let hard = deadline + DRAIN;
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(p);
    let mut wbuf = Vec::with_capacity(p * (value.len() + 64));
    let mut seq = 0u64;
    let expected = command.expected();
    loop {
        let now = Instant::now();
        let sending = now < deadline;
        if !sending && sent_at.is_empty() {
            break;
        }
        if now >= hard {
            let lost = sent_at.len();
            tally.errors += lost as u64;
            tally
                .first_error
                .get_or_insert_with(|| format!("{lost} replies missing after {DRAIN:?}"));
            break;
        }
        while sending && sent_at.len() < p && Pacer::due(&mut pacer, now) {
            command.encode(&mut wbuf, conn, seq, &value);
            seq += 1;
            sent_at.push_back(now);
        }
        if !wbuf.is_empty() {
            match timeout_at(hard.into(), stream.write_all(&wbuf)).await {
                Ok(Ok(())) => wbuf.clear(),
                Ok(Err(e)) => {
                    tally.error(|| format!("write: {e}"));
                    break;
                }
                Err(_) => continue, // `hard` passed: counted above
            }
        }
        // Wait for replies, or for the next paced send while there is room.
        let wake = match &pacer {
            Some(pc) if sending && sent_at.len() < p => pc.next.min(deadline),
            _ => hard,
        };
        if sent_at.is_empty() {
            tokio::time::sleep_until(wake.into()).await;
            continue;
        }
        match timeout_at(wake.into(), stream.read_buf(&mut rbuf)).await {
            Err(_) => continue,
            Ok(Ok(0)) => {
                let lost = sent_at.len() as u64;
                tally.errors += lost;
                tally
                    .first_error
                    .get_or_insert_with(|| "connection closed by the gateway".into());
                break;
            }
            Ok(Err(e)) => {
                tally.error(|| format!("read: {e}"));
                break;
            }
            Ok(Ok(_)) => {}
        }
        let now = Instant::now();
        loop {
            match reply_len(&rbuf) {
                Ok(Some(n)) => {
                    let reply = rbuf.split_to(n);
                    let Some(sent) = sent_at.pop_front() else {
                        tally.error(|| format!("unsolicited reply {:?}", lossy(&reply)));
                        continue;
                    };
                    if &reply[..] == expected {
                        tally.ok_after(sent, now);
                    } else {
                        tally.error(|| lossy(&reply).trim_end().to_owned());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tally.error(|| e);
                    tally.finished = Instant::now();
                    return tally;
                }
            }
        }
    }
    tally.finished = Instant::now();
    tally
}

// ---------------------------------------------------------------- direct Kafka

/// The gateway's producer settings (src/kafka/producer.rs) with its default
/// `produce_timeout` of 10 s.
fn direct_producer(brokers: &str) -> Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "loadgen")
        .set("partitioner", "fnv1a_random")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "9000")
        .create()?)
}

/// Enqueues one record like the gateway does (key, value, `color` header).
fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    value: &[u8],
) -> std::result::Result<DeliveryFuture, KafkaError> {
    let headers = OwnedHeaders::new().insert(Header {
        key: "color",
        value: Some(""),
    });
    let record = FutureRecord::to(topic)
        .key(key)
        .payload(value)
        .headers(headers);
    producer.send_result(record).map_err(|(e, _)| e)
}

fn queue_full(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
    )
}

async fn produce_direct(args: &Args) -> Result<String> {
    let producer = direct_producer(&args.brokers)?;
    let value: Arc<[u8]> = vec![b'x'; args.size].into();
    // Warm-up: the first record waits for metadata and the producer id.
    let warm = enqueue(&producer, &args.topic, "warm-up", &value)?;
    match timeout_at(tokio::time::Instant::now() + SETUP, warm).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err((e, _)))) => return Err(format!("warm-up: {e}").into()),
        _ => return Err("warm-up record not acknowledged".into()),
    }

    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.secs);
    let mut tasks = Vec::new();
    for i in 0..args.conns {
        let pacer = Pacer::new(args, start, i, args.conns);
        let (producer, value) = (producer.clone(), Arc::clone(&value));
        let (topic, p) = (args.topic.clone(), args.pipeline);
        tasks.push(tokio::spawn(async move {
            producer_task(producer, topic, i, p, value, deadline, pacer).await
        }));
    }
    let mut tallies = Vec::new();
    for t in tasks {
        tallies.push(t.await?);
    }
    Ok(report("produce-direct", start, tallies, args.size, ""))
}

/// C of these run at once, like the gateway's connections: each keeps `p`
/// records in flight and collects the acknowledgements in send order.
async fn producer_task(
    producer: FutureProducer,
    topic: String,
    task: usize,
    p: usize,
    value: Arc<[u8]>,
    deadline: Instant,
    mut pacer: Option<Pacer>,
) -> Tally {
    let mut tally = Tally::new();
    let hard = deadline + DRAIN;
    let mut in_flight: VecDeque<(Instant, DeliveryFuture)> = VecDeque::with_capacity(p);
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        let sending = now < deadline;
        if !sending && in_flight.is_empty() {
            break;
        }
        if now >= hard {
            let lost = in_flight.len();
            tally.errors += lost as u64;
            tally
                .first_error
                .get_or_insert_with(|| format!("{lost} deliveries missing after {DRAIN:?}"));
            break;
        }
        let mut full = false;
        while sending && in_flight.len() < p && !full && Pacer::due(&mut pacer, now) {
            let key = format!("k{task}:{seq}");
            seq += 1;
            match enqueue(&producer, &topic, &key, &value) {
                Ok(f) => in_flight.push_back((now, f)),
                Err(e) if queue_full(&e) => full = true,
                Err(e) => tally.error(|| format!("send: {e}")),
            }
        }
        let wake = match &pacer {
            Some(pc) if sending && in_flight.len() < p => pc.next.min(deadline),
            _ if full => now + Duration::from_millis(1),
            _ => hard,
        };
        let Some((sent, fut)) = in_flight.front_mut() else {
            tokio::time::sleep_until(wake.into()).await;
            continue;
        };
        let sent = *sent;
        match timeout_at(wake.into(), fut).await {
            Err(_) => continue,
            Ok(outcome) => {
                in_flight.pop_front();
                match outcome {
                    Ok(Ok(_)) => tally.ok_after(sent, Instant::now()),
                    Ok(Err((e, _))) => tally.error(|| format!("kafka: {e}")),
                    Err(_) => tally.error(|| "delivery future cancelled".into()),
                }
            }
        }
        // Collect whatever else is already acknowledged, in order.
        let now = Instant::now();
        while let Some((sent, fut)) = in_flight.front_mut() {
            let sent = *sent;
            match futures_lite::future::poll_once(fut).await {
                None => break,
                Some(outcome) => {
                    in_flight.pop_front();
                    match outcome {
                        Ok(Ok(_)) => tally.ok_after(sent, now),
                        Ok(Err((e, _))) => tally.error(|| format!("kafka: {e}")),
                        Err(_) => tally.error(|| "delivery future cancelled".into()),
                    }
                }
            }
        }
    }
    tally.finished = Instant::now();
    tally
}

async fn preload(args: &Args) -> Result<String> {
    let producer = direct_producer(&args.brokers)?;
    let value = vec![b'x'; args.size];
    let start = Instant::now();
    let hard = start + Duration::from_secs_f64(args.timeout.max(60.0));
    let mut in_flight: VecDeque<DeliveryFuture> = VecDeque::new();
    let (mut done, mut next) = (0u64, 0u64);
    while done < args.messages {
        if Instant::now() >= hard {
            return Err(format!("only {done} of {} records acknowledged", args.messages).into());
        }
        while next < args.messages && in_flight.len() < 10_000 {
            match enqueue(&producer, &args.topic, &format!("pre{next}"), &value) {
                Ok(f) => {
                    in_flight.push_back(f);
                    next += 1;
                }
                Err(e) if queue_full(&e) => break,
                Err(e) => return Err(format!("preload send: {e}").into()),
            }
        }
        let Some(front) = in_flight.front_mut() else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        match timeout_at(hard.into(), front).await {
            Err(_) => continue,
            Ok(Ok(Ok(_))) => {
                in_flight.pop_front();
                done += 1;
            }
            Ok(Ok(Err((e, _)))) => return Err(format!("preload: {e}").into()),
            Ok(Err(_)) => return Err("preload: delivery cancelled".into()),
        }
    }
    producer.flush(Duration::from_secs(10))?;
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "result mode=preload msgs={done} secs={secs:.2} msgs_per_s={:.0} errors=0",
        done as f64 / secs
    ))
}

// ---------------------------------------------------------------- consume modes

/// What the consumers of one run share: the distinct records seen, when the
/// first arrived, when all M had.
struct Drain {
    target: u64,
    seen: Mutex<HashSet<(i32, i64)>>,
    delivered: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    first_at: Mutex<Option<Instant>>,
    done_at: Mutex<Option<Instant>>,
    done: AtomicBool,
}

impl Drain {
    fn new(target: u64) -> Arc<Drain> {
        Arc::new(Drain {
            target,
            seen: Mutex::new(HashSet::new()),
            delivered: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            first_at: Mutex::new(None),
            done_at: Mutex::new(None),
            done: AtomicBool::new(false),
        })
    }

    fn add(&self, batch: &[(i32, i64)]) {
        if batch.is_empty() {
            return;
        }
        let now = Instant::now();
        self.first_at.lock().unwrap().get_or_insert(now);
        self.delivered
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut seen = self.seen.lock().unwrap();
        seen.extend(batch.iter().copied());
        if seen.len() as u64 >= self.target && !self.done.swap(true, Ordering::SeqCst) {
            *self.done_at.lock().unwrap() = Some(now);
        }
    }

    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().unwrap().get_or_insert(e);
    }

    fn finished(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    fn report(&self, mode: &str, start: Instant, deadline: Instant) -> Result<String> {
        let unique = self.seen.lock().unwrap().len() as u64;
        let end = self.done_at.lock().unwrap().unwrap_or(deadline);
        let first = self.first_at.lock().unwrap().unwrap_or(end);
        if let Some(e) = &*self.first_error.lock().unwrap() {
            eprintln!("loadgen {mode}: first error: {e}");
        }
        let secs = end.duration_since(start).as_secs_f64().max(1e-9);
        let steady = end.duration_since(first).as_secs_f64().max(1e-9);
        let line = format!(
            "result mode={mode} msgs={unique} delivered={} secs={secs:.2} msgs_per_s={:.0} \
             first_msg_ms={} steady_msgs_per_s={:.0} errors={}",
            self.delivered.load(Ordering::Relaxed),
            unique as f64 / secs,
            first.duration_since(start).as_millis(),
            unique as f64 / steady,
            self.errors.load(Ordering::Relaxed),
        );
        if !self.finished() {
            let seen = self.seen.lock().unwrap();
            let mut per: HashMap<i32, Vec<i64>> = HashMap::new();
            for (p, o) in seen.iter() {
                per.entry(*p).or_default().push(*o);
            }
            let mut parts: Vec<_> = per.into_iter().collect();
            parts.sort();
            for (p, mut offsets) in parts {
                offsets.sort_unstable();
                let gaps: Vec<String> = offsets
                    .windows(2)
                    .filter(|w| w[1] != w[0] + 1)
                    .take(5)
                    .map(|w| format!("{}..{}", w[0] + 1, w[1]))
                    .collect();
                eprintln!(
                    "loadgen {mode}: partition {p}: {} distinct, offsets {}..={}, gaps {gaps:?}",
                    offsets.len(),
                    offsets[0],
                    offsets[offsets.len() - 1]
                );
            }
            return Err(format!(
                "only {unique} of {} records within the timeout: {line}",
                self.target
            )
            .into());
        }
        Ok(line)
    }
}

async fn consume_gateway(args: &Args) -> Result<String> {
    let mut conns = Vec::new();
    for _ in 0..args.consumers {
        conns.push(connect(&args.addr, Some(&args.dsn)).await?);
    }
    let drain = Drain::new(args.messages);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.timeout);
    let mut tasks = Vec::new();
    for (stream, rbuf) in conns {
        let drain = Arc::clone(&drain);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = subscriber(stream, rbuf, &drain, deadline).await {
                drain.error(e.to_string());
            }
        }));
    }
    // Done when all M arrived, every subscriber gave up, or the timeout.
    while !drain.finished() && Instant::now() < deadline && tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in &tasks {
        t.abort();
    }
    drain.report("consume-gateway", start, deadline)
}

/// One subscriber connection: `MGET pb`, then the commits of the highest
/// offset per partition of the batch pipelined with the next `MGET`, as an
/// efficient client does (the gateway applies them in order), until the drain
/// is complete.
async fn subscriber(
    mut stream: TcpStream,
    mut rbuf: BytesMut,
    drain: &Drain,
    deadline: Instant,
) -> Result<()> {
    let deadline: tokio::time::Instant = deadline.into();
    let mut cmd = Vec::new();
    let mut commits = 0;
    while !drain.finished() {
        cmd.extend_from_slice(b"*2\r\n$4\r\nMGET\r\n$2\r\npb\r\n");
        stream.write_all(&cmd).await?;
        for _ in 0..commits {
            let reply = read_reply(&mut stream, &mut rbuf, deadline).await?;
            if &reply[..] != b"+OK\r\n" {
                drain.error(format!("commit answered {:?}", lossy(&reply)));
            }
        }
        let reply = read_reply(&mut stream, &mut rbuf, deadline).await?;
        let items = array_items(&reply).map_err(|e| format!("MGET answered {e}"))?;
        let mut batch = Vec::with_capacity(items.len());
        let mut last: HashMap<i32, i64> = HashMap::new();
        for item in items {
            let m = MessagePb::decode(item)?;
            batch.push((m.partition, m.offset));
            let o = last.entry(m.partition).or_insert(m.offset);
            *o = (*o).max(m.offset);
        }
        drain.add(&batch);
        cmd.clear();
        for (p, o) in &last {
            encode(
                &mut cmd,
                &[b"SET", p.to_string().as_bytes(), o.to_string().as_bytes()],
            );
        }
        commits = last.len();
    }
    Ok(())
}

async fn consume_direct(args: &Args) -> Result<String> {
    let group = format!(
        "loadgen-direct-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let drain = Drain::new(args.messages);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.timeout);
    let mut threads = Vec::new();
    for _ in 0..args.consumers {
        // The gateway's consumer settings (src/kafka/consumer.rs), with the
        // session timeout bench.sh gives the gateway.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &args.brokers)
            .set("client.id", "loadgen")
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()?;
        consumer.subscribe(&[&args.topic])?;
        let (drain, topic) = (Arc::clone(&drain), args.topic.clone());
        threads.push(std::thread::spawn(move || {
            direct_consumer(&consumer, &topic, &drain, deadline)
        }));
    }
    while !drain.finished() && Instant::now() < deadline && threads.iter().any(|t| !t.is_finished())
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The threads stop by themselves (done or deadline); main exits without
    // waiting for the consumers to leave the group.
    drain.report("consume-direct", start, deadline)
}

/// Batches of up to 100 messages (the gateway's default `consumer.batch`),
/// each followed by an async commit of the highest offset per partition.
fn direct_consumer(consumer: &BaseConsumer, topic: &str, drain: &Drain, deadline: Instant) {
    let mut batch = Vec::with_capacity(100);
    let mut last: HashMap<i32, i64> = HashMap::new();
    while !drain.finished() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                batch.push((m.partition(), m.offset()));
                let o = last.entry(m.partition()).or_insert(m.offset());
                *o = (*o).max(m.offset());
                if batch.len() < 100 {
                    continue;
                }
            }
            Some(Err(e)) => drain.error(format!("poll: {e}")),
            None => {}
        }
        if batch.is_empty() {
            continue;
        }
        drain.add(&batch);
        batch.clear();
        let mut tpl = TopicPartitionList::new();
        for (p, o) in last.drain() {
            if tpl
                .add_partition_offset(topic, p, Offset::Offset(o + 1))
                .is_err()
            {
                drain.error("bad commit offset".into());
            }
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            drain.error(format!("commit: {e}"));
        }
    }
}

// ---------------------------------------------------------------- idle connections

/// idle-conns: C connections, opened a few hundred at a time, held idle.
async fn idle_conns(args: &Args) -> Result<String> {
    raise_nofile_limit(args.conns as u64 + 100)?;
    let dsn = (!args.dsn.is_empty()).then_some(args.dsn.as_str());
    let start = Instant::now();
    let mut held = Vec::with_capacity(args.conns);
    // Bounded parallelism: a burst of 10,000 connects overflows the listen
    // backlog and turns into SYN retries of a second or more.
    for chunk in (0..args.conns).collect::<Vec<_>>().chunks(200) {
        let opening: Vec<_> = chunk
            .iter()
            .map(|_| {
                let (addr, dsn) = (args.addr.clone(), dsn.map(str::to_owned));
                tokio::spawn(async move { connect(&addr, dsn.as_deref()).await })
            })
            .collect();
        for o in opening {
            // The read buffer is dropped: only the socket is held.
            held.push(o.await??.0);
        }
    }
    let opened_in = start.elapsed().as_secs_f64();
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready conns={}", held.len())?;
        out.flush()?;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.secs)).await;
    // Every connection must still be open: the server did not shed any.
    let mut closed = 0;
    for stream in &held {
        let mut probe = [0u8; 1];
        match stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => closed += 1,
        }
    }
    if closed > 0 {
        return Err(format!(
            "{closed} of {} connections were closed by the server",
            held.len()
        )
        .into());
    }
    Ok(format!(
        "result mode=idle-conns conns={} open_secs={opened_in:.2} held_secs={:.0}",
        held.len(),
        args.secs
    ))
}

/// Raises the soft RLIMIT_NOFILE to at least `want` (up to the hard limit).
fn raise_nofile_limit(want: u64) -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if limit.rlim_cur >= want {
        return Ok(());
    }
    if limit.rlim_max < want {
        return Err(format!("RLIMIT_NOFILE hard limit {} < {want}", limit.rlim_max).into());
    }
    limit.rlim_cur = want;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

// ---------------------------------------------------------------- mock broker

/// mock-broker: a librdkafka mock cluster (one broker) holding the topics, for
/// runs where the gateway's own cost must not hide behind a real broker's.
async fn mock_broker(args: &Args) -> Result<String> {
    let cluster = rdkafka::mocking::MockCluster::new(1)?;
    for topic in args.topic.split(',').filter(|t| !t.is_empty()) {
        cluster.create_topic(topic, args.partitions, 1)?;
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "bootstrap={}", cluster.bootstrap_servers())?;
        out.flush()?;
    }
    // Serves from librdkafka's own threads until the process is killed.
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
