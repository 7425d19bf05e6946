//! `causeway demo`: the main job on an embedded default (SPEC §7).
//!
//! It starts a Kafka-protocol broker in the process (librdkafka's mock cluster;
//! `--brokers` uses a real one), feeds the input topics with the demo's story
//! ([`crate::demo`]) as an OpenTelemetry Collector's kafka exporter would, in
//! compressed event time, and runs the real `causeway run` ([`super::run::run`])
//! and the real dispatcher ([`crate::alerting`]) on it. The dispatcher pages a
//! webhook receiver the demo hosts on loopback. While it runs, it shows the
//! outputs live (read from the output topics, as any consumer would) and serves
//! `/metrics`; at the end it reads the output topics back into JSONL files,
//! writes the Prometheus rules and the SLO report, and says where everything is.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_schemas::records::{AlertRecord, SliRecord, SloRecord};
use causeway_schemas::time::{format_rfc3339, now_ns, parse_rfc3339, NANOS_PER_SEC};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::run::{run, RunOptions};
use crate::alerting::{dispatch, DispatchOptions};
use crate::config::{parse_duration, Config};
use crate::demo::{Story, StoryConfig};
use crate::metrics::{self, Metrics};
use crate::sources::Topic;

/// `causeway demo`'s arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Event time the story covers.
    #[arg(long, default_value = "2h")]
    length: String,
    /// Event-time seconds fed per wall-clock second (0: as fast as Causeway reads).
    #[arg(long, default_value_t = 75.0)]
    speed: f64,
    /// Requests (traces) per second of event time.
    #[arg(long, default_value_t = 8.0)]
    rate: f64,
    /// First request, RFC 3339 (default: LENGTH before now, so no event lies in the future).
    #[arg(long)]
    start: Option<String>,
    /// Seed of the story.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// A Kafka cluster to use instead of the embedded broker (the demo creates its topics).
    #[arg(long)]
    brokers: Option<String>,
    /// Where `/metrics` is served.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_bind: String,
    /// Keep serving `/metrics` after the story ends, until Ctrl-C.
    #[arg(long)]
    keep_serving: bool,
    /// Also page this Alertmanager (base URL, e.g. http://127.0.0.1:9093).
    #[arg(long)]
    alertmanager_url: Option<String>,
    /// Worker threads.
    #[arg(short = 'w', long, default_value_t = 2)]
    workers: usize,
    /// Plain periodic lines instead of the live table (the default when stderr is not a terminal).
    #[arg(long)]
    plain: bool,
    /// Output directory.
    #[arg(long, default_value = "demo-out")]
    out: PathBuf,
}

/// Runs the demo.
pub fn main(args: Args) -> ExitCode {
    match demo(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::fail("demo", e),
    }
}

/// Partitions of the output topics.
const OUTPUT_PARTITIONS: i32 = 1;

