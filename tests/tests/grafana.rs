//! Grafana's built-in trace views on Causeway's `/metrics` (issue 13): a real
//! Prometheus scrapes `causeway run` while it reads a seeded workload (the golden
//! sample, with orphans and 20 services, then the incident scenario, with span
//! names and a version change) from a real broker. The PromQL that Grafana's
//! Service Graph (node graph) and Service Graph view (RED table per span name)
//! issue, and the service-graph queries of Tempo's documentation, must return
//! non-empty results over the expected label sets; the counters and histogram
//! counts behind them must equal what the test computes from the output records.
//!
//! Sources of the queries:
//! - Grafana's Tempo data source, `makePromServiceMapRequest` in
//!   <https://github.com/grafana/grafana/blob/main/public/app/plugins/datasource/tempo/datasource.ts>
//!   (`sum by (client, server) (rate(<metric>[$__range]))` and
//!   `group by (client, connection_type, server) (<metric>)` for each metric of
//!   `serviceMapMetrics`) and the Service Graph view's table (`rateMetric`,
//!   `errorRateMetric`, `durationMetric`, `defaultTableFilter`) in
//!   <https://github.com/grafana/grafana/blob/main/public/app/plugins/datasource/tempo/graphTransform.ts>;
//!   the view is documented at
//!   <https://grafana.com/docs/tempo/latest/metrics-generator/service-graph-view/>
//!   and <https://grafana.com/docs/grafana/latest/datasources/tempo/service-graph/>.
//! - Tempo's service-graph query collection,
//!   <https://grafana.com/docs/tempo/latest/metrics-generator/service_graphs/metrics-queries/>.
//!
//! `$__range` is the dashboard's time range; the test uses `1h`, which covers the
//! whole run. A `rate` over it depends on Prometheus's extrapolation, so rates are
//! checked for their label sets, sign and mutual consistency, and the exact
//! counts are checked on the counters (`sum by (...) (metric)`, the increase since
//! the process started).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use causeway_schemas::records::{ServiceGraphRecord, SliRecord};
use causeway_tests::kafka::{
    create_topic, create_topics, free_port, produce_inputs_split, read_topic, run_config,
    spawn_run, Half, Tansu,
};
use causeway_tests::process::{http_get, start_prometheus, terminate, url_encode, Reaper};
use causeway_tests::scenario::prepare;

const RANGE: &str = "1h";

type Labels = BTreeMap<String, String>;

/// The evaluation time of every query once set (Unix seconds), so that rates
/// over `RANGE` compare at one instant.
static EVAL_AT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// The samples of an instant query: (labels, value).
fn query(prom: &str, q: &str) -> Vec<(Labels, f64)> {
    let at = EVAL_AT
        .get()
        .map(|t| format!("&time={t}"))
        .unwrap_or_default();
    let body = http_get(prom, &format!("/api/v1/query?query={}{at}", url_encode(q)));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert!(
        body.is_empty() || v["status"] == "success",
        "query {q} failed: {body}"
    );
    v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                                .collect()
                        })
                        .unwrap_or_default();
                    let value = s["value"][1]
                        .as_str()
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(f64::NAN);
                    (labels, value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `query` keyed by the values of `keys` (a missing label is "", as Prometheus
/// drops empty labels).
fn by(prom: &str, q: &str, keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
    query(prom, q)
        .into_iter()
        .map(|(l, v)| {
            let k = keys
                .iter()
                .map(|k| l.get(*k).cloned().unwrap_or_default())
                .collect();
            (k, v)
        })
        .collect()
}

fn decode<T: serde::de::DeserializeOwned>(brokers: &str, topic: &str) -> Vec<T> {
    read_topic(brokers, topic)
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect()
}

/// Appends each input file of `from` to the file of the same name in `to`.
fn append_inputs(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap();
        let mut text = std::fs::read_to_string(to.join(name)).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(&path).unwrap());
        std::fs::write(to.join(name), text).unwrap();
    }
}

