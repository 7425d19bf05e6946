//! Observations: the per-record facts every SLI job emits and the finalizer counts.

use std::sync::Arc;

use causeway_schemas::Resource;
use serde::{Deserialize, Serialize};

/// The SLIs of SPEC §3 that Causeway computes per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Sli {
    /// M1.
    TraceCoverage,
    /// M2.
    ErrorTraceRatio,
    /// M3.
    LatencyCapture,
    /// M4.
    ContextLoss,
    /// M5.
    ProvenanceCompleteness,
    /// M9.
    SensitiveExposure,
    /// M10.
    SamplingBias,
    /// R1.
    Availability,
    /// R2.
    Latency,
}

impl Sli {
    /// The SLI id used in records, metrics and SLO configs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Sli::TraceCoverage => "trace_coverage",
            Sli::ErrorTraceRatio => "error_trace_ratio",
            Sli::LatencyCapture => "latency_capture",
            Sli::ContextLoss => "context_loss",
            Sli::ProvenanceCompleteness => "provenance_completeness",
            Sli::SensitiveExposure => "sensitive_exposure",
            Sli::SamplingBias => "sampling_bias",
            Sli::Availability => "availability",
            Sli::Latency => "latency",
        }
    }

    /// Every SLI.
    pub const ALL: [Sli; 9] = [
        Sli::TraceCoverage,
        Sli::ErrorTraceRatio,
        Sli::LatencyCapture,
        Sli::ContextLoss,
        Sli::ProvenanceCompleteness,
        Sli::SensitiveExposure,
        Sli::SamplingBias,
        Sli::Availability,
        Sli::Latency,
    ];

    /// Parses an SLI id.
    pub fn parse(s: &str) -> Option<Sli> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// What one observation counts towards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ObsKind {
    /// One event of the SLI's population.
    Total,
    /// One good event.
    Good,
    /// M10: a request record.
    Requests,
    /// M10: an error request record.
    ErrorRequests,
    /// M10: a traced request record.
    TracedRequests,
    /// M10: a traced error request record.
    TracedErrorRequests,
    /// R2: one entry span of this duration, microseconds.
    DurationUs(u64),
}

/// One observation of an SLI for a record in a window.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Obs {
    /// Which SLI.
    pub sli: Sli,
    /// Start of the record's window, Unix seconds.
    pub window: u64,
    /// What it counts.
    pub kind: ObsKind,
    /// The record's service, environment and version.
    pub resource: Arc<Resource>,
}

/// One parent→child pair of spans in different services (service graph).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EdgeObs {
    /// Window of the child span.
    pub window: u64,
    /// Whether either span has status `ERROR`.
    pub failed: bool,
    /// Parent span's service.
    pub client: Arc<Resource>,
    /// Child span's service.
    pub server: Arc<Resource>,
}
