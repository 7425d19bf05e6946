//! The configuration file (TOML), its defaults and its validation.
//!
//! Every struct denies unknown keys, so a misspelt key is an error that names it.
//! Durations are strings such as `"90s"`, `"10m"`, `"1h"`, `"28d"`, `"250ms"`.
//! Any key can be overridden from the environment:
//! `CAUSEWAY__<SECTION>__<KEY>=<value>`, e.g. `CAUSEWAY__TIME__WINDOW=30s`.
//! See `deploy/causeway.example.toml` for a commented example.

use std::collections::BTreeMap;
use std::path::Path;

use causeway_jobs::obs::Sli;
use causeway_jobs::params::MetricParams;
use causeway_jobs::slo::{AlertOptions, Maintenance, Row, Severity, SloSpec};
use causeway_jobs::Params;
use causeway_schemas::pii::PiiDetector;
use causeway_schemas::time::{parse_rfc3339, NANOS_PER_SEC};
use causeway_schemas::{DecodeOptions, Encoding};
use serde::{Deserialize, Serialize};

use crate::secret::{from_env, from_file, read_secret, Secret, SecretError};

/// A configuration mistake, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or a key is unknown or mistyped.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A value is out of range.
    #[error("invalid config: `{key}` {problem}")]
    Value {
        /// Dotted key.
        key: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// A secret named in the config could not be read.
    #[error("invalid config: {0}")]
    Secret(#[from] SecretError),
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Event-time semantics (SPEC §2).
    pub time: TimeConfig,
    /// Decoding and detection.
    pub decode: DecodeConfig,
    /// Kafka connection, topics and encodings (`causeway run`).
    pub kafka: KafkaConfig,
    /// Delivery guarantee.
    pub processing: ProcessingConfig,
    /// The Prometheus `/metrics` endpoint.
    pub metrics: MetricsConfig,
    /// SLOs (SPEC §4); evaluated by the alerting job.
    pub slo: Vec<SloConfig>,
    /// Alert evidence and maintenance windows (SPEC §5).
    pub alerting: AlertingConfig,
    /// Where `causeway dispatch` delivers alerts.
    pub dispatch: DispatchConfig,
}

/// Alert evidence and maintenance windows (SPEC §5).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Exemplar trace ids per alert (K). Default 5.
    pub exemplars: usize,
    /// Deploys this long before an alert starts are suspects. Default `1h`.
    pub change_lookback: String,
    /// Link added to every alert (annotation `runbook_url`).
    pub runbook_url: Option<String>,
    /// Alerts starting inside one of these are recorded as suppressed, not paged.
    pub maintenance: Vec<MaintenanceConfig>,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            exemplars: 5,
            change_lookback: "1h".into(),
            runbook_url: None,
            maintenance: Vec::new(),
        }
    }
}

/// One maintenance window.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Start, RFC 3339 (inclusive).
    pub start: String,
    /// End, RFC 3339 (exclusive).
    pub end: String,
    /// Services covered; empty or absent means all.
    #[serde(default)]
    pub services: Vec<String>,
}

/// Alert delivery (`causeway dispatch`). Secrets are never in this file: they are
/// read from the environment variable or file named here.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Consumer group of the dispatcher. Default `causeway-dispatch`.
    pub group_id: String,
    /// Alertmanager base URL (`http://host:9093`); alerts go to `POST /api/v2/alerts`.
    pub alertmanager_url: Option<String>,
    /// PagerDuty Events API v2 endpoint. Default `https://events.pagerduty.com/v2/enqueue`
    /// (used only when a routing key is configured).
    pub pagerduty_url: String,
    /// Environment variable holding the PagerDuty routing key.
    pub pagerduty_routing_key_env: Option<String>,
    /// File holding the PagerDuty routing key.
    pub pagerduty_routing_key_file: Option<String>,
    /// Generic webhook URL (Alertmanager webhook JSON).
    pub webhook_url: Option<String>,
    /// Environment variable holding a bearer token for the webhook.
    pub webhook_token_env: Option<String>,
    /// File holding a bearer token for the webhook.
    pub webhook_token_file: Option<String>,
    /// How often firing alerts are re-sent to Alertmanager. Default `1m`.
    pub resend_interval: String,
    /// First retry delay; doubles up to `max_backoff`. Default `500ms`.
    pub initial_backoff: String,
    /// Longest retry delay. Default `30s`.
    pub max_backoff: String,
    /// Per-request timeout. Default `10s`.
    pub request_timeout: String,
    /// Where the dispatcher serves `/metrics`; empty disables it. Default `127.0.0.1:9465`.
    pub metrics_bind: String,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            group_id: "causeway-dispatch".into(),
            alertmanager_url: None,
            pagerduty_url: "https://events.pagerduty.com/v2/enqueue".into(),
            pagerduty_routing_key_env: None,
            pagerduty_routing_key_file: None,
            webhook_url: None,
            webhook_token_env: None,
            webhook_token_file: None,
            resend_interval: "1m".into(),
            initial_backoff: "500ms".into(),
            max_backoff: "30s".into(),
            request_timeout: "10s".into(),
            metrics_bind: "127.0.0.1:9465".into(),
        }
    }
}

