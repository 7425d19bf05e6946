//! The Kafka source of `causeway run`: one consumer per worker, assigned the
//! worker's share of the input partitions ([`crate::kafka::topics`]) at their
//! checkpointed restart points, read in rounds into [`Ingest`], with each
//! partition's watermark, idleness and end (SPEC §2).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::ingest::{Ingest, Watermark};
use crate::kafka::{
    copy_headers, CheckpointRecord, Committed, Health, InputPartition, KafkaSetupError, Mark,
    Retention,
};
use crate::metrics::Metrics;
use crate::sinks::kafka::DlqSink;
use crate::sources::Message;

/// Messages read per worker per round.
pub const ROUND_MESSAGES: usize = 512;

/// One input partition a worker reads, and where it stands.
pub struct Assigned {
    pub part: InputPartition,
    pub name: String,
    pub wm: Watermark,
    pub retention: Retention,
    /// Next offset to read.
    pub position: u64,
    /// Dead letters below this offset were written before the restart.
    pub dlq_from: u64,
    /// Timestamp (ms) of the last message read.
    pub last_ts: Option<i64>,
    /// The last checkpoint written (an unchanged one is not written again).
    pub last_checkpoint: Option<CheckpointRecord>,
    pub last_message: Instant,
    /// When the broker last said whether the partition is read to its end.
    pub end_checked: Option<(Instant, bool)>,
}

/// A worker's consumer and its partitions.
pub struct KafkaSource {
    /// The consumer (also used to commit the group's offsets).
    pub consumer: BaseConsumer<Health>,
    /// The partitions, sorted by (topic, partition).
    pub parts: Vec<Assigned>,
    /// topic → partition → index in `parts`, looked up without allocating per message.
    lookup: HashMap<String, HashMap<i32, usize>>,
    /// One buffer for every message's bytes.
    msg: Message,
}

impl KafkaSource {
    /// Assigns this worker's share of `all` (worker `index` of `peers` takes
    /// every `peers`-th partition) to `consumer`, each at its restart point.
    pub fn assign(
        consumer: BaseConsumer<Health>,
        all: &[InputPartition],
        checkpoints: Vec<Committed>,
        index: usize,
        peers: usize,
    ) -> Result<Self, KafkaSetupError> {
        let started = Instant::now();
        let mut parts: Vec<Assigned> = Vec::new();
        let mut tpl = TopicPartitionList::new();
        for (i, (p, cp)) in all.iter().zip(checkpoints).enumerate() {
            if i % peers != index {
                continue;
            }
            let (restart, cp) = cp.unwrap_or_default();
            let start = match (restart, cp.ts_ms) {
                (0, _) => Offset::Beginning,
                (o, Some(ts)) => seek_by_time(&consumer, p, ts)
                    .filter(|s| *s <= o)
                    .map_or(Offset::Offset(o as i64), |s| Offset::Offset(s as i64)),
                (o, None) => Offset::Offset(o as i64),
            };
            tpl.add_partition_offset(&p.topic_name, p.partition, start)
                .map_err(|source| KafkaSetupError::Op {
                    what: "assigning partitions",
                    source,
                })?;
            parts.push(Assigned {
                name: p.name(),
                part: p.clone(),
                wm: Watermark::restored(cp.max_seen),
                retention: Retention::default(),
                position: restart,
                dlq_from: cp.read,
                last_ts: cp.ts_ms,
                last_checkpoint: None,
                last_message: started,
                end_checked: None,
            });
        }
        consumer
            .assign(&tpl)
            .map_err(|source| KafkaSetupError::Op {
                what: "assigning partitions",
                source,
            })?;
        drop(tpl);
        // topic → partition → index in `parts`, looked up without allocating per message.
        let mut lookup: HashMap<String, HashMap<i32, usize>> = HashMap::new();
        for (i, a) in parts.iter().enumerate() {
            lookup
                .entry(a.part.topic_name.clone())
                .or_default()
                .insert(a.part.partition, i);
        }
        Ok(KafkaSource {
            consumer,
            parts,
            lookup,
            msg: Message {
                offset: 0,
                payload: Vec::new(),
                traceparent: None,
                framing_error: None,
            },
        })
    }

