//! What a report says, computed from [`Records`] for one [`Period`]: every number
//! of `report.json`, which the HTML and Markdown renderings only format.
//!
//! Aggregation is exact: counts are sums of final SLI records of the windows in
//! the period; latency quantiles come from the merged HDR histograms; budgets
//! follow SPEC §4 over the period's windows:
//! `error_budget_remaining = 1 - bad / (total × (1 - objective))`.

use std::collections::{BTreeMap, BTreeSet};

use causeway_jobs::operators::finalize::decode_histogram;
use causeway_jobs::slo::{budget_remaining, burn_rate, Evaluator, SloSpec, CORRELATED_ALERT_RATE};
use causeway_schemas::records::{AlertRecord, ChangeRecord, SliRecord};
use causeway_schemas::time::{format_rfc3339, parse_rfc3339, NANOS_PER_SEC};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::input::Records;
use super::period::Period;
use super::ReportError;

/// At most this many points per chart series: longer periods are charted in
/// buckets of whole windows (sums of their counts, so still exact).
pub const MAX_POINTS: u64 = 1440;

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The period and how its budget is computed.
    pub period: PeriodOut,
    /// SLI window size, seconds.
    pub window_seconds: u64,
    /// Width of one chart point (a whole number of windows), seconds.
    pub chart_step_seconds: u64,
    /// The charts' time axis: the windows of the period that hold data.
    pub axis: Axis,
    /// `--service` filters (empty: every service).
    pub services_filter: Vec<String>,
    /// `--slo` filters (empty: every SLO of the config).
    pub slos_filter: Vec<String>,
    /// One entry per SLO target (SLO × service).
    pub slos: Vec<SloTarget>,
    /// Per service: SLIs and latency by version.
    pub services: Vec<ServiceVersions>,
    /// Traceability SLIs per service, worst first.
    pub traceability: Vec<Traceability>,
    /// Service-graph edges summed over the period.
    pub service_graph: Vec<Edge>,
    /// Every deploy event in the period.
    pub deploys: Vec<Deploy>,
}

/// The period, stated in full.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeriodOut {
    /// `rolling` or `calendar`.
    pub method: String,
    /// `28d`, `month`, `week`.
    pub length: String,
    /// Start, RFC 3339.
    pub start: String,
    /// End (exclusive), RFC 3339.
    pub end: String,
    /// Data counted up to (exclusive), RFC 3339.
    pub as_of: String,
    /// Start, Unix seconds.
    pub start_unix: u64,
    /// End, Unix seconds.
    pub end_unix: u64,
    /// As of, Unix seconds.
    pub as_of_unix: u64,
    /// False for a calendar period reported before its end.
    pub complete: bool,
    /// How the error budget is computed, in words.
    pub budget_method: String,
}

/// The chart axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    /// First window start with data, Unix seconds.
    pub start: u64,
    /// Last window end with data, Unix seconds.
    pub end: u64,
}

/// A good/total pair and its ratio.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Good events.
    pub good: u64,
    /// All events.
    pub total: u64,
    /// `good / total`; absent when `total` is 0.
    pub ratio: Option<f64>,
}

impl Counts {
    fn new(good: u64, total: u64) -> Self {
        Counts {
            good,
            total,
            ratio: (total > 0).then(|| good as f64 / total as f64),
        }
    }
}

/// One policy row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyOut {
    /// `page` or `ticket`.
    pub severity: String,
    /// Long window.
    pub long: String,
    /// Short window.
    pub short: String,
    /// Factor.
    pub factor: f64,
}

