//! Issue 12 part 4: 100,000 distinct `service.name` values through `causeway
//! run` on tansu. `/metrics` keeps at most `metrics.max_services` services per
//! metric and at most `metrics.max_series` (its default) series with label
//! values from telemetry, and reports the rest as `__overflow__`, the process stays small
//! (peak RSS reported, and bounded here), and the SLI records are exactly those
//! of the naive batch reference (`causeway_tests::reference`) computed
//! independently from the same input.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use causeway::config::Config;
use causeway_benches::kafka::free_port;
use causeway_benches::workload::{generate, Format, WorkloadConfig};
use causeway_schemas::otlp::proto::{KeyValue, ResourceSpans, ScopeSpans};
use causeway_schemas::records::SliRecord;
use causeway_tests::kafka::{
    assert_same, create_topic, create_topics, produce_inputs, read_topic, run_config, spawn_run,
    Tansu,
};
use causeway_tests::process::{http_get, Reaper};
use causeway_tests::reference::{compute, read_accepted};

const SERVICES: usize = 100_000;
const MAX_SERVICES: usize = 1000;
/// Metric families whose label values come from telemetry (`metrics.max_series`).
const BUDGETED: [&str; 4] = [
    "causeway_sli_events_total",
    "traces_spanmetrics_",
    "traces_service_graph_",
    "causeway_slo_",
];

const EXTRA: &str = "[time]\nwindow = \"10s\"\ncorrelation_grace = \"10s\"\ntrace_horizon = \"30s\"\nallowed_lateness = \"10s\"\nidle_timeout = \"3s\"\n";

fn kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The `service`, `client` and `server` label values of every series, per metric.
fn services_per_metric(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let labels = rest.rsplit_once('}').map_or("", |(l, _)| l);
        for kv in labels.split("\",") {
            if let Some((k, v)) = kv.split_once("=\"") {
                if ["service", "client", "server"].contains(&k) {
                    out.entry(format!("{name}/{k}"))
                        .or_default()
                        .insert(v.trim_end_matches('"').to_string());
                }
            }
        }
    }
    out
}

