//! Kafka source for `causeway run`: partition discovery and assignment,
//! checkpoints (restart offsets with their metadata), and the client context
//! that reports broker health.
//!
//! **Assignment** is static and deterministic: the input partitions of all four
//! topics, sorted by (topic, partition), are dealt round-robin to the global
//! timely workers of all processes. Group rebalancing is not used, so a record's
//! worker never depends on timing.
//!
//! **Checkpoints** are records of the checkpoint topic ([`CheckpointRecord`],
//! keyed by group, topic and partition; the newest per key wins). Each holds the
//! partition's *restart point* (the first message still needed to rebuild
//! correlation state for windows not yet emitted) and a [`Checkpoint`]: the
//! emitted frontier, the partition's newest event time before the restart point
//! (so lateness is judged exactly as before), the read position (dead letters
//! below it are already written) and, on worker 0, the output offsets an
//! exactly-once restart reads back. The consumer group's committed offsets mirror
//! them for lag monitoring; they are not read back, because not every broker
//! keeps offset-commit metadata (tansu 0.6 drops it).

use std::collections::BTreeMap;
use std::time::Duration;

use causeway_schemas::Encoding;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};

use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use crate::sources::Topic;

/// Timeout of metadata and offset requests.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A Kafka problem at start-up, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// A client could not be created (bad librdkafka setting).
    #[error("cannot create Kafka client: {0}; check [kafka] and [kafka.librdkafka] in the config")]
    Client(KafkaError),
    /// Metadata could not be fetched.
    #[error(
        "cannot reach Kafka at {brokers}: {source}; check kafka.brokers and that the cluster is up"
    )]
    Unreachable {
        /// Brokers.
        brokers: String,
        /// Cause.
        source: KafkaError,
    },
    /// An input topic is missing.
    #[error("topic {topic:?} does not exist; create it or set kafka.topics.{key}")]
    MissingTopic {
        /// Topic name.
        topic: String,
        /// Config key.
        key: &'static str,
    },
    /// A topic could not be read back to the fence written at start-up.
    #[error("reading back {0} did not reach the fence record within 2 minutes; check that the broker is up and the topics are readable")]
    ReadBack(String),
    /// Another Kafka operation failed.
    #[error("Kafka {what} failed: {source}")]
    Op {
        /// What was attempted.
        what: &'static str,
        /// Cause.
        source: KafkaError,
    },
}

/// Client context: logs client errors, feeds the health metrics and keeps the
/// partition end offsets reported by librdkafka's statistics.
#[derive(Clone, Default)]
pub struct Health {
    /// Metrics to update, if any.
    pub metrics: Option<std::sync::Arc<Metrics>>,
    /// End offset (last stable offset) of each consumed (topic, partition).
    pub ends: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(String, i32), i64>>>,
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

/// A client config with the brokers and every passthrough setting.
pub fn client_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    for (key, v) in &k.librdkafka {
        c.set(key, v);
    }
    c
}

/// Sets `key` unless the passthrough settings chose a value.
pub fn default_setting(c: &mut ClientConfig, k: &KafkaConfig, key: &str, value: &str) {
    if !k.librdkafka.contains_key(key) {
        c.set(key, value);
    }
}

/// The settings of `causeway run`'s input consumers (one per worker): the
/// brokers and passthrough settings, the group, offsets managed by Causeway
/// (never auto-committed or auto-stored), committed reads only, and statistics
/// every second (partition ends for the lag gauge). The broker benchmark's bare
/// consumer uses the same settings.
pub fn consumer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = client_config(k);
    // One consumer reads many partitions, some empty or idle: a fetch must not
    // wait the default 500 ms for them.
    default_setting(&mut c, k, "fetch.wait.max.ms", "20");
    c.set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", "1000");
    c
}

/// Closes a consumer, waiting for it in 1 ms steps. Dropping an open consumer
/// closes it too, but checks whether it is closed only every 100 ms, which
/// added 0.1 s to every start (the checkpoint read-back) and every exit.
pub fn close<C: ConsumerContext>(consumer: BaseConsumer<C>) {
    if consumer.close_queue().is_ok() {
        while !consumer.closed() {
            consumer.poll(Duration::from_millis(1));
        }
    }
}

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