/// One SLO target over the period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SloTarget {
    /// SLO name.
    pub slo: String,
    /// Service.
    pub service: String,
    /// Environment the SLO is restricted to; empty for all.
    pub environment: String,
    /// SLI id.
    pub sli: String,
    /// Objective.
    pub objective: f64,
    /// `latency` only: threshold, milliseconds.
    pub threshold_ms: Option<f64>,
    /// The SLO's own (alerting) period, seconds; the report's period may differ.
    pub slo_period_seconds: u64,
    /// Low-traffic guard of the burn rates.
    pub min_events: u64,
    /// Good events in the period.
    pub good: u64,
    /// Bad events in the period.
    pub bad: u64,
    /// Events in the period.
    pub total: u64,
    /// `good / total`; absent without events.
    pub attainment: Option<f64>,
    /// `attainment >= objective`; absent without events.
    pub met: Option<bool>,
    /// Bad events the period allows: `total × (1 - objective)`.
    pub budget_events: f64,
    /// `bad / budget_events`; absent without events.
    pub budget_consumed: Option<f64>,
    /// SPEC §4: `1 - bad / (total × (1 - objective))`, 1 without events.
    pub error_budget_remaining: f64,
    /// The alerting policy.
    pub policy: Vec<PolicyOut>,
    /// The SLI per chart step.
    pub series: Vec<Point>,
    /// Burn rate per policy window, at the end of each chart step.
    pub burn_rates: Vec<BurnSeries>,
    /// Budget remaining at the end of each chart step.
    pub burndown: Vec<BudgetPoint>,
    /// Deploys of the service and of the services it calls, with the bad events
    /// of the windows in which each was the newest of them.
    pub deploys: Vec<Attributed>,
    /// Bad events before the first of those deploys in the period.
    pub unattributed_bad: u64,
    /// Alerts of the target (one per firing episode).
    pub alerts: Vec<AlertSpan>,
    /// The evaluator's last record in the period (over the SLO's own period).
    pub evaluator: Option<EvaluatorCheck>,
}

/// The SLI over one chart step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Step start, Unix seconds.
    pub start: u64,
    /// Step end, Unix seconds.
    pub end: u64,
    /// Good/total of the step.
    pub counts: Counts,
}

/// Burn rates over one policy window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BurnSeries {
    /// Window label (`"1h"`).
    pub window: String,
    /// Window, seconds.
    pub seconds: u64,
    /// Highest burn rate in the period.
    pub peak: f64,
    /// One point per chart step end.
    pub points: Vec<BurnPoint>,
}

/// A burn rate at one time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BurnPoint {
    /// Evaluation time (a window end), Unix seconds.
    pub at: u64,
    /// Bad events of the windows starting in `[at - window, at)`.
    pub bad: u64,
    /// Events of those windows.
    pub total: u64,
    /// SPEC §4 burn rate; 0 below `min_events`.
    pub burn_rate: f64,
}

/// Budget remaining at one time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetPoint {
    /// Unix seconds.
    pub at: u64,
    /// Bad events from the period start to `at`.
    pub bad_to_date: u64,
    /// `1 - bad_to_date / budget_events` (the period's budget; 1 without events).
    pub remaining: f64,
}

/// A deploy event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deploy {
    /// RFC 3339.
    pub at: String,
    /// Unix nanoseconds.
    pub time_unix_nano: u64,
    /// Service.
    pub service: String,
    /// Environment.
    pub environment: String,
    /// `deployed`, `upgraded`, `rolledback`, `removed`.
    pub action: String,
    /// Version.
    pub version: String,
    /// Artifact.
    pub artifact: String,
    /// Actor of the correlated audit record; empty when none.
    pub actor: String,
    /// CDEvents id.
    pub id: String,
}

impl Deploy {
    fn from(c: &ChangeRecord) -> Self {
        Deploy {
            at: format_rfc3339(c.time_unix_nano / NANOS_PER_SEC),
            time_unix_nano: c.time_unix_nano,
            service: c.service.clone(),
            environment: c.environment.clone(),
            action: c.action.clone(),
            version: c.version.clone(),
            artifact: c.artifact.clone(),
            actor: c.actor.clone(),
            id: c.id.clone(),
        }
    }
}

/// A deploy and the budget burned while it was the newest change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attributed {
    /// The deploy.
    pub deploy: Deploy,
    /// Bad events of the windows ending after it and before the next one.
    pub bad: u64,
    /// `bad / budget_events` of the target; absent without events.
    pub budget_share: Option<f64>,
    /// Whether an alert of the target named it as a suspected change.
    pub suspected_by_alert: bool,
}

/// One firing episode of an alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertSpan {
    /// `page` or `ticket`.
    pub severity: String,
    /// Dedup key.
    pub dedup_key: String,
    /// Fired, RFC 3339.
    pub starts_at: String,
    /// Resolved, RFC 3339; absent when still firing at the end of the period.
    pub ends_at: Option<String>,
    /// Started in a maintenance window: recorded, not paged.
    pub suppressed: bool,
    /// Culprit service.
    pub culprit: String,
    /// Suspected changes, `service version (action) by actor`.
    pub suspects: Vec<String>,
    /// Exemplar trace ids.
    pub exemplars: usize,
}

