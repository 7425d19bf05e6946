//! A real Prometheus server scrapes `causeway run`'s `/metrics`; its query API
//! returns the SLI counts the `causeway_sli` records say; `promtool check
//! metrics` accepts the exposition; SIGTERM flushes, commits and exits 0, and a
//! restart completes the output without a window missing.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use causeway::commands::replay::{replay, ReplayOptions};
use causeway_schemas::records::SliRecord;
use causeway_tests::kafka::{
    assert_same, causeway_binary, create_topic, create_topics, free_port, produce_inputs,
    read_topic, run_config, Tansu,
};
use causeway_tests::process::{http_get, start_prometheus, terminate, url_encode, Reaper};
use causeway_tests::reference::read_jsonl;

/// The scalar value of an instant query, if Prometheus has one.
fn query(prom: &str, q: &str) -> Option<f64> {
    let body = http_get(prom, &format!("/api/v1/query?query={}", url_encode(q)));
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn sli_records(brokers: &str) -> Vec<SliRecord> {
    read_topic(brokers, "causeway_sli")
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect()
}

#[test]
fn prometheus_scrapes_what_the_records_say_and_sigterm_is_graceful() {
    let dir = std::env::temp_dir().join(format!("causeway-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/sample/input");
    let tansu = Tansu::start();
    create_topics(&input, |t, n| create_topic(&tansu.brokers, t, n));
    produce_inputs(&tansu.brokers, &input);

    let metrics_port = free_port();
    let config = run_config(
        &dir,
        &input,
        &tansu.brokers,
        "prom",
        &format!("\n[metrics]\nbind = \"127.0.0.1:{metrics_port}\"\n"),
    );
    let mut child = Reaper(
        Command::new(causeway_binary())
            .args(["run", "--config"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Wait until the output stops growing: every window the watermark allows is out.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = (0, Instant::now());
    loop {
        let n = read_topic(&tansu.brokers, "causeway_sli").len();
        if n != last.0 {
            last = (n, Instant::now());
        } else if n > 0 && last.1.elapsed() > Duration::from_secs(3) {
            break;
        }
        assert!(Instant::now() < deadline, "output did not settle");
        std::thread::sleep(Duration::from_millis(200));
    }
    let records = sli_records(&tansu.brokers);
    let good: u64 = records.iter().filter_map(|r| r.total.and(r.good)).sum();
    let bad: u64 = records
        .iter()
        .filter_map(|r| Some(r.total? - r.good?))
        .sum();
    assert!(good > 0 && bad > 0);

    // promtool accepts the exposition.
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let exposition = http_get(&metrics_addr, "/metrics");
    assert!(exposition.contains("causeway_sli_events_total"));
    assert!(exposition.contains("traces_spanmetrics_calls_total"));
    assert!(exposition.contains("traces_service_graph_request_total"));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; bash .ci/run installs it)");
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

    // A real Prometheus scrapes it.
    let prom_port = free_port();
    let (prometheus, prom) = start_prometheus(&dir, &metrics_addr, prom_port);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut got_good, mut got_bad) = (None, None);
    while Instant::now() < deadline {
        got_good = query(&prom, "sum(causeway_sli_events_total{outcome=\"good\"})");
        got_bad = query(&prom, "sum(causeway_sli_events_total{outcome=\"bad\"})");
        if got_good == Some(good as f64) && got_bad == Some(bad as f64) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(prometheus);
    assert_eq!(
        got_good,
        Some(good as f64),
        "good events, Prometheus vs records"
    );
    assert_eq!(
        got_bad,
        Some(bad as f64),
        "bad events, Prometheus vs records"
    );

    // SIGTERM: flush, commit, exit 0.
    let status = terminate(&mut child.0, Duration::from_secs(30));
    assert!(status.success(), "exit status after SIGTERM: {status}");

    // The restart picks up from the commit: with --drain the output completes,
    // equal to replay, nothing missing and nothing written twice.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("bind = \"127.0.0.1:{metrics_port}\""),
        "bind = \"\"",
    );
    std::fs::write(&config, text).unwrap();
    let status = Command::new(causeway_binary())
        .args(["run", "--drain", "--config"])
        .arg(&config)
        .status()
        .unwrap();
    assert!(status.success());
    let out = dir.join("replay");
    replay(&ReplayOptions {
        input: input.clone(),
        out: out.clone(),
        config: None,
        workers: 1,
        progress: false,
    })
    .unwrap();
    let want: Vec<SliRecord> = read_jsonl(&out.join("sli.jsonl"));
    let mut all = sli_records(&tansu.brokers);
    all.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    assert_same("causeway_sli after SIGTERM and restart", &all, &want);
}
