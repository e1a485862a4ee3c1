//! Kafka producers: one per configured cluster, shared by every shard (or one
//! per shard and cluster, `server.producers = "per_shard"`), and the
//! produce call a publisher's SET becomes (protocol.md §4).
//!
//! A produce is enqueued synchronously (`send_result`), so a connection's pipelined
//! SETs are all in flight at once; the returned future completes when the broker
//! acknowledged the record under `acks`, on librdkafka's delivery thread.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use super::client_config;
use super::context::KafkaContext;
use super::slot::ProducerSlot;
use crate::config::{ClusterConfig, Config, ProducerLayout};
use crate::message::Record;

/// Room for the key, headers and framing on top of the largest value.
const RECORD_OVERHEAD: usize = 64 * 1024;

/// A cluster's producer; cloning it is cheap (an `Arc` inside).
pub type ClusterProducer = FutureProducer<KafkaContext>;

/// The producers, by cluster name.
pub struct Producers {
    /// Per cluster: one producer, or one per shard (`server.producers`).
    by_cluster: HashMap<String, Vec<Arc<ProducerSlot>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("{0}")]
    Kafka(KafkaError),
    #[error("producer is gone")]
    Canceled,
    /// The client stopped waiting before the broker answered.
    #[error("not acknowledged in time")]
    Unanswered,
}

impl Producers {
    pub fn create(config: &Config) -> Result<Producers> {
        let copies = match config.server.producers {
            ProducerLayout::Shared => 1,
            ProducerLayout::PerShard => config.shard_count(),
        };
        // server.max_in_flight_bytes is for the whole process: each
        // instance's queue gets its share.
        let queue_kbytes =
            (config.server.max_in_flight_bytes / config.producer_instances() / 1024).max(1);
        let mut by_cluster = HashMap::new();
        for (name, cluster) in &config.clusters {
            let producers = (0..copies)
                .map(|_| {
                    let config = producer_config(cluster, config, queue_kbytes);
                    ProducerSlot::new(name, config).map(Arc::new)
                })
                .collect::<Result<Vec<_>>>()?;
            by_cluster.insert(name.clone(), producers);
        }
        Ok(Producers { by_cluster })
    }

    /// The producer for `cluster` that shard `shard` (0-based) uses.
    pub fn get(&self, cluster: &str, shard: usize) -> Option<&Arc<ProducerSlot>> {
        let producers = self.by_cluster.get(cluster)?;
        producers.get(shard % producers.len().max(1))
    }

    /// Waits up to `timeout` for everything queued to be delivered.
    pub fn flush_all(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for (name, slots) in &self.by_cluster {
            for producer in slots.iter().flat_map(|slot| slot.all()) {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Err(e) = producer.flush(left) {
                    tracing::warn!(cluster = %name, error = %e, "flush at shutdown incomplete");
                }
            }
        }
    }

    /// Whether each cluster's brokers answer a metadata request within
    /// `timeout`, by cluster name. Blocks: never call it on a shard.
    pub fn reachable(&self, timeout: Duration) -> Vec<(String, bool)> {
        let mut clusters: Vec<(String, bool)> = self
            .by_cluster
            .iter()
            .map(|(name, producers)| {
                // No topic named: asking for one would have the broker
                // auto-create it for a producer.
                let up = producers
                    .first()
                    .is_some_and(|p| p.current().client().fetch_metadata(None, timeout).is_ok());
                (name.clone(), up)
            })
            .collect();
        clusters.sort();
        clusters
    }

    pub fn in_flight(&self) -> i32 {
        self.by_cluster
            .values()
            .flatten()
            .flat_map(|slot| slot.all())
            .map(|p| p.in_flight_count())
            .sum()
    }

    /// Every cluster, by name, with whether its latest produce failed (for
    /// a reason of the cluster's own).
    pub fn health(&self) -> Vec<(String, bool)> {
        let mut health: Vec<(String, bool)> = self
            .by_cluster
            .iter()
            .map(|(name, slots)| (name.clone(), slots.iter().any(|slot| slot.failing())))
            .collect();
        health.sort();
        health
    }

    /// The clusters whose latest produce failed, by name.
    pub fn failing(&self) -> Vec<String> {
        self.health()
            .into_iter()
            .filter_map(|(name, failing)| failing.then_some(name))
            .collect()
    }
}

