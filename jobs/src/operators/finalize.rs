//! `finalize`: counts observations per window and emits each window once, when final.
//!
//! An observation of window `w` counts only if its update time is below
//! `final_at(w)`; later updates are the retractions of evicted state (see
//! [`crate::params`]) and are ignored. When the input frontier reaches
//! `final_at(w)` every counting update has arrived, so the window's records are
//! emitted at that time and its state is dropped. The result depends only on the
//! input collection, never on arrival order or the number of workers.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use causeway_schemas::records::{
    BucketCounts, ExemplarRecord, GraphMetricsRecord, ServiceGraphRecord, SliRecord,
    SpanMetricsRecord,
};
use causeway_schemas::Resource;
use differential_dataflow::VecCollection;
use hdrhistogram::Histogram;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use crate::correlate::{Part, WindowPart};
use crate::evidence::{exemplar_records, Candidate};
use crate::obs::Sli;
use crate::params::Params;
use crate::sli::span_metrics::{GraphMetric, Hist};
use crate::sli::{Counts, RATIOS};

/// A stable 64-bit hash (FNV-1a), used to route keys to workers deterministically.
pub fn stable_hash<K: Hash + ?Sized>(k: &K) -> u64 {
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    k.hash(&mut h);
    h.finish()
}

/// Counts `collection` per key and window and emits one output per key when the
/// window is final.
///
/// - `window` gives an observation's window start;
/// - `route` picks the worker; observations that `emit` merges must share it;
/// - `key` groups observations (it must include the window);
/// - `fold` adds an observation with multiplicity `diff` to the accumulator;
/// - `emit` turns the final accumulators of one finalization time into records.
#[allow(clippy::too_many_arguments)]
pub fn finalize<'s, D, K, A, O>(
    collection: VecCollection<'s, u64, D>,
    name: &str,
    params: &Params,
    window: fn(&D) -> u64,
    route: fn(&D) -> u64,
    key: fn(&D) -> K,
    fold: fn(&mut A, &D, isize),
    emit: fn(BTreeMap<K, A>, &Params) -> Vec<O>,
) -> StreamVec<'s, u64, O>
where
    D: timely::ExchangeData + Clone,
    K: Hash + Ord + Clone + 'static,
    A: Default + 'static,
    O: Clone + 'static,
{
    let params = params.clone();
    let route = Exchange::new(move |(d, _t, _r): &(D, u64, isize)| route(d));
    collection
        .inner
        .unary_frontier(route, name, move |_cap, _info| {
            let mut pending: BTreeMap<u64, (Capability<u64>, BTreeMap<K, A>)> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    for (d, t, r) in data.drain(..) {
                        let at = params.final_at(window(&d));
                        if t >= at {
                            continue;
                        }
                        let entry = pending
                            .entry(at)
                            .or_insert_with(|| (cap.delayed(&at, 0), BTreeMap::new()));
                        fold(entry.1.entry(key(&d)).or_default(), &d, r);
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.frontier().less_than(entry.key()) {
                        break;
                    }
                    let (cap, groups) = entry.remove();
                    output
                        .session(&cap)
                        .give_iterator(emit(groups, &params).into_iter());
                }
            }
        })
}

