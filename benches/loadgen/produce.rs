//! The produce modes: produce-gateway and ping-gateway (pipelined commands on
//! C gateway connections) and produce-direct (their baseline, an rdkafka
//! producer configured like the gateway's), plus the direct producer that
//! preload shares.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use crate::args::Args;
use crate::pace::Pacer;
use crate::report::{report, Tally};
use crate::resp::{connect, encode, lossy, read_reply, reply_len};
use crate::{BoxError, Result, SETUP};

/// How long in-flight requests may take after the measured period ends.
const DRAIN: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
pub enum Command {
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
pub async fn pipelined(args: &Args, command: Command) -> Result<String> {
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
/// `produce_timeout` of 10 s, then `extra` (`--kafka`), as the gateway
/// applies `clusters.<name>.kafka`.
pub fn direct_producer(brokers: &str, extra: &[(String, String)]) -> Result<FutureProducer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", "loadgen")
        .set("partitioner", "fnv1a_random")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "9000");
    for (key, value) in extra {
        config.set(key, value);
    }
    Ok(config.create()?)
}

/// Enqueues one record like the gateway does (key, value, `color` header).
pub fn enqueue(
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

pub fn queue_full(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
    )
}

pub async fn produce_direct(args: &Args) -> Result<String> {
    let producer = direct_producer(&args.brokers, &args.kafka)?;
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
