//! `causeway run`: the jobs on live Kafka topics, as a long-running service.
//!
//! Each timely worker (of every process) owns a deterministic share of the input
//! partitions ([`crate::sources::kafka`]), reads them with its own consumer and
//! feeds the shared dataflow through [`Ingest`], exactly as `replay` does with
//! files. Worker 0 writes the outputs ([`KafkaSink`]); every worker writes its
//! own dead letters.
//!
//! **Checkpoints.** Every `kafka.commit_interval` each worker reads the emitted
//! frontier `E` from the probe (every output of a time below `E` is acknowledged
//! by the broker), flushes its dead letters and commits, for each of its
//! partitions, the first offset still needed for times at or after `E`, with a
//! [`Checkpoint`] as metadata. A restart resumes from those offsets, rebuilding
//! at most `trace_horizon` (+ window + grace) of state, and skips output times
//! below the newest committed `E`.
//!
//! **Shutdown.** SIGTERM/SIGINT: stop reading, flush, commit, exit 0. Inputs are
//! never closed on shutdown (that would emit unfinished windows); they are only
//! closed in `--drain` mode, once every partition is read to its end and idle.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::config::{parse_duration, Config, ConfigError, Guarantee, Settings};
use crate::dataflow;
use crate::ingest::{Ingest, Stats, Watermark};
use crate::metrics::{self, Metrics};
use crate::sinks::kafka::{
    copy_headers, out_offsets, read_fenced, DlqSink, KafkaSink, OutLog, OutOffsets,
};
use crate::sources::kafka::{
    checkpoint_key, client_config, default_setting, discover, latest_checkpoints, Checkpoint,
    CheckpointRecord, Health, InputPartition, KafkaSetupError, Mark, Retention,
};
use crate::sources::Message;

/// Messages read per worker per round.
const ROUND_MESSAGES: usize = 512;

/// Why `run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Kafka setup.
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    /// The metrics endpoint could not bind.
    #[error("cannot serve /metrics on {bind}: {source}; change metrics.bind")]
    Metrics {
        /// Address.
        bind: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Bad cluster arguments.
    #[error("{0}")]
    Cluster(String),
    /// An output could not be delivered; nothing past it was committed.
    #[error("an output record could not be delivered; stopped without committing past it (see the log above), restart to retry")]
    Delivery,
    /// Timely could not start or a worker failed.
    #[error("workers failed: {0}")]
    Workers(String),
}

/// Options of `causeway run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Config file.
    pub config: Option<PathBuf>,
    /// Worker threads per process (`-w`).
    pub threads: usize,
    /// Number of processes (`-n`).
    pub processes: usize,
    /// This process's index (`-p`).
    pub process: usize,
    /// Hostfile: one `host:port` per line, one line per process (`-h`).
    pub hostfile: Option<PathBuf>,
    /// Exit once every input partition is read to its end and idle.
    pub drain: bool,
}

/// What a run did, summed over this process's workers.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Ingest counts.
    pub stats: Stats,
    /// Input partitions read by this process.
    pub partitions: usize,
}

