//! Two threads off the shards: the control thread, a tokio current-thread
//! runtime where the metrics endpoint runs and SIGTERM/SIGINT become the
//! shutdown signal (consumer-group members have a runtime of their own,
//! `kafka::consumer::runtime`); and the auth thread, with a
//! runtime of its own for mysql_async, which loads the auth tables at start
//! and refreshes them every `refresh_interval`. Reading and indexing a large
//! `app`/`auth` table takes seconds of CPU: on a thread of its own it never
//! delays a member's fetch or a scrape. A refresh that reads the same rows
//! as the last one installs nothing and wakes no connection.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::auth::mysql::{self, Rows};
use crate::auth::{AuthHub, AuthSnapshot};
use crate::config::AuthConfig;

/// The longest a load may take: at start-up, then the refresh gives up.
const LOAD_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Control {
    thread: JoinHandle<()>,
    auth_thread: JoinHandle<()>,
    stop: watch::Sender<bool>,
    pub auth: Arc<AuthHub>,
    /// The control thread's runtime, where the metrics endpoint runs.
    pub runtime: tokio::runtime::Handle,
    /// Turns true when a signal asks the process to stop.
    pub shutdown: watch::Receiver<bool>,
}

impl Control {
    /// Starts both threads and returns once the auth tables were loaded, or
    /// with the reason they could not be.
    pub fn start(config: AuthConfig) -> Result<Control> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (auth_thread, auth) = on_own_runtime("databus-auth", {
            let stop = stop_rx.clone();
            move |ready| refresh_loop(config, ready, stop)
        })?;
        let (thread, runtime) = on_own_runtime("databus-control", move |ready| {
            control_loop(ready, stop_rx, shutdown_tx)
        })?;
        Ok(Control {
            thread,
            auth_thread,
            stop: stop_tx,
            auth,
            runtime,
            shutdown: shutdown_rx,
        })
    }

    pub fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
        let _ = self.auth_thread.join();
    }
}

/// Runs `task` on a new thread's tokio current-thread runtime; returns once
/// the task sent what it is ready with (or why it could not start).
fn on_own_runtime<T, F, Fut>(name: &str, task: F) -> Result<(JoinHandle<()>, T)>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<Result<T>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow!(e).context("cannot start tokio")));
                    return;
                }
            };
            runtime.block_on(task(ready_tx));
        })
        .with_context(|| format!("cannot start the {name} thread"))?;
    let ready = ready_rx
        .recv()
        .map_err(|_| anyhow!("the {name} thread stopped during start-up"))??;
    Ok((thread, ready))
}

/// The control thread: signals, and the runtime `/metrics` uses.
async fn control_loop(
    ready: mpsc::Sender<Result<tokio::runtime::Handle>>,
    mut stop: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
) {
    let (mut sigterm, mut sigint) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            let _ = ready.send(Err(anyhow!(e).context("cannot install signal handlers")));
            return;
        }
    };
    let _ = ready.send(Ok(tokio::runtime::Handle::current()));
    loop {
        tokio::select! {
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: shutting down");
                let _ = shutdown.send(true);
            }
            _ = sigint.recv() => {
                tracing::info!("SIGINT: shutting down");
                let _ = shutdown.send(true);
            }
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
}

