//! The service graph: an edge for every parent→child pair of spans in different
//! services (the parent must resolve, as in M4), counted in the child's window;
//! failed when either span has status `ERROR`.

use std::sync::Arc;

use causeway_schemas::SpanStatus;
use differential_dataflow::VecCollection;

use crate::correlate::SpansByTrace;
use crate::obs::EdgeObs;
use crate::params::Params;

/// Edge observations.
pub fn service_graph<'s>(
    spans: &SpansByTrace<'s>,
    params: &Params,
) -> VecCollection<'s, u64, EdgeObs> {
    let p = params.clone();
    spans.clone().flat_map_ref(move |_, f| {
        let s = &f.span;
        f.parent
            .as_ref()
            .filter(|parent| parent.resource.service != s.resource.service)
            .map(|parent| EdgeObs {
                window: p.window_of(s.event_time()),
                failed: parent.status == SpanStatus::Error || s.status == SpanStatus::Error,
                client: Arc::clone(&parent.resource),
                server: Arc::clone(&s.resource),
            })
    })
}