/// The evaluator's own figures, for comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvaluatorCheck {
    /// Evaluation time, Unix seconds.
    pub evaluated_at: u64,
    /// Bad events over the SLO's period.
    pub period_bad: u64,
    /// Events over the SLO's period.
    pub period_total: u64,
    /// Budget remaining over the SLO's period.
    pub error_budget_remaining: f64,
}

/// One service's versions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceVersions {
    /// Service.
    pub service: String,
    /// Its (environment, version) rows, by environment and version.
    pub versions: Vec<VersionRow>,
}

/// SLIs of one version of a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionRow {
    /// Environment.
    pub environment: String,
    /// Version.
    pub version: String,
    /// `stable` for the version with the most requests in its environment,
    /// `canary` for the others.
    pub role: String,
    /// First window start with data, Unix seconds.
    pub first_seen: u64,
    /// Last window end with data, Unix seconds.
    pub last_seen: u64,
    /// Availability (entry spans not `ERROR`).
    pub availability: Counts,
    /// Latency of entry spans from the merged histograms.
    pub latency: Option<Latency>,
    /// Every other ratio SLI of the version.
    pub slis: BTreeMap<String, Counts>,
}

/// Quantiles of a merged histogram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Entry spans.
    pub count: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

/// Traceability SLIs of one service over the period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Traceability {
    /// Service.
    pub service: String,
    /// The lowest good ratio among the ratio SLIs below (1 when none has events);
    /// the table is sorted by it, lowest first.
    pub worst_ratio: f64,
    /// M1.
    pub trace_coverage: Counts,
    /// M4: `good` = non-orphan spans.
    pub context_loss: Counts,
    /// M4: orphans / spans.
    pub context_loss_rate: Option<f64>,
    /// M2.
    pub error_trace_ratio: Counts,
    /// M3.
    pub latency_capture: Counts,
    /// M5.
    pub provenance_completeness: Counts,
    /// M9: records with a PII match.
    pub pii_exposures: u64,
    /// M9: records scanned.
    pub pii_scanned: u64,
    /// M10 recomputed from the summed counts.
    pub sampling_bias: Option<SamplingBias>,
}

/// M10 over the period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingBias {
    /// Request records.
    pub requests: u64,
    /// Error request records.
    pub error_requests: u64,
    /// Traced request records.
    pub traced_requests: u64,
    /// Traced error request records.
    pub traced_error_requests: u64,
    /// `|error_requests/requests - traced_error_requests/traced_requests|`;
    /// absent unless both shares are defined.
    pub value: Option<f64>,
}

/// One service-graph edge over the period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    /// Calling service.
    pub client: String,
    /// Called service.
    pub server: String,
    /// Calls.
    pub calls: u64,
    /// Failed calls.
    pub failed: u64,
}

/// What to report on.
pub struct Scope<'a> {
    /// Resolved SLOs of the config.
    pub specs: &'a [SloSpec],
    /// SLI window size, seconds.
    pub window_s: u64,
    /// The period.
    pub period: &'a Period,
    /// `--service` (empty: all).
    pub services: &'a [String],
    /// `--slo` (empty: all).
    pub slos: &'a [String],
}

const RATIO_SLIS: [&str; 5] = [
    "trace_coverage",
    "context_loss",
    "error_trace_ratio",
    "latency_capture",
    "provenance_completeness",
];

