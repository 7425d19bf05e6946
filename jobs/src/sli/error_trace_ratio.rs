//! M2 `error_trace_ratio`: ERROR/FATAL log records (severity >= 17) whose trace id
//! joins a span of any service.

use causeway_schemas::LogRecord;
use differential_dataflow::VecCollection;

use super::joins_any_span;
use crate::correlate::SpansByTrace;
use crate::obs::{Obs, Sli};
use crate::params::Params;

/// M2 observations.
pub fn error_trace_ratio<'s>(
    logs: VecCollection<'s, u64, LogRecord>,
    spans: &SpansByTrace<'s>,
    params: &Params,
) -> VecCollection<'s, u64, Obs> {
    joins_any_span(
        Sli::ErrorTraceRatio,
        logs.filter(|l| l.is_error()),
        spans,
        params,
    )
}
