//! The soak and backpressure harness (issue 12, part 3): `causeway run` as a
//! child process on tansu, fed by the `causeway demo` story
//! ([`causeway::demo::Story`]) at `rate` traces per second of event time, `speed`
//! times faster than the wall clock, for a steady phase. Then input outruns
//! Causeway: it is stopped (SIGSTOP) while the feeder produces as fast as the
//! broker takes it for the burst phase, and continued (SIGCONT) to face a
//! backlog far larger than anything it may buffer; the catch-up phase samples it
//! until its watermark reaches the feeder's event time.
//!
//! Every `sample_every` it records the child's resident set (`/proc`), its
//! consumer lag and state size (its own `/metrics`), how many messages were
//! produced, and how far Causeway's watermark is behind the feeder's event time
//! (the lag measured independently of the broker's high watermarks, which tansu
//! reports stale). The report gives the Theil–Sen slope of RSS over the second half of
//! the steady phase (the part after the trace horizon first filled), the lag
//! bounds, and the peak RSS of the catch-up: the memory ceiling when Causeway
//! reads slower than its input arrives.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway::demo::{Story, StoryConfig};
use causeway::sources::Topic;
use causeway_schemas::time::{now_ns, NANOS_PER_SEC};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};

use crate::kafka::{create_topic, free_port, Tansu, OUTPUT_TOPICS};

/// What to soak.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// The `causeway` binary.
    pub causeway: PathBuf,
    /// Scratch directory (config, nothing large).
    pub dir: PathBuf,
    /// Wall time of the steady phase.
    pub steady: Duration,
    /// Wall time of each burst phase, in order (none: no burst).
    pub bursts: Vec<Duration>,
    /// Traces per second of event time (the demo feeds 8).
    pub rate: f64,
    /// Event-time seconds per wall-clock second (the demo's 75).
    pub speed: f64,
    /// Seconds between samples.
    pub sample_every: Duration,
    /// Worker threads of `causeway run`.
    pub workers: usize,
}

/// One sample.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Seconds since the feeder started.
    pub at_s: f64,
    /// Resident set of `causeway run`, KiB.
    pub rss_kib: u64,
    /// Sum of `causeway_consumer_lag_messages` over the input partitions.
    pub lag: i64,
    /// Sum of `causeway_state_records`.
    pub state: i64,
    /// Messages the feeder had produced (acknowledged or queued).
    pub produced: u64,
    /// Wall seconds Causeway's slowest watermark is behind the feeder's event
    /// time (event seconds / speed; includes `allowed_lateness`).
    pub behind_s: f64,
}

/// One burst (Causeway stopped while the feeder goes flat out) and its catch-up.
#[derive(Clone, Debug, Default)]
pub struct Burst {
    /// Samples of the burst phase (Causeway stopped).
    pub burst: Vec<Sample>,
    /// Samples of the catch-up phase.
    pub catchup: Vec<Sample>,
    /// Messages and payload bytes produced while Causeway was stopped.
    pub backlog: (u64, u64),
    /// Seconds the catch-up took (until `behind_s` was below 10 s), if it finished.
    pub caught_up_s: Option<f64>,
    /// Peak RSS (VmHWM, reset when the burst started if the kernel allows it)
    /// at the end of the catch-up, KiB.
    pub peak_kib: u64,
    /// Whether `peak_kib` is this burst's own (VmHWM was reset before it).
    pub peak_reset: bool,
    /// The most records held in state in a catch-up sample.
    pub peak_state: i64,
}

/// What a soak measured.
#[derive(Clone, Debug, Default)]
pub struct SoakReport {
    /// Samples of the steady phase.
    pub steady: Vec<Sample>,
    /// The bursts, in order.
    pub bursts: Vec<Burst>,
    /// Slope ([`robust_slope`]) of RSS over the second half of the steady phase, MiB/min.
    pub rss_slope_mib_per_min: f64,
    /// The same slope of the state records, records/min.
    pub state_slope_per_min: f64,
    /// Peak RSS (VmHWM) at the end of the steady phase, KiB.
    pub steady_peak_kib: u64,
    /// The most records held in state in a steady sample.
    pub steady_peak_state: i64,
    /// Messages produced in the steady phase, per wall second.
    pub steady_rate: f64,
}

fn proc_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Sum of the samples of `metric` in a Prometheus text exposition.
fn metric_sum(text: &str, metric: &str) -> i64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as i64
}

fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = String::new();
    if write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_err()
        || s.read_to_string(&mut buf).is_err()
    {
        return String::new();
    }
    buf
}

