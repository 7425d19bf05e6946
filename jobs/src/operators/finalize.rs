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

use causeway_schemas::records::{ServiceGraphRecord, SliRecord};
use causeway_schemas::Resource;
use differential_dataflow::VecCollection;
use hdrhistogram::Histogram;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use crate::obs::{EdgeObs, Obs, ObsKind, Sli};
use crate::params::Params;

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

/// Accumulated counts of one (sli, resource, window).
#[derive(Default)]
pub struct SliAcc {
    good: i64,
    total: i64,
    requests: i64,
    error_requests: i64,
    traced: i64,
    traced_errors: i64,
    durations: HashMap<u64, i64>,
}

fn fold_obs(acc: &mut SliAcc, o: &Obs, diff: isize) {
    let d = diff as i64;
    match o.kind {
        ObsKind::Total => acc.total += d,
        ObsKind::Good => acc.good += d,
        ObsKind::Requests => acc.requests += d,
        ObsKind::ErrorRequests => acc.error_requests += d,
        ObsKind::TracedRequests => acc.traced += d,
        ObsKind::TracedErrorRequests => acc.traced_errors += d,
        ObsKind::DurationUs(us) => *acc.durations.entry(us).or_default() += d,
    }
}

type SliKey = (Sli, Arc<Resource>, u64);

fn emit_sli(groups: BTreeMap<SliKey, SliAcc>, params: &Params) -> Vec<SliRecord> {
    groups
        .into_iter()
        .filter_map(|(k, acc)| sli_record(&k, acc, params))
        .collect()
}

fn sli_record(k: &SliKey, acc: SliAcc, params: &Params) -> Option<SliRecord> {
    let (sli, res, start) = k;
    let dims = (
        res.service.as_str(),
        res.environment.as_str(),
        res.version.as_str(),
    );
    let window = (*start, start + params.window_s);
    let n = |v: i64| v.max(0) as u64;
    match sli {
        Sli::Latency => latency_record(dims, window, &acc.durations),
        Sli::SamplingBias => {
            let (req, err, tr, tr_err) = (
                n(acc.requests),
                n(acc.error_requests),
                n(acc.traced),
                n(acc.traced_errors),
            );
            (req > 0 && tr > 0).then(|| SliRecord {
                value: Some((err as f64 / req as f64 - tr_err as f64 / tr as f64).abs()),
                requests: Some(req),
                error_requests: Some(err),
                traced_requests: Some(tr),
                traced_error_requests: Some(tr_err),
                ..SliRecord::bare(sli.as_str(), dims, window)
            })
        }
        _ => (acc.total > 0)
            .then(|| SliRecord::ratio(sli.as_str(), dims, window, n(acc.good), n(acc.total))),
    }
}

/// The `latency` record of a window: total, p50/p90/p99 and the HDR histogram
/// (microseconds, 3 significant digits, V2 serialization, base64).
fn latency_record(
    dims: (&str, &str, &str),
    window: (u64, u64),
    durations: &HashMap<u64, i64>,
) -> Option<SliRecord> {
    let mut hist = Histogram::<u64>::new(3).ok()?;
    let mut values: Vec<(&u64, &i64)> = durations.iter().filter(|(_, c)| **c > 0).collect();
    values.sort();
    for (us, count) in values {
        hist.record_n(*us, *count as u64).ok()?;
    }
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

/// Final SLI records from observations.
pub fn finalize_sli<'s>(
    obs: VecCollection<'s, u64, Obs>,
    params: &Params,
) -> StreamVec<'s, u64, SliRecord> {
    finalize(
        obs,
        "FinalizeSli",
        params,
        |o| o.window,
        |o| stable_hash(&(o.sli, &o.resource, o.window)),
        |o| (o.sli, Arc::clone(&o.resource), o.window),
        fold_obs,
        emit_sli,
    )
}

type EdgeKey = (Arc<Resource>, Arc<Resource>, u64);

/// Final service-graph edges from edge observations, merged by service name.
pub fn finalize_edges<'s>(
    edges: VecCollection<'s, u64, EdgeObs>,
    params: &Params,
) -> StreamVec<'s, u64, ServiceGraphRecord> {
    finalize(
        edges,
        "FinalizeEdges",
        params,
        |e| e.window,
        |e| stable_hash(&(&e.client.service, &e.server.service, e.window)),
        |e| (Arc::clone(&e.client), Arc::clone(&e.server), e.window),
        |acc: &mut (i64, i64), e: &EdgeObs, diff| {
            acc.0 += diff as i64;
            if e.failed {
                acc.1 += diff as i64;
            }
        },
        emit_edges,
    )
}

fn emit_edges(groups: BTreeMap<EdgeKey, (i64, i64)>, params: &Params) -> Vec<ServiceGraphRecord> {
    let mut merged: BTreeMap<(&str, &str, u64), (i64, i64)> = BTreeMap::new();
    for ((client, server, window), (total, failed)) in &groups {
        let m = merged
            .entry((&client.service, &server.service, *window))
            .or_default();
        m.0 += total;
        m.1 += failed;
    }
    merged
        .into_iter()
        .filter(|(_, (total, _))| *total > 0)
        .map(
            |((client, server, window), (total, failed))| ServiceGraphRecord {
                client: client.to_string(),
                server: server.to_string(),
                window_start: window,
                window_end: window + params.window_s,
                total: total as u64,
                failed: failed.max(0) as u64,
            },
        )
        .collect()
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