#[test]
fn a_hundred_thousand_services_stay_under_max_series_with_correct_sli_records() {
    let dir = std::env::temp_dir().join(format!("causeway-cardinality-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let began = Instant::now();
    let input = dir.join("in");
    // The seeded workload, every span moved to a resource of its own with one
    // of 100,000 service names (round robin), so each name is used.
    let mut w = generate(&WorkloadConfig {
        seed: 100,
        traces: 13_500,
        duration_s: 300,
        batch_spans: 100,
        partitions: 2,
        ..Default::default()
    });
    let mut next = 0usize;
    for (_, m) in &mut w.spans {
        let mut split = Vec::new();
        for rs in m.resource_spans.drain(..) {
            let base = rs.resource.clone().unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    let mut resource = base.clone();
                    for kv in &mut resource.attributes {
                        if kv.key == "service.name" {
                            *kv = KeyValue::string(
                                "service.name",
                                &format!("svc-{}", next % SERVICES),
                            );
                        }
                    }
                    next += 1;
                    split.push(ResourceSpans {
                        resource: Some(resource),
                        scope_spans: vec![ScopeSpans { spans: vec![span] }],
                    });
                }
            }
        }
        m.resource_spans = split;
    }
    assert!(
        next >= SERVICES,
        "only {next} spans for {SERVICES} services"
    );
    w.write(&input, Format::Proto, 2).unwrap();

    eprintln!("workload written ({:.0?})", began.elapsed());
    let tansu = Tansu::start();
    create_topics(&input, |t, n| create_topic(&tansu.brokers, t, n));
    produce_inputs(&tansu.brokers, &input);
    eprintln!("input produced ({:.0?})", began.elapsed());
    let bind = format!("127.0.0.1:{}", free_port());
    let extra = format!("{EXTRA}\n[metrics]\nbind = \"{bind}\"\nmax_services = {MAX_SERVICES}\n");
    let config = run_config(&dir, &input, &tansu.brokers, "cardinality", &extra);

    // The independent count.
    let settings = Config::load(Some(&config)).unwrap().settings().unwrap();
    let (want, _) = compute(&read_accepted(&input, &settings), &settings);
    let want_services: BTreeSet<&str> = want.iter().map(|r| r.service.as_str()).collect();
    // A service whose only spans are client or internal ones, or malformed or
    // late, has no SLI record: most have.
    assert!(
        want_services.len() >= SERVICES * 9 / 10,
        "{} services in the SLI records",
        want_services.len()
    );
    eprintln!(
        "{next} spans over {SERVICES} service names; {} services and {} records in the reference SLI output ({:.0?} so far)",
        want_services.len(),
        want.len(),
        began.elapsed()
    );

    let mut run = Reaper(spawn_run(&config, &["-w", "2", "--drain"]));
    let pid = run.0.id();
    let (mut scrape, mut peak_kib) = (String::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(400);
    let status = loop {
        peak_kib = peak_kib.max(kib(pid, "VmHWM:"));
        let body = http_get(&bind, "/metrics");
        if body.contains("causeway_sli_events_total") {
            scrape = body;
        }
        if let Some(s) = run.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "run --drain did not finish in 400 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(status.success(), "{status}");

    let series = scrape.lines().filter(|l| !l.starts_with('#')).count();
    let per_metric = services_per_metric(&scrape);
    eprintln!(
        "{} services: {series} series on /metrics; peak RSS {:.1} MiB ({:.0?} so far)",
        want_services.len(),
        peak_kib as f64 / 1024.0,
        began.elapsed()
    );
    assert!(!per_metric.is_empty());
    let mut overflowed = 0;
    for (metric, values) in &per_metric {
        assert!(
            values.len() <= MAX_SERVICES + 1,
            "{metric}: {} distinct services",
            values.len()
        );
        overflowed += usize::from(values.contains("__overflow__"));
    }
    assert!(
        per_metric
            .iter()
            .filter(|(m, _)| m.starts_with("causeway_sli_events_total"))
            .all(|(_, v)| v.contains("__overflow__") && v.len() <= MAX_SERVICES + 1),
        "the SLI counters hold at most {MAX_SERVICES} services and __overflow__"
    );
    assert!(overflowed > 0);
    // Series per metric family: bounded by the cap times the other labels'
    // values (SLI kinds, versions, environments, histogram buckets), not by the
    // number of services.
    let mut families: BTreeMap<&str, usize> = BTreeMap::new();
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        *families.entry(name).or_default() += 1;
    }
    let mut top: Vec<(&str, usize)> = families.into_iter().collect();
    top.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    eprintln!("largest metric families: {:?}", &top[..top.len().min(6)]);
    // Series of the budgeted families: at most `max_series` admitted ones
    // (`causeway_metrics_series`), plus the series of label sets refused by
    // the budget, whose labels from telemetry are all `__overflow__`: one per
    // value of the other labels (SLI and outcome, span kind and status,
    // connection type).
    let max_series = causeway::config::MetricsConfig::default().max_series;
    let budgeted: Vec<&str> = scrape
        .lines()
        .filter(|l| BUDGETED.iter().any(|f| l.starts_with(f)))
        .collect();
    let refused = budgeted
        .iter()
        .filter(|l| {
            let labels = l.split_once('{').map_or("", |(_, r)| r);
            labels.split("\",").all(|kv| match kv.split_once("=\"") {
                Some((
                    "service" | "environment" | "version" | "span_name" | "client" | "server",
                    v,
                )) => v.starts_with("__overflow__") || (v.is_empty() && kv.starts_with("client")),
                _ => true,
            })
        })
        .count();
    let gauge = |name: &str| -> f64 {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    let admitted = gauge("causeway_metrics_series ");
    eprintln!(
        "budgeted families: {} series; {admitted} admitted (max_series {max_series}), {refused} all-__overflow__",
        budgeted.len()
    );
    assert!(
        admitted > 0.0 && admitted <= max_series as f64,
        "causeway_metrics_series {admitted}"
    );
    assert!(
        budgeted.len() as f64 <= admitted + refused as f64,
        "{} series: more than admitted + refused",
        budgeted.len()
    );
    assert!(refused <= 1000, "{refused} all-__overflow__ series");
    assert!(
        scrape.contains("causeway_metrics_overflow_total{"),
        "100k services exceed max_series: refusals are counted"
    );
    // 100,000 services fit in far less than a page of state each: the label
    // caps keep 1000 names, and the dataflow's state is bounded by the trace
    // horizon, not by the number of services.
    assert!(peak_kib < 1024 * 1024, "peak RSS {peak_kib} KiB");

    let mut got: Vec<SliRecord> = read_topic(&tansu.brokers, "causeway_sli")
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect();
    got.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    // (assert_same's report of missing records is quadratic: compare first.)
    if got != want {
        assert_same("causeway_sli with 100k services", &got, &want);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
