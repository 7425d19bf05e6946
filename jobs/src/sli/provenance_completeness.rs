//! M5 `provenance_completeness`: audit records whose trace id joins a span of any
//! service.

use causeway_schemas::AuditRecord;
use differential_dataflow::VecCollection;

use super::total_and_good;
use crate::correlate::SpansByTrace;
use crate::obs::{Obs, ObsKind, Sli};
use crate::operators::join_any::join_any;
use crate::params::Params;

/// M5 observations.
pub fn provenance_completeness<'s>(
    audits: VecCollection<'s, u64, AuditRecord>,
    spans: &SpansByTrace<'s>,
    params: &Params,
) -> VecCollection<'s, u64, Obs> {
    let (p1, p2, p3) = (params.clone(), params.clone(), params.clone());
    let totals = audits.clone().flat_map(move |a| {
        total_and_good(Sli::ProvenanceCompleteness, false, &a.resource, a.time, &p1)
            .collect::<Vec<_>>()
    });
    let joined = join_any(
        audits.filter(|a| a.trace != 0).map(|a| (a.trace, a)),
        spans,
        move |a, f| p2.joins(a.time, f.span.start),
    )
    .map(move |a| {
        Obs::at(
            Sli::ProvenanceCompleteness,
            ObsKind::Good,
            &a.resource,
            a.time,
            &p3,
        )
    });
    totals.concat(joined)
}
