//! mock-broker: the Kafka of scripts/bench.sh's `--broker mock` runs, in a
//! process of its own so that the gateway and the direct baselines share it.

use std::time::Duration;

use crate::args::Args;
use crate::Result;

/// mock-broker: a librdkafka mock cluster (one broker) holding the topics, for
/// runs where the gateway's own cost must not hide behind a real broker's.
pub async fn mock_broker(args: &Args) -> Result<String> {
    let cluster = rdkafka::mocking::MockCluster::new(1)?;
    for topic in args.topic.split(',').filter(|t| !t.is_empty()) {
        cluster.create_topic(topic, args.partitions, 1)?;
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "bootstrap={}", cluster.bootstrap_servers())?;
        out.flush()?;
    }
    // Serves from librdkafka's own threads until the process is killed.
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
