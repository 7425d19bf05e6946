//! The Kafka source of `causeway run`: one consumer per worker, assigned the
//! worker's share of the input partitions ([`crate::kafka::topics`]) at their
//! checkpointed restart points, read in rounds into [`Ingest`], with each
//! partition's watermark, idleness and end (SPEC §2).
//!
//! **Alignment.** Each partition has a queue of its own
//! ([`BaseConsumer::split_partition_queue`]), and a round reads only the
//! partitions whose newest event time is at most the read limit (the global
//! frontier + `allowed_lateness` + window + grace, [`read_limit`]), slowest
//! first. A partition past it is *held*: it is not polled, so librdkafka stops
//! fetching it once its queue holds `queued.max.messages.kbytes`, and its
//! messages wait in the broker instead of in the dataflow's state. Nothing is
//! re-fetched (pausing with `Consumer::pause` would re-fetch from inside a
//! record batch on resume, which tansu 0.6 answers with nothing). Only a
//! partition whose queue the round polled empty can be idle, so a held one
//! never is (its messages may be waiting in its queue); once released and
//! found empty, its idleness counts from its last message. Lateness is a function of each
//! partition's own order, so the reading order changes no output.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::ingest::{Ingest, Watermark};
use crate::kafka::{
    close, copy_headers, CheckpointRecord, Committed, Health, InputPartition, KafkaSetupError,
    Mark, Retention,
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
    /// When the last message was read.
    pub last_message: Instant,
    /// Whether the last round polled its queue empty: a partition not polled
    /// (held back, or past the round's budget) may have messages waiting, so
    /// it is not idle, however long ago its last message was.
    pub drained: bool,
    /// Held back in the last round: its newest event time is past the read limit.
    pub held: bool,
    /// Left out of the watermark minimum when it was last computed (SPEC §2).
    pub idle: bool,
    /// When the broker last said whether the partition is read to its end.
    pub end_checked: Option<(Instant, bool)>,
}

/// A worker's consumer and its partitions.
pub struct KafkaSource {
    /// The consumer (also used to commit the group's offsets).
    pub consumer: Arc<BaseConsumer<Health>>,
    /// The partitions, sorted by (topic, partition).
    pub parts: Vec<Assigned>,
    /// Each partition's own message queue (as `parts`); `None` if librdkafka
    /// would not split it off, and then its messages come from the consumer's.
    queues: Vec<Option<PartitionQueue>>,
    /// Set when a partition queue turns non-empty, to wait for messages.
    arrived: Arc<Arrived>,
    /// topic → partition → index in `parts`, looked up without allocating per message.
    lookup: HashMap<String, HashMap<i32, usize>>,
    /// The partitions in reading order (reused every round).
    order: Vec<usize>,
    /// One buffer for every message's bytes.
    msg: Message,
}

type PartitionQueue = rdkafka::consumer::base_consumer::PartitionQueue<Health>;

/// Whether a message arrived in some partition queue since the flag was cleared.
#[derive(Default)]
struct Arrived {
    flag: Mutex<bool>,
    cond: Condvar,
}

impl Arrived {
    fn notify(&self) {
        if let Ok(mut f) = self.flag.lock() {
            *f = true;
            self.cond.notify_all();
        }
    }

    fn clear(&self) {
        if let Ok(mut f) = self.flag.lock() {
            *f = false;
        }
    }

    /// Waits until a message arrives, at most `timeout`.
    fn wait(&self, timeout: Duration) {
        if let Ok(f) = self.flag.lock() {
            let _ = self.cond.wait_timeout_while(f, timeout, |f| !*f);
        }
    }
}

/// How far (event time, ns) a partition may be read ahead of the slowest
/// one: a window and its correlation grace, so reading never waits for a
/// window to be finalized in the steady state.
pub fn read_ahead_ns(params: &causeway_jobs::Params) -> u64 {
    (params.window_s + params.grace_s)
        .max(1)
        .saturating_mul(causeway_schemas::time::NANOS_PER_SEC)
}

