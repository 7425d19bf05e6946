//! Ingest: from a partition's messages to the dataflow's input collections.
//!
//! For each message: decode it, reject what is bad, classify lateness, and send
//! each accepted span, log and audit record in compact form to the worker that
//! correlates it ([`Records`]; the correlate operator places it by its event
//! time and evicts it itself). Audit records and deploy events also enter
//! their differential collections at their event-time second, with their
//! scheduled retraction (see `causeway_jobs::params`).
//!
//! **Lateness** is judged per partition: a record is late when its event time is
//! below its own partition's watermark (newest event time seen there minus
//! `allowed_lateness`) as it stood before the record's message arrived. This is
//! never more lenient than SPEC §2's global watermark, and it depends only on each
//! partition's own order, so the same input gives the same late set whatever the
//! number of workers, processes or the interleaving of partitions.
//!
//! The input frontier is the minimum watermark of the active partitions, so the
//! dataflow's frontier is SPEC §2's watermark.

use std::collections::BTreeMap;

use causeway_jobs::correlate::{worker_of, AuditRec, LogRec, Rec, Shard, SpanRec, SHARD_RECORDS};
use causeway_jobs::intern::{Interner, Res};
use causeway_jobs::Params;
use causeway_schemas::records::DlqRecord;
use causeway_schemas::reject::scrub_detail;
use causeway_schemas::{audit, cdevents, otlp};
use causeway_schemas::{
    AuditRecord, Declined, DeployEvent, Encoding, Origin, Reason, Rejection, Skip,
};
use differential_dataflow::input::InputSession;

use crate::config::Settings;
use crate::sources::{Message, Topic};

/// The detail of every dead letter under `redact_dead_letters`.
pub const REDACTED_DETAIL: &str = "redacted (processing.redact_dead_letters)";

/// The detail of a dead letter whose decoder message would quote PII.
const WITHHELD_DETAIL: &str = "detail withheld: it would quote a value that looks like PII";

/// The detail of a late record's rejection.
const LATE_DETAIL: &str = "event time is below the partition watermark";

/// A rejection's detail as written to the DLQ: with `redact_dead_letters`, a
/// fixed text; otherwise scrubbed of quoted input, and withheld if what is
/// left still looks like PII (it may name a field's value).
fn dlq_detail(settings: &Settings, detail: String) -> String {
    if settings.redact_dead_letters {
        return REDACTED_DETAIL.to_string();
    }
    let scrubbed = scrub_detail(&detail);
    if settings.decode.pii.matches(&scrubbed) {
        return WITHHELD_DETAIL.to_string();
    }
    scrubbed
}

/// What ingest has counted so far.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Messages read.
    pub messages: u64,
    /// Records read: accepted + rejected + skipped (an undecodable message
    /// counts as one).
    pub records: u64,
    /// Records accepted into the dataflow, per topic.
    pub accepted: BTreeMap<Topic, u64>,
    /// Records rejected, per topic and reason (`late` included).
    pub rejected: BTreeMap<(Topic, Reason), u64>,
    /// Valid records Causeway does not use, per topic and reason; never
    /// dead-lettered.
    pub skipped: BTreeMap<(Topic, Skip), u64>,
}

impl Stats {
    /// Adds another worker's counts.
    pub fn merge(&mut self, other: &Stats) {
        self.messages += other.messages;
        self.records += other.records;
        for (k, v) in &other.accepted {
            *self.accepted.entry(*k).or_default() += v;
        }
        for (k, v) in &other.rejected {
            *self.rejected.entry(*k).or_default() += v;
        }
        for (k, v) in &other.skipped {
            *self.skipped.entry(*k).or_default() += v;
        }
    }

    /// Total accepted records.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.values().sum()
    }

    /// Total rejected records.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Total skipped records.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// Watermark state of one partition.
#[derive(Debug, Default, Clone)]
pub struct Watermark {
    max_seen: Option<u64>,
}

