//! A broker outage: tansu (SQLite storage, so the data survive) is stopped for
//! 30 s while `causeway run` is reading. Causeway keeps running, reports the
//! outage in its health metrics, resumes when the broker returns, and in the end
//! nothing is lost and (exactly-once) nothing is written twice.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use causeway::commands::replay::{replay, ReplayOptions};
use causeway_benches::workload::{generate, Format, WorkloadConfig};
use causeway_schemas::records::SliRecord;
use causeway_tests::kafka::{
    assert_same, causeway_binary, create_topic, create_topics, free_port, read_topic, run_config,
    Tansu,
};
use causeway_tests::process::{http_get, terminate, wait_for, Reaper};
use causeway_tests::reference::read_jsonl;

/// No partition may count as idle before the second half arrives (SPEC §2: the
/// watermark would pass it and its records would be late, unlike in `replay`);
/// the final drain overrides this to 3 s.
const TIME: &str = "[time]\nwindow = \"10s\"\ncorrelation_grace = \"10s\"\ntrace_horizon = \"30s\"\nallowed_lateness = \"10s\"\nidle_timeout = \"300s\"\n";

fn metrics(addr: &str) -> String {
    http_get(addr, "/metrics")
}

fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[test]
fn thirty_second_broker_outage_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("causeway-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Two halves of one seeded workload: the second is produced after the outage.
    let cfg = |seed| WorkloadConfig {
        seed,
        traces: 600,
        duration_s: 120,
        partitions: 2,
        ..Default::default()
    };
    let all = dir.join("all");
    let mut w = generate(&cfg(61));
    w.write(&all, Format::Proto, 2).unwrap();
    let first = dir.join("first");
    let second = dir.join("second");
    let half = w.spans.len() / 2;
    let tail_spans = w.spans.split_off(half);
    let tail_logs = w.logs.split_off(w.logs.len() / 2);
    w.write(&first, Format::Proto, 2).unwrap();
    w.spans = tail_spans;
    w.logs = tail_logs;
    w.audit.clear();
    w.write(&second, Format::Proto, 2).unwrap();

    let mut tansu = Tansu::start_persistent(&dir.join("broker"));
    create_topics(&all, |t, n| create_topic(&tansu.brokers, t, n));
    tansu.produce(&first);

    let port = free_port();
    let extra = format!(
        "{TIME}\n[metrics]\nbind = \"127.0.0.1:{port}\"\n\n[processing]\nguarantee = \"exactly_once\"\n"
    );
    let config = run_config(&dir, &all, &tansu.brokers, "outage", &extra);
    let addr = format!("127.0.0.1:{port}");
    let mut run = Reaper(
        Command::new(causeway_binary())
            .args(["run", "--config"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let spans_in = |addr: &str| {
        gauge(
            &metrics(addr),
            "causeway_input_events_total{topic=\"otlp_spans\"}",
        )
        .unwrap_or(0.0)
    };
    wait_for("the first half consumed", Duration::from_secs(90), || {
        (spans_in(&addr) > 0.0).then_some(())
    });
    let first_half = spans_in(&addr);

    tansu.stop();
    let down = Instant::now();
    wait_for("causeway_kafka_up 0", Duration::from_secs(25), || {
        (gauge(&metrics(&addr), "causeway_kafka_up") == Some(0.0)).then_some(())
    });
    while down.elapsed() < Duration::from_secs(30) {
        assert!(
            run.0.try_wait().unwrap().is_none(),
            "causeway exited during the outage"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let errors = gauge(
        &metrics(&addr),
        "causeway_kafka_errors_total{kind=\"transport\"}",
    );
    assert!(errors.unwrap_or(0.0) > 0.0, "the outage is counted");
    tansu.restart();
    tansu.produce(&second);
    wait_for("causeway_kafka_up 1", Duration::from_secs(60), || {
        (gauge(&metrics(&addr), "causeway_kafka_up") == Some(1.0)).then_some(())
    });
    // Let it consume the second half, then stop it gracefully.
    wait_for("the second half consumed", Duration::from_secs(90), || {
        (spans_in(&addr) > first_half).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let status = terminate(&mut run.0, Duration::from_secs(30));
    assert!(status.success(), "{status}");
    // The rest: restart and drain.
    let status = Command::new(causeway_binary())
        .args(["run", "--drain", "--config"])
        .arg(&config)
        .env("CAUSEWAY__TIME__IDLE_TIMEOUT", "3s")
        .env("CAUSEWAY__METRICS__BIND", "")
        .status()
        .unwrap();
    assert!(status.success());

    // Expected: replay of both halves, each file being first-half then second-half
    // messages, exactly as the partitions hold them.
    let both = dir.join("both");
    std::fs::create_dir_all(&both).unwrap();
    for entry in std::fs::read_dir(&first).unwrap() {
        let name = entry.unwrap().file_name();
        let mut bytes = std::fs::read(first.join(&name)).unwrap();
        if let Ok(more) = std::fs::read(second.join(&name)) {
            bytes.extend(more);
        }
        std::fs::write(both.join(&name), bytes).unwrap();
    }
    let replay_config = dir.join("replay.toml");
    std::fs::write(&replay_config, TIME).unwrap();
    replay(&ReplayOptions {
        input: both.clone(),
        out: dir.join("replay"),
        config: Some(replay_config),
        workers: 1,
        progress: false,
    })
    .unwrap();
    let want: Vec<SliRecord> = read_jsonl(&dir.join("replay/sli.jsonl"));
    let mut got: Vec<SliRecord> = read_topic(&tansu.brokers, "causeway_sli")
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect();
    got.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    assert!(!want.is_empty());
    assert_same("causeway_sli across a 30 s outage", &got, &want);
}
