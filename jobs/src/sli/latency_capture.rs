//! M3 `latency_capture`: spans with valid timing. Valid: `start > 0`,
//! `end >= start`, `end - start <= max_span_duration`, and, when the parent
//! resolves, the span does not start more than `skew_tolerance` before it.

use crate::correlate::SpanRec;
use crate::params::Params;

/// Whether a span's timing is valid, given its resolved parent.
pub fn valid_timing(s: &SpanRec, parent: Option<&SpanRec>, p: &Params) -> bool {
    s.start > 0
        && s.end >= s.start
        && s.end - s.start <= p.max_span_duration_ns
        && parent.is_none_or(|parent| parent.start <= s.start.saturating_add(p.skew_tolerance_ns))
}