impl Watermark {
    /// A watermark restored from a checkpoint: `max_seen` is the newest event time
    /// of the partition before the restart offset.
    pub fn restored(max_seen: Option<u64>) -> Self {
        Watermark { max_seen }
    }

    /// The newest event time seen.
    pub fn max_seen(&self) -> Option<u64> {
        self.max_seen
    }

    /// `max event time seen - allowed_lateness`, or `None` before any event.
    pub fn value(&self, lateness_ns: u64) -> Option<u64> {
        self.max_seen.map(|m| m.saturating_sub(lateness_ns))
    }
}

/// The dataflow inputs of one worker.
pub struct Inputs {
    /// Spans, log records and audit records in compact form, for correlation.
    pub records: Records,
    /// Audit records (with retractions), for the actors of deploys.
    pub audits: InputSession<u64, AuditRecord, isize>,
    /// Deploy events (with retractions).
    pub deploys: InputSession<u64, DeployEvent, isize>,
    /// The global input frontier: the least input time of every worker (of
    /// every process).
    pub frontier: timely::dataflow::operators::probe::Handle<u64>,
}

/// The records input: each record goes into the [`Shard`] of the worker that
/// correlates it, and a shard is sent when full or when the input advances.
/// The exchange then moves one vector per shard: routing each record in the
/// exchange copied it into a per-worker buffer there (callgrind: ~100
/// instructions a record with 2 workers).
pub struct Records {
    handle: timely::dataflow::operators::vec::input::Handle<u64, Shard>,
    shards: Vec<Vec<Rec>>,
}

impl Records {
    /// The input behind `handle`, routing to `peers` workers.
    pub fn new(
        handle: timely::dataflow::operators::vec::input::Handle<u64, Shard>,
        peers: usize,
    ) -> Self {
        Records {
            handle,
            shards: vec![Vec::new(); peers],
        }
    }

    /// The current input time.
    pub fn time(&self) -> &u64 {
        self.handle.time()
    }

    /// Adds `rec` at the current time.
    #[inline]
    fn push(&mut self, rec: Rec) {
        let worker = match self.shards.len() {
            1 => 0,
            peers => worker_of(&rec, peers),
        };
        let shard = &mut self.shards[worker];
        if shard.capacity() == 0 {
            shard.reserve_exact(SHARD_RECORDS);
        }
        shard.push(rec);
        if shard.len() >= SHARD_RECORDS {
            self.handle.send((worker as u64, std::mem::take(shard)));
        }
    }

    /// Sends every shard that holds records.
    fn flush(&mut self) {
        for (worker, shard) in self.shards.iter_mut().enumerate() {
            if !shard.is_empty() {
                self.handle.send((worker as u64, std::mem::take(shard)));
            }
        }
        self.handle.flush();
    }

    /// Sends what is held at the current time, then advances to `t`.
    fn advance_to(&mut self, t: u64) {
        self.flush();
        self.handle.advance_to(t);
    }
}

impl Drop for Records {
    /// What is held goes out before the input closes.
    fn drop(&mut self) {
        self.flush();
    }
}

/// What one message admitted, applied to the counts once per message.
struct Tally {
    watermark: Option<u64>,
    /// The input time: records of earlier seconds are late.
    time: u64,
    accepted: u64,
    newest: Option<u64>,
    /// The latest retraction time of the admitted records.
    needed: Option<u64>,
    /// Admitted records by retraction time (a message's records share few).
    leaving: Vec<(u64, u64)>,
}

impl Tally {
    fn new(watermark: Option<u64>, time: u64) -> Self {
        Tally {
            watermark,
            time,
            accepted: 0,
            newest: None,
            needed: None,
            leaving: Vec::new(),
        }
    }

    /// Below the partition's watermark, or below the input time.
    fn is_late(&self, t: u64) -> bool {
        self.watermark.is_some_and(|w| t < w) || Params::tick(t) < self.time
    }

