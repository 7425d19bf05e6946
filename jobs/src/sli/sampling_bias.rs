//! M10 `sampling_bias`: |error share among all request records − error share among
//! traced request records|, per service/environment/version/window. The four
//! counts are observed here; the finalizer computes the gauge when both shares
//! are defined.

use causeway_schemas::LogRecord;
use differential_dataflow::VecCollection;

use crate::obs::{Obs, ObsKind, Sli};
use crate::params::Params;

/// M10 observations from all log records and the traced request records (M1 good).
pub fn sampling_bias<'s>(
    logs: VecCollection<'s, u64, LogRecord>,
    traced: VecCollection<'s, u64, LogRecord>,
    params: &Params,
) -> VecCollection<'s, u64, Obs> {
    let (p1, p2) = (params.clone(), params.clone());
    let all = logs.flat_map(move |l| counts(&l, ObsKind::Requests, ObsKind::ErrorRequests, &p1));
    let traced = traced.flat_map(move |l| {
        counts(
            &l,
            ObsKind::TracedRequests,
            ObsKind::TracedErrorRequests,
            &p2,
        )
    });
    all.concat(traced)
}

fn counts(l: &LogRecord, every: ObsKind, errors: ObsKind, p: &Params) -> Vec<Obs> {
    let mut out = Vec::new();
    if l.request {
        out.push(Obs::at(Sli::SamplingBias, every, &l.resource, l.time, p));
        if l.error_request {
            out.push(Obs::at(Sli::SamplingBias, errors, &l.resource, l.time, p));
        }
    }
    out
}
