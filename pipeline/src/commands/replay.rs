//! `causeway replay`: runs the jobs over files, exactly as `run` does over Kafka.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_schemas::records::DlqRecord;
use causeway_schemas::Encoding;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Config, ConfigError, Settings};
use crate::dataflow;
use crate::ingest::{Closed, Ingest, Stats, Watermark};
use crate::sinks::file::{DlqSpool, FileOutputs, FileSink};
use crate::sources::file::{list_inputs, open, InputError};
use crate::sources::Topic;

/// Messages read from each partition per scheduling round.
const ROUND_MESSAGES: usize = 256;

/// How far (event time) a partition may run ahead of its worker's slowest one.
const ALIGN_NS: u64 = 10 * causeway_schemas::time::NANOS_PER_SEC;

/// Reading rounds a worker may run ahead of the written outputs: after its
/// round `k` it waits until every output below its input time at the end of
/// round `k - ROUNDS_AHEAD` is written. One round of slack made the workers
/// run in lockstep (a worker that finished its round first waited for the
/// other to finish reading its own and step); more lets a worker keep reading
/// while another, or worker 0 writing a window, catches up, or while the OS
/// runs something else on the other's core (a round is a few milliseconds).
/// Meanwhile a slower worker's channels hold what the others sent it in those
/// rounds.
const ROUNDS_AHEAD: usize = 4;

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad input directory or file.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Output cannot be written.
    #[error("cannot write output in {path}: {source}")]
    Output {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// An input file failed while being read.
    #[error("reading {path} failed: {source}")]
    Read {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Timely could not start its workers.
    #[error("cannot start workers: {0}")]
    Workers(String),
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Input files.
    pub files: usize,
    /// Ingest counts, all workers.
    pub stats: Stats,
    /// Windows emitted.
    pub windows: u64,
    /// SLI records written.
    pub sli_records: u64,
    /// Service-graph records written.
    pub edge_records: u64,
    /// Alert records written.
    pub alert_records: u64,
    /// Finalization latency per window, microseconds: from the moment every worker's
    /// watermark had passed the window's final time to the moment its records were written.
    pub finalize_latency_us: Vec<u64>,
    /// Wall-clock duration of the replay.
    pub elapsed: Duration,
}

/// Replay options.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Input directory.
    pub input: PathBuf,
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Config file.
    pub config: Option<PathBuf>,
    /// Timely configuration (threads, processes).
    pub workers: usize,
    /// Show a progress bar on a terminal.
    pub progress: bool,
}