    fn admitted(&mut self, t: u64, leave: u64) {
        self.accepted += 1;
        self.newest = self.newest.max(Some(t));
        self.needed = self.needed.max(Some(leave));
        match self.leaving.iter_mut().find(|(l, _)| *l == leave) {
            Some((_, n)) => *n += 1,
            None => self.leaving.push((leave, 1)),
        }
    }

    fn leaving(&self, held: &mut BTreeMap<u64, u64>) {
        for (leave, n) in &self.leaving {
            *held.entry(*leave).or_default() += n;
        }
    }
}

/// Per-worker ingest state.
pub struct Ingest {
    inputs: Inputs,
    settings: Settings,
    /// Counts.
    pub stats: Stats,
    /// Dead letters.
    pub dlq: Vec<DlqRecord>,
    /// When the input frontier reached each new time (for finalization latency).
    pub advances: Vec<(u64, std::time::Instant)>,
    /// Whether to keep `advances` (a replay's latency report); `run`, which
    /// never ends, does not: they would grow by one per second of event time.
    pub keep_advances: bool,
    /// Records held in state, by the time they are retracted.
    leaving: BTreeMap<u64, u64>,
    /// Resource ids of the records this worker ingests.
    interner: Interner,
    /// The ids of the resources of the message being ingested.
    resources: Vec<Res>,
    /// Protobuf `Resource` bodies this worker decoded lately, each noted
    /// with its resource's id once interned.
    memo: otlp::ResourceMemo<Res>,
    /// The DLQ detail of a late record, worked out once.
    late_detail: String,
}

struct Source<'a> {
    name: &'a str,
    topic: Topic,
    partition: u32,
    offset: u64,
}

impl Ingest {
    /// Wraps a worker's input sessions.
    pub fn new(inputs: Inputs, settings: Settings) -> Self {
        let name_cap = settings.params.max_span_names;
        let late_detail = dlq_detail(&settings, LATE_DETAIL.to_string());
        Ingest {
            inputs,
            settings,
            stats: Stats::default(),
            dlq: Vec::new(),
            advances: Vec::new(),
            keep_advances: true,
            leaving: BTreeMap::new(),
            interner: Interner::with_name_cap(name_cap),
            resources: Vec::new(),
            memo: otlp::ResourceMemo::new(),
            late_detail,
        }
    }

    /// Input records currently held in correlation state by this worker.
    pub fn held(&self) -> u64 {
        self.leaving.values().sum()
    }

    /// The current input time (second).
    pub fn time(&self) -> u64 {
        *self.inputs.records.time()
    }

    /// The global input time (second): the least of every worker's; `None`
    /// once every input is closed.
    pub fn global_time(&self) -> Option<u64> {
        self.inputs.frontier.with_frontier(|f| f.first().copied())
    }

