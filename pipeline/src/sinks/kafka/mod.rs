//! Kafka sinks for `causeway run`: `causeway_sli`, `causeway_service_graph`
//! (keyed JSON, on worker 0), and per worker `causeway_dlq` (original bytes) and
//! `causeway_checkpoints`.
//!
//! Output records are keyed by their dimensions, so a repeat after a crash (the
//! `at_least_once` guarantee) has the same key and value as the first write. Each
//! finalization time is flushed and acknowledged before the sink returns, which
//! lets the emitted frontier (see `dataflow::build`) mean "acknowledged".
//!
//! Under `exactly_once`, a restarted sink first reads back what was written since
//! the last checkpoint ([`written_keys`]) and skips those records: the output is
//! deterministic, so the skipped records are the ones it would have written.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_schemas::records::{
    AlertRecord, DlqRecord, EvidenceRecord, GraphMetricsRecord, ServiceGraphRecord, SliRecord,
    SloRecord, SpanMetricsRecord,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::dataflow::OutputSink;
use crate::metrics::Metrics;
use crate::sources::kafka::{
    client_config, default_setting, topic_partitions, Health, KafkaSetupError, REQUEST_TIMEOUT,
};

/// Producer context: remembers the newest acknowledged offset per partition and
/// whether any delivery failed for good.
#[derive(Clone, Default)]
pub struct Acks {
    health: Health,
    /// Newest acknowledged offset per (topic, partition).
    pub offsets: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
    /// Set when a message could not be delivered.
    pub failed: Arc<AtomicBool>,
}

impl ClientContext for Acks {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.health.error(error, reason)
    }
}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                if let Ok(mut o) = self.offsets.lock() {
                    let e = o
                        .entry((m.topic().to_string(), m.partition()))
                        .or_insert(-1);
                    *e = (*e).max(m.offset());
                }
            }
            Err((e, m)) => {
                eprintln!(
                    "causeway: delivery to {} failed for good: {e}; stopping before the next checkpoint",
                    m.topic()
                );
                self.failed.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// A producer whose writes are acknowledged by all in-sync replicas and never
/// given up on while the broker is away (`message.timeout.ms = 0`).
pub fn producer(
    k: &KafkaConfig,
    metrics: Option<Arc<Metrics>>,
) -> Result<ThreadedProducer<Acks>, KafkaSetupError> {
    let acks = Acks {
        health: Health {
            metrics,
            ..Health::default()
        },
        ..Acks::default()
    };
    let mut c = client_config(k);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0");
    default_setting(&mut c, k, "linger.ms", "5");
    c.create_with_context(acks).map_err(KafkaSetupError::Client)
}

/// Blocks until everything produced so far is acknowledged.
pub fn flush(p: &ThreadedProducer<Acks>) {
    while let Err(e) = p.flush(Duration::from_secs(5)) {
        eprintln!("causeway: waiting for the broker to acknowledge outputs: {e}");
    }
}

/// Produces `payload` to `topic`, retrying while the local queue is full.
fn send(
    p: &ThreadedProducer<Acks>,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    headers: Option<OwnedHeaders>,
) {
    let mut rec = BaseRecord::to(topic).key(key).payload(payload);
    if let Some(h) = headers {
        rec = rec.headers(h);
    }
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, back)) => {
                rec = back;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The key of an SLI record: its dimensions.
pub fn sli_key(r: &SliRecord) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        r.sli, r.service, r.environment, r.version, r.window_start
    )
}

/// The key of a service-graph record.
pub fn edge_key(r: &ServiceGraphRecord) -> String {
    format!("{}|{}|{}", r.client, r.server, r.window_start)
}

/// The key of an SLO record: SLO target and evaluation time.
pub fn slo_key(r: &SloRecord) -> String {
    format!(
        "{}|{}|{}|{}",
        r.slo, r.service, r.environment, r.evaluated_at
    )
}

