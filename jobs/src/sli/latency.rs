//! R2 `latency`: the durations of entry spans, in microseconds, which the
//! finalizer folds into an HDR histogram per service/environment/version/window.

use differential_dataflow::VecCollection;

use crate::correlate::SpansByTrace;
use crate::obs::{Obs, ObsKind, Sli};
use crate::params::Params;

/// R2 observations: one `DurationUs` per entry span.
pub fn latency<'s>(spans: &SpansByTrace<'s>, params: &Params) -> VecCollection<'s, u64, Obs> {
    let p = params.clone();
    spans.clone().flat_map_ref(move |_, f| {
        let s = &f.span;
        let us = s.end.saturating_sub(s.start) / 1000;
        s.is_entry().then(|| {
            Obs::at(
                Sli::Latency,
                ObsKind::DurationUs(us),
                &s.resource,
                s.event_time(),
                &p,
            )
        })
    })
}
