//! The demo's story: seeded, deterministic traffic of a small shop with an
//! incident, produced lazily as the Kafka messages an OpenTelemetry Collector
//! (`kafka` exporter), a CD system and the Kubernetes audit log would write.
//!
//! **Cast.** About twenty services (`gateway`, `auth`, `users`, `catalog`,
//! `search`, `checkout`, `payments`, `orders`, `notifier`, `email`, ...) in one
//! environment, each with a `service.name`, `service.version` and
//! `deployment.environment.name` (two of them still report the older
//! `deployment.environment`), plus a `deployer` in environment `ci` whose traces
//! carry the changes. Every request enters through `gateway` (a root `SERVER`
//! span) and fans out over `CLIENT`→`SERVER` calls; `orders` hands each new order
//! to `notifier` through a queue (`PRODUCER`→`CONSUMER`). Every served span has a
//! request log record (OTLP logs) with its trace id, except a few (many more for
//! the legacy `email`). `ads` sometimes misses the gateway's 250 ms deadline: a
//! failed `CLIENT` span, not a failed request.
//!
//! **Plot** (offsets from [`StoryConfig::start_ns`]; defaults in brackets):
//! - `search` 1.8.0 replaces 1.7.3 \[15 min\], an innocent change;
//! - `checkout` 2.4.0 replaces 2.3.1 \[35 min\] (CDEvent `service.deployed` and the
//!   audit record of `alice@example.com`'s `kubectl patch` 2 s later, sharing
//!   the deployer's trace context). It takes a quarter of checkout's traffic at
//!   first and all of it after \[5 min\] (a canary ramp). \[40%\] of the requests it
//!   serves fail after calling `cart` and `pricing`: an `ERROR` checkout span, a
//!   failed gateway `CLIENT` span and a failed gateway entry span (HTTP 502),
//!   and `ERROR` request logs. With the availability SLOs of
//!   [`Story::config_toml`] this pages for `checkout` and `gateway` within
//!   minutes (and opens tickets that stay open: the ticket row looks at 6 h),
//!   the culprit `checkout` and the deploy suspected. No other service alerts;
//! - `checkout` is rolled back to 2.3.1 \[65 min\] (CDEvent `service.rolledback`,
//!   audit record of `bob@example.com`); the errors stop, and the pages resolve
//!   about half an hour later, once the 30 min window of the default policy's
//!   second page row (6× over 6 h and 30 min) has cleared;
//! - from \[80 min\] to \[100 min\] the queue hop to `notifier` loses the trace id
//!   for \[70%\] of the messages: the consumer span starts a new trace but keeps
//!   the producer's span id as its parent, an orphan (SLI M4 context loss rises
//!   for `notifier`).
//!
//! Throughout: \[1%\] of the request logs of `auth`, `users`, `checkout`,
//! `payments` and `email` carry an e-mail address or a card number (in an
//! attribute or the body), and a quarter as many of their served spans a card
//! number attribute (SLI M9). \[0.3%\] of the span and log messages reach Kafka
//! \[5 min\] late (SPEC §2: late, dead-lettered), and \[0.2%\] are malformed: the
//! protobuf cut short inside its first resource, or (spans only) a batch with
//! one extra span whose trace id is 15 bytes (dead-lettered alone).
//!
//! **Messages.** `otlp_spans` and `otlp_logs` carry one OTLP protobuf
//! `TracesData` / `LogsData` per message, one `ResourceSpans` per (service,
//! version) in it, as the Collector's batch processor and kafka exporter write
//! them: a message closes at \[64\] records or \[1 s\] after its first record was
//! exported, whichever comes first, and messages are dealt round-robin over
//! [`StoryConfig::partitions`] partitions (the exporter does not key by trace
//! unless told to, and `causeway run` correlates across partitions). A record is
//! exported when its span or request ends, plus the SDK's batching delay, so the
//! spans of a message are slightly out of start-time order (well within
//! `allowed_lateness`). `deploys` and `audit` have one partition each and JSON
//! payloads with a `traceparent` header. No message has a key.
//!
//! **Laziness.** [`Story::advance`] generates traces only up to the time it is
//! asked for; what it holds is the traffic of the last few seconds (records not
//! yet exported, open batches) and the late messages still to send, so memory
//! does not grow with the story's length. The message sequence does not depend
//! on how `advance` is called.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use causeway_schemas::otlp::proto::{
    LogRecord, LogsData, Resource, ResourceLogs, ResourceSpans, ScopeLogs, ScopeSpans, Span,
    TracesData,
};
use prost::Message as _;

use super::changes;
use super::rng::Rng;
use super::traffic::{self, Conditions, Item, Rec, TraceGen, CHECKOUT, NOTIFIER, SEARCH};
use crate::sources::file::write_delimited;
use crate::sources::Topic;

const NS: u64 = 1_000_000_000;
const MIN: u64 = 60 * NS;

