//! R1 `availability`: entry spans (`SERVER`, `CONSUMER`, or roots) whose status is
//! not `ERROR`.

use causeway_schemas::SpanStatus;
use differential_dataflow::VecCollection;

use super::total_and_good;
use crate::correlate::SpansByTrace;
use crate::obs::{Obs, Sli};
use crate::params::Params;

/// R1 observations.
pub fn availability<'s>(spans: &SpansByTrace<'s>, params: &Params) -> VecCollection<'s, u64, Obs> {
    let p = params.clone();
    spans.clone().flat_map_ref(move |_, f| {
        let s = &f.span;
        s.is_entry()
            .then(|| {
                total_and_good(
                    Sli::Availability,
                    s.status != SpanStatus::Error,
                    &s.resource,
                    s.event_time(),
                    &p,
                )
            })
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
    })
}
