//! The consume modes: consume-gateway (subscriber connections draining with
//! `MGET pb`), consume-direct (their baseline, rdkafka consumers configured
//! like the gateway's), the `Drain` both count into, and preload, which fills
//! the topic they drain.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use databus::message::MessagePb;
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use crate::args::Args;
use crate::produce::{direct_producer, enqueue, queue_full};
use crate::resp::{array_items, connect, encode, lossy, read_reply};
use crate::Result;

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

pub async fn consume_gateway(args: &Args) -> Result<String> {
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

pub async fn consume_direct(args: &Args) -> Result<String> {
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

/// preload: M records produced directly and acknowledged, for the consume
/// modes to drain.
pub async fn preload(args: &Args) -> Result<String> {
    let producer = direct_producer(&args.brokers, &args.kafka)?;
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