/// Runs until SIGTERM/SIGINT (or, with `drain`, until the inputs are exhausted).
pub fn run(opts: &RunOptions) -> Result<RunSummary, RunError> {
    let config = Config::load(opts.config.as_deref())?;
    let mut settings = config.settings()?;
    if !config.metrics.bind.is_empty() {
        settings.params.metrics = Some(config.metrics.params());
    }
    let timely_config = cluster_config(opts)?;
    let metrics = Arc::new(Metrics::new(&config.metrics));
    let _server = match config.metrics.bind.as_str() {
        "" => None,
        bind => {
            // Processes of one cluster may share a host: process p serves on port + p.
            let mut addr: std::net::SocketAddr = bind
                .parse()
                .map_err(|_| RunError::Cluster(format!("metrics.bind {bind:?} is not ip:port")))?;
            addr.set_port(addr.port() + opts.process as u16 * (addr.port() != 0) as u16);
            let server = metrics::serve(&addr.to_string(), metrics.clone()).map_err(|source| {
                RunError::Metrics {
                    bind: addr.to_string(),
                    source,
                }
            })?;
            eprintln!(
                "causeway run: serving /metrics on http://{}/metrics",
                server.addr
            );
            Some(server)
        }
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    crate::background::watch_signals("causeway run", shutdown.clone());
    let shared = Arc::new(Shared {
        config,
        settings,
        metrics,
        shutdown,
        drain: opts.drain,
        barrier: Barrier::new(opts.threads.max(1)),
        summary: Mutex::new(RunSummary::default()),
    });
    let s = shared.clone();
    let guards = timely::execute(timely_config, move |worker| {
        let r = run_worker(worker, &s);
        if r.is_err() {
            // Let the other workers stop too; they wait for this one at the barrier.
            s.shutdown.store(true, Ordering::SeqCst);
            if !s.drain {
                s.barrier.wait();
            }
        }
        r
    })
    .map_err(RunError::Workers)?;
    let mut first_error = None;
    for r in guards.join() {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(RunError::Workers(e));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let summary = std::mem::take(
        &mut *shared
            .summary
            .lock()
            .map_err(|_| RunError::Workers("a worker panicked".into()))?,
    );
    Ok(summary)
}

struct Shared {
    config: Config,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: Arc<AtomicBool>,
    drain: bool,
    barrier: Barrier,
    summary: Mutex<RunSummary>,
}

/// timely's configuration from `-w/-n/-p/-h`.
fn cluster_config(opts: &RunOptions) -> Result<timely::Config, RunError> {
    let threads = opts.threads.max(1);
    let processes = opts.processes.max(1);
    if opts.process >= processes {
        return Err(RunError::Cluster(format!(
            "-p {} is out of range: with -n {processes}, use 0 to {}",
            opts.process,
            processes - 1
        )));
    }
    let communication = if processes > 1 {
        let addresses: Vec<String> = match &opts.hostfile {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    RunError::Cluster(format!("cannot read hostfile {}: {e}", path.display()))
                })?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .take(processes)
                .map(String::from)
                .collect(),
            None => (0..processes)
                .map(|i| format!("localhost:{}", 2101 + i))
                .collect(),
        };
        if addresses.len() < processes {
            return Err(RunError::Cluster(format!(
                "the hostfile lists {} addresses but -n is {processes}; give one host:port per process",
                addresses.len()
            )));
        }
        timely::CommunicationConfig::Cluster {
            threads,
            process: opts.process,
            addresses,
            report: false,
            zerocopy: false,
        }
    } else if threads > 1 {
        timely::CommunicationConfig::Process(threads)
    } else {
        timely::CommunicationConfig::Thread
    };
    Ok(timely::Config {
        communication,
        worker: timely::WorkerConfig::default(),
    })
}

/// Rebuilds the SLO evaluator's state after a restart by feeding it, window by
/// window, the outputs it consumed before: the SLI records, edges and evidence
/// of every window final before `resume_from`, read back from the output topics
/// (repeats of at-least-once delivery counted once). Evaluation is deterministic,
/// so the state, firing alerts included, is the one the first run had.
fn rebuild(
    evaluator: &mut causeway_jobs::slo::Evaluator,
    params: &causeway_jobs::Params,
    topics: &crate::config::TopicsConfig,
    back: &[crate::sinks::kafka::Stored],
    resume_from: u64,
) {
    use causeway_schemas::records::{EvidenceRecord, ServiceGraphRecord, SliRecord};
    let mut windows: BTreeMap<u64, dataflow::Finalized> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in back {
        if !seen.insert((r.topic.as_str(), r.key.as_str())) {
            continue;
        }
        let v = &r.value;
        if r.topic == topics.sli {
            if let Ok(x) = serde_json::from_slice::<SliRecord>(v) {
                // M7 records are the evaluator's own output, not its input.
                if x.sli != causeway_jobs::slo::CORRELATED_ALERT_RATE {
                    windows.entry(x.window_start).or_default().sli.push(x);
                }
            }
        } else if r.topic == topics.service_graph {
            if let Ok(x) = serde_json::from_slice::<ServiceGraphRecord>(v) {
                windows.entry(x.window_start).or_default().edges.push(x);
            }
        } else if r.topic == topics.evidence {
            match serde_json::from_slice::<EvidenceRecord>(v) {
                Ok(EvidenceRecord::Exemplars(x)) => {
                    windows.entry(x.window_start).or_default().exemplars.push(x)
                }
                Ok(EvidenceRecord::Change(c)) => windows
                    .entry(params.window_of(c.time_unix_nano))
                    .or_default()
                    .changes
                    .push(c),
                Err(_) => {}
            }
        }
    }
    let mut n = 0;
    for (w, mut f) in windows {
        if params.final_at(w) >= resume_from {
            break;
        }
        f.sort();
        f.evaluate(evaluator, w);
        n += 1;
    }
    eprintln!("causeway run: alert state rebuilt from {n} emitted windows");
}