/// Computes the report.
pub fn compute(rec: &Records, scope: &Scope<'_>) -> Result<Report, ReportError> {
    let p = scope.period;
    for name in scope.slos {
        if !scope.specs.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = scope.specs.iter().map(|s| s.name.as_str()).collect();
            return Err(ReportError::UnknownSlo {
                name: name.clone(),
                known: known.join(", "),
            });
        }
    }
    let in_period: Vec<&SliRecord> = rec
        .sli
        .iter()
        .filter(|r| p.holds(r.window_start, r.window_end))
        .collect();
    if in_period.is_empty() {
        let range = match (rec.sli.first(), rec.sli.iter().map(|r| r.window_end).max()) {
            (Some(f), Some(e)) => format!(
                "the records cover {} to {}",
                format_rfc3339(f.window_start),
                format_rfc3339(e)
            ),
            _ => "there are no SLI records at all".to_string(),
        };
        return Err(ReportError::EmptyPeriod(format!(
            "no SLI record in the period {} to {}; {range}",
            format_rfc3339(p.start),
            format_rfc3339(p.as_of)
        )));
    }
    let seen: BTreeSet<&str> = in_period.iter().map(|r| r.service.as_str()).collect();
    for s in scope.services {
        if !seen.contains(s.as_str()) {
            return Err(ReportError::UnknownService {
                name: s.clone(),
                known: seen.iter().copied().collect::<Vec<_>>().join(", "),
            });
        }
    }
    let wanted = |s: &str| scope.services.is_empty() || scope.services.iter().any(|x| x == s);
    let axis = Axis {
        start: in_period
            .iter()
            .map(|r| r.window_start)
            .min()
            .unwrap_or(p.start),
        end: in_period
            .iter()
            .map(|r| r.window_end)
            .max()
            .unwrap_or(p.as_of),
    };
    let window_s = scope.window_s.max(1);
    let windows = axis.end.saturating_sub(axis.start).div_ceil(window_s);
    let step = window_s * windows.div_ceil(MAX_POINTS).max(1);

    let edges = graph(rec, p);
    let mut slos = Vec::new();
    for spec in scope.specs {
        if !scope.slos.is_empty() && !scope.slos.contains(&spec.name) {
            continue;
        }
        let services: BTreeSet<String> = match &spec.service {
            Some(s) => [s.clone()].into(),
            None => in_period
                .iter()
                .filter(|r| Evaluator::counts(spec, r).is_some())
                .map(|r| r.service.clone())
                .collect(),
        };
        for service in services.into_iter().filter(|s| wanted(s)) {
            slos.push(target(
                rec,
                spec,
                &service,
                p,
                &axis,
                (window_s, step),
                &edges,
            ));
        }
    }

    let deploys = rec
        .changes
        .iter()
        .filter(|c| in_time(c.time_unix_nano, p) && wanted(&c.service))
        .map(Deploy::from)
        .collect();
    let service_graph = edges
        .iter()
        .filter(|((c, s), _)| wanted(c) || wanted(s))
        .map(|((client, server), (calls, failed))| Edge {
            client: client.clone(),
            server: server.clone(),
            calls: *calls,
            failed: *failed,
        })
        .collect();
    // M7 records describe alerts, not a version of a service.
    let mine: Vec<&SliRecord> = in_period
        .iter()
        .copied()
        .filter(|r| wanted(&r.service) && r.sli != CORRELATED_ALERT_RATE)
        .collect();
    Ok(Report {
        period: PeriodOut {
            method: p.method.clone(),
            length: p.length.clone(),
            start: format_rfc3339(p.start),
            end: format_rfc3339(p.end),
            as_of: format_rfc3339(p.as_of),
            start_unix: p.start,
            end_unix: p.end,
            as_of_unix: p.as_of,
            complete: p.complete,
            budget_method: budget_method(p),
        },
        window_seconds: window_s,
        chart_step_seconds: step,
        axis,
        services_filter: scope.services.to_vec(),
        slos_filter: scope.slos.to_vec(),
        slos,
        services: versions(&mine)?,
        traceability: traceability(&mine),
        service_graph,
        deploys,
    })
}

fn budget_method(p: &Period) -> String {
    if p.method == "calendar" {
        format!(
            "calendar {}: the budget is (1 - objective) x the events of the {} so far ({} to {}{}); it starts full on the first day and does not carry over",
            p.length,
            p.length,
            format_rfc3339(p.start),
            format_rfc3339(p.as_of),
            if p.complete { "" } else { ", period not over" }
        )
    } else {
        format!(
            "rolling {}: the budget is (1 - objective) x the events of the {} ending at {}; older bad events no longer count",
            p.length,
            p.length,
            format_rfc3339(p.as_of)
        )
    }
}

fn in_time(ns: u64, p: &Period) -> bool {
    let s = ns / NANOS_PER_SEC;
    s >= p.start && s < p.as_of
}

type Graph = BTreeMap<(String, String), (u64, u64)>;

fn graph(rec: &Records, p: &Period) -> Graph {
    let mut g = Graph::new();
    for e in rec
        .edges
        .iter()
        .filter(|e| p.holds(e.window_start, e.window_end))
    {
        let x = g.entry((e.client.clone(), e.server.clone())).or_default();
        x.0 += e.total;
        x.1 += e.failed;
    }
    g
}

