//! Fakes of a session's handles, for tests that run sessions and
//! connections in-process: a backend whose producer records what it is given
//! (and may never answer), whose members hand out prepared batches; and the
//! auth data they check against.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::backend::{Asker, Backend, JoinError, Membership, Produce, Undelivered};
use super::{Handles, Limits};
use crate::auth::limiter::{FailedAuthLimiter, Prefixes};
use crate::auth::snapshot::{AppRow, AuthRow, OP_PUBLISH, OP_SUBSCRIBE};
use crate::auth::{AuthHub, AuthSnapshot};
use crate::clients::Clients;
use crate::message::{Consumed, Fetched, Pick, Record};
use crate::metrics::ShardStats;

/// Failed AUTHs allowed per address by [`handles`].
pub const MAX_AUTH_FAILURES: u32 = 10;

/// A record as the fake producer received it.
#[derive(Debug, PartialEq, Eq)]
pub struct Produced {
    pub cluster: String,
    pub topic: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub color: String,
    pub metadata: Option<Vec<u8>>,
}

/// What the fakes saw, and how they answer.
#[derive(Default)]
pub struct World {
    pub produced: Vec<Produced>,
    /// Produces never acknowledged (a broker that does not answer).
    pub broker_silent: bool,
    /// What each MGET gets, in order; `Gone` once they run out.
    pub batches: Vec<FakeBatch>,
    /// (group, topic) of every join.
    pub joined: Vec<(String, String)>,
    /// (partition, offset) of every commit.
    pub committed: Vec<(i32, i64)>,
    /// Commits the member refuses as never delivered.
    pub undelivered: Vec<(i32, i64)>,
}

/// What a fake member answers an MGET with.
pub enum FakeBatch {
    /// Records of topic `topic1`, partition 0, offsets from 0, as (value,
    /// color header): the MGET's pick chooses and encodes them.
    Records(Vec<(&'static str, &'static str)>),
    /// This answer, as it is.
    Answer(Fetched),
}

pub type Shared = Rc<RefCell<World>>;

pub struct FakeBackend {
    pub world: Shared,
    pub clusters: Vec<&'static str>,
}

#[derive(Clone)]
pub struct FakeProducer {
    world: Shared,
    cluster: String,
}

pub struct FakeMember {
    world: Shared,
}

impl Backend for FakeBackend {
    type Producer = FakeProducer;
    type Member = FakeMember;

    fn producer(&self, cluster: &str) -> Option<FakeProducer> {
        self.clusters.contains(&cluster).then(|| FakeProducer {
            world: Rc::clone(&self.world),
            cluster: cluster.to_owned(),
        })
    }

    fn join(
        &self,
        cluster: &str,
        group: &str,
        topic: &str,
        lag: Arc<std::sync::atomic::AtomicI64>,
    ) -> Result<FakeMember, JoinError> {
        lag.store(7, std::sync::atomic::Ordering::Relaxed);
        if !self.clusters.contains(&cluster) {
            return Err(JoinError::UnknownCluster);
        }
        let joined = (group.to_owned(), topic.to_owned());
        self.world.borrow_mut().joined.push(joined);
        Ok(FakeMember {
            world: Rc::clone(&self.world),
        })
    }

    fn info(&self, sections: &[Bytes], asker: &Asker) -> String {
        let quota = asker.quota.map(|q| q.limits.records_per_sec);
        format!(
            "# Fake\r\nsections:{}\r\nrecords_per_sec:{quota:?}\r\n",
            sections.len()
        )
    }
}

impl Produce for FakeProducer {
    type Error = &'static str;
    type Delivery = Pin<Box<dyn Future<Output = Result<(), &'static str>>>>;

    async fn enqueue<'a>(
        &'a self,
        record: &'a Record<'a>,
        _deadline: std::time::Instant,
    ) -> Result<Self::Delivery, &'static str> {
        let mut world = self.world.borrow_mut();
        world.produced.push(Produced {
            cluster: self.cluster.clone(),
            topic: record.topic.to_owned(),
            key: record.key.to_vec(),
            value: record.value.to_vec(),
            color: record.color.to_owned(),
            metadata: record.metadata.map(<[u8]>::to_vec),
        });
        if world.broker_silent {
            Ok(Box::pin(futures_lite::future::pending()))
        } else {
            Ok(Box::pin(futures_lite::future::ready(Ok(()))))
        }
    }
}

