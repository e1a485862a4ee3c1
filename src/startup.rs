//! Process start-up checks and the run-until-signalled sequence.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::auth::limiter::{FailedAuthLimiter, Prefixes};
use crate::clients::Clients;
use crate::config::Config;
use crate::control::Control;
use crate::kafka::consumer::{self, ConsumerService};
use crate::kafka::producer::Producers;
use crate::metrics::{self, Metrics, Sources};
use crate::server::{self, Server};
use crate::session::budget::ProcessBudget;
use crate::wiring::KafkaBackend;

/// glommio refuses to start an executor below this RLIMIT_MEMLOCK.
const MIN_MEMLOCK: u64 = 512 * 1024;

/// Runs the gateway until SIGTERM/SIGINT, then drains and returns.
pub fn run(config: Config) -> Result<()> {
    ensure_memlock()?;
    ensure_nofile(&config)?;
    let config = Arc::new(config);
    let producers = Arc::new(Producers::create(&config)?);
    let control = Control::start(config.auth.clone())?;
    let consumer_runtime = consumer::runtime(config.consumer.threads)?;
    let consumers = Arc::new(ConsumerService::new(
        &config,
        consumer_runtime.handle().clone(),
    ));
    let server_config = &config.server;
    let sources = Arc::new(Sources {
        config: Arc::clone(&config),
        metrics: Arc::new(Metrics::new(config.shard_count())),
        auth: Arc::clone(&control.auth),
        producers: Arc::clone(&producers),
        consumers: Arc::clone(&consumers),
        clients: Arc::new(Clients::new(server_config.max_connections)),
        listening: Arc::new(OnceLock::new()),
        shutdown: control.shutdown.clone(),
    });
    start_metrics_endpoint(&sources, &control.runtime)?;
    let parts = server::Parts {
        server: server_config.clone(),
        shards: config.shard_count(),
        auth: Arc::clone(&control.auth),
        auth_failures: Arc::new(FailedAuthLimiter::new(
            server_config.max_auth_failures,
            server_config.auth_failure_window,
            Prefixes {
                v4: server_config.auth_failure_prefix_v4,
                v6: server_config.auth_failure_prefix_v6,
            },
        )),
        clients: Arc::clone(&sources.clients),
        metrics: Arc::clone(&sources.metrics),
        buffered: ProcessBudget::new(server_config.max_buffered_bytes),
        shutdown: control.shutdown.clone(),
        listening: Arc::clone(&sources.listening),
    };
    let backend_sources = Arc::clone(&sources);
    let server = Server::start(parts, move |shard| KafkaBackend {
        producers: Arc::clone(&backend_sources.producers),
        consumers: Arc::clone(&backend_sources.consumers),
        sources: Arc::clone(&backend_sources),
        shard,
    })?;
    if let Some(tls) = server.tls_addr {
        tracing::info!(addr = %tls, "TLS listener on {tls}");
    }
    tracing::info!(addr = %server.addr, shards = server.shards, "databus ready on {}", server.addr);

    server.join();
    let started = Instant::now();
    let limit = config.server.shutdown_timeout;
    // Closed connections already dropped their members; wait for them to commit
    // and leave their groups while the consumer runtime still runs them.
    if !consumers.wait_until_all_left(limit) {
        tracing::warn!(
            live = consumers.live_members(),
            "consumer members still open at the shutdown limit"
        );
    }
    producers.flush_all(limit.saturating_sub(started.elapsed()));
    tracing::info!(
        in_flight = producers.in_flight(),
        flush = ?started.elapsed(),
        "databus stopped"
    );
    // Members that did not leave in time are dropped with the runtime.
    consumer_runtime.shutdown_timeout(Duration::from_secs(1));
    control.stop();
    Ok(())
}