/// The global read limit (event time, ns): at most `ahead` past the global
/// input frontier `input` (the least watermark of every worker, to the second)
/// plus `allowed_lateness`, i.e. past the slowest active partition of all
/// workers; and at most `2 × ahead` past the emitted frontier `emitted` (which
/// trails the input by about a window and its grace when the dataflow keeps
/// up) plus the lateness, so the dataflow cannot fall behind the reading
/// either. A frontier still at 0 (some partition has given no watermark yet
/// and is not idle yet) or empty (every input closed) sets no limit.
///
/// The slowest partition is always below the limit once the dataflow has
/// caught up with its watermark, so reading never stalls for good; every other
/// partition stays within `ahead` of it: the records held in state are bounded
/// by the input rate, not by the backlog.
pub fn read_limit(
    input: Option<u64>,
    emitted: Option<u64>,
    lateness_ns: u64,
    ahead_ns: u64,
) -> Option<u64> {
    let past = |f: Option<u64>, by: u64| {
        f.filter(|&f| f > 0).map(|f| {
            f.saturating_mul(causeway_schemas::time::NANOS_PER_SEC)
                .saturating_add(lateness_ns)
                .saturating_add(by)
        })
    };
    match (
        past(input, ahead_ns),
        past(emitted, ahead_ns.saturating_mul(2)),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
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
                drained: false,
                held: false,
                idle: false,
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
        // After `assign` (which would undo it) and before the first poll.
        let consumer = Arc::new(consumer);
        let arrived = Arc::new(Arrived::default());
        let queues = parts
            .iter()
            .map(|a| {
                let mut q = consumer.split_partition_queue(&a.part.topic_name, a.part.partition)?;
                let arrived = arrived.clone();
                q.set_nonempty_callback(move || arrived.notify());
                Some(q)
            })
            .collect();
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
            order: (0..parts.len()).collect(),
            parts,
            queues,
            arrived,
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
    /// `ingest`, writing their dead letters, slowest partition first; waits up
    /// to 10 ms for a first message. Returns how many were read.
    ///
    /// Reads only the partitions whose newest event time is at most the global
    /// limit ([`read_limit`]) and at most `ahead` past this worker's slowest
    /// active partition (not idle, with a watermark): the latter holds the
    /// skew between this worker's partitions while the global frontier has
    /// not started (some partition anywhere has no data and is not idle yet).
    pub fn read_round(
        &mut self,
        ingest: &mut Ingest,
        dlq: &DlqSink,
        metrics: &Metrics,
        deadline: Instant,
        global: Option<u64>,
        ahead: u64,
    ) -> usize {
        let mut read = 0;
        // Events (errors, statistics), and messages of any partition not split off.
        while read < ROUND_MESSAGES {
            match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Err(e)) => {
                    consume_error(metrics, &e);
                    break;
                }
                Some(Ok(m)) => {
                    read += 1;
                    let found = self
                        .lookup
                        .get(m.topic())
                        .and_then(|p| p.get(&m.partition()))
                        .copied();
                    if let Some(i) = found {
                        Self::handle(&mut self.parts[i], &mut self.msg, &m, ingest, dlq);
                    }
                }
            }
        }
        let parts = &self.parts;
        self.order
            .sort_by_key(|&i| (parts[i].wm.max_seen(), parts[i].part.id));
        let slowest = parts
            .iter()
            .filter(|a| !a.idle)
            .filter_map(|a| a.wm.max_seen())
            .min();
        let local = slowest.map_or(u64::MAX, |s| s.saturating_add(ahead));
        let limit = global.unwrap_or(u64::MAX).min(local);
        for (a, q) in self.parts.iter_mut().zip(&self.queues) {
            a.held = a.wm.max_seen().is_some_and(|t| t > limit);
            // Without a queue of its own it is read from the consumer's, above.
            a.drained = q.is_none();
        }
        for waited in [false, true] {
            self.arrived.clear();
            'parts: for k in 0..self.order.len() {
                let i = self.order[k];
                let Some(q) = &self.queues[i] else { continue };
                while read < ROUND_MESSAGES && !self.parts[i].held {
                    let m = match q.poll(Duration::ZERO) {
                        None => {
                            self.parts[i].drained = true;
                            break;
                        }
                        Some(Err(e)) => {
                            consume_error(metrics, &e);
                            break;
                        }
                        Some(Ok(m)) => m,
                    };
                    read += 1;
                    Self::handle(&mut self.parts[i], &mut self.msg, &m, ingest, dlq);
                    let a = &mut self.parts[i];
                    if a.wm.max_seen().is_some_and(|t| t > limit) {
                        a.held = true;
                    }
                    if Instant::now() > deadline {
                        break 'parts;
                    }
                }
            }
            if read > 0 || waited {
                break;
            }
            self.arrived.wait(Duration::from_millis(10));
        }
        if read > 0 {
            metrics.kafka_up.set(1);
        }
        read
    }

    /// Feeds message `m` of partition `a` to `ingest` (through the buffer
    /// `msg`) and sends its dead letters.
    fn handle(
        a: &mut Assigned,
        msg: &mut Message,
        m: &BorrowedMessage<'_>,
        ingest: &mut Ingest,
        dlq: &DlqSink,
    ) {
        let offset = m.offset().max(0) as u64;
        if offset < a.position {
            // Before the restart point: a timestamp seek lands on the start of
            // the record batch that holds it.
            return;
        }
        msg.offset = offset;
        msg.payload.clear();
        msg.payload
            .extend_from_slice(m.payload().unwrap_or_default());
        msg.traceparent = traceparent(m);
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
            msg,
        );
        if let Some(leave) = needed {
            a.retention.note(leave, mark);
        }
        if ingest.dlq.len() > first_dead {
            if offset >= a.dlq_from {
                for r in &mut ingest.dlq[first_dead..] {
                    r.source.clone_from(&a.part.topic_name);
                    r.partition = a.part.partition as u32;
                }
                dlq.send_message(&ingest.dlq[first_dead..], &msg.payload, &copy_headers(m));
            }
            ingest.dlq.truncate(first_dead);
        }
        a.position = offset + 1;
        a.last_ts = mark.ts_ms;
        a.last_message = Instant::now();
    }

    /// How many partitions the last round held back.
    pub fn held(&self) -> usize {
        self.parts.iter().filter(|a| a.held).count()
    }

    /// Closes the consumer (see [`crate::kafka::close`]).
    pub fn close(self) {
        let KafkaSource {
            consumer, queues, ..
        } = self;
        drop(queues);
        if let Ok(c) = Arc::try_unwrap(consumer) {
            close(c);
        }
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

fn consume_error(metrics: &Metrics, e: &rdkafka::error::KafkaError) {
    eprintln!("causeway run: consume: {e}");
    metrics.kafka_errors.with_label_values(&["consume"]).inc();
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
    let quiet =
        |a: &Assigned| a.position >= a.dlq_from && a.drained && a.last_message.elapsed() >= idle;
    check_ends(consumer, mine, quiet);
    let mut active = None;
    for a in mine.iter_mut() {
        let is_idle = quiet(a) && a.at_end();
        a.idle = is_idle;
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
    let quiet = |a: &Assigned| a.drained && a.last_message.elapsed() >= idle;
    if !mine.iter().all(quiet) {
        return false;
    }
    check_ends(consumer, mine, quiet);
    mine.iter().all(Assigned::at_end)
}

#[cfg(test)]
mod tests {
    use super::read_limit;

    const S: u64 = 1_000_000_000;

    #[test]
    fn read_limit_is_the_tighter_frontier_and_none_before_the_frontier_starts() {
        let (lateness, ahead) = (30 * S, 120 * S);
        // Input frontier at 1000 s: 1000 + 30 + 120; emitted at 900 s:
        // 900 + 30 + 240. The tighter one.
        assert_eq!(
            read_limit(Some(1000), Some(900), lateness, ahead),
            Some(1150 * S)
        );
        assert_eq!(
            read_limit(Some(1000), Some(800), lateness, ahead),
            Some(1070 * S)
        );
        // A frontier still at 0 (some partition has no watermark yet) or
        // empty (inputs closed) sets no limit.
        assert_eq!(read_limit(Some(0), Some(0), lateness, ahead), None);
        assert_eq!(read_limit(None, None, lateness, ahead), None);
        assert_eq!(
            read_limit(Some(1000), Some(0), lateness, ahead),
            Some(1150 * S)
        );
    }
}
