//! M2 `error_trace_ratio`: ERROR/FATAL log records (severity >= 17) whose trace id
//! joins a span of any service.

use crate::correlate::{LogRec, Winners};
use crate::params::Params;

/// `None` when `l` is not an error record, else whether its trace id joins a span.
pub fn good(l: &LogRec, spans: Option<&Winners<'_>>, params: &Params) -> Option<bool> {
    l.error
        .then(|| l.trace != 0 && spans.is_some_and(|w| w.joins(l.time, None, params)))
}