fn producer_config(cluster: &ClusterConfig, config: &Config, queue_kbytes: usize) -> ClientConfig {
    let mut c = client_config::base(cluster);
    c.set("partitioner", &cluster.partitioner)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // Most clients send one SET and wait for its answer: librdkafka's
        // 5 ms default held each of those records 5 ms for a batch. 1 ms
        // made the one-in-flight row 3.4 times as fast on Kafka and the
        // saturated one faster too (docs/benchmarks.md, "One SET at a time").
        .set("linger.ms", "1")
        // How long librdkafka keeps trying. The client's answer does not wait
        // for it: the publisher answers `-ERR kafka: ...` at produce_timeout
        // (config.rs says why this is longer).
        .set(
            "message.timeout.ms",
            config.server.delivery_timeout.as_millis().to_string(),
        )
        // Bounds librdkafka's copy of the records in flight; past it a SET
        // waits for room (`send`) until its deadline.
        .set("queue.buffering.max.kbytes", queue_kbytes.to_string())
        .set(
            "message.max.bytes",
            (config.server.max_value_bytes + RECORD_OVERHEAD)
                .max(1_000_000)
                .to_string(),
        );
    client_config::with_operator_properties(c, cluster)
}

/// Enqueues one record. Retries while librdkafka's local queue is full, until
/// `deadline`; then hands back what resolves at the acknowledgement.
pub async fn send(
    producer: &ClusterProducer,
    record: &Record<'_>,
    deadline: Instant,
) -> Result<Delivery, ProduceError> {
    let mut backoff = Duration::from_millis(1);
    loop {
        let mut headers = OwnedHeaders::new_with_capacity(2).insert(Header {
            key: "color",
            value: Some(record.color),
        });
        if let Some(metadata) = record.metadata {
            headers = headers.insert(Header {
                key: "metadata",
                value: Some(metadata),
            });
        }
        let future_record = FutureRecord::to(record.topic)
            .key(record.key)
            .payload(record.value)
            .headers(headers);
        match producer.send_result(future_record) {
            Ok(delivery) => return Ok(Delivery(delivery)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(ProduceError::Kafka(KafkaError::MessageProduction(
                        RDKafkaErrorCode::QueueFull,
                    )));
                }
                // The queue drains as the broker acknowledges; back off briefly
                // instead of spinning, without overshooting the deadline.
                glommio::timer::sleep(backoff.min(deadline - now)).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(ProduceError::Kafka(e)),
        }
    }
}

/// The broker's acknowledgement of one record, or why there is none.
pub struct Delivery(DeliveryFuture);

impl Future for Delivery {
    type Output = Result<(), ProduceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|outcome| match outcome {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(ProduceError::Kafka(e)),
            Err(_) => Err(ProduceError::Canceled),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SASL and TLS are configured per cluster with librdkafka properties; this
    /// build must accept them (it links OpenSSL, which SCRAM needs too).
    #[test]
    fn sasl_ssl_properties_are_accepted() {
        let config = Config::parse(
            r#"
            [auth]
            mysql_url = "mysql://root@127.0.0.1:3306/databus_db"
            [clusters.secure]
            brokers = "127.0.0.1:9093"
            [clusters.secure.kafka]
            "security.protocol" = "sasl_ssl"
            "sasl.mechanisms" = "SCRAM-SHA-512"
            "sasl.username" = "databus"
            "sasl.password" = "secret"
            "ssl.endpoint.identification.algorithm" = "none"
            "#,
        )
        .unwrap();
        let producers = Producers::create(&config).unwrap();
        assert!(producers.get("secure", 0).is_some());
    }

    #[test]
    fn bad_properties_fail_at_start_with_the_cluster_name() {
        let config = Config::parse(
            r#"
            [auth]
            mysql_url = "mysql://root@127.0.0.1:3306/databus_db"
            [clusters.c1]
            brokers = "127.0.0.1:9093"
            [clusters.c1.kafka]
            "no.such.property" = "1"
            "#,
        )
        .unwrap();
        let error = format!("{:#}", Producers::create(&config).err().unwrap());
        assert!(error.contains("cluster c1"), "{error}");
        assert!(error.contains("no.such.property"), "{error}");
    }

    #[test]
    fn librdkafka_keeps_trying_for_delivery_timeout() {
        let config = Config::parse(
            "[auth]\nmysql_url = \"mysql://root@127.0.0.1:3306/databus_db\"\n\
             [server]\nproduce_timeout = \"2s\"\ndelivery_timeout = \"45s\"\n\
             [clusters.c1]\nbrokers = \"127.0.0.1:9093\"\n",
        )
        .unwrap();
        let c = producer_config(&config.clusters["c1"], &config, 1024);
        assert_eq!(c.get("message.timeout.ms"), Some("45000"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("linger.ms"), Some("1"));
    }
}
