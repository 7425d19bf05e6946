//! `causeway run`: the jobs on live Kafka topics, as a long-running service.
//!
//! Each timely worker (of every process) owns a deterministic share of the input
//! partitions ([`crate::kafka`]), reads them with its own consumer and
//! feeds the shared dataflow through [`Ingest`], exactly as `replay` does with
//! files. Worker 0 writes the outputs ([`KafkaSink`]); every worker writes its
//! own dead letters.
//!
//! **Rounds.** A worker reads for up to 20 ms (or 512 messages), advances its
//! input frontier, then steps the dataflow until no operator has work (at most
//! 100 ms) and reads again. It does not wait for the output frontier to reach
//! its input time: other workers' partitions, or a silent partition, can hold
//! that back, and waiting would only slow its reading.
//!
//! **Checkpoints.** Every `kafka.commit_interval` each worker reads the emitted
//! frontier `E` from the probe (every output of a time below `E` is acknowledged
//! by the broker) and takes, for each of its partitions, the first offset still
//! needed for times at or after `E`, with a [`Checkpoint`]. It writes them to
//! the checkpoint topic (and commits the group's offsets to match) once the
//! dead letters it sent before are acknowledged, without waiting in between.
//! A restart resumes from those offsets, rebuilding at most `trace_horizon`
//! (+ window + grace) of state, and skips output times below the newest
//! committed `E`.
//!
//! **Shutdown.** SIGTERM/SIGINT: stop reading, flush, commit, exit 0. Inputs are
//! never closed on shutdown (that would emit unfinished windows); they are only
//! closed in `--drain` mode, once every partition is read to its end and idle.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{parse_duration, Config, ConfigError, Guarantee, Settings};
use crate::dataflow;
use crate::ingest::{Ingest, Stats};
use crate::kafka::{
    checkpoint_key, consumer_config, discover, latest_checkpoints, read_fenced, Checkpoint,
    CheckpointRecord, Committed, Health, KafkaSetupError, Mark, Stored,
};
use crate::metrics::{self, Metrics};
use crate::sinks::kafka::{out_offsets, DlqSink, KafkaSink, OutLog, OutOffsets};
use crate::sources::kafka::{read_ahead_ns, read_limit, Assigned, KafkaSource};

/// How long a worker reads before it steps the dataflow.
const ROUND_READ: Duration = Duration::from_millis(20);

/// How long a worker steps the dataflow at most before reading again.
const ROUND_STEP: Duration = Duration::from_millis(100);

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
#[derive(Clone, Default)]
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
    /// Count into this registry, served by its owner, instead of serving one on
    /// `metrics.bind` (`causeway demo` keeps serving it after the run ends).
    pub metrics: Option<Arc<Metrics>>,
}

/// What a run did, summed over this process's workers.
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Ingest counts.
    pub stats: Stats,
    /// Input partitions read by this process.
    pub partitions: usize,
    /// With `--drain`: how long this process only waited for its partitions to
    /// turn idle (`time.idle_timeout`) after its last message; see
    /// [`DrainWait`]. Not work: the broker benchmark subtracts it.
    pub drain_wait: Option<Duration>,
}

/// How long a worker waited at the end of a `--drain` run: the rounds after
/// its last message, except the time they spent stepping a dataflow that
/// made progress (a partition turned idle, so windows were finalized), and
/// the instant it stopped reading. A worker that stops before the others
/// waits for them too, so the process waited `min over workers (quiet + last
/// stop - own stop)`.
#[derive(Debug, Clone, Copy)]
struct DrainWait {
    quiet: Duration,
    stopped: Instant,
}

impl DrainWait {
    fn of_process(waits: &[DrainWait]) -> Option<Duration> {
        let last = waits.iter().map(|w| w.stopped).max()?;
        waits.iter().map(|w| w.quiet + (last - w.stopped)).min()
    }
}

