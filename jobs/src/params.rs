//! Time semantics (SPEC §2) as pure functions of the job parameters.
//!
//! The dataflow's timestamp is event time in whole Unix seconds, and a partition's
//! input frontier is its watermark (`max event time seen - allowed_lateness`)
//! rounded down to the second. A record therefore enters its collection at the
//! second of its own event time, which is never below the frontier unless the
//! record is late. Windows are `[s, s + window)` and a window is final once the
//! frontier reaches `s + window + correlation_grace`; the finalizer reads every
//! update at earlier times and ignores later ones.
//!
//! Bounded state: every record is retracted at a time fixed when it enters.
//! - A log or audit record leaves when its own window becomes final.
//! - A span leaves when the last window that may join it is final: a record at
//!   time `t` joins spans starting in `[t - horizon, t + grace]`, so a span
//!   starting at `s` serves records up to `s + horizon`, whose window is final at
//!   `window_start(s + horizon) + window + grace`.
//!
//! Retractions therefore only ever touch windows that are already final, whose
//! records have been emitted; the finalizer ignores them.

use causeway_schemas::time::{window_start, NANOS_PER_SEC};
use serde::{Deserialize, Serialize};

/// The parameters of the jobs. All durations are whole seconds except where named `_ns`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Tumbling window size, seconds (default 60).
    pub window_s: u64,
    /// Correlation grace, seconds (default 60).
    pub grace_s: u64,
    /// Trace horizon, seconds (default 600).
    pub horizon_s: u64,
    /// Longest valid span, nanoseconds (default 1 h).
    pub max_span_duration_ns: u64,
    /// How far a span may start before its parent and still have valid timing (default 1 s).
    pub skew_tolerance_ns: u64,
    /// Exemplar traces kept per (sli, service, environment, window) (default 5).
    pub exemplars: usize,
    /// Collect availability exemplars (an availability SLO exists; default false).
    pub availability_exemplars: bool,
    /// Collect latency exemplars (a latency SLO exists; default false).
    pub latency_exemplars: bool,
    /// Distinct span names a process keeps (default [`DEFAULT_MAX_SPAN_NAMES`]);
    /// later ones become `__overflow__` (see [`crate::intern::Name`]).
    pub max_span_names: usize,
    /// Span and service-graph metrics for `/metrics`; `None` (replay) skips them.
    pub metrics: Option<MetricParams>,
}

/// Default of [`Params::max_span_names`].
pub const DEFAULT_MAX_SPAN_NAMES: usize = 1000;

/// Histogram bucket bounds of the Tempo-compatible metrics, nanoseconds, ascending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricParams {
    /// `traces_spanmetrics_latency` upper bounds.
    pub span_buckets_ns: Vec<u64>,
    /// `traces_service_graph_request_{server,client}_seconds` upper bounds.
    pub graph_buckets_ns: Vec<u64>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            window_s: 60,
            grace_s: 60,
            horizon_s: 600,
            max_span_duration_ns: 3600 * NANOS_PER_SEC,
            skew_tolerance_ns: NANOS_PER_SEC,
            exemplars: 5,
            availability_exemplars: false,
            latency_exemplars: false,
            max_span_names: DEFAULT_MAX_SPAN_NAMES,
            metrics: None,
        }
    }
}

impl Params {
    /// The dataflow time (second) of event time `t_ns`.
    pub fn tick(t_ns: u64) -> u64 {
        t_ns / NANOS_PER_SEC
    }

    /// Start (Unix seconds) of the window holding `t_ns`.
    pub fn window_of(&self, t_ns: u64) -> u64 {
        window_start(t_ns, self.window_s)
    }

    /// The time at which the window starting at `window_start` is final.
    pub fn final_at(&self, window_start: u64) -> u64 {
        window_start + self.window_s + self.grace_s
    }

    /// When a log or audit record at `t_ns` enters and leaves its collection.
    pub fn record_lifetime(&self, t_ns: u64) -> (u64, u64) {
        (Self::tick(t_ns), self.final_at(self.window_of(t_ns)))
    }

    /// When a span whose event time is `t_ns` enters and leaves its collection.
    pub fn span_lifetime(&self, t_ns: u64) -> (u64, u64) {
        let last_joiner = t_ns.saturating_add(self.horizon_s * NANOS_PER_SEC);
        (Self::tick(t_ns), self.final_at(self.window_of(last_joiner)))
    }

    /// The event times (ns) of the spans present at time `at`: `t` is in the
    /// range exactly when `span_lifetime(t)` covers `at`. One range per
    /// snapshot instead of two divisions per span.
    pub fn spans_present_at(&self, at: u64) -> std::ops::RangeInclusive<u64> {
        // Entered: `tick(t) <= at`.
        let last = at
            .checked_add(1)
            .and_then(|s| s.checked_mul(NANOS_PER_SEC))
            .map_or(u64::MAX, |end| end - 1);
        // Not left: `final_at(window_of(t + horizon)) > at`, that is the
        // window of `t + horizon` starts at or after the first multiple of
        // the window size above `at - window - grace`.
        let Some(after) = at.checked_sub(self.window_s + self.grace_s) else {
            return 0..=last;
        };
        let first = (after / self.window_s + 1)
            .checked_mul(self.window_s)
            .and_then(|s| s.checked_mul(NANOS_PER_SEC));
        match first {
            Some(first) => first.saturating_sub(self.horizon_s * NANOS_PER_SEC)..=last,
            // No window starts that late: nothing is present.
            #[allow(clippy::reversed_empty_ranges)] // empty on purpose
            None => 1..=0,
        }
    }

    /// The join rule of SPEC §2: does a span starting at `span_start` correlate
    /// with an event at `t`? True when `span_start` is in `[t - horizon, t + grace]`.
    pub fn joins(&self, t: u64, span_start: u64) -> bool {
        span_start >= t.saturating_sub(self.horizon_s * NANOS_PER_SEC)
            && span_start <= t.saturating_add(self.grace_s * NANOS_PER_SEC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_cover_every_joining_window() {
        let p = Params::default();
        let s = 1_000_000 * NANOS_PER_SEC + 123;
        let (enter, leave) = p.span_lifetime(s);
        assert_eq!(enter, 1_000_000);
        // The latest record that can join is at s + horizon; its window must not be
        // final before the span leaves.
        let t = s + p.horizon_s * NANOS_PER_SEC;
        assert!(p.joins(t, s));
        assert_eq!(leave, p.final_at(p.window_of(t)));
        // One nanosecond later no longer joins.
        assert!(!p.joins(t + 1, s));
        let (r_enter, r_leave) = p.record_lifetime(t);
        assert!(r_enter <= r_leave && r_leave <= leave);
    }

    #[test]
    fn present_range_is_the_lifetime_predicate() {
        let s = NANOS_PER_SEC;
        for p in [
            Params::default(),
            Params {
                window_s: 7,
                grace_s: 3,
                horizon_s: 20,
                ..Params::default()
            },
        ] {
            let base = 1_000_000 * s;
            for at in (1_000_000 - 50..1_000_000 + 800).chain([0, 5, u64::MAX / s]) {
                let range = p.spans_present_at(at);
                let times = (0..2_000u64)
                    .map(|i| base - 900 * s + i * (s / 2) + i % 3)
                    .chain([0, 1, s - 1, s, u64::MAX - 1, u64::MAX]);
                for t in times {
                    let (enter, leave) = p.span_lifetime(t);
                    assert_eq!(
                        range.contains(&t),
                        enter <= at && at < leave,
                        "at {at}, t {t}, {p:?}"
                    );
                }
            }
        }
    }
}
