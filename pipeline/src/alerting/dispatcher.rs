//! The dispatcher loop: each channel consumes `causeway_alerts` in a consumer
//! group of its own (`<dispatch.group_id>-<channel>`) on a thread of its own, so
//! a channel that is down holds back only itself. Delivery is at least once: a
//! channel commits a record's offset only after it accepted the record.
//! Transport errors, 5xx, 408 and 429 are retried with exponential backoff; any
//! other 4xx is a permanent rejection, logged and skipped. At start a channel
//! reads the topic from the beginning: records before its committed offsets only
//! rebuild the set of firing alerts (for re-sends); the rest are delivered.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_schemas::records::AlertRecord;
use causeway_schemas::time::{now_ns, NANOS_PER_SEC};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{channels, duration, Channel, Request};
use crate::config::{Config, ConfigError};
use crate::kafka::{client_config, topic_partitions, Health, KafkaSetupError, REQUEST_TIMEOUT};
use crate::metrics::Metrics;

/// Why the dispatcher could not run.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No channel is configured.
    #[error("no channel configured: set dispatch.alertmanager_url, dispatch.webhook_url or a PagerDuty routing key (dispatch.pagerduty_routing_key_env / _file)")]
    NoChannel,
    /// A secret (routing key, token) could not be read.
    #[error("cannot read a secret: {0}")]
    Secret(#[from] crate::secret::SecretError),
    /// Kafka setup failed.
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    /// A channel's thread could not start or panicked.
    #[error("{0}")]
    Thread(String),
    /// The metrics endpoint could not start.
    #[error("{0}")]
    Metrics(String),
}

/// Options of `causeway dispatch`.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    /// Config file.
    pub config: Option<PathBuf>,
    /// Exit once the topic has been read to its end and stayed quiet for
    /// `time.idle_timeout` (for backfills and tests).
    pub drain: bool,
    /// Stop when this is set (besides SIGTERM/SIGINT): for a dispatcher run
    /// inside another command (`causeway demo`).
    pub stop: Option<Arc<AtomicBool>>,
}

/// What a dispatcher did.
#[derive(Debug, Default, Clone)]
pub struct DispatchSummary {
    /// Records delivered, summed over channels.
    pub delivered: u64,
    /// Records that were suppressed.
    pub suppressed: u64,
    /// Records that were not alert records.
    pub malformed: u64,
    /// Deliveries a channel rejected for good (4xx).
    pub rejected: u64,
    /// Retries after transient failures.
    pub retries: u64,
}

/// The outcome of one HTTP attempt.
enum Attempt {
    Ok,
    Retry(String),
    Reject(String),
}

fn post(agent: &ureq::Agent, r: &Request) -> Attempt {
    let mut req = agent.post(&r.url).set("Content-Type", "application/json");
    if let Some(t) = &r.bearer {
        req = req.set("Authorization", &format!("Bearer {}", t.expose()));
    }
    match req.send_string(&r.body.to_string()) {
        Ok(_) => Attempt::Ok,
        Err(ureq::Error::Status(code, resp)) => {
            let text = masked(&resp.into_string().unwrap_or_default(), r);
            let text: String = text.chars().take(300).collect();
            if code >= 500 || code == 408 || code == 429 {
                Attempt::Retry(format!("HTTP {code}: {text}"))
            } else {
                Attempt::Reject(format!("HTTP {code}: {text}"))
            }
        }
        Err(ureq::Error::Transport(t)) => Attempt::Retry(format!("{}", t.kind())),
    }
}

/// `text` (a response body) with the request's secrets replaced by `<redacted>`.
fn masked(text: &str, r: &Request) -> String {
    let mut text = text.to_string();
    for s in r.bearer.iter().chain(&r.body_secret) {
        text = text.replace(s.expose(), "<redacted>");
    }
    text
}

/// One channel's delivery loop.
struct Dispatcher {
    channel: Box<dyn Channel>,
    metrics: Arc<Metrics>,
    agent: ureq::Agent,
    backoff: (Duration, Duration),
    resend: Duration,
    stop: Arc<AtomicBool>,
    summary: DispatchSummary,
}

