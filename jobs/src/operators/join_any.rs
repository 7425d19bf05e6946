//! `join_any`: the records that correlate with at least one span of their trace.
//!
//! Joins records keyed by trace id against the shared [`SpansByTrace`] index,
//! keeps the pairs that satisfy `predicate`, and collapses each record to one
//! copy however many spans matched. Records must be distinct (log and audit
//! records carry their unique `Origin`), so `distinct` never merges two records.

use differential_dataflow::{ExchangeData, Hashable, VecCollection};

use crate::correlate::{SpanFacts, SpansByTrace};

/// Records of `records` (keyed by trace id) for which some span of the trace
/// satisfies `predicate`.
pub fn join_any<'s, R, P>(
    records: VecCollection<'s, u64, (u128, R)>,
    spans: &SpansByTrace<'s>,
    predicate: P,
) -> VecCollection<'s, u64, R>
where
    R: ExchangeData + Hashable + std::hash::Hash,
    P: Fn(&R, &SpanFacts) -> bool + 'static,
{
    records
        .arrange_by_key_named("RecordsByTrace")
        .join_core(spans.clone(), move |_trace, record, facts| {
            predicate(record, facts).then(|| record.clone())
        })
        .distinct()
}
