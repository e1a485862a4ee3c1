//! The control thread: a tokio current-thread runtime (mysql_async needs one; the
//! shards must not) that loads the auth tables at start, refreshes them every
//! `refresh_interval`, and turns SIGTERM/SIGINT into the shutdown signal.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context, Result};
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::auth::mysql;
use crate::auth::{AuthHub, AuthSnapshot};
use crate::config::AuthConfig;

/// The longest a load may take: at start-up, then the refresh gives up.
const LOAD_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Control {
    thread: JoinHandle<()>,
    stop: watch::Sender<bool>,
    pub auth: Arc<AuthHub>,
    /// The control thread's runtime, where consumer-group members run.
    pub runtime: tokio::runtime::Handle,
    /// Turns true when a signal asks the process to stop.
    pub shutdown: watch::Receiver<bool>,
}

impl Control {
    /// Starts the thread and returns once the auth tables were loaded, or with the
    /// reason they could not be.
    pub fn start(config: AuthConfig) -> Result<Control> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("databus-control".into())
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
                runtime.block_on(run(config, ready_tx, stop_rx, shutdown_tx));
            })
            .context("cannot start the control thread")?;
        let (auth, runtime) = ready_rx
            .recv()
            .map_err(|_| anyhow!("the control thread stopped during start-up"))??;
        Ok(Control {
            thread,
            stop: stop_tx,
            auth,
            runtime,
            shutdown: shutdown_rx,
        })
    }

    pub fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

async fn run(
    config: AuthConfig,
    ready: mpsc::Sender<Result<(Arc<AuthHub>, tokio::runtime::Handle)>>,
    mut stop: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
) {
    let shown_url = redact_password(&config.mysql_url);
    let pool = match pool(&config.mysql_url) {
        Ok(pool) => pool,
        Err(e) => {
            let _ = ready.send(Err(e.context(format!("invalid auth.mysql_url {shown_url}"))));
            return;
        }
    };
    let initial = tokio::time::timeout(LOAD_TIMEOUT, load(&pool)).await;
    let hub = match initial {
        Ok(Ok(snapshot)) => {
            report_plaintext_secrets(None, snapshot.plaintext_secrets);
            Arc::new(AuthHub::new(snapshot))
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
    let _ = ready.send(Ok((Arc::clone(&hub), tokio::runtime::Handle::current())));

    let mut refresh = tokio::time::interval(config.refresh_interval);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.tick().await; // the first tick is immediate; the initial load was it
    loop {
        tokio::select! {
            _ = refresh.tick() => match bounded_load(&pool).await {
                Ok(snapshot) => {
                    let before = hub.current().plaintext_secrets;
                    report_plaintext_secrets(Some(before), snapshot.plaintext_secrets);
                    hub.publish(snapshot);
                }
                Err(e) => {
                    hub.refresh_failed();
                    tracing::warn!(error = format!("{e:#}"), mysql = %shown_url,
                        "auth refresh failed; keeping the last good snapshot");
                }
            },
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
    let _ = pool.disconnect().await;
}

/// A refresh that hangs (a MySQL that accepts and never answers) must not stop
/// later ones: it fails after the same bound as the first load.
async fn bounded_load(pool: &Pool) -> Result<AuthSnapshot> {
    tokio::time::timeout(LOAD_TIMEOUT, load(pool))
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

async fn load(pool: &Pool) -> Result<AuthSnapshot> {
    let loaded_at = SystemTime::now();
    let (apps, auths, broken) = mysql::load(pool).await?;
    let built = AuthSnapshot::build(apps, auths, loaded_at);
    for reason in broken.iter().chain(&built.skipped) {
        tracing::warn!(%reason, "auth row skipped");
    }
    tracing::info!(
        apps = built.snapshot.app_count(),
        grants = built.snapshot.grant_count(),
        skipped = broken.len() + built.skipped.len(),
        "auth data loaded"
    );
    Ok(built.snapshot)
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