/// Kafka settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`. Default `localhost:9092`.
    pub brokers: String,
    /// Consumer group whose committed offsets are Causeway's checkpoints. Default `causeway`.
    pub group_id: String,
    /// Topic names.
    pub topics: TopicsConfig,
    /// Encodings of the input topics.
    pub encodings: EncodingsConfig,
    /// How often offsets are committed. Default `1s`.
    pub commit_interval: String,
    /// librdkafka settings passed through unchanged to every client
    /// (e.g. `"security.protocol" = "SASL_SSL"`, `"sasl.mechanisms" = "PLAIN"`,
    /// `"ssl.ca.location" = "/etc/ssl/ca.pem"`). Secret settings
    /// (`sasl.password`, `ssl.key.password`, ...) are refused here: name them in
    /// `librdkafka_from_env` or `librdkafka_from_file`. A number or a boolean
    /// is taken as its text (an environment override such as
    /// `CAUSEWAY__KAFKA__LIBRDKAFKA__QUEUED.MAX.MESSAGES.KBYTES=1024` gives one).
    #[serde(deserialize_with = "librdkafka_settings")]
    pub librdkafka: BTreeMap<String, String>,
    /// librdkafka settings read from environment variables at start, setting
    /// name to variable name (e.g. `"sasl.password" = "KAFKA_PASSWORD"`). For
    /// secrets; never logged.
    pub librdkafka_from_env: BTreeMap<String, String>,
    /// librdkafka settings read from files at start, setting name to path
    /// (e.g. `"sasl.password" = "/run/secrets/kafka-password"`; surrounding
    /// whitespace dropped). For secrets; never logged.
    pub librdkafka_from_file: BTreeMap<String, String>,
    /// The values of `librdkafka_from_env` / `_from_file`, once read by
    /// [`KafkaConfig::read_secrets`].
    #[serde(skip)]
    pub secrets: BTreeMap<String, Secret>,
}

/// A librdkafka setting's value: librdkafka takes every value as text, so a
/// number or a boolean is taken as the text TOML would show for it.
struct SettingValue(String);

