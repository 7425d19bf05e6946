//! Output records: SLI records, service-graph edges and dead-letter entries.
//!
//! Their JSON shapes are the contract of `sli.jsonl`, `service_graph.jsonl`,
//! `dlq.jsonl` and the `causeway_sli` / `causeway_service_graph` topics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One SLI record per (sli, service, environment, version, window).
///
/// Ratio SLIs carry `good` and `total`. `latency` carries `total` and the
/// percentiles and histogram, no `good`. `sampling_bias` carries `value` and the
/// four counts instead of `good`/`total`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SliRecord {
    /// SLI id (`trace_coverage`, `latency`, ...).
    pub sli: String,
    /// Service name.
    pub service: String,
    /// Deployment environment; empty if unknown.
    pub environment: String,
    /// Service version; empty if unknown.
    pub version: String,
    /// Window start, Unix seconds.
    pub window_start: u64,
    /// Window end (exclusive), Unix seconds.
    pub window_end: u64,
    /// Good events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good: Option<u64>,
    /// All events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Median entry-span duration, milliseconds (`latency` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// 90th percentile, milliseconds (`latency` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90_ms: Option<f64>,
    /// 99th percentile, milliseconds (`latency` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// HDR histogram of durations in microseconds, V2 format, base64 (`latency` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<String>,
    /// The gauge (`sampling_bias` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Request records (`sampling_bias` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// Error request records (`sampling_bias` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_requests: Option<u64>,
    /// Traced request records (`sampling_bias` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traced_requests: Option<u64>,
    /// Traced error request records (`sampling_bias` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traced_error_requests: Option<u64>,
}

impl SliRecord {
    /// A ratio record with `good` and `total`.
    pub fn ratio(
        sli: &str,
        key: (&str, &str, &str),
        window: (u64, u64),
        good: u64,
        total: u64,
    ) -> Self {
        SliRecord {
            good: Some(good),
            total: Some(total),
            ..Self::bare(sli, key, window)
        }
    }

    /// A record with only its dimensions filled in.
    pub fn bare(sli: &str, key: (&str, &str, &str), window: (u64, u64)) -> Self {
        SliRecord {
            sli: sli.to_string(),
            service: key.0.to_string(),
            environment: key.1.to_string(),
            version: key.2.to_string(),
            window_start: window.0,
            window_end: window.1,
            good: None,
            total: None,
            p50_ms: None,
            p90_ms: None,
            p99_ms: None,
            histogram: None,
            value: None,
            requests: None,
            error_requests: None,
            traced_requests: None,
            traced_error_requests: None,
        }
    }

    /// The sort key of `sli.jsonl`: (window_start, sli, service, environment, version).
    pub fn sort_key(&self) -> (u64, &str, &str, &str, &str) {
        (
            self.window_start,
            &self.sli,
            &self.service,
            &self.environment,
            &self.version,
        )
    }
}

/// One service-graph edge per (client, server, window).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceGraphRecord {
    /// Service of the parent span.
    pub client: String,
    /// Service of the child span.
    pub server: String,
    /// Window start of the child span, Unix seconds.
    pub window_start: u64,
    /// Window end, Unix seconds.
    pub window_end: u64,
    /// Parent→child pairs.
    pub total: u64,
    /// Pairs where either span has status `ERROR`.
    pub failed: u64,
}

/// A histogram over the fixed bounds of a Tempo-compatible metric.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BucketCounts {
    /// Observations per bucket, not cumulative, in the order of the configured
    /// upper bounds (inclusive); the last one is `+Inf`.
    pub buckets: Vec<u64>,
    /// Sum of the observations, nanoseconds.
    pub sum_ns: u64,
}

/// Span metrics of one (service, environment, version, span name, kind, status,
/// window): the source of `traces_spanmetrics_*` (not written to a topic).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpanMetricsRecord {
    /// Window start, Unix seconds.
    pub window_start: u64,
    /// Service name.
    pub service: String,
    /// Deployment environment; empty if unknown.
    pub environment: String,
    /// Service version; empty if unknown.
    pub version: String,
    /// Span name (`__overflow__` past the cap).
    pub span_name: String,
    /// `SPAN_KIND_SERVER`, ... as Tempo writes it.
    pub span_kind: String,
    /// `STATUS_CODE_UNSET`, `STATUS_CODE_OK` or `STATUS_CODE_ERROR`.
    pub status_code: String,
    /// Spans.
    pub calls: u64,
    /// Durations of the spans (0 for a span without a valid start and end).
    pub latency: BucketCounts,
}

/// Service-graph metrics of one (client, server, connection type, window): the
/// source of `traces_service_graph_*` (not written to a topic).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GraphMetricsRecord {
    /// Window start (of the child spans), Unix seconds.
    pub window_start: u64,
    /// Service of the parent spans; empty for unpaired spans.
    pub client: String,
    /// Service of the child spans.
    pub server: String,
    /// `""` or `messaging_system` (a `PRODUCER` parent of a `CONSUMER` child).
    pub connection_type: String,
    /// Parent→child pairs.
    pub total: u64,
    /// Pairs where either span has status `ERROR`.
    pub failed: u64,
    /// Spans whose parent did not resolve (M4's orphans).
    pub unpaired: u64,
    /// Orphans whose parent span is in the trace, outside the join range.
    pub dropped: u64,
    /// Child span durations of the pairs.
    pub server_latency: BucketCounts,
    /// Parent span durations of the pairs.
    pub client_latency: BucketCounts,
}