    /// Reads up to [`ROUND_MESSAGES`] messages (until `deadline`) into
    /// `ingest`, writing their dead letters; returns how many were read.
    pub fn read_round(
        &mut self,
        ingest: &mut Ingest,
        dlq: &DlqSink,
        metrics: &Metrics,
        deadline: Instant,
    ) -> usize {
        let mut read = 0;
        for n in 0..ROUND_MESSAGES {
            let wait = if n == 0 {
                Duration::from_millis(10)
            } else {
                Duration::ZERO
            };
            let m = match self.consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    eprintln!("causeway run: consume: {e}");
                    metrics.kafka_errors.with_label_values(&["consume"]).inc();
                    break;
                }
                Some(Ok(m)) => m,
            };
            read += 1;
            metrics.kafka_up.set(1);
            let Some(&i) = self
                .lookup
                .get(m.topic())
                .and_then(|p| p.get(&m.partition()))
            else {
                continue;
            };
            let a = &mut self.parts[i];
            let offset = m.offset().max(0) as u64;
            if offset < a.position {
                // Before the restart point: a timestamp seek lands on the start of
                // the record batch that holds it.
                continue;
            }
            self.msg.offset = offset;
            self.msg.payload.clear();
            self.msg
                .payload
                .extend_from_slice(m.payload().unwrap_or_default());
            self.msg.traceparent = traceparent(&m);
            let mark = Mark {
                offset,
                max_seen: a.wm.max_seen(),
                ts_ms: m.timestamp().to_millis(),
            };
            let first_dead = ingest.dlq.len();
            let needed = ingest.process(
                &a.name,
                a.part.topic,
                a.part.encoding,
                a.part.id,
                &mut a.wm,
                &self.msg,
            );
            if let Some(leave) = needed {
                a.retention.note(leave, mark);
            }
            if ingest.dlq.len() > first_dead {
                let headers = copy_headers(&m);
                for mut r in ingest.dlq.drain(first_dead..) {
                    if r.offset >= a.dlq_from {
                        r.source = a.part.topic_name.clone();
                        r.partition = a.part.partition as u32;
                        dlq.send(&r, &self.msg.payload, &headers);
                    }
                }
            }
            let now = Instant::now();
            a.position = offset + 1;
            a.last_ts = mark.ts_ms;
            a.last_message = now;
            if now > deadline {
                break;
            }
        }
        read
    }

    /// SPEC §2: the worker's input watermark (see [`watermark`]).
    pub fn watermark(&mut self, lateness: u64, idle: Duration) -> u64 {
        watermark(&self.consumer, &mut self.parts, lateness, idle)
    }

    /// True when every partition is idle and read to its end.
    pub fn drained(&mut self, idle: Duration) -> bool {
        drained(&self.consumer, &mut self.parts, idle)
    }

    /// Sets `causeway_consumer_lag` of each partition.
    pub fn report_lag(&self, metrics: &Metrics) {
        for a in &self.parts {
            if let Some(end) = self
                .consumer
                .context()
                .end(&a.part.topic_name, a.part.partition)
            {
                let lag = (end - a.position as i64).max(0);
                metrics
                    .consumer_lag
                    .with_label_values(&[&a.part.topic_name, &a.part.partition.to_string()])
                    .set(lag);
            }
        }
    }
}

/// The first offset whose timestamp is at or after `ts_ms`: on every broker a
/// safe place to start reading a message with that timestamp (the start of its
/// record batch on brokers that cannot fetch from inside a batch).
fn seek_by_time(consumer: &BaseConsumer<Health>, p: &InputPartition, ts_ms: i64) -> Option<u64> {
    let mut q = TopicPartitionList::new();
    q.add_partition_offset(&p.topic_name, p.partition, Offset::Offset(ts_ms))
        .ok()?;
    let r = consumer
        .offsets_for_times(q, Duration::from_secs(10))
        .ok()?;
    let found = r.elements().first().and_then(|e| match e.offset() {
        Offset::Offset(o) if o >= 0 => Some(o as u64),
        _ => None,
    });
    drop(r);
    found
}

/// The W3C `traceparent` header of a message, if any.
fn traceparent<M: rdkafka::Message>(m: &M) -> Option<String> {
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key.eq_ignore_ascii_case("traceparent"))
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// SPEC §2: the minimum watermark of the partitions that are not idle. A
/// partition is idle once it has had no message for `idle` and the broker says
/// it is read to its end. When every partition is idle, the newest of their
/// watermarks.
fn watermark(
    consumer: &BaseConsumer<Health>,
    mine: &mut [Assigned],
    lateness: u64,
    idle: Duration,
) -> u64 {
    if mine.is_empty() {
        return u64::MAX;
    }
    let value = |a: &Assigned| a.wm.value(lateness).unwrap_or(0);
    // A partition still re-reading what it had read before a restart is never
    // idle, however slow its first fetch: its records are known to exist.
    let quiet = |a: &Assigned| a.position >= a.dlq_from && a.last_message.elapsed() >= idle;
    check_ends(consumer, mine, quiet);
    let mut active = None;
    for a in mine.iter() {
        let is_idle = quiet(a) && a.at_end();
        if !is_idle {
            active = Some(active.map_or(value(a), |m: u64| m.min(value(a))));
        }
    }
    active.unwrap_or_else(|| mine.iter().map(value).max().unwrap_or(0))
}

impl Assigned {
    /// Whether the broker last said the partition is read to its end.
    fn at_end(&self) -> bool {
        self.end_checked.is_some_and(|(_, at_end)| at_end)
    }
}

/// Asks the broker where the partitions that `wanted` selects end, each at
/// most once a second, all in one request (`ListOffsets`, as
/// `fetch_watermarks` sends it for one partition: a worker with many quiet
/// partitions waited a round trip for each of them every second).
fn check_ends(
    consumer: &BaseConsumer<Health>,
    mine: &mut [Assigned],
    wanted: impl Fn(&Assigned) -> bool,
) {
    let second = Duration::from_secs(1);
    let due: Vec<usize> = (0..mine.len())
        .filter(|&i| {
            let a = &mine[i];
            wanted(a)
                && a.end_checked
                    .is_none_or(|(when, _)| when.elapsed() >= second)
        })
        .collect();
    if due.is_empty() {
        return;
    }
    let mut query = TopicPartitionList::new();
    for &i in &due {
        let p = &mine[i].part;
        if query
            .add_partition_offset(&p.topic_name, p.partition, Offset::End)
            .is_err()
        {
            return;
        }
    }
    let ends = consumer.offsets_for_times(query, second).ok();
    let now = Instant::now();
    for i in due {
        let a = &mut mine[i];
        let end = ends
            .as_ref()
            .and_then(|r| r.find_partition(&a.part.topic_name, a.part.partition))
            .filter(|e| e.error().is_ok())
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        let at_end = end.is_some_and(|high| a.position as i64 >= high);
        a.end_checked = Some((now, at_end));
    }
}

/// True when every partition is idle and read to its end.
fn drained(consumer: &BaseConsumer<Health>, mine: &mut [Assigned], idle: Duration) -> bool {
    let quiet = |a: &Assigned| a.last_message.elapsed() >= idle;
    if !mine.iter().all(quiet) {
        return false;
    }
    check_ends(consumer, mine, quiet);
    mine.iter().all(Assigned::at_end)
}
