//! Causeway's dataflow jobs on timely + differential-dataflow.
//!
//! The jobs know collections, not Kafka: [`build`] takes the decoded spans, logs
//! and audit records as differential collections whose timestamps are event-time
//! seconds (see [`params`] for when a record enters and leaves its collection) and
//! returns the final SLI records and service-graph edges as timely streams, each
//! record at the time its window became final.
//!
//! Each SLI of SPEC §3 is a plain function in [`sli`]; they share one arrangement
//! of the de-duplicated spans by trace id ([`correlate`]).
#![warn(missing_docs)]

pub mod correlate;
pub mod evidence;
pub mod obs;
pub mod operators;
pub mod params;
pub mod sli;
pub mod slo;

use causeway_schemas::records::{ChangeRecord, ExemplarRecord, ServiceGraphRecord, SliRecord};
use causeway_schemas::{AuditRecord, DeployEvent, LogRecord, Span};
use differential_dataflow::VecCollection;
use timely::dataflow::StreamVec;

pub use obs::{EdgeObs, Obs, ObsKind, Sli};
pub use params::Params;

/// The jobs' inputs, timestamped as [`params`] prescribes.
pub struct Inputs<'s> {
    /// Spans, present from the second of their event time until [`Params::span_lifetime`] ends.
    pub spans: VecCollection<'s, u64, Span>,
    /// Log records, present during [`Params::record_lifetime`].
    pub logs: VecCollection<'s, u64, LogRecord>,
    /// Audit records, present during [`Params::record_lifetime`].
    pub audits: VecCollection<'s, u64, AuditRecord>,
    /// Deploy events, present during [`Params::record_lifetime`].
    pub deploys: VecCollection<'s, u64, DeployEvent>,
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
}

/// Builds every SLI job and the service graph over `inputs`.
pub fn build<'s>(inputs: Inputs<'s>, params: &Params) -> Outputs<'s> {
    let spans = correlate::spans_by_trace(inputs.spans, params);
    let changes = evidence::changes(inputs.deploys, inputs.audits.clone(), params);
    let observations = sli::all(&spans, inputs.logs, inputs.audits, params);
    let edges = sli::service_graph::service_graph(&spans, params);
    Outputs {
        sli: operators::finalize::finalize_sli(observations, params),
        service_graph: operators::finalize::finalize_edges(edges, params),
        exemplars: evidence::exemplars(&spans, params),
        changes,
    }
}