fn demo(args: &Args) -> Result<(), String> {
    let length = parse_duration(&args.length).ok_or_else(|| {
        format!(
            "--length {:?} is not a duration like 2h or 80m",
            args.length
        )
    })?;
    if !(args.speed >= 0.0 && args.speed.is_finite()) {
        return Err(format!("--speed {} must be 0 or more", args.speed));
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err(format!("--rate {} must be more than 0", args.rate));
    }
    let start_ns = match &args.start {
        Some(s) => parse_rfc3339(s)
            .ok_or_else(|| format!("--start {s:?} is not RFC 3339, e.g. 2026-11-20T10:00:00Z"))?,
        None => (now_ns().saturating_sub(length) / (60 * NANOS_PER_SEC)) * 60 * NANOS_PER_SEC,
    };
    let story_cfg = StoryConfig {
        seed: args.seed,
        start_ns,
        duration: Duration::from_nanos(length),
        traces_per_second: args.rate,
        ..StoryConfig::default()
    };
    let out = &args.out;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;

    // The broker: embedded unless --brokers.
    let (mock, brokers) = match &args.brokers {
        Some(b) => (None, b.clone()),
        None => {
            let m = MockCluster::new(1)
                .map_err(|e| format!("cannot start the embedded Kafka broker: {e}"))?;
            let b = m.bootstrap_servers();
            (Some(m), b)
        }
    };

    // The webhook the dispatcher pages.
    let pages_path = out.join("pages.jsonl");
    let receiver = Receiver::start(&pages_path)?;

    let story = Story::new(story_cfg.clone());
    let config_path = out.join("causeway.toml");
    let config_text = format!(
        "{}\n[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"causeway-demo\"\ncommit_interval = \"1s\"\n\n\
         [metrics]\nbind = \"{}\"\n\n\
         [dispatch]\ngroup_id = \"causeway-demo-dispatch\"\nwebhook_url = \"{}\"\nmetrics_bind = \"\"\n{}",
        story.config_toml(),
        args.metrics_bind,
        receiver.url,
        args.alertmanager_url
            .as_ref()
            .map(|u| format!("alertmanager_url = \"{u}\"\n"))
            .unwrap_or_default(),
    );
    std::fs::write(&config_path, &config_text)
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    let config = Config::load(Some(&config_path)).map_err(|e| e.to_string())?;
    let wanted = topics(&config, story_cfg.partitions as i32);
    match &mock {
        Some(m) => {
            for (name, n) in &wanted {
                m.create_topic(name, *n, 1)
                    .map_err(|e| format!("cannot create topic {name}: {e}"))?;
            }
        }
        None => create_topics(&brokers, &wanted)?,
    }

    let registry = Arc::new(Metrics::new(&config.metrics));
    let server = metrics::serve(&args.metrics_bind, registry.clone(), None).map_err(|e| {
        format!(
            "cannot serve /metrics on {}: {e}; pass --metrics-bind 127.0.0.1:0 or another port",
            args.metrics_bind
        )
    })?;
    eprintln!(
        "causeway demo: {} of event time from {} at {}, broker {}, /metrics on http://{}/metrics",
        args.length,
        format_rfc3339(start_ns / NANOS_PER_SEC),
        if args.speed == 0.0 {
            "full speed".to_string()
        } else {
            format!("{}x", args.speed)
        },
        if args.brokers.is_some() {
            brokers.clone()
        } else {
            format!("embedded ({brokers})")
        },
        server.addr
    );

    // `causeway run` and `causeway dispatch`, as they run in production.
    let run_thread = {
        let opts = RunOptions {
            config: Some(config_path.clone()),
            threads: args.workers.max(1),
            drain: true,
            metrics: Some(registry.clone()),
            ..RunOptions::default()
        };
        std::thread::Builder::new()
            .name("causeway-demo-run".into())
            .spawn(move || run(&opts).map_err(|e| e.to_string()))
            .map_err(|e| format!("cannot start run: {e}"))?
    };
    let stop_dispatch = Arc::new(AtomicBool::new(false));
    let dispatch_thread = {
        let opts = DispatchOptions {
            config: Some(config_path.clone()),
            drain: false,
            stop: Some(stop_dispatch.clone()),
        };
        std::thread::Builder::new()
            .name("causeway-demo-dispatch".into())
            .spawn(move || dispatch(&opts).map_err(|e| e.to_string()))
            .map_err(|e| format!("cannot start dispatch: {e}"))?
    };

    let view = Arc::new(Mutex::new(View::new(&story)));
    let watcher = Watcher::start(&config, view.clone())?;
    let live = !args.plain && std::io::stderr().is_terminal();
    let fed = feed(&brokers, &config, story, args.speed, &view, live, &receiver)?;

    let run_result = run_thread.join().map_err(|_| "run panicked".to_string())?;
    let summary = run_result?;
    // Every alert on the topic is delivered before the dispatcher stops.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        watcher.poll_until_quiet();
        let due = view.lock().map(|v| v.deliverable).unwrap_or(0);
        if receiver.count() >= due || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_dispatch.store(true, Ordering::SeqCst);
    let dispatched = dispatch_thread
        .join()
        .map_err(|_| "dispatch panicked".to_string())??;
    if let Ok(v) = view.lock() {
        eprintln!("{}", v.render(&receiver, fed, false));
    }

    let files = write_outputs(&config, out)?;
    let rules = out.join("rules.yml");
    std::fs::write(&rules, super::rules::rules_yaml(&config))
        .map_err(|e| format!("cannot write {}: {e}", rules.display()))?;
    let report_dir = out.join("report");
    let report = crate::report::report(&crate::report::ReportOptions {
        config: config_path.clone(),
        input: Some(out.clone()),
        from_kafka: false,
        period: None,
        calendar: None,
        end: None,
        services: Vec::new(),
        slos: Vec::new(),
        out: report_dir.clone(),
    });

    eprintln!(
        "causeway demo: done; {} spans fed, {} records read ({} accepted, {} rejected), {} pages delivered",
        fed.spans,
        summary.stats.records,
        summary.stats.accepted_total(),
        summary.stats.rejected_total(),
        dispatched.delivered
    );
    eprintln!("  outputs (read back from the output topics):");
    for f in &files {
        eprintln!("    {}", f.display());
    }
    eprintln!("  pages the webhook received: {}", pages_path.display());
    eprintln!("  Prometheus rules:           {}", rules.display());
    match report {
        Ok(r) => {
            for f in &r.files {
                eprintln!("  SLO report:                 {}", f.display());
            }
        }
        Err(e) => eprintln!("  SLO report: not written ({e})"),
    }
    eprintln!("  config:                     {}", config_path.display());
    if args.keep_serving {
        eprintln!(
            "causeway demo: still serving http://{}/metrics; Ctrl-C to stop",
            server.addr
        );
        let stop = Arc::new(AtomicBool::new(false));
        crate::background::watch_signals("causeway demo", stop.clone());
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// The input and output topics with their partition counts.
fn topics(config: &Config, partitions: i32) -> Vec<(String, i32)> {
    let t = &config.kafka.topics;
    let mut wanted = vec![
        (t.spans.clone(), partitions),
        (t.logs.clone(), partitions),
        (t.deploys.clone(), 1),
        (t.audit.clone(), 1),
    ];
    for o in [
        &t.sli,
        &t.service_graph,
        &t.evidence,
        &t.slo,
        &t.alerts,
        &t.dlq,
        &t.checkpoints,
    ] {
        wanted.push((o.clone(), OUTPUT_PARTITIONS));
    }
    wanted
}

/// Creates the topics on a real cluster (an existing topic is kept).
fn create_topics(brokers: &str, wanted: &[(String, i32)]) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| format!("cannot reach Kafka at {brokers}: {e}"))?;
    let new: Vec<NewTopic> = wanted
        .iter()
        .map(|(name, n)| NewTopic::new(name, *n, TopicReplication::Fixed(1)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let results = runtime
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .map_err(|e| format!("cannot create topics on {brokers}: {e}"))?;
    for r in results {
        if let Err((topic, code)) = r {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(format!("cannot create topic {topic}: {code}"));
            }
        }
    }
    Ok(())
}

/// What the feeder did.
#[derive(Clone, Copy, Debug, Default)]
struct Fed {
    spans: u64,
    messages: u64,
    wall: Duration,
}

/// Produces the story's messages as its event time passes at `speed` times
/// the wall clock (0: as fast as the producer takes them), and refreshes the view.
fn feed(
    brokers: &str,
    config: &Config,
    mut story: Story,
    speed: f64,
    view: &Arc<Mutex<View>>,
    live: bool,
    receiver: &Receiver,
) -> Result<Fed, String> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("message.max.bytes", "10000000")
        .create()
        .map_err(|e| format!("cannot create a producer for {brokers}: {e}"))?;
    let t = &config.kafka.topics;
    let topic = |x: Topic| match x {
        Topic::Spans => t.spans.as_str(),
        Topic::Logs => t.logs.as_str(),
        Topic::Deploys => t.deploys.as_str(),
        Topic::Audit => t.audit.as_str(),
    };
    let start_ns = story.timeline().start_ns;
    let end_ns = story.end_ns();
    let began = Instant::now();
    let mut fed = Fed::default();
    let bar = live.then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        b
    });
    let mut last_view = Instant::now();
    let mut last_plain = Instant::now();
    let mut story_ns = start_ns;
    while story_ns < end_ns {
        story_ns = if speed == 0.0 {
            story_ns + 10 * NANOS_PER_SEC
        } else {
            let elapsed = began.elapsed().as_secs_f64() * speed;
            (start_ns + (elapsed * 1e9) as u64).max(story_ns)
        }
        .min(end_ns);
        for m in story.advance(story_ns) {
            m.produce(&producer, topic(m.topic))
                .map_err(|e| format!("cannot produce to {}: {e}", topic(m.topic)))?;
            fed.messages += 1;
        }
        fed.spans = story.counts().spans;
        if let Ok(mut v) = view.lock() {
            v.story_ns = story_ns;
        }
        if last_view.elapsed() >= Duration::from_millis(250) {
            last_view = Instant::now();
            fed.wall = began.elapsed();
            if let Ok(v) = view.lock() {
                if let Some(b) = &bar {
                    b.set_message(v.render(receiver, fed, true));
                    b.tick();
                } else if last_plain.elapsed() >= Duration::from_secs(10) {
                    last_plain = Instant::now();
                    eprintln!("{}", v.render_line(receiver, fed));
                }
            }
        }
        if speed > 0.0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("cannot flush the input: {e}"))?;
    fed.wall = began.elapsed();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(fed)
}