/// Serializes a histogram in hdrhistogram's V2 format, base64.
pub fn encode_histogram(hist: &Histogram<u64>) -> String {
    use base64::Engine;
    use hdrhistogram::serialization::{Serializer, V2Serializer};
    let mut buf = Vec::new();
    // Writing to a Vec cannot fail for a valid histogram.
    if V2Serializer::new().serialize(hist, &mut buf).is_err() {
        buf.clear();
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes a histogram written by [`encode_histogram`], ready to merge with others:
/// it grows to hold larger values instead of refusing them.
pub fn decode_histogram(b64: &str) -> Option<Histogram<u64>> {
    use base64::Engine;
    use hdrhistogram::serialization::Deserializer;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let mut hist: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .ok()?;
    hist.auto(true);
    Some(hist)
}

/// A final record of a window.
#[derive(Clone, Debug)]
pub enum Final {
    /// An SLI record.
    Sli(SliRecord),
    /// A service-graph edge.
    Edge(ServiceGraphRecord),
    /// Exemplars of one (sli, service, environment).
    Exemplars(ExemplarRecord),
    /// Span metrics (only with [`Params::metrics`]).
    SpanMetrics(SpanMetricsRecord),
    /// Service-graph metrics (only with [`Params::metrics`]).
    GraphMetrics(GraphMetricsRecord),
}

/// Merges every worker's parts of each window and emits the window's final
/// records at the time the parts carry (`final_at(window)`). Parts are routed by
/// what they are keyed by (resource, edge, exemplar group), so the merge work
/// is spread over the workers and each final record is built on one of them.
pub fn merge<'s>(
    parts: StreamVec<'s, u64, WindowPart>,
    params: &Params,
) -> StreamVec<'s, u64, Final> {
    let params = params.clone();
    parts.unary_frontier(
        Exchange::new(|(_, part): &WindowPart| part.route()),
        "MergeWindows",
        move |_cap, _info| {
            let mut pending: BTreeMap<u64, (Capability<u64>, Vec<WindowPart>)> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let Some(t) = cap.least().copied() else {
                        return;
                    };
                    pending
                        .entry(t)
                        .or_insert_with(|| (cap.delayed(&t, 0), Vec::new()))
                        .1
                        .append(data);
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.frontier().less_equal(entry.key()) {
                        break;
                    }
                    let (cap, parts) = entry.remove();
                    output
                        .session(&cap)
                        .give_iterator(window_records(parts, &params).into_iter());
                }
            }
        },
    )
}