/// Runs a replay.
pub fn replay(opts: &ReplayOptions) -> Result<Summary, ReplayError> {
    let started = Instant::now();
    let config = Config::load(opts.config.as_deref())?;
    let settings = config.settings()?;
    let files = list_inputs(&opts.input)?;
    for (path, topic, enc) in &files {
        // Fail early and clearly on unreadable files, before any worker starts.
        open(path, *topic, *enc, 0)?;
    }
    std::fs::create_dir_all(&opts.out).map_err(|source| output_err(&opts.out, source))?;
    let outputs = Arc::new(Mutex::new(
        FileOutputs::create(&opts.out).map_err(|s| output_err(&opts.out, s))?,
    ));
    let total_bytes: u64 = files
        .iter()
        .filter_map(|(p, _, _)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let progress = (opts.progress && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(total_bytes);
        if let Ok(style) = ProgressStyle::with_template(
            "[{bar:25}] {percent:>3}%  {bytes} / {total_bytes}  {bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("#>-"));
        }
        bar
    });

    let shared = (files.clone(), settings, outputs.clone(), progress.clone());
    let out = opts.out.clone();
    let guards = timely::execute(
        timely::Config::process(opts.workers.max(1)),
        move |worker| {
            let (files, settings, outputs, progress) = shared.clone();
            let dlq = DlqSpool::new(&out);
            run_worker(worker, &files, settings, outputs, dlq, progress.as_ref())
        },
    )
    .map_err(ReplayError::Workers)?;

    let mut summary = Summary {
        files: files.len(),
        ..Summary::default()
    };
    let mut advances = Vec::new();
    for result in guards.join() {
        let closed = result.map_err(ReplayError::Workers)??;
        summary.stats.merge(&closed.stats);
        advances.push(closed.advances);
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let mut o = outputs
        .lock()
        .map_err(|_| ReplayError::Workers("a worker panicked".into()))?;
    // Dropping the outputs uncommitted (any error below or above) removes the
    // temporary files.
    o.finish().map_err(|s| output_err(&opts.out, s))?;
    summary.windows = o.windows;
    summary.sli_records = o.sli_records;
    summary.edge_records = o.edge_records;
    summary.alert_records = o.alert_records;
    summary.finalize_latency_us = finalize_latencies(&o.emitted, &advances);
    summary.elapsed = started.elapsed();
    // The workers spooled their dead letters to disk as they went, one file
    // per input partition (never all in memory); join them in order.
    o.merge_dlq(files.len() as u32)
        .and_then(|()| o.commit())
        .map_err(|s| output_err(&opts.out, s))?;
    Ok(summary)
}

/// For each emitted time: emit instant minus the instant the last worker's
/// frontier reached that time.
fn finalize_latencies(emitted: &[(u64, Instant)], advances: &[Vec<(u64, Instant)>]) -> Vec<u64> {
    emitted
        .iter()
        .filter_map(|(t, at)| {
            let passed = advances
                .iter()
                .map(|adv| adv.iter().find(|(a, _)| a >= t).map(|(_, i)| *i))
                .collect::<Option<Vec<Instant>>>()?
                .into_iter()
                .max()?;
            Some(at.saturating_duration_since(passed).as_micros() as u64)
        })
        .collect()
}

fn output_err(path: &Path, source: std::io::Error) -> ReplayError {
    ReplayError::Output {
        path: path.display().to_string(),
        source,
    }
}

type WorkerResult = Result<Closed, ReplayError>;

fn run_worker(
    worker: &mut timely::worker::Worker,
    files: &[(PathBuf, Topic, Encoding)],
    settings: Settings,
    outputs: Arc<Mutex<FileOutputs>>,
    mut dlq: DlqSpool,
    progress: Option<&ProgressBar>,
) -> WorkerResult {
    let (index, peers) = (worker.index(), worker.peers());
    let sink: Option<Box<dyn dataflow::OutputSink>> =
        (index == 0).then(|| Box::new(FileSink(outputs)) as _);
    let (inputs, probe) = dataflow::build(worker, &settings, sink, dataflow::evaluator(&settings));
    let lateness = settings.allowed_lateness_ns;
    let mut ingest = Ingest::new(inputs, settings);

    let mut parts = Vec::new();
    for (i, (path, topic, enc)) in files.iter().enumerate().filter(|(i, _)| i % peers == index) {
        parts.push((
            open(path, *topic, *enc, i as u32)?,
            Watermark::default(),
            false,
            0u64,
        ));
    }
    // Input times at the end of the last `ROUNDS_AHEAD` rounds, oldest first.
    let mut ends = std::collections::VecDeque::from(vec![ingest.time(); ROUNDS_AHEAD]);
    loop {
        // Event-time alignment: a partition more than ALIGN_NS ahead of this
        // worker's slowest one waits, so nothing is read far ahead of the
        // watermark and held in memory (lateness is per partition, so the
        // reading order changes no output).
        let slowest = parts
            .iter()
            .filter(|p| !p.2)
            .filter_map(|p| p.1.max_seen())
            .min();
        for (part, wm, done, pos) in parts.iter_mut().filter(|p| !p.2) {
            for _ in 0..ROUND_MESSAGES {
                if let (Some(low), Some(seen)) = (slowest, wm.max_seen()) {
                    if seen > low.saturating_add(ALIGN_NS) {
                        break;
                    }
                }
                let next = part
                    .reader
                    .next_message()
                    .map_err(|source| ReplayError::Read {
                        path: part.name.clone(),
                        source,
                    })?;
                let Some(msg) = next else {
                    *done = true;
                    break;
                };
                ingest.process(&part.name, part.topic, part.encoding, part.id, wm, &msg);
                spool(&mut dlq, &mut ingest.dlq)?;
            }
            let now = part.reader.position();
            if let Some(bar) = progress {
                bar.inc(now - *pos);
            }
            *pos = now;
        }
        let active: Vec<u64> = parts
            .iter()
            .filter(|p| !p.2)
            .map(|p| p.1.value(lateness).unwrap_or(0))
            .collect();
        let Some(watermark) = active.iter().min().copied() else {
            break;
        };
        ingest.advance(watermark);
        // Hand what this round read to the dataflow (and take in what the other
        // workers sent) without waiting.
        worker.step();
        // Wait for the other workers by parking, not spinning: a worker with
        // nothing to do gives its core to the others.
        ends.push_back(ingest.time());
        let waited = ends.pop_front().unwrap_or_default();
        while probe.less_than(&waited) {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
    }
    ingest.flush();
    let mut closed = ingest.close();
    // Every dead letter comes from a message, spooled above.
    debug_assert!(closed.dlq.is_empty());
    spool(&mut dlq, &mut closed.dlq)?;
    dlq.finish().map_err(|s| output_err(dlq.dir(), s))?;
    while !probe.done() {
        worker.step_or_park(Some(Duration::from_millis(1)));
    }
    Ok(closed)
}

/// Moves the dead letters of the message just ingested to the worker's spool
/// file of their partition: a flood of bad input is never held in memory.
fn spool(dlq: &mut DlqSpool, records: &mut Vec<DlqRecord>) -> Result<(), ReplayError> {
    dlq.append(records).map_err(|s| output_err(dlq.dir(), s))
}

/// `causeway replay`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory of input files named otlp_spans*, otlp_logs*, deploys*, audit* (.jsonl, .json, .pb).
    #[arg(long)]
    input: PathBuf,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Config file (TOML); see deploy/causeway.example.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Worker threads.
    #[arg(short = 'w', long, default_value_t = 1)]
    workers: usize,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Runs `causeway replay` and prints its summary.
pub fn main(args: Args) -> ExitCode {
    let opts = ReplayOptions {
        input: args.input,
        out: args.out,
        config: args.config,
        workers: args.workers,
        progress: !args.quiet,
    };
    match replay(&opts) {
        Ok(summary) => {
            print_summary(&summary);
            ExitCode::SUCCESS
        }
        Err(e) => super::fail("replay", e),
    }
}

/// Skipped records by topic and reason (`deploys unused_event_type 12, …`),
/// or `none`: valid input Causeway does not use, not dead-lettered.
pub(crate) fn skipped_line(st: &Stats) -> String {
    if st.skipped.is_empty() {
        return "none (valid input not used; never dead-lettered)".into();
    }
    let parts: Vec<String> = st
        .skipped
        .iter()
        .map(|((t, r), n)| format!("{} {} {n}", t.default_name(), r.as_str()))
        .collect();
    format!(
        "{} (valid input not used; never dead-lettered)",
        parts.join(", ")
    )
}

fn print_summary(s: &Summary) {
    let st = &s.stats;
    eprintln!("causeway replay: {} input files", s.files);
    eprintln!("  messages read    {}", st.messages);
    eprintln!(
        "  records read     {} = accepted {} + rejected {} + skipped {}",
        st.records,
        st.accepted_total(),
        st.rejected_total(),
        st.skipped_total()
    );
    let accepted: Vec<String> = st
        .accepted
        .iter()
        .map(|(t, n)| format!("{} {n}", t.default_name()))
        .collect();
    eprintln!(
        "  accepted         {}",
        if accepted.is_empty() {
            "none".into()
        } else {
            accepted.join(", ")
        }
    );
    let mut by_reason: std::collections::BTreeMap<&str, u64> = Default::default();
    for ((_, r), n) in &st.rejected {
        *by_reason.entry(r.as_str()).or_default() += n;
    }
    let rejected: Vec<String> = by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
    eprintln!(
        "  rejected         {}",
        if rejected.is_empty() {
            "none".into()
        } else {
            rejected.join(", ")
        }
    );
    eprintln!(
        "  late             {}",
        by_reason.get("late").copied().unwrap_or(0)
    );
    eprintln!("  skipped          {}", skipped_line(st));
    eprintln!(
        "  windows emitted  {} ({} SLI records, {} service-graph edges)",
        s.windows, s.sli_records, s.edge_records
    );
    eprintln!(
        "  alerts           {} records (alerts.jsonl; burn rates in slo.jsonl)",
        s.alert_records
    );
}
