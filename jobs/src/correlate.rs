//! Span correlation: the state every job that joins on trace id reads, and the
//! frontier-driven operator that evaluates each window once, when it is final.
//!
//! **Semantics.** Every record is present in its collection from its entry time
//! to its scheduled leave time (see [`crate::params`]). The final records of
//! window `w` are a function of the records present at `T = final_at(w) - 1`
//! (the *snapshot* of `w`), restricted to the records whose event time lies in
//! `w`:
//! - **Identity** (SPEC §3): of the spans present with one (trace id, span id),
//!   the one with the greatest end time counts; ties go to `ERROR`, then to the
//!   smallest service name, then to the smallest span record (so the choice is
//!   total). These are the trace's *winners*.
//! - **Parent resolution** (SPEC §3 M4): a span's parent resolves when a winner
//!   of the trace has that span id and starts in `[t - horizon, t + grace]` of
//!   the child's start `t`.
//!
//! **Why a timely operator and not a differential `reduce`.** A window's answer
//! is computed once and never revised (late data is rejected upstream), so
//! incremental maintenance buys nothing: the earlier `reduce` re-evaluated a
//! whole trace each time one of its spans arrived or left and every downstream
//! operator re-sorted that churn. Here each record is routed once by trace id,
//! held in a hash map of traces, and evaluated once when its window's snapshot is
//! complete (the input frontier reaches `final_at(w)`); spans are evicted when
//! the frontier passes their leave time. The operator emits per-worker partial
//! aggregates ([`Part`]), which `operators::finalize` merges into records.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use causeway_schemas::model::{is_entry_span, span_event_time};
use causeway_schemas::otlp::{LogRef, SpanRef};
use causeway_schemas::{AuditRecord, LogRecord, Span, SpanKind, SpanStatus};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Concat, InputCapability};
use timely::dataflow::StreamVec;

use crate::evidence::Candidate;
use crate::intern::{Interner, Name, Res};
use crate::params::Params;
use crate::sli::span_metrics::{GraphMetric, SpanMetric};
use crate::sli::Counts;

mod pool;

use pool::{List, Pool};

/// A span as the correlation state holds it (its trace id is the state's key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SpanRec {
    /// Span id, never 0.
    pub span: u64,
    /// Parent span id; 0 for a root.
    pub parent: u64,
    /// `start_time_unix_nano`.
    pub start: u64,
    /// `end_time_unix_nano`.
    pub end: u64,
    /// Owning resource.
    pub res: Res,
    /// Span kind.
    pub kind: SpanKind,
    /// Status code.
    pub status: SpanStatus,
    /// Whether an attribute value matched a PII detector.
    pub pii: bool,
    /// Span name (capped, see [`Name`]); only span metrics read it.
    pub name: Name,
}

impl SpanRec {
    /// The compact form of `s`.
    pub fn of(s: &Span, interner: &mut Interner) -> SpanRec {
        SpanRec {
            span: s.span,
            parent: s.parent,
            start: s.start,
            end: s.end,
            res: interner.get(&s.resource),
            kind: s.kind,
            status: s.status,
            pii: s.pii,
            name: interner.name(&s.name),
        }
    }

    /// The compact form of a span read straight from a message, whose
    /// resource is `res` (interned per message).
    pub fn of_ref(s: &SpanRef<'_>, res: Res, interner: &mut Interner) -> SpanRec {
        SpanRec {
            span: s.span,
            parent: s.parent,
            start: s.start,
            end: s.end,
            res,
            kind: s.kind,
            status: s.status,
            pii: s.pii,
            name: interner.name_bytes(s.name_bytes()),
        }
    }

    /// Event time ([`causeway_schemas::model::span_event_time`]).
    pub fn event_time(&self) -> u64 {
        span_event_time(self.start, self.end)
    }

    /// An entry span ([`causeway_schemas::model::is_entry_span`]).
    pub fn is_entry(&self) -> bool {
        is_entry_span(self.kind, self.parent)
    }

    /// Status `ERROR`.
    pub fn is_error(&self) -> bool {
        self.status == SpanStatus::Error
    }

    /// `end - start` in microseconds (0 when `end < start`), the R2 duration.
    pub fn duration_us(&self) -> u64 {
        self.end.saturating_sub(self.start) / 1000
    }
}

