//! Burn rates and alert lifecycle of the SLO evaluator (SPEC §4, §5).

use causeway_jobs::obs::Sli;
use causeway_jobs::slo::{
    burn_rate, dedup_key, AlertOptions, Evaluation, Evaluator, Final, Maintenance, Row, Severity,
    SloSpec,
};
use causeway_schemas::records::{
    ChangeRecord, Exemplar, ExemplarRecord, ServiceGraphRecord, SliRecord,
};

const W: u64 = 60;
/// A window start (a multiple of 60).
const T0: u64 = 1_800_000_000;

fn spec(service: Option<&str>) -> SloSpec {
    SloSpec {
        name: "avail".into(),
        service: service.map(String::from),
        environment: None,
        sli: Sli::Availability,
        objective: 0.999,
        period_s: 30 * 86400,
        threshold_us: None,
        min_events: 1,
        policy: Row::workbook(),
    }
}

fn options() -> AlertOptions {
    AlertOptions {
        window_s: W,
        exemplars: 5,
        change_lookback_s: 3600,
        maintenance: Vec::new(),
        runbook_url: Some("https://runbooks.example/avail".into()),
    }
}

fn availability(service: &str, window: u64, good: u64, total: u64) -> SliRecord {
    SliRecord::ratio(
        "availability",
        (service, "prod", "1.0"),
        (window, window + W),
        good,
        total,
    )
}

/// Feeds `bad[i]` bad events out of `total` per window for consecutive windows
/// from T0 and returns every evaluation.
fn feed(ev: &mut Evaluator, service: &str, start: u64, bad: &[u64], total: u64) -> Vec<Evaluation> {
    bad.iter()
        .enumerate()
        .map(|(i, b)| {
            let w = start + i as u64 * W;
            let sli = [availability(service, w, total - b, total)];
            ev.evaluate(Final {
                window_start: w,
                sli: &sli,
                ..Final::default()
            })
        })
        .collect()
}

fn burn(e: &Evaluation, window: &str) -> f64 {
    e.slo[0]
        .burn_rates
        .iter()
        .find(|b| b.window == window)
        .unwrap()
        .burn_rate
}

/// The SRE workbook's table (Alerting on SLOs, multiwindow multi-burn-rate):
/// with a 99.9% objective over 30 days, consuming 2% of the budget in 1 h is a
/// burn rate of 14.4, 5% in 6 h is 6, 10% in 3 days is 1.
#[test]
fn burn_math_reproduces_the_sre_workbook_table() {
    let per_window = 1000u64;
    let budget_30d = (30 * 86400 / W) * per_window / 1000; // (1 - 0.999) of all events
    assert_eq!(budget_30d, 43_200);
    let cases = [
        // (fraction of budget, hours, window label, expected burn, severities that fire)
        (0.02, 1u64, "1h", 14.4, &["page"][..]),
        (0.05, 6, "6h", 6.0, &["page"][..]),
        (0.10, 72, "3d", 1.0, &["ticket"][..]),
    ];
    for (fraction, hours, label, expected, severities) in cases {
        let windows = (hours * 3600 / W) as usize;
        let bad_total = (budget_30d as f64 * fraction).round() as u64;
        // Spread the bad events evenly, so every short window sees the same rate.
        let bad: Vec<u64> = (0..windows as u64)
            .map(|i| (i + 1) * bad_total / windows as u64 - i * bad_total / windows as u64)
            .collect();
        assert_eq!(bad.iter().sum::<u64>(), bad_total);
        // Three days of clean traffic at the same rate come first, as the
        // workbook assumes steady traffic.
        let clean = vec![0u64; (3 * 86400 / W) as usize];
        let mut ev = Evaluator::new(vec![spec(Some("checkout"))], options());
        let before = feed(&mut ev, "checkout", T0, &clean, per_window);
        assert!(before.iter().all(|e| e.alerts.is_empty()));
        let start = T0 + clean.len() as u64 * W;
        let evals = feed(&mut ev, "checkout", start, &bad, per_window);
        let last = evals.last().unwrap();
        let b = burn(last, label);
        assert!(
            (b - expected).abs() < 1e-9,
            "{label}: burn {b}, want {expected}"
        );
        assert!(
            (burn_rate(bad_total, windows as u64 * per_window, 0.999, 1) - expected).abs() < 1e-9
        );
        let fired: Vec<String> = evals
            .iter()
            .flat_map(|e| &e.alerts)
            .filter(|a| a.status == "firing")
            .map(|a| a.label("severity").to_string())
            .collect();
        let mut want: Vec<String> = severities.iter().map(|s| s.to_string()).collect();
        want.sort();
        let mut got = fired.clone();
        got.sort();
        got.dedup();
        assert_eq!(got, want, "{label}: fired {fired:?}");
    }
}

