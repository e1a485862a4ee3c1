//! Shared test harness: the real stack (MariaDB and a Kafka broker started by
//! `scripts/test.sh`), a fresh database and fresh topics per test, the gateway as
//! a child process, a raw RESP client that asserts exact bytes, and an independent
//! rdkafka consumer to read back what the gateway produced.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

mod admin;
mod client;
mod db;
mod gateway;
mod kafka;

#[allow(unused_imports)]
pub use admin::*;
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use db::*;
#[allow(unused_imports)]
pub use gateway::*;
#[allow(unused_imports)]
pub use kafka::*;

/// How long any single wait in a test may take before it fails. Generous: the
/// machine is small and tests run in parallel.
pub const WAIT: Duration = Duration::from_secs(30);

const STACK_HINT: &str =
    "the integration tests need MariaDB and a Kafka broker: run them with scripts/test.sh \
     (or `scripts/stack.sh start DIR` and source DIR/env)";

pub fn mysql_port() -> u16 {
    std::env::var("DATABUS_TEST_MYSQL_PORT")
        .expect(STACK_HINT)
        .parse()
        .expect("DATABUS_TEST_MYSQL_PORT is a port")
}

pub fn brokers() -> String {
    std::env::var("DATABUS_TEST_BROKERS").expect(STACK_HINT)
}

/// A name unique to this test process and call: tests run in parallel and share
/// one MariaDB and one broker.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The group [`TestDb::grant_topic`] grants a topic to. One group per topic,
/// because a consumer group is the broker's, not the test database's: tests
/// that shared one group name across their topics all joined the same group
/// and kept rebalancing each other's members.
pub fn group_of(topic: &str) -> String {
    format!("g_{topic}")
}

/// The seed's own sample grant: `app_key1`, group `group_name1`, topic
/// `test156` (config/schema.sql), with `role`.
pub fn seed_dsn(role: &str) -> String {
    format!("app_key1:app_secret1@group_name1/topic=test156&role={role}")
}

/// The seed's sample credentials for `topic` (granted by
/// [`TestDb::grant_topic`]) with `role`.
pub fn dsn(topic: &str, role: &str) -> String {
    format!(
        "app_key1:app_secret1@{}/topic={topic}&role={role}",
        group_of(topic)
    )
}
