//! Kafka sinks for `causeway run`: `causeway_sli`, `causeway_service_graph`
//! (keyed JSON, on worker 0), and per worker `causeway_dlq` (original bytes) and
//! `causeway_checkpoints` (with
//! the client of [`crate::kafka`]).
//!
//! Output records are keyed by their dimensions, so a repeat after a crash (the
//! `at_least_once` guarantee) has the same key and value as the first write. Each
//! finalization time is flushed and acknowledged before the sink returns, which
//! lets the emitted frontier (see `dataflow::build`) mean "acknowledged".
//!
//! Under `exactly_once`, a restarted sink first reads back what was written since
//! the last checkpoint's output offsets ([`KafkaSink::read_back`]) and skips
//! those records: the output is deterministic, so the skipped records are the
//! ones it would have written. A first start records where the output topics
//! end ([`KafkaSink::ends`]) before it writes anything.
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_schemas::records::{
    AlertRecord, DlqRecord, EvidenceRecord, GraphMetricsRecord, ServiceGraphRecord, SliRecord,
    SloRecord, SpanMetricsRecord,
};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::Producer;

use crate::config::KafkaConfig;
use crate::dataflow::OutputSink;
use crate::kafka::producer::{producer, send, DropAside};
use crate::kafka::{fenced_ends, flush, read_fenced, KafkaSetupError, Stored};
use crate::metrics::Metrics;

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
            if let Err(e) = send(&self.producer, topic, k.as_bytes(), &v, None) {
                self.producer.context().fail(topic, &e);
                continue;
            }
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

    /// Where the output topics end now (after a fence record of this sink's
    /// own): on a first start, the records before them are not this
    /// group's, and every record this sink writes is at or after them.
    pub fn ends(&self, k: &KafkaConfig) -> Result<OutOffsets, KafkaSetupError> {
        fenced_ends(k, &self.topics())
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

impl KafkaSink {
    /// How many records read back are skipped when recomputed (exactly-once).
    pub fn skipping(&self) -> usize {
        self.written.len()
    }

    /// Set when an output could not be delivered.
    pub fn failed_flag(&self) -> Arc<AtomicBool> {
        self.producer.context().failed.clone()
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

/// The value of a redacted dead letter (`processing.redact_dead_letters`).
pub const REDACTED_VALUE: &[u8] = b"causeway:redacted";

/// Most runs of record indices one dead letter lists (a header of at most
/// about 90 KB).
pub const RUNS_PER_LETTER: usize = 4096;

/// Record indices `first..=last` of one message.
type Run = (u32, u32);

/// The dead letters of one message's rejections (see
/// [`DlqSink::send_message`]): each with the rejection whose reason and detail
/// it carries and, for rejected records, the runs of their indices.
fn letters(rejected: &[DlqRecord]) -> Vec<(&DlqRecord, Option<Vec<Run>>)> {
    let mut out = Vec::new();
    let mut reasons: Vec<&str> = Vec::new();
    for r in rejected {
        match r.record_index {
            None => out.push((r, None)),
            Some(_) if !reasons.contains(&r.reason.as_str()) => reasons.push(&r.reason),
            Some(_) => {}
        }
    }
    for reason in reasons {
        let of_reason = |r: &&DlqRecord| r.reason == reason && r.record_index.is_some();
        let Some(first) = rejected.iter().find(of_reason) else {
            continue;
        };
        let mut indices: Vec<u32> = rejected
            .iter()
            .filter(of_reason)
            .filter_map(|r| r.record_index)
            .collect();
        indices.sort_unstable();
        indices.dedup();
        let runs = index_runs(&indices);
        for chunk in runs.chunks(RUNS_PER_LETTER) {
            out.push((first, Some(chunk.to_vec())));
        }
    }
    out
}

/// Ascending, distinct `indices` as runs of consecutive ones (`first`, `last`).
fn index_runs(indices: &[u32]) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &i in indices {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(i) => *last = i,
            _ => runs.push((i, i)),
        }
    }
    runs
}

/// `3,17,40-42`: runs as the `causeway.record_index` header writes them.
fn run_list(runs: &[(u32, u32)]) -> String {
    let mut out = String::new();
    for (n, &(first, last)) in runs.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&first.to_string());
        if last > first {
            out.push('-');
            out.push_str(&last.to_string());
        }
    }
    out
}

/// The producer of one worker: its dead letters and its checkpoint records,
/// flushed together before the worker's checkpoint counts as taken.
pub struct DlqSink {
    producer: DropAside,
    topic: String,
    redact: bool,
}

impl DlqSink {
    /// A producer for `kafka.topics.dlq`; with `redact`, dead letters carry
    /// [`REDACTED_VALUE`] and Causeway's headers only.
    pub fn new(
        k: &KafkaConfig,
        metrics: Option<Arc<Metrics>>,
        redact: bool,
    ) -> Result<Self, KafkaSetupError> {
        Ok(DlqSink {
            producer: DropAside(Some(producer(k, metrics, "5")?)),
            topic: k.topics.dlq.clone(),
            redact,
        })
    }

    /// Writes the dead letters of one message. `rejected` holds its
    /// rejections (all of one source, partition and offset). The message's
    /// bytes go out once per reason, not once per record: a dead letter for
    /// records of the message lists their indices (`causeway.record_index`,
    /// ascending, runs as ranges: `17`, `3,17,40-42`, `0-99`) and their number
    /// (`causeway.record_count`); `causeway.detail` is the first one's. A
    /// rejection of the whole message is a dead letter of its own, without
    /// either header. At most [`RUNS_PER_LETTER`] runs go in one dead letter,
    /// so a hostile message cannot make a header outgrow the topic's limit.
    pub fn send_message(
        &self,
        rejected: &[DlqRecord],
        payload: &[u8],
        original: &[(String, Option<Vec<u8>>)],
    ) {
        for (first, runs) in letters(rejected) {
            self.send(first, runs.as_deref(), payload, original);
        }
    }

