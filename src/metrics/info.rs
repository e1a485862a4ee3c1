//! `INFO [section ...]`: the gateway's state laid out as redis-server lays out
//! its own (`# Section` headers, `field:value` lines, CRLF), so that redis-cli
//! users and tools that parse INFO can look inside without a browser. The
//! numbers are the ones `/metrics` exports, read from the same [`Sources`].

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::{AuthOutcome, CommandKind, ConnectionRole, Sources};
use crate::quota::QuotaFigures;

/// The Redis version whose INFO layout and commands this gateway follows;
/// some clients read `redis_version` to choose features.
const REDIS_COMPATIBLE_VERSION: &str = "7.2.0";

const SECTIONS: [&str; 6] = ["server", "clients", "stats", "kafka", "consumers", "quota"];

/// What the connection asking for INFO may see of its own: never another
/// app's groups or usage.
#[derive(Default)]
pub struct Asker<'a> {
    /// A subscriber's lag per partition.
    pub lag: Option<&'a [(i32, i64)]>,
    /// Its app's caps and usage, once authenticated.
    pub quota: Option<QuotaFigures>,
}

/// The INFO text for the sections asked for (all when none, `all`, `default`
/// or `everything`); an unknown section adds nothing, as in Redis.
pub fn render(sources: &Sources, asked: &[bytes::Bytes], asker: &Asker) -> String {
    let everything = asked.is_empty()
        || asked.iter().any(|a| {
            ["all", "default", "everything"]
                .iter()
                .any(|name| a.eq_ignore_ascii_case(name.as_bytes()))
        });
    let mut out = String::new();
    for section in SECTIONS {
        if !everything
            && !asked
                .iter()
                .any(|a| a.eq_ignore_ascii_case(section.as_bytes()))
        {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        match section {
            "server" => server(sources, &mut out),
            "clients" => clients(sources, &mut out),
            "stats" => stats(sources, &mut out),
            "kafka" => kafka(sources, &mut out),
            "consumers" => consumers(sources, asker.lag, &mut out),
            _ => quota(asker.quota, &mut out),
        }
    }
    out
}

/// Writes `field:value\r\n`.
fn field(out: &mut String, name: &str, value: impl std::fmt::Display) {
    // Writing into a String cannot fail.
    let _ = write!(out, "{name}:{value}\r\n");
}

fn server(sources: &Sources, out: &mut String) {
    let uptime = sources.metrics.uptime().as_secs();
    out.push_str("# Server\r\n");
    field(out, "redis_version", REDIS_COMPATIBLE_VERSION);
    field(out, "databus_version", env!("CARGO_PKG_VERSION"));
    field(out, "redis_mode", "standalone");
    field(out, "os", std::env::consts::OS);
    field(out, "arch_bits", usize::BITS);
    field(out, "process_id", std::process::id());
    let (plain, tls) = sources
        .listening
        .get()
        .copied()
        .unwrap_or((sources.config.server.addr, None));
    field(out, "tcp_port", plain.port());
    if let Some(tls) = tls {
        field(out, "tls_port", tls.port());
    }
    field(out, "shards", sources.config.shard_count());
    field(out, "uptime_in_seconds", uptime);
    field(out, "uptime_in_days", uptime / 86_400);
}

fn clients(sources: &Sources, out: &mut String) {
    let t = sources.metrics.totals();
    out.push_str("# Clients\r\n");
    field(out, "connected_clients", sources.clients.open());
    field(out, "pub_clients", t.connections(ConnectionRole::Pub));
    field(out, "sub_clients", t.connections(ConnectionRole::Sub));
    field(
        out,
        "unauthenticated_clients",
        t.connections(ConnectionRole::Anonymous),
    );
    field(out, "maxclients", sources.config.server.max_connections);
    field(out, "consumer_members", sources.consumers.live_members());
}

fn stats(sources: &Sources, out: &mut String) {
    let t = sources.metrics.totals();
    let consumers = &sources.consumers.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let errors: u64 = CommandKind::all().map(|k| t.commands(k, true)).sum();
    out.push_str("# Stats\r\n");
    field(out, "total_connections_received", t.accepted + t.refused);
    field(out, "rejected_connections", t.refused);
    field(out, "total_commands_processed", t.commands_processed());
    field(out, "total_error_replies", errors);
    field(out, "total_net_input_bytes", t.bytes_in);
    field(out, "total_net_output_bytes", t.bytes_out);
    field(out, "auth_ok", t.auth(AuthOutcome::Ok));
    field(out, "auth_failures", t.auth_failures());
    field(out, "produced_messages", t.produces() - t.produce_errors);
    field(out, "produce_errors", t.produce_errors);
    field(
        out,
        "delivered_messages",
        load(&consumers.messages_delivered),
    );
    field(out, "skipped_messages", load(&consumers.messages_skipped));
    field(out, "commits_applied", load(&consumers.commits_applied));
    field(out, "commits_dropped", load(&consumers.commits_dropped));
}

fn kafka(sources: &Sources, out: &mut String) {
    let refresh = sources.auth.refresh_stats();
    let clusters: Vec<&str> = sources.config.clusters.keys().map(String::as_str).collect();
    out.push_str("# Kafka\r\n");
    field(out, "clusters", clusters.join(","));
    for (name, cluster) in &sources.config.clusters {
        field(
            out,
            &format!("cluster_{name}"),
            format_args!("brokers={}", cluster.brokers),
        );
    }
    field(out, "produce_in_flight", sources.producers.in_flight());
    field(out, "auth_apps", refresh.apps);
    field(out, "auth_grants", refresh.grants);
    field(out, "auth_plaintext_secrets", refresh.plaintext_secrets);
    field(
        out,
        "auth_snapshot_age_seconds",
        refresh.snapshot_age.as_secs(),
    );
    field(out, "auth_refresh_ok", refresh.loads);
    field(out, "auth_refresh_failures", refresh.failures);
}

/// `# Consumers`: how many members this gateway runs and, for a subscriber
/// connection, its own lag (partition end minus its position) in total and
/// per partition.
fn consumers(sources: &Sources, own_lag: Option<&[(i32, i64)]>, out: &mut String) {
    out.push_str("# Consumers\r\n");
    field(out, "consumer_members", sources.consumers.live_members());
    if let Some(lag) = own_lag {
        field(out, "lag", lag.iter().map(|(_, l)| l).sum::<i64>());
        let partitions: Vec<String> = lag.iter().map(|(p, l)| format!("{p}={l}")).collect();
        field(out, "lag_partitions", partitions.join(","));
    }
}

/// `# Quota`: the asking connection's app: its caps (0: none), its
/// connections, and the time its connections were paused for going over a
/// rate cap (connection-seconds).
fn quota(figures: Option<QuotaFigures>, out: &mut String) {
    out.push_str("# Quota\r\n");
    let Some(figures) = figures else { return };
    field(out, "quota_records_per_sec", figures.limits.records_per_sec);
    field(out, "quota_bytes_per_sec", figures.limits.bytes_per_sec);
    field(out, "quota_connections", figures.limits.connections);
    field(out, "app_connections", figures.connections);
    field(
        out,
        "app_throttled_seconds",
        format!("{:.3}", figures.throttled.as_secs_f64()),
    );
}