/// Every input partition, sorted by (topic, partition).
pub fn discover<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    k: &KafkaConfig,
) -> Result<Vec<InputPartition>, KafkaSetupError> {
    // One metadata request for the four topics.
    let md = consumer
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .map_err(|source| KafkaSetupError::Unreachable {
            brokers: k.brokers.clone(),
            source,
        })?;
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

/// What a committed offset's metadata records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every output of a time below this was acknowledged when the checkpoint was taken.
    pub emitted: u64,
    /// The partition's newest event time (ns) before the restart offset.
    pub max_seen: Option<u64>,
    /// The read position: dead letters below it are already written.
    pub read: u64,
    /// Kafka timestamp (ms) of the restart message, to seek by time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts_ms: Option<i64>,
    /// Output (topic, partition, offset): every output record of a time at or
    /// after `emitted` is at or after these offsets. Written by worker 0 only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out: Vec<(String, i32, i64)>,
}

/// A partition's committed restart offset and checkpoint, if it has one.
pub type Committed = Option<(u64, Checkpoint)>;

/// One record of the checkpoint topic: the restart offset of a partition and
/// its checkpoint. Keyed by [`checkpoint_key`]; the newest record of a key wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The restart offset.
    pub offset: u64,
    /// The checkpoint.
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
}

/// The checkpoint-topic key of a partition for a consumer group.
pub fn checkpoint_key(group: &str, p: &InputPartition) -> String {
    format!("{group}|{}|{}", p.topic_name, p.partition)
}

/// The newest checkpoint of each of `parts`, in order, from the records of the
/// checkpoint topic.
pub fn latest_checkpoints(
    group: &str,
    parts: &[InputPartition],
    records: &[crate::sinks::kafka::Stored],
) -> Vec<Committed> {
    let mut latest: BTreeMap<&str, (u64, Checkpoint)> = BTreeMap::new();
    for s in records {
        if let Ok(r) = serde_json::from_slice::<CheckpointRecord>(&s.value) {
            latest.insert(s.key.as_str(), (r.offset, r.checkpoint));
        }
    }
    parts
        .iter()
        .map(|p| latest.get(checkpoint_key(group, p).as_str()).cloned())
        .collect()
}

/// A position in a partition: a message offset, the partition's newest event
/// time before it, and the message's Kafka timestamp (used to seek: some brokers
/// (tansu 0.6) return nothing for a fetch that starts inside a record batch, but
/// a timestamp lookup gives a batch start at or before the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// Message offset.
    pub offset: u64,
    /// Newest event time (ns) of the partition before this message.
    pub max_seen: Option<u64>,
    /// The message's timestamp (ms), if known.
    pub ts_ms: Option<i64>,
}

/// Per-partition bookkeeping of which messages are still needed.
///
/// A message is needed while some output time at or after the emitted frontier
/// may depend on it: while the latest retraction time of its records is at or
/// past the frontier (a record present until `leave` counts in windows final at
/// times up to `leave`). Keyed by that time, each entry keeps the first
/// message's [`Mark`].
#[derive(Debug, Default, Clone)]
pub struct Retention {
    by_leave: BTreeMap<u64, Mark>,
}

impl Retention {
    /// Notes that the message at `mark` is needed up to time `leave`.
    pub fn note(&mut self, leave: u64, mark: Mark) {
        self.by_leave.entry(leave).or_insert(mark);
    }

    /// The restart point once every output before `emitted` is durable: the
    /// first needed message, or `next` (the next message to read) when nothing
    /// is needed.
    pub fn restart_point(&mut self, emitted: u64, next: Mark) -> Mark {
        self.by_leave = self.by_leave.split_off(&emitted);
        self.by_leave
            .values()
            .min_by_key(|m| m.offset)
            .copied()
            .unwrap_or(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_point_is_the_first_message_still_needed() {
        let mark = |offset, seen| Mark {
            offset,
            max_seen: Some(seen),
            ts_ms: Some(seen as i64),
        };
        let mut r = Retention::default();
        r.note(200, mark(10, 1));
        r.note(140, mark(11, 2));
        r.note(200, mark(12, 3));
        r.note(260, mark(13, 4));
        // Nothing emitted: the first message.
        assert_eq!(r.restart_point(0, mark(14, 5)), mark(10, 1));
        // Times below 201 are emitted: messages needed only up to 200 are not.
        assert_eq!(r.restart_point(201, mark(14, 5)), mark(13, 4));
        // Everything emitted: the next message.
        assert_eq!(r.restart_point(300, mark(14, 5)), mark(14, 5));
    }

    #[test]
    fn checkpoint_metadata_round_trips() {
        let cp = Checkpoint {
            emitted: 1_700_000_120,
            max_seen: Some(1_700_000_100_000_000_000),
            read: 42,
            ts_ms: Some(1_700_000_100_000),
            out: vec![("causeway_sli".into(), 0, 7)],
        };
        let s = serde_json::to_string(&cp).unwrap();
        assert_eq!(serde_json::from_str::<Checkpoint>(&s).unwrap(), cp);
    }
}