/// Version → (good, total).
type ByVersion = BTreeMap<String, (u64, u64)>;

/// What the live view shows, kept up to date from the output topics.
struct View {
    start_ns: u64,
    story_ns: u64,
    culprit: String,
    /// Newest final window end (Unix seconds).
    window_end: u64,
    /// service → its newest window's end and, per version, (good, total) of
    /// availability in it.
    availability: BTreeMap<String, (u64, ByVersion)>,
    /// service → its newest window's end and (good, total) of context loss (M4).
    context: BTreeMap<String, (u64, (u64, u64))>,
    /// service → PII records (M9 bad) since the start.
    pii: BTreeMap<String, u64>,
    /// (slo, service) → the newest burn rates.
    burn: BTreeMap<(String, String), SloRecord>,
    /// dedup key → the newest alert record.
    alerts: BTreeMap<String, AlertRecord>,
    /// Alert records the dispatcher should deliver (not suppressed).
    deliverable: usize,
    /// Dead letters by reason.
    dlq: BTreeMap<String, u64>,
}

impl View {
    fn new(story: &Story) -> Self {
        let t = story.timeline();
        View {
            start_ns: t.start_ns,
            story_ns: t.start_ns,
            culprit: t.culprit.clone(),
            window_end: 0,
            availability: BTreeMap::new(),
            context: BTreeMap::new(),
            pii: BTreeMap::new(),
            burn: BTreeMap::new(),
            alerts: BTreeMap::new(),
            deliverable: 0,
            dlq: BTreeMap::new(),
        }
    }

