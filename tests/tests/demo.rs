//! `causeway demo` end to end (issue 10): the binary, on its embedded broker, in
//! a short fast mode. What the webhook received must page the bad deploy's
//! service with its exemplars, culprit, deploy and actor; the records read back
//! from the output topics must equal `replay` of the same generated input; and
//! `--keep-serving` must keep `/metrics` up with the SLI, burn-rate, budget and
//! pipeline-health series.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use causeway::demo::{Story, StoryConfig};
use causeway_schemas::records::{AlertRecord, SliRecord, SloRecord};
use causeway_schemas::time::parse_rfc3339;
use causeway_tests::kafka::causeway_binary;
use causeway_tests::process::{http_get, terminate, Reaper};
use causeway_tests::reference::read_jsonl;
use causeway_tests::scenario::replay_to;

const START: &str = "2026-11-20T10:00:00Z";
const LENGTH: &str = "105m";
const RATE: f64 = 2.0;

/// The story the demo generates for these flags (its other knobs at their defaults).
fn story_config() -> StoryConfig {
    StoryConfig {
        seed: 2026,
        start_ns: parse_rfc3339(START).unwrap(),
        duration: Duration::from_secs(105 * 60),
        traces_per_second: RATE,
        ..StoryConfig::default()
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn demo_pages_the_bad_deploy_and_its_outputs_equal_replay() {
    let dir = std::env::temp_dir().join(format!("causeway-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("out");
    let mut child = Reaper(
        Command::new(causeway_binary())
            .args([
                "demo",
                "--start",
                START,
                "--length",
                LENGTH,
                "--rate",
                &RATE.to_string(),
                "--speed",
                "0",
                "--plain",
                "--keep-serving",
                "--metrics-bind",
                "127.0.0.1:0",
                "--out",
            ])
            .arg(&out)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start causeway demo"),
    );
    // Read the log: the /metrics address first, then "still serving" at the end.
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut addr = None;
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("still serving")) {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the demo did not finish within 300 s: {log:#?}"));
        if let Some(a) = line.split("/metrics on http://").nth(1) {
            addr = Some(a.trim_end_matches("/metrics").to_string());
        }
        log.push(line);
    }
    let addr = addr.expect("the demo names its /metrics address");

    // /metrics, still served after the story: the series a dashboard needs.
    let metrics = http_get(&addr, "/metrics");
    for series in [
        "causeway_sli_events_total{",
        "causeway_slo_burn_rate{",
        "causeway_slo_error_budget_remaining_ratio{",
        "causeway_kafka_up 1",
        "causeway_consumer_lag_messages{",
        "causeway_watermark_lag_seconds{",
        "causeway_input_events_total{",
        "causeway_state_records{",
    ] {
        assert!(metrics.contains(series), "/metrics lacks {series}");
    }
    let status = terminate(&mut child.0, Duration::from_secs(30));
    assert!(status.success(), "causeway demo exited with {status}");

    // The pages: the bad deploy's service pages, with its evidence.
    let story = Story::new(story_config());
    let t = story.timeline();
    let deploy = t.bad_deploy().expect("the story has a bad deploy");
    let pages: Vec<serde_json::Value> = read_jsonl(&out.join("pages.jsonl"));
    let firing_pages: Vec<&serde_json::Value> = pages
        .iter()
        .filter(|p| p["status"] == "firing" && p["alerts"][0]["labels"]["severity"] == "page")
        .collect();
    let paged: Vec<&str> = firing_pages
        .iter()
        .map(|p| p["alerts"][0]["labels"]["service"].as_str().unwrap())
        .collect();
    assert!(paged.contains(&t.culprit.as_str()), "pages: {paged:?}");
    for p in &firing_pages {
        let a = &p["alerts"][0]["annotations"];
        assert_eq!(a["culprit"], t.culprit.as_str(), "{p}");
        let changes = a["suspected_changes"].as_str().unwrap();
        assert!(
            changes.contains(&format!("{} deployed {}", deploy.service, deploy.version))
                && changes.contains(&format!("by {}", deploy.actor)),
            "suspected changes {changes:?} lack {deploy:?}"
        );
        let exemplars = a["exemplar_trace_ids"].as_str().unwrap();
        assert!(exemplars.split(',').all(|e| e.len() == 32), "{exemplars:?}");
        assert!(!exemplars.is_empty());
    }

    // The outputs read back from Kafka equal replay of the same story.
    let input = dir.join("input");
    Story::write_replay_inputs(&story_config(), &input).unwrap();
    let want_alerts = replay_to(&input, &out.join("causeway.toml"), &dir.join("replay"), 2);
    let sli: Vec<SliRecord> = read_jsonl(&out.join("sli.jsonl"));
    let want_sli: Vec<SliRecord> = read_jsonl(&dir.join("replay").join("sli.jsonl"));
    assert!(!want_sli.is_empty());
    assert_eq!(sorted(key_sli(&sli)), sorted(key_sli(&want_sli)));
    let alerts: Vec<AlertRecord> = read_jsonl(&out.join("alerts.jsonl"));
    assert_eq!(alerts.len(), want_alerts.len());
    for a in &want_alerts {
        assert!(
            alerts.contains(a),
            "alert missing from the demo's topic: {a:?}"
        );
    }
    let slo: Vec<SloRecord> = read_jsonl(&out.join("slo.jsonl"));
    let want_slo: Vec<SloRecord> = read_jsonl(&dir.join("replay").join("slo.jsonl"));
    assert_eq!(slo.len(), want_slo.len());
    // Every delivered page is an alert record of the topic.
    let deliverable = alerts.iter().filter(|a| !a.suppressed).count();
    assert_eq!(pages.len(), deliverable);
    assert!(out.join("report").join("report.html").exists());
    assert!(std::fs::read_to_string(out.join("rules.yml"))
        .unwrap()
        .contains("slo:sli_error:ratio_rate5m"));
    let _ = std::fs::remove_dir_all(dir);
}

/// SLI records as comparable strings (their JSON).
fn key_sli(v: &[SliRecord]) -> Vec<String> {
    v.iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect()
}