impl<'de> Deserialize<'de> for SettingValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = SettingValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a librdkafka setting: a string, a number or a boolean (e.g. \"1024\")")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SettingValue, E> {
                Ok(SettingValue(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SettingValue, E> {
                Ok(SettingValue(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SettingValue, E> {
                Ok(SettingValue(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<SettingValue, E> {
                Ok(SettingValue(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<SettingValue, E> {
                Ok(SettingValue(v.to_string()))
            }
        }
        d.deserialize_any(Text)
    }
}

/// `[kafka.librdkafka]`, with numbers and booleans taken as text.
fn librdkafka_settings<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let settings = BTreeMap::<String, SettingValue>::deserialize(d)?;
    Ok(settings.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// librdkafka settings whose value is itself a secret (a password, a key or a
/// client secret): refused in `[kafka.librdkafka]`, accepted from the
/// environment or a file.
pub const LIBRDKAFKA_SECRETS: [&str; 8] = [
    "sasl.password",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
];

impl KafkaConfig {
    /// Reads the settings named in `librdkafka_from_env` (looked up with `env`)
    /// and `librdkafka_from_file` into [`KafkaConfig::secrets`], which every
    /// client gets. Called by the commands that talk to Kafka before they create
    /// a client; errors name the setting, variable or path, never a value.
    pub fn read_secrets(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let mut out = BTreeMap::new();
        for (setting, var) in &self.librdkafka_from_env {
            let key = format!("kafka.librdkafka_from_env.\"{setting}\"");
            out.insert(setting.clone(), from_env(&key, var, env)?);
        }
        for (setting, path) in &self.librdkafka_from_file {
            let key = format!("kafka.librdkafka_from_file.\"{setting}\"");
            out.insert(setting.clone(), from_file(&key, path)?);
        }
        self.secrets = out;
        Ok(())
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "localhost:9092".into(),
            group_id: "causeway".into(),
            topics: TopicsConfig::default(),
            encodings: EncodingsConfig::default(),
            commit_interval: "1s".into(),
            librdkafka: Default::default(),
            librdkafka_from_env: Default::default(),
            librdkafka_from_file: Default::default(),
            secrets: Default::default(),
        }
    }
}

/// Topic names (SPEC §1 and §6 defaults).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// OTLP spans. Default `otlp_spans`.
    pub spans: String,
    /// OTLP logs. Default `otlp_logs`.
    pub logs: String,
    /// CDEvents deploy events. Default `deploys`.
    pub deploys: String,
    /// Audit events. Default `audit`.
    pub audit: String,
    /// SLI records out. Default `causeway_sli`.
    pub sli: String,
    /// Service-graph edges out. Default `causeway_service_graph`.
    pub service_graph: String,
    /// Dead letters out. Default `causeway_dlq`.
    pub dlq: String,
    /// Alerts out, keyed by dedup key. Default `causeway_alerts`.
    pub alerts: String,
    /// Burn rates and budgets out, one record per SLO target and window. Default `causeway_slo`.
    pub slo: String,
    /// Alert evidence out (exemplars, deploys with actors); read back at restart
    /// to rebuild the alert state. Default `causeway_evidence`.
    pub evidence: String,
    /// Checkpoints: one record per input partition and commit, keyed by group,
    /// topic and partition. Create it with `cleanup.policy=compact`. Default
    /// `causeway_checkpoints`.
    pub checkpoints: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            spans: "otlp_spans".into(),
            logs: "otlp_logs".into(),
            deploys: "deploys".into(),
            audit: "audit".into(),
            sli: "causeway_sli".into(),
            service_graph: "causeway_service_graph".into(),
            dlq: "causeway_dlq".into(),
            alerts: "causeway_alerts".into(),
            slo: "causeway_slo".into(),
            evidence: "causeway_evidence".into(),
            checkpoints: "causeway_checkpoints".into(),
        }
    }
}

/// Encodings of the input topics.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncodingsConfig {
    /// `otlp_proto` (default) or `otlp_json`.
    pub spans: Encoding,
    /// `otlp_proto` (default) or `otlp_json`.
    pub logs: Encoding,
    /// `json` (the only one).
    pub deploys: Encoding,
    /// `json` (the only one).
    pub audit: Encoding,
}

impl Default for EncodingsConfig {
    fn default() -> Self {
        EncodingsConfig {
            spans: Encoding::OtlpProto,
            logs: Encoding::OtlpProto,
            deploys: Encoding::Json,
            audit: Encoding::Json,
        }
    }
}

/// Delivery guarantee of `causeway run`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Outputs may repeat after a crash; they are keyed and identical, so a
    /// compacted topic or a keyed consumer sees each once.
    #[default]
    AtLeastOnce,
    /// No output record is written twice, even after `kill -9`.
    ExactlyOnce,
}

/// Processing settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    /// `at_least_once` (default) or `exactly_once`.
    pub guarantee: Guarantee,
    /// Dead letters without their content. A dead letter normally carries the
    /// message's original bytes and headers (SPEC §1), which may hold PII, so
    /// the DLQ topic is a restricted topic. With `true`, `run` writes the value
    /// `causeway:redacted` instead of the bytes, drops the original headers and
    /// keeps Causeway's own (`causeway.source.topic/partition/offset`,
    /// `causeway.reason`, `causeway.record_index`, `causeway.record_count`,
    /// plus `causeway.payload_bytes`); the `detail` of every dead letter, in the
    /// topic and in `replay`'s `dlq.jsonl`, becomes a fixed text. Default `false`.
    pub redact_dead_letters: bool,
}

/// The `/metrics` endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Listen address. Default `127.0.0.1:9464`; empty disables the endpoint.
    pub bind: String,
    /// Most series on `/metrics` whose label values come from telemetry
    /// (SLI counters, span and service-graph metrics, SLO gauges); a label set
    /// past it is reported as `__overflow__` (gauges: not exported). Default
    /// 50,000.
    pub max_series: usize,
    /// Most distinct services (and, separately, environments) per metric; later
    /// ones are reported as `__overflow__`. Default 1000.
    pub max_services: usize,
    /// Most distinct span names (`span_name` of `traces_spanmetrics_*`) a process
    /// keeps; later ones are reported as `__overflow__`. Default 1000.
    pub max_span_names: usize,
    /// Most distinct versions (`version` label); later ones are reported as
    /// `__overflow__`. Default 500.
    pub max_versions: usize,
    /// Upper bounds (seconds) of `traces_spanmetrics_latency`. Default Tempo's:
    /// 0.002, 0.004, ... 16.384 (doubling).
    pub span_metrics_buckets: Vec<f64>,
    /// Upper bounds (seconds) of `traces_service_graph_request_{server,client}_seconds`.
    /// Default Tempo's: 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8.
    pub service_graph_buckets: Vec<f64>,
    /// Environment variable holding a bearer token that `GET /metrics` must
    /// carry (`Authorization: Bearer <token>`); `/healthz` stays open. Applies to
    /// `run`'s and `dispatch`'s endpoints.
    pub bearer_token_env: Option<String>,
    /// File holding that bearer token (instead of `bearer_token_env`).
    pub bearer_token_file: Option<String>,
}

/// Tempo metrics-generator's default span-metrics buckets, seconds.
pub const TEMPO_SPAN_METRICS_BUCKETS: [f64; 14] = [
    0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192,
    16.384,
];

/// Tempo metrics-generator's default service-graph buckets, seconds.
pub const TEMPO_SERVICE_GRAPH_BUCKETS: [f64; 8] = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            bind: "127.0.0.1:9464".into(),
            max_series: 50_000,
            max_services: 1000,
            max_span_names: causeway_jobs::params::DEFAULT_MAX_SPAN_NAMES,
            max_versions: 500,
            span_metrics_buckets: TEMPO_SPAN_METRICS_BUCKETS.to_vec(),
            service_graph_buckets: TEMPO_SERVICE_GRAPH_BUCKETS.to_vec(),
            bearer_token_env: None,
            bearer_token_file: None,
        }
    }
}

impl MetricsConfig {
    /// The bearer token `/metrics` requires, if one is configured (read from
    /// the environment variable or file now).
    pub fn bearer_token(&self) -> Result<Option<Secret>, SecretError> {
        read_secret(
            "metrics.bearer_token",
            self.bearer_token_env.as_deref(),
            self.bearer_token_file.as_deref(),
            &crate::secret::process_env,
        )
    }

    /// What the jobs collect for these metrics.
    pub fn params(&self) -> MetricParams {
        let ns = |b: &[f64]| b.iter().map(|s| (s * 1e9).round() as u64).collect();
        MetricParams {
            span_buckets_ns: ns(&self.span_metrics_buckets),
            graph_buckets_ns: ns(&self.service_graph_buckets),
        }
    }
}

/// One SLO (SPEC §4).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// Unique name.
    pub name: String,
    /// A service name, or `*` for each service seen.
    pub service: String,
    /// Restricts the SLO to one environment.
    #[serde(default)]
    pub environment: Option<String>,
    /// An SLI id (`availability`, `latency`, `trace_coverage`, ...).
    pub sli: String,
    /// Target good fraction, 0 < objective < 1.
    pub objective: f64,
    /// Budget period. Default `28d`.
    #[serde(default = "default_period")]
    pub period: String,
    /// `latency` only: a request is good when faster than this (e.g. `"300ms"`).
    #[serde(default)]
    pub threshold: Option<String>,
    /// Below this many events in a window, the burn rate is 0. Default 1.
    #[serde(default = "default_min_events")]
    pub min_events: u64,
    /// Alerting policy; default: page 14.4x 1h/5m, page 6x 6h/30m, ticket 1x 3d/6h.
    #[serde(default)]
    pub policy: Option<Vec<PolicyRow>>,
}

