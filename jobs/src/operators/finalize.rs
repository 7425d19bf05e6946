//! `finalize`: counts observations per window and emits each window once, when final.
//!
//! An observation of window `w` counts only if its update time is below
//! `final_at(w)`; later updates are the retractions of evicted state (see
//! [`crate::params`]) and are ignored. When the input frontier reaches
//! `final_at(w)` every counting update has arrived, so the window's records are
//! emitted at that time and its state is dropped. The result depends only on the
//! input collection, never on arrival order or the number of workers.

use std::collections::{BTreeMap, HashMap};
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

use crate::correlate::{IdBuild, Part, WindowPart};
use crate::evidence::{exemplar_records, Candidate};
use crate::intern::Res;
use crate::obs::Sli;
use crate::params::Params;
use crate::sli::latency::layout;
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

/// The number of values and the number of values at most `high` of a histogram
/// written by [`encode_histogram`]: the `len()` and `count_between(0, high)` of
/// [`decode_histogram`]'s histogram, `None` where it returns `None`.
///
/// Histograms of 3 significant digits with lowest value 1 (every one Causeway
/// writes) are counted as they are read, without building them; others are
/// decoded.
pub fn histogram_count_up_to(b64: &str, high: u64) -> Option<(u64, u64)> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    match count_up_to(&bytes, high) {
        Counted::Yes(total, up_to) => Some((total, up_to)),
        Counted::Invalid => None,
        Counted::Other => {
            let h = decode_histogram(b64)?;
            Some((h.len(), h.count_between(0, high)))
        }
    }
}

enum Counted {
    Yes(u64, u64),
    Invalid,
    Other,
}

/// [`histogram_count_up_to`] on the V2 bytes, for 3 significant digits and
/// lowest value 1 (a sub-bucket count of 2048, unit magnitude 0), following
/// hdrhistogram 7's deserializer step by step.
fn count_up_to(bytes: &[u8], high: u64) -> Counted {
    const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
    const HEADER: usize = 40;
    let be32 = |i: usize| {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let be64 = |i: usize| {
        bytes
            .get(i..i + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    };
    let (Some(cookie), Some(len), Some(offset), Some(digits), Some(low), Some(max), Some(ratio)) = (
        be32(0),
        be32(4),
        be32(8),
        be32(12),
        be64(16),
        be64(24),
        be64(32),
    ) else {
        return Counted::Other;
    };
    if cookie != V2_COOKIE
        || offset != 0
        || digits != 3
        || low != 1
        || max < 2
        || f64::from_bits(ratio) != 1.0
    {
        return Counted::Other;
    }
    // The length of the counts array `Histogram::new_with_bounds(1, max, 3)`
    // allocates, and `index_for(high)` clamped to its last index as
    // `count_between` does.
    let counts_len = layout::len_to_cover(max);
    let high_index = layout::index(high).min(counts_len - 1);
    let Some(payload) = bytes.get(HEADER..HEADER + len as usize) else {
        return Counted::Invalid;
    };
    let (mut i, mut index, mut total, mut up_to) = (0usize, 0u64, 0u64, 0u64);
    while i < payload.len() {
        // A base-128 varint of at most 9 bytes, the 9th contributing all 8 bits.
        let mut zz: u64 = 0;
        let mut n = 0;
        loop {
            let Some(&b) = payload.get(i + n) else {
                return Counted::Invalid;
            };
            if n == 8 {
                zz |= u64::from(b) << 56;
                n += 1;
                break;
            }
            zz |= u64::from(b & 0x7f) << (7 * n);
            n += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        i += n;
        let count_or_zeros = ((zz >> 1) as i64) ^ -((zz & 1) as i64);
        if count_or_zeros < 0 {
            let Some(zeros) = count_or_zeros.checked_neg() else {
                return Counted::Invalid;
            };
            index = index.saturating_add(zeros as u64);
        } else {
            let count = count_or_zeros as u64;
            if count > 0 {
                if index >= counts_len {
                    return Counted::Invalid;
                }
                total = total.saturating_add(count);
                if index <= high_index {
                    up_to = up_to.saturating_add(count);
                }
            }
            index += 1;
        }
    }
    Counted::Yes(total, up_to)
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
/// With more than one worker, worker 0 merges nothing: it evaluates the SLOs
/// and writes every output of the window, which the others cannot share.
pub fn merge<'s>(
    parts: StreamVec<'s, u64, WindowPart>,
    params: &Params,
) -> StreamVec<'s, u64, Final> {
    let params = params.clone();
    let peers = parts.scope().peers() as u64;
    let route = move |(_, part): &WindowPart| match peers {
        0 | 1 => 0,
        // Exchange takes the route modulo `peers`.
        n => 1 + part.route() % (n - 1),
    };
    parts.unary_frontier(Exchange::new(route), "MergeWindows", move |_cap, _info| {
        // A time's parts as the batches they came in (moved, not copied into
        // one growing vector).
        let mut pending: BTreeMap<u64, (Capability<u64>, Vec<Vec<WindowPart>>)> = BTreeMap::new();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                let Some(t) = cap.least().copied() else {
                    return;
                };
                pending
                    .entry(t)
                    .or_insert_with(|| (cap.delayed(&t, 0), Vec::new()))
                    .1
                    .push(std::mem::take(data));
            });
            while let Some(entry) = pending.first_entry() {
                if frontier.frontier().less_equal(entry.key()) {
                    break;
                }
                let (cap, parts) = entry.remove();
                output.session(&cap).give_iterator(
                    window_records(parts.into_iter().flatten(), &params).into_iter(),
                );
            }
        }
    })
}

