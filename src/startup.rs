//! Process start-up checks and the run-until-signalled sequence.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::control::Control;
use crate::kafka::consumer::ConsumerService;
use crate::kafka::producer::Producers;
use crate::metrics;
use crate::server::Server;
use crate::shared::Shared;

/// glommio refuses to start an executor below this RLIMIT_MEMLOCK.
const MIN_MEMLOCK: u64 = 512 * 1024;

/// Runs the gateway until SIGTERM/SIGINT, then drains and returns.
pub fn run(config: Config) -> Result<()> {
    ensure_memlock()?;
    let producers = Producers::create(&config)?;
    let control = Control::start(config.auth.clone())?;
    let consumers = ConsumerService::new(&config, control.runtime.clone());
    let shared = Arc::new(Shared::new(
        config,
        Arc::clone(&control.auth),
        producers,
        consumers,
        control.shutdown.clone(),
    ));
    start_metrics_endpoint(&shared, &control.runtime)?;
    let server = Server::start(Arc::clone(&shared))?;
    if let Some(tls) = server.tls_addr {
        tracing::info!(addr = %tls, "TLS listener on {tls}");
    }
    tracing::info!(addr = %server.addr, shards = server.shards, "databus ready on {}", server.addr);

    server.join();
    let started = Instant::now();
    let limit = shared.config.server.shutdown_timeout;
    // Closed connections already dropped their members; wait for them to commit
    // and leave their groups while the control thread still runs them.
    if !shared.consumers.wait_until_all_left(limit) {
        tracing::warn!(
            live = shared.consumers.live_members(),
            "consumer members still open at the shutdown limit"
        );
    }
    shared
        .producers
        .flush_all(limit.saturating_sub(started.elapsed()));
    tracing::info!(
        in_flight = shared.producers.in_flight(),
        flush = ?started.elapsed(),
        "databus stopped"
    );
    control.stop();
    Ok(())
}

/// Serves `metrics.addr` from the control thread; nothing when it is empty.
fn start_metrics_endpoint(shared: &Arc<Shared>, runtime: &tokio::runtime::Handle) -> Result<()> {
    let addr = &shared.config.metrics.addr;
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
    runtime.spawn(metrics::http::serve(listener, Arc::clone(shared)));
    tracing::info!(addr = %local, "metrics endpoint on http://{local}/metrics");
    Ok(())
}

/// io_uring locks memory; glommio needs RLIMIT_MEMLOCK ≥ 512 KiB. Raise the soft
/// limit when the hard one allows, else say exactly what to change.
fn ensure_memlock() -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot read RLIMIT_MEMLOCK");
    }
    if limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= MIN_MEMLOCK {
        return Ok(());
    }
    if limit.rlim_max == libc::RLIM_INFINITY || limit.rlim_max >= MIN_MEMLOCK {
        let raised = libc::rlimit {
            rlim_cur: MIN_MEMLOCK,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } == 0 {
            return Ok(());
        }
    }
    bail!(
        "RLIMIT_MEMLOCK is {} KiB, but io_uring (glommio) needs at least {} KiB: \
         raise it with `ulimit -l {}` (or LimitMEMLOCK=infinity in the systemd unit)",
        limit.rlim_cur / 1024,
        MIN_MEMLOCK / 1024,
        MIN_MEMLOCK / 1024
    )
}