/// One input partition as a worker reads it.
struct Assigned {
    part: InputPartition,
    name: String,
    wm: Watermark,
    retention: Retention,
    /// Next offset to read.
    position: u64,
    /// Dead letters below this offset were written before the restart.
    dlq_from: u64,
    /// Timestamp (ms) of the last message read.
    last_ts: Option<i64>,
    /// The last checkpoint written (an unchanged one is not written again).
    last_checkpoint: Option<CheckpointRecord>,
    last_message: Instant,
    /// When the broker last said whether the partition is read to its end.
    end_checked: Option<(Instant, bool)>,
}

fn run_worker(worker: &mut timely::worker::Worker, sh: &Shared) -> Result<(), RunError> {
    let (index, peers) = (worker.index(), worker.peers());
    let k = &sh.config.kafka;
    let metrics = Some(sh.metrics.clone());
    let mut consumer_config = client_config(k);
    // One consumer reads many partitions, some empty or idle: a fetch must not
    // wait the default 500 ms for them.
    default_setting(&mut consumer_config, k, "fetch.wait.max.ms", "20");
    let consumer: BaseConsumer<Health> = consumer_config
        .set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", "1000")
        .create_with_context(Health {
            metrics: metrics.clone(),
            ..Health::default()
        })
        .map_err(KafkaSetupError::Client)?;
    let all = discover(&consumer, k)?;
    let dlq = DlqSink::new(k, metrics.clone())?;
    let stored = read_fenced(k, dlq.producer(), &[&k.topics.checkpoints])?;
    let checkpoints = latest_checkpoints(&k.group_id, &all, &stored);
    let resume_from = checkpoints
        .iter()
        .flatten()
        .map(|(_, c)| c.emitted)
        .max()
        .unwrap_or(0);
    let mut prior_out: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (_, c) in checkpoints.iter().flatten() {
        for (t, p, o) in &c.out {
            let e = prior_out.entry((t.clone(), *p)).or_insert(*o);
            *e = (*e).min(*o);
        }
    }
    let prior_out: OutOffsets = prior_out.into_iter().map(|((t, p), o)| (t, p, o)).collect();

    let mut resume = Resume {
        from: resume_from,
        prior_out,
        sink: None,
    };
    let mut evaluator = dataflow::evaluator(&sh.settings);
    let sink: Option<Box<dyn dataflow::OutputSink>> = if index == 0 {
        let mut sink = KafkaSink::new(k, resume_from, metrics.clone())?;
        if resume_from > 0 {
            let exactly_once = sh.config.processing.guarantee == Guarantee::ExactlyOnce;
            let back = sink.read_back(k, &resume.prior_out, exactly_once)?;
            if !evaluator.is_empty() {
                rebuild(
                    &mut evaluator,
                    &sh.settings.params,
                    &k.topics,
                    &back,
                    resume_from,
                );
            }
        }
        resume.sink = Some((sink.log.clone(), sink.failed_flag(), sink.discard.clone()));
        Some(Box::new(sink))
    } else {
        None
    };
    let (inputs, probe) = dataflow::build(worker, &sh.settings, sink, evaluator);
    let mut ingest = Ingest::new(inputs, sh.settings.clone());

    let started = Instant::now();
    let mut mine: Vec<Assigned> = Vec::new();
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
        mine.push(Assigned {
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
    {
        let mut s = sh
            .summary
            .lock()
            .map_err(|_| RunError::Workers("poisoned".into()))?;
        s.partitions += mine.len();
    }
    // topic → partition → index in `mine`, looked up without allocating per message.
    let mut lookup: HashMap<String, HashMap<i32, usize>> = HashMap::new();
    for (i, a) in mine.iter().enumerate() {
        lookup
            .entry(a.part.topic_name.clone())
            .or_default()
            .insert(a.part.partition, i);
    }

    let lateness = sh.settings.allowed_lateness_ns;
    let idle = Duration::from_nanos(sh.settings.idle_timeout_ns);
    let commit_every =
        Duration::from_nanos(parse_duration(&k.commit_interval).unwrap_or(1_000_000_000));
    let mut last_commit = Instant::now();
    let mut reported = Stats::default();
    let worker_label = index.to_string();

    loop {
        if sh.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let previous = ingest.time();
        let deadline = Instant::now() + Duration::from_millis(20);
        for n in 0..ROUND_MESSAGES {
            let wait = if n == 0 {
                Duration::from_millis(10)
            } else {
                Duration::ZERO
            };
            let m = match consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    eprintln!("causeway run: consume: {e}");
                    sh.metrics
                        .kafka_errors
                        .with_label_values(&["consume"])
                        .inc();
                    break;
                }
                Some(Ok(m)) => m,
            };
            sh.metrics.kafka_up.set(1);
            let Some(&i) = lookup.get(m.topic()).and_then(|p| p.get(&m.partition())) else {
                continue;
            };
            let a = &mut mine[i];
            let offset = m.offset().max(0) as u64;
            if offset < a.position {
                // Before the restart point: a timestamp seek lands on the start of
                // the record batch that holds it.
                continue;
            }
            let msg = Message {
                offset,
                payload: m.payload().unwrap_or_default().to_vec(),
                traceparent: traceparent(&m),
                framing_error: None,
            };
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
                &msg,
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
                        dlq.send(&r, &msg.payload, &headers);
                    }
                }
            }
            a.position = offset + 1;
            a.last_ts = mark.ts_ms;
            a.last_message = Instant::now();
            if Instant::now() > deadline {
                break;
            }
        }
        let watermark = watermark(&consumer, &mut mine, lateness, idle);
        ingest.advance(watermark);
        let until = Instant::now() + Duration::from_millis(100);
        worker.step();
        while probe.less_than(&previous) && Instant::now() < until {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
        sh.metrics.observe_ingest(&reported, &ingest.stats);
        reported = ingest.stats.clone();

        if last_commit.elapsed() >= commit_every {
            last_commit = Instant::now();
            if resume.output_failed() || dlq.failed() {
                return Err(RunError::Delivery);
            }
            checkpoint(&consumer, &probe, &mut mine, &dlq, &resume, sh);
            report_health(&consumer, &mine, &ingest, &worker_label, sh);
            if sh.drain && drained(&consumer, &mut mine, idle) {
                break;
            }
        }
    }

    if sh.drain && !sh.shutdown.load(Ordering::SeqCst) {
        // Every partition is read to its end: close the inputs so the last
        // windows are emitted, as `replay` does at the end of its files.
        checkpoint(&consumer, &probe, &mut mine, &dlq, &resume, sh);
        let closed = ingest.close();
        while !probe.done() {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
        if resume.output_failed() {
            return Err(RunError::Delivery);
        }
        let mut s = sh
            .summary
            .lock()
            .map_err(|_| RunError::Workers("poisoned".into()))?;
        s.stats.merge(&closed.stats);
        return Ok(());
    }
    checkpoint(&consumer, &probe, &mut mine, &dlq, &resume, sh);
    {
        let mut s = sh
            .summary
            .lock()
            .map_err(|_| RunError::Workers("poisoned".into()))?;
        s.stats.merge(&ingest.stats);
    }
    // Every local worker has committed; what the teardown emits is not final.
    sh.barrier.wait();
    if let Some((_, _, discard)) = &resume.sink {
        discard.store(true, Ordering::SeqCst);
    }
    Ok(())
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
    let mut active = None;
    for a in mine.iter_mut() {
        // A partition still re-reading what it had read before a restart is never
        // idle, however slow its first fetch: its records are known to exist.
        let rereading = a.position < a.dlq_from;
        let is_idle = !rereading && a.last_message.elapsed() >= idle && a.at_end(consumer);
        if !is_idle {
            active = Some(active.map_or(value(a), |m: u64| m.min(value(a))));
        }
    }
    active.unwrap_or_else(|| mine.iter().map(value).max().unwrap_or(0))
}

