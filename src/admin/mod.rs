//! `databus admin`: the operator's command for apps, grants and quotas, run
//! with the gateway's own configuration file against its MySQL. It writes
//! rows the gateway reads at its next refresh; running connections follow
//! then (a revoked grant or a disabled app closes them, as any change in
//! MySQL does). Secrets are generated here, stored only as their hash and
//! printed once.

mod args;
mod rules;
mod store;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::auth::snapshot::hash_secret;
use crate::config::Config;
use args::{Action, QuotaChange};
use rules::{GrantRow, Operation};
use store::{AppListing, GrantListing, LiveApp, Quota, Store};

/// Why an action was refused: each says what to do differently.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("no app {0:?} (or it is disabled)")]
    UnknownApp(String),
    #[error("app {0:?} already exists")]
    AppExists(String),
    #[error("cluster {cluster:?} is not in the configuration's [clusters] (known: {known})")]
    UnknownCluster { cluster: String, known: String },
    #[error("the configuration has several clusters: name one with --cluster ({known})")]
    ClusterNeeded { known: String },
    #[error("{0}")]
    BadName(String),
    #[error("cannot grant group {group:?} topic {topic:?} to app {key:?}: {why}")]
    Conflict {
        key: String,
        group: String,
        topic: String,
        why: rules::Conflict,
    },
    #[error("app {key:?} has no grant of group {group:?} for topic {topic:?}")]
    NoSuchGrant {
        key: String,
        group: String,
        topic: String,
    },
    #[error(
        "the database has no app_quota table: create it with the statement in config/schema.sql"
    )]
    NoQuotaTable,
}

/// What an action prints: text for people, or with `--json` one JSON value.
#[derive(Serialize)]
#[serde(untagged)]
enum Output {
    Secret {
        id: i64,
        key: String,
        cluster: String,
        secret: String,
    },
    Apps(Vec<AppListing>),
    Grants(Vec<GrantListing>),
    Quota {
        key: String,
        quota: Quota,
    },
    Done {
        done: String,
    },
}

