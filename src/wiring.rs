//! The real parts behind a session's handles: Kafka's producers and consumer
//! members behind the session's `Backend` traits, INFO read from the metrics'
//! sources. The one place that knows both sides, so that the session knows
//! nothing of Kafka and Kafka nothing of sessions.

use std::future::Future;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::kafka::consumer::{self, ConsumerService};
use crate::kafka::producer::{ProduceError, Producers};
use crate::kafka::slot::{ProducerSlot, SlotDelivery};
use crate::message::{Fetched, Pick, Record};
use crate::metrics::{self, Sources};
use crate::session::backend::{Asker, Backend, JoinError, Membership, Produce, Undelivered};

/// One shard's way to Kafka.
pub struct KafkaBackend {
    pub producers: Arc<Producers>,
    pub consumers: Arc<ConsumerService>,
    pub sources: Arc<Sources>,
    /// This shard's index (0-based): which producer it uses when each shard
    /// has its own (`server.producers = "per_shard"`).
    pub shard: usize,
}

impl Backend for KafkaBackend {
    type Producer = Arc<ProducerSlot>;
    type Member = consumer::Member;

    fn producer(&self, cluster: &str) -> Option<Arc<ProducerSlot>> {
        self.producers.get(cluster, self.shard).cloned()
    }

    fn join(
        &self,
        cluster: &str,
        group: &str,
        topic: &str,
        lag: Arc<AtomicI64>,
    ) -> Result<consumer::Member, JoinError> {
        self.consumers
            .join(cluster, group, topic, lag)
            .map_err(|e| match e {
                consumer::JoinError::UnknownCluster => JoinError::UnknownCluster,
                consumer::JoinError::Full => JoinError::Full,
            })
    }

    fn info(&self, sections: &[Bytes], asker: &Asker) -> String {
        metrics::info::render(&self.sources, sections, asker)
    }
}

impl Produce for Arc<ProducerSlot> {
    type Error = ProduceError;
    type Delivery = SlotDelivery;

    async fn enqueue<'a>(
        &'a self,
        record: &'a Record<'a>,
        deadline: Instant,
    ) -> Result<SlotDelivery, ProduceError> {
        self.send(record, deadline).await
    }
}

impl Membership for consumer::Member {
    fn fetch(&self, pick: Pick) -> impl Future<Output = Fetched> + 'static {
        consumer::Member::fetch(self, pick)
    }

    fn lag(&self) -> Vec<(i32, i64)> {
        consumer::Member::lag(self)
    }

    fn commit(&self, partition: i32, offset: i64) -> Result<(), Undelivered> {
        consumer::Member::commit(self, partition, offset)
            .map_err(|consumer::Undelivered| Undelivered)
    }
}