    /// Processes one message of partition `partition` (named `name`) of `topic`.
    ///
    /// Returns the latest retraction time of the records it admitted: the message
    /// is needed to rebuild state for every output time up to that one.
    pub fn process(
        &mut self,
        name: &str,
        topic: Topic,
        encoding: Encoding,
        partition: u32,
        wm: &mut Watermark,
        msg: &Message,
    ) -> Option<u64> {
        self.stats.messages += 1;
        let src = Source {
            name,
            topic,
            partition,
            offset: msg.offset,
        };
        if let Some(why) = &msg.framing_error {
            self.reject(
                &src,
                Rejection::message(Reason::MalformedProtobuf, why.clone()),
            );
            return None;
        }
        let origin = Origin {
            partition,
            offset: msg.offset,
            index: 0,
        };
        let watermark = wm.value(self.settings.allowed_lateness_ns);
        let opts = &self.settings.decode;
        let tp = msg.traceparent.as_deref();
        let mut tally = Tally::new(watermark, self.time());
        match topic {
            // Protobuf decodes to records that borrow the message, and each is
            // turned into its compact form only once admitted.
            Topic::Spans if encoding == Encoding::OtlpProto => {
                let d = otlp::decode_span_batch_with(&msg.payload, opts, &mut self.memo);
                self.intern(&d.resources);
                for (i, s) in d.spans.iter().enumerate() {
                    let t = s.event_time();
                    let leave = self.settings.params.span_lifetime(t).1;
                    if self.admit(&src, &mut tally, i as u32, t, leave) {
                        let res = self.resources[s.resource as usize];
                        let rec = SpanRec::of_ref(s, res, &mut self.interner);
                        self.inputs.records.push(Rec::Span(s.trace, rec));
                    }
                }
                self.reject_all(&src, d.rejects);
            }
            Topic::Logs if encoding == Encoding::OtlpProto => {
                let d = otlp::decode_log_batch_with(&msg.payload, opts, &mut self.memo);
                self.intern(&d.resources);
                for l in &d.logs {
                    let t = l.time;
                    let leave = self.settings.params.record_lifetime(t).1;
                    if self.admit(&src, &mut tally, l.index, t, leave) {
                        let rec = LogRec::of_ref(l, self.resources[l.resource as usize]);
                        self.inputs.records.push(Rec::Log(rec));
                    }
                }
                self.reject_all(&src, d.rejects);
            }
            Topic::Spans => {
                let d = otlp::decode_traces(&msg.payload, encoding, opts);
                for (i, s) in d.records.into_iter().enumerate() {
                    let t = s.event_time();
                    let leave = self.settings.params.span_lifetime(t).1;
                    if self.admit(&src, &mut tally, i as u32, t, leave) {
                        let rec = Rec::Span(s.trace, SpanRec::of(&s, &mut self.interner));
                        self.inputs.records.push(rec);
                    }
                }
                self.reject_all(&src, d.rejects);
            }
            Topic::Logs => {
                let d = otlp::decode_logs(&msg.payload, encoding, origin, opts);
                for l in d.records {
                    let (t, index) = (l.time, l.origin.index);
                    let leave = self.settings.params.record_lifetime(t).1;
                    if self.admit(&src, &mut tally, index, t, leave) {
                        let rec = Rec::Log(LogRec::of(&l, &mut self.interner));
                        self.inputs.records.push(rec);
                    }
                }
                self.reject_all(&src, d.rejects);
            }
            Topic::Audit => match audit::decode_audit(&msg.payload, origin, tp, opts) {
                Ok(a) => {
                    let t = a.time;
                    let (enter, leave) = self.settings.params.record_lifetime(t);
                    if self.admit(&src, &mut tally, 0, t, leave) {
                        let rec = Rec::Audit(AuditRec::of(&a, &mut self.interner));
                        self.inputs.records.push(rec);
                        self.inputs.audits.update_at(a.clone(), enter, 1);
                        self.inputs.audits.update_at(a, leave, -1);
                    }
                }
                Err(d) => self.decline(&src, d),
            },
            Topic::Deploys => match cdevents::decode_deploy(&msg.payload, origin, tp, opts) {
                Ok(d) => {
                    let t = d.time;
                    let (enter, leave) = self.settings.params.record_lifetime(t);
                    if self.admit(&src, &mut tally, 0, t, leave) {
                        self.inputs.deploys.update_at(d.clone(), enter, 1);
                        self.inputs.deploys.update_at(d, leave, -1);
                    }
                }
                Err(d) => self.decline(&src, d),
            },
        }
        tally.leaving(&mut self.leaving);
        if tally.accepted > 0 {
            *self.stats.accepted.entry(topic).or_default() += tally.accepted;
            self.stats.records += tally.accepted;
        }
        if let Some(t) = tally.newest {
            wm.max_seen = wm.max_seen.max(Some(t));
        }
        tally.needed
    }

