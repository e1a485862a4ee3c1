//! A cluster's producer as the shards hold it: the current librdkafka
//! instance, replaced by a new one when librdkafka reports a fatal error
//! (after which every produce on that instance fails: a fenced idempotent
//! producer, for one), and whether its produces are failing, for `/readyz`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use anyhow::{Context as _, Result};
use arc_swap::ArcSwap;
use rdkafka::config::ClientConfig;
use rdkafka::producer::Producer;

use super::context::KafkaContext;
use super::producer::{self, ClusterProducer, Delivery, ProduceError};
use crate::message::Record;

pub struct ProducerSlot {
    cluster: String,
    config: ClientConfig,
    current: ArcSwap<ClusterProducer>,
    /// Instances replaced after a fatal error. Dropping one flushes (up to
    /// 500 ms, in librdkafka's drop), which no shard may wait for: they go
    /// with the slot, at exit.
    retired: Mutex<Vec<Arc<ClusterProducer>>>,
    /// When the last replacement was made (ms from `health.since`; 0: never):
    /// a fatal error that comes straight back must not make an instance per
    /// produce.
    replaced_at: AtomicU64,
    health: Health,
}

/// At most one replacement per slot in this time.
const REPLACE_INTERVAL_MS: u64 = 10_000;
/// Instances retired at most; past it the slot keeps its dead instance
/// (produces fail, `/readyz` says so) rather than pile up threads and sockets.
const MAX_RETIRED: usize = 8;
/// A failure older than this no longer makes the cluster "failing": with no
/// traffic (an unready gateway gets none), readiness must come back.
const FAILING_FOR_MS: u64 = 30_000;
/// A delivery given up by its client after this long without an answer
/// counts as a failure of the cluster: the broker did not answer in time.
const UNANSWERED_MS: u128 = 1_000;

/// When produces last succeeded and failed, in milliseconds from `since`
/// (0: never). Produces are failing while the last failure is the latest.
struct Health {
    since: Instant,
    last_ok: AtomicU64,
    last_failure: AtomicU64,
}

impl ProducerSlot {
    pub fn new(cluster: &str, config: ClientConfig) -> Result<ProducerSlot> {
        let producer = create(cluster, &config)?;
        Ok(ProducerSlot {
            cluster: cluster.to_owned(),
            config,
            current: ArcSwap::from_pointee(producer),
            retired: Mutex::new(Vec::new()),
            replaced_at: AtomicU64::new(0),
            health: Health {
                since: Instant::now(),
                last_ok: AtomicU64::new(0),
                last_failure: AtomicU64::new(0),
            },
        })
    }

    /// The instance in service.
    pub fn current(&self) -> Arc<ClusterProducer> {
        self.current.load_full()
    }

    /// Every instance, retired ones included (to flush them at exit).
    pub fn all(&self) -> Vec<Arc<ClusterProducer>> {
        let mut all = vec![self.current()];
        all.extend(lock(&self.retired).iter().cloned());
        all
    }

    /// Enqueues `record` on the instance in service (`producer::send`).
    pub async fn send(
        self: &Arc<Self>,
        record: &Record<'_>,
        deadline: Instant,
    ) -> Result<SlotDelivery, ProduceError> {
        let producer = self.current();
        match producer::send(&producer, record, deadline).await {
            Ok(delivery) => Ok(SlotDelivery {
                delivery,
                slot: Arc::clone(self),
                producer,
                sent: Instant::now(),
                answered: false,
            }),
            Err(e) => {
                self.failed(&e, &producer);
                Err(e)
            }
        }
    }

    /// Whether the latest produce outcome is a failure.
    pub fn failing(&self) -> bool {
        let h = &self.health;
        let last_failure = h.last_failure.load(Ordering::Relaxed);
        last_failure > h.last_ok.load(Ordering::Relaxed)
            && self.now_ms().saturating_sub(last_failure) < FAILING_FOR_MS
    }

    fn now_ms(&self) -> u64 {
        // At least 1: 0 means never.
        (self.health.since.elapsed().as_millis() as u64).max(1)
    }

    /// A produce succeeded. The clock is read only when that ends a run of
    /// failures, not for every acknowledgement.
    fn succeeded(&self) {
        if self.failing() {
            self.health.last_ok.store(
                self.now_ms()
                    .max(self.health.last_failure.load(Ordering::Relaxed) + 1),
                Ordering::Relaxed,
            );
            tracing::warn!(cluster = %self.cluster, "produces to the cluster succeed again");
        }
    }

    /// A produce on `producer` failed: noted (when the cluster is to blame),
    /// logged when it starts a run of failures, and the instance replaced
    /// when librdkafka says it is dead.
    fn failed(&self, error: &ProduceError, producer: &Arc<ClusterProducer>) {
        if let Some((code, reason)) = producer.client().fatal_error() {
            self.replace(producer, &format!("{code:?}: {reason}"));
        }
        if !blames_the_cluster(error) {
            return;
        }
        if !self.failing() {
            tracing::warn!(cluster = %self.cluster, %error, "produces to the cluster are failing");
        }
        let now = self
            .now_ms()
            .max(self.health.last_ok.load(Ordering::Relaxed) + 1);
        self.health.last_failure.store(now, Ordering::Relaxed);
    }