/// A log record reduced to what the SLIs read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogRec {
    /// Trace id; 0 when the record carries none.
    pub trace: u128,
    /// Event time, ns.
    pub time: u64,
    /// Owning resource.
    pub res: Res,
    /// A request record (M1).
    pub request: bool,
    /// An error request (M10).
    pub error_request: bool,
    /// ERROR or FATAL (M2).
    pub error: bool,
    /// Matched a PII detector (M9).
    pub pii: bool,
}

impl LogRec {
    /// The compact form of `l`.
    pub fn of(l: &LogRecord, interner: &mut Interner) -> LogRec {
        LogRec {
            trace: l.trace,
            time: l.time,
            res: interner.get(&l.resource),
            request: l.request,
            error_request: l.error_request,
            error: l.is_error(),
            pii: l.pii,
        }
    }

    /// The compact form of a log record read straight from a message, whose
    /// resource is `res` (interned per message).
    pub fn of_ref(l: &LogRef, res: Res) -> LogRec {
        LogRec {
            trace: l.trace,
            time: l.time,
            res,
            request: l.request,
            error_request: l.error_request,
            error: l.is_error(),
            pii: l.pii,
        }
    }
}

/// An audit record reduced to what M5 reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AuditRec {
    /// Trace id; 0 when none.
    pub trace: u128,
    /// Event time, ns.
    pub time: u64,
    /// The service acted on.
    pub res: Res,
}

impl AuditRec {
    /// The compact form of `a`.
    pub fn of(a: &AuditRecord, interner: &mut Interner) -> AuditRec {
        AuditRec {
            trace: a.trace,
            time: a.time,
            res: interner.get(&a.resource),
        }
    }
}

/// One record on its way to the worker that owns its trace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Rec {
    /// A span of a trace.
    Span(u128, SpanRec),
    /// A log record.
    Log(LogRec),
    /// An audit record.
    Audit(AuditRec),
}

impl Rec {
    fn trace(&self) -> u128 {
        match self {
            Rec::Span(t, _) => *t,
            Rec::Log(l) => l.trace,
            Rec::Audit(a) => a.trace,
        }
    }

    fn time(&self) -> u64 {
        match self {
            Rec::Span(_, s) => s.event_time(),
            Rec::Log(l) => l.time,
            Rec::Audit(a) => a.time,
        }
    }

    /// The worker routing key: the trace id, or for records without one their
    /// time (they join nothing, so any worker may count them).
    pub fn route(&self) -> u64 {
        match self.trace() {
            0 => self.time() / 1_000_000,
            t => fold(t),
        }
    }
}

fn fold(t: u128) -> u64 {
    let x = (t as u64) ^ ((t >> 64) as u64);
    // Mix the bits (ids in tests are small numbers; real ones are random).
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (x >> 29)
}

/// The ordering of duplicates: `Greater` means `a` wins over `b`.
pub fn duplicate_order(a: &SpanRec, b: &SpanRec) -> Ordering {
    a.end
        .cmp(&b.end)
        .then_with(|| a.is_error().cmp(&b.is_error()))
        .then_with(|| {
            if a.res.service == b.res.service {
                Ordering::Equal
            } else {
                b.res.resource().service.cmp(&a.res.resource().service)
            }
        })
        .then_with(|| record_order(b, a))
}

/// The order of two span records of one trace as whole records (field by field,
/// the resource by its strings).
fn record_order(a: &SpanRec, b: &SpanRec) -> Ordering {
    (a.span, a.parent, a.start, a.end, a.kind, a.status, a.pii)
        .cmp(&(b.span, b.parent, b.start, b.end, b.kind, b.status, b.pii))
        .then_with(|| {
            if a.res == b.res {
                Ordering::Equal
            } else {
                a.res.resource().cmp(&b.res.resource())
            }
        })
        .then_with(|| a.name.cmp(&b.name))
}

/// The winners of one trace at a snapshot, sorted by span id, with parent lookup.
pub struct Winners<'a> {
    spans: Vec<&'a SpanRec>,
}

impl<'a> Winners<'a> {
    /// The winners among `spans` (all copies, present or not) at snapshot time `at`.
    pub fn at(spans: &'a [SpanRec], at: u64, params: &Params) -> Self {
        Self::at_in(Vec::new(), spans, at, params)
    }

