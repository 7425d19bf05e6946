//! Causeway's dataflow jobs on timely + differential-dataflow.
//!
//! The jobs know collections, not Kafka: [`build`] takes the decoded spans, logs
//! and audit records as differential collections whose timestamps are event-time
//! seconds (see [`params`] for when a record enters and leaves its collection) and
//! returns the final SLI records and service-graph edges as timely streams, each
//! record at the time its window became final.
//!
//! Spans, logs and audit records meet in one frontier-driven operator keyed by
//! trace id ([`correlate`]), which evaluates each window once when it is final;
//! each SLI of SPEC §3 is a plain function in [`sli`] applied there. Deploy
//! events are joined with audit records in differential ([`evidence::changes`]).
#![warn(missing_docs)]

pub mod correlate;
pub mod evidence;
pub mod intern;
pub mod obs;
pub mod operators;
pub mod params;
pub mod sli;
pub mod slo;

use causeway_schemas::records::{ChangeRecord, ExemplarRecord, ServiceGraphRecord, SliRecord};
use causeway_schemas::{AuditRecord, DeployEvent, LogRecord, Span};
use differential_dataflow::VecCollection;
use timely::dataflow::operators::vec::{Map, Partition};
use timely::dataflow::StreamVec;

use operators::finalize::Final;

pub use obs::Sli;
pub use params::Params;

/// The jobs' inputs, timestamped as [`params`] prescribes.
pub struct Inputs<'s> {
    /// Spans, log records and audit records in compact form ([`correlate::Rec`]),
    /// in [`correlate::Shard`]s bound for the worker that correlates them. Only
    /// insertions: the correlation operator evicts records itself when
    /// [`Params::span_lifetime`] / [`Params::record_lifetime`] ends.
    pub records: StreamVec<'s, u64, correlate::Shard>,
    /// Audit records, present during [`Params::record_lifetime`] (inserted and
    /// retracted), for the actors of deploy events.
    pub audits: VecCollection<'s, u64, AuditRecord>,
    /// Deploy events, present during [`Params::record_lifetime`].
    pub deploys: VecCollection<'s, u64, DeployEvent>,
}

impl<'s> Inputs<'s> {
    /// The inputs from collections of decoded events (tests and benches; the
    /// pipeline builds the compact records as it ingests).
    pub fn from_events(
        spans: VecCollection<'s, u64, Span>,
        logs: VecCollection<'s, u64, LogRecord>,
        audits: VecCollection<'s, u64, AuditRecord>,
        deploys: VecCollection<'s, u64, DeployEvent>,
    ) -> Self {
        Inputs {
            records: correlate::compact(spans, logs, audits.clone()),
            audits,
            deploys,
        }
    }
}

/// The jobs' outputs: each record appears once, at the time its window became final.
pub struct Outputs<'s> {
    /// Final SLI records (unsorted; sinks sort each time's batch).
    pub sli: StreamVec<'s, u64, SliRecord>,
    /// Final service-graph edges.
    pub service_graph: StreamVec<'s, u64, ServiceGraphRecord>,
    /// Final exemplar traces of bad events.
    pub exemplars: StreamVec<'s, u64, ExemplarRecord>,
    /// Final deploy events with their actors.
    pub changes: StreamVec<'s, u64, ChangeRecord>,
    /// Span and service-graph metrics (empty unless [`Params::metrics`] is set).
    pub metrics: StreamVec<'s, u64, Final>,
}

/// Builds every SLI job, the service graph and the evidence over `inputs`.
pub fn build<'s>(inputs: Inputs<'s>, params: &Params) -> Outputs<'s> {
    let changes = evidence::changes(inputs.deploys, inputs.audits, params);
    let parts = correlate::correlate(inputs.records, params);
    let finals = operators::finalize::merge(parts, params);
    // One output per kind of record; moved, not cloned, into its stream.
    let kind = |f: &Final| match f {
        Final::Sli(_) => 0,
        Final::Edge(_) => 1,
        Final::Exemplars(_) => 2,
        Final::SpanMetrics(_) | Final::GraphMetrics(_) => 3,
    };
    let mut kinds = finals.partition(4, move |f| (kind(&f), f)).into_iter();
    let mut next = || kinds.next().expect("four partitions");
    let (sli, service_graph, exemplars, metrics) = (next(), next(), next(), next());
    Outputs {
        sli: sli.flat_map(|f| match f {
            Final::Sli(r) => Some(r),
            _ => None,
        }),
        service_graph: service_graph.flat_map(|f| match f {
            Final::Edge(r) => Some(r),
            _ => None,
        }),
        exemplars: exemplars.flat_map(|f| match f {
            Final::Exemplars(r) => Some(r),
            _ => None,
        }),
        metrics,
        changes,
    }
}

/// A seeded xorshift64 stream: random inputs for tests, the same on every run.
#[cfg(test)]
pub(crate) fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