impl Dispatcher {
    /// Sends `r` until it is accepted, rejected for good, or the dispatcher is
    /// stopping. False only when stopping.
    fn send(&mut self, r: &Request, what: &str) -> bool {
        let name = self.channel.name();
        let mut delay = self.backoff.0;
        let count = |outcome: &str| {
            self.metrics
                .dispatch_attempts
                .with_label_values(&[name, outcome])
                .inc()
        };
        loop {
            match post(&self.agent, r) {
                Attempt::Ok => {
                    count("ok");
                    return true;
                }
                Attempt::Reject(why) => {
                    count("rejected");
                    eprintln!(
                        "causeway dispatch: {name} rejected {what} for good ({why}); skipping it"
                    );
                    self.summary.rejected += 1;
                    return true;
                }
                Attempt::Retry(why) => {
                    count("retry");
                    eprintln!(
                        "causeway dispatch: {name} failed for {what} ({why}); retrying in {delay:?}"
                    );
                    self.summary.retries += 1;
                    let until = Instant::now() + delay;
                    while Instant::now() < until {
                        if self.stop.load(Ordering::SeqCst) {
                            return false;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    delay = (delay * 2).min(self.backoff.1);
                }
            }
        }
    }

    /// Delivers one alert record. False when stopping.
    fn deliver(&mut self, a: &AlertRecord) -> bool {
        let r = self.channel.request(a, now_ns() / NANOS_PER_SEC);
        self.send(&r, &format!("{} alert {}", a.status, a.dedup_key))
    }

    /// Re-sends every firing alert, for a channel that needs it. False when
    /// stopping.
    fn resend_firing(&mut self, firing: &BTreeMap<String, AlertRecord>) -> bool {
        match self.channel.resend(firing, now_ns() / NANOS_PER_SEC) {
            Some(r) => self.send(&r, "re-send of the firing alerts"),
            None => true,
        }
    }
}

/// Runs the dispatcher until SIGTERM/SIGINT (or, with `drain`, until caught up).
/// Each channel has its own consumer group (`<group_id>-<channel>`) and thread,
/// so a channel that is down holds back only itself.
pub fn dispatch(opts: &DispatchOptions) -> Result<DispatchSummary, DispatchError> {
    let mut config = Config::load(opts.config.as_deref())?;
    let settings = config.settings()?;
    config.kafka.read_secrets(&crate::secret::process_env)?;
    let d = &config.dispatch;
    let channels = channels(d)?;
    let token = config.metrics.bearer_token()?;
    let stop = opts
        .stop
        .clone()
        .unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
    crate::background::watch_signals("causeway dispatch", stop.clone());
    let metrics = Arc::new(Metrics::new(&config.metrics));
    let _server = match d.metrics_bind.as_str() {
        "" => None,
        bind => Some(
            crate::metrics::serve(bind, metrics.clone(), token).map_err(|e| {
                DispatchError::Metrics(format!(
                    "cannot serve /metrics on {bind}: {e}; change dispatch.metrics_bind"
                ))
            })?,
        ),
    };
    eprintln!(
        "causeway dispatch: delivering {} to {}",
        config.kafka.topics.alerts,
        channels
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let idle = Duration::from_nanos(settings.idle_timeout_ns);
    let threads: Vec<_> = channels
        .into_iter()
        .map(|channel| {
            let name = channel.name();
            let dispatcher = Dispatcher {
                channel,
                metrics: metrics.clone(),
                agent: ureq::AgentBuilder::new()
                    .timeout(duration(&d.request_timeout))
                    .build(),
                backoff: (duration(&d.initial_backoff), duration(&d.max_backoff)),
                resend: duration(&d.resend_interval),
                stop: stop.clone(),
                summary: DispatchSummary::default(),
            };
            let kafka = config.kafka.clone();
            let group = format!("{}-{name}", d.group_id);
            let drain = opts.drain.then_some(idle);
            std::thread::Builder::new()
                .name(format!("causeway-dispatch-{name}"))
                .spawn(move || run_channel(dispatcher, &kafka, &group, drain))
                .map_err(|e| DispatchError::Thread(format!("cannot start a thread: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let mut summary = DispatchSummary::default();
    let mut first_error = None;
    for t in threads {
        match t.join() {
            Ok(Ok(s)) => summary.add(&s),
            Ok(Err(e)) => {
                // One channel cannot run: stop the others too, and say why.
                stop.store(true, Ordering::SeqCst);
                first_error.get_or_insert(e);
            }
            Err(_) => {
                stop.store(true, Ordering::SeqCst);
                first_error
                    .get_or_insert(DispatchError::Thread("a channel thread panicked".into()));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

impl DispatchSummary {
    fn add(&mut self, o: &DispatchSummary) {
        self.delivered += o.delivered;
        self.suppressed += o.suppressed;
        self.malformed += o.malformed;
        self.rejected += o.rejected;
        self.retries += o.retries;
    }
}

/// One channel's loop: consume the alerts topic in consumer group `group`,
/// deliver, commit. With `drain`, return once quiet for that long.
fn run_channel(
    mut dispatcher: Dispatcher,
    k: &crate::config::KafkaConfig,
    group: &str,
    drain: Option<Duration>,
) -> Result<DispatchSummary, DispatchError> {
    let topic = k.topics.alerts.clone();
    let channel = dispatcher.channel.name();
    let op = |what| move |source| KafkaSetupError::Op { what, source };
    let consumer: BaseConsumer<Health> = client_config(k)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create_with_context(Health::default())
        .map_err(KafkaSetupError::Client)?;
    let partitions = topic_partitions(&consumer, k, &topic)?;
    if partitions.is_empty() {
        return Err(KafkaSetupError::MissingTopic {
            topic,
            key: "alerts",
        }
        .into());
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition(&topic, *p);
    }
    let committed = consumer
        .committed_offsets(tpl.clone(), REQUEST_TIMEOUT)
        .map_err(op("reading committed offsets"))?;
    let resume: BTreeMap<i32, i64> = committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect();
    for p in &partitions {
        tpl.set_partition_offset(&topic, *p, Offset::Beginning)
            .map_err(op("seeking"))?;
    }
    consumer.assign(&tpl).map_err(op("assigning partitions"))?;

    let metrics = dispatcher.metrics.clone();
    let stop = dispatcher.stop.clone();
    let records = |outcome: &str| {
        metrics
            .dispatch_records
            .with_label_values(&[channel, outcome])
            .inc()
    };
    let mut firing: BTreeMap<String, AlertRecord> = BTreeMap::new();
    let mut last_message = Instant::now();
    let mut last_resend = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if last_resend.elapsed() >= dispatcher.resend {
            last_resend = Instant::now();
            if !dispatcher.resend_firing(&firing) {
                break;
            }
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            if drain.is_some_and(|idle| last_message.elapsed() >= idle) {
                break;
            }
            continue;
        };
        last_message = Instant::now();
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                eprintln!("causeway dispatch: {channel}: kafka: {e}");
                continue;
            }
        };
        let (partition, offset) = (m.partition(), m.offset());
        let replaying = resume.get(&partition).is_some_and(|r| offset < *r);
        let Some(payload) = m.payload() else {
            continue; // a fence record
        };
        match serde_json::from_slice::<AlertRecord>(payload) {
            Ok(a) => {
                if !replaying {
                    if a.suppressed {
                        dispatcher.summary.suppressed += 1;
                        records("suppressed");
                    } else if dispatcher.deliver(&a) {
                        dispatcher.summary.delivered += 1;
                        records("delivered");
                    } else {
                        break; // stopping: this record stays uncommitted
                    }
                }
                if a.status == "firing" && !a.suppressed {
                    firing.insert(a.dedup_key.clone(), a);
                } else {
                    firing.remove(&a.dedup_key);
                }
                if dispatcher.channel.resends_firing() {
                    metrics
                        .dispatch_firing
                        .with_label_values(&[channel])
                        .set(firing.len() as i64);
                }
            }
            Err(e) => {
                if !replaying {
                    eprintln!(
                        "causeway dispatch: {topic}/{partition}/{offset} is not an alert record ({e}); skipping it"
                    );
                    dispatcher.summary.malformed += 1;
                    records("malformed");
                }
            }
        }
        if !replaying {
            let mut done = TopicPartitionList::new();
            if let Err(e) = done
                .add_partition_offset(&topic, partition, Offset::Offset(offset + 1))
                .and_then(|_| consumer.commit(&done, CommitMode::Sync))
            {
                eprintln!("causeway dispatch: {channel}: committing {topic}/{partition}: {e}");
            }
        }
    }
    Ok(dispatcher.summary)
}