    fn sli(&mut self, r: SliRecord) {
        self.window_end = self.window_end.max(r.window_end);
        let counts = (r.good.unwrap_or(0), r.total.unwrap_or(0));
        match r.sli.as_str() {
            "availability" => {
                let e = self.availability.entry(r.service).or_default();
                if r.window_end > e.0 {
                    *e = (r.window_end, BTreeMap::new());
                }
                if r.window_end == e.0 {
                    let v = e.1.entry(r.version).or_default();
                    v.0 += counts.0;
                    v.1 += counts.1;
                }
            }
            "context_loss" => {
                let e = self.context.entry(r.service).or_default();
                if r.window_end > e.0 {
                    *e = (r.window_end, (0, 0));
                }
                if r.window_end == e.0 {
                    e.1 .0 += counts.0;
                    e.1 .1 += counts.1;
                }
            }
            "sensitive_exposure" => {
                *self.pii.entry(r.service).or_default() += counts.1 - counts.0;
            }
            _ => {}
        }
    }

    /// The live table.
    fn render(&self, receiver: &Receiver, fed: Fed, live: bool) -> String {
        use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
        let mut out = String::new();
        let lag =
            self.story_ns / NANOS_PER_SEC - self.window_end.min(self.story_ns / NANOS_PER_SEC);
        out.push_str(&format!(
            "causeway demo  event time {} (+{} min)  last final window {}  ({}s behind)  {:.0} spans/s fed\n",
            format_rfc3339(self.story_ns / NANOS_PER_SEC),
            (self.story_ns - self.start_ns) / NANOS_PER_SEC / 60,
            if self.window_end == 0 {
                "-".to_string()
            } else {
                format_rfc3339(self.window_end)
            },
            lag,
            fed.spans as f64 / fed.wall.as_secs_f64().max(1e-3),
        ));
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY);
        t.set_header(vec![
            "service",
            "version",
            "requests",
            "availability",
            "context loss",
            "PII",
            "burn 5m",
            "burn 1h",
        ]);
        // Each service's newest window, worst availability first.
        let mut rows: Vec<(&String, &String, u64, u64)> = self
            .availability
            .iter()
            .flat_map(|(s, (_, versions))| versions.iter().map(move |(v, (g, n))| (s, v, *g, *n)))
            .collect();
        // Worst first: the lower of availability and kept context.
        let kept = |s: &String| {
            self.context
                .get(s)
                .map_or(1.0, |(_, (g, n))| *g as f64 / (*n).max(1) as f64)
        };
        let score =
            |x: &(&String, &String, u64, u64)| (x.2 as f64 / x.3.max(1) as f64).min(kept(x.0));
        rows.sort_by(|a, b| {
            score(a)
                .total_cmp(&score(b))
                .then_with(|| (a.0, a.1).cmp(&(b.0, b.1)))
        });
        for (s, v, g, n) in rows.into_iter().take(if live { 12 } else { 40 }) {
            let ctx = self
                .context
                .get(s)
                .map(|(_, (g, n))| format!("{:.1}%", 100.0 * (n - g) as f64 / (*n).max(1) as f64))
                .unwrap_or_default();
            let burn = self
                .burn
                .iter()
                .find(|((_, svc), _)| svc == s)
                .map(|(_, r)| r);
            let rate = |w: &str| {
                burn.and_then(|r| r.burn_rates.iter().find(|b| b.window == w))
                    .map(|b| format!("{:.1}", b.burn_rate))
                    .unwrap_or_default()
            };
            t.add_row(vec![
                s.clone(),
                v.clone(),
                n.to_string(),
                format!("{:.2}%", 100.0 * g as f64 / n.max(1) as f64),
                ctx,
                self.pii.get(s).map(u64::to_string).unwrap_or_default(),
                rate("5m"),
                rate("1h"),
            ]);
        }
        out.push_str(&t.to_string());
        out.push('\n');
        for a in self.alerts.values() {
            let change = a
                .suspected_changes
                .first()
                .map(|c| {
                    format!(
                        "suspected deploy {} {} {} by {}",
                        c.service, c.action, c.version, c.actor
                    )
                })
                .unwrap_or_else(|| "no suspected deploy".into());
            out.push_str(&format!(
                "ALERT {:8} {:6} {} culprit {} ({}); {}\n",
                a.status,
                a.labels.get("severity").map(String::as_str).unwrap_or(""),
                a.labels.get("service").map(String::as_str).unwrap_or(""),
                if a.culprit.is_empty() {
                    "-"
                } else {
                    &a.culprit
                },
                if a.culprit == self.culprit {
                    "the bad deploy's service"
                } else {
                    "other"
                },
                change
            ));
        }
        out.push_str(&format!(
            "pages delivered to the webhook: {}   dead letters: {}",
            receiver.count(),
            if self.dlq.is_empty() {
                "none".to_string()
            } else {
                self.dlq
                    .iter()
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
        out
    }

    /// One line for a log.
    fn render_line(&self, receiver: &Receiver, fed: Fed) -> String {
        let firing: Vec<String> = self
            .alerts
            .values()
            .filter(|a| a.status == "firing")
            .map(|a| {
                format!(
                    "{}/{}",
                    a.labels.get("service").map(String::as_str).unwrap_or(""),
                    a.labels.get("severity").map(String::as_str).unwrap_or("")
                )
            })
            .collect();
        let worst = self
            .availability
            .iter()
            .flat_map(|(s, (_, versions))| versions.iter().map(move |(v, c)| (s, v, *c)))
            .min_by(|a, b| {
                let r = |(g, n): (u64, u64)| g as f64 / n.max(1) as f64;
                r(a.2).total_cmp(&r(b.2))
            })
            .map(|(s, v, (g, n))| format!("{s} {v} {:.2}%", 100.0 * g as f64 / n.max(1) as f64))
            .unwrap_or_else(|| "-".into());
        format!(
            "causeway demo: event time +{} min, last window {}, {} spans fed, worst availability {worst}, firing [{}], pages {}, dead letters {}",
            (self.story_ns - self.start_ns) / NANOS_PER_SEC / 60,
            if self.window_end == 0 { "-".into() } else { format_rfc3339(self.window_end) },
            fed.spans,
            firing.join(" "),
            receiver.count(),
            self.dlq.values().sum::<u64>()
        )
    }
}

/// Reads the output topics (SLI, SLO, alerts, DLQ) into the view, on a thread.
struct Watcher {
    consumer: Arc<Mutex<BaseConsumer>>,
    view: Arc<Mutex<View>>,
    topics: [String; 4],
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(config: &Config, view: Arc<Mutex<View>>) -> Result<Self, String> {
        let k = &config.kafka;
        let consumer: BaseConsumer = crate::kafka::client_config(k)
            .set("group.id", "causeway-demo-view")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "50")
            .create()
            .map_err(|e| format!("cannot create the view's consumer: {e}"))?;
        let t = &k.topics;
        let topics = [
            t.sli.clone(),
            t.slo.clone(),
            t.alerts.clone(),
            t.dlq.clone(),
        ];
        let mut tpl = TopicPartitionList::new();
        for topic in &topics {
            let partitions =
                crate::kafka::topic_partitions(&consumer, k, topic).map_err(|e| e.to_string())?;
            for p in partitions {
                tpl.add_partition_offset(topic, p, Offset::Beginning)
                    .map_err(|e| e.to_string())?;
            }
        }
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        let mut w = Watcher {
            consumer: Arc::new(Mutex::new(consumer)),
            view,
            topics,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        let (c, v, tp, stop) = (
            w.consumer.clone(),
            w.view.clone(),
            w.topics.clone(),
            w.stop.clone(),
        );
        w.thread = Some(
            std::thread::Builder::new()
                .name("causeway-demo-view".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        Self::poll(&c, &v, &tp, Duration::from_millis(100));
                    }
                })
                .map_err(|e| e.to_string())?,
        );
        Ok(w)
    }

