//! The configuration file: TOML → typed settings with defaults and validation.
//!
//! The keys are a public contract (`shared/spec/config.md`): deployment tooling and
//! tests use them, so they are never renamed. Unknown keys are rejected at start with
//! their name, because a misspelt key silently falling back to its default is the
//! worst kind of misconfiguration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    pub auth: AuthConfig,
    /// Kafka clusters by name; `app.cluster` in MySQL names one of them.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
    #[serde(default)]
    pub consumer: ConsumerConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// RESP listener shared by all shards (SO_REUSEPORT). Port 0 picks a free port
    /// once, and every shard then binds that same port.
    pub addr: SocketAddr,
    /// Executors; 0 = one per available CPU.
    pub shards: usize,
    pub max_connections: usize,
    #[serde(deserialize_with = "duration")]
    pub auth_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub pub_idle_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub sub_idle_timeout: Duration,
    pub max_value_bytes: usize,
    #[serde(deserialize_with = "duration")]
    pub produce_timeout: Duration,
    /// How long librdkafka keeps trying to deliver a record
    /// (`message.timeout.ms`), at least `produce_timeout`. Longer than a
    /// leader failover: with the idempotent producer, records that time out
    /// in librdkafka's queue make it bump the producer epoch and resend
    /// records whose first attempt the old leader had written, which
    /// duplicates them (seen in `scripts/chaos.sh` with it under the 9 s a
    /// killed broker takes to be fenced).
    #[serde(deserialize_with = "duration")]
    pub delivery_timeout: Duration,
    /// Most arguments in one command (protocol.md §6).
    pub max_args: usize,
    /// Largest single argument in bytes (protocol.md §6).
    pub max_bulk_len: usize,
    /// Replies a connection may have outstanding (pipelined commands not yet
    /// answered). Past it the gateway stops reading from that client, so a client
    /// that never reads its replies cannot make the gateway buffer without bound.
    pub max_pipeline: usize,
    /// Bytes a connection may hold: values of produces not yet handed to
    /// Kafka, and replies not yet written. Past either, the gateway stops
    /// reading from that client until they drain (protocol.md §6).
    pub max_connection_bytes: usize,
    /// Bytes of records handed to Kafka and not yet acknowledged, for the
    /// whole process (librdkafka's `queue.buffering.max.kbytes`, shared out
    /// among the producer instances). When it is reached, SETs wait for
    /// room, and their connections stop being read.
    pub max_in_flight_bytes: usize,
    /// Bytes of requests the whole process holds beyond each connection's
    /// first 64 KiB: values of produces not yet handed to Kafka, and requests
    /// not yet read to their end. When it is reached, connections stop being
    /// read until bytes are given back; it bounds what `max_connections`
    /// clients sending large requests at once can cost.
    pub max_buffered_bytes: usize,
    /// Subscriber connections at once. Each is a consumer-group member: a
    /// librdkafka consumer with 4 threads, about 9 descriptors, 2 broker
    /// connections and about 0.5 MiB. Past it, AUTH as a subscriber answers
    /// `-ERR max number of subscribers reached`.
    pub max_subscribers: usize,
    /// Longest a reply write may go without progress: a client that does not
    /// read its replies is closed after it.
    #[serde(deserialize_with = "duration")]
    pub write_timeout: Duration,
    /// Longest a shutdown waits for in-flight produces before it exits anyway.
    #[serde(deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
    /// One Kafka producer per cluster for all shards, or one per shard.
    pub producers: ProducerLayout,
    /// Distinct failed AUTH strings allowed per source address within
    /// `auth_failure_window`; past it, AUTH from that address is refused
    /// unchecked. 0 = no limit.
    pub max_auth_failures: u32,
    #[serde(deserialize_with = "duration")]
    pub auth_failure_window: Duration,
    /// Failed AUTHs count per network of this many leading bits: 32 (each
    /// IPv4 address apart) by default, 24 to count a /24 together.
    pub auth_failure_prefix_v4: u8,
    /// The same for IPv6; 64 by default, since one host usually has a /64.
    pub auth_failure_prefix_v6: u8,
    /// A TLS listener beside the plaintext one (`[server.tls]`); none by default.
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: clients may connect with TLS on `addr`; the plaintext
/// listener on `server.addr` keeps running.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub addr: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How shards share Kafka producers (README, Benchmarks: which won).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProducerLayout {
    /// One producer per cluster: one librdkafka instance batches the records of
    /// every shard.
    Shared,
    /// A producer per cluster and shard: no librdkafka queue shared across
    /// threads, but as many instances, connections and smaller batches.
    PerShard,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([0, 0, 0, 0], 6205)),
            shards: 0,
            max_connections: 10_000,
            auth_timeout: Duration::from_secs(5),
            pub_idle_timeout: Duration::from_secs(20 * 60),
            sub_idle_timeout: Duration::from_secs(40),
            max_value_bytes: 1_000_000,
            produce_timeout: Duration::from_secs(10),
            delivery_timeout: Duration::from_secs(30),
            max_args: 1024,
            max_bulk_len: 1024 * 1024 + 4096,
            max_pipeline: 4096,
            max_connection_bytes: 256 * 1024,
            max_in_flight_bytes: 256 * 1024 * 1024,
            max_buffered_bytes: 1024 * 1024 * 1024,
            max_subscribers: 500,
            write_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(15),
            producers: ProducerLayout::Shared,
            max_auth_failures: 20,
            auth_failure_window: Duration::from_secs(60),
            auth_failure_prefix_v4: 32,
            auth_failure_prefix_v6: 64,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub mysql_url: String,
    #[serde(default = "default_refresh_interval", deserialize_with = "duration")]
    pub refresh_interval: Duration,
}