/// The key of an evidence record.
pub fn evidence_key(r: &EvidenceRecord) -> String {
    match r {
        EvidenceRecord::Exemplars(x) => format!(
            "exemplars|{}|{}|{}|{}",
            x.sli, x.service, x.environment, x.window_start
        ),
        EvidenceRecord::Change(c) => format!("change|{}|{}", c.id, c.time_unix_nano),
    }
}

/// The Kafka key of an alert record: its dedup key, so a compacted topic keeps
/// each alert's latest state.
pub fn alert_key(r: &AlertRecord) -> String {
    r.dedup_key.clone()
}

/// What identifies one alert record among its dedup key's updates.
pub fn alert_ident(r: &AlertRecord) -> String {
    format!("{}|{}|{}", r.dedup_key, r.status, r.evaluated_at)
}

/// Output offsets: (topic, partition, offset).
pub type OutOffsets = Vec<(String, i32, i64)>;

/// After each finalization time, the output offsets every later record is at or after.
pub type OutLog = Arc<Mutex<Vec<(u64, OutOffsets)>>>;

/// Writes final records to the output topics (worker 0).
pub struct KafkaSink {
    producer: ThreadedProducer<Acks>,
    sli_topic: String,
    edge_topic: String,
    slo_topic: String,
    alert_topic: String,
    evidence_topic: String,
    /// Times below this were emitted before the restart.
    resume_from: u64,
    /// Keys already written since the last checkpoint (exactly-once restarts).
    written: HashSet<String>,
    metrics: Option<Arc<Metrics>>,
    /// Set at shutdown: later output (windows closed early by the teardown) is dropped.
    pub discard: Arc<AtomicBool>,
    /// After each time: the output offsets every later record is at or after.
    pub log: OutLog,
}