fn target(
    rec: &Records,
    spec: &SloSpec,
    service: &str,
    p: &Period,
    axis: &Axis,
    (window_s, step): (u64, u64),
    edges: &Graph,
) -> SloTarget {
    let o = spec.objective;
    // Bad/total per window start, including the windows before the period that
    // the burn-rate windows look back on.
    let mut per_window: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for r in rec
        .sli
        .iter()
        .filter(|r| r.service == service && r.window_end <= p.as_of)
    {
        if let Some((bad, total)) = Evaluator::counts(spec, r) {
            let x = per_window.entry(r.window_start).or_default();
            x.0 += bad;
            x.1 += total;
        }
    }
    let sum = |from: u64, to: u64| {
        per_window
            .range(from..to)
            .fold((0, 0), |acc, (_, (b, t))| (acc.0 + b, acc.1 + t))
    };
    let (bad, total) = sum(p.start, p.as_of);
    let budget_events = total as f64 * (1.0 - o);
    let attainment = (total > 0).then(|| (total - bad) as f64 / total as f64);

    let mut ends = Vec::new();
    let mut b = axis.start;
    while b < axis.end {
        ends.push((b, (b + step).min(axis.end)));
        b += step;
    }
    let series = ends
        .iter()
        .map(|&(s, e)| {
            let (bad, total) = sum(s, e);
            Point {
                start: s,
                end: e,
                counts: Counts::new(total - bad, total),
            }
        })
        .collect();
    let burn_rates = spec
        .windows()
        .into_iter()
        .map(|(seconds, window)| {
            let points: Vec<BurnPoint> = ends
                .iter()
                .map(|&(_, at)| {
                    let (bad, total) = sum(at.saturating_sub(seconds), at);
                    BurnPoint {
                        at,
                        bad,
                        total,
                        burn_rate: burn_rate(bad, total, o, spec.min_events),
                    }
                })
                .collect();
            BurnSeries {
                window,
                seconds,
                peak: points.iter().map(|x| x.burn_rate).fold(0.0, f64::max),
                points,
            }
        })
        .collect();
    let burndown = ends
        .iter()
        .map(|&(_, at)| {
            let (b, _) = sum(p.start, at);
            BudgetPoint {
                at,
                bad_to_date: b,
                remaining: if total == 0 {
                    1.0
                } else {
                    1.0 - b as f64 / budget_events
                },
            }
        })
        .collect();

    let alerts = alert_spans(&rec.alerts, &spec.name, service, p);
    let suspected: BTreeSet<&str> = rec
        .alerts
        .iter()
        .filter(|a| a.label("slo") == spec.name && a.label("service") == service)
        .flat_map(|a| a.suspected_changes.iter().map(|c| c.id.as_str()))
        .collect();
    // The service and the services it calls (SPEC §5's suspects).
    let mut related: BTreeSet<&str> = edges
        .keys()
        .filter(|(c, _)| c == service)
        .map(|(_, s)| s.as_str())
        .collect();
    related.insert(service);
    let changes: Vec<&ChangeRecord> = rec
        .changes
        .iter()
        .filter(|c| related.contains(c.service.as_str()) && in_time(c.time_unix_nano, p))
        .collect();
    let mut charged: BTreeMap<usize, u64> = BTreeMap::new();
    let mut unattributed_bad = 0;
    for (&w, &(b, _)) in per_window.range(p.start..p.as_of) {
        let end_ns = (w + window_s) * NANOS_PER_SEC;
        match changes.iter().rposition(|c| c.time_unix_nano < end_ns) {
            Some(i) => *charged.entry(i).or_default() += b,
            None => unattributed_bad += b,
        }
    }
    let deploys = changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let bad = charged.get(&i).copied().unwrap_or(0);
            Attributed {
                deploy: Deploy::from(c),
                bad,
                budget_share: (total > 0).then(|| bad as f64 / budget_events),
                suspected_by_alert: suspected.contains(c.id.as_str()),
            }
        })
        .collect();
    let evaluator = rec
        .slo
        .iter()
        .filter(|r| {
            r.slo == spec.name
                && r.service == service
                && r.evaluated_at > p.start
                && r.evaluated_at <= p.as_of
        })
        .max_by_key(|r| r.evaluated_at)
        .map(|r| EvaluatorCheck {
            evaluated_at: r.evaluated_at,
            period_bad: r.period_bad,
            period_total: r.period_total,
            error_budget_remaining: r.error_budget_remaining,
        });
    SloTarget {
        slo: spec.name.clone(),
        service: service.to_string(),
        environment: spec.environment.clone().unwrap_or_default(),
        sli: spec.sli.as_str().to_string(),
        objective: o,
        threshold_ms: spec.threshold_us.map(|us| us as f64 / 1000.0),
        slo_period_seconds: spec.period_s,
        min_events: spec.min_events,
        good: total - bad,
        bad,
        total,
        attainment,
        met: attainment.map(|a| a >= o),
        budget_events,
        budget_consumed: (total > 0).then(|| bad as f64 / budget_events),
        error_budget_remaining: budget_remaining(bad, total, o),
        policy: spec
            .policy
            .iter()
            .map(|r| PolicyOut {
                severity: r.severity.as_str().to_string(),
                long: r.long.1.clone(),
                short: r.short.1.clone(),
                factor: r.factor,
            })
            .collect(),
        series,
        burn_rates,
        burndown,
        deploys,
        unattributed_bad,
        alerts,
        evaluator,
    }
}

