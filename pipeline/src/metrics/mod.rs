//! The Prometheus `/metrics` endpoint (SPEC §6): SLI counters, burn-rate and
//! budget gauges, Tempo-compatible span and service-graph metrics, and the
//! pipeline's own health.
//!
//! Metrics are fed from final records only (one increment per emitted window), so
//! `rate()` over them agrees with the `causeway_sli` topic. No trace id is ever a
//! label; every service-valued label goes through [`LabelCap`].

use std::collections::HashSet;
use std::sync::Mutex;

use causeway_jobs::operators::finalize::decode_histogram;
use causeway_schemas::records::{ServiceGraphRecord, SliRecord, SloRecord};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::ingest::Stats;
use crate::sources::Topic;

mod server;

pub use server::{serve, Server};

/// The label value that stands for every service past the cap.
pub const OVERFLOW: &str = "__overflow__";

/// Caps the number of distinct service label values.
#[derive(Debug)]
pub struct LabelCap {
    max: usize,
    seen: Mutex<HashSet<String>>,
}

impl LabelCap {
    /// At most `max` distinct values.
    pub fn new(max: usize) -> Self {
        LabelCap {
            max,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// `value` if it is already known or there is room, else [`OVERFLOW`].
    pub fn label<'a>(&self, value: &'a str) -> &'a str {
        let Ok(mut seen) = self.seen.lock() else {
            return OVERFLOW;
        };
        if seen.contains(value) {
            return value;
        }
        if seen.len() < self.max {
            seen.insert(value.to_string());
            return value;
        }
        OVERFLOW
    }
}

/// Latency buckets of `traces_spanmetrics_latency`, seconds (Tempo's defaults).
const LATENCY_BUCKETS: [f64; 14] = [
    0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192,
    16.384,
];

/// Every metric Causeway exports.
pub struct Metrics {
    /// The registry served on `/metrics`.
    pub registry: Registry,
    cap: LabelCap,
    sli_events: IntCounterVec,
    /// `causeway_slo_burn_rate{slo,service,environment,window}`.
    pub burn_rate: GaugeVec,
    /// `causeway_slo_error_budget_remaining_ratio{slo,service,environment}`.
    pub budget_remaining: GaugeVec,
    calls: IntCounterVec,
    latency: HistogramVec,
    graph_total: IntCounterVec,
    graph_failed: IntCounterVec,
    input_events: IntCounterVec,
    rejected: IntCounterVec,
    skipped: IntCounterVec,
    late: IntCounterVec,
    /// `causeway_watermark_lag_seconds{worker}`: wall clock minus the worker's watermark.
    pub watermark_lag: GaugeVec,
    /// `causeway_consumer_lag_messages{topic,partition}`.
    pub consumer_lag: IntGaugeVec,
    /// `causeway_state_records{worker}`: records held in correlation state.
    pub state_records: IntGaugeVec,
    /// `causeway_windows_emitted_total`.
    windows: IntCounter,
    /// `causeway_output_records_total{topic}`.
    pub output_records: IntCounterVec,
    /// `causeway_kafka_errors_total{kind}`.
    pub kafka_errors: IntCounterVec,
    /// `causeway_kafka_up`: 0 while the last client error is a transport error.
    pub kafka_up: IntGauge,
    /// `causeway_checkpoint_emitted_time_seconds`: final time of the newest committed window.
    pub checkpoint: IntGauge,
    /// `causeway_dispatch_attempts_total{channel,outcome}` (`causeway dispatch`):
    /// HTTP attempts, outcome `ok`, `retry` or `rejected`.
    pub dispatch_attempts: IntCounterVec,
    /// `causeway_dispatch_records_total{channel,outcome}` (`causeway dispatch`):
    /// alert records handled, outcome `delivered`, `suppressed` or `malformed`.
    pub dispatch_records: IntCounterVec,
    /// `causeway_dispatch_firing_alerts{channel="alertmanager"}`: alerts being re-sent.
    pub dispatch_firing: IntGaugeVec,
}