    /// [`Winners::at`], in the allocation of `buf` (from [`Winners::recycle`]).
    pub fn at_in(
        mut present: Vec<&'a SpanRec>,
        spans: impl IntoIterator<Item = &'a SpanRec>,
        at: u64,
        params: &Params,
    ) -> Self {
        present.clear();
        let live = params.spans_present_at(at);
        present.extend(spans.into_iter().filter(|s| live.contains(&s.event_time())));
        present.sort_unstable_by_key(|s| s.span);
        present.dedup_by(|later, kept| {
            if later.span != kept.span {
                return false;
            }
            if duplicate_order(later, kept) == Ordering::Greater {
                std::mem::swap(later, kept);
            }
            true
        });
        Winners { spans: present }
    }

    /// The allocation of these winners, empty, for [`Winners::at_in`] on
    /// another trace.
    pub fn recycle<'b>(self) -> Vec<&'b SpanRec> {
        let mut v = self.spans;
        v.clear();
        // Collecting from an emptied vector of references into one of other
        // references reuses its allocation.
        #[allow(clippy::unnecessary_filter_map)] // it changes the element lifetime
        v.into_iter().filter_map(|_| None).collect()
    }

    /// The number of winners.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// No winners.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Every winner, by span id.
    pub fn iter(&self) -> impl Iterator<Item = &'a SpanRec> + '_ {
        self.spans.iter().copied()
    }

    /// The winner with span id `id`.
    pub fn get(&self, id: u64) -> Option<&'a SpanRec> {
        self.spans
            .binary_search_by_key(&id, |s| s.span)
            .ok()
            .map(|i| self.spans[i])
    }

    /// The resolved parent of `s` under the join rule, if any.
    pub fn parent(&self, s: &SpanRec, params: &Params) -> Option<&'a SpanRec> {
        if s.parent == 0 {
            return None;
        }
        self.get(s.parent)
            .filter(|p| params.joins(s.start, p.start))
    }

    /// Whether a winner joins an event at `t` (of service `service`, when given).
    pub fn joins(&self, t: u64, service: Option<u32>, params: &Params) -> bool {
        self.spans
            .iter()
            .any(|s| service.is_none_or(|sv| s.res.service == sv) && params.joins(t, s.start))
    }
}

/// A per-worker partial result of one window, merged by `operators::finalize`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Part {
    /// SLI counts of one resource.
    Counts(Res, Counts),
    /// Service-graph edge counts: client, server, total, failed.
    Edge(Res, Res, u64, u64),
    /// Exemplar candidates of one resource.
    Exemplars(Vec<Candidate>),
    /// Span metrics of one (resource, name, kind, status).
    SpanMetric(SpanMetric),
    /// Service-graph metrics of one (client, server, connection type).
    GraphMetric(GraphMetric),
}

impl Part {
    /// The worker that merges this part: a hash of what it is keyed by in the
    /// final records (strings, so every process routes alike).
    pub fn route(&self) -> u64 {
        use crate::operators::finalize::stable_hash;
        match self {
            Part::Counts(res, _) => stable_hash(&*res.resource()),
            Part::Edge(client, server, ..) => {
                stable_hash(&(&client.resource().service, &server.resource().service))
            }
            Part::Exemplars(c) => c.first().map_or(0, |c| {
                let r = c.res.resource();
                stable_hash(&(&r.service, &r.environment))
            }),
            Part::SpanMetric(m) => stable_hash(&(&*m.res.resource(), &*m.name.get())),
            Part::GraphMetric(g) => stable_hash(&(
                g.client.map(|c| c.resource().service.clone()),
                &g.server.resource().service,
                g.connection,
            )),
        }
    }
}

/// A window's part, tagged with the window start.
pub type WindowPart = (u64, Part);

/// A hasher for keys that are already well-distributed ids (trace ids, interned
/// resource ids): a multiply, no byte loop.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    // Enum discriminants (`Sli` in exemplar keys) hash as `isize`, which
    // would otherwise go through the byte loop.
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u128(&mut self, t: u128) {
        self.0 = fold(t);
    }
}

