//! M1 `trace_coverage`: request log records whose trace id joins a span of the
//! same service name (any environment or version) under the join rule. The
//! traced request records are also M10's traced population.

use crate::correlate::{LogRec, Winners};
use crate::params::Params;

/// Whether a request record is traced.
pub fn traced(l: &LogRec, spans: Option<&Winners<'_>>, params: &Params) -> bool {
    l.trace != 0 && spans.is_some_and(|w| w.joins(l.time, Some(l.res.service), params))
}
