//! The SLIs of SPEC §3, one file each. Every file states its population and its
//! good events as a pure function of one record and the winners of its trace at
//! the window's snapshot (see [`crate::correlate`]); [`Window`] applies them all
//! to the records of one window and counts per resource.

pub mod availability;
pub mod context_loss;
pub mod error_trace_ratio;
pub mod latency;
pub mod latency_capture;
pub mod provenance_completeness;
pub mod sampling_bias;
pub mod sensitive_exposure;
pub mod service_graph;
pub mod span_metrics;
pub mod trace_coverage;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::correlate::{AuditRec, LogRec, Part, SpanRec, WindowPart, Winners};
use crate::evidence::{self, Candidate, TopK};
use crate::intern::Res;
use crate::obs::Sli;
use crate::params::Params;

/// The ratio SLIs, in the order of [`Counts::good`] and [`Counts::total`].
pub const RATIOS: [Sli; 7] = [
    Sli::TraceCoverage,
    Sli::ErrorTraceRatio,
    Sli::LatencyCapture,
    Sli::ContextLoss,
    Sli::ProvenanceCompleteness,
    Sli::SensitiveExposure,
    Sli::Availability,
];

const fn slot(sli: Sli) -> usize {
    match sli {
        Sli::TraceCoverage => 0,
        Sli::ErrorTraceRatio => 1,
        Sli::LatencyCapture => 2,
        Sli::ContextLoss => 3,
        Sli::ProvenanceCompleteness => 4,
        Sli::SensitiveExposure => 5,
        _ => 6,
    }
}

/// Every count of one resource in one window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Good events per ratio SLI ([`RATIOS`] order).
    pub good: [u64; 7],
    /// Events per ratio SLI.
    pub total: [u64; 7],
    /// M10: requests, error requests, traced requests, traced error requests.
    pub sampling: [u64; 4],
    /// R2: entry span durations, microseconds, as (duration, count).
    pub latency: Vec<(u64, u64)>,
}

impl Counts {
    fn add(&mut self, sli: Sli, good: bool) {
        let i = slot(sli);
        self.total[i] += 1;
        self.good[i] += u64::from(good);
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: Counts) {
        for i in 0..RATIOS.len() {
            self.good[i] += other.good[i];
            self.total[i] += other.total[i];
        }
        for i in 0..4 {
            self.sampling[i] += other.sampling[i];
        }
        self.latency.extend(other.latency);
    }

    /// Good and total of a ratio SLI.
    pub fn ratio(&self, sli: Sli) -> (u64, u64) {
        let i = slot(sli);
        (self.good[i], self.total[i])
    }
}

type ResMap<V> = HashMap<u32, V, crate::correlate::IdBuild>;

/// A resource's counts in one window and its entry span durations (µs).
struct Acc {
    res: Res,
    counts: Counts,
    durations: Vec<u64>,
}

/// The counts of one window on one worker.
pub struct Window<'p> {
    window: u64,
    params: &'p Params,
    counts: ResMap<Acc>,
    edges: HashMap<(u32, u32), (Res, Res, u64, u64), crate::correlate::IdBuild>,
    exemplars: HashMap<(Sli, u32), TopK, crate::correlate::IdBuild>,
    metrics: span_metrics::Acc,
}

impl<'p> Window<'p> {
    /// An empty window starting at `window`.
    pub fn new(window: u64, params: &'p Params) -> Self {
        Window {
            window,
            params,
            counts: ResMap::default(),
            edges: HashMap::default(),
            exemplars: HashMap::default(),
            metrics: span_metrics::Acc::default(),
        }
    }

    fn acc(&mut self, res: Res) -> &mut Acc {
        self.counts.entry(res.id).or_insert_with(|| Acc {
            res,
            counts: Counts::default(),
            durations: Vec::new(),
        })
    }

    fn counts(&mut self, res: Res) -> &mut Counts {
        &mut self.acc(res).counts
    }

