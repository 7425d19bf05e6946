//! Span correlation: de-duplication and parent resolution, arranged by trace id.
//!
//! Input: spans keyed by nothing. Output: one arrangement, trace id → [`SpanFacts`],
//! shared by every job that joins on trace id (style: build the index once).
//!
//! - **Identity** (SPEC §3): of the spans with one (trace id, span id), the one with
//!   the greatest end time counts; ties go to `ERROR`, then to the smallest service
//!   name, then to the smallest span record overall (so the choice is total).
//! - **Parent resolution** (SPEC §3 M4): a span's parent resolves when the trace
//!   holds that span id and it starts in `[t - horizon, t + grace]` of the child's
//!   start `t`.
//!
//! Both are per-trace computations, done in one differential `reduce` keyed by
//! trace id, so a trace is re-evaluated only when one of its spans changes.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use causeway_schemas::{Resource, Span, SpanStatus};
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use crate::params::Params;

/// The resolved parent of a span.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ParentInfo {
    /// Parent's start time.
    pub start: u64,
    /// Parent's status.
    pub status: SpanStatus,
    /// Parent's resource.
    pub resource: Arc<Resource>,
}

/// A de-duplicated span and its resolved parent, if any.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SpanFacts {
    /// The winning span of its (trace id, span id).
    pub span: Span,
    /// The parent, when the span has one and it resolves under the join rule.
    pub parent: Option<ParentInfo>,
}

/// The shared index: trace id → de-duplicated spans with their parents.
pub type SpansByTrace<'s> = Arranged<'s, TraceAgent<ValSpine<u128, SpanFacts, u64, isize>>>;

/// The ordering of duplicates: `Greater` means `a` wins over `b`.
pub fn duplicate_order(a: &Span, b: &Span) -> Ordering {
    a.end
        .cmp(&b.end)
        .then_with(|| (a.status == SpanStatus::Error).cmp(&(b.status == SpanStatus::Error)))
        .then_with(|| b.resource.service.cmp(&a.resource.service))
        .then_with(|| b.cmp(a))
}

/// Resolves the facts of one trace's spans. `spans` may hold duplicates; only
/// entries with a positive count are present.
pub fn trace_facts<'a>(spans: impl Iterator<Item = &'a Span>, params: &Params) -> Vec<SpanFacts> {
    let mut winners: HashMap<u64, &Span> = HashMap::new();
    for s in spans {
        winners
            .entry(s.span)
            .and_modify(|w| {
                if duplicate_order(s, w) == Ordering::Greater {
                    *w = s;
                }
            })
            .or_insert(s);
    }
    let mut out: Vec<SpanFacts> = winners
        .values()
        .map(|s| {
            let parent = (s.parent != 0)
                .then(|| winners.get(&s.parent))
                .flatten()
                .filter(|p| params.joins(s.start, p.start))
                .map(|p| ParentInfo {
                    start: p.start,
                    status: p.status,
                    resource: Arc::clone(&p.resource),
                });
            SpanFacts {
                span: (*s).clone(),
                parent,
            }
        })
        .collect();
    out.sort();
    out
}

/// De-duplicates `spans`, resolves parents, and arranges the result by trace id.
pub fn spans_by_trace<'s>(
    spans: VecCollection<'s, u64, Span>,
    params: &Params,
) -> SpansByTrace<'s> {
    let params = params.clone();
    spans
        .map(|s| (s.trace, s))
        .arrange_by_key_named("SpansByTraceRaw")
        .reduce_abelian::<_, ValBuilder<_, _, _, _>, ValSpine<u128, SpanFacts, u64, isize>, _, _>(
            "Correlate",
            move |_trace, input, output| {
                let present = input.iter().filter(|(_, n)| *n > 0).map(|(s, _)| *s);
                output.extend(trace_facts(present, &params).into_iter().map(|f| (f, 1)));
            },
            |buffer, key, updates| {
                buffer.clear();
                buffer.extend(updates.drain(..).map(|(v, t, r)| ((*key, v), t, r)));
            },
        )
}
