//! The publisher role: `SET` and `HSET` become produces (protocol.md §4).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::backend::Produce;
use super::budget::ByteBudget;
use super::{Limits, Reply};
use crate::auth::Dsn;
use crate::errors;
use crate::message::{metadata_header, Record};
use crate::metrics::ShardStats;

pub struct Publisher<P> {
    /// Shared with in-flight produces, which outlive the command that made them.
    target: Rc<Target<P>>,
    pub cluster: String,
    limits: Limits,
    /// The connection's budget for values not yet handed to the producer.
    budget: Rc<ByteBudget>,
}

struct Target<P> {
    topic: String,
    color: String,
    producer: P,
    stats: Arc<ShardStats>,
}

impl<P: Produce + 'static> Publisher<P> {
    pub fn new(
        dsn: &Dsn,
        cluster: String,
        producer: P,
        limits: Limits,
        stats: Arc<ShardStats>,
        budget: Rc<ByteBudget>,
    ) -> Publisher<P> {
        Publisher {
            target: Rc::new(Target {
                topic: dsn.topic.clone(),
                color: dsn.color.clone(),
                producer,
                stats,
            }),
            cluster,
            limits,
            budget,
        }
    }

    /// Moves this connection to another cluster's producer (the app was moved in
    /// MySQL); produces already in flight finish on the old one.
    pub fn switch_cluster(&mut self, cluster: String, producer: P) {
        self.target = Rc::new(Target {
            topic: self.target.topic.clone(),
            color: self.target.color.clone(),
            producer,
            stats: Arc::clone(&self.target.stats),
        });
        self.cluster = cluster;
    }

    /// `SET <key> <value>`
    pub fn set(&self, key: Bytes, value: Bytes) -> Reply {
        self.produce(key, value, None)
    }

    /// `HSET <key> <metadata> <value>`
    pub fn hset(&self, key: Bytes, metadata: &[u8], value: Bytes) -> Reply {
        match metadata_header(metadata) {
            Some(header) => self.produce(key, value, Some(header)),
            None => Reply::error(errors::INVALID_METADATA),
        }
    }

    fn produce(&self, key: Bytes, value: Bytes, metadata: Option<Vec<u8>>) -> Reply {
        if value.len() > self.limits.max_value_bytes {
            return Reply::error(errors::VALUE_TOO_LARGE);
        }
        let target = Rc::clone(&self.target);
        let timeout = self.limits.produce_timeout;
        let started = Instant::now();
        let deadline = started + timeout;
        let budget = Rc::clone(&self.budget);
        Reply::start(async move {
            let acked = async {
                let enqueued = {
                    let record = Record {
                        topic: &target.topic,
                        key: &key,
                        value: &value,
                        color: &target.color,
                        metadata: metadata.as_deref(),
                    };
                    let mut enqueue = std::pin::pin!(target.producer.enqueue(&record, deadline));
                    match futures_lite::future::poll_once(&mut enqueue).await {
                        Some(enqueued) => enqueued,
                        None => {
                            // The producer's queue is full: the request's
                            // bytes stay held until it takes them, and count
                            // against the budgets meanwhile.
                            let _held = budget.take(key.len() + value.len());
                            enqueue.await
                        }
                    }
                };
                // The producer has its own copy: the request's bytes (a slice
                // of the read buffer) go back now, not at the acknowledgement.
                drop((key, value, metadata));
                let delivery = enqueued.map_err(|e| errors::kafka(&e))?;
                delivery.await.map_err(|e| errors::kafka(&e))
            };
            // The client's bound. librdkafka keeps trying for delivery_timeout,
            // longer, so that a leader failover does not make it resend
            // records under a new producer epoch (config.rs): a record
            // answered with this error may still be written.
            let timer = async {
                glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
                Err(errors::produce_timed_out(timeout))
            };
            let outcome = futures_lite::future::or(acked, timer).await;
            target.stats.produced(started.elapsed(), outcome.is_ok());
            match outcome {
                Ok(()) => Reply::OK,
                Err(text) => Reply::error(text),
            }
        })
    }
}
