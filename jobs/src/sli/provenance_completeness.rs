//! M5 `provenance_completeness`: audit records whose trace id joins a span of any
//! service.

use causeway_schemas::AuditRecord;
use differential_dataflow::VecCollection;

use super::joins_any_span;
use crate::correlate::SpansByTrace;
use crate::obs::{Obs, Sli};
use crate::params::Params;

/// M5 observations.
pub fn provenance_completeness<'s>(
    audits: VecCollection<'s, u64, AuditRecord>,
    spans: &SpansByTrace<'s>,
    params: &Params,
) -> VecCollection<'s, u64, Obs> {
    joins_any_span(Sli::ProvenanceCompleteness, audits, spans, params)
}
