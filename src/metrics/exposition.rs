//! `/metrics`: every counter of the gateway in the Prometheus (OpenMetrics)
//! text format. prometheus-client does the encoding; a collector reads the
//! counters where they live at each scrape, so nothing is copied between
//! scrapes and the hot paths only touch their own atomics.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{AuthOutcome, CommandKind, ConnectionRole, Sources, PRODUCE_BUCKETS};
use crate::quota::QuotaFigures;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry holding the gateway's collector.
pub fn registry(sources: Arc<Sources>) -> Registry {
    let mut registry = Registry::with_prefix("databus");
    registry.register_collector(Box::new(GatewayCollector { sources }));
    registry
}

/// The exposition text of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

struct GatewayCollector {
    sources: Arc<Sources>,
}

impl fmt::Debug for GatewayCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GatewayCollector")
    }
}

impl Collector for GatewayCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let sources = &self.sources;
        let t = sources.metrics.totals();
        let consumers = &sources.consumers.stats;
        let refresh = sources.auth.refresh_stats();

        let mut connections = e.encode_descriptor(
            "connections",
            "Open client connections by role (none: not authenticated yet)",
            None,
            MetricType::Gauge,
        )?;
        for role in ConnectionRole::ALL {
            connections
                .encode_family(&[("role", role.label())])?
                .encode_gauge(&t.connections(role))?;
        }
        counter(
            &mut e,
            "connections_accepted",
            "Connections accepted",
            t.accepted,
        )?;
        counter(
            &mut e,
            "connections_refused",
            "Connections refused at server.max_connections",
            t.refused,
        )?;

        let mut commands = e.encode_descriptor(
            "commands",
            "Commands by name and outcome (error: the reply was an error)",
            None,
            MetricType::Counter,
        )?;
        for kind in CommandKind::all() {
            for (failed, outcome) in [(false, "ok"), (true, "error")] {
                commands
                    .encode_family(&[("command", kind.label()), ("outcome", outcome)])?
                    .encode_counter::<NoLabelSet, _, u64>(&t.commands(kind, failed), None)?;
            }
        }

        let mut auth = e.encode_descriptor(
            "auth",
            "AUTH attempts by outcome; the precise reason of a refusal",
            None,
            MetricType::Counter,
        )?;
        for outcome in AuthOutcome::ALL {
            auth.encode_family(&[("outcome", outcome.label())])?
                .encode_counter::<NoLabelSet, _, u64>(&t.auth(outcome), None)?;
        }

        counter(
            &mut e,
            "net_input_bytes",
            "Bytes read from clients",
            t.bytes_in,
        )?;
        counter(
            &mut e,
            "net_output_bytes",
            "Bytes written to clients",
            t.bytes_out,
        )?;

        let buckets: Vec<(f64, u64)> = PRODUCE_BUCKETS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(t.produce_buckets)
            .collect();
        e.encode_descriptor(
            "produce_duration_seconds",
            "Time from a SET/HSET to the broker's acknowledgement or failure",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(
            t.produce_sum.as_secs_f64(),
            t.produces(),
            &buckets,
            None,
        )?;
        counter(
            &mut e,
            "produce_errors",
            "Produces answered -ERR kafka",
            t.produce_errors,
        )?;
        let mut failing = e.encode_descriptor(
            "produce_failing",
            "1 while a cluster's latest produce failed for a reason of the cluster's own",
            None,
            MetricType::Gauge,
        )?;
        for (cluster, is_failing) in sources.producers.health() {
            failing
                .encode_family(&[("cluster", cluster.as_str())])?
                .encode_gauge(&i64::from(is_failing))?;
        }
        gauge(
            &mut e,
            "produce_in_flight",
            "Records handed to librdkafka and not yet acknowledged",
            i64::from(sources.producers.in_flight()),
        )?;

        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut e,
            "messages_delivered",
            "Messages returned by MGET",
            load(&consumers.messages_delivered),
        )?;
        counter(
            &mut e,
            "messages_skipped",
            "Messages skipped because they carry another color",
            load(&consumers.messages_skipped),
        )?;
        counter(
            &mut e,
            "values_not_json",
            "Values delivered as JSON strings because they were not JSON",
            load(&consumers.values_not_json),
        )?;
        counter(
            &mut e,
            "commits_applied",
            "Subscriber commits applied",
            load(&consumers.commits_applied),
        )?;
        counter(
            &mut e,
            "commits_dropped",
            "Subscriber commits dropped: partition not owned by the connection",
            load(&consumers.commits_dropped),
        )?;
        // Per group and topic (cardinality bounded by the granted groups): the
        // members' lags added up, each partition owned by one member.
        let mut by_group: std::collections::BTreeMap<(String, String), i64> = Default::default();
        for lag in sources.consumers.lags().into_values() {
            let total = lag.total();
            *by_group.entry((lag.group, lag.topic)).or_default() += total;
        }
        let mut lag = e.encode_descriptor(
            "consumer_lag",
            "Records not yet delivered: partition end minus the members' position, per group and topic",
            None,
            MetricType::Gauge,
        )?;
        for ((group, topic), total) in &by_group {
            lag.encode_family(&[("group", group.as_str()), ("topic", topic.as_str())])?
                .encode_gauge(total)?;
        }
        gauge(
            &mut e,
            "consumer_members",
            "Consumer-group members (one per subscriber connection)",
            sources.consumers.live_members() as i64,
        )?;

        let mut refreshes = e.encode_descriptor(
            "auth_refresh",
            "Loads of the auth tables from MySQL by outcome",
            None,
            MetricType::Counter,
        )?;
        for (outcome, value) in [("ok", refresh.loads), ("error", refresh.failures)] {
            refreshes
                .encode_family(&[("outcome", outcome)])?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        e.encode_descriptor(
            "auth_snapshot_age_seconds",
            "Age of the auth data being served",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&refresh.snapshot_age.as_secs_f64())?;
        gauge(
            &mut e,
            "auth_plaintext_secrets",
            "Apps whose app_secret holds the secret itself rather than its sha256: hash",
            refresh.plaintext_secrets as i64,
        )?;
        gauge(
            &mut e,
            "auth_grants",
            "Grants (group, topic) in the auth snapshot",
            refresh.grants as i64,
        )?;
        quotas(&mut e, &sources.auth.quotas().capped())?;
        e.encode_descriptor(
            "uptime_seconds",
            "Time since the gateway started",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&sources.metrics.uptime().as_secs_f64())?;
        Ok(())
    }
}