/// The final records of one window from its parts.
fn window_records(parts: impl IntoIterator<Item = WindowPart>, params: &Params) -> Vec<Final> {
    let mut counts: BTreeMap<(u64, Arc<Resource>), Counts> = BTreeMap::new();
    // Edges by (window, client service id, server service id): equal service
    // ids are equal names, so each edge's names are copied once, when merged.
    let mut edges: EdgeParts = HashMap::default();
    let mut candidates: BTreeMap<u64, Vec<Candidate>> = BTreeMap::new();
    let mut span_metrics: BTreeMap<SpanMetricsKey, (u64, Hist)> = BTreeMap::new();
    let mut graph_metrics: BTreeMap<GraphMetricsKey, GraphMetric> = BTreeMap::new();
    for (window, part) in parts {
        match part {
            Part::Counts(res, c) => counts.entry((window, res.resource())).or_default().merge(c),
            Part::Edge(client, server, total, failed) => {
                let e = edges
                    .entry((window, client.service, server.service))
                    .or_insert((client, server, 0, 0));
                e.2 += total;
                e.3 += failed;
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
    // Room for every record at most (a ratio record per SLI, sampling bias
    // and latency per resource), instead of doubling up to it.
    let mut out = Vec::with_capacity(
        counts.len() * (RATIOS.len() + 2)
            + edges.len()
            + candidates.values().map(Vec::len).sum::<usize>()
            + span_metrics.len()
            + graph_metrics.len(),
    );
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
    let mut edges: Vec<ServiceGraphRecord> = edges
        .into_iter()
        .map(
            |((window, ..), (client, server, total, failed))| ServiceGraphRecord {
                client: client.resource().service.clone(),
                server: server.resource().service.clone(),
                window_start: window,
                window_end: window + params.window_s,
                total,
                failed,
            },
        )
        .collect();
    // (window, client, server) are distinct: the order of the names is total.
    edges.sort_unstable_by(|a, b| {
        (a.window_start, &a.client, &a.server).cmp(&(b.window_start, &b.client, &b.server))
    });
    out.extend(edges.into_iter().map(Final::Edge));
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

/// Edge counts by (window, client service id, server service id): client,
/// server, total, failed.
type EdgeParts = HashMap<(u64, u32, u32), (Res, Res, u64, u64), IdBuild>;
type SpanMetricsKey = (u64, Arc<Resource>, String, &'static str, &'static str);
type GraphMetricsKey = (u64, String, String, &'static str);

/// The `latency` record of a window: total, p50/p90/p99 and the HDR histogram
/// (microseconds, 3 significant digits, V2 serialization, base64).
fn latency_record(
    dims: (&str, &str, &str),
    window: (u64, u64),
    buckets: Vec<(u64, u64)>,
) -> Option<SliRecord> {
    let s = crate::sli::latency::summarize(buckets)?;
    let ms = |us: u64| us as f64 / 1000.0;
    Some(SliRecord {
        total: Some(s.total),
        p50_ms: Some(ms(s.quantiles[0])),
        p90_ms: Some(ms(s.quantiles[1])),
        p99_ms: Some(ms(s.quantiles[2])),
        histogram: Some(s.histogram),
        ..SliRecord::bare(Sli::Latency.as_str(), dims, window)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_up_to_a_value_equals_decoding() {
        // Durations as the latency SLI records them: µs, auto-resized.
        let mut next = crate::xorshift(7);
        for case in 0..200 {
            let mut runs = Vec::new();
            let spread = [10, 3_000, 250_000, 40_000_000, u64::MAX / 4][case % 5];
            for _ in 0..(next() % 300) {
                runs.push((next() % spread, 1 + next() % 4));
            }
            if case % 7 == 0 {
                runs.push((0, 2));
            }
            let Some(h) = crate::sli::latency::merge(runs) else {
                continue;
            };
            let b64 = encode_histogram(&h);
            let decoded = decode_histogram(&b64).unwrap();
            for high in [0, 1, 999, 2047, 2048, 250_000, next() % spread, u64::MAX] {
                let expected = (decoded.len(), decoded.count_between(0, high));
                assert_eq!(
                    histogram_count_up_to(&b64, high),
                    Some(expected),
                    "{case} {high}"
                );
            }
        }
        assert_eq!(histogram_count_up_to("not base64!", 5), None);
        let mut other = Histogram::<u64>::new_with_bounds(1000, 1_000_000, 2).unwrap();
        other.record_n(5_000, 3).unwrap();
        let b64 = encode_histogram(&other);
        assert_eq!(histogram_count_up_to(&b64, 10_000), Some((3, 3)));
        assert_eq!(histogram_count_up_to(&b64, 10), Some((3, 0)));
        // Truncated payloads are refused, as decoding refuses them.
        use base64::Engine;
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(encode_histogram(&h_of(&[(5, 1), (70_000, 2)])))
            .unwrap();
        bytes.pop();
        let cut = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(decode_histogram(&cut).map(|h| h.len()), None);
        assert_eq!(histogram_count_up_to(&cut, 10), None);
    }

    fn h_of(runs: &[(u64, u64)]) -> Histogram<u64> {
        crate::sli::latency::merge(runs.to_vec()).unwrap()
    }

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
