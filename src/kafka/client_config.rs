//! The librdkafka settings every client of a cluster starts from, producer
//! or consumer, and the rule that the operator's `[clusters.NAME.kafka]`
//! properties are applied last and win.

use rdkafka::config::ClientConfig;

use crate::config::ClusterConfig;

/// Upper bound of librdkafka's reconnect backoff. Its own default is 10 s, so
/// after a broker outage the gateway kept failing SETs for up to 10 s more
/// once the broker was back (3.5–7.1 s after a 7 s outage in
/// `scripts/chaos.sh`); 1 s is the Java client's default and brings that
/// under a second, for one connection attempt a second per broker and
/// client instance while a broker is down.
const RECONNECT_BACKOFF_MAX_MS: &str = "1000";

/// A cluster's common settings, before the client's own.
pub fn base(cluster: &ClusterConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cluster.brokers)
        .set("client.id", "databus")
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS);
    c
}

/// Applies the operator's properties (security settings above all) on top of
/// everything the gateway chose, so they win.
pub fn with_operator_properties(mut c: ClientConfig, cluster: &ClusterConfig) -> ClientConfig {
    for (key, value) in &cluster.kafka {
        c.set(key, value);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cluster(kafka: &str) -> ClusterConfig {
        let config = Config::parse(&format!(
            "[auth]\nmysql_url = \"mysql://root@127.0.0.1:3306/databus_db\"\n\
             [clusters.c1]\nbrokers = \"127.0.0.1:9093\"\n[clusters.c1.kafka]\n{kafka}"
        ))
        .unwrap();
        config.clusters["c1"].clone()
    }

    #[test]
    fn reconnects_back_off_at_most_a_second_unless_the_operator_says_otherwise() {
        let default = cluster("");
        let c = with_operator_properties(base(&default), &default);
        assert_eq!(c.get("reconnect.backoff.max.ms"), Some("1000"));
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9093"));

        let tuned = cluster("\"reconnect.backoff.max.ms\" = 5000\n");
        let c = with_operator_properties(base(&tuned), &tuned);
        assert_eq!(c.get("reconnect.backoff.max.ms"), Some("5000"));
    }
}
