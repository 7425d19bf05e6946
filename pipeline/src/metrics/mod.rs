//! The Prometheus `/metrics` endpoint (SPEC §6): SLI counters, burn-rate and
//! budget gauges, Tempo-compatible span and service-graph metrics, and the
//! pipeline's own health.
//!
//! Metrics are fed from final records only (one increment per emitted window,
//! never seen half-done by a scrape), so `increase()` over them agrees with the
//! output topics. The span and service-graph metrics carry the names and labels
//! of Tempo's metrics-generator, so Grafana's Service Graph and Service Graph
//! view read them unchanged; their histograms are fed whole bucket counts
//! ([`BucketHistograms`]). No trace id is ever a label; services, environments,
//! versions and span names each go through a [`LabelCap`].

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use causeway_schemas::records::{
    BucketCounts, GraphMetricsRecord, SliRecord, SloRecord, SpanMetricsRecord,
};
use prometheus::{
    proto, Encoder, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::config::MetricsConfig;
use crate::ingest::Stats;
use crate::sources::Topic;

mod server;

pub use server::{serve, Server};

/// The label value that stands for every value past a cap.
pub const OVERFLOW: &str = "__overflow__";

/// Caps the number of distinct values of a label (services, environments,
/// versions, span names): the first `max` values seen keep theirs.
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

/// Bounds the series whose label values come from telemetry (services,
/// environments, versions, span names, SLOs): the first label sets of each
/// family are admitted while the total stays within `max`; a label set past it
/// is reported as `__overflow__` (counters and histograms, so nothing is lost)
/// or not exported (gauges, which cannot be summed). A label set is
/// remembered by a hash of its family and values, so the budget's own memory
/// is a few bytes per admitted set.
#[derive(Debug)]
struct SeriesBudget {
    max: usize,
    admitted: Mutex<(usize, HashSet<u64>)>,
}

impl SeriesBudget {
    fn new(max: usize) -> Self {
        SeriesBudget {
            max,
            admitted: Mutex::new((0, HashSet::new())),
        }
    }

    /// Whether the label set `labels` of `family`, which makes `cost` series
    /// (a histogram makes one per bucket, `+Inf`, `_sum` and `_count`), is
    /// already exported or fits.
    fn admit(&self, family: &str, labels: &[&str], cost: usize) -> bool {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        family.hash(&mut h);
        labels.hash(&mut h);
        let key = h.finish();
        let Ok(mut admitted) = self.admitted.lock() else {
            return false;
        };
        let (used, known) = &mut *admitted;
        if known.contains(&key) {
            return true;
        }
        if *used + cost > self.max {
            return false;
        }
        *used += cost;
        known.insert(key);
        true
    }

    /// Series admitted so far.
    fn used(&self) -> usize {
        self.admitted.lock().map_or(0, |a| a.0)
    }
}

/// A histogram family fed with whole bucket counts: the jobs aggregate each
/// window's observations into the configured buckets, and this adds them up, so
/// `_count`, `_bucket` and `_sum` are exact (the sum to `f64` precision).
#[derive(Clone)]
pub struct BucketHistograms {
    desc: prometheus::core::Desc,
    bounds: Arc<Vec<f64>>,
    /// Label values → (per-bucket counts, the last one `+Inf`; sum in ns).
    series: Arc<Mutex<BTreeMap<Vec<String>, Series>>>,
}

/// One histogram series: per-bucket counts (the last one `+Inf`) and the sum in ns.
type Series = (Vec<u64>, u128);

impl BucketHistograms {
    fn new(name: &str, help: &str, labels: &[&str], bounds: &[f64]) -> Self {
        let desc = prometheus::core::Desc::new(
            name.into(),
            help.into(),
            labels.iter().map(|l| l.to_string()).collect(),
            Default::default(),
        )
        .expect("valid metric");
        BucketHistograms {
            desc,
            bounds: Arc::new(bounds.to_vec()),
            series: Default::default(),
        }
    }

    /// Series one label set makes: a bucket per bound, `+Inf`, `_sum`, `_count`.
    fn series_per_label_set(&self) -> usize {
        self.bounds.len() + 3
    }

    /// Adds `counts` to the series `labels`.
    pub fn add(&self, labels: &[&str], counts: &BucketCounts) {
        if counts.buckets.iter().all(|n| *n == 0) {
            return;
        }
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let key: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        let (buckets, sum) = series
            .entry(key)
            .or_insert_with(|| (vec![0; self.bounds.len() + 1], 0));
        for (a, b) in buckets.iter_mut().zip(&counts.buckets) {
            *a += b;
        }
        *sum += u128::from(counts.sum_ns);
    }
}

impl prometheus::core::Collector for BucketHistograms {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let Ok(series) = self.series.lock() else {
            return Vec::new();
        };
        let metrics = series
            .iter()
            .map(|(values, (buckets, sum_ns))| {
                let mut labels: Vec<proto::LabelPair> = self
                    .desc
                    .variable_labels
                    .iter()
                    .zip(values)
                    .map(|(n, v)| {
                        let mut p = proto::LabelPair::default();
                        p.set_name(n.clone());
                        p.set_value(v.clone());
                        p
                    })
                    .collect();
                // The text format lists labels by name, as the built-in metrics do.
                labels.sort_by(|a, b| a.name().cmp(b.name()));
                let mut h = proto::Histogram::default();
                let mut cumulative = 0;
                let mut out = Vec::with_capacity(self.bounds.len());
                for (bound, n) in self.bounds.iter().zip(buckets) {
                    cumulative += n;
                    let mut b = proto::Bucket::default();
                    b.set_cumulative_count(cumulative);
                    b.set_upper_bound(*bound);
                    out.push(b);
                }
                h.set_bucket(out);
                h.set_sample_count(buckets.iter().sum());
                h.set_sample_sum(*sum_ns as f64 / 1e9);
                let mut m = proto::Metric::from_label(labels);
                m.set_histogram(h);
                m
            })
            .collect();
        let mut f = proto::MetricFamily::default();
        f.set_name(self.desc.fq_name.clone());
        f.set_help(self.desc.help.clone());
        f.set_field_type(proto::MetricType::HISTOGRAM);
        f.set_metric(metrics);
        vec![f]
    }
}