impl Assigned {
    /// Whether the partition is read to its end, asked of the broker at most
    /// once a second.
    fn at_end(&mut self, consumer: &BaseConsumer<Health>) -> bool {
        if let Some((when, at_end)) = self.end_checked {
            if when.elapsed() < Duration::from_secs(1) {
                return at_end;
            }
        }
        let at_end = consumer
            .fetch_watermarks(
                &self.part.topic_name,
                self.part.partition,
                Duration::from_secs(1),
            )
            .map(|(_, high)| self.position as i64 >= high)
            .unwrap_or(false);
        self.end_checked = Some((Instant::now(), at_end));
        at_end
    }
}

/// Where a worker resumed, and (worker 0) its handles on the sink: the output
/// offset log, the delivery-failure flag and the discard switch.
struct Resume {
    /// Output times below this were emitted before the restart.
    from: u64,
    /// Output offsets of the newest checkpoints (where a read-back starts).
    prior_out: OutOffsets,
    sink: Option<(OutLog, Arc<AtomicBool>, Arc<AtomicBool>)>,
}

impl Resume {
    /// True if an output record could not be delivered.
    fn output_failed(&self) -> bool {
        self.sink
            .as_ref()
            .is_some_and(|(_, failed, _)| failed.load(Ordering::SeqCst))
    }