/// Builds [`IdHasher`]s.
pub type IdBuild = BuildHasherDefault<IdHasher>;

type TraceMap<V> = HashMap<u128, V, IdBuild>;

/// A log or audit record held with its trace until its window is evaluated.
#[derive(Clone, Copy)]
enum Joined {
    Log(LogRec),
    Audit(AuditRec),
}

impl Joined {
    fn time(&self) -> u64 {
        match self {
            Joined::Log(l) => l.time,
            Joined::Audit(a) => a.time,
        }
    }
}

/// Spans per block of the span pool. A trace has a handful to a few tens of
/// spans; small blocks leave fewer slots empty than one block for the usual
/// trace (with 4 to 12 spans a trace, blocks of 4 held 28 % less state per
/// span than vectors of 8, 16, ..., and blocks of 8 more, for the same
/// instructions).
const SPAN_BLOCK: usize = 4;

/// Log and audit records per block of the pool of records waiting for their
/// window (a trace has a few per window).
const JOINED_BLOCK: usize = 4;

/// What one worker holds of a trace; its records are in the pools of [`Traces`].
#[derive(Default)]
struct Trace {
    spans: List,
    /// Log and audit records of the trace whose windows are not evaluated yet.
    joined: List,
    /// The latest leave time of its records.
    leave: u64,
    /// The last window (by final time) it was queued for and evaluated in.
    queued: u64,
    evaluated: u64,
}

/// Trace id -> what the worker holds of it. The hash table maps ids to slots
/// of a dense vector (32-byte buckets instead of ~90 with the [`Trace`] in
/// them), whose freed slots are reused. Evicting a horizon's traces leaves
/// tombstones that fill the table, and hashbrown then doubles it rather than
/// cleaning it in place while more than half of it is live: with traces in
/// the buckets, that one doubling after the horizon filled was a 12 MiB step
/// in RSS over an 8M-span run (issue 9, target 4). The records of the traces
/// are in two [`Pool`]s of blocks, so a growing trace reallocates nothing.
#[derive(Default)]
struct Traces {
    slots: TraceMap<u32>,
    held: Vec<Trace>,
    free: Vec<u32>,
    spans: Pool<SpanRec, SPAN_BLOCK>,
    joined: Pool<Joined, JOINED_BLOCK>,
}

impl Traces {
    /// The slot of trace `id` in `held`, taken on first sight.
    fn slot(&mut self, id: u128) -> usize {
        let (held, free) = (&mut self.held, &mut self.free);
        *self.slots.entry(id).or_insert_with(|| {
            free.pop().unwrap_or_else(|| {
                held.push(Trace::default());
                // A worker holds far fewer than 2^32 traces (each is bytes).
                (held.len() - 1) as u32
            })
        }) as usize
    }

    fn get(&self, id: &u128) -> Option<&Trace> {
        self.slots.get(id).map(|&i| &self.held[i as usize])
    }

    /// Forgets trace `id`; its records' blocks go back to the pools.
    fn remove(&mut self, id: &u128) {
        if let Some(i) = self.slots.remove(id) {
            let t = &mut self.held[i as usize];
            self.spans.clear(&mut t.spans);
            self.joined.clear(&mut t.joined);
            *t = Trace::default();
            self.free.push(i);
        }
    }
}

/// One window waiting for its snapshot.
struct Pending {
    cap: Capability<u64>,
    /// The traces with records in the window (a trace may repeat).
    traces: Vec<u128>,
    /// Records without a trace id: they join nothing.
    untraced: Vec<Joined>,
}

/// The value at time `at` of `by_time` (sorted by time, with few entries,
/// searched from the end, where new times arrive), made by `new` if absent.
fn at_time<V>(by_time: &mut Vec<(u64, V)>, at: u64, new: impl FnOnce() -> V) -> &mut V {
    let i = match by_time.iter().rposition(|(t, _)| *t <= at) {
        Some(i) if by_time[i].0 == at => i,
        found => {
            let i = found.map_or(0, |i| i + 1);
            by_time.insert(i, (at, new()));
            i
        }
    };
    &mut by_time[i].1
}