#[test]
fn low_traffic_guard_and_budget() {
    let mut s = spec(Some("checkout"));
    s.min_events = 100;
    let mut ev = Evaluator::new(vec![s], options());
    // 50 events per window, half bad: 5m has 250 events (>= 100), so it burns;
    // the first window alone (50 < 100) does not.
    let evals = feed(&mut ev, "checkout", T0, &[25, 25, 25], 50);
    assert_eq!(evals[0].slo[0].burn_rates[0].burn_rate, 0.0);
    assert!(burn(&evals[2], "5m") > 400.0);
    let r = &evals[2].slo[0];
    assert_eq!((r.period_bad, r.period_total), (75, 150));
    let expected = 1.0 - 75.0 / (150.0 * (1.0 - 0.999));
    assert!((r.error_budget_remaining - expected).abs() < 1e-9);
}

fn exemplars(service: &str, window: u64, traces: &[(u128, &str)]) -> ExemplarRecord {
    ExemplarRecord {
        sli: "availability".into(),
        service: service.into(),
        environment: "prod".into(),
        window_start: window,
        exemplars: traces
            .iter()
            .map(|(t, deepest)| Exemplar {
                trace_id: format!("{t:032x}"),
                duration_us: 1000,
                deepest_error_service: deepest.to_string(),
            })
            .collect(),
    }
}

fn deploy(service: &str, at: u64, version: &str, actor: &str, action: &str) -> ChangeRecord {
    ChangeRecord {
        time_unix_nano: at * 1_000_000_000,
        service: service.into(),
        environment: "prod".into(),
        action: action.into(),
        version: version.into(),
        artifact: format!("pkg:oci/{service}@{version}"),
        id: format!("{service}-{version}"),
        actor: actor.into(),
    }
}

