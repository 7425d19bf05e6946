//! M5 `provenance_completeness`: audit records whose trace id joins a span of any
//! service.

use crate::correlate::{AuditRec, Winners};
use crate::params::Params;

/// Whether the audit record's trace id joins a span.
pub fn good(a: &AuditRec, spans: Option<&Winners<'_>>, params: &Params) -> bool {
    a.trace != 0 && spans.is_some_and(|w| w.joins(a.time, None, params))
}
