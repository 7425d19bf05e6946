//! Worker setup: the input sessions, the jobs, and the sinks they feed.

use causeway_jobs::{Inputs as JobInputs, Params};
use causeway_schemas::records::{ServiceGraphRecord, SliRecord};
use differential_dataflow::input::Input;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::Probe;
use timely::dataflow::StreamVec;
use timely::worker::Worker;

use crate::ingest::Inputs;

/// Receives the final outputs, one sorted batch per finalization time, on worker 0.
pub trait OutputSink {
    /// Final SLI records of one time, sorted by (window_start, sli, service, environment, version).
    fn sli(&mut self, time: u64, records: &[SliRecord]);
    /// Final service-graph edges of one time, sorted by (window_start, client, server).
    fn edges(&mut self, time: u64, records: &[ServiceGraphRecord]);
}

/// Builds the dataflow on `worker`. `sink` is used only on worker 0, where every
/// output is gathered.
pub fn build(
    worker: &mut Worker,
    params: &Params,
    sink: Option<Box<dyn OutputSink>>,
) -> (Inputs, ProbeHandle<u64>) {
    let params = params.clone();
    worker.dataflow::<u64, _, _>(move |scope| {
        let (spans_in, spans) = scope.new_collection();
        let (logs_in, logs) = scope.new_collection();
        let (audits_in, audits) = scope.new_collection();
        let out = causeway_jobs::build(
            JobInputs {
                spans,
                logs,
                audits,
            },
            &params,
        );
        let sink = std::rc::Rc::new(std::cell::RefCell::new(sink));
        let probe = ProbeHandle::new();
        let s1 = sink.clone();
        // SLI records omit absent fields in JSON (`skip_serializing_if`), which
        // bincode, timely's wire format between processes, cannot round-trip: they
        // cross to worker 0 as their JSON text.
        let sli_json = out
            .sli
            .map(|r| serde_json::to_string(&r).unwrap_or_default());
        gather_sorted(
            sli_json,
            "SliSink",
            |a: &String, b: &String| a.cmp(b),
            move |t, batch| {
                let mut records: Vec<SliRecord> = batch
                    .iter()
                    .filter_map(|j| serde_json::from_str(j).ok())
                    .collect();
                records.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
                if let Some(s) = s1.borrow_mut().as_mut() {
                    s.sli(t, &records)
                }
            },
        )
        .probe_with(&probe);
        gather_sorted(
            out.service_graph,
            "EdgeSink",
            |a: &ServiceGraphRecord, b: &ServiceGraphRecord| {
                (a.window_start, &a.client, &a.server).cmp(&(b.window_start, &b.client, &b.server))
            },
            move |t, batch| {
                if let Some(s) = sink.borrow_mut().as_mut() {
                    s.edges(t, batch)
                }
            },
        )
        .probe_with(&probe);
        (
            Inputs {
                spans: spans_in,
                logs: logs_in,
                audits: audits_in,
            },
            probe,
        )
    })
}

/// Gathers `stream` on worker 0 and hands each completed time's records, sorted
/// by `order`, to `write`.
///
/// The operator holds a capability for every time it still has to write, so its
/// output frontier (which the probe watches) passes `t` only after `write` has
/// returned for `t`. A sink that blocks until its writes are acknowledged thereby
/// tells every worker of every process which outputs are safe.
fn gather_sorted<'s, T, F, W>(
    stream: StreamVec<'s, u64, T>,
    name: &str,
    order: F,
    mut write: W,
) -> StreamVec<'s, u64, ()>
where
    T: timely::ExchangeData + Clone,
    F: Fn(&T, &T) -> std::cmp::Ordering + 'static,
    W: FnMut(u64, &[T]) + 'static,
{
    type Pending<T> = std::collections::BTreeMap<u64, (Capability<u64>, Vec<T>)>;
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
                            e.get_mut().1.append(data)
                        }
                        std::collections::btree_map::Entry::Vacant(e) => {
                            if let Some(c) = cap.retain_least(0) {
                                e.insert((c, std::mem::take(data)));
                            }
                        }
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let t = *entry.key();
                    let (cap, mut batch) = entry.remove();
                    batch.sort_by(|a, b| order(a, b));
                    write(t, &batch);
                    drop(cap);
                }
            }
        },
    )
}
