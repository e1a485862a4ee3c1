//! How librdkafka's logs and errors reach our logs: through `tracing`, tagged
//! with the cluster, once each, at a level an operator can act on.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// The librdkafka client context of every producer; a consumer member's
/// context (`consumer::MemberContext`) wraps one.
pub struct KafkaContext {
    pub cluster: String,
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let cluster = &self.cluster;
        match level {
            // librdkafka reports broker connection failures here and again
            // through `error` below; the latter is the one kept at warn.
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                tracing::info!(target: "librdkafka", %cluster, facility, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::debug!(target: "librdkafka", %cluster, facility, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::trace!(target: "librdkafka", %cluster, facility, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", cluster = %self.cluster, %error, "{reason}");
    }
}
