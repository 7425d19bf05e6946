//! `causeway dispatch`: consumes `causeway_alerts` and pages (SPEC §5).
//!
//! Channels, each optional:
//! - **Alertmanager** API v2: `POST /api/v2/alerts` with the alert's labels and
//!   its evidence as annotations. Firing alerts are re-sent every
//!   `resend_interval` with `endsAt` four intervals ahead, as Prometheus does, so
//!   Alertmanager keeps them active while Causeway is up; a resolved alert is
//!   sent with its `ends_at`.
//! - **PagerDuty** Events API v2: `trigger` / `resolve` with the alert's
//!   `dedup_key`; `critical` for page, `warning` for ticket.
//! - **Webhook**: the Alertmanager webhook JSON (version 4), one alert per request.
//!
//! Each channel consumes the topic in a consumer group of its own
//! (`<dispatch.group_id>-<channel>`) on a thread of its own, so a channel that is
//! down holds back only itself: PagerDuty still pages while Alertmanager is away.
//! Delivery is at least once: a channel commits a record's offset only after it
//! accepted the record. Transport errors, 5xx, 408 and 429 are retried with
//! exponential backoff (doubling from `initial_backoff` up to `max_backoff`)
//! until they succeed or the process is asked to stop; any other 4xx is a
//! permanent rejection, logged with the response body and skipped (retrying
//! cannot fix it). Suppressed alerts (maintenance) are recorded on the topic and
//! not paged. Routing keys and tokens are read from the environment or a file and
//! never printed.
//!
//! `/metrics` (on `dispatch.metrics_bind`) counts attempts per channel and
//! outcome, records per outcome, and the firing alerts being re-sent.
//!
//! At start the dispatcher reads the topic from the beginning: records before the
//! committed offsets only rebuild the set of firing alerts (for re-sends); the
//! rest are delivered.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_schemas::records::AlertRecord;
use causeway_schemas::time::{format_rfc3339, now_ns, NANOS_PER_SEC};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::config::{parse_duration, Config, ConfigError, DispatchConfig};
use crate::metrics::Metrics;
use crate::sources::kafka::{
    client_config, topic_partitions, Health, KafkaSetupError, REQUEST_TIMEOUT,
};

/// Why the dispatcher could not run.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Bad config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No channel is configured.
    #[error("no channel configured: set dispatch.alertmanager_url, dispatch.webhook_url or a PagerDuty routing key (dispatch.pagerduty_routing_key_env / _file)")]
    NoChannel,
    /// A secret could not be read.
    #[error("cannot read the PagerDuty routing key: {0}")]
    Secret(String),
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

/// A configured channel.
#[derive(Clone)]
enum Channel {
    Alertmanager(String),
    PagerDuty { url: String, routing_key: Secret },
    Webhook { url: String, token: Option<Secret> },
}

impl Channel {
    fn name(&self) -> &'static str {
        match self {
            Channel::Alertmanager(_) => "alertmanager",
            Channel::PagerDuty { .. } => "pagerduty",
            Channel::Webhook { .. } => "webhook",
        }
    }
}

/// A secret value whose `Debug` never shows it.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn channels(d: &DispatchConfig) -> Result<Vec<Channel>, DispatchError> {
    let mut out = Vec::new();
    if let Some(u) = &d.alertmanager_url {
        out.push(Channel::Alertmanager(format!(
            "{}/api/v2/alerts",
            u.trim_end_matches('/')
        )));
    }
    let key = match (&d.pagerduty_routing_key_env, &d.pagerduty_routing_key_file) {
        (Some(var), _) => Some(std::env::var(var).map_err(|_| {
            DispatchError::Secret(format!(
                "environment variable {var} (dispatch.pagerduty_routing_key_env) is not set"
            ))
        })?),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| {
                    DispatchError::Secret(format!(
                        "{path} (dispatch.pagerduty_routing_key_file): {e}"
                    ))
                })?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    if let Some(k) = key {
        if k.is_empty() {
            return Err(DispatchError::Secret("it is empty".into()));
        }
        out.push(Channel::PagerDuty {
            url: d.pagerduty_url.clone(),
            routing_key: Secret(k),
        });
    }
    if let Some(u) = &d.webhook_url {
        let token = match &d.webhook_token_env {
            Some(var) => Some(Secret(std::env::var(var).map_err(|_| {
                DispatchError::Secret(format!(
                    "environment variable {var} (dispatch.webhook_token_env) is not set"
                ))
            })?)),
            None => None,
        };
        out.push(Channel::Webhook {
            url: u.clone(),
            token,
        });
    }
    if out.is_empty() {
        return Err(DispatchError::NoChannel);
    }
    Ok(out)
}