fn default_refresh_interval() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// librdkafka partitioner. `fnv1a_random` places keys as the original service's
    /// sarama hash partitioner did, so keys keep their partitions on switch-over.
    #[serde(default = "default_partitioner")]
    pub partitioner: String,
    /// Where a consumer group with no committed offset starts: `latest` or
    /// `earliest`.
    #[serde(default = "default_auto_offset_reset")]
    pub auto_offset_reset: String,
    /// Any librdkafka property, passed through (SASL/SSL settings live here).
    #[serde(default, deserialize_with = "kafka_properties")]
    pub kafka: BTreeMap<String, String>,
}

fn default_partitioner() -> String {
    "fnv1a_random".to_owned()
}

fn default_auto_offset_reset() -> String {
    "latest".to_owned()
}

/// librdkafka's built-in partitioners (CONFIGURATION.md, `partitioner`).
const PARTITIONERS: &[&str] = &[
    "random",
    "consistent",
    "consistent_random",
    "murmur2",
    "murmur2_random",
    "fnv1a",
    "fnv1a_random",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Most messages per MGET.
    pub batch: usize,
    /// Most bytes of messages per MGET (as encoded): a batch ends early
    /// rather than exceed it; a single larger message goes alone.
    pub max_batch_bytes: usize,
    /// After the first message, wait at most this for more.
    #[serde(deserialize_with = "duration")]
    pub batch_window: Duration,
    /// An MGET with nothing to return answers `*0` after this.
    #[serde(deserialize_with = "duration")]
    pub poll_timeout: Duration,
    /// Kafka group session timeout.
    #[serde(deserialize_with = "duration")]
    pub session_timeout: Duration,
    /// Accept `SET <partition> <offset>` for offsets the connection was never
    /// delivered, as the original service did. Off: such a commit would make
    /// the group skip records nobody read, and is refused.
    pub commit_undelivered: bool,
    /// Worker threads of the consumer runtime, where members are made,
    /// fetch and leave.
    pub threads: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            batch: 100,
            max_batch_bytes: 4 * 1024 * 1024,
            batch_window: Duration::from_millis(100),
            poll_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(10),
            commit_undelivered: false,
            threads: 2,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// HTTP endpoint for /metrics and /healthz; empty disables it.
    pub addr: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            addr: "127.0.0.1:6206".to_owned(),
        }
    }
}