/// Registers `m` in `r` and returns it. The names are constants of this module,
/// so a failure is a programming error.
fn register<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn int_gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(
        r,
        GaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

impl Metrics {
    /// Registers every metric; services past `max_series` become [`OVERFLOW`].
    pub fn new(max_series: usize) -> Self {
        let r = Registry::new();
        let latency = register(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "traces_spanmetrics_latency",
                    "Entry-span durations in seconds, from final latency windows",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["service", "span_kind", "status_code"],
            )
            .expect("valid metric"),
        );
        let kafka_up = register(
            &r,
            IntGauge::new(
                "causeway_kafka_up",
                "1 while Causeway's Kafka clients reach the brokers, 0 after a transport error",
            )
            .expect("valid metric"),
        );
        kafka_up.set(1);
        let checkpoint = register(&r, IntGauge::new(
            "causeway_checkpoint_emitted_time_seconds",
            "Event time (Unix seconds) before which every window is emitted, acknowledged and committed",
        )
        .expect("valid metric"));
        let windows = register(
            &r,
            IntCounter::new(
                "causeway_windows_emitted_total",
                "Finalization times whose SLI records were written",
            )
            .expect("valid metric"),
        );
        Metrics {
            cap: LabelCap::new(max_series),
            sli_events: counter(
                &r,
                "causeway_sli_events_total",
                "Events counted by each SLI in final windows, by outcome",
                &["sli", "service", "environment", "outcome"],
            ),
            burn_rate: gauge(
                &r,
                "causeway_slo_burn_rate",
                "Error-budget burn rate of an SLO over a window",
                &["slo", "service", "environment", "window"],
            ),
            budget_remaining: gauge(
                &r,
                "causeway_slo_error_budget_remaining_ratio",
                "Fraction of the SLO period's error budget left",
                &["slo", "service", "environment"],
            ),
            calls: counter(
                &r,
                "traces_spanmetrics_calls_total",
                "Entry spans (server and consumer) in final windows",
                &["service", "span_kind", "status_code"],
            ),
            latency,
            graph_total: counter(
                &r,
                "traces_service_graph_request_total",
                "Parent-child span pairs across services",
                &["client", "server"],
            ),
            graph_failed: counter(
                &r,
                "traces_service_graph_request_failed_total",
                "Parent-child span pairs across services where either span failed",
                &["client", "server"],
            ),
            input_events: counter(
                &r,
                "causeway_input_events_total",
                "Records read from the input topics (accepted, rejected and skipped)",
                &["topic"],
            ),
            rejected: counter(
                &r,
                "causeway_input_rejected_total",
                "Records dead-lettered, by reason",
                &["topic", "reason"],
            ),
            skipped: counter(
                &r,
                "causeway_input_skipped_total",
                "Valid records Causeway does not use (not dead-lettered), by reason",
                &["topic", "reason"],
            ),
            late: counter(
                &r,
                "causeway_late_events_total",
                "Records that arrived below the watermark",
                &["topic"],
            ),
            watermark_lag: gauge(
                &r,
                "causeway_watermark_lag_seconds",
                "Wall clock minus the worker's input watermark",
                &["worker"],
            ),
            consumer_lag: int_gauge(
                &r,
                "causeway_consumer_lag_messages",
                "Messages between the read position and the partition's end",
                &["topic", "partition"],
            ),
            state_records: int_gauge(
                &r,
                "causeway_state_records",
                "Input records held in correlation state (inside horizon and grace)",
                &["worker"],
            ),
            windows,
            output_records: counter(
                &r,
                "causeway_output_records_total",
                "Records written to the output topics",
                &["topic"],
            ),
            kafka_errors: counter(
                &r,
                "causeway_kafka_errors_total",
                "Errors reported by the Kafka clients",
                &["kind"],
            ),
            kafka_up,
            checkpoint,
            dispatch_attempts: counter(
                &r,
                "causeway_dispatch_attempts_total",
                "HTTP attempts of causeway dispatch per channel, by outcome (ok, retry, rejected)",
                &["channel", "outcome"],
            ),
            dispatch_records: counter(
                &r,
                "causeway_dispatch_records_total",
                "Alert records causeway dispatch handled per channel, by outcome (delivered, suppressed, malformed)",
                &["channel", "outcome"],
            ),
            dispatch_firing: int_gauge(
                &r,
                "causeway_dispatch_firing_alerts",
                "Firing alerts causeway dispatch re-sends",
                &["channel"],
            ),
            registry: r,
        }
    }

    /// Counts one final time's SLI records.
    pub fn observe_sli(&self, records: &[SliRecord]) {
        self.windows.inc();
        for r in records {
            let service = self.cap.label(&r.service);
            if let (Some(good), Some(total)) = (r.good, r.total) {
                let labels = [r.sli.as_str(), service, r.environment.as_str()];
                self.sli_events
                    .with_label_values(&[labels[0], labels[1], labels[2], "good"])
                    .inc_by(good);
                self.sli_events
                    .with_label_values(&[labels[0], labels[1], labels[2], "bad"])
                    .inc_by(total.saturating_sub(good));
                if r.sli == "availability" {
                    let calls = |status| {
                        self.calls
                            .with_label_values(&[service, "SPAN_KIND_SERVER", status])
                    };
                    calls("STATUS_CODE_UNSET").inc_by(good);
                    calls("STATUS_CODE_ERROR").inc_by(total.saturating_sub(good));
                }
            }
            if let Some(h) = r.histogram.as_deref().and_then(decode_histogram) {
                let hist = self.latency.with_label_values(&[
                    service,
                    "SPAN_KIND_SERVER",
                    "STATUS_CODE_UNSET",
                ]);
                for v in h.iter_recorded() {
                    let seconds = v.value_iterated_to() as f64 / 1e6;
                    for _ in 0..v.count_at_value() {
                        hist.observe(seconds);
                    }
                }
            }
        }
    }

    /// Sets the burn-rate and budget gauges from one evaluation.
    pub fn observe_slo(&self, records: &[SloRecord]) {
        for r in records {
            let service = self.cap.label(&r.service);
            for b in &r.burn_rates {
                self.burn_rate
                    .with_label_values(&[r.slo.as_str(), service, &r.environment, &b.window])
                    .set(b.burn_rate);
            }
            self.budget_remaining
                .with_label_values(&[r.slo.as_str(), service, &r.environment])
                .set(r.error_budget_remaining);
        }
    }

    /// Counts one final time's service-graph edges.
    pub fn observe_edges(&self, records: &[ServiceGraphRecord]) {
        for e in records {
            let labels = [self.cap.label(&e.client), self.cap.label(&e.server)];
            self.graph_total.with_label_values(&labels).inc_by(e.total);
            self.graph_failed
                .with_label_values(&labels)
                .inc_by(e.failed);
        }
    }

    /// Adds what ingest counted since `before`.
    pub fn observe_ingest(&self, before: &Stats, now: &Stats) {
        let accepted = |s: &Stats, t: &Topic| s.accepted.get(t).copied().unwrap_or(0);
        for t in Topic::ALL {
            let rejected = |s: &Stats| {
                s.rejected
                    .iter()
                    .filter(|((topic, _), _)| *topic == t)
                    .map(|(_, n)| n)
                    .chain(
                        s.skipped
                            .iter()
                            .filter(|((x, _), _)| *x == t)
                            .map(|(_, n)| n),
                    )
                    .sum::<u64>()
            };
            let d = accepted(now, &t) + rejected(now) - accepted(before, &t) - rejected(before);
            if d > 0 {
                self.input_events
                    .with_label_values(&[t.default_name()])
                    .inc_by(d);
            }
        }
        for ((t, reason), n) in &now.rejected {
            let d = n - before.rejected.get(&(*t, *reason)).copied().unwrap_or(0);
            if d == 0 {
                continue;
            }
            self.rejected
                .with_label_values(&[t.default_name(), reason.as_str()])
                .inc_by(d);
            if reason.as_str() == "late" {
                self.late.with_label_values(&[t.default_name()]).inc_by(d);
            }
        }
        for ((t, reason), n) in &now.skipped {
            let d = n - before.skipped.get(&(*t, *reason)).copied().unwrap_or(0);
            if d > 0 {
                self.skipped
                    .with_label_values(&[t.default_name(), reason.as_str()])
                    .inc_by(d);
            }
        }
    }

    /// The exposition text.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_past_the_cap_become_overflow() {
        let cap = LabelCap::new(2);
        assert_eq!(cap.label("a"), "a");
        assert_eq!(cap.label("b"), "b");
        assert_eq!(cap.label("c"), OVERFLOW);
        assert_eq!(cap.label("a"), "a");
    }

    #[test]
    fn sli_records_become_counters() {
        let m = Metrics::new(10);
        let r = SliRecord::ratio("availability", ("api", "prod", "1.0"), (0, 60), 9, 10);
        m.observe_sli(&[r]);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("causeway_sli_events_total{environment=\"prod\",outcome=\"bad\",service=\"api\",sli=\"availability\"} 1"), "{text}");
        assert!(text.contains("traces_spanmetrics_calls_total{service=\"api\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\"} 9"), "{text}");
    }

    #[test]
    fn slo_records_set_the_burn_and_budget_gauges() {
        use causeway_schemas::records::WindowBurn;
        let m = Metrics::new(10);
        let r = SloRecord {
            slo: "avail".into(),
            service: "api".into(),
            environment: String::new(),
            sli: "availability".into(),
            evaluated_at: 60,
            objective: 0.999,
            burn_rates: vec![WindowBurn {
                window: "5m".into(),
                bad: 3,
                total: 1000,
                burn_rate: 3.0,
            }],
            error_budget_remaining: 0.25,
            period_bad: 3,
            period_total: 4000,
        };
        m.observe_slo(&[r]);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("causeway_slo_burn_rate{environment=\"\",service=\"api\",slo=\"avail\",window=\"5m\"} 3"), "{text}");
        assert!(text.contains("causeway_slo_error_budget_remaining_ratio{environment=\"\",service=\"api\",slo=\"avail\"} 0.25"), "{text}");
    }
}
