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
//!     opens C connections (authenticated when given a DSN, `{n}` in it
//!     replaced by the connection's number), prints
//!     `ready conns=C` once all are open, holds them idle for T seconds; the
//!     caller reads the server's RSS meanwhile.
//! mget-latency    --addr A --dsn DSN(role=sub) --http H [-k 4] [-t 20] [--rate R]
//!     K subscribers send paced `MGET pb` (R a second in all) on a
//!     preloaded topic while one prober GETs H's `/healthz` every 20 ms; the
//!     latencies of both (the "no stall" comparison).
//! mock-broker     --topic T1,T2,... [--partitions 6]
//!     the `--broker mock` side: a librdkafka MockCluster with those topics.
//!     Prints `bootstrap=<servers>` and serves until killed.
//! ```
//!
//! `--kafka key=value` (repeatable) adds librdkafka properties to the direct
//! producer, as `clusters.<name>.kafka` does to the gateway's.
//!
//! `--rate R` paces the produce modes to R messages/s in total (evenly spread
//! over the connections), for latency at a fixed rate. Every wait is bounded:
//! produce modes give in-flight requests 30 s after T, consume modes stop at
//! `--timeout` seconds. Unknown `--bench` (added by `cargo bench`) is ignored.
//!
//! Where the modes live: `produce` (produce-gateway, ping-gateway,
//! produce-direct), `consume` (consume-gateway, consume-direct, preload),
//! `idle` (idle-conns), `stall` (mget-latency), `mock` (mock-broker). They share `args` (the command
//! line), `resp` (a minimal RESP client for the gateway), `pace` (`--rate`)
//! and `report` (the result line of the produce modes).

mod args;
mod consume;
mod idle;
mod mock;
mod pace;
mod produce;
mod report;
mod resp;
mod stall;

use std::time::Duration;

use produce::Command;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, BoxError>;

/// Bound for connecting, AUTH and the warm-up request.
const SETUP: Duration = Duration::from_secs(30);

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
    let args = args::parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        match args.mode.as_str() {
            "produce-gateway" => produce::pipelined(&args, Command::Set).await,
            "ping-gateway" => produce::pipelined(&args, Command::Ping).await,
            "produce-direct" => produce::produce_direct(&args).await,
            "consume-gateway" => consume::consume_gateway(&args).await,
            "consume-direct" => consume::consume_direct(&args).await,
            "preload" => consume::preload(&args).await,
            "idle-conns" => idle::idle_conns(&args).await,
            "mock-broker" => mock::mock_broker(&args).await,
            "mget-latency" => stall::mget_latency(&args).await,
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