fn default_period() -> String {
    "28d".into()
}

fn default_min_events() -> u64 {
    1
}

/// One multi-window burn-rate rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRow {
    /// `page` or `ticket`.
    pub severity: String,
    /// Long window, e.g. `"1h"`.
    pub long: String,
    /// Short window, e.g. `"5m"`.
    pub short: String,
    /// Burn-rate factor both windows must reach.
    pub factor: f64,
}

/// Windows, watermarks and correlation (SPEC §2, §3).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeConfig {
    /// Tumbling window size; whole seconds. Default `60s`.
    pub window: String,
    /// How far behind its partition's newest event an event may be before it is late. Default `30s`.
    pub allowed_lateness: String,
    /// How long after a window ends it stays open for correlation. Whole seconds. Default `60s`.
    pub correlation_grace: String,
    /// How far back a record may join a span of its trace. Whole seconds. Default `10m`.
    pub trace_horizon: String,
    /// A partition idle this long no longer holds the watermark back. Default `30s`.
    pub idle_timeout: String,
    /// Longest span with valid timing (M3). Default `1h`.
    pub max_span_duration: String,
    /// How far a span may start before its parent (M3). Default `1s`.
    pub skew_tolerance: String,
    /// Events further than this into the future (wall clock) are rejected. Default `10m`.
    pub max_future_skew: String,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            window: "60s".into(),
            allowed_lateness: "30s".into(),
            correlation_grace: "60s".into(),
            trace_horizon: "10m".into(),
            idle_timeout: "30s".into(),
            max_span_duration: "1h".into(),
            skew_tolerance: "1s".into(),
            max_future_skew: "10m".into(),
        }
    }
}

/// Decoding options.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// Extra log attribute keys that mark a request record (M1), besides
    /// `http.request.method`, `http.method` and `rpc.method`.
    pub request_attributes: Vec<String>,
    /// Extra PII regexes (M9), added to the built-in detectors.
    pub pii_patterns: Vec<String>,
}

/// Parses `"90s"`, `"10m"`, `"1h"`, `"28d"`, `"250ms"` into nanoseconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        "d" => 86_400 * NANOS_PER_SEC,
        "w" => 7 * 86_400 * NANOS_PER_SEC,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn duration(key: &str, v: &str) -> Result<u64, ConfigError> {
    parse_duration(v).ok_or_else(|| ConfigError::Value {
        key: key.into(),
        problem: format!("is {v:?}; use a number with a unit: ms, s, m, h, d or w (e.g. \"90s\")"),
    })
}

fn whole_seconds(key: &str, v: &str, allow_zero: bool) -> Result<u64, ConfigError> {
    let ns = duration(key, v)?;
    if ns % NANOS_PER_SEC != 0 || (!allow_zero && ns == 0) {
        return Err(ConfigError::Value {
            key: key.into(),
            problem: format!(
                "is {v:?}; it must be a whole number of seconds{}",
                if allow_zero { "" } else { " greater than 0" }
            ),
        });
    }
    Ok(ns / NANOS_PER_SEC)
}

/// The validated, resolved settings the runtime uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Job parameters.
    pub params: Params,
    /// Allowed lateness, ns.
    pub allowed_lateness_ns: u64,
    /// Idle timeout, ns.
    pub idle_timeout_ns: u64,
    /// Decoder options.
    pub decode: DecodeOptions,
    /// SLOs, resolved.
    pub slos: Vec<SloSpec>,
    /// Alerting options, resolved.
    pub alerting: AlertOptions,
    /// `processing.redact_dead_letters`.
    pub redact_dead_letters: bool,
}