    /// Interns the resources of a message into `self.resources`: a resource
    /// read from a memo entry takes the id noted there, if any (the entry's
    /// bytes give the same strings every time).
    fn intern(&mut self, resources: &[otlp::ResourceRef<'_>]) {
        self.resources.clear();
        for r in resources {
            let key = r.memo_key();
            let id = match key.and_then(|k| self.memo.note(k)) {
                Some(id) => id,
                None => {
                    let id = self.interner.resource_ref(r);
                    if let Some(k) = key {
                        self.memo.set_note(k, id);
                    }
                    id
                }
            };
            self.resources.push(id);
        }
    }

    /// Counts a record leaving at `leave` as admitted unless it is late (then
    /// it is dead-lettered); true when admitted. Inlined into the loops over a
    /// message's records, with the late path out of line.
    #[inline]
    fn admit(
        &mut self,
        src: &Source<'_>,
        tally: &mut Tally,
        index: u32,
        t: u64,
        leave: u64,
    ) -> bool {
        if tally.is_late(t) {
            self.late(src, index);
            return false;
        }
        tally.admitted(t, leave);
        true
    }

    /// Dead-letters a late record, as [`Self::reject`] would a
    /// `Rejection::record(Reason::Late, index, LATE_DETAIL)`.
    #[cold]
    #[inline(never)]
    fn late(&mut self, src: &Source<'_>, index: u32) {
        let detail = self.late_detail.clone();
        self.dead_letter(src, Reason::Late, Some(index), detail);
    }

    fn reject_all(&mut self, src: &Source<'_>, rejects: Vec<Rejection>) {
        for r in rejects {
            self.reject(src, r);
        }
    }

    fn decline(&mut self, src: &Source<'_>, d: Declined) {
        match d {
            Declined::Rejected(r) => self.reject(src, r),
            Declined::Skipped(why) => {
                self.stats.records += 1;
                *self.stats.skipped.entry((src.topic, why)).or_default() += 1;
            }
        }
    }

    fn reject(&mut self, src: &Source<'_>, r: Rejection) {
        let detail = dlq_detail(&self.settings, r.detail);
        self.dead_letter(src, r.reason, r.index, detail);
    }

    /// Counts a rejected record and writes its dead letter.
    fn dead_letter(
        &mut self,
        src: &Source<'_>,
        reason: Reason,
        index: Option<u32>,
        detail: String,
    ) {
        self.stats.records += 1;
        *self.stats.rejected.entry((src.topic, reason)).or_default() += 1;
        self.dlq.push(DlqRecord {
            source: src.name.to_string(),
            partition: src.partition,
            offset: src.offset,
            record_index: index,
            reason: reason.as_str().to_string(),
            detail,
        });
    }

    /// Advances the input frontier to the second of `watermark_ns` (never backwards)
    /// and flushes buffered updates.
    pub fn advance(&mut self, watermark_ns: u64) {
        let t = Params::tick(watermark_ns).max(self.time());
        if t > self.time() {
            if self.keep_advances {
                self.advances.push((t, std::time::Instant::now()));
            }
            self.leaving = self.leaving.split_off(&(t + 1));
        }
        self.inputs.records.advance_to(t);
        self.inputs.audits.advance_to(t);
        self.inputs.deploys.advance_to(t);
        self.flush();
    }

    /// Sends buffered updates into the dataflow.
    pub fn flush(&mut self) {
        self.inputs.records.flush();
        self.inputs.audits.flush();
        self.inputs.deploys.flush();
    }

    /// Closes the inputs: no more data will come from this worker.
    pub fn close(mut self) -> Closed {
        self.advances.push((u64::MAX, std::time::Instant::now()));
        Closed {
            stats: self.stats,
            dlq: self.dlq,
            advances: self.advances,
        }
    }
}

/// What a worker's ingest leaves behind when its inputs close.
pub struct Closed {
    /// Counts.
    pub stats: Stats,
    /// Dead letters.
    pub dlq: Vec<DlqRecord>,
    /// Frontier advances with their wall-clock instants; the last is the close.
    pub advances: Vec<(u64, std::time::Instant)>,
}
