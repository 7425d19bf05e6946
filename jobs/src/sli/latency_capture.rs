//! M3 `latency_capture`: spans with valid timing. Valid: `start > 0`,
//! `end >= start`, `end - start <= max_span_duration`, and, when the parent
//! resolves, the span does not start more than `skew_tolerance` before it.

use differential_dataflow::VecCollection;

use super::total_and_good;
use crate::correlate::{SpanFacts, SpansByTrace};
use crate::obs::{Obs, Sli};
use crate::params::Params;

/// Whether a span's timing is valid.
pub fn valid_timing(f: &SpanFacts, p: &Params) -> bool {
    let s = &f.span;
    s.start > 0
        && s.end >= s.start
        && s.end - s.start <= p.max_span_duration_ns
        && f.parent
            .as_ref()
            .is_none_or(|parent| parent.start <= s.start.saturating_add(p.skew_tolerance_ns))
}

/// M3 observations.
pub fn latency_capture<'s>(
    spans: &SpansByTrace<'s>,
    params: &Params,
) -> VecCollection<'s, u64, Obs> {
    let p = params.clone();
    spans.clone().flat_map_ref(move |_, f| {
        total_and_good(
            Sli::LatencyCapture,
            valid_timing(f, &p),
            &f.span.resource,
            f.span.event_time(),
            &p,
        )
        .collect::<Vec<_>>()
    })
}