/// Runs `databus admin` with the arguments after `admin`.
pub fn main(args: impl IntoIterator<Item = String>) -> ExitCode {
    let invocation = match args::parse(args) {
        Ok(Some(invocation)) => invocation,
        Ok(None) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("databus admin: {message}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let result = Config::load(&invocation.config).and_then(|config| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start tokio")?
            .block_on(run(&config, invocation.action))
    });
    match result {
        Ok(output) => {
            if invocation.json {
                match serde_json::to_string_pretty(&output) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("databus admin: cannot encode the output: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", render(&output));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("databus admin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: &Config, action: Action) -> Result<Output> {
    let mut store = Store::connect(&config.auth.mysql_url).await?;
    let output = act(&mut store, config, action).await;
    store.close().await;
    output
}

async fn act(store: &mut Store, config: &Config, action: Action) -> Result<Output> {
    let now = unix_now();
    Ok(match action {
        Action::AppsAdd { key, cluster } => {
            rules::check_name("app key", &key).map_err(Refused::BadName)?;
            let cluster = cluster_for(config, cluster)?;
            if store.live_app(&key).await?.is_some() {
                return Err(Refused::AppExists(key).into());
            }
            let secret = new_secret()?;
            let id = store
                .add_app(&key, &hash_secret(&secret), &cluster, now)
                .await?;
            Output::Secret {
                id,
                key,
                cluster,
                secret,
            }
        }
        Action::AppsList => Output::Apps(store.apps().await?),
        Action::AppsRotate { key } => {
            let app = live_app(store, &key).await?;
            let secret = new_secret()?;
            store.set_secret(&app, &hash_secret(&secret), now).await?;
            Output::Secret {
                id: app.id,
                key,
                cluster: app.cluster,
                secret,
            }
        }
        Action::AppsDisable { key } => {
            live_app(store, &key).await?;
            store.disable(&key, now).await?;
            Output::Done {
                done: format!("app {key:?} disabled: its connections close at the next refresh"),
            }
        }
        Action::AppsQuota { key, change } => {
            let app = live_app(store, &key).await?;
            if !store.has_quota_table().await? {
                return Err(Refused::NoQuotaTable.into());
            }
            let mut quota = store.quota(&app).await?;
            if !change.is_empty() {
                quota = changed(quota, change);
                store.set_quota(&app, quota, now).await?;
            }
            Output::Quota { key, quota }
        }
        Action::GrantsAdd {
            key,
            group,
            topic,
            operation,
        } => {
            rules::check_name("group", &group).map_err(Refused::BadName)?;
            rules::check_name("topic", &topic).map_err(Refused::BadName)?;
            let app = live_app(store, &key).await?;
            let live: Vec<GrantRow> = store
                .grants(None)
                .await?
                .into_iter()
                .map(|(_, g)| g)
                .collect();
            let new = GrantRow {
                key: key.clone(),
                group: group.clone(),
                topic: topic.clone(),
                operation: operation.bits(),
            };
            if let Some(why) = rules::conflict(&live, &new) {
                return Err(Refused::Conflict {
                    key,
                    group,
                    topic,
                    why,
                }
                .into());
            }
            let id = store
                .add_grant(&app, &group, &topic, operation.bits(), now)
                .await?;
            Output::Done {
                done: format!(
                    "granted (id {id}): app {key:?} group {group:?} topic {topic:?} {}",
                    Operation::name_of(operation.bits())
                ),
            }
        }
        Action::GrantsRemove { key, group, topic } => {
            let app = live_app(store, &key).await?;
            if store.remove_grant(&app, &group, &topic, now).await? == 0 {
                return Err(Refused::NoSuchGrant { key, group, topic }.into());
            }
            Output::Done {
                done: format!(
                    "removed: app {key:?} group {group:?} topic {topic:?}; \
                     its connections close at the next refresh"
                ),
            }
        }
        Action::GrantsList { key } => {
            if let Some(key) = &key {
                live_app(store, key).await?;
            }
            let grants = store.grants(key.as_deref()).await?;
            Output::Grants(
                grants
                    .into_iter()
                    .map(|(id, g)| GrantListing {
                        id,
                        key: g.key,
                        group: g.group,
                        topic: g.topic,
                        operation: Operation::name_of(g.operation),
                    })
                    .collect(),
            )
        }
    })
}

async fn live_app(store: &mut Store, key: &str) -> Result<LiveApp> {
    store
        .live_app(key)
        .await?
        .ok_or_else(|| Refused::UnknownApp(key.to_owned()).into())
}

/// The cluster a new app goes to: the one named, which the configuration
/// must have, or the configuration's only one.
fn cluster_for(config: &Config, named: Option<String>) -> Result<String> {
    let known = config
        .clusters
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match named {
        Some(cluster) if config.clusters.contains_key(&cluster) => Ok(cluster),
        Some(cluster) => Err(Refused::UnknownCluster { cluster, known }.into()),
        None if config.clusters.len() == 1 => Ok(known),
        None => Err(Refused::ClusterNeeded { known }.into()),
    }
}

fn changed(mut quota: Quota, change: QuotaChange) -> Quota {
    if let Some(n) = change.records_per_sec {
        quota.records_per_sec = n;
    }
    if let Some(n) = change.bytes_per_sec {
        quota.bytes_per_sec = n;
    }
    if let Some(n) = change.connections {
        quota.connections = n;
    }
    quota
}

/// 32 bytes from the operating system's generator, as 64 hex digits: the
/// same strength as the SHA-256 that stores it, and nothing an AUTH string
/// must escape.
fn new_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a secret: {e}"))?;
    Ok(bytes.iter().fold(String::with_capacity(64), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    }))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn render(output: &Output) -> String {
    let mut out = String::new();
    match output {
        Output::Secret {
            id,
            key,
            cluster,
            secret,
        } => {
            let _ = writeln!(out, "app {key:?} (id {id}, cluster {cluster}): new secret");
            let _ = writeln!(out, "{secret}");
            let _ = writeln!(out, "Shown once: only its hash is stored.");
        }
        Output::Apps(apps) => {
            let _ = writeln!(
                out,
                "{:>6}  {:<24} {:<16} {:<9} {:<8} {:>6}  quota",
                "id", "key", "cluster", "secret", "state", "grants"
            );
            for app in apps {
                let state = if app.disabled { "disabled" } else { "live" };
                let _ = writeln!(
                    out,
                    "{:>6}  {:<24} {:<16} {:<9} {:<8} {:>6}  {}",
                    app.id,
                    app.key,
                    app.cluster,
                    app.secret,
                    state,
                    app.grants,
                    quota_text(&app.quota)
                );
            }
        }
        Output::Grants(grants) => {
            let _ = writeln!(
                out,
                "{:>6}  {:<24} {:<24} {:<24} operation",
                "id", "key", "group", "topic"
            );
            for g in grants {
                let _ = writeln!(
                    out,
                    "{:>6}  {:<24} {:<24} {:<24} {}",
                    g.id, g.key, g.group, g.topic, g.operation
                );
            }
        }
        Output::Quota { key, quota } => {
            let _ = writeln!(out, "app {key:?}: {}", quota_text(quota));
        }
        Output::Done { done } => {
            let _ = writeln!(out, "{done}");
        }
    }
    out
}

fn quota_text(quota: &Quota) -> String {
    let cap = |n: u64, unit: &str| {
        if n == 0 {
            format!("no cap on {unit}")
        } else {
            format!("{n} {unit}")
        }
    };
    [
        cap(quota.records_per_sec, "records/s"),
        cap(quota.bytes_per_sec, "bytes/s"),
        cap(quota.connections, "connections"),
    ]
    .join(", ")
}