/// The correlation state of one worker.
struct State {
    params: Params,
    traces: Traces,
    /// Trace ids by the leave time that may end them (one entry per window
    /// or so, sorted, searched from the end: a `BTreeMap` entry cost more).
    evict: Vec<(u64, Vec<u128>)>,
    /// Windows with records, by final time (a few at a time: sorted, searched from the end).
    pending: Vec<(u64, Pending)>,
}

impl State {
    fn pending(&mut self, at: u64, cap: &InputCapability<u64>) -> &mut Pending {
        at_time(&mut self.pending, at, || Pending {
            cap: cap.delayed(&at, 0),
            traces: Vec::new(),
            untraced: Vec::new(),
        })
    }

    fn insert(&mut self, rec: Rec, cap: &InputCapability<u64>, frontier: u64) {
        let p = &self.params;
        // Each record's times once: a span's event time, its window's final
        // time and its leave time.
        let (trace, at, leave) = match &rec {
            Rec::Span(t, s) => {
                let time = s.event_time();
                (*t, p.final_at(p.window_of(time)), p.span_lifetime(time).1)
            }
            Rec::Log(l) => {
                let at = p.final_at(p.window_of(l.time));
                (l.trace, at, at)
            }
            Rec::Audit(a) => {
                let at = p.final_at(p.window_of(a.time));
                (a.trace, at, at)
            }
        };
        if trace == 0 {
            let joined = match rec {
                Rec::Log(l) => Joined::Log(l),
                Rec::Audit(a) => Joined::Audit(a),
                // Spans always have a trace id.
                Rec::Span(..) => return,
            };
            self.pending(at, cap).untraced.push(joined);
            return;
        }
        let slot = self.traces.slot(trace);
        let traces = &mut self.traces;
        let t = &mut traces.held[slot];
        match rec {
            Rec::Span(_, s) => {
                let n = t.spans.len;
                if n >= 16 && n.is_power_of_two() {
                    // A long-lived trace id: drop copies no snapshot can see again.
                    traces.spans.retain(&mut t.spans, |x| {
                        p.span_lifetime(x.event_time()).1 > frontier
                    });
                }
                traces.spans.push(&mut t.spans, s);
            }
            Rec::Log(l) => traces.joined.push(&mut t.joined, Joined::Log(l)),
            Rec::Audit(a) => traces.joined.push(&mut t.joined, Joined::Audit(a)),
        }
        if leave > t.leave {
            t.leave = leave;
            at_time(&mut self.evict, leave, Vec::new).push(trace);
        }
        if t.queued != at {
            t.queued = at;
            self.pending(at, cap).traces.push(trace);
        }
    }

    /// Evaluates the window whose records are `p`, final at `at`.
    fn evaluate(&mut self, window: u64, at: u64, p: Pending) -> Vec<WindowPart> {
        let params = &self.params;
        let snapshot = at - 1;
        let mut acc = crate::sli::Window::new(window, params);
        for r in &p.untraced {
            match r {
                Joined::Log(l) => acc.log(l, None),
                Joined::Audit(a) => acc.audit(a, None),
            }
        }
        let mut buf = Vec::new();
        let Traces {
            slots,
            held,
            spans,
            joined,
            ..
        } = &mut self.traces;
        for trace in p.traces {
            let Some(&slot) = slots.get(&trace) else {
                continue;
            };
            let t = &mut held[slot as usize];
            if t.evaluated == at {
                continue;
            }
            t.evaluated = at;
            let winners = Winners::at_in(buf, spans.iter(&t.spans), snapshot, params);
            acc.trace(trace, &winners);
            let w = (!winners.is_empty()).then_some(&winners);
            let mut rest = false;
            for r in joined.iter(&t.joined) {
                if params.final_at(params.window_of(r.time())) != at {
                    rest = true;
                    continue;
                }
                match r {
                    Joined::Log(l) => acc.log(l, w),
                    Joined::Audit(a) => acc.audit(a, w),
                }
            }
            if rest {
                joined.retain(&mut t.joined, |r| {
                    params.final_at(params.window_of(r.time())) != at
                });
            } else {
                // Free its blocks: the trace's spans stay for the horizon,
                // its log records rarely come back in a later window.
                joined.clear(&mut t.joined);
            }
            buf = winners.recycle();
        }
        acc.parts()
    }

