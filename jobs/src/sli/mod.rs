//! The SLIs of SPEC §3, one file each. Every job is a function from collections
//! to a collection of [`Obs`]: one `Total` per record of the SLI's population and
//! one `Good` per good record (or the SLI's own kinds), in the record's window.

pub mod availability;
pub mod context_loss;
pub mod error_trace_ratio;
pub mod latency;
pub mod latency_capture;
pub mod provenance_completeness;
pub mod sampling_bias;
pub mod sensitive_exposure;
pub mod service_graph;
pub mod trace_coverage;

use std::sync::Arc;

use causeway_schemas::{AuditRecord, LogRecord, Resource};
use differential_dataflow::{ExchangeData, VecCollection};

use crate::correlate::SpansByTrace;
use crate::obs::{Obs, ObsKind, Sli};
use crate::operators::join_any::join_any;
use crate::params::Params;

impl Obs {
    /// An observation of `sli` for a record of `resource` at event time `t_ns`.
    pub fn at(
        sli: Sli,
        kind: ObsKind,
        resource: &Arc<Resource>,
        t_ns: u64,
        params: &Params,
    ) -> Obs {
        Obs {
            sli,
            window: params.window_of(t_ns),
            kind,
            resource: Arc::clone(resource),
        }
    }
}

/// `Total`, plus `Good` when `good`.
pub(crate) fn total_and_good(
    sli: Sli,
    good: bool,
    resource: &Arc<Resource>,
    t: u64,
    p: &Params,
) -> impl Iterator<Item = Obs> {
    let total = Obs::at(sli, ObsKind::Total, resource, t, p);
    let good = good.then(|| Obs::at(sli, ObsKind::Good, resource, t, p));
    std::iter::once(total).chain(good)
}

/// A record with trace context: log records and audit records.
pub trait Traced: ExchangeData + std::hash::Hash {
    /// Trace id, 0 when absent.
    fn trace(&self) -> u128;
    /// Event time, ns.
    fn time(&self) -> u64;
    /// Owning resource.
    fn resource(&self) -> &Arc<Resource>;
}

impl Traced for LogRecord {
    fn trace(&self) -> u128 {
        self.trace
    }
    fn time(&self) -> u64 {
        self.time
    }
    fn resource(&self) -> &Arc<Resource> {
        &self.resource
    }
}

impl Traced for AuditRecord {
    fn trace(&self) -> u128 {
        self.trace
    }
    fn time(&self) -> u64 {
        self.time
    }
    fn resource(&self) -> &Arc<Resource> {
        &self.resource
    }
}

/// A `Total` per record and a `Good` per record whose trace id joins a span of
/// any service under the join rule (M2, M5).
pub(crate) fn joins_any_span<'s, R: Traced>(
    sli: Sli,
    records: VecCollection<'s, u64, R>,
    spans: &SpansByTrace<'s>,
    params: &Params,
) -> VecCollection<'s, u64, Obs> {
    let (p1, p2, p3) = (params.clone(), params.clone(), params.clone());
    let totals = records
        .clone()
        .map(move |r| Obs::at(sli, ObsKind::Total, r.resource(), r.time(), &p1));
    let keyed = records.filter(|r| r.trace() != 0).map(|r| (r.trace(), r));
    let goods = join_any(keyed, spans, move |r, f| p2.joins(r.time(), f.span.start))
        .map(move |r| Obs::at(sli, ObsKind::Good, r.resource(), r.time(), &p3));
    totals.concat(goods)
}

/// Every per-record SLI over the shared span index, logs and audit records.
pub fn all<'s>(
    spans: &SpansByTrace<'s>,
    logs: VecCollection<'s, u64, LogRecord>,
    audits: VecCollection<'s, u64, AuditRecord>,
    params: &Params,
) -> VecCollection<'s, u64, Obs> {
    let traced = trace_coverage::traced_requests(logs.clone(), spans, params);
    trace_coverage::trace_coverage(logs.clone(), traced.clone(), params)
        .concat(sampling_bias::sampling_bias(logs.clone(), traced, params))
        .concat(error_trace_ratio::error_trace_ratio(
            logs.clone(),
            spans,
            params,
        ))
        .concat(latency_capture::latency_capture(spans, params))
        .concat(context_loss::context_loss(spans, params))
        .concat(provenance_completeness::provenance_completeness(
            audits, spans, params,
        ))
        .concat(sensitive_exposure::sensitive_exposure(spans, logs, params))
        .concat(availability::availability(spans, params))
        .concat(latency::latency(spans, params))
}
