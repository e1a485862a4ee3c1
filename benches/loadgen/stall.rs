//! mget-latency: how long subscribers' MGETs and `/healthz` take, for the
//! "no stall" comparison (issue #13): the same load with and without the
//! auth data refreshing. K subscribers each send paced `MGET pb` on a
//! preloaded topic (so every MGET has records at once and its time is the
//! gateway's, not the wait for a record); one prober GETs `/healthz` on a
//! new connection every 20 ms, as a load balancer does.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use crate::args::Args;
use crate::report::Tally;
use crate::resp::{array_items, connect, encode, lossy, read_reply};
use crate::{Result, SETUP};

const HEALTHZ_EVERY: Duration = Duration::from_millis(20);

pub async fn mget_latency(args: &Args) -> Result<String> {
    // Join first, all together: each subscriber asks until every one of
    // them had a batch. One that stopped asking would stall the others'
    // join (a rebalance waits for every member to poll), bounded by SETUP.
    let joined = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut joining = Vec::new();
    for _ in 0..args.consumers {
        let (addr, dsn, k) = (args.addr.clone(), args.dsn.clone(), args.consumers);
        let joined = std::sync::Arc::clone(&joined);
        joining.push(tokio::spawn(async move {
            let (mut stream, mut rbuf) = connect(&addr, Some(&dsn)).await?;
            let deadline = tokio::time::Instant::now() + SETUP;
            let mut had_batch = false;
            while !had_batch || joined.load(std::sync::atomic::Ordering::SeqCst) < k {
                let reply = mget(&mut stream, &mut rbuf, deadline).await?;
                if !had_batch && !array_items(&reply)?.is_empty() {
                    had_batch = true;
                    joined.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err("mget-latency: the subscribers did not all join".into());
                }
            }
            Ok::<_, crate::BoxError>((stream, rbuf))
        }));
    }
    let mut subscribers = Vec::new();
    for j in joining {
        subscribers.push(j.await??);
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.secs);
    let interval = Duration::from_secs_f64(args.consumers as f64 / args.rate.unwrap_or(100.0));
    let mut tasks = Vec::new();
    for (i, (mut stream, mut rbuf)) in subscribers.into_iter().enumerate() {
        let first = start + interval.mul_f64(i as f64 / args.consumers as f64);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut next = first;
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                next += interval;
                let sent = Instant::now();
                let deadline = tokio::time::Instant::now() + SETUP;
                match mget(&mut stream, &mut rbuf, deadline).await {
                    Ok(reply) if reply.first() == Some(&b'*') => {
                        tally.ok_after(sent, Instant::now())
                    }
                    Ok(reply) => tally.error(|| format!("MGET answered {:?}", lossy(&reply))),
                    Err(e) => {
                        tally.error(|| e.to_string());
                        break;
                    }
                }
            }
            tally.finished = Instant::now();
            tally
        }));
    }
    let http = args.http.clone();
    let prober = tokio::spawn(async move {
        let mut tally = Tally::new();
        let mut next = start;
        while next < end {
            tokio::time::sleep_until(next.into()).await;
            next += HEALTHZ_EVERY;
            let sent = Instant::now();
            match healthz(&http).await {
                Ok(()) => tally.ok_after(sent, Instant::now()),
                Err(e) => tally.error(|| e.to_string()),
            }
        }
        tally
    });
    let mut mgets = Vec::new();
    for t in tasks {
        mgets.push(t.await?);
    }
    let probes = prober.await?;
    let mget = crate::report::report("mget-latency", start, mgets, 0, "");
    let probes = crate::report::report("healthz", start, vec![probes], 0, "");
    // One line: the MGET figures, then the probe's under healthz_ names.
    let healthz: String = probes
        .split(' ')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            matches!(k, "msgs" | "p50_us" | "p99_us" | "max_us" | "errors")
                .then(|| format!(" healthz_{k}={v}"))
        })
        .collect();
    Ok(format!("{mget}{healthz}"))
}

async fn mget(
    stream: &mut TcpStream,
    rbuf: &mut bytes::BytesMut,
    deadline: tokio::time::Instant,
) -> Result<bytes::BytesMut> {
    let mut cmd = Vec::new();
    encode(&mut cmd, &[b"MGET", b"pb"]);
    stream.write_all(&cmd).await?;
    read_reply(stream, rbuf, deadline).await
}

/// One `GET /healthz` on a new connection, read to its end; Ok on a 200.
async fn healthz(addr: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + SETUP;
    let mut stream = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| "healthz: connect timed out")??;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: databus\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    timeout_at(deadline, stream.read_to_end(&mut response))
        .await
        .map_err(|_| "healthz: no answer")??;
    if response.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "healthz answered {:?}",
            lossy(&response[..response.len().min(40)])
        )
        .into())
    }
}