/// The alert episodes of one target that overlap the period, as known at its end.
fn alert_spans(alerts: &[AlertRecord], slo: &str, service: &str, p: &Period) -> Vec<AlertSpan> {
    let secs = |s: &str| parse_rfc3339(s).map_or(0, |ns| ns / NANOS_PER_SEC);
    let mut episodes: BTreeMap<(u64, String), AlertSpan> = BTreeMap::new();
    for a in alerts.iter().filter(|a| {
        a.label("slo") == slo && a.label("service") == service && secs(&a.evaluated_at) <= p.as_of
    }) {
        let e = episodes
            .entry((secs(&a.starts_at), a.dedup_key.clone()))
            .or_insert_with(|| AlertSpan {
                severity: a.label("severity").to_string(),
                dedup_key: a.dedup_key.clone(),
                starts_at: a.starts_at.clone(),
                ends_at: None,
                suppressed: a.suppressed,
                culprit: a.culprit.clone(),
                suspects: a
                    .suspected_changes
                    .iter()
                    .map(|c| {
                        let by = if c.actor.is_empty() {
                            "unknown actor".to_string()
                        } else {
                            format!("by {}", c.actor)
                        };
                        format!("{} {} ({}) {by}", c.service, c.version, c.action)
                    })
                    .collect(),
                exemplars: a.exemplar_trace_ids.len(),
            });
        if a.status == "resolved" {
            e.ends_at = a.ends_at.clone();
        }
    }
    episodes
        .into_iter()
        .filter(|((start, _), e)| {
            *start < p.as_of && e.ends_at.as_deref().is_none_or(|end| secs(end) > p.start)
        })
        .map(|(_, e)| e)
        .collect()
}

/// SLIs and latency by (service, environment, version).
fn versions(records: &[&SliRecord]) -> Result<Vec<ServiceVersions>, ReportError> {
    #[derive(Default)]
    struct Acc {
        first: u64,
        last: u64,
        ratios: BTreeMap<String, (u64, u64)>,
        hist: Option<Histogram<u64>>,
    }
    let mut by: BTreeMap<(String, String, String), Acc> = BTreeMap::new();
    for r in records {
        let a = by
            .entry((r.service.clone(), r.environment.clone(), r.version.clone()))
            .or_insert_with(|| Acc {
                first: u64::MAX,
                ..Acc::default()
            });
        a.first = a.first.min(r.window_start);
        a.last = a.last.max(r.window_end);
        if r.sli == "latency" {
            let Some(h) = r.histogram.as_deref().and_then(decode_histogram) else {
                return Err(ReportError::Record {
                    at: format!(
                        "latency record of {} {} {} at {}",
                        r.service,
                        r.environment,
                        r.version,
                        format_rfc3339(r.window_start)
                    ),
                    detail: "its histogram is missing or not a base64 HDR V2 histogram".into(),
                });
            };
            match &mut a.hist {
                Some(m) => m.add(&h).map_err(|e| ReportError::Record {
                    at: format!("latency record of {} {}", r.service, r.version),
                    detail: format!("its histogram cannot be merged: {e}"),
                })?,
                None => a.hist = Some(h),
            }
        } else if let (Some(g), Some(t)) = (r.good, r.total) {
            let x = a.ratios.entry(r.sli.clone()).or_default();
            x.0 += g;
            x.1 += t;
        }
    }
    // The stable version of each (service, environment): the most requests.
    let mut stable: BTreeMap<(String, String), (u64, String)> = BTreeMap::new();
    for ((s, e, v), a) in &by {
        let n = a.ratios.get("availability").map_or(0, |x| x.1);
        let best = stable
            .entry((s.clone(), e.clone()))
            .or_insert((n, v.clone()));
        if n > best.0 {
            *best = (n, v.clone());
        }
    }
    let mut out: Vec<ServiceVersions> = Vec::new();
    for ((service, environment, version), a) in by {
        let role = if stable
            .get(&(service.clone(), environment.clone()))
            .is_some_and(|(_, v)| *v == version)
        {
            "stable"
        } else {
            "canary"
        };
        let availability = a
            .ratios
            .get("availability")
            .map(|&(g, t)| Counts::new(g, t))
            .unwrap_or_default();
        let slis = a
            .ratios
            .iter()
            .filter(|(k, _)| *k != "availability")
            .map(|(k, &(g, t))| (k.clone(), Counts::new(g, t)))
            .collect();
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let row = VersionRow {
            environment,
            version,
            role: role.into(),
            first_seen: a.first,
            last_seen: a.last,
            availability,
            latency: a.hist.as_ref().filter(|h| !h.is_empty()).map(|h| Latency {
                count: h.len(),
                p50_ms: ms(h, 0.5),
                p90_ms: ms(h, 0.9),
                p99_ms: ms(h, 0.99),
            }),
            slis,
        };
        match out.last_mut() {
            Some(s) if s.service == service => s.versions.push(row),
            _ => out.push(ServiceVersions {
                service,
                versions: vec![row],
            }),
        }
    }
    Ok(out)
}