/// The story's knobs. Times are offsets from `start_ns`, in event time.
#[derive(Clone, Debug)]
pub struct StoryConfig {
    /// Seed of every random choice; the same config gives the same messages.
    pub seed: u64,
    /// Event time of the first request, Unix nanoseconds. `causeway run` rejects
    /// events more than `max_future_skew` (10 min) past its wall clock, so a live
    /// demo should start at about `now - duration`.
    pub start_ns: u64,
    /// Event time covered by requests (default 2 h).
    pub duration: Duration,
    /// Requests (traces) per second of event time (default 8; about 13 spans and
    /// 6 log records each).
    pub traces_per_second: f64,
    /// Partitions of `otlp_spans` and of `otlp_logs` (default 3); `deploys` and
    /// `audit` have one.
    pub partitions: u32,
    /// `deployment.environment.name` of the shop (default `prod`).
    pub environment: String,
    /// When `search` 1.8.0 is deployed (default 15 min).
    pub innocent_deploy_at: Duration,
    /// When `checkout` 2.4.0 is deployed (default 35 min).
    pub bad_deploy_at: Duration,
    /// How long 2.4.0 takes to get all of checkout's traffic (default 5 min).
    pub canary: Duration,
    /// When `checkout` is rolled back to 2.3.1 (default 65 min).
    pub rollback_at: Duration,
    /// Share of the requests 2.4.0 serves that fail (default 0.4).
    pub error_share: f64,
    /// When the queue hop to `notifier` starts losing trace context (default 80 min).
    pub context_loss_from: Duration,
    /// When it stops (default 100 min).
    pub context_loss_until: Duration,
    /// Share of the hops that lose the context meanwhile (default 0.7).
    pub context_loss_share: f64,
    /// Share of the request logs of PII-prone services with PII (default 0.01).
    pub pii_share: f64,
    /// Base share of request logs without a trace id (default 0.02).
    pub untraced_share: f64,
    /// Share of span and log messages delivered late (default 0.003).
    pub late_share: f64,
    /// How much later than their time late messages arrive (default 5 min; more
    /// than the `allowed_lateness` of [`Story::config_toml`], 2 min).
    pub late_delay: Duration,
    /// Share of span and log messages that are malformed (default 0.002).
    pub malformed_share: f64,
    /// Records per OTLP message at most (default 64).
    pub batch_size: usize,
    /// How long a message stays open for more records (default 1 s).
    pub batch_timeout: Duration,
}

impl Default for StoryConfig {
    fn default() -> Self {
        StoryConfig {
            seed: 2026,
            start_ns: 1_795_168_800 * NS, // 2026-11-20T10:00:00Z
            duration: Duration::from_secs(2 * 3600),
            traces_per_second: 8.0,
            partitions: 3,
            environment: "prod".into(),
            innocent_deploy_at: Duration::from_secs(15 * 60),
            bad_deploy_at: Duration::from_secs(35 * 60),
            canary: Duration::from_secs(5 * 60),
            rollback_at: Duration::from_secs(65 * 60),
            error_share: 0.4,
            context_loss_from: Duration::from_secs(80 * 60),
            context_loss_until: Duration::from_secs(100 * 60),
            context_loss_share: 0.7,
            pii_share: 0.01,
            untraced_share: 0.02,
            late_share: 0.003,
            late_delay: Duration::from_secs(300),
            malformed_share: 0.002,
            batch_size: 64,
            batch_timeout: Duration::from_secs(1),
        }
    }
}

/// A change of the story: a CDEvent and the audit record of the API call behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// CDEvent `context.timestamp`, Unix ns (whole seconds).
    pub at_ns: u64,
    /// The audit record's `stageTimestamp`, Unix ns (2 s after `at_ns`: the
    /// deployer announces the change, then patches the Deployment).
    pub audit_ns: u64,
    /// Service changed.
    pub service: String,
    /// Environment.
    pub environment: String,
    /// `deployed` or `rolledback` (the CDEvent type's verb).
    pub action: String,
    /// Version running after the change.
    pub version: String,
    /// Version running before it.
    pub previous_version: String,
    /// `subject.content.artifactId`.
    pub artifact: String,
    /// CDEvent `context.id`.
    pub id: String,
    /// The audit record's `user.username`.
    pub actor: String,
    /// The deployer's trace id (32 hex), shared by the CDEvent and the audit record.
    pub trace_id: String,
    /// The CDEvent's `traceparent`.
    pub traceparent: String,
    /// The audit record's `traceparent` (same trace, the API call's span).
    pub audit_traceparent: String,
}

/// What happens when: what a test or the live view needs to know.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// First request, Unix ns.
    pub start_ns: u64,
    /// No request starts at or after this (`start_ns + duration`).
    pub end_ns: u64,
    /// The shop's environment.
    pub environment: String,
    /// The service the bad deploy breaks (`checkout`).
    pub culprit: String,
    /// Its good version (`2.3.1`).
    pub good_version: String,
    /// Its bad version (`2.4.0`).
    pub bad_version: String,
    /// When the bad version is deployed, Unix ns.
    pub bad_deploy_ns: u64,
    /// When it has all of the culprit's traffic.
    pub canary_until_ns: u64,
    /// When it is rolled back.
    pub rollback_ns: u64,
    /// Actor of the bad deploy.
    pub deploy_actor: String,
    /// Actor of the rollback.
    pub rollback_actor: String,
    /// Service whose async hop loses trace context (`notifier`).
    pub context_loss_service: String,
    /// Context loss starts, Unix ns.
    pub context_loss_from_ns: u64,
    /// Context loss stops.
    pub context_loss_until_ns: u64,
    /// Every change that happens within the story, in time order.
    pub changes: Vec<Change>,
}

impl Timeline {
    /// The bad deploy, when it happens within the story.
    pub fn bad_deploy(&self) -> Option<&Change> {
        self.changes
            .iter()
            .find(|c| c.service == self.culprit && c.version == self.bad_version)
    }

