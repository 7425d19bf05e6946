//! Broker health as librdkafka reports it: the client context of every
//! consumer and producer sets `causeway_kafka_up` and counts errors.

use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

use crate::metrics::Metrics;

/// Client context: logs client errors, feeds the health metrics and keeps the
/// partition end offsets reported by librdkafka's statistics.
#[derive(Clone, Default)]
pub struct Health {
    /// Metrics to update, if any.
    pub metrics: Option<std::sync::Arc<Metrics>>,
    /// End offset (last stable offset) of each consumed (topic, partition).
    pub ends: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(String, i32), i64>>>,
    /// The first failed TLS handshake or SASL authentication librdkafka reported.
    pub auth_failure: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl Health {
    /// The last reported end offset of a partition.
    pub fn end(&self, topic: &str, partition: i32) -> Option<i64> {
        self.ends
            .lock()
            .ok()?
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// The first failed TLS handshake or SASL authentication, if any: a
    /// setting to fix, not an outage to wait out.
    pub fn auth_failure(&self) -> Option<String> {
        self.auth_failure.lock().ok()?.clone()
    }
}

impl ClientContext for Health {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.note_stats(statistics)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let transport = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        );
        eprintln!("causeway: kafka: {reason} ({error})");
        let auth = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
        ) || reason.contains("SSL handshake failed");
        if auth {
            if let Ok(mut first) = self.auth_failure.lock() {
                first.get_or_insert_with(|| reason.to_string());
            }
        }
        if let Some(m) = &self.metrics {
            let kind = if transport { "transport" } else { "other" };
            m.kafka_errors.with_label_values(&[kind]).inc();
            if transport {
                m.kafka_up.set(0);
            }
        }
    }
}

impl ConsumerContext for Health {}

impl Health {
    fn note_stats(&self, stats: rdkafka::Statistics) {
        let Ok(mut ends) = self.ends.lock() else {
            return;
        };
        for (name, t) in stats.topics {
            for (p, s) in t.partitions {
                let end = if s.ls_offset >= 0 {
                    s.ls_offset
                } else {
                    s.hi_offset
                };
                if p >= 0 && end >= 0 {
                    ends.insert((name.clone(), p), end);
                }
            }
        }
    }
}
