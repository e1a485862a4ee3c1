//! The publisher role: `SET` and `HSET` become produces (protocol.md §4).

use std::cell::Cell;
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
use crate::quota::AppQuota;

pub struct Publisher<P> {
    /// Shared with in-flight produces, which outlive the command that made them.
    target: Rc<Target<P>>,
    pub cluster: String,
    limits: Limits,
    /// The connection's budget for values not yet handed to the producer.
    budget: Rc<ByteBudget>,
    /// SETs waiting for room in the producer's queue: while there are any,
    /// new ones queue behind them.
    waiting: Rc<Cell<usize>>,
    /// The app's rate caps, shared with its other connections.
    quota: Arc<AppQuota>,
    /// Until when going over a rate cap pauses this connection's reading.
    paused: Cell<Option<Instant>>,
}

/// One SET among those waiting for room; counted out when dropped.
struct Waiting(Rc<Cell<usize>>);

impl Waiting {
    fn enter(count: &Rc<Cell<usize>>) -> Waiting {
        count.set(count.get() + 1);
        Waiting(Rc::clone(count))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

struct Target<P> {
    topic: String,
    color: String,
    producer: P,
    stats: Arc<ShardStats>,
}

impl<P> Target<P> {
    fn record<'a>(
        &'a self,
        key: &'a [u8],
        value: &'a [u8],
        metadata: Option<&'a [u8]>,
    ) -> Record<'a> {
        Record {
            topic: &self.topic,
            key,
            value,
            color: &self.color,
            metadata,
        }
    }
}

impl<P: Produce + 'static> Publisher<P> {
    pub fn new(
        dsn: &Dsn,
        cluster: String,
        producer: P,
        limits: Limits,
        stats: Arc<ShardStats>,
        budget: Rc<ByteBudget>,
        quota: Arc<AppQuota>,
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
            waiting: Rc::new(Cell::new(0)),
            quota,
            paused: Cell::new(None),
        }
    }

    /// Until when the app's rate cap pauses this connection's reading, if
    /// it does now.
    pub fn paused_until(&self) -> Option<Instant> {
        let until = self.paused.get()?;
        // A cap removed meanwhile ends the pause.
        if until > Instant::now() && self.quota.rate_capped() {
            return Some(until);
        }
        self.paused.set(None);
        None
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
        // A record's size for the bytes cap: its key and value, what the
        // client sent to be stored.
        if let Some(pause) = self.quota.charge(1, (key.len() + value.len()) as u64) {
            let now = Instant::now();
            let until = now + pause;
            let before = self.paused.get().map_or(now, |u| u.max(now));
            if until > before {
                self.quota.paused_for(until - before);
                self.paused.set(Some(until));
            }
        }
        let target = Rc::clone(&self.target);
        let timeout = self.limits.produce_timeout;
        let started = Instant::now();
        let deadline = started + timeout;
        let budget = Rc::clone(&self.budget);
        let waiting = Rc::clone(&self.waiting);
        Reply::start(async move {
            let (mut key, mut value) = (key, value);
            let acked = async {
                // At once, unless earlier SETs of this connection wait for
                // room: then behind them, so that records keep their order.
                let at_once = if waiting.get() == 0 {
                    let record = target.record(&key, &value, metadata.as_deref());
                    let enqueue = target.producer.enqueue(&record, deadline);
                    futures_lite::future::poll_once(enqueue).await
                } else {
                    None
                };
                let enqueued = match at_once {
                    Some(enqueued) => enqueued,
                    None => {
                        // The producer's queue is full. Wait with copies, not
                        // slices that would keep whole read buffers alive, and
                        // count them against the budgets meanwhile.
                        key = Bytes::copy_from_slice(&key);
                        value = Bytes::copy_from_slice(&value);
                        let _held = budget.take(key.len() + value.len());
                        let _queued = Waiting::enter(&waiting);
                        let record = target.record(&key, &value, metadata.as_deref());
                        target.producer.enqueue(&record, deadline).await
                    }
                };
                // The producer has its own copy: the request's bytes go back
                // now, not at the acknowledgement.
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
