//! Issue 12 part 2b: Alertmanager goes down while alerts fire and stays down
//! for `CAUSEWAY_AM_OUTAGE_S` seconds (default 20; the long version is 300,
//! see README "Reliability tests"). One `causeway dispatch` runs throughout.
//! The scenario's firing alert records arrive during the outage (half at its
//! start, half in its middle). PagerDuty (a loopback stand-in counting
//! `dedup_key`s) is paged meanwhile; once Alertmanager is back (a fresh
//! process, so it knows only what is sent after its return) every firing alert
//! is in it, and no dedup key was triggered twice at PagerDuty.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use causeway_schemas::records::AlertRecord;
use causeway_tests::kafka::{causeway_binary, create_topic, free_port, produce_alerts, Tansu};
use causeway_tests::process::{
    alertmanager_alerts, http_get, start_alertmanager, terminate, wait_for, Reaper, Receiver,
};
use causeway_tests::scenario::{prepare, replay_to};

const PD_KEY: &str = "R0UTINGKEY0123456789abcdefTEST02";

fn counter(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[test]
fn alertmanager_outage_while_alerts_fire_delivers_everything_once() {
    let outage = Duration::from_secs(
        std::env::var("CAUSEWAY_AM_OUTAGE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let (_, input, config) = prepare("dispatch-outage", "");
    let dir = input.parent().unwrap().to_path_buf();
    let alerts = replay_to(&input, &config, &dir.join("out"), 1);
    let firing: Vec<&AlertRecord> = alerts.iter().filter(|a| a.status == "firing").collect();
    assert!(firing.len() >= 4, "{alerts:#?}");

    let tansu = Tansu::start();
    create_topic(&tansu.brokers, "causeway_alerts", 1);
    let receiver = Receiver::start(0);
    let am_port = free_port();
    let am = format!("127.0.0.1:{am_port}");
    let metrics = format!("127.0.0.1:{}", free_port());
    let cfg = dir.join("dispatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nbrokers = \"{}\"\n\n[dispatch]\nalertmanager_url = \"http://{am}\"\n\
             pagerduty_url = \"http://{rx}/v2/enqueue\"\npagerduty_routing_key_env = \"CAUSEWAY_TEST_PD_KEY\"\n\
             resend_interval = \"2s\"\ninitial_backoff = \"200ms\"\nmax_backoff = \"2s\"\n\
             metrics_bind = \"{metrics}\"\n",
            tansu.brokers,
            rx = receiver.addr
        ),
    )
    .unwrap();

    // Alertmanager up, the dispatcher running and healthy.
    let mut alertmanager = start_alertmanager(&dir, "am-data-1", am_port);
    wait_for("alertmanager", Duration::from_secs(30), || {
        (!http_get(&am, "/api/v2/status").is_empty()).then_some(())
    });
    let log = dir.join("dispatch.log");
    let mut dispatch = Reaper(
        Command::new(causeway_binary())
            .args(["dispatch", "--config"])
            .arg(&cfg)
            .env("CAUSEWAY_TEST_PD_KEY", PD_KEY)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the dispatcher", Duration::from_secs(30), || {
        (!http_get(&metrics, "/metrics").is_empty()).then_some(())
    });

    // The outage: Alertmanager dies; alerts fire at its start and midway.
    let began = Instant::now();
    drop(alertmanager); // SIGKILL
    let half = firing.len() / 2;
    produce_alerts(&tansu.brokers, &firing[..half]);
    std::thread::sleep(outage / 2);
    produce_alerts(&tansu.brokers, &firing[half..]);
    // PagerDuty is paged during the outage, each alert once.
    wait_for("PagerDuty during the outage", outage, || {
        (receiver.to("/v2/enqueue").len() == firing.len()).then_some(())
    });
    let text = http_get(&metrics, "/metrics");
    let failed = counter(
        &text,
        "causeway_dispatch_attempts_total{channel=\"alertmanager\",outcome=\"retry\"}",
    );
    assert!(
        failed > 0.0,
        "the Alertmanager channel should be retrying:\n{text}"
    );
    std::thread::sleep(outage.saturating_sub(began.elapsed()));

    // Alertmanager returns, empty: the dispatcher delivers every firing alert.
    let returned = Instant::now();
    alertmanager = start_alertmanager(&dir, "am-data-2", am_port);
    let shown = wait_for(
        "every firing alert in Alertmanager",
        Duration::from_secs(60),
        || {
            let shown = alertmanager_alerts(&am);
            (shown.len() == firing.len()).then_some(shown)
        },
    );
    let delivered_after = returned.elapsed();
    for a in &firing {
        assert!(
            shown
                .iter()
                .any(|x| x["labels"]["service"] == a.label("service")
                    && x["labels"]["severity"] == a.label("severity")
                    && x["labels"]["slo"] == a.label("slo")),
            "{} not in Alertmanager",
            a.dedup_key
        );
    }

    // PagerDuty: one trigger per dedup key, none twice, after the outage too.
    std::thread::sleep(Duration::from_secs(3));
    let pd = receiver.to("/v2/enqueue");
    let mut keys = std::collections::BTreeMap::<String, usize>::new();
    for r in &pd {
        assert_eq!(r.body["event_action"], "trigger");
        *keys
            .entry(r.body["dedup_key"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for a in &firing {
        assert_eq!(
            keys.get(&a.dedup_key),
            Some(&1),
            "PagerDuty triggers of {}",
            a.dedup_key
        );
    }
    assert_eq!(pd.len(), firing.len(), "{keys:?}");
    let text = http_get(&metrics, "/metrics");
    let failed = counter(
        &text,
        "causeway_dispatch_attempts_total{channel=\"alertmanager\",outcome=\"retry\"}",
    );
    eprintln!(
        "outage {:?}: {} alerts fired during it; {} PagerDuty triggers ({} keys); Alertmanager had all {} {:.1} s after its return; {failed} failed attempts (retried)",
        outage,
        firing.len(),
        pd.len(),
        keys.len(),
        shown.len(),
        delivered_after.as_secs_f64()
    );
    assert!(terminate(&mut dispatch.0, Duration::from_secs(30)).success());
    drop(alertmanager);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(PD_KEY), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}
