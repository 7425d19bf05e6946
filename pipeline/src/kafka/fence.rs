//! Fenced read-backs: a reader writes a fence record of its own to each
//! partition and reads up to it, because some brokers report stale high
//! watermarks (tansu 0.6), so the end of a topic is never taken from
//! `ListOffsets`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{
    client_config, close, default_setting, topic_partitions, Acks, KafkaSetupError, REQUEST_TIMEOUT,
};
use crate::config::KafkaConfig;

/// The key of a fence record (null value): written on restart to each output
/// partition, it marks how far the read-back must go. Its value is null, so a
/// compacted topic drops it and readers skip it.
pub const FENCE_KEY: &str = "__causeway_fence__";

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key (lossy UTF-8).
    pub key: String,
    /// Value.
    pub value: Vec<u8>,
}

/// Writes a fence record to each of `partitions` and returns their offsets.
///
/// With a plain producer of its own: an idempotent producer first acquires a
/// producer id, which librdkafka starts on a 500 ms timer, so its first write
/// took 0.5 to 1 s at every start. A fence needs neither ordering nor
/// deduplication (a repeated fence is skipped like the first).
fn write_fences(
    k: &KafkaConfig,
    partitions: &[(String, i32)],
) -> Result<BTreeMap<(String, i32), i64>, KafkaSetupError> {
    let mut c = client_config(k);
    c.set("enable.idempotence", "false")
        .set("acks", "all")
        .set("message.timeout.ms", "0")
        .set("linger.ms", "0");
    let producer: BaseProducer<Acks> = c
        .create_with_context(Acks::default())
        .map_err(KafkaSetupError::Client)?;
    let acks = producer.context().clone();
    for (topic, p) in partitions {
        let rec = BaseRecord::<str, (), usize>::with_opaque_to(topic, acks.register())
            .key(FENCE_KEY)
            .partition(*p);
        if let Err((source, _)) = producer.send(rec) {
            return Err(KafkaSetupError::Op {
                what: "writing a fence record",
                source,
            });
        }
    }
    let mark = acks.mark();
    let mut waiting = Instant::now();
    // This thread serves the delivery reports: `poll` with no wait serves what
    // is there (a poll with a timeout runs to its end).
    while !acks.wait_reported(mark, Duration::ZERO) {
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_micros(200));
        if waiting.elapsed() >= Duration::from_secs(5) {
            eprintln!("causeway: waiting for the broker to acknowledge fence records");
            waiting = Instant::now();
        }
    }
    let acked = acks.offsets.lock().map(|o| o.clone()).unwrap_or_default();
    let ends: BTreeMap<(String, i32), i64> = partitions
        .iter()
        .filter_map(|id| Some((id.clone(), *acked.get(id)?)))
        .collect();
    if acks.failed.load(Ordering::SeqCst) || ends.len() < partitions.len() {
        let topics: BTreeSet<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
        return Err(KafkaSetupError::ReadBack(
            topics.into_iter().collect::<Vec<_>>().join(", "),
        ));
    }
    Ok(ends)
}

/// Every (topic, partition) of `topics`.
fn partitions_of<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    k: &KafkaConfig,
    topics: &[&str],
) -> Result<Vec<(String, i32)>, KafkaSetupError> {
    let mut all = Vec::new();
    for topic in topics {
        for p in topic_partitions(consumer, k, topic)? {
            all.push((topic.to_string(), p));
        }
    }
    Ok(all)
}

/// The offset just after a fence record written now to each partition of
/// `topics`: every record written from now on is at or after it (an empty
/// topic list gives none).
pub fn fenced_ends(
    k: &KafkaConfig,
    topics: &[&str],
) -> Result<Vec<(String, i32, i64)>, KafkaSetupError> {
    let consumer: BaseConsumer = client_config(k)
        .set("group.id", format!("{}-readback", k.group_id))
        .create()
        .map_err(KafkaSetupError::Client)?;
    let fenced = partitions_of(&consumer, k, topics)?;
    drop(consumer);
    let ends = write_fences(k, &fenced)?;
    Ok(ends.into_iter().map(|((t, p), o)| (t, p, o + 1)).collect())
}

/// Reads `topics` from the beginning up to fence records written now, and
/// returns every record with a value, in partition order. The end is found
/// with our own fence, not the broker's high watermark, which some brokers
/// (tansu 0.6) report stale.
pub fn read_fenced(k: &KafkaConfig, topics: &[&str]) -> Result<Vec<Stored>, KafkaSetupError> {
    let op = |what| move |source| KafkaSetupError::Op { what, source };
    let mut c = client_config(k);
    // The read stops at the fence: a fetch need not wait for more (some
    // brokers, tansu 0.6, hold a fetch for its maximum wait).
    default_setting(&mut c, k, "fetch.wait.max.ms", "20");
    // A short-lived reader connects at once: with sparse connections its
    // first request waited up to `reconnect.backoff.ms / 2` (50 ms) for one.
    default_setting(&mut c, k, "enable.sparse.connections", "false");
    let consumer: BaseConsumer = c
        .set("group.id", format!("{}-readback", k.group_id))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(KafkaSetupError::Client)?;
    let mut tpl = TopicPartitionList::new();
    let fenced = partitions_of(&consumer, k, topics)?;
    for (topic, p) in &fenced {
        // From the beginning: some brokers (tansu 0.6) return nothing for a
        // fetch that starts inside a batch.
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(op("seeking"))?;
    }
    let mut ends = write_fences(k, &fenced)?;
    consumer.assign(&tpl).map_err(op("assigning partitions"))?;
    drop(tpl);
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT * 4;
    while !ends.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(KafkaSetupError::ReadBack(topics.join(", ")));
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                if let (Some(key), Some(v)) = (m.key(), m.payload()) {
                    out.push(Stored {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: String::from_utf8_lossy(key).into_owned(),
                        value: v.to_vec(),
                    });
                }
                let id = (m.topic().to_string(), m.partition());
                if ends.get(&id).is_some_and(|fence| m.offset() >= *fence) {
                    ends.remove(&id);
                }
            }
            Some(Err(e)) => eprintln!("causeway: reading back {topics:?}: {e}"),
            None => {}
        }
    }
    close(consumer);
    Ok(out)
}