/// The final records of one window from its parts.
fn window_records(parts: Vec<WindowPart>, params: &Params) -> Vec<Final> {
    let mut counts: BTreeMap<(u64, Arc<Resource>), Counts> = BTreeMap::new();
    let mut edges: BTreeMap<(u64, String, String), (u64, u64)> = BTreeMap::new();
    let mut candidates: BTreeMap<u64, Vec<Candidate>> = BTreeMap::new();
    let mut span_metrics: BTreeMap<SpanMetricsKey, (u64, Hist)> = BTreeMap::new();
    let mut graph_metrics: BTreeMap<GraphMetricsKey, GraphMetric> = BTreeMap::new();
    for (window, part) in parts {
        match part {
            Part::Counts(res, c) => counts.entry((window, res.resource())).or_default().merge(c),
            Part::Edge(client, server, total, failed) => {
                let key = (
                    window,
                    client.resource().service.clone(),
                    server.resource().service.clone(),
                );
                let e = edges.entry(key).or_default();
                e.0 += total;
                e.1 += failed;
            }
            Part::Exemplars(c) => candidates.entry(window).or_default().extend(c),
            Part::SpanMetric(m) => {
                let key = (
                    window,
                    m.res.resource(),
                    m.name.get().to_string(),
                    m.kind.as_str(),
                    m.status.as_str(),
                );
                let e = span_metrics.entry(key).or_default();
                e.0 += m.calls;
                e.1.merge(&m.latency);
            }
            Part::GraphMetric(g) => {
                let key = (
                    window,
                    g.client
                        .map(|c| c.resource().service.clone())
                        .unwrap_or_default(),
                    g.server.resource().service.clone(),
                    g.connection.as_str(),
                );
                match graph_metrics.entry(key) {
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(g);
                    }
                    std::collections::btree_map::Entry::Occupied(mut e) => {
                        let a = e.get_mut();
                        a.total += g.total;
                        a.failed += g.failed;
                        a.unpaired += g.unpaired;
                        a.dropped += g.dropped;
                        a.server_latency.merge(&g.server_latency);
                        a.client_latency.merge(&g.client_latency);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for ((window, res), c) in counts {
        let dims = (
            res.service.as_str(),
            res.environment.as_str(),
            res.version.as_str(),
        );
        let bounds = (window, window + params.window_s);
        for sli in RATIOS {
            let (good, total) = c.ratio(sli);
            if total > 0 {
                out.push(Final::Sli(SliRecord::ratio(
                    sli.as_str(),
                    dims,
                    bounds,
                    good,
                    total,
                )));
            }
        }
        let [req, err, tr, tr_err] = c.sampling;
        if req > 0 && tr > 0 {
            out.push(Final::Sli(SliRecord {
                value: Some((err as f64 / req as f64 - tr_err as f64 / tr as f64).abs()),
                requests: Some(req),
                error_requests: Some(err),
                traced_requests: Some(tr),
                traced_error_requests: Some(tr_err),
                ..SliRecord::bare(Sli::SamplingBias.as_str(), dims, bounds)
            }));
        }
        out.extend(latency_record(dims, bounds, c.latency).map(Final::Sli));
    }
    out.extend(
        edges
            .into_iter()
            .map(|((window, client, server), (total, failed))| {
                Final::Edge(ServiceGraphRecord {
                    client,
                    server,
                    window_start: window,
                    window_end: window + params.window_s,
                    total,
                    failed,
                })
            }),
    );
    for (window, c) in candidates {
        out.extend(
            exemplar_records(c, window, params.exemplars)
                .into_iter()
                .map(Final::Exemplars),
        );
    }
    let buckets = |h: Hist| BucketCounts {
        buckets: h.buckets,
        sum_ns: h.sum_ns,
    };
    out.extend(span_metrics.into_iter().map(
        |((window_start, res, span_name, kind, status), (calls, latency))| {
            Final::SpanMetrics(SpanMetricsRecord {
                window_start,
                service: res.service.clone(),
                environment: res.environment.clone(),
                version: res.version.clone(),
                span_name,
                span_kind: kind.into(),
                status_code: status.into(),
                calls,
                latency: buckets(latency),
            })
        },
    ));
    out.extend(graph_metrics.into_iter().map(
        |((window_start, client, server, connection_type), g)| {
            Final::GraphMetrics(GraphMetricsRecord {
                window_start,
                client,
                server,
                connection_type: connection_type.into(),
                total: g.total,
                failed: g.failed,
                unpaired: g.unpaired,
                dropped: g.dropped,
                server_latency: buckets(g.server_latency),
                client_latency: buckets(g.client_latency),
            })
        },
    ));
    out
}

type SpanMetricsKey = (u64, Arc<Resource>, String, &'static str, &'static str);
type GraphMetricsKey = (u64, String, String, &'static str);

/// The `latency` record of a window: total, p50/p90/p99 and the HDR histogram
/// (microseconds, 3 significant digits, V2 serialization, base64).
fn latency_record(
    dims: (&str, &str, &str),
    window: (u64, u64),
    buckets: Vec<(u64, u64)>,
) -> Option<SliRecord> {
    let hist = crate::sli::latency::merge(buckets)?;
    if hist.is_empty() {
        return None;
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Some(SliRecord {
        total: Some(hist.len()),
        p50_ms: Some(ms(0.5)),
        p90_ms: Some(ms(0.9)),
        p99_ms: Some(ms(0.99)),
        histogram: Some(encode_histogram(&hist)),
        ..SliRecord::bare(Sli::Latency.as_str(), dims, window)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_round_trip_and_merge() {
        let mut a = Histogram::<u64>::new(3).unwrap();
        a.record_n(1_500, 3).unwrap();
        let mut b = Histogram::<u64>::new(3).unwrap();
        b.record(250_000).unwrap();
        let mut merged = decode_histogram(&encode_histogram(&a)).unwrap();
        assert_eq!(merged, a);
        merged
            .add(decode_histogram(&encode_histogram(&b)).unwrap())
            .unwrap();
        assert_eq!(merged.len(), 4);
        assert!(merged.equivalent(merged.max(), 250_000));
    }
}