    /// Puts a new instance in place of `dead`, unless another shard already
    /// did. In-flight produces on `dead` are answered with its errors; new
    /// ones go to the new instance.
    fn replace(&self, dead: &Arc<ClusterProducer>, reason: &str) {
        let mut retired = lock(&self.retired);
        if !Arc::ptr_eq(&self.current.load(), dead) {
            return;
        }
        let now = self.now_ms();
        let last = self.replaced_at.load(Ordering::Relaxed);
        if last != 0 && now - last < REPLACE_INTERVAL_MS {
            return;
        }
        if retired.len() >= MAX_RETIRED {
            if last != u64::MAX {
                tracing::error!(cluster = %self.cluster, %reason, retired = retired.len(),
                    "the Kafka producer keeps hitting fatal errors: not replaced any more");
                self.replaced_at.store(u64::MAX, Ordering::Relaxed);
            }
            return;
        }
        self.replaced_at.store(now, Ordering::Relaxed);
        match create(&self.cluster, &self.config) {
            Ok(fresh) => {
                let old = self.current.swap(Arc::new(fresh));
                retired.push(old);
                tracing::error!(cluster = %self.cluster, %reason,
                    "the Kafka producer hit a fatal error: replaced by a new instance");
            }
            Err(e) => tracing::error!(cluster = %self.cluster, %reason, error = %format!("{e:#}"),
                "the Kafka producer hit a fatal error and cannot be replaced"),
        }
    }
}

/// Whether a failed produce says the cluster is failing, rather than one
/// client's record or topic (an unknown topic, a record too large): one app's
/// mistake must not make the whole gateway unready.
fn blames_the_cluster(error: &ProduceError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match error {
        ProduceError::Canceled | ProduceError::Unanswered => true,
        ProduceError::Kafka(e) => !matches!(
            e.rdkafka_error_code(),
            Some(
                Code::UnknownTopicOrPartition
                    | Code::UnknownTopic
                    | Code::UnknownPartition
                    | Code::InvalidTopic
                    | Code::TopicAuthorizationFailed
                    | Code::MessageSizeTooLarge
                    | Code::InvalidMessageSize
                    | Code::InvalidMessage
                    | Code::InvalidRecord
                    | Code::InvalidArgument
            )
        ),
    }
}

fn create(cluster: &str, config: &ClientConfig) -> Result<ClusterProducer> {
    let context = KafkaContext {
        cluster: cluster.to_owned(),
    };
    config
        .create_with_context(context)
        .with_context(|| format!("cannot create the Kafka producer for cluster {cluster}"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A record's acknowledgement, noted in its slot's health when it comes, or
/// when its client gives up waiting for it (the broker did not answer).
pub struct SlotDelivery {
    delivery: Delivery,
    slot: Arc<ProducerSlot>,
    producer: Arc<ClusterProducer>,
    sent: Instant,
    answered: bool,
}

impl Future for SlotDelivery {
    type Output = Result<(), ProduceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = std::task::ready!(Pin::new(&mut self.delivery).poll(cx));
        self.answered = true;
        match &outcome {
            Ok(()) => self.slot.succeeded(),
            Err(e) => self.slot.failed(e, &self.producer),
        }
        Poll::Ready(outcome)
    }
}

impl Drop for SlotDelivery {
    fn drop(&mut self) {
        // Given up after a while without an answer: the client's
        // produce_timeout passed while librdkafka still waits on the broker.
        // (A client that leaves at once is not the broker's doing.)
        if !self.answered && self.sent.elapsed().as_millis() >= UNANSWERED_MS {
            let unanswered = ProduceError::Unanswered;
            self.slot.failed(&unanswered, &self.producer);
        }
    }
}

/// How long tests wait for a mock broker's acknowledgement.
#[cfg(test)]
const ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use std::time::Duration;

    use rdkafka::mocking::MockCluster;

    use super::*;

    fn record<'a>(topic: &'a str) -> Record<'a> {
        Record {
            topic,
            key: b"k",
            value: b"v",
            color: "",
            metadata: None,
        }
    }

    /// A fatal error (librdkafka's test hook, as a fenced producer would
    /// report it) fails produces on the instance; the slot replaces it, and
    /// the next produce is acknowledged by the new one.
    #[test]
    fn a_producer_with_a_fatal_error_is_replaced() {
        let mock = MockCluster::new(1).expect("a librdkafka mock cluster");
        mock.create_topic("t", 1, 1).unwrap();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "5000")
            .set("message.max.bytes", "10000");
        let slot = Arc::new(ProducerSlot::new("c1", config).unwrap());
        let deadline = || Instant::now() + ACK_WAIT;
        glommio::LocalExecutorBuilder::default()
            .make()
            .expect("a glommio executor (io_uring, RLIMIT_MEMLOCK >= 512 KiB)")
            .run(async {
                let ack = slot.send(&record("t"), deadline()).await.unwrap();
                ack.await.unwrap();
                assert!(!slot.failing());
                // One client's record too large is not the cluster failing.
                let big = vec![b'x'; 20_000];
                let too_large = Record {
                    value: &big,
                    ..record("t")
                };
                assert!(slot.send(&too_large, deadline()).await.is_err());
                assert!(!slot.failing(), "a record too large is the client's");
                let first = slot.current();
                let reason = CString::new("test: fenced").unwrap();
                // SAFETY: a valid client handle and a NUL-terminated reason.
                unsafe {
                    rdkafka::bindings::rd_kafka_test_fatal_error(
                        first.client().native_ptr(),
                        rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
                        reason.as_ptr(),
                    );
                }
                assert!(slot.send(&record("t"), deadline()).await.is_err());
                assert!(slot.failing(), "/readyz must see the failure");
                assert!(!Arc::ptr_eq(&first, &slot.current()), "replaced");
                let ack = slot.send(&record("t"), deadline()).await.unwrap();
                ack.await.unwrap();
                assert!(!slot.failing(), "the new instance works");
                assert_eq!(slot.all().len(), 2);
            });
        for producer in slot.all() {
            let _ = producer.flush(Duration::from_secs(1));
        }
    }
}