/// (name, kind, status code) of every span in the OTLP JSON span files of `dir`.
fn input_spans(dir: &Path) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("otlp_spans")
        {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for s in ss["spans"].as_array().into_iter().flatten() {
                        out.push((
                            s["name"].as_str().unwrap_or("").to_string(),
                            s["kind"].as_u64().unwrap_or(0),
                            s["status"]["code"].as_u64().unwrap_or(0),
                        ));
                    }
                }
            }
        }
    }
    out
}

fn keyed(pairs: impl IntoIterator<Item = (Vec<String>, u64)>) -> BTreeMap<Vec<String>, f64> {
    let mut out: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for (k, n) in pairs {
        *out.entry(k).or_default() += n as f64;
    }
    out.retain(|_, v| *v > 0.0);
    out
}

#[test]
fn grafana_service_graph_and_red_table_queries_match_the_records() {
    let (scenario, input, config) = prepare("grafana", "");
    let dir = input.parent().unwrap().to_path_buf();
    // The golden sample (January) first, then the scenario (November), in each
    // partition: event time only moves forward.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/sample/input");
    let scenario_input = input.clone();
    let combined = dir.join("combined");
    std::fs::create_dir_all(&combined).unwrap();
    append_inputs(&sample, &combined);
    append_inputs(&scenario_input, &combined);
    let spans_in = input_spans(&combined);

    let tansu = Tansu::start();
    create_topics(&combined, |t, n| create_topic(&tansu.brokers, t, n));
    // The input in two parts, the second produced once Prometheus has scraped
    // what the first gave: `rate()` only sees a counter grow between two
    // samples, and `causeway run` reads all of it faster than one scrape.
    let cutoff = (scenario.start + scenario.minutes * 60 / 2) * 1_000_000_000;
    produce_inputs_split(&tansu.brokers, &combined, cutoff, Half::Before);

    // Prometheus first, so that it sees the counters grow.
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let prom_port = free_port();
    let (_prometheus, prom) = start_prometheus(&dir, &metrics_addr, prom_port);

    let extra = format!(
        "{}\n[metrics]\nbind = \"{metrics_addr}\"\n",
        std::fs::read_to_string(&config).unwrap()
    );
    let run = run_config(&dir, &combined, &tansu.brokers, "grafana", &extra);
    let mut child = Reaper(spawn_run(&run, &[]));
    let deadline = Instant::now() + Duration::from_secs(120);
    let first_part = "traces_service_graph_request_total{client=\"gateway\"}";
    while query(&prom, first_part).is_empty() {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the first part"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2));
    produce_inputs_split(&tansu.brokers, &combined, cutoff, Half::From);

    // Wait until the output stops growing.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut last = (0, Instant::now());
    loop {
        let n = read_topic(&tansu.brokers, "causeway_sli").len();
        if n != last.0 {
            last = (n, Instant::now());
        } else if n > 0 && last.1.elapsed() > Duration::from_secs(5) {
            break;
        }
        assert!(Instant::now() < deadline, "output did not settle");
        std::thread::sleep(Duration::from_millis(300));
    }
    let sli: Vec<SliRecord> = decode(&tansu.brokers, "causeway_sli");
    let edges: Vec<ServiceGraphRecord> = decode(&tansu.brokers, "causeway_service_graph");

    // What the records say, computed here.
    let resource =
        |r: &SliRecord| vec![r.service.clone(), r.environment.clone(), r.version.clone()];
    let ratio = |sli_id: &'static str| {
        sli.iter()
            .filter(move |r| r.sli == sli_id)
            .filter_map(|r| Some((r, r.good?, r.total?)))
    };
    let want_total = keyed(
        edges
            .iter()
            .map(|e| (vec![e.client.clone(), e.server.clone()], e.total)),
    );
    let want_failed = keyed(
        edges
            .iter()
            .map(|e| (vec![e.client.clone(), e.server.clone()], e.failed)),
    );
    // M3's population is every span: the span metrics' calls.
    let want_calls = keyed(ratio("latency_capture").map(|(r, _, t)| (resource(r), t)));
    let want_unpaired =
        keyed(ratio("context_loss").map(|(r, g, t)| (vec![r.service.clone()], t - g)));
    let mut want_sli = BTreeMap::new();
    for (r, g, t) in sli
        .iter()
        .filter(|r| r.sli != "latency")
        .filter_map(|r| Some((r, r.good?, r.total?)))
    {
        let mut k = vec![r.sli.clone()];
        k.extend(resource(r));
        *want_sli
            .entry([k.clone(), vec!["good".into()]].concat())
            .or_insert(0.0) += g as f64;
        *want_sli
            .entry([k, vec!["bad".into()]].concat())
            .or_insert(0.0) += (t - g) as f64;
    }
    want_sli.retain(|_, v: &mut f64| *v > 0.0);
    assert!(want_total.len() >= 3, "edges: {want_total:?}");
    assert!(!want_failed.is_empty() && !want_unpaired.is_empty());
    assert!(
        want_calls
            .keys()
            .any(|k| k[0] == "checkout" && k[2] == "1.5.0"),
        "the bad version has spans: {want_calls:?}"
    );

    // Prometheus has the final values once the counters equal the records.
    let deadline = Instant::now() + Duration::from_secs(60);
    let total_q = "sum by (client, server) (traces_service_graph_request_total)";
    while by(&prom, total_q, &["client", "server"]) != want_total {
        assert!(
            Instant::now() < deadline,
            "traces_service_graph_request_total never matched the edges: {:?} vs {want_total:?}",
            by(&prom, total_q, &["client", "server"])
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Two more scrapes, so that every series has samples for rate().
    std::thread::sleep(Duration::from_secs(3));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    EVAL_AT.set(now).unwrap();

    // Exact counts behind the views.
    let cs = ["client", "server"];
    let q = |q: &str, keys: &[&str]| {
        let mut got = by(&prom, q, keys);
        got.retain(|_, v| *v > 0.0);
        got
    };
    assert_eq!(
        q(
            "sum by (client, server) (traces_service_graph_request_failed_total)",
            &cs
        ),
        want_failed
    );
    // Histogram counts equal the number of edges, for the server (child) and
    // the client (parent) spans.
    assert_eq!(
        q(
            "sum by (client, server) (traces_service_graph_request_server_seconds_count)",
            &cs
        ),
        want_total
    );
    assert_eq!(
        q(
            "sum by (client, server) (traces_service_graph_request_client_seconds_count)",
            &cs
        ),
        want_total
    );
    let svc = ["service", "environment", "version"];
    assert_eq!(
        q(
            "sum by (service, environment, version) (traces_spanmetrics_calls_total)",
            &svc
        ),
        want_calls
    );
    assert_eq!(
        q(
            "sum by (service, environment, version) (traces_spanmetrics_latency_count)",
            &svc
        ),
        want_calls
    );
    assert_eq!(
        q(
            "sum by (server) (traces_service_graph_unpaired_spans_total)",
            &["server"]
        ),
        want_unpaired
    );
    assert_eq!(
        q(
            "sum by (sli, service, environment, version, outcome) (causeway_sli_events_total)",
            &["sli", "service", "environment", "version", "outcome"]
        ),
        want_sli
    );

    // Grafana's Service Graph (node graph): one instant query per metric of
    // `serviceMapMetrics`, and the connection types.
    let pairs: BTreeSet<Vec<String>> = want_total.keys().cloned().collect();
    for metric in [
        "traces_service_graph_request_server_seconds_sum",
        "traces_service_graph_request_total",
        "traces_service_graph_request_failed_total",
        "traces_service_graph_request_server_seconds_bucket",
    ] {
        let got = by(
            &prom,
            &format!("sum by (client, server) (rate({metric}[{RANGE}]))"),
            &cs,
        );
        let want: BTreeSet<Vec<String>> = if metric.contains("failed") {
            want_failed.keys().cloned().collect()
        } else {
            pairs.clone()
        };
        assert_eq!(
            got.keys().cloned().collect::<BTreeSet<_>>(),
            want,
            "{metric}"
        );
        assert!(
            got.values().all(|v| v.is_finite() && *v >= 0.0),
            "{metric}: {got:?}"
        );
        assert!(got.values().any(|v| *v > 0.0), "{metric}: {got:?}");
        let groups = by(
            &prom,
            &format!("group by (client, connection_type, server) ({metric})"),
            &cs,
        );
        assert_eq!(
            groups.keys().cloned().collect::<BTreeSet<_>>(),
            want,
            "{metric}"
        );
    }
    // The node graph's edge stats: requests per second (request_total) and the
    // average response time (server_seconds_sum / total). The histogram's count
    // moves exactly with the request counter.
    let rate_total = by(
        &prom,
        &format!("sum by (client, server) (rate(traces_service_graph_request_total[{RANGE}]))"),
        &cs,
    );
    let rate_count = by(
        &prom,
        &format!(
            "sum by (client, server) (rate(traces_service_graph_request_server_seconds_count[{RANGE}]))"
        ),
        &cs,
    );
    assert_eq!(rate_total.len(), rate_count.len());
    for (k, v) in &rate_total {
        let c = rate_count[k];
        assert!(
            (v - c).abs() <= 1e-9 * v.abs().max(1.0),
            "{k:?}: {v} vs {c}"
        );
    }
    // Tempo's documented connectivity query.
    let connectivity = by(
        &prom,
        "sum(increase(traces_service_graph_request_server_seconds_count{}[7d])) by (server, client) > 0",
        &cs,
    );
    assert!(!connectivity.is_empty());
    assert!(
        connectivity.keys().all(|k| pairs.contains(k)),
        "{connectivity:?}"
    );

    // Grafana's Service Graph view: the RED table per span name.
    let server_names: BTreeSet<String> = spans_in
        .iter()
        .filter(|(_, kind, _)| *kind == 2)
        .map(|(n, _, _)| n.clone())
        .collect();
    let error_names: BTreeSet<String> = spans_in
        .iter()
        .filter(|(_, kind, status)| *kind == 2 && *status == 2)
        .map(|(n, _, _)| n.clone())
        .collect();
    let rate = by(
        &prom,
        &format!(
            "topk(5, sum(rate(traces_spanmetrics_calls_total{{span_kind=\"SPAN_KIND_SERVER\"}}[{RANGE}])) by (span_name))"
        ),
        &["span_name"],
    );
    assert!(!rate.is_empty() && rate.len() <= 5, "{rate:?}");
    assert!(
        rate.keys().all(|k| server_names.contains(&k[0])),
        "{rate:?}"
    );
    assert!(rate.keys().any(|k| k[0] == "GET /checkout"), "{rate:?}");
    let errors = by(
        &prom,
        &format!(
            "topk(5, sum(rate(traces_spanmetrics_calls_total{{status_code=\"STATUS_CODE_ERROR\",span_kind=\"SPAN_KIND_SERVER\"}}[{RANGE}])) by (span_name))"
        ),
        &["span_name"],
    );
    assert!(!errors.is_empty(), "no error rate per span name");
    assert!(
        errors.keys().all(|k| error_names.contains(&k[0])),
        "{errors:?}"
    );
    let p90 = query(
        &prom,
        &format!(
            "histogram_quantile(.9, sum(rate(traces_spanmetrics_latency_bucket{{span_kind=\"SPAN_KIND_SERVER\"}}[{RANGE}])) by (le))"
        ),
    );
    assert_eq!(p90.len(), 1, "{p90:?}");
    assert!(
        p90[0].1.is_finite() && p90[0].1 > 0.0 && p90[0].1 <= 16.384,
        "{p90:?}"
    );
    // Every span name of the table is one of the input's.
    let names: BTreeSet<String> = by(
        &prom,
        "count by (span_name) (traces_spanmetrics_calls_total)",
        &["span_name"],
    )
    .into_keys()
    .map(|k| k[0].clone())
    .collect();
    let input_names: BTreeSet<String> = spans_in.iter().map(|(n, _, _)| n.clone()).collect();
    assert!(
        names.len() >= 5 && names.is_subset(&input_names),
        "{names:?}"
    );

    // promtool accepts the exposition.
    let exposition = http_get(&metrics_addr, "/metrics");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let status = terminate(&mut child.0, Duration::from_secs(30));
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let _ = std::fs::remove_dir_all(dir);
}