    /// Applies what arrives within `wait`; false when nothing did.
    fn poll(
        consumer: &Mutex<BaseConsumer>,
        view: &Mutex<View>,
        topics: &[String; 4],
        wait: Duration,
    ) -> bool {
        let Ok(c) = consumer.lock() else {
            return false;
        };
        let Some(Ok(m)) = c.poll(wait) else {
            return false;
        };
        let Some(payload) = m.payload() else {
            return true; // a fence record
        };
        let Ok(mut v) = view.lock() else {
            return false;
        };
        if m.topic() == topics[0] {
            if let Ok(r) = serde_json::from_slice::<SliRecord>(payload) {
                v.sli(r);
            }
        } else if m.topic() == topics[1] {
            if let Ok(r) = serde_json::from_slice::<SloRecord>(payload) {
                v.burn.insert((r.slo.clone(), r.service.clone()), r);
            }
        } else if m.topic() == topics[2] {
            if let Ok(a) = serde_json::from_slice::<AlertRecord>(payload) {
                if !a.suppressed {
                    v.deliverable += 1;
                }
                v.alerts.insert(a.dedup_key.clone(), a);
            }
        } else if m.topic() == topics[3] {
            let reason = m
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "causeway.reason")
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
                .unwrap_or_else(|| "unknown".into());
            *v.dlq.entry(reason).or_default() += 1;
        }
        true
    }

    /// Reads until nothing arrives for half a second.
    fn poll_until_quiet(&self) {
        let mut quiet = Instant::now();
        while quiet.elapsed() < Duration::from_millis(500) {
            if Self::poll(
                &self.consumer,
                &self.view,
                &self.topics,
                Duration::from_millis(50),
            ) {
                quiet = Instant::now();
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads the output topics back into `OUT/<name>.jsonl`, the files `replay` writes.
fn write_outputs(config: &Config, out: &Path) -> Result<Vec<PathBuf>, String> {
    let t = &config.kafka.topics;
    let files = [
        (&t.sli, "sli.jsonl"),
        (&t.service_graph, "service_graph.jsonl"),
        (&t.evidence, "evidence.jsonl"),
        (&t.slo, "slo.jsonl"),
        (&t.alerts, "alerts.jsonl"),
        (&t.dlq, "dlq.jsonl"),
    ];
    let topics: Vec<&str> = files.iter().map(|(t, _)| t.as_str()).collect();
    let stored = crate::kafka::read_fenced(&config.kafka, &topics).map_err(|e| e.to_string())?;
    let mut written = Vec::new();
    for (topic, name) in files {
        let path = out.join(name);
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        );
        for s in stored.iter().filter(|s| &s.topic == topic) {
            if topic == &t.dlq {
                // Dead letters hold the original bytes: write what and why, not them.
                let line = serde_json::json!({
                    "key": s.key,
                    "bytes": s.value.len(),
                });
                writeln!(f, "{line}").map_err(|e| e.to_string())?;
            } else {
                f.write_all(&s.value).map_err(|e| e.to_string())?;
                f.write_all(b"\n").map_err(|e| e.to_string())?;
            }
        }
        f.flush().map_err(|e| e.to_string())?;
        written.push(path);
    }
    Ok(written)
}

/// The webhook receiver the dispatcher pages: an HTTP server on loopback that
/// appends every JSON body it gets to a file.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
    _thread: std::thread::JoinHandle<()>,
}

impl Receiver {
    fn start(path: &Path) -> Result<Self, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot listen on loopback for the webhook: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let file = std::fs::File::create(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let file = Arc::new(Mutex::new(file));
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = (received.clone(), file);
        let thread = crate::background::spawn("causeway-demo-webhook", move || async move {
            use axum::routing::post;
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let app = axum::Router::new()
                .route("/pages", post(receive))
                .with_state(state);
            let _ = axum::serve(listener, app).await;
        })
        .map_err(|e| e.to_string())?;
        Ok(Receiver {
            url: format!("http://{addr}/pages"),
            received,
            _thread: thread,
        })
    }

    fn count(&self) -> usize {
        self.received.lock().map(|r| r.len()).unwrap_or(0)
    }
}

type ReceiverState = (
    Arc<Mutex<Vec<serde_json::Value>>>,
    Arc<Mutex<std::fs::File>>,
);

async fn receive(
    axum::extract::State((received, file)): axum::extract::State<ReceiverState>,
    axum::Json(body): axum::Json<serde_json::Value>,
) -> &'static str {
    if let Ok(mut f) = file.lock() {
        let _ = writeln!(f, "{body}");
    }
    if let Ok(mut r) = received.lock() {
        r.push(body);
    }
    "ok"
}
