//! Input topics and their partitions.
//!
//! **Assignment** is static and deterministic: the input partitions of all four
//! topics, sorted by (topic, partition), are dealt round-robin to the global
//! timely workers of all processes. Group rebalancing is not used, so a record's
//! worker never depends on timing.

use std::time::{Duration, Instant};

use causeway_schemas::Encoding;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use super::{Health, KafkaSetupError, REQUEST_TIMEOUT};
use crate::config::KafkaConfig;
use crate::sources::Topic;

/// One input partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPartition {
    /// Which input.
    pub topic: Topic,
    /// Topic name.
    pub topic_name: String,
    /// Partition number.
    pub partition: i32,
    /// Global ordinal among all input partitions (the `Origin` partition).
    pub id: u32,
    /// Encoding of its messages.
    pub encoding: Encoding,
}

impl InputPartition {
    /// `topic/partition`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.topic_name, self.partition)
    }
}

/// The input topics, names and encodings from the config, in [`Topic::ALL`] order.
pub fn inputs(k: &KafkaConfig) -> [(Topic, &'static str, &str, Encoding); 4] {
    [
        (Topic::Spans, "spans", &k.topics.spans, k.encodings.spans),
        (Topic::Logs, "logs", &k.topics.logs, k.encodings.logs),
        (
            Topic::Deploys,
            "deploys",
            &k.topics.deploys,
            k.encodings.deploys,
        ),
        (Topic::Audit, "audit", &k.topics.audit, k.encodings.audit),
    ]
}

/// Every input partition, sorted by (topic, partition). Gives up after
/// `REQUEST_TIMEOUT`, or as soon as librdkafka reports a failed TLS handshake
/// or SASL authentication (a setting to fix: waiting cannot help).
pub fn discover(
    consumer: &BaseConsumer<Health>,
    k: &KafkaConfig,
) -> Result<Vec<InputPartition>, KafkaSetupError> {
    // One metadata request for the four topics, retried in short steps.
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let md = loop {
        match consumer.fetch_metadata(None, Duration::from_secs(1)) {
            Ok(md) => break md,
            Err(source) => {
                // librdkafka's own errors wait in the client's queue until
                // served: serve them, so the context prints and records them.
                // Nothing is assigned yet, so no message can be taken.
                let _ = consumer.poll(Duration::from_millis(100));
                if let Some(reason) = consumer.context().auth_failure() {
                    return Err(KafkaSetupError::Authentication {
                        brokers: k.brokers.clone(),
                        reason,
                    });
                }
                if Instant::now() >= deadline {
                    return Err(KafkaSetupError::Unreachable {
                        brokers: k.brokers.clone(),
                        source,
                    });
                }
            }
        }
    };
    let mut out = Vec::new();
    for (topic, key, name, encoding) in inputs(k) {
        let parts = partitions_in(&md, name);
        if parts.is_empty() {
            return Err(KafkaSetupError::MissingTopic {
                topic: name.to_string(),
                key,
            });
        }
        for partition in parts {
            out.push(InputPartition {
                topic,
                topic_name: name.to_string(),
                partition,
                id: out.len() as u32,
                encoding,
            });
        }
    }
    Ok(out)
}

/// The partitions of `topic`, sorted; empty when the topic does not exist.
pub fn topic_partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    k: &KafkaConfig,
    topic: &str,
) -> Result<Vec<i32>, KafkaSetupError> {
    let md = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|source| KafkaSetupError::Unreachable {
            brokers: k.brokers.clone(),
            source,
        })?;
    Ok(partitions_in(&md, topic))
}

/// The partitions of `topic` in `md`, sorted; empty when it is not there.
fn partitions_in(md: &rdkafka::metadata::Metadata, topic: &str) -> Vec<i32> {
    let mut parts: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions())
        .map(|p| p.id())
        .collect();
    parts.sort_unstable();
    parts
}
