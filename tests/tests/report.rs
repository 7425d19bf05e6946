//! `causeway report` on the incident scenario: every number of `report.json`
//! recomputed here from the records it was made of (rolling, calendar, a short
//! period cut through the incident, a service filter), golden `report.json` and
//! `report.md`, clear errors for bad input, `--from-kafka` after `causeway run`
//! equal to `--input` after `replay`, and the HTML in headless Chromium.
//!
//! `CAUSEWAY_BLESS=1` rewrites the golden files after review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use causeway::report::model::Report;
use causeway::report::{report, ReportError, ReportOptions};
use causeway::scenario::Scenario;
use causeway_schemas::records::{
    AlertRecord, ChangeRecord, EvidenceRecord, ServiceGraphRecord, SliRecord, SloRecord,
};
use causeway_schemas::time::parse_rfc3339;
use causeway_tests::kafka::{
    causeway_binary, create_topic, create_topics, produce_inputs, run_config, spawn_run, Tansu,
};
use causeway_tests::process::{wait_exit, Reaper};
use causeway_tests::reference::read_jsonl;
use causeway_tests::scenario::{prepare, replay_to};
use hdrhistogram::Histogram;

/// The scenario's SLO (Scenario::config_toml): availability at 99.9%.
const OBJECTIVE: f64 = 0.999;
/// SPEC §4's default policy windows, seconds.
const POLICY_WINDOWS: [(u64, &str); 5] = [
    (300, "5m"),
    (1800, "30m"),
    (3600, "1h"),
    (21_600, "6h"),
    (259_200, "3d"),
];
const WINDOW: u64 = 60;

fn secs(s: &str) -> u64 {
    parse_rfc3339(s).unwrap() / 1_000_000_000
}

/// a == b up to rounding (relative 1e-12).
fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0),
        "{what}: report {a}, expected {b}"
    );
}

/// The replay outputs a report reads, straight from the files.
struct Outputs {
    sli: Vec<SliRecord>,
    slo: Vec<SloRecord>,
    alerts: Vec<AlertRecord>,
    changes: Vec<ChangeRecord>,
    edges: Vec<ServiceGraphRecord>,
}

fn outputs(dir: &Path) -> Outputs {
    let evidence: Vec<EvidenceRecord> = read_jsonl(&dir.join("evidence.jsonl"));
    Outputs {
        sli: read_jsonl(&dir.join("sli.jsonl")),
        slo: read_jsonl(&dir.join("slo.jsonl")),
        alerts: read_jsonl(&dir.join("alerts.jsonl")),
        changes: evidence
            .into_iter()
            .filter_map(|e| match e {
                EvidenceRecord::Change(c) => Some(c),
                EvidenceRecord::Exemplars(_) => None,
            })
            .collect(),
        edges: read_jsonl(&dir.join("service_graph.jsonl")),
    }
}

/// One scenario replayed once for the whole file.
struct Fixture {
    scenario: Scenario,
    input: PathBuf,
    config: PathBuf,
    out: PathBuf,
    root: PathBuf,
}

fn fixture(name: &str) -> Fixture {
    let (scenario, input, config) = prepare(name, "");
    let root = input.parent().unwrap().to_path_buf();
    let out = root.join("out");
    replay_to(&input, &config, &out, 1);
    Fixture {
        scenario,
        input,
        config,
        out,
        root,
    }
}

fn options(f: &Fixture, out: &str) -> ReportOptions {
    ReportOptions {
        config: f.config.clone(),
        input: Some(f.out.clone()),
        out: f.root.join(out),
        ..ReportOptions::default()
    }
}