/// Every metric Causeway exports.
pub struct Metrics {
    /// The registry served on `/metrics`.
    pub registry: Registry,
    /// Held while a window's records are counted and while a scrape renders,
    /// so that a scrape never sees half a window (a counter ahead of its
    /// histogram).
    consistent: Mutex<()>,
    budget: SeriesBudget,
    /// `causeway_metrics_series`: series admitted under `metrics.max_series`.
    series: IntGauge,
    /// `causeway_metrics_overflow_total{metric}`: label sets refused by
    /// `metrics.max_series` (reported as `__overflow__`, or not exported).
    overflow: IntCounterVec,
    cap: LabelCap,
    environments: LabelCap,
    versions: LabelCap,
    span_names: LabelCap,
    sli_events: IntCounterVec,
    /// `causeway_slo_burn_rate{slo,service,environment,window}`.
    pub burn_rate: GaugeVec,
    /// `causeway_slo_error_budget_remaining_ratio{slo,service,environment}`.
    pub budget_remaining: GaugeVec,
    calls: IntCounterVec,
    latency: BucketHistograms,
    graph_total: IntCounterVec,
    graph_failed: IntCounterVec,
    graph_server: BucketHistograms,
    graph_client: BucketHistograms,
    graph_unpaired: IntCounterVec,
    graph_dropped: IntCounterVec,
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
    /// `causeway_input_held_partitions{worker}`: partitions not read because
    /// they are ahead of the global frontier (event-time alignment).
    pub held_partitions: IntGaugeVec,
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

/// Labels of the span metrics, Tempo's plus `environment` and `version`.
const SPAN_LABELS: [&str; 6] = [
    "service",
    "environment",
    "version",
    "span_name",
    "span_kind",
    "status_code",
];
/// Labels of the service-graph metrics, Tempo's.
const GRAPH_LABELS: [&str; 3] = ["client", "server", "connection_type"];

impl Metrics {
    /// Registers every metric, with the caps and buckets of `cfg`.
    pub fn new(cfg: &MetricsConfig) -> Self {
        let r = Registry::new();
        let histograms = |name: &str, help: &str, labels: &[&str], bounds: &[f64]| {
            register(&r, BucketHistograms::new(name, help, labels, bounds))
        };
        let latency = histograms(
            "traces_spanmetrics_latency",
            "Span durations (end - start) in seconds, from final windows",
            &SPAN_LABELS,
            &cfg.span_metrics_buckets,
        );
        let graph_server = histograms(
            "traces_service_graph_request_server_seconds",
            "Durations of the server (child) spans of service-graph edges, seconds",
            &GRAPH_LABELS,
            &cfg.service_graph_buckets,
        );
        let graph_client = histograms(
            "traces_service_graph_request_client_seconds",
            "Durations of the client (parent) spans of service-graph edges, seconds",
            &GRAPH_LABELS,
            &cfg.service_graph_buckets,
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
        let series = register(
            &r,
            IntGauge::new(
                "causeway_metrics_series",
                "Series with label values from telemetry, admitted under metrics.max_series",
            )
            .expect("valid metric"),
        );
        Metrics {
            consistent: Mutex::new(()),
            budget: SeriesBudget::new(cfg.max_series),
            series,
            overflow: counter(
                &r,
                "causeway_metrics_overflow_total",
                "Label sets refused because /metrics holds metrics.max_series series (reported as __overflow__, or not exported for gauges)",
                &["metric"],
            ),
            cap: LabelCap::new(cfg.max_services),
            environments: LabelCap::new(cfg.max_services),
            versions: LabelCap::new(cfg.max_versions),
            span_names: LabelCap::new(cfg.max_span_names),
            sli_events: counter(
                &r,
                "causeway_sli_events_total",
                "Events counted by each SLI in final windows, by outcome",
                &["sli", "service", "environment", "version", "outcome"],
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
                "Spans in final windows",
                &SPAN_LABELS,
            ),
            latency,
            graph_total: counter(
                &r,
                "traces_service_graph_request_total",
                "Parent-child span pairs across services",
                &GRAPH_LABELS,
            ),
            graph_failed: counter(
                &r,
                "traces_service_graph_request_failed_total",
                "Parent-child span pairs across services where either span failed",
                &GRAPH_LABELS,
            ),
            graph_server,
            graph_client,
            graph_unpaired: counter(
                &r,
                "traces_service_graph_unpaired_spans_total",
                "Spans whose parent did not resolve (M4 orphans; client unknown)",
                &GRAPH_LABELS,
            ),
            graph_dropped: counter(
                &r,
                "traces_service_graph_dropped_spans_total",
                "Orphan spans whose parent is in the trace but outside the trace horizon",
                &GRAPH_LABELS,
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
            held_partitions: int_gauge(
                &r,
                "causeway_input_held_partitions",
                "Input partitions not read: ahead of the slowest by more than window + grace",
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
        let _consistent = self.consistent.lock();
        self.windows.inc();
        for r in records {
            if let (Some(good), Some(total)) = (r.good, r.total) {
                let labels = [
                    r.sli.as_str(),
                    self.cap.label(&r.service),
                    self.environments.label(&r.environment),
                    self.versions.label(&r.version),
                ];
                let [sli, mut service, mut environment, mut version] = labels;
                if !self.admit(
                    "causeway_sli_events_total",
                    &[sli, service, environment, version],
                    2,
                ) {
                    [service, environment, version] = [OVERFLOW; 3];
                }
                self.sli_events
                    .with_label_values(&[sli, service, environment, version, "good"])
                    .inc_by(good);
                self.sli_events
                    .with_label_values(&[sli, service, environment, version, "bad"])
                    .inc_by(total.saturating_sub(good));
            }
        }
    }

    /// Counts one final time's span metrics.
    pub fn observe_span_metrics(&self, records: &[SpanMetricsRecord]) {
        let _consistent = self.consistent.lock();
        for m in records {
            let mut labels = [
                self.cap.label(&m.service),
                self.environments.label(&m.environment),
                self.versions.label(&m.version),
                self.span_names.label(&m.span_name),
                m.span_kind.as_str(),
                m.status_code.as_str(),
            ];
            let cost = 1 + self.latency.series_per_label_set();
            if !self.admit("traces_spanmetrics", &labels, cost) {
                labels[..4].fill(OVERFLOW);
            }
            self.calls.with_label_values(&labels).inc_by(m.calls);
            self.latency.add(&labels, &m.latency);
        }
    }

    /// Counts one final time's service-graph metrics.
    pub fn observe_graph(&self, records: &[GraphMetricsRecord]) {
        let _consistent = self.consistent.lock();
        for g in records {
            let client = if g.client.is_empty() {
                ""
            } else {
                self.cap.label(&g.client)
            };
            let mut labels = [
                client,
                self.cap.label(&g.server),
                g.connection_type.as_str(),
            ];
            let cost = 4
                + self.graph_server.series_per_label_set()
                + self.graph_client.series_per_label_set();
            if !self.admit("traces_service_graph", &labels, cost) {
                labels[1] = OVERFLOW;
                if !labels[0].is_empty() {
                    labels[0] = OVERFLOW;
                }
            }
            let add = |c: &IntCounterVec, n: u64| {
                if n > 0 {
                    c.with_label_values(&labels).inc_by(n);
                }
            };
            add(&self.graph_total, g.total);
            add(&self.graph_failed, g.failed);
            add(&self.graph_unpaired, g.unpaired);
            add(&self.graph_dropped, g.dropped);
            self.graph_server.add(&labels, &g.server_latency);
            self.graph_client.add(&labels, &g.client_latency);
        }
    }

    /// Sets the burn-rate and budget gauges from one evaluation.
    pub fn observe_slo(&self, records: &[SloRecord]) {
        for r in records {
            let service = self.cap.label(&r.service);
            let labels = [r.slo.as_str(), service, &r.environment];
            if !self.admit("causeway_slo", &labels, r.burn_rates.len() + 1) {
                continue;
            }
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

    /// Whether a label set of `family` (`cost` series) is exported under
    /// `metrics.max_series`; counts a refusal.
    fn admit(&self, family: &str, labels: &[&str], cost: usize) -> bool {
        if self.budget.admit(family, labels, cost) {
            self.series.set(self.budget.used() as i64);
            return true;
        }
        self.overflow.with_label_values(&[family]).inc();
        false
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
        let _consistent = self.consistent.lock();
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

    fn config(cap: usize) -> MetricsConfig {
        MetricsConfig {
            max_services: cap,
            max_span_names: cap,
            max_versions: cap,
            ..MetricsConfig::default()
        }
    }

    #[test]
    fn sli_records_become_counters_with_their_version() {
        let m = Metrics::new(&config(10));
        let r = SliRecord::ratio("availability", ("api", "prod", "1.0"), (0, 60), 9, 10);
        m.observe_sli(&[r]);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("causeway_sli_events_total{environment=\"prod\",outcome=\"bad\",service=\"api\",sli=\"availability\",version=\"1.0\"} 1"), "{text}");
        assert!(text.contains("causeway_sli_events_total{environment=\"prod\",outcome=\"good\",service=\"api\",sli=\"availability\",version=\"1.0\"} 9"), "{text}");
    }

    fn span_metric(name: &str, calls: u64, buckets: Vec<u64>, sum_ns: u64) -> SpanMetricsRecord {
        SpanMetricsRecord {
            window_start: 0,
            service: "api".into(),
            environment: "prod".into(),
            version: "1.0".into(),
            span_name: name.into(),
            span_kind: "SPAN_KIND_SERVER".into(),
            status_code: "STATUS_CODE_UNSET".into(),
            calls,
            latency: BucketCounts { buckets, sum_ns },
        }
    }

    #[test]
    fn span_metrics_add_whole_buckets() {
        let m = Metrics::new(&MetricsConfig {
            span_metrics_buckets: vec![0.1, 1.0],
            ..config(10)
        });
        // Two windows: 3 spans ≤ 0.1 s, 1 in (0.1, 1], 1 above; sums 1.5 s and 2 s.
        m.observe_span_metrics(&[span_metric("GET /items", 4, vec![2, 1, 1], 1_500_000_000)]);
        m.observe_span_metrics(&[span_metric("GET /items", 1, vec![1, 0, 0], 2_000_000_000)]);
        let text = String::from_utf8(m.render()).unwrap();
        let labels = "environment=\"prod\",service=\"api\",span_kind=\"SPAN_KIND_SERVER\",span_name=\"GET /items\",status_code=\"STATUS_CODE_UNSET\",version=\"1.0\"";
        for want in [
            format!("traces_spanmetrics_calls_total{{{labels}}} 5"),
            format!("traces_spanmetrics_latency_bucket{{{labels},le=\"0.1\"}} 3"),
            format!("traces_spanmetrics_latency_bucket{{{labels},le=\"1\"}} 4"),
            format!("traces_spanmetrics_latency_bucket{{{labels},le=\"+Inf\"}} 5"),
            format!("traces_spanmetrics_latency_sum{{{labels}}} 3.5"),
            format!("traces_spanmetrics_latency_count{{{labels}}} 5"),
        ] {
            assert!(text.contains(&want), "{want} not in\n{text}");
        }
    }

    #[test]
    fn ten_thousand_span_names_stay_within_the_cap() {
        let cap = 50;
        let m = Metrics::new(&config(cap));
        let records: Vec<SpanMetricsRecord> = (0..10_000)
            .map(|i| span_metric(&format!("GET /users/{i}"), 1, vec![1; 15], 1_000))
            .collect();
        m.observe_span_metrics(&records);
        let families = m.registry.gather();
        let calls = families
            .iter()
            .find(|f| f.name() == "traces_spanmetrics_calls_total")
            .unwrap();
        let names: HashSet<&str> = calls
            .get_metric()
            .iter()
            .flat_map(|s| s.get_label())
            .filter(|l| l.name() == "span_name")
            .map(|l| l.value())
            .collect();
        assert_eq!(names.len(), cap + 1, "{cap} names and {OVERFLOW}");
        assert!(names.contains(OVERFLOW));
        // Nothing is lost: the overflow series holds every call past the cap.
        let count = |name: &str| -> f64 {
            calls
                .get_metric()
                .iter()
                .filter(|s| s.get_label().iter().any(|l| l.value() == name))
                .map(|s| s.get_counter().value())
                .sum()
        };
        assert_eq!(count(OVERFLOW), (10_000 - cap) as f64);
        assert_eq!(count("GET /users/0"), 1.0);
        let latency = families
            .iter()
            .find(|f| f.name() == "traces_spanmetrics_latency")
            .unwrap();
        assert_eq!(latency.get_metric().len(), cap + 1);
    }

    #[test]
    fn series_stay_within_max_series_and_the_rest_is_overflow() {
        // 16 series per label set: calls, 14 latency buckets, +Inf, _sum, _count.
        let m = Metrics::new(&MetricsConfig {
            max_series: 1000,
            ..MetricsConfig::default()
        });
        let services = 500;
        let records: Vec<SpanMetricsRecord> = (0..services)
            .map(|i| SpanMetricsRecord {
                service: format!("svc-{i}"),
                ..span_metric("GET /", 1, vec![1; 15], 1_000)
            })
            .collect();
        m.observe_span_metrics(&records);
        m.observe_span_metrics(&records);
        let text = String::from_utf8(m.render()).unwrap();
        let series = |prefix: &str| {
            text.lines()
                .filter(|l| l.starts_with(prefix) && !l.starts_with('#'))
                .count()
        };
        let per_set = 1 + crate::config::TEMPO_SPAN_METRICS_BUCKETS.len() + 3;
        let admitted = 1000 / per_set;
        assert_eq!(
            series("traces_spanmetrics"),
            (admitted + 1) * per_set,
            "{admitted} label sets and one __overflow__ set"
        );
        assert!(text.contains(&format!("causeway_metrics_series {}", admitted * per_set)));
        // Nothing is lost: the overflow series counts every later service, twice.
        let overflow_calls = text
            .lines()
            .find(|l| l.starts_with("traces_spanmetrics_calls_total{") && l.contains(OVERFLOW))
            .unwrap();
        let n = 2 * (services - admitted);
        assert!(
            overflow_calls.ends_with(&format!(" {n}")),
            "{overflow_calls}"
        );
        assert!(text.contains(&format!(
            "causeway_metrics_overflow_total{{metric=\"traces_spanmetrics\"}} {n}"
        )));
    }

    #[test]
    fn graph_metrics_keep_tempo_labels_and_skip_empty_series() {
        let m = Metrics::new(&config(10));
        let edge = GraphMetricsRecord {
            window_start: 0,
            client: "web".into(),
            server: "api".into(),
            connection_type: String::new(),
            total: 3,
            failed: 1,
            unpaired: 0,
            dropped: 0,
            server_latency: BucketCounts {
                buckets: vec![3, 0, 0, 0, 0, 0, 0, 0, 0],
                sum_ns: 150_000_000,
            },
            client_latency: BucketCounts {
                buckets: vec![2, 1, 0, 0, 0, 0, 0, 0, 0],
                sum_ns: 350_000_000,
            },
        };
        let orphans = GraphMetricsRecord {
            client: String::new(),
            total: 0,
            failed: 0,
            unpaired: 2,
            server_latency: BucketCounts::default(),
            client_latency: BucketCounts::default(),
            ..edge.clone()
        };
        m.observe_graph(&[edge, orphans]);
        let text = String::from_utf8(m.render()).unwrap();
        for want in [
            "traces_service_graph_request_total{client=\"web\",connection_type=\"\",server=\"api\"} 3",
            "traces_service_graph_request_failed_total{client=\"web\",connection_type=\"\",server=\"api\"} 1",
            "traces_service_graph_request_server_seconds_count{client=\"web\",connection_type=\"\",server=\"api\"} 3",
            "traces_service_graph_request_client_seconds_bucket{client=\"web\",connection_type=\"\",server=\"api\",le=\"0.1\"} 2",
            "traces_service_graph_unpaired_spans_total{client=\"\",connection_type=\"\",server=\"api\"} 2",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
        assert!(
            !text.contains("traces_service_graph_request_total{client=\"\""),
            "{text}"
        );
        assert!(!text.contains("dropped_spans_total{"), "{text}");
    }

    #[test]
    fn slo_records_set_the_burn_and_budget_gauges() {
        use causeway_schemas::records::WindowBurn;
        let m = Metrics::new(&config(10));
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