    /// The rollback, when it happens within the story.
    pub fn rollback(&self) -> Option<&Change> {
        self.changes.iter().find(|c| c.action == "rolledback")
    }
}

/// What the generator did to a message on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// Sent `late_delay` after its time: its records are late (SPEC §2).
    Late,
    /// Its protobuf is cut short inside the first resource: the whole message
    /// is malformed.
    Truncated,
    /// It holds one extra span whose trace id is 15 bytes (the last span of its
    /// first resource); the rest of the message is good.
    BadTraceId,
}

/// One Kafka record to produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoMessage {
    /// Input topic.
    pub topic: Topic,
    /// Partition: `0..partitions` for spans and logs, 0 for deploys and audit.
    pub partition: u32,
    /// The record value: OTLP protobuf, or JSON for deploys and audit.
    pub payload: Vec<u8>,
    /// The `traceparent` header (deploys and audit).
    pub traceparent: Option<String>,
    /// Story time at which the feeder produces it, Unix ns; non-decreasing over
    /// the sequence. A late message's records are older than this by `late_delay`.
    pub event_ns: u64,
    /// What is wrong with it on purpose, if anything.
    pub flaw: Option<Flaw>,
}

/// What the story has produced so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages per topic.
    pub messages: BTreeMap<Topic, u64>,
    /// Generated spans (the extra bad-trace-id spans not included).
    pub spans: u64,
    /// Generated log records.
    pub logs: u64,
    /// Spans and log records carrying PII in messages neither late nor
    /// malformed: what SLI M9 should count as bad.
    pub pii_records: u64,
    /// Late messages.
    pub late_messages: u64,
    /// Records in late messages.
    pub late_records: u64,
    /// Truncated (malformed) messages.
    pub truncated_messages: u64,
    /// Spans with a 15-byte trace id.
    pub bad_trace_id_spans: u64,
    /// `notifier` consumer spans that lost their trace (orphans by design).
    pub orphan_spans: u64,
}

/// A record waiting for its export time.
struct Pending {
    key: (u64, u64),
    item: Item,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> Ordering {
        self.key.cmp(&o.key)
    }
}

/// A message waiting for its produce time.
struct Queued {
    key: (u64, u64),
    msg: DemoMessage,
    records: u64,
    pii: u64,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        self.key.cmp(&o.key)
    }
}

/// An open OTLP message of one topic.
#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    first: u64,
    next_partition: u32,
}

/// The story, generated lazily. See the module docs.
pub struct Story {
    cfg: StoryConfig,
    timeline: Timeline,
    resources: Vec<Resource>,
    traffic: Rng,
    flaws: Rng,
    /// Start of the next request; `u64::MAX` once traffic has ended.
    next_trace: u64,
    /// Every record or message created from now on is exported / produced at
    /// or after this time.
    horizon: u64,
    pending: BinaryHeap<Reverse<Pending>>,
    spans: Batch,
    logs: Batch,
    out: BinaryHeap<Reverse<Queued>>,
    next_change: usize,
    seq: u64,
    counts: Counts,
    scratch: Vec<Item>,
}