/// Serves `metrics.addr` from the control thread; nothing when it is empty.
fn start_metrics_endpoint(sources: &Arc<Sources>, runtime: &tokio::runtime::Handle) -> Result<()> {
    let addr = &sources.config.metrics.addr;
    if addr.is_empty() {
        return Ok(());
    }
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on metrics.addr {addr}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let listener = {
        let _runtime = runtime.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    runtime.spawn(metrics::http::serve(listener, Arc::clone(sources)));
    tracing::info!(addr = %local, "metrics endpoint on http://{local}/metrics");
    Ok(())
}

/// Descriptors a subscriber costs: its librdkafka consumer's broker sockets,
/// wake-up pipes and the like (about 9 measured; room for a second broker).
const FDS_PER_SUBSCRIBER: u64 = 10;
/// Descriptors beside the clients' and subscribers': listeners, producers'
/// broker sockets, the MySQL pool, the metrics endpoint, io_uring rings.
const FDS_BESIDES: u64 = 256;

/// The descriptors `config` may need at once: a connection's, a
/// subscriber's consumer's, and each producer's socket per broker (counted
/// from the bootstrap lists, plus room for brokers it discovers).
fn descriptors_needed(config: &Config) -> u64 {
    let brokers: u64 = config
        .clusters
        .values()
        .map(|c| c.brokers.split(',').count() as u64 + 4)
        .max()
        .unwrap_or(4);
    config.server.max_connections as u64
        + config.server.max_subscribers as u64 * FDS_PER_SUBSCRIBER
        + config.producer_instances() as u64 * brokers
        + FDS_BESIDES
}

/// Out of descriptors, a server cannot even accept a client to tell it so.
/// Raise the soft RLIMIT_NOFILE to what the configuration needs when the hard
/// limit allows; else refuse to start, saying what to change.
fn ensure_nofile(config: &Config) -> Result<()> {
    let needed = descriptors_needed(config);
    let hard = match raise_soft_limit(libc::RLIMIT_NOFILE, "RLIMIT_NOFILE", needed)? {
        Raised::Enough => return Ok(()),
        Raised::From(soft) => {
            tracing::info!(from = soft, to = needed, "raised RLIMIT_NOFILE");
            return Ok(());
        }
        Raised::Short { hard, .. } => hard,
    };
    bail!(
        "RLIMIT_NOFILE allows {hard} descriptors, but server.max_connections ({}) and \
         server.max_subscribers ({}, {} each) need about {needed}: raise the hard limit \
         (`ulimit -Hn`, LimitNOFILE= in the systemd unit) or lower those settings",
        config.server.max_connections,
        config.server.max_subscribers,
        FDS_PER_SUBSCRIBER,
    )
}

/// io_uring locks memory; glommio needs RLIMIT_MEMLOCK ≥ 512 KiB. Raise the soft
/// limit when the hard one allows, else say exactly what to change.
fn ensure_memlock() -> Result<()> {
    let soft = match raise_soft_limit(libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK", MIN_MEMLOCK)? {
        Raised::Enough | Raised::From(_) => return Ok(()),
        Raised::Short { soft, .. } => soft,
    };
    bail!(
        "RLIMIT_MEMLOCK is {} KiB, but io_uring (glommio) needs at least {} KiB: \
         raise it with `ulimit -l {}` (or LimitMEMLOCK=infinity in the systemd unit)",
        soft / 1024,
        MIN_MEMLOCK / 1024,
        MIN_MEMLOCK / 1024
    )
}

/// What became of a soft limit that had to be at least some value.
enum Raised {
    /// It already was.
    Enough,
    /// It was raised, from this.
    From(u64),
    /// The hard limit is below the value (or raising failed).
    Short { soft: u64, hard: u64 },
}

/// Raises `resource`'s soft limit to `needed` when the hard limit allows.
fn raise_soft_limit(
    resource: libc::__rlimit_resource_t,
    name: &str,
    needed: u64,
) -> Result<Raised> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("cannot read {name}"));
    }
    if limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= needed {
        return Ok(Raised::Enough);
    }
    if limit.rlim_max == libc::RLIM_INFINITY || limit.rlim_max >= needed {
        let raised = libc::rlimit {
            rlim_cur: needed,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(resource, &raised) } == 0 {
            return Ok(Raised::From(limit.rlim_cur));
        }
    }
    Ok(Raised::Short {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}