    /// Drops every trace whose records all left at or before `frontier`.
    fn evict_until(&mut self, frontier: u64) {
        let due = self.evict.partition_point(|(t, _)| *t <= frontier);
        for (_, traces) in self.evict.drain(..due) {
            for trace in traces {
                if self.traces.get(&trace).is_some_and(|t| t.leave <= frontier) {
                    self.traces.remove(&trace);
                }
            }
        }
    }
}

/// Records bound for one worker: the worker's index (the exchange takes it
/// modulo the number of workers) and the records, each routed there by
/// [`Rec::route`]. The pipeline fills one per worker as it ingests, so the
/// exchange moves a vector per batch instead of copying each record into a
/// per-worker buffer.
pub type Shard = (u64, Vec<Rec>);

/// Records per [`Shard`] a sender fills before it sends one.
pub const SHARD_RECORDS: usize = 1024;

/// The worker of `peers` that correlates `rec`.
pub fn worker_of(rec: &Rec, peers: usize) -> usize {
    (rec.route() % peers as u64) as usize
}

/// The compact records of decoded spans, logs and audit records (insertions
/// only; a log or audit record with multiplicity `n` is sent `n` times, a
/// span once), in shards.
pub fn compact<'s>(
    spans: VecCollection<'s, u64, Span>,
    logs: VecCollection<'s, u64, LogRecord>,
    audits: VecCollection<'s, u64, AuditRecord>,
) -> StreamVec<'s, u64, Shard> {
    let mut interner = Interner::default();
    let spans = spans.inner.flat_map(move |(s, t, r)| {
        (r > 0).then(|| (Rec::Span(s.trace, SpanRec::of(&s, &mut interner)), t, 1))
    });
    let mut interner = Interner::default();
    let logs = logs.inner.flat_map(move |(l, t, r)| {
        (r > 0).then(|| (Rec::Log(LogRec::of(&l, &mut interner)), t, r))
    });
    let mut interner = Interner::default();
    let audits = audits.inner.flat_map(move |(a, t, r)| {
        (r > 0).then(|| (Rec::Audit(AuditRec::of(&a, &mut interner)), t, r))
    });
    let peers = spans.scope().peers();
    spans
        .concat(logs)
        .concat(audits)
        .unary(Pipeline, "Shard", move |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let mut shards: Vec<Vec<Rec>> = vec![Vec::new(); peers];
                    for (rec, _t, n) in data.drain(..) {
                        let to = &mut shards[worker_of(&rec, peers)];
                        for _ in 0..n {
                            to.push(rec.clone());
                        }
                    }
                    let shards = shards.into_iter().enumerate();
                    let shards = shards.filter(|(_, s)| !s.is_empty());
                    output
                        .session(&cap)
                        .give_iterator(shards.map(|(w, s)| (w as u64, s)));
                });
            }
        })
}

/// Correlates spans, logs and audit records by trace id and emits, for each
/// window once it is final, this worker's partial aggregates at `final_at(w)`.
///
/// Records come in [`Shard`]s, each routed to the worker it names; there are
/// only insertions: every record leaves at the time [`crate::params`]
/// prescribes, which the operator applies itself.
pub fn correlate<'s>(
    records: StreamVec<'s, u64, Shard>,
    params: &Params,
) -> StreamVec<'s, u64, WindowPart> {
    let params = params.clone();
    let route = Exchange::new(|(worker, _): &Shard| *worker);
    records.unary_frontier(route, "Correlate", move |_cap, _info| {
        let mut state = State {
            params,
            traces: Traces::default(),
            evict: Vec::new(),
            pending: Vec::new(),
        };
        move |(input, frontier), output| {
            let now = frontier.frontier().first().copied().unwrap_or(u64::MAX);
            input.for_each(|cap, data| {
                for (_, shard) in data.drain(..) {
                    for rec in shard {
                        state.insert(rec, &cap, now);
                    }
                }
            });
            while let Some((at, _)) = state.pending.first() {
                if frontier.frontier().less_than(at) {
                    break;
                }
                let (at, p) = state.pending.remove(0);
                let cap = p.cap.clone();
                let window = at - state.params.window_s - state.params.grace_s;
                let parts = state.evaluate(window, at, p);
                output.session(&cap).give_iterator(parts.into_iter());
            }
            state.evict_until(now);
        }
    })
}
