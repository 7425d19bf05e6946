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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use causeway_schemas::records::{
    AlertRecord, DlqRecord, EvidenceRecord, ServiceGraphRecord, SliRecord, SloRecord,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::dataflow::OutputSink;
use crate::metrics::Metrics;
use crate::sources::kafka::{
    client_config, close, default_setting, topic_partitions, Health, KafkaSetupError,
    REQUEST_TIMEOUT,
};

/// Producer context: remembers the newest acknowledged offset per partition and
/// whether any delivery failed for good, and tracks which messages still wait
/// for their delivery report.
#[derive(Clone, Default)]
pub struct Acks {
    health: Health,
    /// Newest acknowledged offset per (topic, partition).
    pub offsets: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
    /// Set when a message could not be delivered.
    pub failed: Arc<AtomicBool>,
    in_flight: Arc<InFlight>,
}

/// Messages handed to librdkafka, numbered in sending order (the number is the
/// delivery opaque), whose delivery report (either outcome) has not come, and
/// a condition variable signalled on each report.
#[derive(Default)]
struct InFlight {
    /// (the next number, the numbers without a report).
    state: Mutex<(usize, BTreeSet<usize>)>,
    reported: Condvar,
}

impl Acks {
    /// Numbers a message about to be sent; the number is its delivery opaque.
    fn register(&self) -> usize {
        let Ok(mut s) = self.in_flight.state.lock() else {
            return usize::MAX;
        };
        let n = s.0;
        s.0 += 1;
        s.1.insert(n);
        n
    }

    /// A mark: every message sent before now has a smaller number.
    pub fn mark(&self) -> usize {
        self.in_flight.state.lock().map_or(0, |s| s.0)
    }

    /// Waits up to `timeout` for the delivery reports of every message sent
    /// before `mark`; true once they are all in.
    pub fn wait_reported(&self, mark: usize, timeout: Duration) -> bool {
        let before = |s: &(usize, BTreeSet<usize>)| s.1.first().is_some_and(|n| *n < mark);
        let Ok(s) = self.in_flight.state.lock() else {
            return false;
        };
        if timeout.is_zero() {
            return !before(&s);
        }
        self.in_flight
            .reported
            .wait_timeout_while(s, timeout, |s| before(s))
            .is_ok_and(|(s, _)| !before(&s))
    }
}

impl ClientContext for Acks {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.health.error(error, reason)
    }
}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, n: usize) {
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
        if let Ok(mut s) = self.in_flight.state.lock() {
            s.1.remove(&n);
        }
        self.in_flight.reported.notify_all();
    }
}

/// A producer whose writes are acknowledged by all in-sync replicas and never
/// given up on while the broker is away (`message.timeout.ms = 0`).
/// `linger_ms` is the default of `linger.ms`: 0 for writers that flush right
/// after writing (lingering would only delay the acknowledgement).
pub fn producer(
    k: &KafkaConfig,
    metrics: Option<Arc<Metrics>>,
    linger_ms: &str,
) -> Result<ThreadedProducer<Acks>, KafkaSetupError> {
    let mut c = client_config(k);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0");
    default_setting(&mut c, k, "linger.ms", linger_ms);
    c.create_with_context(acks(metrics))
        .map_err(KafkaSetupError::Client)
}

fn acks(metrics: Option<Arc<Metrics>>) -> Acks {
    Acks {
        health: Health {
            metrics,
            ..Health::default()
        },
        ..Acks::default()
    }
}

/// A producer dropped on a thread of its own. Dropping a `ThreadedProducer`
/// waits for its polling thread to finish a 100 ms poll, which added up to
/// 0.1 s per producer to every exit; what it wrote is flushed before it is
/// dropped (outputs after each time, dead letters and checkpoints at the
/// last checkpoint), so nothing needs to wait for that.
struct DropAside(Option<ThreadedProducer<Acks>>);

impl std::ops::Deref for DropAside {
    type Target = ThreadedProducer<Acks>;

    fn deref(&self) -> &ThreadedProducer<Acks> {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for DropAside {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // If no thread can be started, the producer is dropped here.
            let _ = std::thread::Builder::new()
                .name("producer drop".into())
                .spawn(move || drop(p));
        }
    }
}

/// Blocks until everything produced so far is acknowledged.
///
/// Not rdkafka's `flush(timeout)`: it waits by polling in slices of up to
/// 100 ms, each run to its end, so a flush not complete at once took 100 ms
/// however fast the broker acknowledged. This waits for the delivery reports
/// themselves (served by the producer's polling thread) and returns as soon
/// as the last one is in.
pub fn flush(p: &ThreadedProducer<Acks>) {
    let acks = p.context();
    let mark = acks.mark();
    let mut waiting = Instant::now();
    loop {
        // Wakes the broker threads, which send what is queued.
        let _ = p.flush(Duration::ZERO);
        if acks.wait_reported(mark, Duration::from_millis(100)) {
            return;
        }
        if waiting.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "causeway: waiting for the broker to acknowledge outputs ({} in flight)",
                p.in_flight_count()
            );
            waiting = Instant::now();
        }
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
    let n = p.context().register();
    let mut rec = BaseRecord::with_opaque_to(topic, n)
        .key(key)
        .payload(payload);
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
    producer: DropAside,
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
            producer: DropAside(Some(producer(k, metrics.clone(), "0")?)),
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
        if let Some(m) = &self.metrics {
            m.observe_edges(records);
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
    let mut fenced = Vec::new();
    for topic in topics {
        for p in topic_partitions(&consumer, k, topic)? {
            fenced.push((topic.to_string(), p));
            // From the beginning: some brokers (tansu 0.6) return nothing for a
            // fetch that starts inside a batch.
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(op("seeking"))?;
        }
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
        let back = read_fenced(k, &topics)?;
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
    producer: DropAside,
    topic: String,
}

impl DlqSink {
    /// A producer for `kafka.topics.dlq`.
    pub fn new(k: &KafkaConfig, metrics: Option<Arc<Metrics>>) -> Result<Self, KafkaSetupError> {
        Ok(DlqSink {
            producer: DropAside(Some(producer(k, metrics, "5")?)),
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

    /// A mark: every dead letter or checkpoint record sent before now is
    /// before it (see [`DlqSink::acknowledged`]).
    pub fn mark(&self) -> usize {
        self.producer.context().mark()
    }

    /// True once every message sent before `mark` is acknowledged (or failed
    /// for good, see [`DlqSink::failed`]); does not wait.
    pub fn acknowledged(&self, mark: usize) -> bool {
        self.producer.context().wait_reported(mark, Duration::ZERO)
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
