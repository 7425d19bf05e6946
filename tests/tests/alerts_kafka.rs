//! SPEC §4–§5 through `causeway run` on a real broker (tansu): the incident
//! scenario gives the same alerts and burn rates as `replay`, even when the
//! process is killed with SIGKILL while a page is firing and restarted (the alert
//! state is rebuilt from the output topics), and on a two-process cluster.

use std::time::{Duration, Instant};

use causeway::kafka::CheckpointRecord;
use causeway_schemas::records::{AlertRecord, SloRecord};
use causeway_tests::kafka::{
    assert_same, create_topic, create_topics, hostfile, produce_inputs, produce_inputs_split,
    read_topic, run_config, spawn_run, Half, Tansu,
};
use causeway_tests::process::{wait_exit, Reaper};
use causeway_tests::reference::read_jsonl;
use causeway_tests::scenario::{check_alerts, prepare, replay_to};

fn decode<T: serde::de::DeserializeOwned>(brokers: &str, topic: &str) -> Vec<T> {
    read_topic(brokers, topic)
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect()
}

/// The tests of this file share two cores: one at a time, so that no partition
/// looks idle only because its worker was starved.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn two_process_cluster_gives_the_replay_alerts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (scenario, input, config) = prepare("alerts-cluster", "");
    let dir = input.parent().unwrap().to_path_buf();
    let want = replay_to(&input, &config, &dir.join("replay"), 1);
    let tansu = Tansu::start();
    create_topics(&input, |t, n| create_topic(&tansu.brokers, t, n));
    produce_inputs(&tansu.brokers, &input);
    let extra = std::fs::read_to_string(&config).unwrap();
    let run = run_config(&dir, &input, &tansu.brokers, "cluster", &extra);
    let hostfile = hostfile(&dir, 2);
    let h = hostfile.to_str().unwrap();
    let spawn = |p: &str| spawn_run(&run, &["-n", "2", "-p", p, "-h", h, "--drain"]);
    let (mut p0, mut p1) = (Reaper(spawn("0")), Reaper(spawn("1")));
    for p in [&mut p0, &mut p1] {
        let status = wait_exit(&mut p.0, Duration::from_secs(300));
        assert!(status.success(), "causeway run exited with {status}");
    }
    let got: Vec<AlertRecord> = decode(&tansu.brokers, "causeway_alerts");
    check_alerts(&scenario, &input, &got);
    assert_same("causeway_alerts (2 processes)", &got, &want);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn run_kill_9_while_paging_and_restart_gives_the_replay_alerts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (scenario, input, config) = prepare("alerts-kafka", "");
    let dir = input.parent().unwrap().to_path_buf();
    let want = replay_to(&input, &config, &dir.join("replay"), 1);
    let want_slo: Vec<SloRecord> = read_jsonl(&dir.join("replay").join("slo.jsonl"));

    let tansu = Tansu::start();
    create_topics(&input, |t, n| create_topic(&tansu.brokers, t, n));
    // The input up to the rollback: the bad version's errors page, and nothing in
    // it can resolve the alerts, however fast the run goes.
    let cutoff = scenario.rollback_at * 1_000_000_000;
    produce_inputs_split(&tansu.brokers, &input, cutoff, Half::Before);
    let extra = format!(
        "{}\n[processing]\nguarantee = \"exactly_once\"\n",
        std::fs::read_to_string(&config).unwrap()
    );
    let run = run_config(&dir, &input, &tansu.brokers, "alerts", &extra);
    let spawn = |args: &[&str]| spawn_run(&run, args);

    // Kill once the pages are out and a checkpoint covers them; the rest of the
    // input (rollback, recovery) arrives while the process is down.
    let mut first = Reaper(spawn(&["-w", "2"]));
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let alerts: Vec<AlertRecord> = decode(&tansu.brokers, "causeway_alerts");
        let pages = alerts
            .iter()
            .filter(|a| a.label("severity") == "page" && a.status == "firing")
            .count();
        let resolved = alerts.iter().any(|a| a.status == "resolved");
        assert!(!resolved, "the run got too far before the kill");
        let checkpointed = read_topic(&tansu.brokers, "causeway_checkpoints")
            .iter()
            .filter_map(|r| serde_json::from_slice::<CheckpointRecord>(&r.value).ok())
            .any(|c| c.checkpoint.emitted > scenario.bad_deploy_at + 120);
        if pages == 2 && checkpointed {
            break;
        }
        assert!(Instant::now() < deadline, "no page within 180 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    first.0.kill().unwrap(); // SIGKILL
    let _ = first.0.wait();
    produce_inputs_split(&tansu.brokers, &input, cutoff, Half::From);

    let mut second = spawn(&["-w", "2", "--drain"]);
    let status = wait_exit(&mut second, Duration::from_secs(300));
    assert!(status.success(), "causeway run exited with {status}");

    // replay rejects nothing; neither does run, restart included.
    let dlq = read_topic(&tansu.brokers, "causeway_dlq");
    let reasons: Vec<String> = dlq
        .iter()
        .flat_map(|r| r.headers.iter())
        .filter(|(k, _)| k.starts_with("causeway."))
        .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
        .collect();
    assert!(dlq.is_empty(), "dead letters: {reasons:?}");
    let got: Vec<AlertRecord> = decode(&tansu.brokers, "causeway_alerts");
    check_alerts(&scenario, &input, &got);
    assert_same("causeway_alerts", &got, &want);
    let mut slo: Vec<SloRecord> = decode(&tansu.brokers, "causeway_slo");
    slo.sort_by(|a, b| {
        (a.evaluated_at, &a.slo, &a.service).cmp(&(b.evaluated_at, &b.slo, &b.service))
    });
    let mut want_slo = want_slo;
    want_slo.sort_by(|a, b| {
        (a.evaluated_at, &a.slo, &a.service).cmp(&(b.evaluated_at, &b.slo, &b.service))
    });
    assert_same("causeway_slo", &slo, &want_slo);
    let _ = std::fs::remove_dir_all(dir);
}
