//! M1 `trace_coverage`: request log records whose trace id joins a span of the
//! same service name (any environment or version) under the join rule.

use causeway_schemas::LogRecord;
use differential_dataflow::VecCollection;

use super::total_and_good;
use crate::correlate::SpansByTrace;
use crate::obs::{Obs, ObsKind, Sli};
use crate::operators::join_any::join_any;
use crate::params::Params;

/// The request records that are traced: M1's good population, also used by M10.
pub fn traced_requests<'s>(
    logs: VecCollection<'s, u64, LogRecord>,
    spans: &SpansByTrace<'s>,
    params: &Params,
) -> VecCollection<'s, u64, LogRecord> {
    let p = params.clone();
    let requests = logs
        .filter(|l| l.request && l.trace != 0)
        .map(|l| (l.trace, l));
    join_any(requests, spans, move |l, f| {
        f.span.resource.service == l.resource.service && p.joins(l.time, f.span.start)
    })
}

/// M1 observations: a `Total` per request record, a `Good` per traced one.
pub fn trace_coverage<'s>(
    logs: VecCollection<'s, u64, LogRecord>,
    traced: VecCollection<'s, u64, LogRecord>,
    params: &Params,
) -> VecCollection<'s, u64, Obs> {
    let (p1, p2) = (params.clone(), params.clone());
    let totals = logs.flat_map(move |l| {
        l.request
            .then(|| total_and_good(Sli::TraceCoverage, false, &l.resource, l.time, &p1))
            .into_iter()
            .flatten()
    });
    let goods =
        traced.map(move |l| Obs::at(Sli::TraceCoverage, ObsKind::Good, &l.resource, l.time, &p2));
    totals.concat(goods)
}