/// Alertmanager API v2 alert: labels (empty values left out, as Alertmanager
/// drops them) and the evidence as annotations.
pub fn alertmanager_alert(a: &AlertRecord, now_s: u64, resend: Duration) -> Value {
    let labels: BTreeMap<&str, &str> = a
        .labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let ends_at = match &a.ends_at {
        Some(e) => e.clone(),
        None => format_rfc3339(now_s + 4 * resend.as_secs().max(1)),
    };
    json!({
        "labels": labels,
        "annotations": annotations(a),
        "startsAt": a.starts_at,
        "endsAt": ends_at,
        "generatorURL": a.runbook_url.clone().unwrap_or_default(),
    })
}

/// The evidence of an alert as flat strings (Alertmanager annotations).
pub fn annotations(a: &AlertRecord) -> BTreeMap<&'static str, String> {
    let burn: Vec<String> = a
        .burn_rates
        .iter()
        .map(|b| format!("{}={:.2}", b.window, b.burn_rate))
        .collect();
    let changes: Vec<String> = a
        .suspected_changes
        .iter()
        .map(|c| {
            let actor = if c.actor.is_empty() {
                String::new()
            } else {
                format!(" by {}", c.actor)
            };
            format!(
                "{} {} {} ({}){} at {}",
                c.service,
                c.action,
                c.version,
                c.artifact,
                actor,
                format_rfc3339(c.time_unix_nano / NANOS_PER_SEC)
            )
        })
        .collect();
    let mut m = BTreeMap::from([
        ("summary", a.summary.clone()),
        (
            "description",
            format!(
                "SLO {} ({} objective {}) burn rates {}; error budget remaining {:.3}",
                a.label("slo"),
                a.sli,
                a.objective,
                burn.join(" "),
                a.error_budget_remaining
            ),
        ),
        ("exemplar_trace_ids", a.exemplar_trace_ids.join(",")),
        ("suspected_changes", changes.join("; ")),
        ("culprit", a.culprit.clone()),
        ("group_key", a.group_key.clone()),
        ("dedup_key", a.dedup_key.clone()),
        ("burn_rates", burn.join(" ")),
        (
            "error_budget_remaining",
            format!("{:.4}", a.error_budget_remaining),
        ),
    ]);
    if let Some(r) = &a.runbook_url {
        m.insert("runbook_url", r.clone());
    }
    m
}

/// PagerDuty Events API v2 event.
fn pagerduty_event(a: &AlertRecord, routing_key: &str) -> Value {
    if a.status == "resolved" {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": a.dedup_key,
        });
    }
    let mut summary = a.summary.clone();
    if summary.len() > 1024 {
        let mut cut = 1021;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.truncate(cut);
        summary.push_str("...");
    }
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": a.dedup_key,
        "payload": {
            "summary": summary,
            "source": a.label("service"),
            "severity": if a.label("severity") == "page" { "critical" } else { "warning" },
            "timestamp": a.starts_at,
            "component": a.culprit,
            "group": a.group_key,
            "class": a.sli,
            "custom_details": {
                "slo": a.label("slo"),
                "environment": a.label("environment"),
                "objective": a.objective,
                "burn_rates": a.burn_rates,
                "error_budget_remaining": a.error_budget_remaining,
                "exemplar_trace_ids": a.exemplar_trace_ids,
                "suspected_changes": a.suspected_changes,
                "culprit": a.culprit,
            },
        },
    });
    if let Some(r) = &a.runbook_url {
        event["links"] = json!([{ "href": r, "text": "Runbook" }]);
    }
    event
}

/// The Alertmanager webhook payload (version 4) for one alert.
fn webhook_payload(a: &AlertRecord) -> Value {
    let labels: BTreeMap<&str, &str> = a
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let annotations = annotations(a);
    json!({
        "version": "4",
        "groupKey": a.group_key,
        "truncatedAlerts": 0,
        "status": a.status,
        "receiver": "causeway",
        "groupLabels": { "alertname": a.label("alertname") },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": a.status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": a.starts_at,
            "endsAt": a.ends_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "generatorURL": a.runbook_url.clone().unwrap_or_default(),
            "fingerprint": a.dedup_key,
        }],
    })
}

