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

/// One window's span and service-graph metrics on one worker.
#[derive(Default)]
pub struct Acc {
    spans: Map<(u32, u32, u8, u8), SpanMetric>,
    graph: Map<(u32, u32, Connection), GraphMetric>,
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
        let m = self
            .spans
            .entry((s.res.id, s.name.0, s.kind as u8, s.status as u8))
            .or_insert_with(|| SpanMetric {
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
                    .entry((p.res.service, s.res.service, conn))
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
                    .entry((u32::MAX, s.res.service, Connection::Direct))
                    .or_insert_with(|| GraphMetric::new(None, s.res, Connection::Direct));
                g.unpaired += 1;
                if let Some(p) = w.get(s.parent).filter(|p| p.res.service != s.res.service) {
                    let conn = Connection::of(p, s);
                    self.graph
                        .entry((p.res.service, s.res.service, conn))
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
