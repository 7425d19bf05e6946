//! M2 `error_trace_ratio`: ERROR/FATAL log records (severity >= 17) whose trace id
//! joins a span of any service.

use causeway_schemas::LogRecord;
use differential_dataflow::VecCollection;

use super::total_and_good;
use crate::correlate::SpansByTrace;
use crate::obs::{Obs, ObsKind, Sli};
use crate::operators::join_any::join_any;
use crate::params::Params;

/// M2 observations.
pub fn error_trace_ratio<'s>(
    logs: VecCollection<'s, u64, LogRecord>,
    spans: &SpansByTrace<'s>,
    params: &Params,
) -> VecCollection<'s, u64, Obs> {
    let errors = logs.filter(|l| l.is_error());
    let (p1, p2, p3) = (params.clone(), params.clone(), params.clone());
    let totals = errors.clone().flat_map(move |l| {
        total_and_good(Sli::ErrorTraceRatio, false, &l.resource, l.time, &p1).collect::<Vec<_>>()
    });
    let joined = join_any(
        errors.filter(|l| l.trace != 0).map(|l| (l.trace, l)),
        spans,
        move |l, f| p2.joins(l.time, f.span.start),
    )
    .map(move |l| {
        Obs::at(
            Sli::ErrorTraceRatio,
            ObsKind::Good,
            &l.resource,
            l.time,
            &p3,
        )
    });
    totals.concat(joined)
}
