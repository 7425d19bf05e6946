//! Worker setup: the input sessions, the jobs, and the sinks they feed.

use causeway_jobs::operators::finalize::Final as JobFinal;
use causeway_jobs::slo::{Evaluation, Evaluator, Final};
use causeway_jobs::Inputs as JobInputs;
use causeway_schemas::records::{
    AlertRecord, ChangeRecord, EvidenceRecord, ExemplarRecord, GraphMetricsRecord,
    ServiceGraphRecord, SliRecord, SloRecord, SpanMetricsRecord,
};
use differential_dataflow::input::Input;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Concat, Probe};
use timely::dataflow::StreamVec;
use timely::worker::Worker;

use crate::config::Settings;
use crate::ingest::{Inputs, Records};

/// Receives the final outputs, one sorted batch per finalization time, on worker 0.
pub trait OutputSink {
    /// Final SLI records of one time, sorted by (window_start, sli, service, environment, version).
    fn sli(&mut self, time: u64, records: &[SliRecord]);
    /// Final service-graph edges of one time, sorted by (window_start, client, server).
    fn edges(&mut self, time: u64, records: &[ServiceGraphRecord]);
    /// Burn rates and budgets evaluated at one time, sorted by (slo, service).
    fn slo(&mut self, time: u64, records: &[SloRecord]);
    /// The evidence the alert evaluator consumed at one time (exemplars, changes).
    fn evidence(&mut self, time: u64, records: &[EvidenceRecord]);
    /// Alert state changes of one time, sorted by dedup key.
    fn alerts(&mut self, time: u64, records: &[AlertRecord]);
    /// Span and service-graph metrics of one time (only when
    /// `Params::metrics` is set), sorted; they feed `/metrics` only.
    fn metrics(&mut self, time: u64, spans: &[SpanMetricsRecord], graph: &[GraphMetricsRecord]) {
        let _ = (time, spans, graph);
    }
}

/// Everything the jobs finalize, on its way to worker 0.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Output {
    Sli(JsonSli),
    Edge(ServiceGraphRecord),
    Exemplar(ExemplarRecord),
    Change(ChangeRecord),
    SpanMetrics(SpanMetricsRecord),
    GraphMetrics(GraphMetricsRecord),
}

/// An SLI record that is serialized as its JSON text.
///
/// SLI records omit absent fields in JSON (`skip_serializing_if`), which bincode,
/// timely's wire format between processes, cannot round-trip. Within a process
/// timely moves records without serializing them, so the text is only made
/// when a record crosses to another process.
#[derive(Clone, Debug)]
struct JsonSli(SliRecord);

impl Serialize for JsonSli {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for JsonSli {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text)
            .map(JsonSli)
            .map_err(serde::de::Error::custom)
    }
}

/// The SLO evaluator for `settings`, with no history.
pub fn evaluator(settings: &Settings) -> Evaluator {
    Evaluator::new(settings.slos.clone(), settings.alerting.clone())
}

/// Builds the dataflow on `worker`. `sink` and `evaluator` are used only on
/// worker 0, where every output is gathered and the SLOs are evaluated.
pub fn build(
    worker: &mut Worker,
    settings: &Settings,
    sink: Option<Box<dyn OutputSink>>,
    mut evaluator: Evaluator,
) -> (Inputs, ProbeHandle<u64>) {
    let params = settings.params.clone();
    worker.dataflow::<u64, _, _>(move |scope| {
        let (records_in, records) = timely::dataflow::operators::vec::Input::new_input(&scope);
        let (audits_in, audits) = scope.new_collection();
        let (deploys_in, deploys) = scope.new_collection();
        // Every input advances to the same time: one tells the global input
        // frontier. The audits, whose data is small: the probe takes a copy.
        let frontier = ProbeHandle::new();
        audits.inner.clone().probe_with(&frontier);
        let out = causeway_jobs::build(
            JobInputs {
                records,
                audits,
                deploys,
            },
            &params,
        );
        let mut sink = sink;
        let probe = ProbeHandle::new();
        let all = out
            .sli
            .map(|r| Output::Sli(JsonSli(r)))
            .concat(out.service_graph.map(Output::Edge))
            .concat(out.exemplars.map(Output::Exemplar))
            .concat(out.changes.map(Output::Change))
            .concat(out.metrics.flat_map(|f| match f {
                JobFinal::SpanMetrics(r) => Some(Output::SpanMetrics(r)),
                JobFinal::GraphMetrics(r) => Some(Output::GraphMetrics(r)),
                _ => None,
            }));
        let (window, grace) = (params.window_s, params.grace_s);
        gather(all, "Outputs", move |t, batch| {
            let Some(sink) = sink.as_mut() else { return };
            let mut f = Finalized::from(batch);
            // Every output of time t belongs to the window that is final at t.
            let window_start = t.saturating_sub(window + grace);
            let evaluation = f.evaluate(&mut evaluator, window_start);
            if !evaluation.sli.is_empty() {
                f.sli.extend(evaluation.sli);
                f.sli.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
            }
            sink.sli(t, &f.sli);
            sink.edges(t, &f.edges);
            sink.evidence(t, &f.take_evidence());
            sink.slo(t, &evaluation.slo);
            sink.alerts(t, &evaluation.alerts);
            if !f.span_metrics.is_empty() || !f.graph_metrics.is_empty() {
                sink.metrics(t, &f.span_metrics, &f.graph_metrics);
            }
        })
        .probe_with(&probe);
        (
            Inputs {
                records: Records::new(records_in, scope.peers()),
                audits: audits_in,
                deploys: deploys_in,
                frontier,
            },
            probe,
        )
    })
}