impl KafkaSink {
    /// A sink that skips times below `resume_from`.
    pub fn new(
        k: &KafkaConfig,
        resume_from: u64,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, KafkaSetupError> {
        Ok(KafkaSink {
            producer: producer(k, metrics.clone())?,
            sli_topic: k.topics.sli.clone(),
            edge_topic: k.topics.service_graph.clone(),
            slo_topic: k.topics.slo.clone(),
            alert_topic: k.topics.alerts.clone(),
            evidence_topic: k.topics.evidence.clone(),
            resume_from,
            written: HashSet::new(),
            metrics,
            discard: Default::default(),
            log: Default::default(),
        })
    }

    /// Writes `records` keyed by `key`, skipping those whose `ident` was read back.
    fn write<T: serde::Serialize>(
        &mut self,
        time: u64,
        topic: &str,
        records: &[T],
        key: fn(&T) -> String,
        ident: fn(&T) -> String,
    ) -> usize {
        let mut n = 0;
        for r in records {
            if !self.written.is_empty() && self.written.contains(&ident(r)) {
                continue;
            }
            let k = key(r);
            let Ok(v) = serde_json::to_vec(r) else {
                continue;
            };
            send(&self.producer, topic, k.as_bytes(), &v, None);
            n += 1;
        }
        flush(&self.producer);
        if let Some(m) = &self.metrics {
            m.output_records
                .with_label_values(&[topic])
                .inc_by(n as u64);
        }
        let next: OutOffsets = self
            .producer
            .context()
            .offsets
            .lock()
            .map(|o| {
                o.iter()
                    .map(|((t, p), off)| (t.clone(), *p, off + 1))
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(mut log) = self.log.lock() {
            log.push((time, next));
        }
        n
    }
}

impl OutputSink for KafkaSink {
    fn sli(&mut self, time: u64, records: &[SliRecord]) {
        if time < self.resume_from || self.discard.load(Ordering::SeqCst) {
            return;
        }
        let topic = self.sli_topic.clone();
        self.write(time, &topic, records, sli_key, sli_key);
        if let Some(m) = &self.metrics {
            m.observe_sli(records);
        }
    }

    fn edges(&mut self, time: u64, records: &[ServiceGraphRecord]) {
        if time < self.resume_from || self.discard.load(Ordering::SeqCst) {
            return;
        }
        let topic = self.edge_topic.clone();
        self.write(time, &topic, records, edge_key, edge_key);
    }

    fn metrics(&mut self, time: u64, spans: &[SpanMetricsRecord], graph: &[GraphMetricsRecord]) {
        if time < self.resume_from || self.discard.load(Ordering::SeqCst) {
            return;
        }
        if let Some(m) = &self.metrics {
            m.observe_span_metrics(spans);
            m.observe_graph(graph);
        }
    }

    fn slo(&mut self, time: u64, records: &[SloRecord]) {
        if let Some(m) = &self.metrics {
            m.observe_slo(records);
        }
        if time < self.resume_from || self.discard.load(Ordering::SeqCst) || records.is_empty() {
            return;
        }
        let topic = self.slo_topic.clone();
        self.write(time, &topic, records, slo_key, slo_key);
    }

    fn evidence(&mut self, time: u64, records: &[EvidenceRecord]) {
        if time < self.resume_from || self.discard.load(Ordering::SeqCst) || records.is_empty() {
            return;
        }
        let topic = self.evidence_topic.clone();
        self.write(time, &topic, records, evidence_key, evidence_key);
    }

    fn alerts(&mut self, time: u64, records: &[AlertRecord]) {
        if time < self.resume_from || self.discard.load(Ordering::SeqCst) || records.is_empty() {
            return;
        }
        let topic = self.alert_topic.clone();
        self.write(time, &topic, records, alert_key, alert_ident);
    }
}

/// The output offsets recorded for the newest time below `emitted`.
pub fn out_offsets(log: &OutLog, emitted: u64) -> OutOffsets {
    let Ok(mut log) = log.lock() else {
        return Vec::new();
    };
    let keep = log.partition_point(|(t, _)| *t < emitted);
    if keep == 0 {
        return Vec::new();
    }
    log.drain(..keep - 1);
    log[0].1.clone()
}

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

/// Reads `topics` from the beginning up to fence records written now with
/// `producer`, and returns every record with a value, in partition order. The
/// end is found with our own fence, not the broker's high watermark, which some
/// brokers (tansu 0.6) report stale.
pub fn read_fenced(
    k: &KafkaConfig,
    producer: &ThreadedProducer<Acks>,
    topics: &[&str],
) -> Result<Vec<Stored>, KafkaSetupError> {
    let op = |what| move |source| KafkaSetupError::Op { what, source };
    let consumer: BaseConsumer = client_config(k)
        .set("group.id", format!("{}-readback", k.group_id))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(KafkaSetupError::Client)?;
    let mut tpl = TopicPartitionList::new();
    let mut fenced = HashSet::new();
    for topic in topics {
        for p in topic_partitions(&consumer, k, topic)? {
            let rec = BaseRecord::<str, ()>::to(topic).key(FENCE_KEY).partition(p);
            if let Err((source, _)) = producer.send(rec) {
                return Err(KafkaSetupError::Op {
                    what: "writing a fence record",
                    source,
                });
            }
            fenced.insert((topic.to_string(), p));
            // From the beginning: some brokers (tansu 0.6) return nothing for a
            // fetch that starts inside a batch.
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(op("seeking"))?;
        }
    }
    flush(producer);
    let acked = producer
        .context()
        .offsets
        .lock()
        .map(|o| o.clone())
        .unwrap_or_default();
    let mut ends: BTreeMap<(String, i32), i64> = acked
        .into_iter()
        .filter(|(id, _)| fenced.contains(id))
        .collect();
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
    Ok(out)
}

impl KafkaSink {
    /// The output topics, in the order [`read_fenced`] should read them back.
    pub fn topics(&self) -> [&str; 5] {
        [
            &self.sli_topic,
            &self.edge_topic,
            &self.evidence_topic,
            &self.slo_topic,
            &self.alert_topic,
        ]
    }

    /// Reads back every output record and returns them. Under exactly-once,
    /// the records written since `from` (the checkpointed output offsets) are
    /// skipped from now on.
    pub fn read_back(
        &mut self,
        k: &KafkaConfig,
        from: &[(String, i32, i64)],
        exactly_once: bool,
    ) -> Result<Vec<Stored>, KafkaSetupError> {
        let topics = self.topics();
        let back = read_fenced(k, &self.producer, &topics)?;
        if exactly_once {
            for r in &back {
                let since = from
                    .iter()
                    .find(|(t, p, _)| *t == r.topic && *p == r.partition)
                    .map_or(0, |(_, _, o)| *o);
                if r.offset < since {
                    continue;
                }
                // Alert records share their dedup key across updates: identify them by content.
                match serde_json::from_slice::<AlertRecord>(&r.value) {
                    Ok(a) if r.topic == self.alert_topic => self.written.insert(alert_ident(&a)),
                    _ => self.written.insert(r.key.clone()),
                };
            }
        }
        Ok(back)
    }
}

/// The producer of one worker: its dead letters and its checkpoint records,
/// flushed together before the worker's checkpoint counts as taken.
pub struct DlqSink {
    producer: ThreadedProducer<Acks>,
    topic: String,
}

impl DlqSink {
    /// A producer for `kafka.topics.dlq`.
    pub fn new(k: &KafkaConfig, metrics: Option<Arc<Metrics>>) -> Result<Self, KafkaSetupError> {
        Ok(DlqSink {
            producer: producer(k, metrics)?,
            topic: k.topics.dlq.clone(),
        })
    }

    /// Writes one dead letter: the original bytes and headers, plus headers
    /// naming the source and the reason. The key is `topic/partition/offset[/index]`.
    pub fn send(&self, r: &DlqRecord, payload: &[u8], original: &[(String, Option<Vec<u8>>)]) {
        let mut h = OwnedHeaders::new();
        for (k, v) in original {
            h = h.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let partition = r.partition.to_string();
        let offset = r.offset.to_string();
        let index = r.record_index.map(|i| i.to_string());
        let mut add = |key: &str, value: &str| {
            h = std::mem::replace(&mut h, OwnedHeaders::new()).insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        };
        add("causeway.source.topic", &r.source);
        add("causeway.source.partition", &partition);
        add("causeway.source.offset", &offset);
        add("causeway.reason", &r.reason);
        add("causeway.detail", &r.detail);
        if let Some(i) = &index {
            add("causeway.record_index", i);
        }
        let key = match &index {
            Some(i) => format!("{}/{}/{}/{}", r.source, r.partition, r.offset, i),
            None => format!("{}/{}/{}", r.source, r.partition, r.offset),
        };
        send(
            &self.producer,
            &self.topic,
            key.as_bytes(),
            payload,
            Some(h),
        );
    }

    /// Writes one checkpoint record (see `sources::kafka::CheckpointRecord`).
    pub fn send_checkpoint(&self, topic: &str, key: &str, value: &[u8]) {
        send(&self.producer, topic, key.as_bytes(), value, None);
    }

    /// The worker's producer (dead letters, checkpoints, fences).
    pub fn producer(&self) -> &ThreadedProducer<Acks> {
        &self.producer
    }

    /// Blocks until every dead letter and checkpoint is acknowledged.
    pub fn flush(&self) {
        flush(&self.producer)
    }

    /// True if a dead letter could not be delivered.
    pub fn failed(&self) -> bool {
        self.producer.context().failed.load(Ordering::SeqCst)
    }
}

/// The headers of a consumed message, copied.
pub fn copy_headers<M: Message>(m: &M) -> Vec<(String, Option<Vec<u8>>)> {
    m.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
                .collect()
        })
        .unwrap_or_default()
}

impl KafkaSink {
    /// Set when an output could not be delivered.
    pub fn failed_flag(&self) -> Arc<AtomicBool> {
        self.producer.context().failed.clone()
    }
}
