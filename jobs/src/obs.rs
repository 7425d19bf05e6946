//! The SLIs Causeway computes, by id.

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