impl Config {
    /// Loads a config file, applies environment overrides and validates it.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_toml(&text, std::env::vars())
    }

    /// Parses TOML text with `CAUSEWAY__SECTION__KEY` overrides from `env`.
    pub fn from_toml(
        text: &str,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_error(text, &e))?;
        for (k, v) in env {
            let Some(path) = k.strip_prefix("CAUSEWAY__") else {
                continue;
            };
            let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
            let value = format!("x = {v}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("x"))
                .unwrap_or(toml::Value::String(v.clone()));
            let mut table = &mut doc;
            for p in &parts[..parts.len() - 1] {
                let entry = table
                    .entry(p.clone())
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                table = entry.as_table_mut().ok_or_else(|| ConfigError::Value {
                    key: k.clone(),
                    problem: format!("overrides {p}, which is not a section"),
                })?;
            }
            table.insert(parts[parts.len() - 1].clone(), value);
        }
        refuse_inline_secrets(&doc)?;
        let config: Config = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.validate_kafka()?;
        config.validate_slos()?;
        config.validate_alerting()?;
        config.settings()?;
        Ok(config)
    }

    /// Validates and resolves the settings.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let t = &self.time;
        let params = Params {
            window_s: whole_seconds("time.window", &t.window, false)?,
            grace_s: whole_seconds("time.correlation_grace", &t.correlation_grace, true)?,
            horizon_s: whole_seconds("time.trace_horizon", &t.trace_horizon, true)?,
            max_span_duration_ns: duration("time.max_span_duration", &t.max_span_duration)?,
            skew_tolerance_ns: duration("time.skew_tolerance", &t.skew_tolerance)?,
            exemplars: self.alerting.exemplars,
            availability_exemplars: self.slo.iter().any(|s| s.sli == "availability"),
            latency_exemplars: self.slo.iter().any(|s| s.sli == "latency"),
            max_span_names: self.metrics.max_span_names,
            // Set by `causeway run` when it serves /metrics.
            metrics: None,
        };
        let pii = PiiDetector::with_patterns(&self.decode.pii_patterns).map_err(|e| {
            ConfigError::Value {
                key: "decode.pii_patterns".into(),
                problem: format!("holds an invalid regex: {e}"),
            }
        })?;
        Ok(Settings {
            allowed_lateness_ns: duration("time.allowed_lateness", &t.allowed_lateness)?,
            idle_timeout_ns: duration("time.idle_timeout", &t.idle_timeout)?,
            decode: DecodeOptions {
                max_future_skew_ns: duration("time.max_future_skew", &t.max_future_skew)?,
                pii,
                request_attributes: self.decode.request_attributes.clone(),
                ..DecodeOptions::default()
            },
            slos: self.slo_specs()?,
            alerting: AlertOptions {
                window_s: params.window_s,
                exemplars: self.alerting.exemplars,
                change_lookback_s: whole_seconds(
                    "alerting.change_lookback",
                    &self.alerting.change_lookback,
                    true,
                )?,
                maintenance: self.maintenance()?,
                runbook_url: self.alerting.runbook_url.clone(),
            },
            params,
            redact_dead_letters: self.processing.redact_dead_letters,
        })
    }

    /// The SLOs, resolved (defaults applied, durations parsed).
    fn slo_specs(&self) -> Result<Vec<SloSpec>, ConfigError> {
        self.slo
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let key = |k: &str| format!("slo[{i}].{k}");
                let policy = s.policy.clone().unwrap_or_else(default_policy);
                let rows = policy
                    .iter()
                    .enumerate()
                    .map(|(j, r)| {
                        let key = |k: &str| format!("slo[{i}].policy[{j}].{k}");
                        Ok(Row {
                            severity: if r.severity == "page" {
                                Severity::Page
                            } else {
                                Severity::Ticket
                            },
                            long: (whole_seconds(&key("long"), &r.long, false)?, r.long.clone()),
                            short: (
                                whole_seconds(&key("short"), &r.short, false)?,
                                r.short.clone(),
                            ),
                            factor: r.factor,
                        })
                    })
                    .collect::<Result<Vec<Row>, ConfigError>>()?;
                Ok(SloSpec {
                    name: s.name.clone(),
                    service: (s.service != "*").then(|| s.service.clone()),
                    environment: s.environment.clone(),
                    sli: Sli::parse(&s.sli).ok_or_else(|| value(&key("sli"), "is unknown"))?,
                    objective: s.objective,
                    period_s: whole_seconds(&key("period"), &s.period, false)?,
                    threshold_us: s
                        .threshold
                        .as_deref()
                        .map(|t| duration(&key("threshold"), t).map(|ns| ns / 1000))
                        .transpose()?,
                    min_events: s.min_events,
                    policy: rows,
                })
            })
            .collect()
    }

    fn maintenance(&self) -> Result<Vec<Maintenance>, ConfigError> {
        self.alerting
            .maintenance
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let at = |k: &str, v: &str| {
                    parse_rfc3339(v)
                        .map(|ns| ns / NANOS_PER_SEC)
                        .ok_or_else(|| {
                            value(
                                &format!("alerting.maintenance[{i}].{k}"),
                                &format!("is {v:?}; use RFC 3339, e.g. \"2026-11-24T10:00:00Z\""),
                            )
                        })
                };
                let (start, end) = (at("start", &m.start)?, at("end", &m.end)?);
                if end <= start {
                    return Err(value(
                        &format!("alerting.maintenance[{i}].end"),
                        "must be after start",
                    ));
                }
                Ok(Maintenance {
                    start,
                    end,
                    services: m.services.clone(),
                })
            })
            .collect()
    }

    /// Checks `[alerting]` and `[dispatch]`.
    fn validate_alerting(&self) -> Result<(), ConfigError> {
        if self.alerting.exemplars == 0 || self.alerting.exemplars > 100 {
            return Err(value("alerting.exemplars", "must be between 1 and 100"));
        }
        let d = &self.dispatch;
        for (key, v) in [
            ("dispatch.resend_interval", &d.resend_interval),
            ("dispatch.initial_backoff", &d.initial_backoff),
            ("dispatch.max_backoff", &d.max_backoff),
            ("dispatch.request_timeout", &d.request_timeout),
        ] {
            if duration(key, v)? == 0 {
                return Err(value(key, "must be positive"));
            }
        }
        for (key, url) in [
            ("dispatch.alertmanager_url", d.alertmanager_url.as_deref()),
            ("dispatch.webhook_url", d.webhook_url.as_deref()),
            ("dispatch.pagerduty_url", Some(d.pagerduty_url.as_str())),
        ] {
            if let Some(u) = url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(value(
                        key,
                        &format!("is {u:?}; it must start with http:// or https://"),
                    ));
                }
            }
        }
        if !d.metrics_bind.is_empty() && d.metrics_bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(value(
                "dispatch.metrics_bind",
                &format!(
                    "is {:?}; use ip:port, e.g. \"127.0.0.1:9465\", or \"\" to disable",
                    d.metrics_bind
                ),
            ));
        }
        if d.pagerduty_routing_key_env.is_some() && d.pagerduty_routing_key_file.is_some() {
            return Err(value(
                "dispatch.pagerduty_routing_key_file",
                "and pagerduty_routing_key_env are both set; keep one",
            ));
        }
        if d.webhook_token_env.is_some() && d.webhook_token_file.is_some() {
            return Err(value(
                "dispatch.webhook_token_file",
                "and webhook_token_env are both set; keep one",
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Checks the Kafka, processing and metrics sections.
    fn validate_kafka(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        if k.brokers.trim().is_empty() {
            return Err(value(
                "kafka.brokers",
                "is empty; give host:port[,host:port...]",
            ));
        }
        if k.group_id.trim().is_empty() {
            return Err(value("kafka.group_id", "is empty; name the consumer group"));
        }
        for (key, enc) in [("spans", k.encodings.spans), ("logs", k.encodings.logs)] {
            if enc == Encoding::Json {
                return Err(value(
                    &format!("kafka.encodings.{key}"),
                    "is \"json\"; use \"otlp_proto\" or \"otlp_json\"",
                ));
            }
        }
        for (key, enc) in [
            ("deploys", k.encodings.deploys),
            ("audit", k.encodings.audit),
        ] {
            if enc != Encoding::Json {
                return Err(value(
                    &format!("kafka.encodings.{key}"),
                    "must be \"json\" (the only encoding of this topic)",
                ));
            }
        }
        let t = &k.topics;
        let names = [
            ("spans", &t.spans),
            ("logs", &t.logs),
            ("deploys", &t.deploys),
            ("audit", &t.audit),
            ("sli", &t.sli),
            ("service_graph", &t.service_graph),
            ("dlq", &t.dlq),
            ("alerts", &t.alerts),
            ("slo", &t.slo),
            ("evidence", &t.evidence),
            ("checkpoints", &t.checkpoints),
        ];
        for (i, (key, name)) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(value(&format!("kafka.topics.{key}"), "is empty"));
            }
            if let Some((other, _)) = names[..i].iter().find(|(_, n)| n == name) {
                return Err(value(
                    &format!("kafka.topics.{key}"),
                    &format!(
                        "is {name:?}, the same topic as kafka.topics.{other}; give each its own"
                    ),
                ));
            }
        }
        let interval = duration("kafka.commit_interval", &k.commit_interval)?;
        if interval == 0 {
            return Err(value("kafka.commit_interval", "must be greater than 0"));
        }
        if !self.metrics.bind.is_empty()
            && self.metrics.bind.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(value(
                "metrics.bind",
                &format!(
                    "is {:?}; use ip:port such as \"127.0.0.1:9464\"",
                    self.metrics.bind
                ),
            ));
        }
        if self.metrics.bearer_token_env.is_some() && self.metrics.bearer_token_file.is_some() {
            return Err(value(
                "metrics.bearer_token_file",
                "and bearer_token_env are both set; keep one",
            ));
        }
        for (setting, _) in k.librdkafka_from_env.iter().chain(&k.librdkafka_from_file) {
            let twice = k.librdkafka.contains_key(setting)
                || (k.librdkafka_from_env.contains_key(setting)
                    && k.librdkafka_from_file.contains_key(setting));
            if twice {
                return Err(value(
                    &format!("kafka.librdkafka_from_file.\"{setting}\""),
                    "is set more than once (kafka.librdkafka, librdkafka_from_env, librdkafka_from_file); keep one",
                ));
            }
        }
        if self.metrics.max_series == 0 {
            return Err(value("metrics.max_series", "must be at least 1"));
        }
        if self.metrics.max_services == 0 {
            return Err(value("metrics.max_services", "must be at least 1"));
        }
        if self.metrics.max_span_names == 0 {
            return Err(value("metrics.max_span_names", "must be at least 1"));
        }
        if self.metrics.max_versions == 0 {
            return Err(value("metrics.max_versions", "must be at least 1"));
        }
        for (key, b) in [
            (
                "metrics.span_metrics_buckets",
                &self.metrics.span_metrics_buckets,
            ),
            (
                "metrics.service_graph_buckets",
                &self.metrics.service_graph_buckets,
            ),
        ] {
            let ascending = b.windows(2).all(|w| w[0] < w[1]);
            if b.is_empty() || !ascending || b.iter().any(|s| !s.is_finite() || *s <= 0.0) {
                return Err(value(
                    key,
                    "must be positive seconds in ascending order, such as [0.1, 0.2, 0.4]",
                ));
            }
        }
        Ok(())
    }

    /// Checks every `[[slo]]`.
    fn validate_slos(&self) -> Result<(), ConfigError> {
        for (i, s) in self.slo.iter().enumerate() {
            let key = |k: &str| format!("slo[{i}].{k}");
            if s.name.is_empty() {
                return Err(value(&key("name"), "is empty"));
            }
            if self.slo[..i].iter().any(|o| o.name == s.name) {
                return Err(value(
                    &key("name"),
                    &format!("{:?} is used twice; SLO names must be unique", s.name),
                ));
            }
            if s.service.is_empty() {
                return Err(value(
                    &key("service"),
                    "is empty; name a service or use \"*\"",
                ));
            }
            if causeway_jobs::obs::Sli::parse(&s.sli).is_none() {
                let ids: Vec<&str> = causeway_jobs::obs::Sli::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect();
                return Err(value(
                    &key("sli"),
                    &format!("is {:?}; use one of {}", s.sli, ids.join(", ")),
                ));
            }
            if s.sli == "sampling_bias" {
                return Err(value(
                    &key("sli"),
                    "is sampling_bias, a gauge without good/total events; an SLO needs a ratio SLI",
                ));
            }
            if !(s.objective > 0.0 && s.objective < 1.0) {
                return Err(value(
                    &key("objective"),
                    &format!(
                        "is {}; it must be between 0 and 1 (exclusive), e.g. 0.999",
                        s.objective
                    ),
                ));
            }
            duration(&key("period"), &s.period)?;
            match (&s.threshold, s.sli.as_str()) {
                (Some(t), "latency") => {
                    duration(&key("threshold"), t)?;
                }
                (None, "latency") => {
                    return Err(value(
                        &key("threshold"),
                        "is missing; a latency SLO needs one, e.g. \"300ms\"",
                    ))
                }
                (Some(_), _) => {
                    return Err(value(
                        &key("threshold"),
                        "is only allowed for sli = \"latency\"",
                    ))
                }
                (None, _) => {}
            }
            for (j, row) in s.policy.iter().flatten().enumerate() {
                let key = |k: &str| format!("slo[{i}].policy[{j}].{k}");
                if row.severity != "page" && row.severity != "ticket" {
                    return Err(value(
                        &key("severity"),
                        &format!("is {:?}; use \"page\" or \"ticket\"", row.severity),
                    ));
                }
                let long = duration(&key("long"), &row.long)?;
                let short = duration(&key("short"), &row.short)?;
                if short >= long {
                    return Err(value(&key("short"), "must be shorter than long"));
                }
                if row.factor <= 0.0 || !row.factor.is_finite() {
                    return Err(value(&key("factor"), "must be a positive number"));
                }
            }
        }
        Ok(())
    }
}