impl Story {
    /// A story for `cfg`; nothing is generated until [`Story::advance`].
    pub fn new(cfg: StoryConfig) -> Self {
        let timeline = timeline(&cfg);
        let resources = traffic::resources(&cfg.environment);
        Story {
            traffic: Rng::new(cfg.seed, 1),
            flaws: Rng::new(cfg.seed, 2),
            next_trace: cfg.start_ns,
            horizon: cfg.start_ns,
            pending: BinaryHeap::new(),
            spans: Batch::default(),
            logs: Batch::default(),
            out: BinaryHeap::new(),
            next_change: 0,
            seq: 0,
            counts: Counts::default(),
            scratch: Vec::new(),
            cfg,
            timeline,
            resources,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &StoryConfig {
        &self.cfg
    }

    /// The next messages whose produce time ([`DemoMessage::event_ns`]) is below
    /// `until_ns`, in the order the feeder should produce them (a late message
    /// comes `late_delay` after its records' time). Calling it with growing
    /// `until_ns` in any steps yields the same sequence; `advance(end_ns())`
    /// yields everything that is left.
    pub fn advance(&mut self, until_ns: u64) -> Vec<DemoMessage> {
        let mut out = Vec::new();
        loop {
            while let Some(Reverse(top)) = self.out.peek() {
                let send = top.key.0;
                if send >= until_ns || send >= self.horizon {
                    break;
                }
                if let Some(Reverse(q)) = self.out.pop() {
                    self.count(&q);
                    out.push(q.msg);
                }
            }
            if self.horizon >= until_ns || self.horizon == u64::MAX {
                return out;
            }
            self.step();
        }
    }

    /// Story time after the last message: `advance(end_ns())` drains the story.
    pub fn end_ns(&self) -> u64 {
        self.timeline.end_ns + MIN
    }

    /// What happens when.
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// What the messages returned so far hold.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The demo's config body: `[time]`, the availability SLO of every service
    /// (99.9%, default burn-rate policy) and `[alerting]`; no `[kafka]` section.
    pub fn config_toml(&self) -> String {
        format!(
            "# The `causeway demo` story (seed {seed}).\n\
             [time]\n\
             # The demo feeds event time about 60 times faster than real time, so\n\
             # event-time slack is worth little wall-clock time: a consumer reading one\n\
             # partition a second ahead of another must not make the other's records\n\
             # late, and a partition that goes quiet (deploys, audit) must stop\n\
             # holding the watermark back within seconds.\n\
             allowed_lateness = \"2m\"\n\
             idle_timeout = \"3s\"\n\n\
             [[slo]]\n\
             name = \"availability\"\n\
             service = \"*\"\n\
             sli = \"availability\"\n\
             objective = 0.999\n\n\
             [alerting]\n\
             change_lookback = \"1h\"\n\
             runbook_url = \"https://runbooks.example.com/shop/availability\"\n",
            seed = self.cfg.seed
        )
    }

    /// Writes the whole story as `replay` input files into `dir` (created if
    /// missing): `otlp_spans-<p>.pb` and `otlp_logs-<p>.pb` (delimited protobuf)
    /// for each partition, `deploys-0.jsonl` and `audit-0.jsonl`; per topic and
    /// partition the same messages in the same order as [`Story::advance`]
    /// yields. The `traceparent` headers are not written: the payloads carry the
    /// same trace context.
    pub fn write_replay_inputs(cfg: &StoryConfig, dir: &Path) -> std::io::Result<Counts> {
        std::fs::create_dir_all(dir)?;
        let open = |name: String| -> std::io::Result<std::io::BufWriter<std::fs::File>> {
            Ok(std::io::BufWriter::new(std::fs::File::create(
                dir.join(name),
            )?))
        };
        let parts = cfg.partitions.max(1);
        let mut files: BTreeMap<(Topic, u32), std::io::BufWriter<std::fs::File>> = BTreeMap::new();
        for topic in [Topic::Spans, Topic::Logs] {
            for p in 0..parts {
                files.insert(
                    (topic, p),
                    open(format!("{}-{p}.pb", topic.default_name()))?,
                );
            }
        }
        for topic in [Topic::Deploys, Topic::Audit] {
            files.insert(
                (topic, 0),
                open(format!("{}-0.jsonl", topic.default_name()))?,
            );
        }
        let mut story = Story::new(cfg.clone());
        let mut until = cfg.start_ns;
        loop {
            until = until.saturating_add(MIN);
            for m in story.advance(until) {
                let Some(w) = files.get_mut(&(m.topic, m.partition)) else {
                    continue;
                };
                match m.topic {
                    Topic::Spans | Topic::Logs => write_delimited(w, &m.payload)?,
                    Topic::Deploys | Topic::Audit => {
                        w.write_all(&m.payload)?;
                        w.write_all(b"\n")?;
                    }
                }
            }
            if until >= story.end_ns() {
                break;
            }
        }
        for (_, mut w) in files {
            w.flush()?;
        }
        Ok(story.counts.clone())
    }

    fn count(&mut self, q: &Queued) {
        let c = &mut self.counts;
        *c.messages.entry(q.msg.topic).or_default() += 1;
        match q.msg.topic {
            Topic::Spans => c.spans += q.records,
            Topic::Logs => c.logs += q.records,
            _ => {}
        }
        match q.msg.flaw {
            Some(Flaw::Late) => {
                c.late_messages += 1;
                c.late_records += q.records;
            }
            Some(Flaw::Truncated) => c.truncated_messages += 1,
            Some(Flaw::BadTraceId) => {
                c.bad_trace_id_spans += 1;
                c.pii_records += q.pii;
            }
            None => c.pii_records += q.pii,
        }
    }

    /// Generates one request (or ends the traffic), then closes what can no
    /// longer change.
    fn step(&mut self) {
        let end = self.timeline.end_ns;
        if self.next_trace >= end {
            self.inject_changes(u64::MAX);
            self.horizon = u64::MAX;
            self.next_trace = u64::MAX;
        } else {
            let t = self.next_trace;
            let cond = self.conditions(t);
            let mut items = std::mem::take(&mut self.scratch);
            let mut gen = TraceGen::new(&mut self.traffic, &cond, &mut items);
            gen.request(t);
            self.counts.orphan_spans += gen.orphans;
            let mean = NS as f64 / self.cfg.traces_per_second.max(1e-3);
            let gap = (mean * (0.25 + 1.5 * self.traffic.unit())) as u64;
            self.next_trace = (t + gap.max(1)).min(end);
            for item in items.drain(..) {
                self.pend(item);
            }
            self.scratch = items;
            self.inject_changes(self.next_trace);
            self.horizon = self.next_trace;
        }
        self.close_batches();
    }

    fn pend(&mut self, item: Item) {
        self.seq += 1;
        self.pending.push(Reverse(Pending {
            key: (item.export_ns, self.seq),
            item,
        }));
    }

    fn conditions(&self, t: u64) -> Conditions {
        let tl = &self.timeline;
        let checkout_bad =
            if tl.bad_deploy().is_some() && (tl.bad_deploy_ns..tl.rollback_ns).contains(&t) {
                let ramp = tl.canary_until_ns.saturating_sub(tl.bad_deploy_ns).max(1) as f64;
                (0.25 + 0.75 * (t - tl.bad_deploy_ns) as f64 / ramp).min(1.0)
            } else {
                0.0
            };
        let search_new = tl
            .changes
            .iter()
            .any(|c| c.service == traffic::SERVICES[SEARCH].name && c.at_ns <= t);
        let context_loss = if (tl.context_loss_from_ns..tl.context_loss_until_ns).contains(&t) {
            self.cfg.context_loss_share
        } else {
            0.0
        };
        Conditions {
            checkout_bad,
            error_share: self.cfg.error_share,
            search_new,
            context_loss,
            pii_share: self.cfg.pii_share,
            untraced_share: self.cfg.untraced_share,
        }
    }

    /// Queues the changes whose first message (the CDEvent) is before `limit`.
    fn inject_changes(&mut self, limit: u64) {
        while let Some(c) = self.timeline.changes.get(self.next_change) {
            if c.at_ns >= limit {
                break;
            }
            let c = c.clone();
            self.next_change += 1;
            let (trace, root, patch) = trace_of(&c);
            let mut items = Vec::new();
            traffic::deployer_trace(
                &mut items,
                trace,
                root,
                patch,
                &c.service,
                &c.version,
                c.at_ns - 3 * NS,
                c.audit_ns,
                c.audit_ns + 2 * NS,
            );
            for item in items {
                self.pend(item);
            }
            let audit = changes::audit_event(
                &format!("{:032x}", trace ^ 0xa5a5),
                &c.actor,
                &c.service,
                &c.environment,
                &c.version,
                c.audit_ns,
                &c.audit_traceparent,
            );
            self.queue(
                DemoMessage {
                    topic: Topic::Audit,
                    partition: 0,
                    payload: audit.into_bytes(),
                    traceparent: Some(c.audit_traceparent.clone()),
                    event_ns: c.audit_ns,
                    flaw: None,
                },
                0,
                0,
            );
            let event = changes::cdevent(
                &c.id,
                &c.action,
                &c.service,
                &c.environment,
                &c.version,
                c.at_ns,
                &c.traceparent,
            );
            self.queue(
                DemoMessage {
                    topic: Topic::Deploys,
                    partition: 0,
                    payload: event.into_bytes(),
                    traceparent: Some(c.traceparent.clone()),
                    event_ns: c.at_ns,
                    flaw: None,
                },
                0,
                0,
            );
        }
    }

    fn queue(&mut self, msg: DemoMessage, records: u64, pii: u64) {
        self.seq += 1;
        self.out.push(Reverse(Queued {
            key: (msg.event_ns, self.seq),
            msg,
            records,
            pii,
        }));
    }

    /// Moves the records exported before the horizon into messages, and closes
    /// the messages whose timeout has passed.
    fn close_batches(&mut self) {
        let timeout = self.cfg.batch_timeout.as_nanos() as u64;
        let size = self.cfg.batch_size.max(1);
        while let Some(Reverse(top)) = self.pending.peek() {
            if top.key.0 >= self.horizon {
                break;
            }
            let Some(Reverse(p)) = self.pending.pop() else {
                break;
            };
            let topic = match p.item.rec {
                Rec::Span(_) => Topic::Spans,
                Rec::Log(_) => Topic::Logs,
            };
            let export = p.item.export_ns;
            let open = self.batch(topic);
            if !open.items.is_empty() && export >= open.first.saturating_add(timeout) {
                let send = open.first.saturating_add(timeout);
                self.close(topic, send);
            }
            let open = self.batch(topic);
            if open.items.is_empty() {
                open.first = export;
            }
            open.items.push(p.item);
            if open.items.len() >= size {
                self.close(topic, export);
            }
        }
        for topic in [Topic::Spans, Topic::Logs] {
            let open = self.batch(topic);
            let due = open.first.saturating_add(timeout);
            if !open.items.is_empty() && due < self.horizon {
                self.close(topic, due);
            }
        }
    }

    fn batch(&mut self, topic: Topic) -> &mut Batch {
        if topic == Topic::Spans {
            &mut self.spans
        } else {
            &mut self.logs
        }
    }

    /// Closes the open message of `topic`, produced at `send`.
    fn close(&mut self, topic: Topic, send: u64) {
        let parts = self.cfg.partitions.max(1);
        let batch = self.batch(topic);
        let items = std::mem::take(&mut batch.items);
        let partition = batch.next_partition;
        batch.next_partition = (partition + 1) % parts;
        let records = items.len() as u64;
        let pii = items.iter().filter(|i| i.pii).count() as u64;
        let late_delay = self.cfg.late_delay.as_nanos() as u64;
        // No late message near the end: nothing newer would follow it.
        let late_ok = send + late_delay + 2 * MIN < self.timeline.end_ns;
        let r = self.flaws.unit();
        let flaw = if r < self.cfg.late_share && late_ok {
            Some(Flaw::Late)
        } else if r < self.cfg.late_share + self.cfg.malformed_share {
            if topic == Topic::Spans && self.flaws.chance(0.5) {
                Some(Flaw::BadTraceId)
            } else {
                Some(Flaw::Truncated)
            }
        } else {
            None
        };
        let mut payload = match topic {
            Topic::Spans => {
                let mut by_res: BTreeMap<u16, Vec<Span>> = BTreeMap::new();
                for i in items {
                    if let Rec::Span(s) = i.rec {
                        by_res.entry(i.res).or_default().push(s);
                    }
                }
                let mut data = TracesData {
                    resource_spans: by_res
                        .into_iter()
                        .map(|(res, spans)| ResourceSpans {
                            resource: Some(self.resources[usize::from(res)].clone()),
                            scope_spans: vec![ScopeSpans { spans }],
                        })
                        .collect(),
                };
                if flaw == Some(Flaw::BadTraceId) {
                    bad_trace_id(&mut data, self.flaws.span_id());
                }
                data.encode_to_vec()
            }
            _ => {
                let mut by_res: BTreeMap<u16, Vec<LogRecord>> = BTreeMap::new();
                for i in items {
                    if let Rec::Log(l) = i.rec {
                        by_res.entry(i.res).or_default().push(l);
                    }
                }
                LogsData {
                    resource_logs: by_res
                        .into_iter()
                        .map(|(res, log_records)| ResourceLogs {
                            resource: Some(self.resources[usize::from(res)].clone()),
                            scope_logs: vec![ScopeLogs { log_records }],
                        })
                        .collect(),
                }
                .encode_to_vec()
            }
        };
        if flaw == Some(Flaw::Truncated) {
            truncate(&mut payload);
        }
        let event_ns = if flaw == Some(Flaw::Late) {
            send + late_delay
        } else {
            send
        };
        self.queue(
            DemoMessage {
                topic,
                partition,
                payload,
                traceparent: None,
                event_ns,
                flaw,
            },
            records,
            pii,
        );
    }
}

/// Adds a copy of the first span (attributes dropped, new span id) with a
/// 15-byte trace id at the end of the first resource.
fn bad_trace_id(data: &mut TracesData, span_id: u64) {
    let Some(spans) = data
        .resource_spans
        .first_mut()
        .and_then(|r| r.scope_spans.first_mut())
        .map(|s| &mut s.spans)
    else {
        return;
    };
    let Some(first) = spans.first() else {
        return;
    };
    let mut bad = first.clone();
    bad.trace_id.truncate(15);
    bad.span_id = span_id.to_be_bytes().to_vec();
    bad.attributes.clear();
    spans.push(bad);
}

/// Cuts an encoded `TracesData` / `LogsData` inside its first resource (field 1,
/// length-delimited): its length prefix then promises more bytes than there
/// are, which no protobuf decoder accepts.
fn truncate(payload: &mut Vec<u8>) {
    let mut len = 0u64;
    let mut header = 1; // the field key 0x0a
    for (i, b) in payload.iter().enumerate().skip(1).take(10) {
        len |= u64::from(b & 0x7f) << (7 * (i - 1));
        header = i + 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let cut = header + (len as usize / 2).max(1);
    payload.truncate(cut.min(payload.len().saturating_sub(1)));
}

/// The deployer trace of a change: (trace id, root span id, API-call span id).
fn trace_of(c: &Change) -> (u128, u64, u64) {
    let (trace, root) = causeway_schemas::ids::parse_traceparent(&c.traceparent).unwrap_or((1, 1));
    let patch =
        causeway_schemas::ids::parse_traceparent(&c.audit_traceparent).map_or(2, |(_, s)| s);
    (trace, root, patch)
}

fn timeline(cfg: &StoryConfig) -> Timeline {
    let start = cfg.start_ns;
    let end = start + cfg.duration.as_nanos() as u64;
    // Changes happen on whole seconds (CDEvents timestamps are RFC 3339 seconds).
    let at = |d: Duration| (start + d.as_nanos() as u64).div_ceil(NS) * NS;
    let mut rng = Rng::new(cfg.seed, 3);
    let env = cfg.environment.clone();
    let search = &traffic::SERVICES[SEARCH];
    let checkout = &traffic::SERVICES[CHECKOUT];
    let bad = checkout.next_version.unwrap_or_default();
    let plan = [
        (
            at(cfg.innocent_deploy_at),
            search.name,
            "deployed",
            search.next_version.unwrap_or_default(),
            search.version,
            "carol@example.com",
        ),
        (
            at(cfg.bad_deploy_at),
            checkout.name,
            "deployed",
            bad,
            checkout.version,
            "alice@example.com",
        ),
        (
            at(cfg.rollback_at),
            checkout.name,
            "rolledback",
            checkout.version,
            bad,
            "bob@example.com",
        ),
    ];
    let mut changes: Vec<Change> = plan
        .iter()
        .filter(|p| p.0 >= start + 15 * NS && p.0 < end)
        .map(|&(t, service, action, version, previous, actor)| {
            let trace = rng.trace_id();
            let (root, call) = (rng.span_id(), rng.span_id());
            Change {
                at_ns: t,
                audit_ns: t + 2 * NS,
                service: service.to_string(),
                environment: env.clone(),
                action: action.to_string(),
                version: version.to_string(),
                previous_version: previous.to_string(),
                artifact: changes::artifact(service, version),
                id: format!("{service}-{version}-{}", t / NS),
                actor: actor.to_string(),
                trace_id: format!("{trace:032x}"),
                traceparent: format!("00-{trace:032x}-{root:016x}-01"),
                audit_traceparent: format!("00-{trace:032x}-{call:016x}-01"),
            }
        })
        .collect();
    changes.sort_by_key(|c| c.at_ns);
    let bad_deploy_ns = at(cfg.bad_deploy_at);
    Timeline {
        start_ns: start,
        end_ns: end,
        environment: env,
        culprit: checkout.name.to_string(),
        good_version: checkout.version.to_string(),
        bad_version: bad.to_string(),
        bad_deploy_ns,
        canary_until_ns: bad_deploy_ns + cfg.canary.as_nanos() as u64,
        rollback_ns: at(cfg.rollback_at),
        deploy_actor: plan[1].5.to_string(),
        rollback_actor: plan[2].5.to_string(),
        context_loss_service: traffic::SERVICES[NOTIFIER].name.to_string(),
        context_loss_from_ns: start + cfg.context_loss_from.as_nanos() as u64,
        context_loss_until_ns: start + cfg.context_loss_until.as_nanos() as u64,
        changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_schemas::{audit, cdevents, ids, DecodeOptions, Origin};

    fn short(minutes: u64, tps: f64) -> StoryConfig {
        StoryConfig {
            duration: Duration::from_secs(minutes * 60),
            traces_per_second: tps,
            innocent_deploy_at: Duration::from_secs(2 * 60),
            bad_deploy_at: Duration::from_secs(4 * 60),
            canary: Duration::from_secs(60),
            rollback_at: Duration::from_secs(7 * 60),
            context_loss_from: Duration::from_secs(5 * 60),
            context_loss_until: Duration::from_secs(8 * 60),
            late_share: 0.02,
            malformed_share: 0.02,
            late_delay: Duration::from_secs(60),
            ..StoryConfig::default()
        }
    }

    /// The whole story, advanced by `steps` in turn (cycling).
    fn all(cfg: &StoryConfig, steps: &[u64]) -> Vec<DemoMessage> {
        let mut s = Story::new(cfg.clone());
        let mut t = cfg.start_ns;
        let mut out = Vec::new();
        for step in steps.iter().cycle() {
            if t >= s.end_ns() {
                break;
            }
            t += step;
            out.extend(s.advance(t));
        }
        out.extend(s.advance(u64::MAX));
        out
    }

    #[test]
    fn same_sequence_whatever_the_steps() {
        let cfg = short(10, 4.0);
        let whole = Story::new(cfg.clone()).advance(u64::MAX);
        assert!(whole.len() > 500, "{} messages", whole.len());
        let steps: [&[u64]; 4] = [
            &[NS],
            &[997_123_457],
            &[7_300_000_000, 130_000_000, 61 * NS],
            &[3_000_000], // far below the gap between requests
        ];
        for steps in steps {
            let got = all(&cfg, steps);
            assert!(got == whole, "steps {steps:?} differ");
        }
        // A different seed tells another story.
        let other = Story::new(StoryConfig { seed: 1, ..cfg }).advance(u64::MAX);
        assert!(other != whole);
    }

    #[test]
    fn ordered_and_drained_by_end_ns() {
        let cfg = short(10, 4.0);
        let mut s = Story::new(cfg);
        let msgs = s.advance(s.end_ns());
        assert!(msgs.windows(2).all(|w| w[0].event_ns <= w[1].event_ns));
        assert!(s.advance(u64::MAX).is_empty());
        let last = msgs.last().map(|m| m.event_ns).unwrap_or(0);
        assert!(last < s.end_ns() && last >= s.timeline().end_ns - 60 * NS);
        for m in &msgs {
            let parts = if matches!(m.topic, Topic::Spans | Topic::Logs) {
                3
            } else {
                1
            };
            assert!(m.partition < parts);
        }
    }

    #[test]
    fn memory_does_not_grow_with_duration() {
        let held = |minutes: u64| {
            let cfg = StoryConfig {
                duration: Duration::from_secs(minutes * 60),
                ..StoryConfig::default()
            };
            let mut s = Story::new(cfg.clone());
            let mut most = 0;
            let mut t = cfg.start_ns;
            while t < s.end_ns() {
                t += 5 * NS;
                s.advance(t);
                most = most.max(s.pending.len() + s.out.len());
            }
            most
        };
        let (ten, forty) = (held(10), held(40));
        // Eight requests a second of ~20 records, held for a few seconds, and
        // the late messages of `late_delay`.
        assert!(ten < 2_000, "{ten}");
        assert!(forty < ten * 2, "10 min held {ten}, 40 min held {forty}");
    }

    #[test]
    fn changes_carry_actor_and_trace_context() {
        let cfg = short(10, 1.0);
        let mut s = Story::new(cfg);
        let msgs = s.advance(u64::MAX);
        let tl = s.timeline().clone();
        assert_eq!(tl.changes.len(), 3);
        let opts = DecodeOptions::default();
        let origin = Origin {
            partition: 0,
            offset: 0,
            index: 0,
        };
        let deploys: Vec<_> = msgs.iter().filter(|m| m.topic == Topic::Deploys).collect();
        let audits: Vec<_> = msgs.iter().filter(|m| m.topic == Topic::Audit).collect();
        assert_eq!((deploys.len(), audits.len()), (3, 3));
        for ((d, a), c) in deploys.iter().zip(&audits).zip(&tl.changes) {
            let tp = d.traceparent.as_deref();
            let dev = cdevents::decode_deploy(&d.payload, origin, tp, &opts).unwrap();
            // The payload alone (as replay reads it) gives the same trace.
            let bare = cdevents::decode_deploy(&d.payload, origin, None, &opts).unwrap();
            let rec =
                audit::decode_audit(&a.payload, origin, a.traceparent.as_deref(), &opts).unwrap();
            let bare_rec = audit::decode_audit(&a.payload, origin, None, &opts).unwrap();
            let trace = ids::trace_id_from_hex(&c.trace_id).unwrap();
            assert_eq!(
                (dev.trace, bare.trace, rec.trace, bare_rec.trace),
                (trace, trace, trace, trace)
            );
            assert_eq!(dev.service, c.service);
            assert_eq!(dev.version, c.version);
            assert_eq!(dev.artifact, c.artifact);
            assert_eq!(dev.time, c.at_ns);
            assert_eq!(d.event_ns, c.at_ns);
            assert_eq!(rec.actor, c.actor);
            assert_eq!(rec.resource.service, c.service);
            assert_eq!(rec.resource.environment, "prod");
            assert_eq!(rec.time, c.audit_ns);
        }
        let bad = tl.bad_deploy().unwrap();
        assert_eq!(
            (bad.version.as_str(), bad.actor.as_str()),
            ("2.4.0", "alice@example.com")
        );
        let rb = tl.rollback().unwrap();
        assert_eq!(
            (rb.version.as_str(), rb.actor.as_str()),
            ("2.3.1", "bob@example.com")
        );
        // The deployer's spans are in the same trace.
        let deployer_spans = msgs
            .iter()
            .filter(|m| m.topic == Topic::Spans && m.flaw.is_none())
            .flat_map(|m| {
                TracesData::decode(m.payload.as_slice())
                    .unwrap()
                    .resource_spans
            })
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .filter(|s| s.trace_id == ids::trace_id_from_hex(&bad.trace_id).unwrap().to_be_bytes())
            .count();
        assert_eq!(deployer_spans, 2);
    }

    /// (service, version, span) of every span in well-formed messages.
    fn spans_of(msgs: &[DemoMessage]) -> Vec<(String, String, Span)> {
        let attr = |r: &Resource, k: &str| {
            r.attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
                .and_then(|v| v.value)
                .map(|v| match v {
                    causeway_schemas::otlp::proto::any_value::Value::StringValue(s) => s,
                    _ => String::new(),
                })
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for m in msgs.iter().filter(|m| m.topic == Topic::Spans) {
            let Ok(d) = TracesData::decode(m.payload.as_slice()) else {
                continue;
            };
            for r in d.resource_spans {
                let res = r.resource.unwrap_or_default();
                for s in r.scope_spans.into_iter().flat_map(|s| s.spans) {
                    out.push((attr(&res, "service.name"), attr(&res, "service.version"), s));
                }
            }
        }
        out
    }

    #[test]
    fn checkout_fails_only_on_the_bad_version() {
        let cfg = short(10, 6.0);
        let mut s = Story::new(cfg);
        let msgs = s.advance(u64::MAX);
        let tl = s.timeline().clone();
        let spans = spans_of(&msgs);
        let entry_errors: Vec<_> = spans
            .iter()
            .filter(|(_, _, s)| s.kind == 2 && s.status.as_ref().is_some_and(|st| st.code == 2))
            .collect();
        let checkout_errors = entry_errors.iter().filter(|e| e.0 == "checkout").count();
        assert!(checkout_errors > 10, "{checkout_errors}");
        for (svc, version, span) in &entry_errors {
            assert!(svc == "checkout" || svc == "gateway", "{svc} failed");
            let t = span.start_time_unix_nano;
            assert!((tl.bad_deploy_ns..tl.rollback_ns + 5 * NS).contains(&t));
            if svc == "checkout" {
                assert_eq!(version, "2.4.0");
            }
        }
        // Both versions serve during the canary ramp.
        let canary: BTreeMap<&str, usize> = spans
            .iter()
            .filter(|(svc, _, s)| {
                svc == "checkout"
                    && s.kind == 2
                    && (tl.bad_deploy_ns..tl.canary_until_ns).contains(&s.start_time_unix_nano)
            })
            .fold(BTreeMap::new(), |mut m, (_, v, _)| {
                *m.entry(v.as_str()).or_default() += 1;
                m
            });
        assert_eq!(canary.len(), 2, "{canary:?}");
    }

    #[test]
    fn flaws_are_what_they_say() {
        let cfg = short(10, 4.0);
        let mut s = Story::new(cfg.clone());
        let msgs = s.advance(u64::MAX);
        let c = s.counts().clone();
        assert!(
            c.late_messages > 0 && c.truncated_messages > 0 && c.bad_trace_id_spans > 0,
            "{c:?}"
        );
        for m in msgs
            .iter()
            .filter(|m| matches!(m.topic, Topic::Spans | Topic::Logs))
        {
            let decoded = match m.topic {
                Topic::Spans => TracesData::decode(m.payload.as_slice()).map(|d| {
                    d.resource_spans
                        .iter()
                        .flat_map(|r| &r.scope_spans)
                        .map(|s| s.spans.len())
                        .sum::<usize>()
                }),
                _ => LogsData::decode(m.payload.as_slice()).map(|d| {
                    d.resource_logs
                        .iter()
                        .flat_map(|r| &r.scope_logs)
                        .map(|s| s.log_records.len())
                        .sum::<usize>()
                }),
            };
            match m.flaw {
                Some(Flaw::Truncated) => assert!(decoded.is_err()),
                Some(Flaw::BadTraceId) => {
                    let d = TracesData::decode(m.payload.as_slice()).unwrap();
                    let first = &d.resource_spans[0].scope_spans[0].spans;
                    assert_eq!(first.last().unwrap().trace_id.len(), 15);
                    assert!(decoded.unwrap() <= cfg.batch_size + 1);
                }
                _ => assert!((1..=cfg.batch_size).contains(&decoded.unwrap())),
            }
        }
        // The only bad ids are the ones the story announced.
        let bad_ids = spans_of(&msgs)
            .iter()
            .filter(|(_, _, s)| s.trace_id.len() != 16 || s.span_id.len() != 8)
            .count();
        assert_eq!(bad_ids as u64, c.bad_trace_id_spans);
    }
}