/// `[log]`: how log lines are written (to stderr). Which lines: `RUST_LOG`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl Config {
    /// Reads, parses and validates the file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// How many librdkafka producers the process makes: one per cluster, or
    /// one per cluster and shard.
    pub fn producer_instances(&self) -> usize {
        let per_cluster = match self.server.producers {
            ProducerLayout::Shared => 1,
            ProducerLayout::PerShard => self.shard_count(),
        };
        (per_cluster * self.clusters.len()).max(1)
    }

    fn validate(&self) -> Result<()> {
        let s = &self.server;
        at_least_one("server.max_connections", s.max_connections)?;
        at_least_one("server.max_value_bytes", s.max_value_bytes)?;
        at_least_one("server.max_args", s.max_args)?;
        at_least_one("server.max_pipeline", s.max_pipeline)?;
        at_least_one("server.max_connection_bytes", s.max_connection_bytes)?;
        at_least_one("consumer.max_batch_bytes", self.consumer.max_batch_bytes)?;
        if s.max_buffered_bytes < s.max_bulk_len + 64 * 1024 {
            bail!(
                "invalid value for server.max_buffered_bytes: {} cannot hold one request of \
                 server.max_bulk_len ({}) and its framing",
                s.max_buffered_bytes,
                s.max_bulk_len
            );
        }
        // Each producer instance's queue gets its share of the budget, and
        // librdkafka refuses a record larger than its queue.
        let instances = self.producer_instances();
        let share = s.max_in_flight_bytes / instances;
        if share < s.max_value_bytes + 64 * 1024 {
            bail!(
                "invalid value for server.max_in_flight_bytes: {} shared among {instances} \
                 producer instance(s) leaves {share} bytes each, less than one record of \
                 server.max_value_bytes ({}) and its framing",
                s.max_in_flight_bytes,
                s.max_value_bytes
            );
        }
        if s.auth_failure_prefix_v4 > 32 || s.auth_failure_prefix_v6 > 128 {
            bail!(
                "invalid value for server.auth_failure_prefix_v4/_v6: at most 32 and 128 bits \
                 (got {} and {})",
                s.auth_failure_prefix_v4,
                s.auth_failure_prefix_v6
            );
        }
        if s.write_timeout.is_zero() {
            bail!("invalid value for server.write_timeout: it must be longer than 0");
        }
        if s.max_bulk_len < s.max_value_bytes {
            bail!(
                "invalid value for server.max_bulk_len: {} is smaller than server.max_value_bytes ({})",
                s.max_bulk_len,
                s.max_value_bytes
            );
        }
        for (key, d) in [
            ("server.auth_timeout", s.auth_timeout),
            ("server.pub_idle_timeout", s.pub_idle_timeout),
            ("server.sub_idle_timeout", s.sub_idle_timeout),
            ("server.produce_timeout", s.produce_timeout),
            ("server.delivery_timeout", s.delivery_timeout),
            ("server.auth_failure_window", s.auth_failure_window),
            ("auth.refresh_interval", self.auth.refresh_interval),
            ("consumer.poll_timeout", self.consumer.poll_timeout),
            ("consumer.session_timeout", self.consumer.session_timeout),
        ] {
            if d.is_zero() {
                bail!("invalid value for {key}: must be greater than zero");
            }
        }
        at_least_one("consumer.batch", self.consumer.batch)?;
        at_least_one("consumer.threads", self.consumer.threads)?;
        if s.delivery_timeout < s.produce_timeout {
            bail!(
                "invalid value for server.delivery_timeout: it must be at least server.produce_timeout ({:?})",
                s.produce_timeout
            );
        }
        if s.sub_idle_timeout <= self.consumer.poll_timeout {
            bail!(
                "invalid value for server.sub_idle_timeout: it must be longer than consumer.poll_timeout \
                 ({:?}), since an MGET long poll counts as idle time",
                self.consumer.poll_timeout
            );
        }
        if self.auth.mysql_url.trim().is_empty() {
            bail!("invalid value for auth.mysql_url: must not be empty");
        }
        if self.clusters.is_empty() {
            bail!("no [clusters.<name>] section: at least one Kafka cluster must be configured");
        }
        for (name, cluster) in &self.clusters {
            if cluster.brokers.trim().is_empty() {
                bail!("invalid value for clusters.{name}.brokers: must not be empty");
            }
            if !["latest", "earliest"].contains(&cluster.auto_offset_reset.as_str()) {
                bail!(
                    "invalid value for clusters.{name}.auto_offset_reset: {:?} is not latest or earliest",
                    cluster.auto_offset_reset
                );
            }
            if !PARTITIONERS.contains(&cluster.partitioner.as_str()) {
                bail!(
                    "invalid value for clusters.{name}.partitioner: {:?} is not one of {}",
                    cluster.partitioner,
                    PARTITIONERS.join(", ")
                );
            }
        }
        if !self.metrics.addr.is_empty() && self.metrics.addr.parse::<SocketAddr>().is_err() {
            bail!(
                "invalid value for metrics.addr: {:?} is not an address like 127.0.0.1:6206",
                self.metrics.addr
            );
        }
        Ok(())
    }

    /// The number of shards to run: `server.shards`, or one per CPU when 0.
    pub fn shard_count(&self) -> usize {
        match self.server.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

fn at_least_one(key: &str, value: usize) -> Result<()> {
    if value == 0 {
        bail!("invalid value for {key}: must be at least 1");
    }
    Ok(())
}

/// Durations are strings with a unit: "100ms", "5s", "20m".
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} ({e}); use a number with a unit such as \"100ms\", \"5s\" or \"20m\""
        ))
    })
}