/// A gateway calls checkout; checkout's deploy breaks it; the gateway's alert
/// names checkout as culprit and checkout's deploy (found through the service
/// graph) with its actor. Rolled back, both alerts resolve.
#[test]
fn alert_lifecycle_evidence_and_resolution() {
    let mut ev = Evaluator::new(vec![spec(None)], options());
    let mut all = Vec::new();
    for i in 0..60u64 {
        let w = T0 + i * W;
        let broken = (10..20).contains(&i);
        let bad = if broken { 50 } else { 0 };
        let sli = [
            availability("checkout", w, 100 - bad, 100),
            availability("gateway", w, 100 - bad, 100),
        ];
        let edges = [ServiceGraphRecord {
            client: "gateway".into(),
            server: "checkout".into(),
            window_start: w,
            window_end: w + W,
            total: 100,
            failed: bad,
        }];
        let xs: Vec<ExemplarRecord> = if broken {
            vec![
                exemplars(
                    "gateway",
                    w,
                    &[
                        (w as u128 * 10 + 2, "checkout"),
                        (w as u128 * 10 + 1, "checkout"),
                    ],
                ),
                exemplars("checkout", w, &[(w as u128 * 10 + 1, "checkout")]),
            ]
        } else {
            Vec::new()
        };
        let changes = match i {
            9 => vec![deploy(
                "checkout",
                w + 30,
                "2.0",
                "alice@example.com",
                "deployed",
            )],
            20 => vec![deploy(
                "checkout",
                w + 5,
                "1.9",
                "bob@example.com",
                "rolledback",
            )],
            _ => Vec::new(),
        };
        let e = ev.evaluate(Final {
            window_start: w,
            sli: &sli,
            edges: &edges,
            exemplars: &xs,
            changes: &changes,
        });
        all.push((w, e));
    }
    let alerts: Vec<_> = all.iter().flat_map(|(_, e)| e.alerts.clone()).collect();
    let page = |service: &str, status: &str| {
        alerts
            .iter()
            .find(|a| {
                a.label("service") == service && a.label("severity") == "page" && a.status == status
            })
            .unwrap_or_else(|| panic!("no {status} page for {service}: {alerts:#?}"))
            .clone()
    };
    let gw = page("gateway", "firing");
    // It fires at the end of the first broken window.
    assert_eq!(
        gw.starts_at,
        causeway_schemas::time::format_rfc3339(T0 + 11 * W)
    );
    assert_eq!(gw.culprit, "checkout");
    assert_eq!(gw.suspected_changes.len(), 1);
    assert_eq!(gw.suspected_changes[0].actor, "alice@example.com");
    assert_eq!(gw.suspected_changes[0].version, "2.0");
    assert_eq!(gw.exemplar_trace_ids.len(), 2);
    // Smallest trace id first.
    assert!(gw.exemplar_trace_ids[0] < gw.exemplar_trace_ids[1]);
    assert_eq!(
        gw.dedup_key,
        dedup_key("avail", "gateway", "", Severity::Page)
    );
    assert!(!gw.suppressed);
    let co = page("checkout", "firing");
    assert_eq!(
        co.group_key, gw.group_key,
        "same culprit and deploy share a group"
    );
    assert_ne!(co.dedup_key, gw.dedup_key);
    // Each page fires once and resolves once the 30m short window has no errors.
    for key in [&gw.dedup_key, &co.dedup_key] {
        let states: Vec<&str> = alerts
            .iter()
            .filter(|a| &a.dedup_key == key)
            .map(|a| a.status.as_str())
            .collect();
        assert_eq!(states, ["firing", "resolved"]);
    }
    let resolved = page("gateway", "resolved");
    assert!(resolved.ends_at.is_some());
    assert_eq!(resolved.starts_at, gw.starts_at);
    // M7: the windows where alerts started carry correlated_alert_rate records.
    let m7: Vec<&SliRecord> = all
        .iter()
        .flat_map(|(_, e)| &e.sli)
        .filter(|r| r.sli == "correlated_alert_rate")
        .collect();
    assert!(!m7.is_empty());
    assert!(m7.iter().all(|r| r.good == r.total));
}

#[test]
fn maintenance_suppresses_and_evaluation_is_deterministic() {
    let mut opts = options();
    opts.maintenance = vec![Maintenance {
        start: T0,
        end: T0 + 3600,
        services: vec!["checkout".into()],
    }];
    let run = || {
        let mut ev = Evaluator::new(vec![spec(Some("checkout"))], opts.clone());
        feed(&mut ev, "checkout", T0, &[50; 10], 100)
    };
    let a = run();
    assert_eq!(a, run());
    let fired: Vec<_> = a.iter().flat_map(|e| &e.alerts).collect();
    assert!(!fired.is_empty());
    assert!(fired.iter().all(|f| f.suppressed));
}

/// A latency SLO reads good events from the window's HDR histogram: requests at
/// or under the threshold are good.
#[test]
fn latency_slo_counts_from_the_histogram() {
    use causeway_jobs::operators::finalize::encode_histogram;
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    h.record_n(50_000, 90).unwrap(); // 50 ms
    h.record_n(300_000, 10).unwrap(); // 300 ms
    let mut record = SliRecord::bare("latency", ("checkout", "prod", "1.0"), (T0, T0 + W));
    record.total = Some(100);
    record.histogram = Some(encode_histogram(&h));
    let mut s = spec(Some("checkout"));
    s.sli = Sli::Latency;
    s.objective = 0.9;
    s.threshold_us = Some(100_000);
    let mut ev = Evaluator::new(vec![s], options());
    let e = ev.evaluate(Final {
        window_start: T0,
        sli: &[record],
        ..Final::default()
    });
    let r = &e.slo[0];
    assert_eq!((r.period_bad, r.period_total), (10, 100));
    // 10% bad against a 10% budget: burn 1 in every window.
    assert!(r
        .burn_rates
        .iter()
        .all(|b| (b.burn_rate - 1.0).abs() < 1e-9));
}