/// Runs the report and reads `report.json` back from disk.
fn make(opts: &ReportOptions) -> Report {
    report(opts).unwrap();
    let text = std::fs::read_to_string(opts.out.join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Checks every number of `r` against `o`, for the windows in [start, as_of).
fn check(r: &Report, o: &Outputs, start: u64, as_of: u64, services: &[&str]) {
    let wanted = |s: &str| services.is_empty() || services.contains(&s);
    let held = |ws: u64, we: u64| ws >= start && we <= as_of;
    assert_eq!((r.period.start_unix, r.period.as_of_unix), (start, as_of));
    assert_eq!(r.window_seconds, WINDOW);
    let in_period: Vec<&SliRecord> = o
        .sli
        .iter()
        .filter(|x| held(x.window_start, x.window_end))
        .collect();
    let axis = (
        in_period.iter().map(|x| x.window_start).min().unwrap(),
        in_period.iter().map(|x| x.window_end).max().unwrap(),
    );
    assert_eq!((r.axis.start, r.axis.end), axis);
    // Fewer than 1440 windows: one chart point per window.
    assert!((axis.1 - axis.0) / WINDOW <= 1440);
    assert_eq!(r.chart_step_seconds, WINDOW);

    // SLO targets: `service = "*"`, so each service with availability records.
    let targets: BTreeSet<&str> = in_period
        .iter()
        .filter(|x| x.sli == "availability" && wanted(&x.service))
        .map(|x| x.service.as_str())
        .collect();
    let got: BTreeSet<&str> = r.slos.iter().map(|t| t.service.as_str()).collect();
    assert_eq!(got, targets);
    let mut period_edges: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for e in o
        .edges
        .iter()
        .filter(|e| held(e.window_start, e.window_end))
    {
        let x = period_edges.entry((&e.client, &e.server)).or_default();
        x.0 += e.total;
        x.1 += e.failed;
    }
    for t in &r.slos {
        assert_eq!(
            (t.slo.as_str(), t.sli.as_str()),
            ("availability", "availability")
        );
        assert_eq!(t.objective, OBJECTIVE);
        let mut per: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for x in o
            .sli
            .iter()
            .filter(|x| x.sli == "availability" && x.service == t.service && x.window_end <= as_of)
        {
            let e = per.entry(x.window_start).or_default();
            e.0 += x.total.unwrap() - x.good.unwrap();
            e.1 += x.total.unwrap();
        }
        let sum = |a: u64, b: u64| {
            per.range(a..b)
                .fold((0, 0), |s, (_, v)| (s.0 + v.0, s.1 + v.1))
        };
        let (bad, total) = sum(start, as_of);
        let what = format!("{} {}", t.service, r.period.length);
        assert_eq!(
            (t.bad, t.total, t.good),
            (bad, total, total - bad),
            "{what}"
        );
        close(
            t.attainment.unwrap(),
            (total - bad) as f64 / total as f64,
            &what,
        );
        assert_eq!(
            t.met,
            Some((total - bad) as f64 / total as f64 >= OBJECTIVE)
        );
        let budget = total as f64 * (1.0 - OBJECTIVE);
        close(t.budget_events, budget, &what);
        close(t.error_budget_remaining, 1.0 - bad as f64 / budget, &what);
        close(t.budget_consumed.unwrap(), bad as f64 / budget, &what);
        // The SLI per step.
        let n = ((axis.1 - axis.0) / WINDOW) as usize;
        assert_eq!(t.series.len(), n);
        for (i, p) in t.series.iter().enumerate() {
            let ws = axis.0 + i as u64 * WINDOW;
            let (b, n) = per.get(&ws).copied().unwrap_or_default();
            assert_eq!((p.start, p.end), (ws, ws + WINDOW));
            assert_eq!(
                (p.counts.good, p.counts.total),
                (n - b, n),
                "{what} at {ws}"
            );
        }
        // Burn rates per policy window at each step end, looking back before the
        // period start too; min_events is 1.
        let labels: Vec<&str> = t.burn_rates.iter().map(|b| b.window.as_str()).collect();
        assert_eq!(labels, POLICY_WINDOWS.map(|w| w.1).to_vec());
        for ((w, _), series) in POLICY_WINDOWS.iter().zip(&t.burn_rates) {
            assert_eq!(series.points.len(), n);
            let mut peak: f64 = 0.0;
            for (i, p) in series.points.iter().enumerate() {
                let at = axis.0 + (i as u64 + 1) * WINDOW;
                let (b, n) = sum(at.saturating_sub(*w), at);
                let burn = if n == 0 {
                    0.0
                } else {
                    (b as f64 / n as f64) / (1.0 - OBJECTIVE)
                };
                assert_eq!((p.at, p.bad, p.total), (at, b, n));
                close(p.burn_rate, burn, &format!("{what} burn {w} at {at}"));
                peak = peak.max(burn);
            }
            close(series.peak, peak, &what);
        }
        // Budget burn-down against the period's budget.
        for (i, p) in t.burndown.iter().enumerate() {
            let at = axis.0 + (i as u64 + 1) * WINDOW;
            let (b, _) = sum(start, at);
            assert_eq!((p.at, p.bad_to_date), (at, b));
            close(p.remaining, 1.0 - b as f64 / budget, &what);
        }
        // Deploys of the service and the services it calls, each charged with the
        // bad events of the windows ending after it and up to the next one.
        let mut related: BTreeSet<&str> = period_edges
            .keys()
            .filter(|(c, _)| *c == t.service)
            .map(|(_, s)| *s)
            .collect();
        related.insert(&t.service);
        let changes: Vec<&ChangeRecord> = o
            .changes
            .iter()
            .filter(|c| {
                let s = c.time_unix_nano / 1_000_000_000;
                related.contains(c.service.as_str()) && s >= start && s < as_of
            })
            .collect();
        assert_eq!(t.deploys.len(), changes.len(), "{what}");
        let mut charged = vec![0u64; changes.len()];
        let mut before = 0;
        for (ws, (b, _)) in per.range(start..as_of) {
            let end_ns = (ws + WINDOW) * 1_000_000_000;
            match changes.iter().rposition(|c| c.time_unix_nano < end_ns) {
                Some(i) => charged[i] += b,
                None => before += b,
            }
        }
        assert_eq!(t.unattributed_bad, before, "{what}");
        for ((d, c), bad) in t.deploys.iter().zip(&changes).zip(&charged) {
            assert_eq!(
                (&d.deploy.id, &d.deploy.actor, &d.deploy.version),
                (&c.id, &c.actor, &c.version)
            );
            assert_eq!(d.bad, *bad, "{what}: {}", c.id);
            close(d.budget_share.unwrap(), *bad as f64 / budget, &what);
        }
        // Alert episodes known at `as_of` that overlap the period.
        let mut episodes: BTreeMap<(u64, &str), (Option<u64>, &AlertRecord)> = BTreeMap::new();
        for a in o.alerts.iter().filter(|a| {
            a.label("service") == t.service
                && a.label("slo") == "availability"
                && secs(&a.evaluated_at) <= as_of
        }) {
            let e = episodes
                .entry((secs(&a.starts_at), &a.dedup_key))
                .or_insert((None, a));
            if a.status == "resolved" {
                e.0 = a.ends_at.as_deref().map(secs);
            }
        }
        episodes.retain(|(s, _), (e, _)| *s < as_of && e.is_none_or(|e| e > start));
        assert_eq!(t.alerts.len(), episodes.len(), "{what}");
        for (got, ((s, key), (end, first))) in t.alerts.iter().zip(&episodes) {
            assert_eq!(secs(&got.starts_at), *s);
            assert_eq!(got.dedup_key, *key);
            assert_eq!(got.ends_at.as_deref().map(secs), *end);
            assert_eq!(got.severity, first.label("severity"));
            assert_eq!(got.suppressed, first.suppressed);
            assert_eq!(got.culprit, first.culprit);
        }
    }

    // Versions: sums of the SLI records and merged histograms.
    type Version = (u64, u64, Option<Histogram<u64>>);
    let mut versions: BTreeMap<(&str, &str, &str), Version> = BTreeMap::new();
    for x in in_period
        .iter()
        .filter(|x| wanted(&x.service) && x.sli != "correlated_alert_rate")
    {
        let v = versions
            .entry((&x.service, &x.environment, &x.version))
            .or_default();
        if x.sli == "availability" {
            v.0 += x.good.unwrap();
            v.1 += x.total.unwrap();
        }
        if x.sli == "latency" {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(x.histogram.as_deref().unwrap())
                .unwrap();
            let mut h: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
                .deserialize(&mut bytes.as_slice())
                .unwrap();
            // Windows hold different ranges: let the merge grow.
            h.auto(true);
            match &mut v.2 {
                Some(m) => m.add(&h).unwrap(),
                None => v.2 = Some(h),
            }
        }
    }
    let got: Vec<(&str, &str, &str)> = r
        .services
        .iter()
        .flat_map(|s| {
            s.versions.iter().map(move |v| {
                (
                    s.service.as_str(),
                    v.environment.as_str(),
                    v.version.as_str(),
                )
            })
        })
        .collect();
    assert_eq!(got, versions.keys().copied().collect::<Vec<_>>());
    for s in &r.services {
        for v in &s.versions {
            let (good, total, h) = &versions[&(
                s.service.as_str(),
                v.environment.as_str(),
                v.version.as_str(),
            )];
            assert_eq!((v.availability.good, v.availability.total), (*good, *total));
            let h = h.as_ref().unwrap();
            let l = v.latency.as_ref().unwrap();
            assert_eq!(l.count, h.len());
            for (got, q) in [(l.p50_ms, 0.5), (l.p90_ms, 0.9), (l.p99_ms, 0.99)] {
                assert_eq!(
                    got,
                    h.value_at_quantile(q) as f64 / 1000.0,
                    "{} {}",
                    s.service,
                    v.version
                );
            }
        }
    }

    // Traceability: sums per service, worst first.
    assert_eq!(
        r.traceability
            .iter()
            .map(|t| t.service.as_str())
            .collect::<BTreeSet<_>>(),
        versions.keys().map(|k| k.0).collect::<BTreeSet<_>>()
    );
    for t in &r.traceability {
        let sum = |sli: &str| {
            in_period
                .iter()
                .filter(|x| x.service == t.service && x.sli == sli)
                .fold((0, 0), |s, x| {
                    (s.0 + x.good.unwrap(), s.1 + x.total.unwrap())
                })
        };
        let mut worst: f64 = 1.0;
        for (sli, c) in [
            ("trace_coverage", &t.trace_coverage),
            ("context_loss", &t.context_loss),
            ("error_trace_ratio", &t.error_trace_ratio),
            ("latency_capture", &t.latency_capture),
            ("provenance_completeness", &t.provenance_completeness),
        ] {
            let (g, n) = sum(sli);
            assert_eq!((c.good, c.total), (g, n), "{} {sli}", t.service);
            if n > 0 {
                worst = worst.min(g as f64 / n as f64);
            }
        }
        close(t.worst_ratio, worst, &t.service);
        let (g, n) = sum("sensitive_exposure");
        assert_eq!((t.pii_exposures, t.pii_scanned), (n - g, n));
    }
    assert!(r
        .traceability
        .windows(2)
        .all(|w| w[0].worst_ratio <= w[1].worst_ratio));

    // Service graph and deploys.
    let graph: Vec<(&str, &str, u64, u64)> = period_edges
        .iter()
        .filter(|((c, s), _)| wanted(c) || wanted(s))
        .map(|((c, s), (n, f))| (*c, *s, *n, *f))
        .collect();
    let got: Vec<(&str, &str, u64, u64)> = r
        .service_graph
        .iter()
        .map(|e| (e.client.as_str(), e.server.as_str(), e.calls, e.failed))
        .collect();
    assert_eq!(got, graph);
    let deploys: Vec<&str> = o
        .changes
        .iter()
        .filter(|c| {
            let s = c.time_unix_nano / 1_000_000_000;
            s >= start && s < as_of && wanted(&c.service)
        })
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(
        r.deploys.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        deploys
    );
}

/// Entry spans (SERVER or root) per (service, version) in the scenario's input
/// files: (total, ERROR).
fn entry_spans(input: &Path) -> BTreeMap<(String, String), (u64, u64)> {
    let mut out: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for p in 0..2 {
        let text = std::fs::read_to_string(input.join(format!("otlp_spans-{p}.jsonl"))).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for rs in v["resourceSpans"].as_array().unwrap() {
                let attr = |k: &str| {
                    rs["resource"]["attributes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|a| a["key"] == k)
                        .map(|a| a["value"]["stringValue"].as_str().unwrap().to_string())
                        .unwrap()
                };
                let key = (attr("service.name"), attr("service.version"));
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    for s in ss["spans"].as_array().unwrap() {
                        if s["kind"] == 2 || s["parentSpanId"] == "" {
                            let e = out.entry(key.clone()).or_default();
                            e.0 += 1;
                            e.1 += u64::from(s["status"]["code"] == 2);
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_number_of_the_report_is_recomputed_from_its_records() {
    let f = fixture("report-numbers");
    let o = outputs(&f.out);
    let s = &f.scenario;
    let data_end = o.sli.iter().map(|x| x.window_end).max().unwrap();

    // Default: rolling 28d ending with the data.
    let r = make(&options(&f, "rolling"));
    assert_eq!(
        (r.period.method.as_str(), r.period.length.as_str()),
        ("rolling", "28d")
    );
    check(&r, &o, data_end - 28 * 86_400, data_end, &[]);
    // Over the SLO's own period, the report's budget is the evaluator's.
    for t in &r.slos {
        let last = o
            .slo
            .iter()
            .find(|x| x.service == t.service && x.evaluated_at == data_end)
            .unwrap();
        assert_eq!((t.bad, t.total), (last.period_bad, last.period_total));
        close(
            t.error_budget_remaining,
            last.error_budget_remaining,
            &t.service,
        );
        assert_eq!(t.evaluator.as_ref().unwrap().evaluated_at, data_end);
    }
    // The version comparison matches the raw spans: checkout 1.5.0 failed
    // where 1.4.2 did not.
    let spans = entry_spans(&f.input);
    for sv in &r.services {
        for v in &sv.versions {
            let (n, errors) = spans[&(sv.service.clone(), v.version.clone())];
            assert_eq!(
                (
                    v.availability.total,
                    v.availability.total - v.availability.good
                ),
                (n, errors),
                "{} {}",
                sv.service,
                v.version
            );
        }
    }
    let checkout = r.slos.iter().find(|t| t.service == "checkout").unwrap();
    let bad_deploy = checkout
        .deploys
        .iter()
        .find(|d| d.deploy.version == "1.5.0")
        .unwrap();
    assert_eq!(bad_deploy.deploy.actor, "alice@example.com");
    assert!(bad_deploy.suspected_by_alert);
    assert_eq!(
        bad_deploy.bad, checkout.bad,
        "every bad event came after alice's deploy"
    );
    assert_eq!(
        checkout.bad,
        spans[&("checkout".to_string(), "1.5.0".to_string())].1
    );

    // A 30-minute rolling period cut through the incident: burn rates look back
    // before its start; the page is still firing at its end.
    let end = s.rollback_at + 300;
    let r = make(&ReportOptions {
        period: Some("30m".into()),
        end: Some(causeway_schemas::time::format_rfc3339(end)),
        ..options(&f, "short")
    });
    check(&r, &o, end - 1800, end, &[]);
    let page = r
        .slos
        .iter()
        .find(|t| t.service == "checkout")
        .unwrap()
        .alerts
        .iter()
        .find(|a| a.severity == "page")
        .unwrap();
    assert!(page.ends_at.is_none());

    // Calendar month: November 2026, reported before it ends.
    let r = make(&ReportOptions {
        calendar: Some("month".into()),
        ..options(&f, "month")
    });
    let (m0, m1) = (secs("2026-11-01T00:00:00Z"), secs("2026-12-01T00:00:00Z"));
    assert_eq!(
        (r.period.method.as_str(), r.period.end_unix),
        ("calendar", m1)
    );
    assert!(!r.period.complete);
    check(&r, &o, m0, data_end, &[]);

    // One service.
    let r = make(&ReportOptions {
        services: vec!["checkout".into()],
        ..options(&f, "checkout")
    });
    check(&r, &o, data_end - 28 * 86_400, data_end, &["checkout"]);
    assert_eq!(r.slos.len(), 1);
    let _ = std::fs::remove_dir_all(&f.root);
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/report/expected")
}

#[test]
fn golden_report_of_the_scenario() {
    let f = fixture("report-golden");
    let opts = options(&f, "report");
    report(&opts).unwrap();
    let expected = golden_dir();
    for file in ["report.json", "report.md"] {
        let got = std::fs::read_to_string(opts.out.join(file)).unwrap();
        if std::env::var_os("CAUSEWAY_BLESS").is_some() {
            std::fs::create_dir_all(&expected).unwrap();
            std::fs::write(expected.join(file), &got).unwrap();
        }
        let want = std::fs::read_to_string(expected.join(file)).unwrap();
        assert_eq!(
            got, want,
            "{file} differs from tests/golden/report/expected"
        );
    }
    let _ = std::fs::remove_dir_all(&f.root);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let f = fixture("report-errors");
    let err = |opts: ReportOptions| report(&opts).unwrap_err();
    match err(ReportOptions {
        slos: vec!["latency".into()],
        ..options(&f, "e1")
    }) {
        e @ ReportError::UnknownSlo { .. } => {
            assert!(
                e.to_string().contains("configured SLOs: availability"),
                "{e}"
            )
        }
        e => panic!("{e}"),
    }
    match err(ReportOptions {
        services: vec!["nope".into()],
        ..options(&f, "e2")
    }) {
        e @ ReportError::UnknownService { .. } => {
            assert!(e.to_string().contains("checkout, gateway, payments"), "{e}")
        }
        e => panic!("{e}"),
    }
    match err(ReportOptions {
        end: Some("2026-01-01T00:00:00Z".into()),
        period: Some("7d".into()),
        ..options(&f, "e3")
    }) {
        e @ ReportError::EmptyPeriod(_) => {
            assert!(
                e.to_string()
                    .contains("the records cover 2026-11-20T10:00:00Z"),
                "{e}"
            )
        }
        e => panic!("{e}"),
    }
    match err(ReportOptions {
        input: Some(f.root.join("missing")),
        ..options(&f, "e4")
    }) {
        ReportError::Input(m) => assert!(m.contains("is not a directory"), "{m}"),
        e => panic!("{e}"),
    }
    // A record that does not parse is reported with its file and line.
    let broken = f.root.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    let mut sli = std::fs::read_to_string(f.out.join("sli.jsonl")).unwrap();
    sli.push_str("{\"sli\": \"availability\", \"service\": 3}\n");
    let line = sli.lines().count();
    std::fs::write(broken.join("sli.jsonl"), sli).unwrap();
    match err(ReportOptions {
        input: Some(broken.clone()),
        ..options(&f, "e5")
    }) {
        ReportError::Record { at, .. } => {
            assert_eq!(at, format!("{}:{line}", broken.join("sli.jsonl").display()))
        }
        e => panic!("{e}"),
    }
    for (period, calendar) in [
        (Some("soon"), None),
        (Some("1d"), Some("month")),
        (None, Some("year")),
    ] {
        match err(ReportOptions {
            period: period.map(Into::into),
            calendar: calendar.map(Into::into),
            ..options(&f, "e6")
        }) {
            ReportError::Usage(_) => {}
            e => panic!("{e}"),
        }
    }
    // The CLI exits with 2 and says what is wrong.
    let out = Command::new(causeway_binary())
        .args(["report", "--config"])
        .arg(&f.config)
        .arg("--input")
        .arg(f.root.join("missing"))
        .arg("--out")
        .arg(f.root.join("e7"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
    let _ = std::fs::remove_dir_all(&f.root);
}

fn cli_report(config: &Path, source: &[&str], out: &Path) {
    let status = Command::new(causeway_binary())
        .args(["report", "--config"])
        .arg(config)
        .args(source)
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "causeway report exited with {status}");
}

#[test]
fn from_kafka_after_run_equals_input_after_replay() {
    let f = fixture("report-kafka");
    let tansu = Tansu::start();
    create_topics(&f.input, |t, n| create_topic(&tansu.brokers, t, n));
    produce_inputs(&tansu.brokers, &f.input);
    let extra = std::fs::read_to_string(&f.config).unwrap();
    let run = run_config(&f.root, &f.input, &tansu.brokers, "report", &extra);
    let mut p = Reaper(spawn_run(&run, &["--drain"]));
    let status = wait_exit(&mut p.0, Duration::from_secs(300));
    assert!(status.success(), "causeway run exited with {status}");

    let from_kafka = f.root.join("kafka");
    cli_report(&run, &["--from-kafka"], &from_kafka);
    let from_files = f.root.join("files");
    cli_report(
        &f.config,
        &["--input", f.out.to_str().unwrap()],
        &from_files,
    );
    for file in ["report.json", "report.md"] {
        let a = std::fs::read_to_string(from_kafka.join(file)).unwrap();
        let b = std::fs::read_to_string(from_files.join(file)).unwrap();
        assert_eq!(a, b, "{file}: --from-kafka differs from --input");
    }
    // Reading again sees the same (the fences it wrote are skipped), and the
    // report is not empty.
    cli_report(&run, &["--from-kafka"], &f.root.join("kafka-2"));
    assert_eq!(
        std::fs::read_to_string(f.root.join("kafka-2/report.json")).unwrap(),
        std::fs::read_to_string(from_kafka.join("report.json")).unwrap()
    );
    let r: Report =
        serde_json::from_str(&std::fs::read_to_string(from_kafka.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(r.slos.len(), 3);
    assert!(r.slos.iter().any(|t| !t.alerts.is_empty()));
    let _ = std::fs::remove_dir_all(&f.root);
}

/// The Chromium binary: `$CHROMIUM`, else `chromium` on the PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "chromium is missing: `apt-get install chromium` (bash .ci/run does) or set CHROMIUM"
        )
    })
}

/// Opens `page` in headless Chromium with `extra` arguments; returns (stdout,
/// console lines from stderr).
fn open_in_chromium(page: &Path, profile: &Path, extra: &[String]) -> (String, Vec<String>) {
    let _ = std::fs::remove_dir_all(profile);
    std::fs::create_dir_all(profile).unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium exited with {}", out.status);
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(String::from)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// Point counts of the `<polyline>`s of an SVG.
fn polylines(svg: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .map(|p| {
            let pts = p.split("points=\"").nth(1).unwrap_or("");
            pts[..pts.find('"').unwrap_or(0)].split_whitespace().count()
        })
        .collect()
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let f = fixture("report-html");
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-html");
    let _ = std::fs::remove_dir_all(&artifacts);
    let opts = ReportOptions {
        out: artifacts.clone(),
        ..options(&f, "unused")
    };
    let r = report(&opts).unwrap().report;
    let page = artifacts.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing to fetch.
    for fetch in ["src=", "href=", "url(", "@import", "<script", "<link"] {
        assert!(!html.contains(fetch), "report.html contains {fetch}");
    }

    // The console check sees a console error when there is one.
    let probe = artifacts.join("probe.html");
    std::fs::write(
        &probe,
        "<html><body><script>console.error('causeway-probe')</script></body></html>",
    )
    .unwrap();
    let (_, console) = open_in_chromium(
        &probe,
        &artifacts.join("profile-probe"),
        &["--dump-dom".into()],
    );
    assert!(
        console.iter().any(|l| l.contains("causeway-probe")),
        "{console:?}"
    );

    let (dom, console) =
        open_in_chromium(&page, &artifacts.join("profile"), &["--dump-dom".into()]);
    assert!(console.is_empty(), "console messages: {console:?}");
    let sections: Vec<&str> = dom.split("<section class=\"slo\"").skip(1).collect();
    assert_eq!(sections.len(), r.slos.len());
    for (section, t) in sections.iter().zip(&r.slos) {
        let section = &section[..section.find("</section>").unwrap()];
        assert!(section.contains(&format!("data-service=\"{}\"", t.service)));
        let figures: BTreeMap<&str, &str> = section
            .split("<figure class=\"chart\" data-kind=\"")
            .skip(1)
            .map(|x| {
                let kind = &x[..x.find('"').unwrap()];
                (kind, &x[..x.find("</figure>").unwrap()])
            })
            .collect();
        assert_eq!(
            figures.keys().copied().collect::<Vec<_>>(),
            ["alerts", "budget", "burn", "sli"]
        );
        for svg in figures.values() {
            assert!(svg.contains("<svg"), "{}: a chart without SVG", t.service);
        }
        let n = t.series.len();
        // The SLI, each burn-rate window and the burn-down are lines through
        // every step.
        assert_eq!(
            polylines(figures["sli"])
                .iter()
                .filter(|&&c| c == n)
                .count(),
            1
        );
        assert_eq!(
            polylines(figures["burn"])
                .iter()
                .filter(|&&c| c == n)
                .count(),
            t.burn_rates.len()
        );
        assert_eq!(
            polylines(figures["budget"])
                .iter()
                .filter(|&&c| c == n)
                .count(),
            1
        );
        // One bar per alert episode (page red, ticket orange).
        let bars = figures["alerts"].matches("fill=\"#D62728\"").count()
            + figures["alerts"].matches("fill=\"#FF7F0E\"").count();
        assert_eq!(bars, t.alerts.len(), "{}", t.service);
        // Deploy markers are labelled with version and actor.
        for d in &t.deploys {
            assert!(figures["sli"].contains(&format!("{} by {}", d.deploy.version, d.deploy.actor)));
        }
    }

    // A screenshot for a human to look at, kept under the target dir.
    let height = 1400 + 1900 * r.slos.len();
    let shot = artifacts.join("report.png");
    let (_, console) = open_in_chromium(
        &page,
        &artifacts.join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            format!("--window-size=1100,{height}"),
            "--hide-scrollbars".into(),
        ],
    );
    assert!(console.is_empty(), "console messages: {console:?}");
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    eprintln!("screenshot: {}", shot.display());
    let _ = std::fs::remove_dir_all(&f.root);
}

#[test]
fn a_latency_slo_counts_slow_requests_from_the_merged_histograms() {
    let extra = "[[slo]]\nname = \"checkout-latency\"\nservice = \"checkout\"\nsli = \"latency\"\nthreshold = \"100ms\"\nobjective = 0.99\n";
    let (_, input, config) = prepare("report-latency", extra);
    let root = input.parent().unwrap().to_path_buf();
    let out = root.join("out");
    replay_to(&input, &config, &out, 1);
    let r = make(&ReportOptions {
        config,
        input: Some(out.clone()),
        slos: vec!["checkout-latency".into()],
        out: root.join("report"),
        ..ReportOptions::default()
    });
    assert_eq!(r.slos.len(), 1);
    let t = &r.slos[0];
    assert_eq!((t.sli.as_str(), t.threshold_ms), ("latency", Some(100.0)));
    // From the histograms: entry spans above 100 ms are bad.
    let sli: Vec<SliRecord> = read_jsonl(&out.join("sli.jsonl"));
    let (mut bad, mut total) = (0, 0);
    for x in sli
        .iter()
        .filter(|x| x.sli == "latency" && x.service == "checkout")
    {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(x.histogram.as_deref().unwrap())
            .unwrap();
        let h: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .unwrap();
        total += h.len();
        bad += h.len() - h.count_between(0, 100_000);
    }
    assert_eq!((t.bad, t.total), (bad, total));
    close(
        t.error_budget_remaining,
        1.0 - bad as f64 / (total as f64 * (1.0 - 0.99)),
        "latency budget",
    );
    // In the scenario exactly the failing checkout requests are slow (200 ms
    // and more; the others take at most 40 ms).
    let spans = entry_spans(&input);
    let failed: u64 = spans
        .iter()
        .filter(|((s, _), _)| s == "checkout")
        .map(|(_, (_, e))| e)
        .sum();
    assert_eq!(bad, failed);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn long_periods_are_charted_in_exact_buckets_of_whole_windows() {
    // 3000 one-minute windows of one service (more than MAX_POINTS = 1440): the
    // charts use steps of whole windows, each point the sum of its windows.
    let root = std::env::temp_dir().join(format!("causeway-report-long-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("out");
    std::fs::create_dir_all(&dir).unwrap();
    let start = 1_795_168_800;
    let mut lines = String::new();
    let counts = |i: u64| {
        (
            100 + i % 7,
            100 + i % 7 - u64::from(i.is_multiple_of(13)) * (i % 5),
        )
    };
    for i in 0..3000u64 {
        let (total, good) = counts(i);
        let r = SliRecord::ratio(
            "availability",
            ("api", "prod", "1.0.0"),
            (start + i * 60, start + i * 60 + 60),
            good,
            total,
        );
        lines.push_str(&serde_json::to_string(&r).unwrap());
        lines.push('\n');
    }
    std::fs::write(dir.join("sli.jsonl"), lines).unwrap();
    let config = root.join("c.toml");
    std::fs::write(
        &config,
        "[[slo]]\nname = \"a\"\nservice = \"api\"\nsli = \"availability\"\nobjective = 0.99\n",
    )
    .unwrap();
    let r = make(&ReportOptions {
        config,
        input: Some(dir),
        period: Some("7d".into()),
        out: root.join("report"),
        ..ReportOptions::default()
    });
    // ceil(3000 / 1440) = 3 windows per step.
    let per = 3000u64.div_ceil(1440);
    let step = per * 60;
    assert_eq!(r.chart_step_seconds, step);
    let t = &r.slos[0];
    assert_eq!(t.series.len() as u64, 3000 / per);
    for (k, p) in t.series.iter().enumerate() {
        let k = k as u64;
        let (good, total) = (k * per..(k + 1) * per)
            .map(counts)
            .fold((0, 0), |s, c| (s.0 + c.1, s.1 + c.0));
        assert_eq!((p.start, p.end), (start + k * step, start + (k + 1) * step));
        assert_eq!((p.counts.good, p.counts.total), (good, total));
    }
    let (good, total) = (0..3000)
        .map(counts)
        .fold((0, 0), |s, c| (s.0 + c.1, s.1 + c.0));
    assert_eq!((t.good, t.total), (good, total));
    // Without alerts, deploys or service graph files the report still works.
    assert!(t.alerts.is_empty() && r.deploys.is_empty() && r.service_graph.is_empty());
    let _ = std::fs::remove_dir_all(&root);
}