/// One dead-lettered message or record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DlqRecord {
    /// Input file (`replay`) or topic (`run`).
    pub source: String,
    /// Partition (`run`); in `replay`, the file ordinal.
    pub partition: u32,
    /// Line (jsonl, 1-based), message ordinal (pb, 0-based) or Kafka offset.
    pub offset: u64,
    /// Ordinal of the rejected record inside its message; absent when the whole
    /// message was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_index: Option<u32>,
    /// Reason, as in `causeway_input_rejected_total{reason}`.
    pub reason: String,
    /// What was wrong, without attribute values.
    pub detail: String,
}

/// Bad-event exemplars of one (sli, service, environment, window), chosen
/// deterministically: for `availability`, the smallest trace ids of `ERROR` entry
/// spans; for `latency`, the slowest entry spans (ties by trace id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExemplarRecord {
    /// SLI id.
    pub sli: String,
    /// Service name.
    pub service: String,
    /// Deployment environment.
    pub environment: String,
    /// Window start, Unix seconds.
    pub window_start: u64,
    /// The exemplars, best first.
    pub exemplars: Vec<Exemplar>,
}

/// One exemplar trace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Exemplar {
    /// Trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// Duration of the bad entry span, microseconds.
    pub duration_us: u64,
    /// Service owning the deepest `ERROR` span of the trace (ties: smallest name);
    /// empty when the trace has no `ERROR` span.
    pub deepest_error_service: String,
}

/// A final deploy event with the actor of its correlated audit record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// Event time, Unix nanoseconds.
    pub time_unix_nano: u64,
    /// Service deployed.
    pub service: String,
    /// Environment, empty if unknown.
    pub environment: String,
    /// `deployed`, `upgraded`, `rolledback` or `removed`.
    pub action: String,
    /// Version deployed, empty if unknown.
    pub version: String,
    /// Artifact id, empty if unknown.
    pub artifact: String,
    /// CDEvents `context.id`.
    pub id: String,
    /// Actor of the audit record sharing the deploy's trace id (the smallest, when
    /// several do); empty when none does.
    pub actor: String,
}

/// The evidence the alert evaluator consumed, as written to `causeway_evidence`
/// (so that a restart can rebuild the evaluator's state exactly).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvidenceRecord {
    /// Exemplars of one (sli, service, environment, window).
    Exemplars(ExemplarRecord),
    /// A deploy event.
    Change(ChangeRecord),
}

/// Burn rates and budget of one SLO target, evaluated when a window became final.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SloRecord {
    /// SLO name.
    pub slo: String,
    /// Service (a `*` SLO has one record per service seen).
    pub service: String,
    /// Environment the SLO is restricted to; empty for all.
    pub environment: String,
    /// SLI id.
    pub sli: String,
    /// End of the window that became final (evaluation time), Unix seconds.
    pub evaluated_at: u64,
    /// Objective.
    pub objective: f64,
    /// Burn rate per policy window (`"5m"`, `"1h"`, ...), in the policy's order.
    pub burn_rates: Vec<WindowBurn>,
    /// `1 - bad(period) / (total(period) * (1 - objective))`.
    pub error_budget_remaining: f64,
    /// Bad events in the period.
    pub period_bad: u64,
    /// Events in the period.
    pub period_total: u64,
}

/// The burn rate over one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowBurn {
    /// Window, as written in the policy (`"1h"`).
    pub window: String,
    /// Bad events in the window.
    pub bad: u64,
    /// Events in the window.
    pub total: u64,
    /// Burn rate; 0 below `min_events`.
    pub burn_rate: f64,
}

/// One alert state change (SPEC §5), the record of `alerts.jsonl` and `causeway_alerts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Stable hash of (slo, service, environment, severity), 16 hex digits.
    pub dedup_key: String,
    /// Hash of (culprit, suspected deploy id): alerts with one cause share it.
    pub group_key: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// True when the alert started inside a maintenance window: recorded, not paged.
    pub suppressed: bool,
    /// When the alert started firing (a window end), RFC 3339.
    pub starts_at: String,
    /// When it resolved, RFC 3339; absent while firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// The window end this record was evaluated at, RFC 3339.
    pub evaluated_at: String,
    /// `alertname`, `slo`, `service`, `environment`, `severity`.
    pub labels: BTreeMap<String, String>,
    /// One-line description.
    pub summary: String,
    /// SLI id.
    pub sli: String,
    /// Objective.
    pub objective: f64,
    /// Burn rates of every policy window at evaluation.
    pub burn_rates: Vec<WindowBurn>,
    /// Error budget remaining over the period.
    pub error_budget_remaining: f64,
    /// Up to K exemplar trace ids of bad events.
    pub exemplar_trace_ids: Vec<String>,
    /// Deploys of the service and its direct downstream dependencies in
    /// `[starts_at - change_lookback, starts_at]`, newest first.
    pub suspected_changes: Vec<ChangeRecord>,
    /// Service owning the deepest `ERROR` span most often among the exemplars;
    /// the alert's own service when no exemplar has an `ERROR` span.
    pub culprit: String,
    /// Runbook link, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
}

impl AlertRecord {
    /// A label's value, empty when absent.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}