/// Traceability SLIs per service, worst first.
fn traceability(records: &[&SliRecord]) -> Vec<Traceability> {
    type Sums = BTreeMap<String, [u64; 4]>;
    let mut by: BTreeMap<String, Sums> = BTreeMap::new();
    for r in records {
        let sums = by.entry(r.service.clone()).or_default();
        let x = sums.entry(r.sli.clone()).or_default();
        if r.sli == "sampling_bias" {
            x[0] += r.requests.unwrap_or(0);
            x[1] += r.error_requests.unwrap_or(0);
            x[2] += r.traced_requests.unwrap_or(0);
            x[3] += r.traced_error_requests.unwrap_or(0);
        } else if let (Some(g), Some(t)) = (r.good, r.total) {
            x[0] += g;
            x[1] += t;
        }
    }
    let mut rows: Vec<Traceability> = by
        .into_iter()
        .map(|(service, sums)| {
            let c = |k: &str| {
                sums.get(k)
                    .map(|x| Counts::new(x[0], x[1]))
                    .unwrap_or_default()
            };
            let worst_ratio = RATIO_SLIS
                .iter()
                .filter_map(|k| c(k).ratio)
                .fold(1.0, f64::min);
            let context_loss = c("context_loss");
            let pii = c("sensitive_exposure");
            let sampling_bias = sums.get("sampling_bias").map(|x| SamplingBias {
                requests: x[0],
                error_requests: x[1],
                traced_requests: x[2],
                traced_error_requests: x[3],
                value: (x[0] > 0 && x[2] > 0)
                    .then(|| (x[1] as f64 / x[0] as f64 - x[3] as f64 / x[2] as f64).abs()),
            });
            Traceability {
                service,
                worst_ratio,
                trace_coverage: c("trace_coverage"),
                context_loss_rate: (context_loss.total > 0).then(|| {
                    (context_loss.total - context_loss.good) as f64 / context_loss.total as f64
                }),
                context_loss,
                error_trace_ratio: c("error_trace_ratio"),
                latency_capture: c("latency_capture"),
                provenance_completeness: c("provenance_completeness"),
                pii_exposures: pii.total.saturating_sub(pii.good),
                pii_scanned: pii.total,
                sampling_bias,
            }
        })
        .collect();
    let bias = |t: &Traceability| {
        t.sampling_bias
            .as_ref()
            .and_then(|b| b.value)
            .unwrap_or(0.0)
    };
    rows.sort_by(|a, b| {
        a.worst_ratio
            .total_cmp(&b.worst_ratio)
            .then(b.pii_exposures.cmp(&a.pii_exposures))
            .then(bias(b).total_cmp(&bias(a)))
            .then(a.service.cmp(&b.service))
    });
    rows
}