    /// Observes the winners of `trace` whose event time lies in this window.
    pub fn trace(&mut self, trace: u128, w: &Winners<'_>) {
        let p = self.params;
        let mut deepest = None;
        for s in w.iter() {
            if p.window_of(s.event_time()) != self.window {
                continue;
            }
            let parent = w.parent(s, p);
            self.span(s, parent);
            if p.metrics.is_some() {
                self.metrics.span(s, parent, w, p);
            }
            if s.is_entry() {
                if p.availability_exemplars && s.is_error() {
                    let d = *deepest.get_or_insert_with(|| evidence::deepest_error(w));
                    self.exemplar(Candidate::new(Sli::Availability, trace, s, d));
                }
                if p.latency_exemplars {
                    self.exemplar(Candidate::new(Sli::Latency, trace, s, None));
                }
            }
        }
    }

    fn exemplar(&mut self, c: Candidate) {
        self.exemplars
            .entry((c.sli, c.res.id))
            .or_default()
            .offer(c, self.params.exemplars);
    }

    fn span(&mut self, s: &SpanRec, parent: Option<&SpanRec>) {
        let p = self.params;
        if let Some((client, server, failed)) = service_graph::edge(s, parent) {
            let e = self
                .edges
                .entry((client.id, server.id))
                .or_insert((client, server, 0, 0));
            e.2 += 1;
            e.3 += u64::from(failed);
        }
        let acc = self.acc(s.res);
        let c = &mut acc.counts;
        c.add(
            Sli::LatencyCapture,
            latency_capture::valid_timing(s, parent, p),
        );
        c.add(Sli::ContextLoss, context_loss::good(s, parent));
        c.add(Sli::SensitiveExposure, sensitive_exposure::good(s.pii));
        if let Some(good) = availability::good(s) {
            c.add(Sli::Availability, good);
        }
        if let Some(us) = latency::duration_us(s) {
            acc.durations.push(us);
        }
    }

    /// Observes a log record of this window; `w` holds its trace's winners.
    pub fn log(&mut self, l: &LogRec, w: Option<&Winners<'_>>) {
        let p = self.params;
        let traced = l.request && trace_coverage::traced(l, w, p);
        let error = error_trace_ratio::good(l, w, p);
        let c = self.counts(l.res);
        c.add(Sli::SensitiveExposure, sensitive_exposure::good(l.pii));
        if l.request {
            c.add(Sli::TraceCoverage, traced);
            sampling_bias::observe(&mut c.sampling, l, traced);
        }
        if let Some(good) = error {
            c.add(Sli::ErrorTraceRatio, good);
        }
    }

    /// Observes an audit record of this window; `w` holds its trace's winners.
    pub fn audit(&mut self, a: &AuditRec, w: Option<&Winners<'_>>) {
        let good = provenance_completeness::good(a, w, self.params);
        self.counts(a.res).add(Sli::ProvenanceCompleteness, good);
    }

    /// This worker's parts of the window.
    pub fn parts(self) -> Vec<WindowPart> {
        let window = self.window;
        let mut out: Vec<WindowPart> = self
            .counts
            .into_values()
            .map(|mut acc| {
                acc.counts.latency = latency::runs(acc.durations);
                (window, Part::Counts(acc.res, acc.counts))
            })
            .collect();
        out.extend(
            self.edges
                .into_values()
                .map(|(client, server, total, failed)| {
                    (window, Part::Edge(client, server, total, failed))
                }),
        );
        // One part per (sli, resource), so the merge of a (service,
        // environment) group lands on one worker.
        out.extend(
            self.exemplars
                .into_values()
                .map(|top| (window, Part::Exemplars(top.into_vec())))
                .filter(|(_, p)| matches!(p, Part::Exemplars(c) if !c.is_empty())),
        );
        out.extend(self.metrics.parts().map(|p| (window, p)));
        out
    }
}