/// A TOML syntax error with its line and column but without the line itself,
/// which may hold a secret (toml's own message quotes it).
fn parse_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e
        .span()
        .and_then(|s| text.get(..s.start))
        .map(|before| {
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: ")
        })
        .unwrap_or_default();
    ConfigError::Parse(format!("{at}{}", e.message().trim_end()))
}

/// Refuses a secret librdkafka setting written in `[kafka.librdkafka]` (the file
/// or a `CAUSEWAY__KAFKA__LIBRDKAFKA__...` override), before deserializing, so
/// that no error ever quotes its value.
fn refuse_inline_secrets(doc: &toml::Table) -> Result<(), ConfigError> {
    let inline = doc
        .get("kafka")
        .and_then(|k| k.get("librdkafka"))
        .and_then(|l| l.as_table());
    for key in inline.into_iter().flat_map(|t| t.keys()) {
        if LIBRDKAFKA_SECRETS.contains(&key.as_str()) {
            return Err(value(
                &format!("kafka.librdkafka.\"{key}\""),
                &format!("is a secret and is not read from the config file; put it in an environment variable or a file and name that in kafka.librdkafka_from_env or kafka.librdkafka_from_file (e.g. \"{key}\" = \"KAFKA_PASSWORD\")"),
            ));
        }
    }
    Ok(())
}