/// Least-squares slope of `y` over `x`.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// Theil–Sen slope of `y` over `x`: the median of the slopes between every
/// two points. A leak shows as the same trend as with least squares, but one
/// sample taken while a burst of records is held (RSS follows the records
/// held up and back down) no longer sets the trend of a short series.
pub fn robust_slope(points: &[(f64, f64)]) -> f64 {
    let mut slopes: Vec<f64> = points
        .iter()
        .enumerate()
        .flat_map(|(i, a)| points[i + 1..].iter().map(move |b| (a, b)))
        .filter(|(a, b)| b.0 != a.0)
        .map(|(a, b)| (b.1 - a.1) / (b.0 - a.0))
        .collect();
    if slopes.is_empty() {
        return 0.0;
    }
    slopes.sort_by(f64::total_cmp);
    let n = slopes.len();
    if n % 2 == 1 {
        slopes[n / 2]
    } else {
        (slopes[n / 2 - 1] + slopes[n / 2]) / 2.0
    }
}

/// What the feeder does.
const STEADY: u8 = 0;
const FLAT_OUT: u8 = 1;
const PAUSED: u8 = 2;
const STOP: u8 = 3;

/// The feeder: produces the story at `speed` while `mode` is [`STEADY`], as
/// fast as the producer takes it while [`FLAT_OUT`], nothing while
/// [`PAUSED`], until [`STOP`] or the story ends.
fn feed(
    brokers: String,
    mut story: Story,
    speed: f64,
    fed: Arc<[AtomicU64; 3]>,
    mode: Arc<AtomicU8>,
) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .set("message.max.bytes", "10000000")
        .create()
        .expect("producer");
    let end_ns = story.end_ns();
    let mut story_ns = story.timeline().start_ns;
    // Steady pace from (instant, event time) on.
    let mut paced_from: Option<(Instant, u64)> = None;
    loop {
        let m = mode.load(Ordering::SeqCst);
        if m == STOP || story_ns >= end_ns {
            break;
        }
        if m != STEADY {
            paced_from = None;
        }
        story_ns = match m {
            FLAT_OUT => story_ns + NANOS_PER_SEC,
            PAUSED => {
                // The backlog produced so far reaches the broker.
                let _ = producer.flush(Duration::from_secs(60));
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            _ => {
                let (at, from) = *paced_from.get_or_insert((Instant::now(), story_ns));
                let elapsed = at.elapsed().as_secs_f64() * speed;
                (from + (elapsed * 1e9) as u64).max(story_ns)
            }
        }
        .min(end_ns);
        for m in story.advance(story_ns) {
            // The broker is the bottleneck while the queue is full: produce waits.
            if let Err(e) = m.produce(&producer, m.topic.default_name()) {
                eprintln!("soak: cannot produce to {}: {e}", m.topic.default_name());
            }
            fed[0].fetch_add(1, Ordering::SeqCst);
            fed[1].fetch_add(m.payload.len() as u64, Ordering::SeqCst);
        }
        fed[2].store(story_ns, Ordering::SeqCst);
        if m == STEADY {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = producer.flush(Duration::from_secs(60));
}

fn config(dir: &Path, brokers: &str, metrics: &str, story: &Story) -> PathBuf {
    let path = dir.join("soak.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"soak\"\ncommit_interval = \"1s\"\n\n[metrics]\nbind = \"{metrics}\"\n\n{}",
            story.config_toml()
        ),
    )
    .expect("write config");
    path
}

/// Kills the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the soak; `progress` gets every sample as it is taken.
pub fn soak(opts: &SoakOptions, mut progress: impl FnMut(&str, &Sample)) -> SoakReport {
    std::fs::create_dir_all(&opts.dir).expect("scratch dir");
    let tansu = Tansu::start();
    for t in [Topic::Spans, Topic::Logs] {
        create_topic(&tansu.brokers, t.default_name(), 3);
    }
    for t in [Topic::Deploys, Topic::Audit] {
        create_topic(&tansu.brokers, t.default_name(), 1);
    }
    for t in OUTPUT_TOPICS {
        create_topic(&tansu.brokers, t, 1);
    }
    // Event time for the steady phase at `speed`, and for the burst at up to
    // 40 times that (the feeder reached about 30 times on this machine), ending
    // now: nothing lies in the future.
    let steady_event = opts.steady.as_secs_f64() * opts.speed;
    let burst_event: f64 = opts
        .bursts
        .iter()
        .map(|b| b.as_secs_f64() * opts.speed * 40.0)
        .sum();
    let event = Duration::from_secs_f64(steady_event + burst_event + 600.0);
    let story = Story::new(StoryConfig {
        start_ns: now_ns() - event.as_nanos() as u64 - 120 * NANOS_PER_SEC,
        duration: event,
        traces_per_second: opts.rate,
        ..StoryConfig::default()
    });
    let metrics = format!("127.0.0.1:{}", free_port());
    let cfg = config(&opts.dir, &tansu.brokers, &metrics, &story);
    let child = Command::new(&opts.causeway)
        .args(["run", "--config"])
        .arg(&cfg)
        .args(["-w", &opts.workers.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn causeway run");
    let mut child = Guard(child);
    let pid = child.0.id();

    // Messages, payload bytes, event time fed.
    let fed: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let mode = Arc::new(AtomicU8::new(STEADY));
    let feeder = {
        let (b, f, m) = (tansu.brokers.clone(), fed.clone(), mode.clone());
        let speed = opts.speed;
        std::thread::spawn(move || feed(b, story, speed, f, m))
    };
    let began = Instant::now();
    let speed = opts.speed;
    let sample = |stopped: bool| {
        let text = if stopped {
            String::new()
        } else {
            scrape(&metrics)
        };
        let wm_lag = text
            .lines()
            .filter(|l| l.starts_with("causeway_watermark_lag_seconds{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(f64::NAN, f64::max);
        let now_s = now_ns() as f64 / 1e9;
        let story_s = fed[2].load(Ordering::SeqCst) as f64 / 1e9;
        Sample {
            at_s: began.elapsed().as_secs_f64(),
            rss_kib: proc_kib(pid, "VmRSS:"),
            lag: metric_sum(&text, "causeway_consumer_lag_messages"),
            state: metric_sum(&text, "causeway_state_records"),
            produced: fed[0].load(Ordering::SeqCst),
            behind_s: (story_s - (now_s - wm_lag)) / speed,
        }
    };
    let mut report = SoakReport::default();
    let mut phase = |until: Duration,
                     name: &str,
                     out: &mut Vec<Sample>,
                     child: &mut Guard,
                     stopped: bool,
                     done: &dyn Fn(&Sample) -> bool| {
        let end = Instant::now() + until;
        while Instant::now() < end {
            std::thread::sleep(opts.sample_every.min(end - Instant::now()));
            if let Some(status) = child.0.try_wait().expect("wait") {
                panic!("causeway run exited during the soak: {status}");
            }
            let s = sample(stopped);
            progress(name, &s);
            out.push(s);
            if done(&s) {
                break;
            }
        }
    };
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    phase(
        opts.steady,
        "steady",
        &mut report.steady,
        &mut child,
        false,
        &|_| false,
    );
    report.steady_peak_kib = proc_kib(pid, "VmHWM:");
    report.steady_peak_state = report.steady.iter().map(|s| s.state).max().unwrap_or(0);
    for (k, &length) in opts.bursts.iter().enumerate() {
        // Peak RSS of this burst alone: `5 > clear_refs` resets VmHWM.
        let mut b = Burst {
            peak_reset: std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok(),
            ..Burst::default()
        };
        let before = (fed[0].load(Ordering::SeqCst), fed[1].load(Ordering::SeqCst));
        signal("-STOP");
        mode.store(FLAT_OUT, Ordering::SeqCst);
        phase(
            length,
            &format!("burst{k}"),
            &mut b.burst,
            &mut child,
            true,
            &|_| false,
        );
        mode.store(PAUSED, Ordering::SeqCst);
        // Let the producer's queue reach the broker before counting.
        std::thread::sleep(Duration::from_millis(500));
        b.backlog = (
            fed[0].load(Ordering::SeqCst) - before.0,
            fed[1].load(Ordering::SeqCst) - before.1,
        );
        let resumed = Instant::now();
        signal("-CONT");
        phase(
            length * 4 + Duration::from_secs(60),
            &format!("catchup{k}"),
            &mut b.catchup,
            &mut child,
            false,
            &|s| s.behind_s < 10.0,
        );
        if b.catchup.last().is_some_and(|s| s.behind_s < 10.0) {
            b.caught_up_s = Some(resumed.elapsed().as_secs_f64());
        }
        b.peak_kib = proc_kib(pid, "VmHWM:");
        b.peak_state = b.catchup.iter().map(|s| s.state).max().unwrap_or(0);
        report.bursts.push(b);
    }
    mode.store(STOP, Ordering::SeqCst);
    let _ = feeder.join();
    drop(child);

    let half = &report.steady[report.steady.len() / 2..];
    let to_min = |s: &Sample| s.at_s / 60.0;
    report.rss_slope_mib_per_min = robust_slope(
        &half
            .iter()
            .map(|s| (to_min(s), s.rss_kib as f64 / 1024.0))
            .collect::<Vec<_>>(),
    );
    report.state_slope_per_min = robust_slope(
        &half
            .iter()
            .map(|s| (to_min(s), s.state as f64))
            .collect::<Vec<_>>(),
    );
    if let (Some(a), Some(b)) = (report.steady.first(), report.steady.last()) {
        if b.at_s > a.at_s {
            report.steady_rate = (b.produced - a.produced) as f64 / (b.at_s - a.at_s);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_slope_follows_a_trend_and_ignores_one_spike() {
        let leak: Vec<(f64, f64)> = (0..6).map(|i| (i as f64, 70.0 + 2.0 * i as f64)).collect();
        assert!((robust_slope(&leak) - 2.0).abs() < 1e-9);
        assert!((slope(&leak) - 2.0).abs() < 1e-9);
        let mut spike: Vec<(f64, f64)> = (0..6).map(|i| (i as f64, 71.0)).collect();
        spike[4].1 = 80.0;
        assert_eq!(robust_slope(&spike), 0.0);
        assert!(slope(&spike) > 0.5);
        assert_eq!(robust_slope(&[(1.0, 5.0)]), 0.0);
    }
}