/// The outcome of one HTTP attempt.
enum Attempt {
    Ok,
    Retry(String),
    Reject(String),
}

fn post(agent: &ureq::Agent, url: &str, body: &Value, bearer: Option<&Secret>) -> Attempt {
    let mut req = agent.post(url).set("Content-Type", "application/json");
    if let Some(t) = bearer {
        req = req.set("Authorization", &format!("Bearer {}", t.0));
    }
    match req.send_string(&body.to_string()) {
        Ok(_) => Attempt::Ok,
        Err(ureq::Error::Status(code, resp)) => {
            let text = resp.into_string().unwrap_or_default();
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

/// One channel's delivery loop.
struct Dispatcher {
    channel: Channel,
    metrics: Arc<Metrics>,
    agent: ureq::Agent,
    backoff: (Duration, Duration),
    resend: Duration,
    stop: Arc<AtomicBool>,
    summary: DispatchSummary,
}

impl Dispatcher {
    /// Sends `body` until it is accepted, rejected for good, or the dispatcher is
    /// stopping. False only when stopping.
    fn send(&mut self, body: &Value, what: &str) -> bool {
        let name = self.channel.name();
        let (url, bearer) = match &self.channel {
            Channel::Alertmanager(u) => (u.clone(), None),
            Channel::PagerDuty { url, .. } => (url.clone(), None),
            Channel::Webhook { url, token } => (url.clone(), token.clone()),
        };
        let mut delay = self.backoff.0;
        let count = |outcome: &str| {
            self.metrics
                .dispatch_attempts
                .with_label_values(&[name, outcome])
                .inc()
        };
        loop {
            match post(&self.agent, &url, body, bearer.as_ref()) {
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
        let body = match &self.channel {
            Channel::Alertmanager(_) => {
                json!([alertmanager_alert(a, now_ns() / NANOS_PER_SEC, self.resend)])
            }
            Channel::PagerDuty { routing_key, .. } => pagerduty_event(a, &routing_key.0),
            Channel::Webhook { .. } => webhook_payload(a),
        };
        self.send(&body, &format!("{} alert {}", a.status, a.dedup_key))
    }

    /// Re-sends every firing alert (Alertmanager only). False when stopping.
    fn resend_firing(&mut self, firing: &BTreeMap<String, AlertRecord>) -> bool {
        if !matches!(self.channel, Channel::Alertmanager(_)) || firing.is_empty() {
            return true;
        }
        let now = now_ns() / NANOS_PER_SEC;
        let body: Vec<Value> = firing
            .values()
            .map(|a| alertmanager_alert(a, now, self.resend))
            .collect();
        self.send(&Value::Array(body), "re-send of the firing alerts")
    }
}

/// Runs the dispatcher until SIGTERM/SIGINT (or, with `drain`, until caught up).
/// Each channel has its own consumer group (`<group_id>-<channel>`) and thread,
/// so a channel that is down holds back only itself.
pub fn dispatch(opts: &DispatchOptions) -> Result<DispatchSummary, DispatchError> {
    let config = Config::load(opts.config.as_deref())?;
    let settings = config.settings()?;
    let d = &config.dispatch;
    let channels = channels(d)?;
    let dur = |v: &str| Duration::from_nanos(parse_duration(v).unwrap_or(0));
    let stop = Arc::new(AtomicBool::new(false));
    crate::background::watch_signals("causeway dispatch", stop.clone());
    let metrics = Arc::new(Metrics::new(&config.metrics));
    let _server = match d.metrics_bind.as_str() {
        "" => None,
        bind => Some(crate::metrics::serve(bind, metrics.clone()).map_err(|e| {
            DispatchError::Metrics(format!(
                "cannot serve /metrics on {bind}: {e}; change dispatch.metrics_bind"
            ))
        })?),
    };
    eprintln!(
        "causeway dispatch: delivering {} to {}",
        config.kafka.topics.alerts,
        channels
            .iter()
            .map(Channel::name)
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
                    .timeout(dur(&d.request_timeout))
                    .build(),
                backoff: (dur(&d.initial_backoff), dur(&d.max_backoff)),
                resend: dur(&d.resend_interval),
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
                if matches!(dispatcher.channel, Channel::Alertmanager(_)) {
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