fn value(key: &str, problem: &str) -> ConfigError {
    ConfigError::Value {
        key: key.into(),
        problem: problem.into(),
    }
}

/// The SRE-workbook multi-window, multi-burn-rate policy (SPEC §4), as config
/// rows: the evaluator's [`Row::workbook`].
pub fn default_policy() -> Vec<PolicyRow> {
    Row::workbook()
        .into_iter()
        .map(|r| PolicyRow {
            severity: r.severity.as_str().into(),
            long: r.long.1,
            short: r.short.1,
            factor: r.factor,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_loads() {
        let text = include_str!("../../deploy/causeway.example.toml");
        let c = Config::from_toml(text, std::iter::empty()).unwrap();
        // Its availability SLO turns on availability exemplars; the rest is default.
        let want = Params {
            availability_exemplars: true,
            ..Params::default()
        };
        assert_eq!(c.settings().unwrap().params, want);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::from_toml("[time]\nwindow_size = \"60s\"", std::iter::empty()).unwrap_err();
        assert!(e.to_string().contains("window_size"), "{e}");
        let e = Config::from_toml("[time]\nwindow = \"1.5m\"", std::iter::empty()).unwrap_err();
        assert!(e.to_string().contains("time.window"), "{e}");
        let e = Config::from_toml("[time]\nwindow = \"1500ms\"", std::iter::empty()).unwrap_err();
        assert!(e.to_string().contains("whole number of seconds"), "{e}");
        let e =
            Config::from_toml("[decode]\npii_patterns = [\"(\"]", std::iter::empty()).unwrap_err();
        assert!(e.to_string().contains("decode.pii_patterns"), "{e}");
    }

    #[test]
    fn kafka_and_slo_mistakes_are_named() {
        let cases = [
            ("[kafka.encodings]\nspans = \"json\"", "kafka.encodings.spans"),
            ("[kafka.encodings]\naudit = \"otlp_proto\"", "kafka.encodings.audit"),
            ("[kafka.encodings]\nspans = \"xml\"", "unknown variant `xml`"),
            ("[kafka.topics]\ndlq = \"otlp_spans\"", "kafka.topics.dlq"),
            ("[kafka]\nbrokerz = \"x\"", "brokerz"),
            ("[metrics]\nbind = \"localhost\"", "metrics.bind"),
            ("[processing]\nguarantee = \"maybe\"", "at_least_once"),
            (
                "[[slo]]\nname=\"a\"\nservice=\"s\"\nsli=\"uptime\"\nobjective=0.9",
                "slo[0].sli",
            ),
            (
                "[[slo]]\nname=\"a\"\nservice=\"s\"\nsli=\"availability\"\nobjective=99.9",
                "slo[0].objective",
            ),
            (
                "[[slo]]\nname=\"a\"\nservice=\"s\"\nsli=\"latency\"\nobjective=0.9",
                "slo[0].threshold",
            ),
            (
                "[[slo]]\nname=\"a\"\nservice=\"s\"\nsli=\"availability\"\nobjective=0.9\npolicy=[{severity=\"sms\",long=\"1h\",short=\"5m\",factor=2.0}]",
                "slo[0].policy[0].severity",
            ),
            (
                "[[slo]]\nname=\"a\"\nservice=\"s\"\nsli=\"sampling_bias\"\nobjective=0.9",
                "slo[0].sli",
            ),
            (
                "[[alerting.maintenance]]\nstart=\"tomorrow\"\nend=\"2026-01-01T00:00:00Z\"",
                "alerting.maintenance[0].start",
            ),
            (
                "[[alerting.maintenance]]\nstart=\"2026-01-02T00:00:00Z\"\nend=\"2026-01-01T00:00:00Z\"",
                "alerting.maintenance[0].end",
            ),
            ("[alerting]\nexemplars = 0", "alerting.exemplars"),
            ("[alerting]\nchange_lookback = \"soon\"", "alerting.change_lookback"),
            ("[dispatch]\nalertmanager_url = \"localhost:9093\"", "dispatch.alertmanager_url"),
            ("[dispatch]\nresend_interval = \"0s\"", "dispatch.resend_interval"),
            ("[dispatch]\nwebhook = \"x\"", "webhook"),
        ];
        for (text, expected) in cases {
            let e = Config::from_toml(text, std::iter::empty()).unwrap_err();
            assert!(e.to_string().contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn environment_overrides() {
        let env = vec![("CAUSEWAY__TIME__WINDOW".to_string(), "30s".to_string())];
        let c = Config::from_toml("", env.into_iter()).unwrap();
        assert_eq!(c.settings().unwrap().params.window_s, 30);
    }

    const PW: &str = "hunter2-kafka-pw";

    fn err(text: &str, env: Vec<(&str, &str)>) -> String {
        let env = env.into_iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_toml(text, env).unwrap_err().to_string()
    }

    #[test]
    fn secret_librdkafka_settings_come_from_env_or_file_only() {
        // Written in the file, or through an override: refused, naming the key only.
        let e = err(
            &format!("[kafka.librdkafka]\n\"sasl.password\" = \"{PW}\"\n"),
            vec![],
        );
        assert!(e.contains("kafka.librdkafka.\"sasl.password\""), "{e}");
        assert!(e.contains("librdkafka_from_env"), "{e}");
        assert!(!e.contains(PW), "{e}");
        let e = err(
            "",
            vec![("CAUSEWAY__KAFKA__LIBRDKAFKA__SSL.KEY.PASSWORD", PW)],
        );
        assert!(e.contains("\"ssl.key.password\"` is a secret"), "{e}");
        assert!(!e.contains(PW), "{e}");
        // Wrongly typed: still refused before serde could quote the value.
        let e = err(
            "[kafka.librdkafka]\n\"sasl.password\" = 123456789\n",
            vec![],
        );
        assert!(!e.contains("123456789"), "{e}");
        // A syntax error on the secret's line: position, not the line.
        let e = err(
            &format!(
                "[kafka]\nbrokers = \"b:9092\"\n[kafka.librdkafka]\n\"sasl.password\" = \"{PW}\n"
            ),
            vec![],
        );
        assert!(e.starts_with("invalid config: line 4, column"), "{e}");
        assert!(!e.contains(PW), "{e}");

        // From the environment and a file.
        let dir = std::env::temp_dir().join(format!("causeway-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key-password");
        std::fs::write(&file, "file-secret-77\n").unwrap();
        let text = format!(
            "[kafka.librdkafka]\n\"sasl.username\" = \"causeway\"\n[kafka.librdkafka_from_env]\n\"sasl.password\" = \"KAFKA_PASSWORD\"\n[kafka.librdkafka_from_file]\n\"ssl.key.password\" = \"{}\"\n",
            file.display()
        );
        let mut c = Config::from_toml(&text, std::iter::empty()).unwrap();
        let env = |v: &str| (v == "KAFKA_PASSWORD").then(|| PW.to_string());
        c.kafka.read_secrets(&env).unwrap();
        let client = crate::kafka::client_config(&c.kafka);
        assert_eq!(client.get("sasl.password"), Some(PW));
        assert_eq!(client.get("ssl.key.password"), Some("file-secret-77"));
        assert_eq!(client.get("sasl.username"), Some("causeway"));
        let shown = format!("{c:?} {client:?}");
        assert!(
            !shown.contains(PW) && !shown.contains("file-secret-77"),
            "{shown}"
        );
        // A variable that is not set is named, with its setting.
        let e = c.kafka.read_secrets(&|_| None).unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid config: environment variable KAFKA_PASSWORD (kafka.librdkafka_from_env.\"sasl.password\") is not set; set it or change kafka.librdkafka_from_env.\"sasl.password\""
        );
        // One setting from two places.
        let e = err(
            "[kafka.librdkafka]\n\"sasl.username\" = \"u\"\n[kafka.librdkafka_from_env]\n\"sasl.username\" = \"U\"\n",
            vec![],
        );
        assert!(e.contains("is set more than once"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