    /// Output offsets every record of a time at or after `emitted` is at or after.
    fn out_offsets(&self, emitted: u64) -> OutOffsets {
        match &self.sink {
            Some((log, _, _)) => {
                let o = out_offsets(log, emitted);
                if o.is_empty() {
                    self.prior_out.clone()
                } else {
                    o
                }
            }
            None => Vec::new(),
        }
    }
}

/// Commits each partition's restart point for the current emitted frontier.
fn checkpoint(
    consumer: &BaseConsumer<Health>,
    probe: &timely::dataflow::ProbeHandle<u64>,
    mine: &mut [Assigned],
    dlq: &DlqSink,
    resume: &Resume,
    sh: &Shared,
) {
    if mine.is_empty() {
        return;
    }
    let frontier = probe.with_frontier(|f| f.first().copied().unwrap_or(u64::MAX));
    let emitted = frontier.max(resume.from);
    let out = resume.out_offsets(emitted);
    let k = &sh.config.kafka;
    let mut tpl = TopicPartitionList::new();
    for a in mine.iter_mut() {
        // The next message is `position`; seeking by the last message's
        // timestamp lands at or before it.
        let next = Mark {
            offset: a.position,
            max_seen: a.wm.max_seen(),
            ts_ms: a.last_ts,
        };
        let restart = a.retention.restart_point(emitted, next);
        let record = CheckpointRecord {
            offset: restart.offset,
            checkpoint: Checkpoint {
                emitted,
                max_seen: restart.max_seen,
                read: a.position,
                ts_ms: restart.ts_ms,
                out: out.clone(),
            },
        };
        if a.last_checkpoint.as_ref() == Some(&record) {
            continue;
        }
        let json = serde_json::to_string(&record).unwrap_or_default();
        a.last_checkpoint = Some(record);
        dlq.send_checkpoint(
            &k.topics.checkpoints,
            &checkpoint_key(&k.group_id, &a.part),
            json.as_bytes(),
        );
        let mut e = tpl.add_partition(&a.part.topic_name, a.part.partition);
        if e.set_offset(Offset::Offset(restart.offset as i64)).is_ok() {
            e.set_metadata(json);
        }
    }
    // Dead letters below the read position and the checkpoint records themselves
    // are durable once this returns: the checkpoint is taken.
    dlq.flush();
    if emitted != u64::MAX {
        sh.metrics.checkpoint.set(emitted as i64);
    }
    // The group's committed offsets mirror the checkpoint for lag monitoring
    // (and carry it as metadata on brokers that keep metadata).
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        eprintln!("causeway run: commit failed (will retry): {e}");
        sh.metrics.kafka_errors.with_label_values(&["commit"]).inc();
    }
}

/// Consumer lag, watermark lag and state size.
fn report_health(
    consumer: &BaseConsumer<Health>,
    mine: &[Assigned],
    ingest: &Ingest,
    worker: &str,
    sh: &Shared,
) {
    for a in mine {
        if let Some(end) = consumer.context().end(&a.part.topic_name, a.part.partition) {
            let lag = (end - a.position as i64).max(0);
            sh.metrics
                .consumer_lag
                .with_label_values(&[&a.part.topic_name, &a.part.partition.to_string()])
                .set(lag);
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    sh.metrics
        .watermark_lag
        .with_label_values(&[worker])
        .set(now.saturating_sub(ingest.time()) as f64);
    sh.metrics
        .state_records
        .with_label_values(&[worker])
        .set(ingest.held() as i64);
}

/// True when every partition is idle and read to its end.
fn drained(consumer: &BaseConsumer<Health>, mine: &mut [Assigned], idle: Duration) -> bool {
    mine.iter_mut()
        .all(|a| a.last_message.elapsed() >= idle && a.at_end(consumer))
}