/// One window's final outputs, split by kind.
#[derive(Default)]
pub struct Finalized {
    /// SLI records.
    pub sli: Vec<SliRecord>,
    /// Service-graph edges.
    pub edges: Vec<ServiceGraphRecord>,
    /// Exemplars.
    pub exemplars: Vec<ExemplarRecord>,
    /// Deploy events with actors.
    pub changes: Vec<ChangeRecord>,
    /// Span metrics.
    pub span_metrics: Vec<SpanMetricsRecord>,
    /// Service-graph metrics.
    pub graph_metrics: Vec<GraphMetricsRecord>,
}

impl Finalized {
    fn from(batches: Vec<Vec<Output>>) -> Self {
        let mut f = Finalized::default();
        for o in batches.into_iter().flatten() {
            match o {
                Output::Sli(JsonSli(r)) => f.sli.push(r),
                Output::Edge(e) => f.edges.push(e),
                Output::Exemplar(x) => f.exemplars.push(x),
                Output::Change(c) => f.changes.push(c),
                Output::SpanMetrics(m) => f.span_metrics.push(m),
                Output::GraphMetrics(m) => f.graph_metrics.push(m),
            }
        }
        f.sort();
        f
    }

    /// Sorts every kind into its output order.
    pub fn sort(&mut self) {
        self.sli.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        self.edges.sort();
        self.exemplars.sort();
        self.changes.sort();
        self.span_metrics.sort();
        self.graph_metrics.sort();
    }

    /// Evaluates the SLOs at the end of window `window_start` (nothing when no SLO
    /// is configured).
    pub fn evaluate(&self, evaluator: &mut Evaluator, window_start: u64) -> Evaluation {
        if evaluator.is_empty() {
            return Evaluation::default();
        }
        evaluator.evaluate(Final {
            window_start,
            sli: &self.sli,
            edges: &self.edges,
            exemplars: &self.exemplars,
            changes: &self.changes,
        })
    }

    /// The exemplars and changes as evidence records, moved out (once the
    /// SLOs are evaluated, nothing else reads them).
    pub fn take_evidence(&mut self) -> Vec<EvidenceRecord> {
        let exemplars = std::mem::take(&mut self.exemplars);
        let changes = std::mem::take(&mut self.changes);
        exemplars
            .into_iter()
            .map(EvidenceRecord::Exemplars)
            .chain(changes.into_iter().map(EvidenceRecord::Change))
            .collect()
    }
}

/// Gathers `stream` on worker 0 and hands each completed time's records to
/// `write`, as the batches they came in (moved, not copied into one vector).
///
/// The operator holds a capability for every time it still has to write, so its
/// output frontier (which the probe watches) passes `t` only after `write` has
/// returned for `t`. A sink that blocks until its writes are acknowledged thereby
/// tells every worker of every process which outputs are safe.
fn gather<'s, T, W>(
    stream: StreamVec<'s, u64, T>,
    name: &str,
    mut write: W,
) -> StreamVec<'s, u64, ()>
where
    T: timely::ExchangeData + Clone,
    W: FnMut(u64, Vec<Vec<T>>) + 'static,
{
    type Pending<T> = std::collections::BTreeMap<u64, (Capability<u64>, Vec<Vec<T>>)>;
    stream.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Exchange::new(|_: &T| 0),
        name,
        move |_, _| {
            let mut pending: Pending<T> = Default::default();
            move |(input, frontier), _output| {
                input.for_each(|cap, data| {
                    let Some(t) = cap.least().copied() else {
                        return;
                    };
                    match pending.entry(t) {
                        std::collections::btree_map::Entry::Occupied(mut e) => {
                            e.get_mut().1.push(std::mem::take(data))
                        }
                        std::collections::btree_map::Entry::Vacant(e) => {
                            if let Some(c) = cap.retain_least(0) {
                                e.insert((c, vec![std::mem::take(data)]));
                            }
                        }
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let t = *entry.key();
                    let (cap, batch) = entry.remove();
                    write(t, batch);
                    drop(cap);
                }
            }
        },
    )
}