    /// Writes one dead letter: the original bytes and headers, plus headers
    /// naming the source, the reason and (`runs`) the records. The key is
    /// `topic/partition/offset[/first index]`. Redacted, the value is
    /// [`REDACTED_VALUE`], the original headers are left out and
    /// `causeway.payload_bytes` gives the original size.
    fn send(
        &self,
        r: &DlqRecord,
        runs: Option<&[(u32, u32)]>,
        payload: &[u8],
        original: &[(String, Option<Vec<u8>>)],
    ) {
        let mut h = OwnedHeaders::new();
        if !self.redact {
            for (k, v) in original {
                h = h.insert(Header {
                    key: k,
                    value: v.as_deref(),
                });
            }
        }
        let partition = r.partition.to_string();
        let offset = r.offset.to_string();
        let records = runs.map(|runs| {
            let count: u64 = runs.iter().map(|(a, b)| u64::from(b - a) + 1).sum();
            (runs[0].0, run_list(runs), count.to_string())
        });
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
        if let Some((_, list, count)) = &records {
            add("causeway.record_index", list);
            add("causeway.record_count", count);
        }
        let size = payload.len().to_string();
        let payload = if self.redact {
            add("causeway.payload_bytes", &size);
            REDACTED_VALUE
        } else {
            payload
        };
        let key = match &records {
            Some((first, _, _)) => format!("{}/{}/{}/{first}", r.source, r.partition, r.offset),
            None => format!("{}/{}/{}", r.source, r.partition, r.offset),
        };
        let big = payload.len();
        if let Err(e) = send(
            &self.producer,
            &self.topic,
            key.as_bytes(),
            payload,
            Some(h.clone()),
        ) {
            // Larger than `message.max.bytes`: the dead letter goes without the
            // original bytes, saying so, rather than not at all.
            let h = h.insert(Header {
                key: "causeway.payload_omitted",
                value: Some(format!("{big} bytes; {e}").as_bytes()),
            });
            if let Err(e) = send(&self.producer, &self.topic, key.as_bytes(), &[], Some(h)) {
                self.producer.context().fail(&self.topic, &e);
            }
        }
    }

    /// Writes one checkpoint record (see [`crate::kafka::CheckpointRecord`]).
    pub fn send_checkpoint(&self, topic: &str, key: &str, value: &[u8]) {
        if let Err(e) = send(&self.producer, topic, key.as_bytes(), value, None) {
            self.producer.context().fail(topic, &e);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_indices_are_written_as_runs() {
        let list = |ix: &[u32]| run_list(&index_runs(ix));
        assert_eq!(list(&[17]), "17");
        assert_eq!(list(&[3, 17, 40, 41, 42]), "3,17,40-42");
        assert_eq!(list(&(0..100).collect::<Vec<_>>()), "0-99");
        assert_eq!(list(&[0, 2, 4]), "0,2,4");
        assert_eq!(
            list(&[u32::MAX - 1, u32::MAX]),
            format!("{}-{}", u32::MAX - 1, u32::MAX)
        );
        // Each run is at most 21 bytes: a letter's header stays far below 1 MB.
        let worst = vec![(u32::MAX - 1, u32::MAX); RUNS_PER_LETTER];
        assert!(run_list(&worst).len() < 100_000);
    }

    fn rejection(offset: u64, index: Option<u32>, reason: &str) -> DlqRecord {
        DlqRecord {
            source: "otlp_spans".into(),
            partition: 0,
            offset,
            record_index: index,
            reason: reason.into(),
            detail: format!("{reason} {index:?}"),
        }
    }

    #[test]
    fn a_message_goes_once_per_reason() {
        let rejected = vec![
            rejection(7, Some(0), "late"),
            rejection(7, Some(1), "late"),
            rejection(7, Some(2), "invalid_trace_id"),
            rejection(7, Some(3), "late"),
            rejection(7, Some(5), "late"),
            rejection(7, Some(9), "invalid_trace_id"),
        ];
        let got: Vec<(String, String, Option<String>)> = letters(&rejected)
            .into_iter()
            .map(|(r, runs)| {
                (
                    r.reason.clone(),
                    r.detail.clone(),
                    runs.map(|x| run_list(&x)),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("late".into(), "late Some(0)".into(), Some("0-1,3,5".into())),
                (
                    "invalid_trace_id".into(),
                    "invalid_trace_id Some(2)".into(),
                    Some("2,9".into())
                ),
            ]
        );
        // A message that does not decode is one letter without indices.
        let whole = vec![rejection(8, None, "malformed_protobuf")];
        let got = letters(&whole);
        assert_eq!(got.len(), 1);
        assert!(got[0].1.is_none());
    }

    #[test]
    fn a_hostile_message_is_split_into_bounded_letters() {
        // Every other record late: one run per record.
        let n = RUNS_PER_LETTER as u32 * 2 + 10;
        let rejected: Vec<DlqRecord> = (0..n).map(|i| rejection(3, Some(i * 2), "late")).collect();
        let got = letters(&rejected);
        assert_eq!(got.len(), 3);
        let sizes: Vec<usize> = got.iter().map(|(_, r)| r.as_ref().unwrap().len()).collect();
        assert_eq!(sizes, vec![RUNS_PER_LETTER, RUNS_PER_LETTER, 10]);
        let listed: Vec<u32> = got
            .iter()
            .flat_map(|(_, r)| r.as_ref().unwrap().iter().map(|&(a, _)| a))
            .collect();
        assert_eq!(listed, (0..n).map(|i| i * 2).collect::<Vec<_>>());
    }
}
