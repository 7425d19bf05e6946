//! M4 `context_loss`: `good` counts spans that are roots or whose parent resolves
//! (same trace, that span id, starting in `[t - horizon, t + grace]`); every other
//! span is an orphan. `context_loss_rate = (total - good) / total`.

use differential_dataflow::VecCollection;

use super::total_and_good;
use crate::correlate::SpansByTrace;
use crate::obs::{Obs, Sli};
use crate::params::Params;

/// M4 observations.
pub fn context_loss<'s>(spans: &SpansByTrace<'s>, params: &Params) -> VecCollection<'s, u64, Obs> {
    let p = params.clone();
    spans.clone().flat_map_ref(move |_, f| {
        let good = f.span.parent == 0 || f.parent.is_some();
        total_and_good(
            Sli::ContextLoss,
            good,
            &f.span.resource,
            f.span.event_time(),
            &p,
        )
        .collect::<Vec<_>>()
    })
}
