//! Tempo-compatible span and service-graph metrics (issue 13), per window.
//!
//! Collected only when [`Params::metrics`] is set (`causeway run` serving
//! `/metrics`); replay and the deterministic outputs never see them.
//!
//! - **Span metrics**: every span of the window (the same population as M3),
//!   per (resource, span name, kind, status): calls, and a histogram of
//!   `end - start` over the configured bounds. Every call is observed, so
//!   `_count` equals the calls as in Tempo; a span with `start = 0` or
//!   `end < start` (M3's invalid timing) has no duration and is observed as 0.
//! - **Service graph**: every edge of [`super::service_graph`], per (client,
//!   server, connection type): requests, failed, the server (child) and client
//!   (parent) span durations.
//! - **Unpaired**: M4's orphans (a parent id that does not resolve), per server
//!   service, client unknown. Their sum per service is M4's `total - good`.
//! - **Dropped**: the orphans whose parent span *is* in the trace, of another
//!   service, but outside the join range (`[t - horizon, t + grace]`): an edge
//!   that could not be paired within the horizon. A subset of the unpaired ones.

use serde::{Deserialize, Serialize};

use crate::correlate::{Part, SpanRec, Winners};
use crate::intern::{Name, Res};
use crate::params::Params;
use causeway_schemas::{SpanKind, SpanStatus};

/// A histogram over fixed upper bounds (`le`, inclusive), nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hist {
    /// Observations per bucket, not cumulative; the last one is `+Inf`.
    pub buckets: Vec<u64>,
    /// Sum of the observations, nanoseconds (saturating).
    pub sum_ns: u64,
}

impl Hist {
    /// Records `ns` against `bounds`.
    pub fn observe(&mut self, bounds: &[u64], ns: u64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len() + 1];
        }
        let i = bounds.partition_point(|b| *b < ns);
        self.buckets[i] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// Adds `other` (same bounds) into `self`.
    pub fn merge(&mut self, other: &Hist) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    /// Observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Span metrics of one (resource, name, kind, status) in one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpanMetric {
    /// Owning resource (service, environment, version).
    pub res: Res,
    /// Span name.
    pub name: Name,
    /// Span kind.
    pub kind: SpanKind,
    /// Status code.
    pub status: SpanStatus,
    /// Spans.
    pub calls: u64,
    /// Durations (0 for a span without a valid start and end).
    pub latency: Hist,
}

/// `connection_type` of an edge, as Tempo labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Connection {
    /// A direct call (`""`).
    Direct,
    /// A `PRODUCER` parent and a `CONSUMER` child (`"messaging_system"`).
    Messaging,
}

impl Connection {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Connection::Direct => "",
            Connection::Messaging => "messaging_system",
        }
    }

    fn of(parent: &SpanRec, child: &SpanRec) -> Self {
        if parent.kind == SpanKind::Producer && child.kind == SpanKind::Consumer {
            Connection::Messaging
        } else {
            Connection::Direct
        }
    }
}

/// Service-graph metrics of one (client, server, connection type) in one window.
/// `client` is `None` for unpaired spans (the parent is unknown).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphMetric {
    /// Parent's resource (its service is the `client` label).
    pub client: Option<Res>,
    /// Child's resource (its service is the `server` label).
    pub server: Res,
    /// Connection type.
    pub connection: Connection,
    /// Edges.
    pub total: u64,
    /// Edges where either span has status `ERROR`.
    pub failed: u64,
    /// Orphans (only with `client: None`).
    pub unpaired: u64,
    /// Orphans whose parent is in the trace outside the join range.
    pub dropped: u64,
    /// Child span durations of the edges.
    pub server_latency: Hist,
    /// Parent span durations of the edges.
    pub client_latency: Hist,
}

impl GraphMetric {
    fn new(client: Option<Res>, server: Res, connection: Connection) -> Self {
        GraphMetric {
            client,
            server,
            connection,
            total: 0,
            failed: 0,
            unpaired: 0,
            dropped: 0,
            server_latency: Hist::default(),
            client_latency: Hist::default(),
        }
    }
}

/// The duration of `s` in ns; 0 when its timing has none.
fn duration_ns(s: &SpanRec) -> u64 {
    if s.start > 0 {
        s.end.saturating_sub(s.start)
    } else {
        0
    }
}

type Map<K, V> = std::collections::HashMap<K, V, crate::correlate::IdBuild>;

/// One window's span and service-graph metrics on one worker. The keys pack
/// (resource, name, kind, status) and (client service, server service,
/// connection) into one `u128` each, hashed with one multiply.
#[derive(Default)]
pub struct Acc {
    spans: Map<u128, SpanMetric>,
    graph: Map<u128, GraphMetric>,
}

fn span_key(s: &SpanRec) -> u128 {
    (u128::from(s.res.id) << 64)
        | (u128::from(s.name.0) << 32)
        | (u128::from(s.kind as u8) << 8)
        | u128::from(s.status as u8)
}

/// `client` is `u32::MAX` for unpaired spans (no service has that id).
fn graph_key(client: u32, server: u32, connection: Connection) -> u128 {
    (u128::from(client) << 64) | (u128::from(server) << 32) | connection as u128
}

