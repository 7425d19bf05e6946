//! Output records: SLI records, service-graph edges and dead-letter entries.
//!
//! Their JSON shapes are the contract of `sli.jsonl`, `service_graph.jsonl`,
//! `dlq.jsonl` and the `causeway_sli` / `causeway_service_graph` topics.

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