/// librdkafka properties are strings, but TOML users write `"linger.ms" = 5` or
/// `"enable.idempotence" = true`; both are accepted and passed on as text.
fn kafka_properties<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, toml::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "librdkafka property {key:?} must be a string, number or boolean, not {}",
                        other.type_str()
                    )))
                }
            };
            Ok((key, text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [auth]
        mysql_url = "mysql://root@127.0.0.1:3306/databus_db"
        [clusters.cluster1]
        brokers = "127.0.0.1:9092"
    "#;

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.server.addr, "0.0.0.0:6205".parse().unwrap());
        assert_eq!(c.server.shards, 0);
        assert_eq!(c.server.producers, ProducerLayout::Shared);
        assert_eq!(c.server.max_connections, 10_000);
        assert_eq!(c.server.auth_timeout, Duration::from_secs(5));
        assert_eq!(c.server.pub_idle_timeout, Duration::from_secs(1200));
        assert_eq!(c.server.sub_idle_timeout, Duration::from_secs(40));
        assert_eq!(c.server.max_value_bytes, 1_000_000);
        assert_eq!(c.server.produce_timeout, Duration::from_secs(10));
        assert_eq!(c.server.delivery_timeout, Duration::from_secs(30));
        assert_eq!(c.auth.refresh_interval, Duration::from_secs(60));
        assert_eq!(c.clusters["cluster1"].partitioner, "fnv1a_random");
        assert_eq!(c.clusters["cluster1"].auto_offset_reset, "latest");
        assert_eq!(c.consumer.batch, 100);
        assert_eq!(c.consumer.batch_window, Duration::from_millis(100));
        assert_eq!(c.consumer.poll_timeout, Duration::from_secs(30));
        assert_eq!(c.consumer.session_timeout, Duration::from_secs(10));
        assert_eq!(c.metrics.addr, "127.0.0.1:6206");
    }

    #[test]
    fn shipped_example_config_parses() {
        let text = include_str!("../config/databus.toml");
        let c = Config::parse(text).unwrap();
        assert!(c.clusters.contains_key("cluster1"));
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", Config::parse(text).unwrap_err())
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = error_of(&format!("{MINIMAL}\n[server]\nmax_conections = 5\n"));
        assert!(e.contains("max_conections"), "{e}");
        let e = error_of(&format!("{MINIMAL}\n[bogus]\nx = 1\n"));
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn bad_values_are_rejected_with_the_key() {
        let e = error_of(&format!(
            "{MINIMAL}\n[server]\nauth_timeout = \"5 parsecs\"\n"
        ));
        assert!(e.contains("auth_timeout"), "{e}");
        let e = error_of(&format!(
            "{MINIMAL}\n[server]\nsub_idle_timeout = \"30s\"\n"
        ));
        assert!(e.contains("server.sub_idle_timeout"), "{e}");
        let e = error_of(&format!("{MINIMAL}\n[server]\nmax_connections = 0\n"));
        assert!(e.contains("server.max_connections"), "{e}");
        let e = error_of(&format!("{MINIMAL}\n[server]\naddr = \"nowhere\"\n"));
        assert!(e.contains("addr"), "{e}");
        let e = error_of(&MINIMAL.replace(
            "[clusters.cluster1]",
            "[clusters.cluster1]\npartitioner = \"fnv\"",
        ));
        assert!(e.contains("clusters.cluster1.partitioner"), "{e}");
    }

    #[test]
    fn producer_layout_is_shared_or_per_shard() {
        let layout = |v: &str| {
            Config::parse(&format!("{MINIMAL}\n[server]\nproducers = \"{v}\"\n"))
                .map(|c| c.server.producers)
        };
        assert_eq!(layout("shared").unwrap(), ProducerLayout::Shared);
        assert_eq!(layout("per_shard").unwrap(), ProducerLayout::PerShard);
        let e = error_of(&format!("{MINIMAL}\n[server]\nproducers = \"each\"\n"));
        assert!(e.contains("shared") && e.contains("per_shard"), "{e}");
    }

    #[test]
    fn kafka_properties_accept_scalars() {
        let c = Config::parse(&format!(
            "{MINIMAL}\n[clusters.cluster1.kafka]\n\"linger.ms\" = 5\n\"enable.idempotence\" = true\n\"security.protocol\" = \"sasl_ssl\"\n"
        ))
        .unwrap();
        let k = &c.clusters["cluster1"].kafka;
        assert_eq!(k["linger.ms"], "5");
        assert_eq!(k["enable.idempotence"], "true");
        assert_eq!(k["security.protocol"], "sasl_ssl");
    }
}