/// Runs until SIGTERM/SIGINT (or, with `drain`, until the inputs are exhausted).
pub fn run(opts: &RunOptions) -> Result<RunSummary, RunError> {
    let mut config = Config::load(opts.config.as_deref())?;
    config.kafka.read_secrets(&crate::secret::process_env)?;
    let mut settings = config.settings()?;
    if !config.metrics.bind.is_empty() {
        settings.params.metrics = Some(config.metrics.params());
    }
    let timely_config = cluster_config(opts)?;
    let metrics = opts
        .metrics
        .clone()
        .unwrap_or_else(|| Arc::new(Metrics::new(&config.metrics)));
    let _server = match config.metrics.bind.as_str() {
        _ if opts.metrics.is_some() => None,
        "" => None,
        bind => {
            // Processes of one cluster may share a host: process p serves on port + p.
            let mut addr: std::net::SocketAddr = bind
                .parse()
                .map_err(|_| RunError::Cluster(format!("metrics.bind {bind:?} is not ip:port")))?;
            addr.set_port(addr.port() + opts.process as u16 * (addr.port() != 0) as u16);
            let token = config.metrics.bearer_token().map_err(ConfigError::from)?;
            let server =
                metrics::serve(&addr.to_string(), metrics.clone(), token).map_err(|source| {
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
        drain_waits: Mutex::new(Vec::new()),
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
    let mut summary = std::mem::take(
        &mut *shared
            .summary
            .lock()
            .map_err(|_| RunError::Workers("a worker panicked".into()))?,
    );
    if let Ok(waits) = shared.drain_waits.lock() {
        summary.drain_wait = DrainWait::of_process(&waits);
    }
    if let Some(w) = summary.drain_wait {
        eprintln!(
            "causeway run: drained; waited {:.3} s at the end for the partitions to turn idle",
            w.as_secs_f64()
        );
    }
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
    drain_waits: Mutex<Vec<DrainWait>>,
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
    back: &[Stored],
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

/// Worker 0's output sink.
type Sink = Option<Box<dyn dataflow::OutputSink>>;

/// Where this worker resumes (from the newest checkpoints) and, on worker 0,
/// the output sink, with the SLO evaluator rebuilt from the outputs read back.
///
/// Under `exactly_once`, worker 0 reads the outputs back whenever this group
/// has a checkpoint, whatever its emitted frontier: a checkpoint taken before
/// the first output time was acknowledged has `emitted == 0`, and the run that
/// wrote it may have written outputs since (the read-back starts at its output
/// offsets). Without any checkpoint (a first start), it records where the
/// output topics end instead, and [`run_worker`] writes a checkpoint with those
/// offsets before the first output can be written.
fn outputs(
    index: usize,
    checkpoints: &[Committed],
    records: usize,
    sh: &Shared,
) -> Result<(Resume, Sink, causeway_jobs::slo::Evaluator), RunError> {
    let k = &sh.config.kafka;
    let metrics = Some(sh.metrics.clone());
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

    let found = checkpoints.iter().flatten().count();
    let exactly_once = sh.config.processing.guarantee == Guarantee::ExactlyOnce;
    let mut resume = Resume {
        from: resume_from,
        prior_out,
        sink: None,
        first_start: false,
    };
    let mut evaluator = dataflow::evaluator(&sh.settings);
    let mut line = format!(
        "causeway run: worker {index} resumes at emitted frontier {resume_from} ({found} of {} input partitions checkpointed, {records} checkpoint records read)",
        checkpoints.len()
    );
    let sink: Sink = if index == 0 {
        let mut sink = KafkaSink::new(k, resume_from, metrics.clone())?;
        if exactly_once && found == 0 {
            resume.prior_out = sink.ends(k)?;
            resume.first_start = true;
            line.push_str(&format!(
                "; first start, outputs begin at {:?}",
                resume.prior_out
            ));
        } else if resume_from > 0 || exactly_once {
            let back = sink.read_back(k, &resume.prior_out, exactly_once)?;
            line.push_str(&format!("; read back {} output records", back.len()));
            if exactly_once {
                line.push_str(&format!(
                    ", {} of them at or after the checkpointed output offsets {:?}, skipped when recomputed",
                    sink.skipping(),
                    resume.prior_out
                ));
            }
            if !evaluator.is_empty() && resume_from > 0 {
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
    eprintln!("{line}");
    Ok((resume, sink, evaluator))
}

fn run_worker(worker: &mut timely::worker::Worker, sh: &Shared) -> Result<(), RunError> {
    let (index, peers) = (worker.index(), worker.peers());
    let k = &sh.config.kafka;
    let metrics = Some(sh.metrics.clone());
    let consumer: BaseConsumer<Health> = consumer_config(k)
        .create_with_context(Health {
            metrics: metrics.clone(),
            ..Health::default()
        })
        .map_err(KafkaSetupError::Client)?;
    let all = discover(&consumer, k)?;
    let dlq = DlqSink::new(k, metrics.clone(), sh.settings.redact_dead_letters)?;
    let stored = read_fenced(k, &[&k.topics.checkpoints])?;
    let checkpoints = latest_checkpoints(&k.group_id, &all, &stored);
    let (resume, sink, evaluator) = outputs(index, &checkpoints, stored.len(), sh)?;
    let (inputs, probe) = dataflow::build(worker, &sh.settings, sink, evaluator);
    let mut ingest = Ingest::new(inputs, sh.settings.clone());
    ingest.keep_advances = false;

    let mut source = KafkaSource::assign(consumer, &all, checkpoints, index, peers)?;
    if resume.first_start {
        // Durable before the dataflow first steps, so before any output: a
        // restart then finds where this run's outputs begin and reads them back.
        checkpoint_now(&mut source, &probe, &dlq, &resume, None, sh);
    }
    {
        let mut s = sh
            .summary
            .lock()
            .map_err(|_| RunError::Workers("poisoned".into()))?;
        s.partitions += source.parts.len();
    }
    let lateness = sh.settings.allowed_lateness_ns;
    let ahead = read_ahead_ns(&sh.settings.params);
    let idle = Duration::from_nanos(sh.settings.idle_timeout_ns);
    let commit_every =
        Duration::from_nanos(parse_duration(&k.commit_interval).unwrap_or(1_000_000_000));
    let mut last_commit = Instant::now();
    let mut reported = Stats::default();
    let worker_label = index.to_string();
    // `--drain`: the rounds since the last message in which nothing happened.
    let mut quiet = Duration::ZERO;
    // A checkpoint waiting for its dead letters to be acknowledged.
    let mut pending: Option<Taken> = None;

    loop {
        if sh.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let round = Instant::now();
        let previous = ingest.time();
        let progress = probe.with_frontier(|f| f.first().copied());
        let deadline = round + ROUND_READ;
        let global = read_limit(ingest.global_time(), progress, lateness, ahead);
        let read = source.read_round(&mut ingest, &dlq, &sh.metrics, deadline, global, ahead);
        let watermark = source.watermark(lateness, idle);
        ingest.advance(watermark);
        // Do the work this round gave this worker: step until no operator is
        // active (or for ROUND_STEP), then read on. Not until the output
        // frontier reaches this worker's input time: other workers' partitions
        // (or a silent one) may hold it back, and waiting for them only slows
        // this worker's reading.
        let stepping = Instant::now();
        let until = stepping + ROUND_STEP;
        loop {
            worker.step();
            let active = worker.activations().borrow().empty_for() == Some(Duration::ZERO);
            if !active || Instant::now() >= until {
                break;
            }
        }
        let stepped = stepping.elapsed();
        sh.metrics.observe_ingest(&reported, &ingest.stats);
        reported = ingest.stats.clone();

        if last_commit.elapsed() >= commit_every {
            last_commit = Instant::now();
            if resume.output_failed() || dlq.failed() {
                return Err(RunError::Delivery);
            }
            if pending.is_none() {
                pending = take_checkpoint(&probe, &mut source.parts, &dlq, &resume);
            }
            report_health(&source, &ingest, &worker_label, sh);
        }
        if pending.as_ref().is_some_and(|t| dlq.acknowledged(t.mark)) {
            if dlq.failed() {
                return Err(RunError::Delivery);
            }
            if let Some(t) = pending.take() {
                write_checkpoint(&source, &dlq, t, sh);
            }
        }
        if read > 0 {
            quiet = Duration::ZERO;
        } else if ingest.time() == previous
            && probe.with_frontier(|f| f.first().copied()) == progress
        {
            quiet += round.elapsed();
        } else {
            // A partition turned idle: the watermark moved and windows were
            // finalized. Only that stepping was work.
            quiet += round.elapsed().saturating_sub(stepped);
        }
        let check = Instant::now();
        if sh.drain && source.drained(idle) {
            // Asking the broker whether all is read was waiting too.
            if read == 0 {
                quiet += check.elapsed();
            }
            break;
        }
    }

    if sh.drain && !sh.shutdown.load(Ordering::SeqCst) {
        if let Ok(mut w) = sh.drain_waits.lock() {
            w.push(DrainWait {
                quiet,
                stopped: Instant::now(),
            });
        }
        // Every partition is read to its end: close the inputs so the last
        // windows are emitted, as `replay` does at the end of its files.
        checkpoint_now(&mut source, &probe, &dlq, &resume, pending, sh);
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
        drop(s);
        source.close();
        return Ok(());
    }
    checkpoint_now(&mut source, &probe, &dlq, &resume, pending, sh);
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
    source.close();
    Ok(())
}

/// Where a worker resumed, and (worker 0) its handles on the sink: the output
/// offset log, the delivery-failure flag and the discard switch.
struct Resume {
    /// Output times below this were emitted before the restart.
    from: u64,
    /// Output offsets of the newest checkpoints (where a read-back starts),
    /// or on a first start where the output topics ended.
    prior_out: OutOffsets,
    sink: Option<(OutLog, Arc<AtomicBool>, Arc<AtomicBool>)>,
    /// Worker 0 under `exactly_once` without any checkpoint: it writes one
    /// with `prior_out` before the first output.
    first_start: bool,
}

impl Resume {
    /// True if an output record could not be delivered.
    fn output_failed(&self) -> bool {
        self.sink
            .as_ref()
            .is_some_and(|(_, failed, _)| failed.load(Ordering::SeqCst))
    }

    /// Output offsets every record of a time at or after `emitted` is at or
    /// after: those logged after the newest time below `emitted`, and for a
    /// partition this run has not written to yet, the prior ones.
    fn out_offsets(&self, emitted: u64) -> OutOffsets {
        match &self.sink {
            Some((log, _, _)) => {
                let mut o = out_offsets(log, emitted);
                for prior in &self.prior_out {
                    if !o.iter().any(|(t, p, _)| *t == prior.0 && *p == prior.1) {
                        o.push(prior.clone());
                    }
                }
                o.sort();
                o
            }
            None => Vec::new(),
        }
    }
}

/// A checkpoint taken and not yet written. Its records wait until the dead
/// letters sent before it are acknowledged: a checkpoint must not become
/// durable before the dead letters below its read positions, and waiting
/// for them in the worker would stall reading for a broker round trip (more
/// while a burst of dead letters is in flight).
struct Taken {
    /// The dead-letter producer's mark when it was taken.
    mark: usize,
    /// The emitted frontier it records.
    emitted: u64,
    /// Each changed partition: its index in `mine`, restart offset, and record (JSON).
    records: Vec<(usize, u64, String)>,
}

/// Takes a checkpoint: each partition's restart point for the current emitted
/// frontier (see [`Taken`]; [`write_checkpoint`] writes it).
fn take_checkpoint(
    probe: &timely::dataflow::ProbeHandle<u64>,
    mine: &mut [Assigned],
    dlq: &DlqSink,
    resume: &Resume,
) -> Option<Taken> {
    if mine.is_empty() {
        return None;
    }
    let mark = dlq.mark();
    let frontier = probe.with_frontier(|f| f.first().copied().unwrap_or(u64::MAX));
    let emitted = frontier.max(resume.from);
    let out = resume.out_offsets(emitted);
    let mut records = Vec::new();
    for (i, a) in mine.iter_mut().enumerate() {
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
        records.push((
            i,
            restart.offset,
            serde_json::to_string(&record).unwrap_or_default(),
        ));
        a.last_checkpoint = Some(record);
    }
    Some(Taken {
        mark,
        emitted,
        records,
    })
}

/// Writes a taken checkpoint whose dead letters are acknowledged, and commits
/// the group's offsets to match.
fn write_checkpoint(source: &KafkaSource, dlq: &DlqSink, taken: Taken, sh: &Shared) {
    let k = &sh.config.kafka;
    let mut tpl = TopicPartitionList::new();
    for (i, offset, json) in taken.records {
        let a = &source.parts[i];
        dlq.send_checkpoint(
            &k.topics.checkpoints,
            &checkpoint_key(&k.group_id, &a.part),
            json.as_bytes(),
        );
        let mut e = tpl.add_partition(&a.part.topic_name, a.part.partition);
        if e.set_offset(Offset::Offset(offset as i64)).is_ok() {
            e.set_metadata(json);
        }
    }
    if taken.emitted != u64::MAX {
        sh.metrics.checkpoint.set(taken.emitted as i64);
    }
    // The group's committed offsets mirror the checkpoint for lag monitoring
    // (and carry it as metadata on brokers that keep metadata).
    if let Err(e) = source.consumer.commit(&tpl, CommitMode::Async) {
        eprintln!("causeway run: commit failed (will retry): {e}");
        sh.metrics.kafka_errors.with_label_values(&["commit"]).inc();
    }
}

/// Takes a checkpoint and waits until it is durable (with the one still
/// waiting for its dead letters, if any): before a shutdown or a drain's close.
fn checkpoint_now(
    source: &mut KafkaSource,
    probe: &timely::dataflow::ProbeHandle<u64>,
    dlq: &DlqSink,
    resume: &Resume,
    pending: Option<Taken>,
    sh: &Shared,
) {
    // Every dead letter so far is durable: both checkpoints may be written.
    dlq.flush();
    if let Some(t) = pending {
        write_checkpoint(source, dlq, t, sh);
    }
    if let Some(t) = take_checkpoint(probe, &mut source.parts, dlq, resume) {
        write_checkpoint(source, dlq, t, sh);
    }
    dlq.flush();
}

/// Consumer lag, watermark lag and state size.
fn report_health(source: &KafkaSource, ingest: &Ingest, worker: &str, sh: &Shared) {
    source.report_lag(&sh.metrics);
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
    sh.metrics
        .held_partitions
        .with_label_values(&[worker])
        .set(source.held() as i64);
}

/// `causeway run`'s arguments (`-h` is the hostfile, as timely has it).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Config file (TOML); see deploy/causeway.example.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Worker threads per process.
    #[arg(short = 'w', long, default_value_t = 1)]
    workers: usize,
    /// Number of processes in the timely cluster.
    #[arg(short = 'n', long, default_value_t = 1)]
    processes: usize,
    /// Index of this process, 0..n.
    #[arg(short = 'p', long, default_value_t = 0)]
    process: usize,
    /// Hostfile: one host:port per line, one line per process (default localhost:2101+p).
    #[arg(short = 'h', long)]
    hostfile: Option<PathBuf>,
    /// Exit once every input partition is read to its end and idle (after emitting every window).
    #[arg(long)]
    drain: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// Runs `causeway run` until it is stopped and prints what it read.
pub fn main(args: Args) -> ExitCode {
    let opts = RunOptions {
        config: args.config,
        threads: args.workers,
        processes: args.processes,
        process: args.process,
        hostfile: args.hostfile,
        drain: args.drain,
        metrics: None,
    };
    match run(&opts) {
        Ok(s) => {
            let rejected: Vec<String> = s
                .stats
                .rejected
                .iter()
                .map(|((t, r), n)| format!("{} {} {n}", t.default_name(), r.as_str()))
                .collect();
            eprintln!(
                "causeway run: stopped; {} partitions, {} messages, {} records ({} accepted, {} rejected{}{}, {} skipped)",
                s.partitions,
                s.stats.messages,
                s.stats.records,
                s.stats.accepted_total(),
                s.stats.rejected_total(),
                if rejected.is_empty() { "" } else { ": " },
                rejected.join(", "),
                s.stats.skipped_total(),
            );
            eprintln!("  skipped: {}", super::replay::skipped_line(&s.stats));
            ExitCode::SUCCESS
        }
        Err(e) => super::fail("run", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resume(prior_out: OutOffsets, log: Vec<(u64, OutOffsets)>) -> Resume {
        Resume {
            from: 100,
            prior_out,
            sink: Some((Arc::new(Mutex::new(log)), Arc::default(), Arc::default())),
            first_start: false,
        }
    }

    fn at(topic: &str, offset: i64) -> (String, i32, i64) {
        (topic.to_string(), 0, offset)
    }

    #[test]
    fn output_offsets_keep_the_prior_ones_until_this_run_writes_there() {
        // Nothing written below the frontier yet: the prior offsets.
        let r = resume(vec![at("alerts", 7), at("sli", 40)], Vec::new());
        assert_eq!(r.out_offsets(100), vec![at("alerts", 7), at("sli", 40)]);
        // Only SLI records written since: alerts of later times are still at
        // or after the prior offset (an earlier run may have written them).
        let r = resume(
            vec![at("alerts", 7), at("sli", 40)],
            vec![(100, vec![at("sli", 55)]), (110, vec![at("sli", 60)])],
        );
        assert_eq!(r.out_offsets(110), vec![at("alerts", 7), at("sli", 55)]);
        // A first start's offsets are the ends of the topics; nothing logged.
        let r = resume(vec![at("sli", 1)], Vec::new());
        assert_eq!(r.out_offsets(0), vec![at("sli", 1)]);
        // Workers other than 0 record none.
        let mut r = resume(vec![at("sli", 1)], Vec::new());
        r.sink = None;
        assert!(r.out_offsets(0).is_empty());
    }
}
