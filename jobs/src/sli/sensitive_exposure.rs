//! M9 `sensitive_exposure`: spans and log records in which no attribute value
//! (nor the log body) matches a PII detector. The decoders flag records; matched
//! values never reach the dataflow.

use causeway_schemas::LogRecord;
use differential_dataflow::VecCollection;

use super::total_and_good;
use crate::correlate::SpansByTrace;
use crate::obs::{Obs, Sli};
use crate::params::Params;

/// M9 observations over de-duplicated spans and all log records.
pub fn sensitive_exposure<'s>(
    spans: &SpansByTrace<'s>,
    logs: VecCollection<'s, u64, LogRecord>,
    params: &Params,
) -> VecCollection<'s, u64, Obs> {
    let (p1, p2) = (params.clone(), params.clone());
    let from_spans = spans.clone().flat_map_ref(move |_, f| {
        total_and_good(
            Sli::SensitiveExposure,
            !f.span.pii,
            &f.span.resource,
            f.span.event_time(),
            &p1,
        )
        .collect::<Vec<_>>()
    });
    let from_logs = logs.flat_map(move |l| {
        total_and_good(Sli::SensitiveExposure, !l.pii, &l.resource, l.time, &p2).collect::<Vec<_>>()
    });
    from_spans.concat(from_logs)
}