impl Acc {
    /// Observes span `s` of trace `w`, with its resolved parent.
    pub fn span(
        &mut self,
        s: &SpanRec,
        parent: Option<&SpanRec>,
        w: &Winners<'_>,
        params: &Params,
    ) {
        let Some(mp) = &params.metrics else { return };
        let duration = duration_ns(s);
        let m = self.spans.entry(span_key(s)).or_insert_with(|| SpanMetric {
            res: s.res,
            name: s.name,
            kind: s.kind,
            status: s.status,
            calls: 0,
            latency: Hist::default(),
        });
        m.calls += 1;
        m.latency.observe(&mp.span_buckets_ns, duration);
        match parent {
            Some(p) if p.res.service != s.res.service => {
                let conn = Connection::of(p, s);
                let g = self
                    .graph
                    .entry(graph_key(p.res.service, s.res.service, conn))
                    .or_insert_with(|| GraphMetric::new(Some(p.res), s.res, conn));
                g.total += 1;
                g.failed += u64::from(p.is_error() || s.is_error());
                g.server_latency.observe(&mp.graph_buckets_ns, duration);
                g.client_latency
                    .observe(&mp.graph_buckets_ns, duration_ns(p));
            }
            Some(_) => {}
            None if s.parent != 0 => {
                let g = self
                    .graph
                    .entry(graph_key(u32::MAX, s.res.service, Connection::Direct))
                    .or_insert_with(|| GraphMetric::new(None, s.res, Connection::Direct));
                g.unpaired += 1;
                if let Some(p) = w.get(s.parent).filter(|p| p.res.service != s.res.service) {
                    let conn = Connection::of(p, s);
                    self.graph
                        .entry(graph_key(p.res.service, s.res.service, conn))
                        .or_insert_with(|| GraphMetric::new(Some(p.res), s.res, conn))
                        .dropped += 1;
                }
            }
            None => {}
        }
    }

    /// The parts of this window.
    pub fn parts(self) -> impl Iterator<Item = Part> {
        self.spans
            .into_values()
            .map(Part::SpanMetric)
            .chain(self.graph.into_values().map(Part::GraphMetric))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::params::MetricParams;
    use causeway_schemas::Resource;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn params() -> Params {
        Params {
            metrics: Some(MetricParams {
                span_buckets_ns: vec![10 * MS, 100 * MS],
                graph_buckets_ns: vec![10 * MS, 100 * MS],
            }),
            ..Params::default()
        }
    }

    fn span(id: u64, parent: u64, service: &str, start: u64, ms: u64) -> SpanRec {
        SpanRec {
            span: id,
            parent,
            start,
            end: start + ms * MS,
            res: Res::intern(&Resource {
                service: service.into(),
                environment: "prod".into(),
                version: "1".into(),
            }),
            kind: SpanKind::Server,
            status: SpanStatus::Unset,
            pii: false,
            name: Name::intern("GET /x", usize::MAX),
        }
    }

    #[test]
    fn histograms_use_inclusive_upper_bounds() {
        let bounds = [10, 100];
        let mut h = Hist::default();
        for ns in [0, 10, 11, 100, 101, u64::MAX] {
            h.observe(&bounds, ns);
        }
        // le=10: 0 and 10; le=100: 11 and 100; +Inf: the rest.
        assert_eq!(h.buckets, vec![2, 2, 2]);
        assert_eq!(h.sum_ns, u64::MAX, "the sum saturates");
        assert_eq!(h.count(), 6);
    }

    #[test]
    fn edges_orphans_and_parents_outside_the_horizon() {
        let p = params();
        let t = 1_800_000_000 * S;
        let horizon = p.horizon_s * S;
        let spans = [
            // a → b: an edge; b's child c has a parent id nobody has; d's parent
            // (in a) started 10 s more than the horizon before it.
            span(1, 0, "sm-a", t, 50),
            span(2, 1, "sm-b", t + MS, 5),
            span(3, 99, "sm-c", t + 2 * MS, 20),
            span(4, 5, "sm-d", t + horizon + 10 * S, 200),
            span(5, 0, "sm-a", t - 10 * S, 1),
        ];
        let w = Winners::at(&spans, Params::tick(t + horizon + 10 * S), &p);
        assert_eq!(w.len(), spans.len());
        let mut acc = Acc::default();
        for s in &spans {
            acc.span(s, w.parent(s, &p), &w, &p);
        }
        let service = |r: Res| r.resource().service.clone();
        let mut calls = 0;
        let mut graph = BTreeMap::new();
        for part in acc.parts() {
            match part {
                Part::SpanMetric(m) => {
                    calls += m.calls;
                    assert_eq!(m.calls, m.latency.count());
                }
                Part::GraphMetric(g) => {
                    let key = (g.client.map(service).unwrap_or_default(), service(g.server));
                    graph.insert(key, g);
                }
                _ => unreachable!(),
            }
        }
        assert_eq!(calls, 5);
        let edge = &graph[&("sm-a".to_string(), "sm-b".to_string())];
        assert_eq!(
            (edge.total, edge.failed, edge.unpaired, edge.dropped),
            (1, 0, 0, 0)
        );
        // Child 5 ms (le 10 ms), parent 50 ms (le 100 ms).
        assert_eq!(edge.server_latency.buckets, vec![1, 0, 0]);
        assert_eq!(edge.client_latency.buckets, vec![0, 1, 0]);
        assert_eq!(edge.server_latency.sum_ns, 5 * MS);
        for orphan in ["sm-c", "sm-d"] {
            let u = &graph[&(String::new(), orphan.to_string())];
            assert_eq!((u.total, u.unpaired, u.dropped), (0, 1, 0), "{orphan}");
        }
        let dropped = &graph[&("sm-a".to_string(), "sm-d".to_string())];
        assert_eq!(
            (dropped.total, dropped.unpaired, dropped.dropped),
            (0, 0, 1)
        );
        assert_eq!(graph.len(), 4);
    }
}