/// The apps with caps (`app_quota`; cardinality bounded by that table):
/// their caps, connections, what they published and how long their
/// connections were paused.
fn quotas(e: &mut DescriptorEncoder<'_>, capped: &[(String, QuotaFigures)]) -> fmt::Result {
    let mut limits = e.encode_descriptor(
        "quota_limit",
        "An app's cap (app_quota) by kind; 0 is no cap",
        None,
        MetricType::Gauge,
    )?;
    for (app, figures) in capped {
        let caps = figures.limits;
        for (kind, value) in [
            ("records_per_sec", caps.records_per_sec),
            ("bytes_per_sec", caps.bytes_per_sec),
            ("connections", caps.connections),
        ] {
            limits
                .encode_family(&[("app", app.as_str()), ("kind", kind)])?
                .encode_gauge(&(value as i64))?;
        }
    }
    type Figure = fn(&QuotaFigures) -> f64;
    let per_app: [(&str, &str, MetricType, Figure); 4] = [
        (
            "quota_connections",
            "Connections of a capped app",
            MetricType::Gauge,
            |f| f.connections as f64,
        ),
        (
            "quota_records",
            "Records a capped app published while it had a rate cap",
            MetricType::Counter,
            |f| f.records as f64,
        ),
        (
            "quota_bytes",
            "Key and value bytes a capped app published while it had a rate cap",
            MetricType::Counter,
            |f| f.bytes as f64,
        ),
        (
            "quota_throttled_seconds",
            "Time a capped app's connections were paused for going over a rate cap, added up",
            MetricType::Counter,
            |f| f.throttled.as_secs_f64(),
        ),
    ];
    for (name, help, kind, value) in per_app {
        let mut family = e.encode_descriptor(name, help, None, kind)?;
        for (app, figures) in capped {
            let labels = [("app", app.as_str())];
            let mut encoder = family.encode_family(&labels)?;
            match kind {
                MetricType::Counter => {
                    encoder.encode_counter::<NoLabelSet, _, u64>(&value(figures), None)?
                }
                _ => encoder.encode_gauge(&value(figures))?,
            }
        }
    }
    Ok(())
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: i64) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}