/// The auth thread: the first load, then a refresh every `refresh_interval`.
async fn refresh_loop(
    config: AuthConfig,
    ready: mpsc::Sender<Result<Arc<AuthHub>>>,
    mut stop: watch::Receiver<bool>,
) {
    let shown_url = redact_password(&config.mysql_url);
    let pool = match pool(&config.mysql_url) {
        Ok(pool) => pool,
        Err(e) => {
            let _ = ready.send(Err(e.context(format!("invalid auth.mysql_url {shown_url}"))));
            return;
        }
    };
    let initial = tokio::time::timeout(LOAD_TIMEOUT, mysql::load(&pool)).await;
    let (hub, mut served) = match initial {
        Ok(Ok(rows)) => {
            let digest = rows.digest();
            let snapshot = build(rows, SystemTime::now());
            report_plaintext_secrets(None, snapshot.plaintext_secrets);
            (Arc::new(AuthHub::new(snapshot)), digest)
        }
        Ok(Err(e)) => {
            let _ = ready.send(Err(
                e.context(format!("cannot load auth data from MySQL at {shown_url}"))
            ));
            return;
        }
        Err(_) => {
            let _ = ready.send(Err(anyhow!(
                "cannot load auth data from MySQL at {shown_url}: no answer within {LOAD_TIMEOUT:?}"
            )));
            return;
        }
    };
    let _ = ready.send(Ok(Arc::clone(&hub)));

    let mut refresh = tokio::time::interval(config.refresh_interval);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.tick().await; // the first tick is immediate; the initial load was it
    loop {
        tokio::select! {
            _ = refresh.tick() => {
                let read_at = SystemTime::now();
                match bounded_load(&pool).await {
                    Ok(rows) => {
                        let digest = rows.digest();
                        if digest == served {
                            hub.unchanged(read_at);
                            continue;
                        }
                        let snapshot = build(rows, read_at);
                        let before = hub.current().plaintext_secrets;
                        report_plaintext_secrets(Some(before), snapshot.plaintext_secrets);
                        hub.publish(snapshot);
                        served = digest;
                    }
                    Err(e) => {
                        hub.refresh_failed();
                        tracing::warn!(error = format!("{e:#}"), mysql = %shown_url,
                            "auth refresh failed; keeping the last good snapshot");
                    }
                }
            }
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    let _ = pool.disconnect().await;
}

/// A refresh that hangs (a MySQL that accepts and never answers) must not stop
/// later ones: it fails after the same bound as the first load.
async fn bounded_load(pool: &Pool) -> Result<Rows> {
    tokio::time::timeout(LOAD_TIMEOUT, mysql::load(pool))
        .await
        .map_err(|_| anyhow!("no answer within {LOAD_TIMEOUT:?}"))?
}

fn pool(url: &str) -> Result<Pool> {
    let opts = Opts::from_url(url)?;
    // One refresh at a time needs one connection; none is kept between refreshes
    // longer than the pool's inactive limit.
    let constraints = PoolConstraints::new(0, 2).ok_or_else(|| anyhow!("bad pool constraints"))?;
    let opts =
        OptsBuilder::from_opts(opts).pool_opts(PoolOpts::default().with_constraints(constraints));
    Ok(Pool::new(opts))
}

/// The snapshot of rows read at `read_at`; what was skipped goes to the log.
fn build(rows: Rows, read_at: SystemTime) -> AuthSnapshot {
    let built = AuthSnapshot::build(rows.apps, rows.auths, read_at);
    for reason in rows.broken.iter().chain(&built.skipped) {
        tracing::warn!(%reason, "auth row skipped");
    }
    tracing::info!(
        apps = built.snapshot.app_count(),
        grants = built.snapshot.grant_count(),
        skipped = rows.broken.len() + built.skipped.len(),
        "auth data loaded"
    );
    built.snapshot
}

/// Says, once per change, how many apps still store their secret in
/// plaintext: a database dump hands those out.
fn report_plaintext_secrets(before: Option<usize>, now: usize) {
    if Some(now) == before {
        return;
    }
    if now > 0 {
        tracing::warn!(
            apps = now,
            "apps store their secret in plaintext in app.app_secret: \
            store `sha256:` and the hex SHA-256 of the secret instead (docs/protocol.md, \
            \"Grants in MySQL\")"
        );
    } else if before.is_some_and(|n| n > 0) {
        tracing::info!("every app's secret is now stored hashed");
    }
}

/// `mysql://user:secret@host/db` → `mysql://user:***@host/db`, for messages.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_password("mysql://root:hunter2@db:3306/databus_db"),
            "mysql://root:***@db:3306/databus_db"
        );
        assert_eq!(redact_password("mysql://root@db/x"), "mysql://root@db/x");
    }
}