impl Membership for FakeMember {
    fn fetch(&self, pick: Pick) -> impl std::future::Future<Output = Fetched> + 'static {
        let world = Rc::clone(&self.world);
        async move {
            let mut world = world.borrow_mut();
            if world.batches.is_empty() {
                return Fetched::Gone;
            }
            match world.batches.remove(0) {
                FakeBatch::Answer(answer) => answer,
                FakeBatch::Records(records) => Fetched::Messages(
                    records
                        .iter()
                        .zip(0..)
                        .filter_map(|(&(value, color), offset)| {
                            pick(&fake_record(value, color, offset)).map(|(encoded, _)| encoded)
                        })
                        .collect(),
                ),
            }
        }
    }

    fn lag(&self) -> Vec<(i32, i64)> {
        vec![(0, 7)]
    }

    fn commit(&self, partition: i32, offset: i64) -> Result<(), Undelivered> {
        let mut world = self.world.borrow_mut();
        if world.undelivered.contains(&(partition, offset)) {
            return Err(Undelivered);
        }
        world.committed.push((partition, offset));
        Ok(())
    }
}

pub fn app(id: i64, key: &str, cluster: &str) -> AppRow {
    AppRow {
        id,
        key: key.into(),
        secret: format!("secret{id}"),
        cluster: cluster.into(),
        deleted_at: None,
        quota: Default::default(),
    }
}

pub fn grant(id: i64, app_id: i64, group: &str, topic: &str, operation: i64) -> AuthRow {
    AuthRow {
        id,
        app_id,
        group: Some(group.into()),
        operation: Some(operation),
        topic: topic.into(),
        deleted_at: None,
    }
}

pub fn snapshot(apps: Vec<AppRow>, grants: Vec<AuthRow>) -> AuthSnapshot {
    AuthSnapshot::build(apps, grants, SystemTime::now()).snapshot
}

/// app1 (cluster c1) may publish and subscribe with group1 on topic1;
/// app2 (cluster c1) publishes with group2 on topic1; app3's cluster is not
/// configured.
pub fn standard_grants() -> AuthSnapshot {
    snapshot(
        vec![
            app(1, "app1", "c1"),
            app(2, "app2", "c1"),
            app(3, "app3", "nowhere"),
        ],
        vec![
            grant(1, 1, "group1", "topic1", OP_PUBLISH | OP_SUBSCRIBE),
            grant(2, 2, "group2", "topic1", OP_PUBLISH),
            grant(3, 3, "group3", "topic1", OP_PUBLISH),
        ],
    )
}

/// Handles over `world` with [`standard_grants`], clusters c1 and c2,
/// 16-byte values and a 50 ms produce timeout.
pub fn handles(
    world: &Shared,
    stats: Arc<ShardStats>,
    clients: Arc<Clients>,
) -> Handles<FakeBackend> {
    Handles {
        backend: FakeBackend {
            world: Rc::clone(world),
            clusters: vec!["c1", "c2"],
        },
        auth: Arc::new(AuthHub::new(standard_grants())),
        auth_failures: Arc::new(FailedAuthLimiter::new(
            MAX_AUTH_FAILURES,
            Duration::from_secs(60),
            Prefixes::DEFAULT,
        )),
        clients,
        stats,
        buffered: super::budget::ProcessBudget::new(64 << 20),
        limits: Limits {
            max_value_bytes: 16,
            produce_timeout: Duration::from_millis(50),
            max_connection_bytes: 1 << 20,
        },
    }
}

/// A record of [`FakeBatch::Records`].
pub fn fake_record<'a>(value: &'a str, color: &'a str, offset: i64) -> Consumed<'a> {
    Consumed {
        key: None,
        value: Some(value.as_bytes()),
        topic: "topic1",
        partition: 0,
        offset,
        timestamp_ms: Some(0),
        metadata: None,
        color: Some(color.as_bytes()),
    }
}
